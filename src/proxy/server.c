#include "proxy/server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/log.h"
#include "net/listener.h"
#include "net/worker.h"
#include "proxy/health.h"
#include "proxy/proxy.h"

struct control {
    struct bw_loop loop;
    struct bw_io sig_io;
    struct bw_worker *workers;
    size_t nworkers;
    bool *joined; /* per worker: thread finished and joined */
    size_t njoined;
    struct bw_timer join_poll; /* while draining: collects finished workers */
    bool stopping;
};

enum { JOIN_POLL_MS = 20 };

/* The control loop keeps running while workers drain, so that SIGQUIT still
 * exits at once and a second SIGTERM is not lost. */
static void join_poll_cb(struct bw_loop *loop, struct bw_timer *t)
{
    struct control *c = loop->data;
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

static void on_signal(struct bw_loop *loop, struct bw_io *io, uint32_t events)
{
    (void)events;
    struct control *c = loop->data;
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            if (c->stopping)
                break;
            c->stopping = true;
            BW_INFOF("received %s: no longer accepting; finishing requests in flight",
                     si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            for (size_t i = 0; i < c->nworkers; i++)
                bw_worker_request_stop(&c->workers[i]);
            if (bw_timer_set(loop, &c->join_poll, JOIN_POLL_MS) != BW_OK)
                loop->stop = true;
            break;
        case SIGQUIT:
            BW_INFOF("received SIGQUIT: exiting at once");
            _exit(0);
        case SIGHUP:
            BW_INFOF("received SIGHUP: configuration reload is not available in this build "
                     "yet; the running configuration stays");
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

int bw_server_run(const struct bw_config *cfg)
{
    int rc = 1;
    bw_error err;
    struct bw_runtime rt;
    struct bw_access_log alog;
    bool alog_open = false;
    struct control c = {0};
    struct bw_proxy_worker *pws = NULL;
    size_t nstarted = 0, ninit = 0, npw = 0;
    struct bw_health *health = NULL;
    int sfd = -1;

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGQUIT);
    /* Blocked before any thread starts, so every thread inherits the mask
     * and only the control thread's signalfd sees them. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    if (bw_runtime_init(&rt, cfg, &err) != BW_OK) {
        BW_ERRORF("%s", err.msg);
        return 1;
    }
    size_t nworkers = cfg->workers ? cfg->workers : 1;
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
    }
    for (size_t l = 0; l < cfg->nlisten; l++) {
        struct bw_sockaddr addr = cfg->listen[l].addr;
        for (size_t i = 0; i < nworkers; i++) {
            int fd;
            struct bw_sockaddr bound;
            if (bw_listener_open(&addr, &fd, &bound, &err) != BW_OK) {
                BW_ERRORF("%s", err.msg);
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
        BW_INFOF("listening on %s (workers: %zu)", addr.text, nworkers);
    }

    if (bw_loop_init(&c.loop, &err) != BW_OK) {
        BW_ERRORF("%s", err.msg);
        goto out;
    }
    c.loop.data = &c;
    bw_timer_init(&c.join_poll, join_poll_cb);
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
    if (bw_health_start(&health, &c.loop, &rt, &err) != BW_OK) {
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

    bw_loop_run(&c.loop);
    rc = 0;

out_join:
    for (size_t i = 0; i < nstarted; i++)
        if (!c.joined[i])
            bw_worker_join(&c.workers[i]);
    if (rc == 0)
        BW_INFOF("all workers stopped; exiting");
out_loop:
    bw_health_stop(health);
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
    return rc;
}
