/* The rules evaluator microbenchmark (`make bench-eval`; issue 3's bar:
 * under 1,000 ns per request for 100 rules, and the 2019 WAF regex linear).
 *
 *   build/release/bench/eval_bench [RULES.yaml [CORPUS.txt [ITERATIONS]]]
 *
 * 1. Loads bench/rules/bench100.yaml with the ruleset loader
 *    (bw_ruleset_parse) and builds a rulebook of it (bw_rulebook_build), as
 *    the rules module does; for the first N rules, a rulebook of a copy of
 *    the ruleset cut after rule N.
 * 2. Reads the recorded request corpus (bench/rules/corpus.txt, format at
 *    the top of that file) into request views.
 * 3. Checks that no rule is true for the benchmark request (GET /index.html,
 *    Host 127.0.0.1:PORT, no User-Agent or a browser one, from 127.0.0.1),
 *    so that in `make bench` every rule is evaluated on every request.
 * 4. Times ITERATIONS passes over the corpus, 5 repeats, and prints ns per
 *    request (median, min, max) for the first 1, 10, 25, 50, 75 and 100
 *    rules. Each request is what src/modules/rules.c does: one context,
 *    bw_rulebook_run of the request phase (rules in order, stopping at the
 *    first terminating action, with killswitch words and match counters),
 *    then the per-request arena cleared with bw_arena_clear.
 *    EVAL_BENCH_MODE=exprs times the previous measure instead: every
 *    expression of the first N evaluated with bw_rules_eval, none stopping
 *    the others (the figures of rounds before 2026-11-28).
 * 5. The 2019 WAF regex (the Cloudflare outage of 2019-07-02): whether it
 *    loads, and if it does, ns per KiB for 10, 100 and 1,000 KiB inputs.
 *
 * EVAL_BENCH_ONLY=N times the first N rules only and skips step 5 (for
 * callgrind and perf). EVAL_BENCH_PER_RULE=1 adds each rule's marginal cost.
 *
 * Timing is this thread's CPU time (CLOCK_THREAD_CPUTIME_ID) around whole
 * passes, so time spent descheduled on a shared machine is not counted;
 * medians of 5 repeats because caches are still shared. Exit status 1 when
 * something does not load. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "config/rulesets.h"
#include "rules/eval.h"
#include "rules/ruleset.h"

#define REPEATS 5
#define MAX_REQS 1024
#define MAX_HDRS 64

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *read_file(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "eval_bench: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *ret_len = len;
    return buf;
}

/* ---- the ruleset, as the rules module loads it ------------------------------ */

struct prog {
    bw_arena snap;
    bw_regex_scratch scratch;
    struct bw_ruleset set;
    struct bw_rulebook *book;
    struct bw_rules_prog *p; /* the book's request-phase program */
    struct bw_killset kills;
    _Atomic uint64_t *matches;
};

/* Parses text as a ruleset, keeps its first nrules rules (all when nrules
 * is 0 or more than it has), builds a rulebook and reserves the scratch. */
