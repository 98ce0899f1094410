/* The running server: workers, listeners, the access log writer, and the
 * control thread (the main thread) that handles signals and runs the active
 * health checks. */
#ifndef BW_PROXY_SERVER_H
#define BW_PROXY_SERVER_H

#include <stdbool.h>

#include "base/error.h"
#include "config/config.h"

/* What `bulwark check` can know of the files the server will open besides
 * the config's artifacts: the admin token file is usable, the access log
 * can be opened for writing (nothing is created or written), and state_dir
 * is a directory bulwark can write in. Every problem, with what to do, is
 * one line in report, at the config key that names the file
 * ("bulwark.yaml:6:12: error: state_dir: /x: No such file or directory").
 * Run at `check` and at the start of `run`. */
bw_status bw_server_check_files(const struct bw_config *cfg, char *report,
                                size_t cap) BW_MUST_CHECK;

/* Serves cfg (loaded from config_path, taken over) until SIGTERM/SIGINT
 * (drain, then return 0) or SIGQUIT (exit at once); SIGHUP reloads
 * config_path and everything it names. Returns non-zero when startup fails,
 * after logging why. cfg_from_lkg: cfg is the last-known-good copy of
 * config_path (which does not load): no copy is saved over it until a
 * reload is accepted. */
/* takeover: listen beside a process that already has the listen ports (a
 * bulwark being replaced: stop it once this one serves); without it a
 * taken port refuses the start. */
int bw_server_run(const char *config_path, struct bw_config *cfg, bool cfg_from_lkg, bool takeover);

#endif
