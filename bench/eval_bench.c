/* The rules evaluator microbenchmark (`make bench-eval`; issue 3's bar:
 * under 1,000 ns per request for 100 rules, and the 2019 WAF regex linear).
 *
 *   build/release/bench/eval_bench [RULES.yaml [CORPUS.txt [ITERATIONS]]]
 *
 * 1. Loads the expressions of bench/rules/bench100.yaml. Until the ruleset
 *    loader (src/config) is on main, this program pulls the `expression:`
 *    scalars out of the YAML with libyaml directly and parses each with
 *    bw_rules_parse; then bw_rules_compile compiles all of them into one
 *    program, as the rules module does.
 * 2. Reads the recorded request corpus (bench/rules/corpus.txt, format at
 *    the top of that file) into request views.
 * 3. Checks that no rule is true for the benchmark request (GET /index.html,
 *    Host 127.0.0.1:PORT, no User-Agent or a browser one, from 127.0.0.1),
 *    so that in `make bench` every rule is evaluated on every request.
 * 4. Times ITERATIONS passes over the corpus (each request: one context,
 *    all rules evaluated in order, as a ruleset with no rule firing would;
 *    the per-request arena cleared between requests with bw_arena_clear, as
 *    src/modules/rules.c does), 5 repeats, and prints ns per request
 *    (median, min, max), and the same for the first 10, 25 and 50 rules.
 * 5. The 2019 WAF regex (the Cloudflare outage of 2019-07-02): whether it
 *    loads, and if it does, ns per KiB for 10, 100 and 1,000 KiB inputs.
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
#include <yaml.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "rules/eval.h"

#define REPEATS 5
#define MAX_EXPRS 1024
#define MAX_REQS 1024
#define MAX_HDRS 64

static const struct bw_rules_srcpos where0 = {
    .file = BW_SLICE_LIT("bench100.yaml"), .line = 1, .col = 1, .cont_col = 1};

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

/* ---- the ruleset: `expression:` scalars (and the rule ids) ----------------- */

struct rules {
    char *ids[MAX_EXPRS];
    char *texts[MAX_EXPRS];
    size_t n;
};

/* Collects every `expression:` (and `id:` at the same level) scalar of a
 * mapping inside the `rules:` sequence. Enough for bench100.yaml; the real
 * loader checks everything else. */
static int load_rules(const char *path, struct rules *r)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "eval_bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int depth = 0, rc = 0;
    bool key = true;
    enum { NONE, ID, EXPR } want = NONE;
    char *cur_id = NULL;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            fprintf(stderr, "eval_bench: %s:%zu: %s\n", path, p.problem_mark.line + 1,
                    p.problem);
            rc = -1;
            break;
        }
        yaml_event_type_t t = ev.type;
        if (t == YAML_MAPPING_START_EVENT) {
            depth++;
            key = true;
        } else if (t == YAML_MAPPING_END_EVENT) {
            depth--;
            key = true;
        } else if (t == YAML_SCALAR_EVENT) {
            const char *s = (const char *)ev.data.scalar.value;
            if (depth == 2 && key) {
                want = strcmp(s, "expression") == 0 ? EXPR : strcmp(s, "id") == 0 ? ID : NONE;
            } else if (depth == 2 && want == ID) {
                free(cur_id);
                cur_id = strdup(s);
            } else if (depth == 2 && want == EXPR && r->n < MAX_EXPRS) {
                r->ids[r->n] = strdup(cur_id ? cur_id : "?");
                r->texts[r->n++] = strndup(s, ev.data.scalar.length);
            }
            if (depth == 2)
                key = !key;
        }
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
    }
    free(cur_id);
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

struct prog {
    bw_arena snap;
    bw_regex_scratch scratch;
    struct bw_rules_prog *p;
};

