/* Artifact file watching (watch.h). */
#include "proxy/watch.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "base/log.h"

struct watched {
    int wd; /* the directory's watch */
    char name[NAME_MAX + 1];
};

struct bw_watch {
    struct bw_io io; /* first: the io callback gets it */
    struct bw_loop *loop;
    struct bw_deferred dfr; /* frees it after the event batch */
    struct bw_timer debounce;
    uint64_t debounce_ms;
    bw_watch_cb on_change;
    void *self;
    bool added; /* registered with the loop */
    size_t n;
    struct watched *files; /* one per artifact file */
};

static void split(bw_slice path, char *dir, char *name)
{
    size_t cut = path.len;
    while (cut > 0 && path.ptr[cut - 1] != '/')
        cut--;
    if (cut == 0) {
        strcpy(dir, ".");
    } else {
        size_t dl = cut > 1 ? cut - 1 : 1; /* keep "/" for files at the root */
        if (dl >= PATH_MAX)
            dl = PATH_MAX - 1;
        memcpy(dir, path.ptr, dl);
        dir[dl] = '\0';
    }
    size_t nl = path.len - cut;
    if (nl > NAME_MAX)
        nl = NAME_MAX;
    memcpy(name, path.ptr + cut, nl);
    name[nl] = '\0';
}

static void fire(struct bw_loop *loop, struct bw_timer *t)
{
    (void)loop;
    struct bw_watch *w = (struct bw_watch *)((char *)t - offsetof(struct bw_watch, debounce));
    w->on_change(w->self);
}

static void on_events(struct bw_loop *loop, struct bw_io *io, uint32_t events)
{
    (void)events;
    struct bw_watch *w = (struct bw_watch *)io;
    _Alignas(struct inotify_event) char buf[16384];
    bool relevant = false;
    for (;;) {
        ssize_t n = read(io->fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            if (ev->mask & IN_Q_OVERFLOW)
                relevant = true; /* events were lost: look anyway */
            for (size_t i = 0; i < w->n && !relevant; i++)
                relevant =
                    w->files[i].wd == ev->wd && ev->len && strcmp(w->files[i].name, ev->name) == 0;
            p += sizeof *ev + ev->len;
        }
    }
    if (relevant && bw_timer_set(loop, &w->debounce, w->debounce_ms) != BW_OK)
        w->on_change(w->self);
}

bw_status bw_watch_start(struct bw_watch **ret, struct bw_loop *loop, const struct bw_config *cfg,
                         bw_watch_cb on_change, void *self, bw_error *err)
{
    struct bw_watch *w = calloc(1, sizeof *w);
    if (!w)
        return bw_error_set(err, "out of memory for the file watch");
    w->loop = loop;
    w->debounce_ms = cfg->watch_debounce_ms;
    w->on_change = on_change;
    w->self = self;
    bw_timer_init(&w->debounce, fire);
    w->io.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    w->io.cb = on_events;
    if (w->io.fd < 0) {
        int e = errno;
        free(w);
        return bw_error_set(err, "inotify: %s", strerror(e));
    }
    if (bw_watch_retarget(w, cfg, err) != BW_OK) {
        bw_watch_stop(w);
        return BW_ERR;
    }
    if (bw_loop_add_level_in(loop, &w->io, err) != BW_OK) {
        bw_watch_stop(w);
        return BW_ERR;
    }
    w->added = true;
    *ret = w;
    return BW_OK;
}

/* Every artifact file cfg names, in a fixed order: the config, its
 * rulesets, the feature file, each TLS certificate and key. With out NULL,
 * only counts them. */
static size_t artifact_paths(const struct bw_config *cfg, bw_slice *out)
{
    size_t n = 0;
#define ADD(p)                                                                                     \
    do {                                                                                           \
        if (out)                                                                                   \
            out[n] = (p);                                                                          \
        n++;                                                                                       \
    } while (0)
    ADD(cfg->path);
    const struct bw_config_rules_module *m = &cfg->modules.rules;
    for (size_t i = 0; m->enabled && i < m->nrulesets; i++)
        ADD(m->rulesets[i]);
    if (cfg->modules.bot_score.enabled)
        ADD(cfg->modules.bot_score.features);
    for (size_t i = 0; i < cfg->nlisten; i++) {
        for (size_t k = 0; cfg->listen[i].has_tls && k < cfg->listen[i].tls.ncerts; k++) {
            ADD(cfg->listen[i].tls.certs[k].cert);
            ADD(cfg->listen[i].tls.certs[k].key);
        }
    }
#undef ADD
    return n;
}

bw_status bw_watch_retarget(struct bw_watch *w, const struct bw_config *cfg, bw_error *err)
{
    /* Same inotify instance: events already queued for the old set are not
     * lost, and a directory watched before keeps its watch descriptor. */
    w->debounce_ms = cfg->watch_debounce_ms;
    size_t count = artifact_paths(cfg, NULL);
    bw_slice *paths = calloc(count, sizeof *paths);
    struct watched *files = calloc(count, sizeof *files);
    if (!paths || !files) {
        free(paths);
        free(files);
        return bw_error_set(err, "out of memory for the file watch");
    }
    (void)artifact_paths(cfg, paths);
    free(w->files);
    w->files = files;
    w->n = 0;
    bw_status st = BW_OK;
    char dir[PATH_MAX];
    for (size_t i = 0; i < count; i++) {
        struct watched *f = &w->files[w->n];
        split(paths[i], dir, f->name);
        f->wd = inotify_add_watch(w->io.fd, dir,
                                  IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB |
                                      IN_MODIFY);
        if (f->wd < 0) {
            st = bw_error_set(err, "cannot watch %s: %s", dir, strerror(errno));
            break;
        }
        w->n++;
    }
    free(paths);
    return st;
}

static void watch_free_cb(struct bw_deferred *d)
{
    struct bw_watch *w = (struct bw_watch *)((char *)d - offsetof(struct bw_watch, dfr));
    free(w->files);
    free(w);
}

/* Stopped from a callback (a signal), its own event may still be later in
 * the same batch: the memory goes after the batch, the fd (-1: no more
 * events) at once. */
void bw_watch_stop(struct bw_watch *w)
{
    if (!w)
        return;
    bw_timer_cancel(w->loop, &w->debounce);
    if (w->added)
        bw_loop_del(w->loop, &w->io);
    if (w->io.fd >= 0)
        close(w->io.fd);
    w->io.fd = -1;
    w->dfr.fn = watch_free_cb;
    bw_loop_defer(w->loop, &w->dfr);
}
