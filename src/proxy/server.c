#include "proxy/server.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "net/listener.h"
#include "net/worker.h"
#include "admin/server.h"
#include "modules/killswitch.h"
#include "proxy/control.h"
#include "proxy/health.h"
#include "proxy/proxy.h"

enum { JOIN_POLL_MS = 20 };

/* What the modules of a snapshot run with, for the start and reload log
 * lines: an operator sees at once that the rules loaded, or did not. */
static void modules_summary(const struct bw_snapshot *snap, char *out, size_t cap)
{
    const struct bw_config *cfg = snap->cfg;
    int o = 0;
    if (!cfg->modules.rules.enabled)
        o = snprintf(out, cap, "rules: off");
    else if (snap->rules.failed)
        o = snprintf(out, cap, "rules: NOT LOADED (on_error: %s)",
                     cfg->modules.rules.on_error == BW_ON_ERROR_OPEN ? "open" : "closed");
    else
        o = snprintf(out, cap, "rules: %zu ruleset%s, %zu rule%s%s", snap->rules.book->nrulesets,
                     snap->rules.book->nrulesets == 1 ? "" : "s", snap->rules.book->nrules,
                     snap->rules.book->nrules == 1 ? "" : "s",
                     snap->rules.from_lkg ? " (last-known-good copies)" : "");
    if (o < 0 || (size_t)o >= cap)
        return;
    if (!cfg->modules.bot_score.enabled)
        snprintf(out + o, cap - (size_t)o, "; bot_score: off");
    else if (!snap->bot.has_model)
        snprintf(out + o, cap - (size_t)o, "; bot_score: NO MODEL (on_error: %s)",
                 cfg->modules.bot_score.on_error == BW_ON_ERROR_OPEN ? "open" : "closed");
    else
        snprintf(out + o, cap - (size_t)o, "; bot_score: %zu feature%s%s",
                 snap->bot.model->nfeatures, snap->bot.model->nfeatures == 1 ? "" : "s",
                 snap->bot.from_lkg ? " (last-known-good copy)" : "");
}

/* Copies every artifact of the running configuration to state_dir/lkg/:
 * they all validated together. */
static void save_lkg(struct bw_control *c)
{
    bw_error err;
    if (bw_snapshot_save_lkg(c->snap, c->config_from_lkg, &err) != BW_OK)
        BW_ERRORF("%s (the previous last-known-good copies stay)", err.msg);
}

/* The model a reload replaces: its version must not go backwards. */
static struct bw_bot_running running_bot(const struct bw_control *c)
{
    const struct bw_bot_rt *b = &c->snap->bot;
    if (!b->has_model)
        return (struct bw_bot_running){.known = false};
    return (struct bw_bot_running){.known = true, .version = b->model->version};
}

static bw_status rejected(struct bw_control *c, const char *report)
{
    bw_control_loads_end(c, false, report);
    c->reloads_rejected++;
    c->has_rejection = true;
    c->rejected_at = time(NULL);
    snprintf(c->rejection, sizeof c->rejection, "%s", report);
    BW_ERRORF("reload rejected; the running configuration stays:\n%s", report);
    return BW_ERR;
}

/* The line for a problem with what the config names at pos (a file, a
 * directory, an address): "bulwark.yaml:5:15: error: admin.token_file: "
 * and msg, without a newline. */
static void at_key(const struct bw_config *cfg, struct bw_config_pos pos, const char *key,
                   const char *msg, char *out, size_t cap)
{
    char at[512];
    bw_config_where(cfg, pos, key, at, sizeof at);
    snprintf(out, cap, "%s: %s", at, msg);
}

/* The token in cfg's admin.token_file into a (which must be the admin
 * API's own or a scratch copy); on failure the line that says why, at the
 * key, in out (at_key). */