static int prog_build(struct prog *g, char *const *texts, size_t n, const char *const *ids)
{
    bw_arena_init(&g->snap, 64 * 1024, 0);
    bw_regex_scratch_init(&g->scratch);
    g->p = NULL;
    const struct bw_rules_expr **exprs = calloc(n ? n : 1, sizeof *exprs);
    for (size_t i = 0; i < n; i++) {
        struct bw_rules_expr *e;
        struct bw_rules_diag d;
        if (bw_rules_parse(&g->snap, bw_slice_make(texts[i], strlen(texts[i])),
                           BW_RULES_PHASE_REQUEST, &where0, &e, &d) != BW_OK) {
            fprintf(stderr, "eval_bench: rule %s: %s", ids ? ids[i] : "?", d.text);
            free(exprs);
            return -1;
        }
        exprs[i] = e;
    }
    bw_error err;
    if (bw_rules_compile(&g->snap, exprs, n, &g->p, &err) != BW_OK) {
        fprintf(stderr, "eval_bench: compile: %s\n", err.msg);
        free(exprs);
        return -1;
    }
    free(exprs);
    if (bw_rules_prog_reserve(g->p, &g->scratch, &err) != BW_OK) {
        fprintf(stderr, "eval_bench: scratch: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void prog_done(struct prog *g)
{
    g->p = bw_rules_prog_free(g->p);
    bw_regex_scratch_done(&g->scratch);
    bw_arena_reset(&g->snap);
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
                bw_slice value = bw_slice_trim_ows(bw_slice_make(colon + 1, (size_t)(le - colon - 1)));
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

/* One pass: every request of the corpus, rules [0, nrules) each. Returns
 * the number of TRUE results (so nothing is optimised away). */
static unsigned pass_from(const struct prog *g, const struct req *reqs, size_t nreq,
                          size_t first, size_t nrules, bw_arena *ra)
{
    unsigned fired = 0;
    for (size_t r = 0; r < nreq; r++) {
        struct bw_rules_ctx cx;
        bw_rules_ctx_init(&cx, g->p, &reqs[r].v, ra, (bw_regex_scratch *)&g->scratch);
        for (size_t i = first; i < first + nrules; i++)
            fired += bw_rules_eval(&cx, i) == BW_TRI_TRUE;
        bw_arena_clear(ra); /* as the rules module does per request: no malloc */
    }
    return fired;
}

static unsigned pass(const struct prog *g, const struct req *reqs, size_t nreq, size_t nrules,
                     bw_arena *ra)
{
    return pass_from(g, reqs, nreq, 0, nrules, ra);
}

/* EVAL_BENCH_PER_RULE=1: the marginal cost of each rule, evaluated after
 * the ones before it in the same context (rules 0..i minus rules 0..i-1):
 * where the time goes. Noisy; a diagnostic, not a figure. */
static void per_rule(const struct prog *g, const struct rules *rules, const struct req *reqs,
                     size_t nreq, unsigned iters)
{
    bw_arena ra;
    bw_arena_init(&ra, 4096, 64 * 1024);
    double base = 0, prev = 0;
    for (size_t i = 0; i <= rules->n; i++) {
        double t[REPEATS];
        for (int k = 0; k < REPEATS; k++) {
            double t0 = now_ns();
            for (unsigned it = 0; it < iters; it++)
                sink += pass_from(g, reqs, nreq, 0, i, &ra);
            t[k] = (now_ns() - t0) / ((double)iters * (double)nreq);
        }
        qsort(t, REPEATS, sizeof t[0], cmp_double);
        if (i == 0) {
            base = t[REPEATS / 2];
            printf("per rule: empty context %.0f ns\n", base);
        } else {
            printf("  %6.0f ns  %s\n", t[REPEATS / 2] - prev, rules->ids[i - 1]);
        }
        prev = t[REPEATS / 2];
    }
}

/* ns per request over `iters` passes, REPEATS times: median, min, max. */
static void time_rules(const struct prog *g, const struct req *reqs, size_t nreq, size_t nrules,
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
            printf("  %4zu KiB %-10s %14.0f %14.1f %8s\n", kib[j],
                   kind ? "'1x..x='" : "'1x..x'", t[REPEATS / 2], t[REPEATS / 2] / (double)kib[j],
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

    static struct rules rules;
    if (load_rules(rules_path, &rules) != 0)
        return 1;
    struct prog g;
    if (prog_build(&g, rules.texts, rules.n, (const char *const *)rules.ids) != 0)
        return 1;

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
            b.h[b.v.headers.n++] = (struct bw_rv_header){BW_SLICE_LIT("Host"),
                                                         BW_SLICE_LIT("127.0.0.1:8080")};
            b.v.host = (struct bw_rv_opt_bytes){.known = true, .value = BW_SLICE_LIT("127.0.0.1:8080")};
            if (uas[u])
                b.h[b.v.headers.n++] = (struct bw_rv_header){
                    BW_SLICE_LIT("User-Agent"), bw_slice_make(uas[u], strlen(uas[u]))};
            (void)set_src(&b.v, "127.0.0.1");
            bw_arena ra;
            bw_arena_init(&ra, 4096, 0);
            struct bw_rules_ctx cx;
            bw_rules_ctx_init(&cx, g.p, &b.v, &ra, &g.scratch);
            for (size_t i = 0; i < rules.n; i++)
                if (bw_rules_eval(&cx, i) == BW_TRI_TRUE) {
                    fprintf(stderr, "eval_bench: rule %s fires on the benchmark request\n",
                            rules.ids[i]);
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
            struct bw_rules_ctx cx;
            bw_rules_ctx_init(&cx, g.p, &reqs[r].v, &ra, &g.scratch);
            size_t k = 0;
            for (size_t i = 0; i < rules.n; i++)
                k += bw_rules_eval(&cx, i) == BW_TRI_TRUE;
            fired += k;
            fired_reqs += k > 0;
            bw_arena_reset(&ra);
        }
        printf("rules: %zu from %s (%zu regex scan groups)\n", rules.n, rules_path,
               bw_rules_prog_scan_groups(g.p));
        printf("corpus: %zu requests from %s; %zu of them fire some rule (%zu firings)\n", nreq,
               corpus_path, fired_reqs, fired);
        printf("iterations: %u passes over the corpus, %d repeats (median, min, max)\n\n", iters,
               REPEATS);
    }

    printf("%-7s %12s %12s %12s %14s\n", "rules", "ns/req med", "min", "max", "ns/rule (med)");
    static const size_t counts[] = {1, 10, 25, 50, 75, 100};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        size_t k = counts[c] < rules.n ? counts[c] : rules.n;
        double r[3];
        time_rules(&g, reqs, nreq, k, iters, r);
        printf("%-7zu %12.0f %12.0f %12.0f %14.1f\n", k, r[0], r[1], r[2], r[0] / (double)k);
        if (k == rules.n)
            break;
    }

    if (getenv("EVAL_BENCH_PER_RULE"))
        per_rule(&g, &rules, reqs, nreq, iters / 10 + 1);
    bench_waf2019();
    prog_done(&g);
    for (size_t i = 0; i < rules.n; i++) {
        free(rules.ids[i]);
        free(rules.texts[i]);
    }
    free(cbuf);
    return 0;
}
