/* The control thread's state (server.c), shared with its admin surface
 * (admin_ops.c): the published snapshot, reloads, killswitches, and the
 * workers whose counters /metrics sums. Only the control thread touches it. */
#ifndef BW_PROXY_CONTROL_H
#define BW_PROXY_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "admin/admin.h"
#include "modules/killswitch.h"
#include "net/loop.h"
#include "net/worker.h"
#include "proxy/health.h"
#include "proxy/proxy.h"
#include "proxy/watch.h"

enum { BW_CONTROL_REPORT_MAX = 16384 };

struct bw_control {
    struct bw_loop loop;
    struct bw_io sig_io;
    struct bw_worker *workers;
    struct bw_proxy_worker *pws;
    size_t nworkers;
    bool *joined; /* per worker: thread finished and joined */
    size_t njoined;
    struct bw_timer join_poll; /* while draining: collects finished workers */
    bool stopping;

    const char *config_path;
    bool config_from_lkg; /* started on the config's last-known-good copy */
    struct bw_runtime *rt;
    struct bw_snapshot *snap; /* published; the health checks' reference */
    struct bw_health *health;
    uint64_t generation;
    struct bw_killswitches *kills; /* the process's, applied to every snapshot */
    char state_dir[4097];          /* empty when none */
    struct bw_watch *watch;  /* when the running config says reload.watch */
    struct bw_timer rewatch; /* after a reload: watch the new set of files */
    time_t started_at;
    uint64_t reloads_accepted, reloads_rejected;
    bool has_rejection;
    time_t rejected_at;
    char rejection[BW_CONTROL_REPORT_MAX]; /* the last rejected reload's report */
};

/* Re-reads the config file and every artifact it names; only when all of it
 * is valid (rulesets included: a reload never degrades to a module's
 * on_error policy) is a new snapshot published. Otherwise the running one
 * stays, untouched. report says what happened, one problem per line. */
bw_status bw_control_reload(struct bw_control *c, char *report, size_t cap) BW_MUST_CHECK;

/* The admin API's hooks, bound to c. */
void bw_control_admin_ops(struct bw_control *c, struct bw_admin_ops *ops);

#endif