static bw_status load_config_token(const struct bw_config *cfg, struct bw_admin *a, char *out,
                                   size_t cap)
{
    char tpath[4097];
    snprintf(tpath, sizeof tpath, "%.*s", (int)cfg->admin.token_file.len,
             cfg->admin.token_file.ptr);
    bw_error e2;
    if (bw_admin_load_token(a, tpath, &e2) == BW_OK)
        return BW_OK;
    at_key(cfg, cfg->admin.token_file_pos, "admin.token_file", e2.msg, out, cap);
    return BW_ERR;
}

bw_status bw_control_reload(struct bw_control *c, char *report, size_t cap)
{
    static struct bw_config_diags diags;
    struct bw_config *cfg;
    report[0] = '\0';
    if (bw_config_load_file(c->config_path, &cfg, &diags) != BW_OK) {
        bw_control_loads_begin(c, NULL);
        FILE *f = fmemopen(report, cap, "w");
        if (f) {
            bw_config_diags_print(&diags, f);
            fclose(f);
        }
        return rejected(c, report);
    }
    bw_control_loads_begin(c, cfg);
    bw_error err;
    const struct bw_config *running = atomic_load(&c->rt->published)->cfg;
    if (bw_snapshot_reloadable(running, cfg, &err) != BW_OK) {
        snprintf(report, cap, "%s: %s\n", c->config_path, err.msg);
        bw_config_free(cfg);
        return rejected(c, report);
    }
    /* The admin token is read again, so a rotated secret (or a new
     * token_file) takes effect with the reload; one that cannot be read
     * rejects it. Held here until the reload is accepted. */
    static struct bw_admin next_token;
    memset(&next_token, 0, sizeof next_token);
    if (c->has_admin && cfg->admin.has_token_file) {
        if (load_config_token(cfg, &next_token, err.msg, sizeof err.msg) != BW_OK) {
            snprintf(report, cap, "%s\n", err.msg);
            bw_config_free(cfg);
            return rejected(c, report);
        }
    }
    struct bw_snapshot *snap;
    if (bw_snapshot_new(cfg, c->generation + 1, false, running_bot(c), c->snap->rules.rate, c->snap,
                        &snap, report, cap) != BW_OK)
        return rejected(c, report);
    if (snap->rules.failed || snap->bot.failed) {
        c->attempt.rules_failed = snap->rules.failed;
        c->attempt.bot_failed = snap->bot.failed;
        bw_snapshot_unref(snap);
        return rejected(c, report);
    }
    bw_kills_apply(c->kills, &(struct bw_kill_scope){.rules = &snap->rules, .bot = &snap->bot});
    bw_snapshot_carry_health(snap, c->snap, bw_monotonic_ms());
    struct bw_health *health = NULL;
    if (bw_health_start(&health, &c->loop, snap, &err) != BW_OK) {
        snprintf(report, cap, "%s\n", err.msg);
        bw_snapshot_unref(snap);
        return rejected(c, report);
    }
    /* The health checker holds its own reference; the runtime takes ours. */
    atomic_fetch_add(&snap->refs, 1);
    bw_health_stop(c->health);
    struct bw_snapshot *old = c->snap;
    c->health = health;
    c->snap = snap;
    c->generation++;
    c->reloads_accepted++;
    c->config_from_lkg = false;
    bw_control_loads_end(c, true, "");
    if (c->has_admin) {
        /* The admin API runs on this thread: no request sees half a token. */
        char open_warning[512];
        if (bw_config_admin_open_warning(cfg, open_warning, sizeof open_warning))
            BW_WARNF("%s: %s", c->config_path, open_warning); /* as run says it */
        else if (c->admin->has_token && !next_token.has_token)
            BW_WARNF("admin: the configuration has no admin.token_file now: POST /reload and "
                     "POST /killswitch need no token");
        c->admin->has_token = next_token.has_token;
        c->admin->token_len = next_token.token_len;
        memcpy(c->admin->token, next_token.token, sizeof c->admin->token);
        memset(&next_token, 0, sizeof next_token);
    }
    bw_runtime_publish(c->rt, snap);
    save_lkg(c);
    (void)malloc_trim(0); /* see bw_server_run */
    /* Not from here: this may run inside the watch's own callback. */
    if (bw_timer_set(&c->loop, &c->rewatch, 0) != BW_OK)
        BW_ERRORF("cannot re-arm the file watch after a reload");
    bw_snapshot_unref(old);
    snprintf(report, cap, "reloaded %s (generation %llu)\n", c->config_path,
             (unsigned long long)c->generation);
    char mods[256];
    modules_summary(snap, mods, sizeof mods);
    BW_INFOF("configuration generation %llu is live (%s; %s)", (unsigned long long)c->generation,
             c->config_path, mods);
    return BW_OK;
}

