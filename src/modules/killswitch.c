/* Killswitches (killswitch.h). */
#include "modules/killswitch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/file.h"

static bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

static bw_status take_id(bw_slice s, char *out, const char *what, bw_error *err)
{
    if (s.len == 0 || s.len > BW_KILL_ID_MAX)
        return bw_error_set(err, "the %s id must be 1 to %d characters", what, BW_KILL_ID_MAX);
    for (size_t i = 0; i < s.len; i++)
        if (!id_char(s.ptr[i]))
            return bw_error_set(err, "the %s id may only hold letters, digits, '_', '.' and '-'",
                                what);
    memcpy(out, s.ptr, s.len);
    out[s.len] = '\0';
    return BW_OK;
}

bw_status bw_kill_parse(bw_slice t, struct bw_kill *k, bw_error *err)
{
    memset(k, 0, sizeof *k);
    static const char usage[] =
        "expected \"rule:<ruleset>/<rule>\", \"ruleset:<id>\" or \"module:<name>\"";
    if (bw_slice_starts_with(t, BW_SLICE_LIT("rule:"))) {
        bw_slice rest = bw_slice_sub(t, 5, t.len - 5);
        const char *slash = memchr(rest.ptr, '/', rest.len);
        if (!slash)
            return bw_error_set(err, "a rule target is rule:<ruleset>/<rule>");
        size_t a = (size_t)(slash - rest.ptr);
        k->kind = BW_KILL_RULE;
        if (take_id(bw_slice_sub(rest, 0, a), k->ruleset, "ruleset", err) != BW_OK)
            return BW_ERR;
        return take_id(bw_slice_sub(rest, a + 1, rest.len - a - 1), k->rule, "rule", err);
    }
    if (bw_slice_starts_with(t, BW_SLICE_LIT("ruleset:"))) {
        k->kind = BW_KILL_RULESET;
        return take_id(bw_slice_sub(t, 8, t.len - 8), k->ruleset, "ruleset", err);
    }
    if (bw_slice_starts_with(t, BW_SLICE_LIT("module:"))) {
        bw_slice m = bw_slice_sub(t, 7, t.len - 7);
        k->kind = BW_KILL_MODULE;
        if (bw_slice_eq(m, BW_SLICE_LIT("rules")))
            k->module = BW_MODULE_RULES;
        else if (bw_slice_eq(m, BW_SLICE_LIT("bot_score")))
            k->module = BW_MODULE_BOT_SCORE;
        else
            return bw_error_set(err, "unknown module (the modules are rules and bot_score)");
        return BW_OK;
    }
    return bw_error_set(err, "%s", usage);
}

void bw_kill_format(const struct bw_kill *k, char *buf, size_t cap)
{
    switch (k->kind) {
    case BW_KILL_RULE:
        snprintf(buf, cap, "rule:%s/%s", k->ruleset, k->rule);
        return;
    case BW_KILL_RULESET:
        snprintf(buf, cap, "ruleset:%s", k->ruleset);
        return;
    case BW_KILL_MODULE:
        snprintf(buf, cap, "module:%s", k->module == BW_MODULE_RULES ? "rules" : "bot_score");
        return;
    case BW_KILL__COUNT:
        break;
    }
    snprintf(buf, cap, "?");
}

static bool same(const struct bw_kill *a, const struct bw_kill *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case BW_KILL_RULE:
        return strcmp(a->ruleset, b->ruleset) == 0 && strcmp(a->rule, b->rule) == 0;
    case BW_KILL_RULESET:
        return strcmp(a->ruleset, b->ruleset) == 0;
    case BW_KILL_MODULE:
        return a->module == b->module;
    case BW_KILL__COUNT:
        break;
    }
    return false;
}

/* The bit a target maps to in rr: *words and *bit; false when absent. */
static bool locate(const struct bw_kill *k, const struct bw_rules_rt *rr, _Atomic uint64_t **words,
                   size_t *bit)
{
    const struct bw_rulebook *book = rr->book;
    bw_slice rs = bw_slice_make(k->ruleset, strlen(k->ruleset));
    for (size_t i = 0; i < book->nrulesets; i++) {
        const struct bw_ruleset *set = &book->rulesets[i];
        if (!bw_slice_eq(set->id, rs))
            continue;
        if (k->kind == BW_KILL_RULESET) {
            /* The words are the snapshot's own: only the const view is
             * shared with the workers. */
            *words = (_Atomic uint64_t *)rr->kills.rulesets;
            *bit = set->index;
            return true;
        }
        bw_slice rl = bw_slice_make(k->rule, strlen(k->rule));
        for (size_t j = 0; j < set->nrules; j++) {
            if (bw_slice_eq(set->rules[j].id, rl)) {
                *words = (_Atomic uint64_t *)rr->kills.rules;
                *bit = set->rules[j].index;
                return true;
            }
        }
    }
    return false;
}

