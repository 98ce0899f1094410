/* Artifact file watching (watch.h). */
#include "proxy/watch.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "base/log.h"

struct watched {
    int wd;             /* the directory's watch */
    char dir[PATH_MAX];
    char name[NAME_MAX + 1];
};

struct bw_watch {
    struct bw_io io; /* first: the io callback gets it */
    struct bw_loop *loop;
    struct bw_timer debounce;
    uint64_t debounce_ms;
    bw_watch_cb on_change;
    void *self;
    bool added; /* registered with the loop */
    size_t n;
    struct watched files[BW_WATCH_MAX_FILES];
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
                relevant = w->files[i].wd == ev->wd && ev->len &&
                           strcmp(w->files[i].name, ev->name) == 0;
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

bw_status bw_watch_retarget(struct bw_watch *w, const struct bw_config *cfg, bw_error *err)
{
    /* Same inotify instance: events already queued for the old set are not
     * lost, and a directory watched before keeps its watch descriptor. */
    w->debounce_ms = cfg->watch_debounce_ms;
    w->n = 0;
    const struct bw_config_rules_module *m = &cfg->modules.rules;
    size_t nfiles = 1 + (m->enabled ? m->nrulesets : 0);
    for (size_t i = 0; i < nfiles && i < BW_WATCH_MAX_FILES; i++) {
        struct watched *f = &w->files[w->n];
        split(i == 0 ? cfg->path : m->rulesets[i - 1], f->dir, f->name);
        f->wd = inotify_add_watch(w->io.fd, f->dir,
                                  IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
                                      IN_ATTRIB | IN_MODIFY);
        if (f->wd < 0)
            return bw_error_set(err, "cannot watch %s: %s", f->dir, strerror(errno));
        w->n++;
    }
    return BW_OK;
}

void bw_watch_stop(struct bw_watch *w)
{
    if (!w)
        return;
    bw_timer_cancel(w->loop, &w->debounce);
    if (w->added)
        bw_loop_del(w->loop, &w->io);
    if (w->io.fd >= 0)
        close(w->io.fd);
    free(w);
}