static void files_changed(void *self)
{
    struct bw_control *c = self;
    static char report[BW_CONTROL_REPORT_MAX];
    BW_INFOF("artifact files changed: reloading %s", c->config_path);
    if (bw_control_reload(c, report, sizeof report) != BW_OK)
        return; /* logged; the running configuration stays */
}

static void start_watch(struct bw_control *c)
{
    bw_error err;
    if (c->watch && c->snap->cfg->watch && !c->stopping) {
        if (bw_watch_retarget(c->watch, c->snap->cfg, &err) == BW_OK)
            return;
        BW_ERRORF("reload.watch: %s (reload with SIGHUP or POST /reload instead)", err.msg);
    }
    bw_watch_stop(c->watch);
    c->watch = NULL;
    if (!c->snap->cfg->watch || c->stopping)
        return;
    if (bw_watch_start(&c->watch, &c->loop, c->snap->cfg, files_changed, c, &err) != BW_OK)
        BW_ERRORF("reload.watch: %s (reload with SIGHUP or POST /reload instead)", err.msg);
}

static void rewatch_cb(struct bw_loop *loop, struct bw_timer *t)
{
    (void)t;
    start_watch(loop->data);
}

/* --takeover: the process being replaced holds the admin port (it is not
 * shared, admin/server.c) until it exits; this one serves traffic at once
 * and takes the admin port when it is free. */
enum { ADMIN_TAKEOVER_RETRY_MS = 200 };

static void admin_retry_cb(struct bw_loop *loop, struct bw_timer *t)
{
    struct bw_control *c = loop->data;
    const struct bw_sockaddr *addr = &c->snap->cfg->admin.addr;
    bw_error err;
    if (c->stopping)
        return;
    if (bw_listener_probe(addr, &err) == BW_OK &&
        bw_admin_server_start(loop, addr, c->admin, &c->admin_srv, &err) == BW_OK)
        return;
    if (bw_timer_set(loop, t, ADMIN_TAKEOVER_RETRY_MS) != BW_OK)
        BW_ERRORF("admin: cannot wait for %s; the admin API stays down", addr->text);
}

static bw_status start_admin(struct bw_control *c, bool takeover, bw_error *err)
{
    const struct bw_sockaddr *addr = &c->snap->cfg->admin.addr;
    if (bw_admin_server_start(&c->loop, addr, c->admin, &c->admin_srv, err) == BW_OK)
        return BW_OK;
    bw_error probe;
    if (!takeover || bw_listener_probe(addr, &probe) == BW_OK)
        return BW_ERR;
    BW_WARNF("admin: %s is held by the process being replaced; the admin API starts here when "
             "it exits",
             addr->text);
    return bw_timer_set(&c->loop, &c->admin_retry, ADMIN_TAKEOVER_RETRY_MS) == BW_OK
               ? BW_OK
               : bw_error_set(err, "cannot wait for %s", addr->text);
}

/* The control loop keeps running while workers drain, so that SIGQUIT, or a
 * second SIGTERM or SIGINT, still exits at once. */