bool bw_kill_present(const struct bw_kill *k, const struct bw_kill_scope *sc)
{
    const struct bw_rules_rt *rr = sc->rules;
    switch (k->kind) {
    case BW_KILL_RULE:
    case BW_KILL_RULESET: {
        _Atomic uint64_t *w;
        size_t b;
        return locate(k, rr, &w, &b);
    }
    case BW_KILL_MODULE:
        switch (k->module) {
        case BW_MODULE_RULES:
            return rr->enabled;
        case BW_MODULE_BOT_SCORE:
            return sc->bot->enabled;
        case BW_MODULE__COUNT:
            break;
        }
        return false;
    case BW_KILL__COUNT:
        break;
    }
    return false;
}

static void apply(const struct bw_kill *k, bool enabled, const struct bw_kill_scope *sc)
{
    struct bw_rules_rt *rr = sc->rules;
    switch (k->kind) {
    case BW_KILL_RULE:
    case BW_KILL_RULESET: {
        _Atomic uint64_t *w;
        size_t b;
        if (!locate(k, rr, &w, &b))
            return;
        uint64_t m = 1ull << (b % 64);
        if (enabled)
            atomic_fetch_and_explicit(&w[b / 64], ~m, memory_order_relaxed);
        else
            atomic_fetch_or_explicit(&w[b / 64], m, memory_order_relaxed);
        return;
    }
    case BW_KILL_MODULE:
        switch (k->module) {
        case BW_MODULE_RULES:
            atomic_store_explicit(&rr->killed, !enabled, memory_order_relaxed);
            return;
        case BW_MODULE_BOT_SCORE:
            atomic_store_explicit(&sc->bot->killed, !enabled, memory_order_relaxed);
            return;
        case BW_MODULE__COUNT:
            break;
        }
        return;
    case BW_KILL__COUNT:
        break;
    }
}

bw_status bw_kill_set(struct bw_killswitches *ks, const struct bw_kill *k, bool enabled,
                      const struct bw_kill_scope *sc, bw_error *err)
{
    char name[BW_KILL_TARGET_MAX + 1];
    bw_kill_format(k, name, sizeof name);
    size_t i = 0;
    while (i < ks->n && !same(&ks->items[i], k))
        i++;
    /* Lifting one whose target has left the configuration is allowed: it
     * would otherwise stay in the set for good, and kill the target again
     * the day it came back. */
    bool lifting_held = enabled && i < ks->n;
    if (!lifting_held && !bw_kill_present(k, sc))
        return bw_error_set(err, "%s: no such %s in the running configuration", name,
                            k->kind == BW_KILL_RULE      ? "rule"
                            : k->kind == BW_KILL_RULESET ? "ruleset"
                                                         : "module");
    if (!enabled && i == ks->n) {
        if (ks->n == BW_MAX_KILLSWITCHES)
            return bw_error_set(err, "too many killswitches (at most %d)", BW_MAX_KILLSWITCHES);
        ks->items[ks->n++] = *k;
    } else if (enabled && i < ks->n) {
        ks->items[i] = ks->items[--ks->n];
    }
    apply(k, enabled, sc);
    return BW_OK;
}

void bw_kills_apply(const struct bw_killswitches *ks, const struct bw_kill_scope *sc)
{
    for (size_t i = 0; i < ks->n; i++)
        apply(&ks->items[i], false, sc);
}

static bw_status path_in(const char *dir, const char *name, char *out, size_t cap, bw_error *err)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return bw_error_set(err, "state_dir path too long");
    return BW_OK;
}

bw_status bw_kills_save(const struct bw_killswitches *ks, const char *state_dir, bw_error *err)
{
    char path[4200], tmp[4200];
    if (path_in(state_dir, BW_KILLSWITCH_FILE, path, sizeof path, err) != BW_OK ||
        path_in(state_dir, "." BW_KILLSWITCH_FILE ".tmp", tmp, sizeof tmp, err) != BW_OK)
        return BW_ERR;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return bw_error_set(err, "cannot write %s: %s", tmp, strerror(errno));
    bool ok = true;
    for (size_t i = 0; ok && i < ks->n; i++) {
        char line[BW_KILL_TARGET_MAX + 2];
        bw_kill_format(&ks->items[i], line, sizeof line - 1);
        size_t len = strlen(line);
        line[len++] = '\n';
        ok = write(fd, line, len) == (ssize_t)len;
    }
    int e = errno;
    if (ok && fsync(fd) != 0) {
        ok = false;
        e = errno;
    }
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        if (ok)
            e = errno;
        unlink(tmp);
        return bw_error_set(err, "cannot write %s: %s", path, strerror(e));
    }
    int dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return BW_OK;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

