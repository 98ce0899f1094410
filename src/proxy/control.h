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

/* Loads by artifact, for /metrics: one entry per artifact file ever part of
 * a load attempt (the config, each ruleset, the feature file), kept for the
 * process's life. Bounded: past BW_ARTIFACT_LOADS_MAX distinct files the
 * rest are counted under the last entry, path "(other)". */
enum { BW_ARTIFACT_LOADS_MAX = 64, BW_ARTIFACT_PATH_MAX = 512 };
enum bw_artifact_kind {
    BW_ARTIFACT_CONFIG,
    BW_ARTIFACT_RULESET,
    BW_ARTIFACT_FEATURE_FILE,
    BW_ARTIFACT__COUNT
};
enum bw_load_result { BW_LOAD_ACCEPTED, BW_LOAD_REJECTED, BW_LOAD__COUNT };

struct bw_artifact_ref {
    enum bw_artifact_kind kind;
    char path[BW_ARTIFACT_PATH_MAX];
};

struct bw_artifact_loads {
    struct bw_artifact_ref what;
    uint64_t n[BW_LOAD__COUNT];
};

/* The artifacts of the load in progress (bw_control_loads_begin), and which
 * module failed in it: that decides who a rejection is counted against. */
struct bw_load_attempt {
    struct bw_artifact_ref items[BW_ARTIFACT_LOADS_MAX];
    size_t n;
    bool rules_failed, bot_failed;
};

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
    struct bw_admin *admin;        /* the admin API's, when has_admin: its token */
    bool has_admin;
    struct bw_admin_server *admin_srv; /* NULL until its port is ours (--takeover) */
    struct bw_timer admin_retry;       /* --takeover: until the old process lets go */
    struct bw_watch *watch;            /* when the running config says reload.watch */
    struct bw_timer rewatch;           /* after a reload: watch the new set of files */
    time_t started_at;
    uint64_t reloads_accepted, reloads_rejected;
    bool has_rejection;
    time_t rejected_at;
    char rejection[BW_CONTROL_REPORT_MAX]; /* the last rejected reload's report */
    struct bw_artifact_loads loads[BW_ARTIFACT_LOADS_MAX];
    size_t nloads;
    struct bw_load_attempt attempt;
};

/* Re-reads the config file and every artifact it names; only when all of it
 * is valid (rulesets included: a reload never degrades to a module's
 * on_error policy) is a new snapshot published. Otherwise the running one
 * stays, untouched. report says what happened, one problem per line. */
bw_status bw_control_reload(struct bw_control *c, char *report, size_t cap) BW_MUST_CHECK;

/* Starts counting a load attempt of cfg's artifacts (NULL: the config file
 * did not even parse, so it is the only one). */
void bw_control_loads_begin(struct bw_control *c, const struct bw_config *cfg);
/* Ends it: accepted, every artifact counts as accepted; rejected, those the
 * report names at the start of a line ("path:...") count as rejected (the
 * failed module's files when it names none; the config when nothing else
 * is to blame), the others not at all (they were valid or not reached). */
void bw_control_loads_end(struct bw_control *c, bool accepted, const char *report);
/* At start: each artifact of the running snapshot counts as accepted, or as
 * rejected when its last-known-good copy (or on_error) stands in for it. */
void bw_control_loads_start(struct bw_control *c);

/* The admin API's hooks, bound to c. */
void bw_control_admin_ops(struct bw_control *c, struct bw_admin_ops *ops);

#endif