static void join_poll_cb(struct bw_loop *loop, struct bw_timer *t)
{
    struct bw_control *c = loop->data;
    for (size_t i = 0; i < c->nworkers; i++) {
        if (!c->joined[i] && pthread_tryjoin_np(c->workers[i].thread, NULL) == 0) {
            c->joined[i] = true;
            c->njoined++;
        }
    }
    if (c->njoined == c->nworkers) {
        loop->stop = true;
        return;
    }
    if (bw_timer_set(loop, t, JOIN_POLL_MS) != BW_OK)
        loop->stop = true; /* the caller joins whatever is left */
}

/* Requests in flight are cut, but the lines of those that finished are
 * written: they are the record of what was served. */
enum { EXIT_LOG_FLUSH_MS = 1000 };

static _Noreturn void exit_at_once(struct bw_control *c)
{
    if (c->rt->access_log)
        bw_access_log_flush_for_exit(c->rt->access_log, EXIT_LOG_FLUSH_MS);
    _exit(0);
}

static void on_signal(struct bw_loop *loop, struct bw_io *io, uint32_t events)
{
    (void)events;
    struct bw_control *c = loop->data;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            if (c->stopping) {
                /* A second one: whoever sent it will not wait for the
                 * drain (a second Ctrl-C). */
                BW_INFOF("received %s while draining: exiting at once",
                         si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                exit_at_once(c);
            }
            c->stopping = true;
            bw_watch_stop(c->watch);
            c->watch = NULL;
            BW_INFOF("received %s: no longer accepting; finishing requests in flight",
                     si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            for (size_t i = 0; i < c->nworkers; i++)
                bw_worker_request_stop(&c->workers[i]);
            if (bw_timer_set(loop, &c->join_poll, JOIN_POLL_MS) != BW_OK)
                loop->stop = true;
            break;
        case SIGQUIT:
            BW_INFOF("received SIGQUIT: exiting at once");
            exit_at_once(c);
        case SIGHUP: {
            if (c->stopping)
                break;
            static char report[16384];
            BW_INFOF("received SIGHUP: reloading %s and reopening the access log", c->config_path);
            if (c->rt->access_log)
                bw_access_log_reopen(c->rt->access_log);
            if (bw_control_reload(c, report, sizeof report) != BW_OK)
                break; /* logged, and the running configuration stays */
            break;
        }
        case SIGUSR1:
            /* nginx's log rotation signal, which logrotate setups send. */
            BW_INFOF("received SIGUSR1: reopening the access log");
            if (c->rt->access_log)
                bw_access_log_reopen(c->rt->access_log);
            break;
        case SIGUSR2:
            /* nginx's binary upgrade: not a thing here, and its default
             * action would end the process. */
            BW_WARNF("received SIGUSR2: ignored (to replace this process without downtime, "
                     "start the new one with --takeover, then send this one SIGTERM)");
            break;
        default:
            break;
        }
    }
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Descriptors the process needs besides connections: listeners, epoll and
 * event fds, the access log, the admin API and health checks. */
enum { FD_RESERVE = 64 };

/* Every client connection may hold an upstream one, and the workers share
 * the process's descriptor limit. Below what limits.max_connections needs,
 * the limit that bites under load is EMFILE (accepts paused, 502s) instead
 * of max_connections' orderly one: said at start, as nginx says when
 * worker_connections exceed the open file limit. */
static void warn_fd_limit(uint64_t max_connections, size_t nworkers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    uint64_t need = 2 * max_connections * (uint64_t)nworkers + FD_RESERVE;
    if (need <= (uint64_t)rl.rlim_cur)
        return;
    BW_WARNF("limits.max_connections %llu with %zu worker(s) needs up to %llu file descriptors (a "
             "client and an upstream connection each, and %d more), over the open file limit of "
             "%llu: raise it (ulimit -n, systemd LimitNOFILE=) or lower max_connections",
             (unsigned long long)max_connections, nworkers, (unsigned long long)need, FD_RESERVE,
             (unsigned long long)rl.rlim_cur);
}

/* A directory bulwark must create files in: what is wrong with it, after
 * "<what><dir>: ", in err. */
static bw_status writable_dir(const char *what, const char *dir, bw_error *err)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return bw_error_set(err, "%s%s: %s", what, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return bw_error_set(err, "%s%s: not a directory", what, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return bw_error_set(err, "%s%s: bulwark cannot write in it: %s", what, dir,
                            strerror(errno));
    return BW_OK;
}

/* Appends one line to report: msg, at the key that names what it is about. */
static void say_at(const struct bw_config *cfg, struct bw_config_pos pos, const char *key,
                   const char *msg, char *report, size_t cap)
{
    char line[1200];
    at_key(cfg, pos, key, msg, line, sizeof line);
    size_t len = strnlen(report, cap);
    if (len + 1 < cap)
        snprintf(report + len, cap - len, "%s\n", line);
}

static bw_status check_access_log(const struct bw_config *cfg, bw_error *err)
{
    char path[4097];
    snprintf(path, sizeof path, "%.*s", (int)cfg->log.access_path.len, cfg->log.access_path.ptr);
    /* Opened as the server will, but never created here. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
        close(fd);
        return BW_OK;
    }
    if (errno != ENOENT)
        return bw_error_set(err, "%s: %s", path, strerror(errno));
    char dir[4097];
    memcpy(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (!slash)
        memcpy(dir, ".", 2);
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    return writable_dir("the directory ", dir, err);
}

bw_status bw_server_check_files(const struct bw_config *cfg, char *report, size_t cap)
{
    if (cap)
        report[0] = '\0';
    bool ok = true;
    if (cfg->admin.enabled && cfg->admin.has_token_file) {
        static struct bw_admin probe;
        char line[1200];
        if (load_config_token(cfg, &probe, line, sizeof line) != BW_OK) {
            snprintf(report, cap, "%s\n", line);
            ok = false;
        }
        memset(&probe, 0, sizeof probe);
    }
    bw_error err;
    if (cfg->log.access_enabled && cfg->log.access_path.len > 0 &&
        check_access_log(cfg, &err) != BW_OK) {
        say_at(cfg, cfg->log.access_pos, "access_log", err.msg, report, cap);
        ok = false;
    }
    char path[4097];
    if (cfg->has_state_dir) {
        snprintf(path, sizeof path, "%.*s", (int)cfg->state_dir.len, cfg->state_dir.ptr);
        if (writable_dir("", path, &err) != BW_OK) {
            say_at(cfg, cfg->state_dir_pos, "state_dir", err.msg, report, cap);
            ok = false;
        }
    }
    return ok ? BW_OK : BW_ERR;
}

int bw_server_run(const char *config_path, struct bw_config *boot_cfg, bool cfg_from_lkg,
                  bool takeover)
{
    int rc = 1;
    bw_error err;
    struct bw_runtime rt;
    struct bw_access_log alog;
    bool alog_open = false;
    struct bw_control c = {0};
    struct bw_proxy_worker *pws = NULL;
    size_t nstarted = 0, ninit = 0, npw = 0;
    int sfd = -1;

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGQUIT);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    /* Blocked before any thread starts, so every thread inherits the mask
     * and only the control thread's signalfd sees them. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    static char report[16384];
    struct bw_snapshot *snap;
    if (bw_snapshot_new(boot_cfg, 1, true, (struct bw_bot_running){.known = false}, NULL, NULL,
                        &snap, report, sizeof report) != BW_OK) {
        BW_ERRORF("%s", report);
        return 1;
    }
    /* One line per module that did not load as configured; the report that
     * says why for all of them follows the last one (once, not per module). */
    const char *said[3];
    size_t nsaid = 0;
    if (snap->rules.from_lkg)
        said[nsaid++] = "the rules module's rulesets did not load; serving with their "
                        "last-known-good copies until a configuration that loads is started or "
                        "reloaded";
    if (snap->bot.from_lkg)
        said[nsaid++] = "the bot_score feature file did not load; scoring with its last-known-good "
                        "copy until a configuration that loads is started or reloaded";
    else if (snap->bot.failed)
        said[nsaid++] = boot_cfg->modules.bot_score.on_error == BW_ON_ERROR_OPEN
                            ? "the bot_score module has no valid model; on_error: open (requests "
                              "go on) applies to every request (bot.score is unknown) until a "
                              "configuration that loads is started or reloaded"
                            : "the bot_score module has no valid model; on_error: closed "
                              "(requests refused) applies to every request (bot.score is "
                              "unknown) until a configuration that loads is started or reloaded";
    if (snap->rules.failed)
        said[nsaid++] = boot_cfg->modules.rules.on_error == BW_ON_ERROR_OPEN
                            ? "the rules module did not load; on_error: open (no rule runs) "
                              "applies to every request until a configuration that loads is "
                              "started or reloaded"
                            : "the rules module did not load; on_error: closed (requests refused) "
                              "applies to every request until a configuration that loads is "
                              "started or reloaded";
    for (size_t i = 0; i < nsaid; i++) {
        if (i + 1 < nsaid)
            BW_ERRORF("%s", said[i]);
        else
            BW_ERRORF("%s:\n%s", said[i], report);
    }
    const struct bw_config *cfg = snap->cfg;
    static struct bw_killswitches kills;
    c.kills = &kills;
    if (cfg->has_state_dir) {
        snprintf(c.state_dir, sizeof c.state_dir, "%.*s", (int)cfg->state_dir.len,
                 cfg->state_dir.ptr);
        size_t skipped;
        if (bw_kills_load(&kills, c.state_dir, &skipped, &err) != BW_OK) {
            /* Refusing to start would turn a bad state file into an outage;
             * starting with nothing killed is what an operator then fixes. */
            BW_ERRORF("killswitches not restored: %s", err.msg);
        } else {
            if (skipped) {
                BW_ERRORF("killswitches: %zu line%s skipped, the first: %s", skipped,
                          skipped == 1 ? "" : "s", err.msg);
                bw_error e2;
                if (bw_kills_keep_copy(c.state_dir, &e2) != BW_OK)
                    BW_ERRORF("killswitches: %s", e2.msg);
                else
                    BW_ERRORF("killswitches: the file as it was is kept as "
                              "%s/" BW_KILLSWITCH_FILE ".rejected",
                              c.state_dir);
            }
            if (kills.n)
                BW_INFOF("%zu killswitch%s restored from %s", kills.n, kills.n == 1 ? "" : "es",
                         c.state_dir);
        }
        bw_kills_apply(&kills, &(struct bw_kill_scope){.rules = &snap->rules, .bot = &snap->bot});
    }
    /* The control thread's reference (health checks) and the runtime's. */
    atomic_fetch_add(&snap->refs, 1);
    c.snap = snap;
    c.generation = 1;
    c.config_path = config_path;
    c.config_from_lkg = cfg_from_lkg;
    c.rt = &rt;
    bw_control_loads_start(&c);
    bw_runtime_init(&rt, snap);
    save_lkg(&c);
    /* Compiling regex databases leaves megabytes of freed heap behind:
     * hand it back to the system rather than carry it for the process's
     * life. */
    (void)malloc_trim(0);
    size_t nworkers = cfg->workers ? cfg->workers : 1;
    warn_fd_limit(cfg->limits.max_connections, nworkers);
    /* The io engine: checked once here so that io_engine: io_uring fails
     * at start with the reason, and auto says what it chose. */
    bool use_ring = false;
    switch (cfg->io_engine) {
    case BW_CONFIG_IO_EPOLL:
        break;
    case BW_CONFIG_IO_AUTO:
    case BW_CONFIG_IO_IO_URING: {
        bw_error rerr;
        use_ring = bw_ring_supported(&rerr);
        if (!use_ring && cfg->io_engine == BW_CONFIG_IO_IO_URING) {
            BW_ERRORF("io_engine: io_uring: %s (io_engine: auto or epoll works here)", rerr.msg);
            goto out;
        }
        if (!use_ring)
            BW_INFOF("%s; io_engine: auto uses epoll", rerr.msg);
        break;
    }
    }
    if (cfg->log.access_enabled) {
        char path[4096];
        size_t n =
            cfg->log.access_path.len < sizeof path - 1 ? cfg->log.access_path.len : sizeof path - 1;
        memcpy(path, cfg->log.access_path.ptr, n);
        path[n] = '\0';
        if (n == 0)
            memcpy(path, "-", 2);
        if (bw_access_log_open(&alog, path, nworkers, &err) != BW_OK) {
            BW_ERRORF("%s", err.msg);
            goto out;
        }
        alog_open = true;
        rt.access_log = &alog;
    }

    c.workers = calloc(nworkers, sizeof *c.workers);
    c.joined = calloc(nworkers, sizeof *c.joined);
    pws = calloc(nworkers, sizeof *pws);
    if (!c.workers || !c.joined || !pws) {
        BW_ERRORF("out of memory");
        goto out;
    }
    c.nworkers = nworkers;
    for (size_t i = 0; i < nworkers; i++) {
        if (bw_worker_init(&c.workers[i], (unsigned)i, &err) != BW_OK) {
            BW_ERRORF("%s", err.msg);
            goto out;
        }
        ninit++;
        if (bw_proxy_worker_init(&pws[i], &rt, &c.workers[i], &err) != BW_OK) {
            BW_ERRORF("%s", err.msg);
            goto out;
        }
        npw++;
        if (!use_ring)
            c.workers[i].loop.engine = BW_IO_ENGINE_EPOLL;
    }
    /* A port that is taken (or not ours to bind) is a problem with what
     * the config names: said at its listen[].address. */
    char key[64];
    for (size_t l = 0; l < cfg->nlisten && !takeover; l++) {
        if (bw_listener_probe(&cfg->listen[l].addr, &err) != BW_OK) {
            snprintf(key, sizeof key, "listen[%zu].address", l);
            at_key(cfg, cfg->listen[l].addr_pos, key, err.msg, report, sizeof report);
            BW_ERRORF("%s", report);
            goto out;
        }
    }
    for (size_t l = 0; l < cfg->nlisten; l++) {
        struct bw_sockaddr addr = cfg->listen[l].addr;
        for (size_t i = 0; i < nworkers; i++) {
            int fd;
            struct bw_sockaddr bound;
            if (bw_listener_open(&addr, &fd, &bound, &err) != BW_OK) {
                snprintf(key, sizeof key, "listen[%zu].address", l);
                at_key(cfg, cfg->listen[l].addr_pos, key, err.msg, report, sizeof report);
                BW_ERRORF("%s", report);
                goto out;
            }
            /* Port 0: the first socket's port is shared by the others. */
            addr = bound;
            if (bw_worker_add_listener(&c.workers[i], fd, &err) != BW_OK) {
                close(fd);
                BW_ERRORF("%s", err.msg);
                goto out;
            }
        }
        /* io: stays last: tests and scripts read it from the line's end. */
        BW_INFOF("listening on %s (%sworkers: %zu, io: %s)", addr.text,
                 cfg->listen[l].has_tls ? "TLS, " : "", nworkers, use_ring ? "io_uring" : "epoll");
    }

    if (bw_loop_init(&c.loop, &err) != BW_OK) {
        BW_ERRORF("%s", err.msg);
        goto out;
    }
    c.loop.data = &c;
    bw_timer_init(&c.join_poll, join_poll_cb);
    bw_timer_init(&c.rewatch, rewatch_cb);
    bw_timer_init(&c.admin_retry, admin_retry_cb);
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) {
        BW_ERRORF("signalfd: %s", strerror(errno));
        goto out_loop;
    }
    c.sig_io.fd = sfd;
    c.sig_io.cb = on_signal;
    if (bw_loop_add_level_in(&c.loop, &c.sig_io, &err) != BW_OK) {
        BW_ERRORF("%s", err.msg);
        goto out_loop;
    }
    c.pws = pws;
    c.started_at = time(NULL);
    start_watch(&c);
    static struct bw_admin admin;
    if (cfg->admin.enabled) {
        struct bw_admin_ops ops;
        bw_control_admin_ops(&c, &ops);
        bw_admin_init(&admin, &ops);
        if (cfg->admin.has_token_file &&
            load_config_token(cfg, &admin, report, sizeof report) != BW_OK) {
            BW_ERRORF("%s", report);
            goto out_loop;
        }
        c.admin = &admin;
        c.has_admin = true;
        if (start_admin(&c, takeover, &err) != BW_OK) {
            at_key(cfg, cfg->admin.addr_pos, "admin.address", err.msg, report, sizeof report);
            BW_ERRORF("%s", report);
            goto out_loop;
        }
    }
    if (bw_health_start(&c.health, &c.loop, c.snap, &err) != BW_OK) {
        BW_ERRORF("%s", err.msg);
        goto out_loop;
    }
    if (alog_open && bw_access_log_start(&alog, &err) != BW_OK) {
        BW_ERRORF("%s", err.msg);
        goto out_loop;
    }
    for (size_t i = 0; i < nworkers; i++) {
        if (bw_worker_start(&c.workers[i], &err) != BW_OK) {
            BW_ERRORF("%s", err.msg);
            for (size_t k = 0; k < nstarted; k++)
                bw_worker_request_stop(&c.workers[k]);
            goto out_join;
        }
        nstarted++;
    }

    {
        /* One line that says the process is serving, and with what: the
         * "listening on" lines come before the workers and the admin API
         * have started, and could be followed by a failure. */
        char mods[256];
        modules_summary(snap, mods, sizeof mods);
        BW_INFOF("ready: pid %d, config %s (generation 1%s), %zu worker%s; %s; access log: %s; "
                 "SIGHUP reloads, SIGTERM drains and exits",
                 (int)getpid(), config_path, cfg_from_lkg ? ", LAST-KNOWN-GOOD COPY" : "", nworkers,
                 nworkers == 1 ? "" : "s", mods,
                 !cfg->log.access_enabled ? "off"
                 : cfg->log.access_path.len == 0 ||
                         bw_slice_eq(cfg->log.access_path, BW_SLICE_LIT("-"))
                     ? "stdout"
                     : "file");
    }
    bw_loop_run(&c.loop);
    rc = 0;

out_join:
    for (size_t i = 0; i < nstarted; i++)
        if (!c.joined[i])
            bw_worker_join(&c.workers[i]);
    if (rc == 0)
        BW_INFOF("all workers stopped; exiting (pid %d)", (int)getpid());
out_loop:
    bw_watch_stop(c.watch);
    c.watch = NULL;
    bw_loop_run_deferred(&c.loop);
    bw_timer_cancel(&c.loop, &c.rewatch);
    bw_timer_cancel(&c.loop, &c.admin_retry);
    if (c.admin_srv) {
        bw_admin_server_stop(c.admin_srv);
        bw_loop_run_deferred(&c.loop);
    }
    bw_health_stop(c.health);
    if (sfd >= 0)
        close(sfd);
    bw_loop_done(&c.loop);
out:
    if (alog_open)
        bw_access_log_close(&alog);
    for (size_t i = 0; i < npw; i++)
        bw_proxy_worker_done(&pws[i]);
    for (size_t i = 0; i < ninit; i++)
        bw_worker_done(&c.workers[i]);
    free(pws);
    free(c.joined);
    free(c.workers);
    bw_runtime_done(&rt);
    bw_snapshot_unref(c.snap);
    return rc;
}