void bw_kills_parse(struct bw_killswitches *ks, bw_slice text, const char *name,
                    size_t *ret_skipped, bw_error *err)
{
    ks->n = 0;
    *ret_skipped = 0;
    /* A bad line is skipped and reported, not the whole file: one typo in
     * a file edited by hand must not bring back every rule an incident
     * turned off. */
    unsigned lineno = 0;
    const char *at = text.ptr, *stop = text.ptr + text.len;
    while (at < stop) {
        const char *nl = memchr(at, '\n', (size_t)(stop - at));
        const char *p = at, *end = nl ? nl : stop;
        at = nl ? nl + 1 : stop;
        lineno++;
        if ((size_t)(end - p) > BW_KILL_LINE_MAX) {
            if ((*ret_skipped)++ == 0)
                (void)bw_error_set(err, "%s:%u: line too long", name, lineno);
            continue;
        }
        /* A target with blanks (and a CR) around it, a comment, or nothing. */
        while (p < end && blank(*p))
            p++;
        while (end > p && blank(end[-1]))
            end--;
        if (p == end || *p == '#')
            continue;
        if (ks->n == BW_MAX_KILLSWITCHES) {
            if ((*ret_skipped)++ == 0)
                (void)bw_error_set(err, "%s:%u: more than %d killswitches", name, lineno,
                                   BW_MAX_KILLSWITCHES);
            continue;
        }
        bw_error e2;
        if (bw_kill_parse(bw_slice_make(p, (size_t)(end - p)), &ks->items[ks->n], &e2) != BW_OK) {
            if ((*ret_skipped)++ == 0)
                (void)bw_error_set(err, "%s:%u: %s", name, lineno, e2.msg);
            continue;
        }
        size_t i = 0;
        while (i < ks->n && !same(&ks->items[i], &ks->items[ks->n]))
            i++;
        if (i == ks->n)
            ks->n++; /* a repeated line is one killswitch */
    }
}

bw_status bw_kills_load(struct bw_killswitches *ks, const char *state_dir, size_t *ret_skipped,
                        bw_error *err)
{
    ks->n = 0;
    *ret_skipped = 0;
    char path[4200];
    if (path_in(state_dir, BW_KILLSWITCH_FILE, path, sizeof path, err) != BW_OK)
        return BW_ERR;
    /* Absent or empty (every killswitch lifted): the empty set, which
     * bw_read_file, made for artifacts that must have content, refuses. */
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return BW_OK;
    if (S_ISREG(st.st_mode) && st.st_size == 0)
        return BW_OK;
    static const struct bw_file_what what = {.noun = "the killswitch file",
                                             .kind = "killswitch file",
                                             .max_bytes = BW_KILLSWITCH_FILE_MAX};
    char *buf, msg[sizeof err->msg];
    size_t len;
    if (bw_read_file(path, &what, &buf, &len, msg, sizeof msg) != BW_OK)
        return bw_error_set(err, "cannot read %s: %s", path, msg);
    bw_kills_parse(ks, bw_slice_make(buf, len), path, ret_skipped, err);
    free(buf);
    return BW_OK;
}

bw_status bw_kills_keep_copy(const char *state_dir, bw_error *err)
{
    char path[4200], copy[4200];
    if (path_in(state_dir, BW_KILLSWITCH_FILE, path, sizeof path, err) != BW_OK ||
        path_in(state_dir, BW_KILLSWITCH_FILE ".rejected", copy, sizeof copy, err) != BW_OK)
        return BW_ERR;
    /* A second name for the same file: the next save renames a new file
     * over the first name and leaves this one as the operator wrote it. */
    if (unlink(copy) != 0 && errno != ENOENT)
        return bw_error_set(err, "cannot replace %s: %s", copy, strerror(errno));
    if (link(path, copy) != 0)
        return bw_error_set(err, "cannot keep a copy of %s as %s: %s", path, copy, strerror(errno));
    return BW_OK;
}
