/* Reload when an artifact file changes (`reload: {watch: true}`): inotify on
 * the directories holding the config file and every file it names (rulesets,
 * the feature file, TLS certificates and keys), so
 * that an editor's write-to-temporary-then-rename is seen as well as an
 * in-place write. Changes are debounced: the callback runs once the files
 * have been quiet for `debounce`, so a file written in several steps is
 * read once, whole. Runs on the control loop. */
#ifndef BW_PROXY_WATCH_H
#define BW_PROXY_WATCH_H

#include <stdint.h>

#include "base/error.h"
#include "config/config.h"
#include "net/loop.h"

struct bw_watch;

typedef void (*bw_watch_cb)(void *self);

/* Watches cfg's config file and the artifact files it names. */
bw_status bw_watch_start(struct bw_watch **ret, struct bw_loop *loop, const struct bw_config *cfg,
                         bw_watch_cb on_change, void *self, bw_error *err) BW_MUST_CHECK;
/* Watches cfg's files instead (after a reload), keeping what is queued. */
bw_status bw_watch_retarget(struct bw_watch *w, const struct bw_config *cfg,
                            bw_error *err) BW_MUST_CHECK;
/* Accepts NULL. */
void bw_watch_stop(struct bw_watch *w);

#endif