static int prog_build(struct prog *g, const char *path, const char *text, size_t len, size_t nrules)
{
    bw_arena_init(&g->snap, 64 * 1024, 0);
    bw_regex_scratch_init(&g->scratch);
    g->book = NULL;
    g->p = NULL;
    static struct bw_config_diags diags;
    memset(&diags, 0, sizeof diags);
    if (bw_ruleset_parse(&g->snap, path, text, len, &g->set, &diags) != BW_OK) {
        bw_config_diags_print(&diags, stderr);
        return -1;
    }
    if (nrules && nrules < g->set.nrules)
        g->set.nrules = nrules;
    g->set.ntests = 0; /* the embedded tests are the loader's business, not timed */
    bw_error err;
    if (bw_rulebook_build(&g->snap, &g->set, 1, NULL, 0, &g->book, &err) != BW_OK) {
        fprintf(stderr, "eval_bench: %s: %s\n", path, err.msg);
        return -1;
    }
    g->p = g->book->prog[BW_RULES_PHASE_REQUEST];
    g->matches = bw_arena_alloc(&g->snap, (g->book->nrules + 1) * sizeof *g->matches);
    if (!g->p || !g->matches || bw_killset_alloc(&g->snap, g->book, &g->kills) != BW_OK) {
        fprintf(stderr, "eval_bench: %s: no request-phase program\n", path);
        return -1;
    }
    if (bw_rules_prog_reserve(g->p, &g->scratch, &err) != BW_OK) {
        fprintf(stderr, "eval_bench: scratch: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void prog_done(struct prog *g)
{
    g->book = bw_rulebook_free(g->book);
    g->p = NULL;
    bw_regex_scratch_done(&g->scratch);
    bw_arena_reset(&g->snap);
}

static const char *rule_id(const struct prog *g, size_t i, char *buf, size_t cap)
{
    bw_slice id = g->set.rules[i].id;
    snprintf(buf, cap, "%.*s", (int)id.len, id.ptr);
    return buf;
}

/* ---- the corpus ------------------------------------------------------------ */

struct req {
    struct bw_rv_header h[MAX_HDRS];
    struct bw_request_view v;
};

static bool set_src(struct bw_request_view *v, const char *addr)
{
    v->src.known = true;
    memset(&v->src.addr, 0, sizeof v->src.addr);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&v->src.addr;
        s6->sin6_family = AF_INET6;
        return inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&v->src.addr;
    s4->sin_family = AF_INET;
    return inet_pton(AF_INET, addr, &s4->sin_addr) == 1;
}

static void set_target(struct bw_request_view *v, const char *t, size_t len)
{
    v->uri = bw_slice_make(t, len);
    const char *q = memchr(t, '?', len);
    size_t plen = q ? (size_t)(q - t) : len;
    v->raw_path = bw_slice_make(t, plen);
    v->query = q ? bw_slice_make(q + 1, len - plen - 1) : BW_SLICE_EMPTY;
}

/* Corpus: requests separated by blank lines; each starts with "@ ADDR [ssl]"
 * then the request line and header lines; '#' lines outside a request are
 * comments. The buffer is modified in place (NULs) and must outlive reqs. */
static size_t load_corpus(char *buf, size_t len, struct req *reqs, size_t max)
{
    size_t n = 0;
    struct req *cur = NULL;
    int line_no = 0;
    char *p = buf, *end = buf + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        *le = '\0';
        size_t ll = (size_t)(le - p);
        if (ll && p[ll - 1] == '\r')
            p[--ll] = '\0';
        line_no++;
        if (ll == 0) {
            cur = NULL;
        } else if (!cur && p[0] == '#') {
            /* comment */
        } else if (!cur && p[0] == '@') {
            if (n == max)
                break;
            cur = &reqs[n++];
            memset(cur, 0, sizeof *cur);
            cur->v.headers.items = cur->h;
            char *addr = p + 1;
            while (*addr == ' ')
                addr++;
            char *sp = strchr(addr, ' ');
            if (sp) {
                *sp = '\0';
                cur->v.ssl = strstr(sp + 1, "ssl") != NULL;
            }
            if (!set_src(&cur->v, addr))
                fprintf(stderr, "eval_bench: corpus line %d: bad address\n", line_no);
        } else if (cur && cur->v.method.len == 0) {
            char *s1 = strchr(p, ' ');
            char *s2 = s1 ? strchr(s1 + 1, ' ') : NULL;
            if (!s2) {
                fprintf(stderr, "eval_bench: corpus line %d: bad request line\n", line_no);
                n--;
                cur = NULL;
            } else {
                cur->v.method = bw_slice_make(p, (size_t)(s1 - p));
                set_target(&cur->v, s1 + 1, (size_t)(s2 - s1 - 1));
            }
        } else if (cur) {
            char *colon = strchr(p, ':');
            if (!colon || cur->v.headers.n == MAX_HDRS) {
                fprintf(stderr, "eval_bench: corpus line %d: bad header\n", line_no);
            } else {
                bw_slice name = bw_slice_make(p, (size_t)(colon - p));
                bw_slice value =
                    bw_slice_trim_ows(bw_slice_make(colon + 1, (size_t)(le - colon - 1)));
                cur->h[cur->v.headers.n++] = (struct bw_rv_header){name, value};
                if (bw_slice_eq_nocase(name, BW_SLICE_LIT("host")))
                    cur->v.host = (struct bw_rv_opt_bytes){.known = true, .value = value};
            }
        }
        p = le + 1;
    }
    return n;
}

/* ---- timing ----------------------------------------------------------------- */

static volatile unsigned sink;
static bool exprs_mode; /* EVAL_BENCH_MODE=exprs */

/* One request as src/modules/rules.c runs it: a context, the request
 * phase's rulesets, the arena cleared. Returns 1 when a rule ended the
 * phase. */
static unsigned run_book(struct prog *g, const struct req *r, bw_arena *ra)
{
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g->p, &r->v, ra, &g->scratch);
    struct bw_rules_env env = {.kills = g->kills, .match_counts = g->matches, .tracing = false};
    struct bw_rules_request st;
    bw_rules_request_init(&st);
    struct bw_rules_verdict verdict;
    bw_rulebook_run(g->book, BW_RULES_PHASE_REQUEST, &cx, &env, &st, &verdict);
    bw_arena_clear(ra);
    return verdict.kind != BW_VERDICT_CONTINUE;
}

/* One request the way of rounds before: expressions [0, nrules), each
 * evaluated, none stopping the others. Returns the number of TRUE. */
static unsigned run_exprs(struct prog *g, const struct req *r, size_t nrules, bw_arena *ra)
{
    unsigned fired = 0;
    struct bw_rules_ctx cx;
    bw_rules_ctx_init(&cx, g->p, &r->v, ra, &g->scratch);
    for (size_t i = 0; i < nrules; i++)
        fired += bw_rules_eval(&cx, i) == BW_TRI_TRUE;
    bw_arena_clear(ra); /* as the rules module does per request: no malloc */
    return fired;
}

/* One pass over the corpus. g holds the rulebook of the first nrules rules
 * (rulebook mode) or of all of them (exprs mode). */
__attribute__((noinline)) static unsigned pass(struct prog *g, const struct req *reqs, size_t nreq,
                                               size_t nrules, bw_arena *ra)
{
    unsigned fired = 0;
    for (size_t r = 0; r < nreq; r++)
        fired += exprs_mode ? run_exprs(g, &reqs[r], nrules, ra) : run_book(g, &reqs[r], ra);
    return fired;
}

/* EVAL_BENCH_PER_RULE=1: the marginal cost of each rule, evaluated after
 * the ones before it in the same context (rules 0..i minus rules 0..i-1):
 * where the time goes. Noisy; a diagnostic, not a figure. Expressions, as
 * in exprs mode. */
static void per_rule(struct prog *g, const struct req *reqs, size_t nreq, unsigned iters)
{
    bw_arena ra;
    bw_arena_init(&ra, 4096, 64 * 1024);
    double base = 0, prev = 0;
    size_t n = bw_rules_prog_count(g->p);
    for (size_t i = 0; i <= n; i++) {
        double t[REPEATS];
        for (int k = 0; k < REPEATS; k++) {
            double t0 = now_ns();
            for (unsigned it = 0; it < iters; it++)
                for (size_t r = 0; r < nreq; r++)
                    sink += run_exprs(g, &reqs[r], i, &ra);
            t[k] = (now_ns() - t0) / ((double)iters * (double)nreq);
        }
        qsort(t, REPEATS, sizeof t[0], cmp_double);
        char id[160];
        if (i == 0) {
            base = t[REPEATS / 2];
            printf("per rule: empty context %.0f ns\n", base);
        } else {
            printf("  %6.0f ns  %s\n", t[REPEATS / 2] - prev, rule_id(g, i - 1, id, sizeof id));
        }
        prev = t[REPEATS / 2];
    }
    bw_arena_reset(&ra);
}

/* ns per request over `iters` passes, REPEATS times: median, min, max. */
static void time_rules(struct prog *g, const struct req *reqs, size_t nreq, size_t nrules,
                       unsigned iters, double ret[3])
{
    bw_arena ra;
    bw_arena_init(&ra, 4096, 64 * 1024);
    double t[REPEATS];
    sink += pass(g, reqs, nreq, nrules, &ra); /* warm-up */
    for (int k = 0; k < REPEATS; k++) {
        double t0 = now_ns();
        for (unsigned it = 0; it < iters; it++)
            sink += pass(g, reqs, nreq, nrules, &ra);
        t[k] = (now_ns() - t0) / ((double)iters * (double)nreq);
    }
    bw_arena_reset(&ra);
    qsort(t, REPEATS, sizeof t[0], cmp_double);
    ret[0] = t[REPEATS / 2];
    ret[1] = t[0];
    ret[2] = t[REPEATS - 1];
}

/* ---- the 2019 WAF regex ------------------------------------------------------ */

/* The expression of the WAF rule behind the 2019-07-02 outage, as published
 * in Cloudflare's post-mortem. */
static const char waf2019[] =
    "(?:(?:\\\"|'|\\]|\\}|\\\\|\\d|(?:nan|infinity|true|false|null|undefined|symbol|math)|"
    "\\`|\\-|\\+)+[)]*;?((?:\\s|-|~|!|{}|\\|\\||\\+)*.*(?:.*=.*)))";

static void bench_waf2019(void)
{
    printf("\n2019 WAF regex: %s\n", waf2019);
    bw_slice pat = bw_slice_make(waf2019, sizeof waf2019 - 1);
    bw_regex_db *db = NULL;
    size_t bad;
    bw_error err;
    if (bw_regex_db_build(&pat, 1, &db, &bad, &err) != BW_OK) {
        printf("  rejected at load: %s\n", err.msg);
        return;
    }
    bw_regex_scratch s;
    bw_regex_scratch_init(&s);
    if (bw_regex_scratch_reserve(&s, db, &err) != BW_OK) {
        printf("  scratch: %s\n", err.msg);
        db = bw_regex_db_free(db);
        return;
    }
    printf("  accepted (vectorscan, %zu bytes of database)\n", bw_regex_db_bytes(db));
    /* The input that made PCRE backtrack: x=x repeated, then no closing
     * match... the worst case for .*(?:.*=.*) is many '=' free bytes after a
     * trigger, so the input is "1" then 'x' * n (no '=': no match). Also a
     * matching input (an '=' at the very end). */
    static const size_t kib[] = {10, 100, 1000};
    printf("  %-8s %-10s %14s %14s %8s\n", "input", "kind", "ns/scan", "ns/KiB", "match");
    for (int kind = 0; kind < 2; kind++)
        for (size_t j = 0; j < sizeof kib / sizeof kib[0]; j++) {
            size_t len = kib[j] * 1024;
            char *in = malloc(len);
            in[0] = '1';
            memset(in + 1, 'x', len - 1);
            if (kind == 1)
                in[len - 1] = '=';
            unsigned iters = (unsigned)(20000 / kib[j]) + 3;
            double t[REPEATS];
            uint64_t bits[1] = {0};
            for (int k = 0; k < REPEATS; k++) {
                double t0 = now_ns();
                for (unsigned it = 0; it < iters; it++)
                    if (bw_regex_scan(db, &s, bw_slice_make(in, len), bits, 1, &err) != BW_OK)
                        printf("  scan failed: %s\n", err.msg);
                t[k] = (now_ns() - t0) / iters;
            }
            qsort(t, REPEATS, sizeof t[0], cmp_double);
            printf("  %4zu KiB %-10s %14.0f %14.1f %8s\n", kib[j], kind ? "'1x..x='" : "'1x..x'",
                   t[REPEATS / 2], t[REPEATS / 2] / (double)kib[j],
                   bw_regex_bit(bits, 0) ? "yes" : "no");
            free(in);
        }
    bw_regex_scratch_done(&s);
    db = bw_regex_db_free(db);
}

/* ---- main ------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *rules_path = argc > 1 ? argv[1] : "bench/rules/bench100.yaml";
    const char *corpus_path = argc > 2 ? argv[2] : "bench/rules/corpus.txt";
    unsigned iters = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 2000;
    if (iters == 0)
        iters = 1;
    const char *mode = getenv("EVAL_BENCH_MODE");
    exprs_mode = mode && strcmp(mode, "exprs") == 0;

    size_t rlen;
    char *rtext = read_file(rules_path, &rlen);
    if (!rtext)
        return 1;
    static struct prog g;
    if (prog_build(&g, rules_path, rtext, rlen, 0) != 0)
        return 1;
    size_t nrules = g.set.nrules;

    size_t clen;
    char *cbuf = read_file(corpus_path, &clen);
    if (!cbuf)
        return 1;
    static struct req reqs[MAX_REQS];
    size_t nreq = load_corpus(cbuf, clen, reqs, MAX_REQS);
    if (nreq == 0) {
        fprintf(stderr, "eval_bench: %s: no requests\n", corpus_path);
        return 1;
    }

    /* The benchmark request must not fire any rule (with and without a UA). */
    static const char *const uas[] = {
        NULL, "bulwark-bench",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"};
    static const char *const targets[] = {"/index.html", "/"};
    int bad = 0;
    for (size_t u = 0; u < 3; u++)
        for (size_t t = 0; t < 2; t++) {
            struct req b;
            memset(&b, 0, sizeof b);
            b.v.method = BW_SLICE_LIT("GET");
            set_target(&b.v, targets[t], strlen(targets[t]));
            b.v.headers.items = b.h;
            b.h[b.v.headers.n++] =
                (struct bw_rv_header){BW_SLICE_LIT("Host"), BW_SLICE_LIT("127.0.0.1:8080")};
            b.v.host =
                (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("127.0.0.1:8080")};
            if (uas[u])
                b.h[b.v.headers.n++] = (struct bw_rv_header){BW_SLICE_LIT("User-Agent"),
                                                             bw_slice_make(uas[u], strlen(uas[u]))};
            (void)set_src(&b.v, "127.0.0.1");
            bw_arena ra;
            bw_arena_init(&ra, 4096, 0);
            struct bw_rules_ctx cx;
            bw_rules_ctx_init(&cx, g.p, &b.v, &ra, &g.scratch);
            for (size_t i = 0; i < nrules; i++)
                if (bw_rules_eval(&cx, i) == BW_TRI_TRUE) {
                    char id[160];
                    fprintf(stderr, "eval_bench: rule %s fires on the benchmark request\n",
                            rule_id(&g, i, id, sizeof id));
                    bad = 1;
                }
            bw_arena_reset(&ra);
        }
    if (bad)
        return 1;

    /* What the corpus fires, for the record. */
    {
        bw_arena ra;
        bw_arena_init(&ra, 4096, 0);
        size_t fired_reqs = 0, fired = 0;
        for (size_t r = 0; r < nreq; r++) {
            unsigned k = run_exprs(&g, &reqs[r], nrules, &ra);
            fired += k;
            fired_reqs += k > 0;
        }
        bw_arena_reset(&ra);
        printf("rules: %zu from %s (%zu regex scan groups)\n", nrules, rules_path,
               bw_rules_prog_scan_groups(g.p));
        printf("corpus: %zu requests from %s; %zu of them fire some rule (%zu firings)\n", nreq,
               corpus_path, fired_reqs, fired);
        printf("mode: %s\n", exprs_mode ? "exprs (every expression, bw_rules_eval each)"
                                        : "rulebook (bw_rulebook_run, as the rules module)");
        printf("iterations: %u passes over the corpus, %d repeats (median, min, max)\n\n", iters,
               REPEATS);
    }

    printf("%-7s %12s %12s %12s %14s\n", "rules", "ns/req med", "min", "max", "ns/rule (med)");
    static const size_t counts_all[] = {1, 10, 25, 50, 75, 100};
    const size_t *counts = counts_all;
    size_t ncounts = sizeof counts_all / sizeof counts_all[0];
    /* EVAL_BENCH_ONLY=N: time the first N rules only (for callgrind and
     * perf, which then see one configuration). */
    size_t only = 0;
    if (getenv("EVAL_BENCH_ONLY")) {
        only = (size_t)strtoul(getenv("EVAL_BENCH_ONLY"), NULL, 10);
        counts = &only;
        ncounts = 1;
    }
    for (size_t c = 0; c < ncounts; c++) {
        size_t k = counts[c] < nrules ? counts[c] : nrules;
        double r[3];
        if (exprs_mode || k == nrules) {
            time_rules(&g, reqs, nreq, k, iters, r);
        } else {
            static struct prog gk;
            if (prog_build(&gk, rules_path, rtext, rlen, k) != 0)
                return 1;
            time_rules(&gk, reqs, nreq, k, iters, r);
            prog_done(&gk);
        }
        printf("%-7zu %12.0f %12.0f %12.0f %14.1f\n", k, r[0], r[1], r[2], r[0] / (double)k);
        if (k == nrules)
            break;
    }

    if (getenv("EVAL_BENCH_PER_RULE"))
        per_rule(&g, reqs, nreq, iters / 10 + 1);
    if (!getenv("EVAL_BENCH_ONLY"))
        bench_waf2019();
    prog_done(&g);
    free(rtext);
    free(cbuf);
    return 0;
}
