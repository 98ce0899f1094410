/* Server selection (src/proxy/balance.c): smooth weighted round robin,
 * least connections, consistent hashing, and passive health (ejection after
 * max_fails). Upstreams come from small YAML configs through the loader. */
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "config/config.h"
#include "proxy/upstream.h"
#include "test.h"

struct up {
    struct bw_config *cfg;
    struct bw_upstream_rt rt;
    struct bw_upstream_local l;
};

/* servers: "address:weight" items, e.g. {"127.0.0.1:9001", 5}. */
struct srv {
    const char *addr;
    unsigned weight;
};

static bool up_open(struct up *u, const char *balance, const struct srv *s, size_t n,
                    const char *extra)
{
    char yaml[8192];
    size_t o = (size_t)snprintf(yaml, sizeof yaml,
                                "listen:\n  - address: 127.0.0.1:8080\n"
                                "routes:\n  - upstream: app\n"
                                "upstreams:\n  app:\n    balance: %s\n%s    servers:\n",
                                balance, extra ? extra : "");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(yaml + o, sizeof yaml - o,
                              "      - { address: \"%s\", weight: %u }\n", s[i].addr, s[i].weight);
    struct bw_config_diags diags;
    memset(u, 0, sizeof *u);
    if (bw_config_parse("t.yaml", yaml, o, &u->cfg, &diags) != BW_OK) {
        bw_config_diags_print(&diags, stdout);
        return false;
    }
    bw_error err;
    if (bw_upstream_rt_init(&u->rt, &u->cfg->upstreams[0], &err) != BW_OK)
        return false;
    return bw_upstream_local_init(&u->l, &u->rt, &err) == BW_OK;
}

static void up_close(struct up *u)
{
    bw_upstream_local_done(&u->l);
    bw_upstream_rt_done(&u->rt);
    u->cfg = bw_config_free(u->cfg);
}

static const struct bw_tried NONE = {.bits = {0}};

static long pick(struct up *u)
{
    return bw_balance_pick(&u->l, 1000, 0, &NONE, NULL);
}

/* ---- round robin --------------------------------------------------------- */

TEST(rr_smooth_sequence_5_1_1)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 5}, {"127.0.0.1:9002", 1}, {"127.0.0.1:9003", 1}};
    CHECK(up_open(&u, "round_robin", s, 3, NULL));
    /* nginx's smooth weighted round robin for {a:5, b:1, c:1}. */
    const char want[] = "aabacaa"
                        "aabacaa"
                        "aabacaa";
    char got[sizeof want] = {0};
    for (size_t i = 0; i < sizeof want - 1; i++) {
        long k = pick(&u);
        got[i] = k < 0 ? '-' : (char)('a' + k);
    }
    up_close(&u);
    CHECK_STR_EQ(got, want);
}

TEST(rr_exact_proportions_per_cycle)
{
    struct up u;
    const struct srv s[] = {
        {"127.0.0.1:9001", 3}, {"127.0.0.1:9002", 7}, {"127.0.0.1:9003", 1}, {"127.0.0.1:9004", 4}};
    CHECK(up_open(&u, "round_robin", s, 4, NULL));
    for (int cycle = 0; cycle < 20; cycle++) {
        unsigned c[4] = {0};
        for (int i = 0; i < 15; i++) {
            long k = pick(&u);
            CHECK(k >= 0 && k < 4);
            c[k]++;
        }
        CHECK_INT_EQ(c[0], 3);
        CHECK_INT_EQ(c[1], 7);
        CHECK_INT_EQ(c[2], 1);
        CHECK_INT_EQ(c[3], 4);
    }
    up_close(&u);
}

TEST(rr_equal_weights_alternate)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 1}};
    CHECK(up_open(&u, "round_robin", s, 2, NULL));
    long prev = pick(&u);
    for (int i = 0; i < 100; i++) {
        long k = pick(&u);
        CHECK(k == 0 || k == 1);
        CHECK(k != prev);
        prev = k;
    }
    up_close(&u);
}

TEST(rr_skips_tried_and_gives_up)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 5}, {"127.0.0.1:9002", 1}, {"127.0.0.1:9003", 1}};
    CHECK(up_open(&u, "round_robin", s, 3, NULL));
    struct bw_tried t = {.bits = {0}};
    bw_tried_add(&t, 0);
    for (int i = 0; i < 10; i++) {
        long k = bw_balance_pick(&u.l, 1000, 0, &t, NULL);
        CHECK(k == 1 || k == 2);
    }
    bw_tried_add(&t, 1);
    CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, 0, &t, NULL), 2);
    bw_tried_add(&t, 2);
    CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, 0, &t, NULL), -1);
    up_close(&u);
}

TEST(rr_skips_health_check_down)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 1}, {"127.0.0.1:9003", 1}};
    CHECK(up_open(&u, "round_robin", s, 3, NULL));
    atomic_store(&u.rt.servers[1].hc_down, true);
    for (int i = 0; i < 30; i++)
        CHECK(pick(&u) != 1);
    atomic_store(&u.rt.servers[0].hc_down, true);
    atomic_store(&u.rt.servers[2].hc_down, true);
    /* Every server down by health check: no guess, an error. */
    CHECK_INT_EQ(pick(&u), -1);
    atomic_store(&u.rt.servers[1].hc_down, false);
    CHECK_INT_EQ(pick(&u), 1);
    up_close(&u);
}

/* ---- passive health ------------------------------------------------------ */

TEST(ejection_after_max_fails_not_before)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 1}};
    CHECK(up_open(&u, "round_robin", s, 2, "    max_fails: 3\n    fail_timeout: 10s\n"));
    bw_server_report_failure(&u.rt, 0, 1000, "test");
    bw_server_report_failure(&u.rt, 0, 1000, "test");
    /* Two failures: still in rotation. */
    int seen0 = 0;
    for (int i = 0; i < 4; i++)
        seen0 += bw_balance_pick(&u.l, 1000, 0, &NONE, NULL) == 0;
    CHECK_INT_EQ(seen0, 2);
    bw_server_report_failure(&u.rt, 0, 1000, "test");
    for (int i = 0; i < 10; i++)
        CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, 0, &NONE, NULL), 1);
    /* Still ejected just before the timeout, back at it. */
    CHECK_INT_EQ(bw_balance_pick(&u.l, 10999, 0, &NONE, NULL), 1);
    CHECK_INT_EQ(bw_balance_pick(&u.l, 10999, 0, &NONE, NULL), 1);
    seen0 = 0;
    for (int i = 0; i < 4; i++)
        seen0 += bw_balance_pick(&u.l, 11000, 0, &NONE, NULL) == 0;
    CHECK_INT_EQ(seen0, 2);
    up_close(&u);
}

TEST(success_clears_failures_and_ejection)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 1}};
    CHECK(up_open(&u, "round_robin", s, 2, "    max_fails: 2\n"));
    bw_server_report_failure(&u.rt, 0, 1000, "test");
    bw_server_report_success(&u.rt, 0);
    bw_server_report_failure(&u.rt, 0, 1000, "test");
    /* Not consecutive: not ejected. */
    CHECK_INT_EQ(atomic_load(&u.rt.servers[0].ejected_until), 0);
    bw_server_report_failure(&u.rt, 0, 1000, "test");
    CHECK(atomic_load(&u.rt.servers[0].ejected_until) > 1000);
    bw_server_report_success(&u.rt, 0);
    CHECK_INT_EQ(atomic_load(&u.rt.servers[0].ejected_until), 0);
    CHECK_INT_EQ(atomic_load(&u.rt.servers[0].fails), 0);
    int seen0 = 0;
    for (int i = 0; i < 4; i++)
        seen0 += bw_balance_pick(&u.l, 1001, 0, &NONE, NULL) == 0;
    CHECK_INT_EQ(seen0, 2);
    up_close(&u);
}

TEST(max_fails_zero_never_ejects)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 1}};
    CHECK(up_open(&u, "round_robin", s, 2, "    max_fails: 0\n"));
    for (int i = 0; i < 1000; i++)
        bw_server_report_failure(&u.rt, 0, 1000, "test");
    CHECK_INT_EQ(atomic_load(&u.rt.servers[0].ejected_until), 0);
    int seen0 = 0;
    for (int i = 0; i < 4; i++)
        seen0 += bw_balance_pick(&u.l, 1000, 0, &NONE, NULL) == 0;
    CHECK_INT_EQ(seen0, 2);
    up_close(&u);
}

TEST(ejected_used_only_when_nothing_else)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 1}, {"127.0.0.1:9003", 1}};
    CHECK(up_open(&u, "round_robin", s, 3, "    max_fails: 1\n    fail_timeout: 1m\n"));
    bw_server_report_failure(&u.rt, 0, 1000, "test");
    bw_server_report_failure(&u.rt, 1, 1000, "test");
    for (int i = 0; i < 10; i++)
        CHECK_INT_EQ(pick(&u), 2);
    struct bw_tried t = {.bits = {0}};
    bool ejected = true;
    CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, 0, &t, &ejected), 2);
    CHECK(!ejected);
    bw_tried_add(&t, 2);
    /* Only ejected servers left: a guess beats a certain error... */
    long k = bw_balance_pick(&u.l, 1000, 0, &t, &ejected);
    CHECK(k == 0 || k == 1);
    CHECK(ejected);
    bw_tried_add(&t, (size_t)k);
    t.ejected = true;
    /* ...but one guess per request, not one per ejected server. */
    CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, 0, &t, NULL), -1);
    t.ejected = false;
    CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, 0, &t, NULL), 1 - k);
    /* Ejected but down by health check: never. */
    atomic_store(&u.rt.servers[2].hc_down, true);
    atomic_store(&u.rt.servers[1].hc_down, true);
    for (int i = 0; i < 5; i++)
        CHECK_INT_EQ(pick(&u), 0);
    up_close(&u);
}

TEST(every_server_ejected_one_guess_per_request_in_turn)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 1}, {"127.0.0.1:9003", 1}};
    CHECK(up_open(&u, "round_robin", s, 3, "    max_fails: 1\n    fail_timeout: 1m\n"));
    for (size_t i = 0; i < 3; i++)
        bw_server_report_failure(&u.rt, i, 1000, "test");
    /* Each request gets one guess; successive requests guess each server in
     * turn, so whichever comes back is found. */
    unsigned c[3] = {0};
    for (int i = 0; i < 9; i++) {
        struct bw_tried t = {.bits = {0}};
        bool ejected = false;
        long k = bw_balance_pick(&u.l, 1000, 0, &t, &ejected);
        CHECK(k >= 0 && k < 3 && ejected);
        c[k]++;
        bw_tried_add(&t, (size_t)k);
        t.ejected = true;
        CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, 0, &t, NULL), -1);
    }
    CHECK_INT_EQ(c[0], 3);
    CHECK_INT_EQ(c[1], 3);
    CHECK_INT_EQ(c[2], 3);
    up_close(&u);
}

/* ---- least connections --------------------------------------------------- */

TEST(least_conn_prefers_smallest_active_per_weight)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 2}, {"127.0.0.1:9003", 1}};
    CHECK(up_open(&u, "least_conn", s, 3, NULL));
    u.l.active[0] = 2, u.l.active[1] = 3, u.l.active[2] = 4; /* 2, 1.5, 4 */
    for (int i = 0; i < 6; i++)
        CHECK_INT_EQ(pick(&u), 1);
    u.l.active[1] = 5; /* 2.5 */
    for (int i = 0; i < 6; i++)
        CHECK_INT_EQ(pick(&u), 0);
    struct bw_tried t = {.bits = {0}};
    bw_tried_add(&t, 0);
    CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, 0, &t, NULL), 1);
    /* Ties rotate instead of always hitting the first server. */
    u.l.active[0] = u.l.active[2] = 0, u.l.active[1] = 0;
    unsigned c[3] = {0};
    for (int i = 0; i < 30; i++) {
        long k = pick(&u);
        CHECK(k >= 0 && k < 3);
        c[k]++;
    }
    CHECK(c[0] > 0 && c[1] > 0 && c[2] > 0);
    up_close(&u);
}

TEST(least_conn_ties_go_by_weight)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 3}, {"127.0.0.1:9003", 96}};
    CHECK(up_open(&u, "least_conn", s, 3, NULL));
    /* Requests that finish before the next one (every server idle at each
     * pick): the weights still set the shares, as in nginx. */
    unsigned c[3] = {0};
    for (int i = 0; i < 1000; i++) {
        long k = pick(&u);
        CHECK(k >= 0 && k < 3);
        c[k]++;
    }
    CHECK_INT_EQ(c[0], 10);
    CHECK_INT_EQ(c[1], 30);
    CHECK_INT_EQ(c[2], 960);
    /* Tied at a non-zero load too: 2/1 and 2/1 against 5/1. */
    const struct srv t[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 1}, {"127.0.0.1:9003", 1}};
    up_close(&u);
    CHECK(up_open(&u, "least_conn", t, 3, NULL));
    u.l.active[0] = 2, u.l.active[1] = 2, u.l.active[2] = 5;
    unsigned d[3] = {0};
    for (int i = 0; i < 10; i++)
        d[pick(&u)]++;
    CHECK_INT_EQ(d[0], 5);
    CHECK_INT_EQ(d[1], 5);
    CHECK_INT_EQ(d[2], 0);
    up_close(&u);
}

TEST(least_conn_follows_active_counts)
{
    struct up u;
    const struct srv s[] = {{"127.0.0.1:9001", 1}, {"127.0.0.1:9002", 3}};
    CHECK(up_open(&u, "least_conn", s, 2, NULL));
    /* Requests that never finish: the load settles at the weight ratio. */
    for (int i = 0; i < 400; i++) {
        long k = pick(&u);
        CHECK(k == 0 || k == 1);
        u.l.active[k]++;
    }
    CHECK_INT_EQ(u.l.active[0], 100);
    CHECK_INT_EQ(u.l.active[1], 300);
    up_close(&u);
}

/* ---- consistent hashing -------------------------------------------------- */

static uint32_t key_hash(int i)
{
    char k[32];
    int n = snprintf(k, sizeof k, "client-%d", i);
    return bw_hash32(k, (size_t)n);
}

static const char *picked_addr(struct up *u, uint32_t key)
{
    long k = bw_balance_pick(&u->l, 1000, key, &NONE, NULL);
    return k < 0 ? "<none>" : u->rt.servers[k].cfg->addr.text;
}

TEST(hash_same_key_same_server)
{
    struct up u;
    const struct srv s[] = {{"10.0.0.1:80", 1}, {"10.0.0.2:80", 1}, {"10.0.0.3:80", 1}};
    CHECK(up_open(&u, "hash(ip.src)", s, 3, NULL));
    unsigned c[3] = {0};
    for (int i = 0; i < 1000; i++) {
        long a = bw_balance_pick(&u.l, 1000, key_hash(i), &NONE, NULL);
        long b = bw_balance_pick(&u.l, 1000, key_hash(i), &NONE, NULL);
        CHECK(a >= 0 && a < 3);
        CHECK_INT_EQ(a, b);
        c[a]++;
    }
    /* Roughly even: each of three servers gets at least a fifth. */
    for (int i = 0; i < 3; i++)
        CHECK(c[i] > 200);
    up_close(&u);
}

TEST(hash_adding_a_server_moves_few_keys_and_only_to_it)
{
    struct up u3, u4;
    const struct srv s[] = {
        {"10.0.0.1:80", 1}, {"10.0.0.2:80", 1}, {"10.0.0.3:80", 1}, {"10.0.0.4:80", 1}};
    CHECK(up_open(&u3, "hash(ip.src)", s, 3, NULL));
    CHECK(up_open(&u4, "hash(ip.src)", s, 4, NULL));
    int moved = 0;
    for (int i = 0; i < 1000; i++) {
        const char *a = picked_addr(&u3, key_hash(i));
        const char *b = picked_addr(&u4, key_hash(i));
        if (strcmp(a, b) != 0) {
            moved++;
            CHECK_STR_EQ(b, "10.0.0.4:80");
        }
    }
    up_close(&u3);
    up_close(&u4);
    /* Ideal is 1/4; allow up to 35%, and some must move. */
    CHECK(moved <= 350);
    CHECK(moved >= 150);
}

TEST(hash_server_order_does_not_matter)
{
    struct up a, b;
    const struct srv s1[] = {{"10.0.0.1:80", 1}, {"10.0.0.2:80", 2}, {"10.0.0.3:80", 1}};
    const struct srv s2[] = {{"10.0.0.3:80", 1}, {"10.0.0.1:80", 1}, {"10.0.0.2:80", 2}};
    CHECK(up_open(&a, "hash(http.host)", s1, 3, NULL));
    CHECK(up_open(&b, "hash(http.host)", s2, 3, NULL));
    for (int i = 0; i < 1000; i++)
        CHECK_STR_EQ(picked_addr(&a, key_hash(i)), picked_addr(&b, key_hash(i)));
    up_close(&a);
    up_close(&b);
}

TEST(hash_tried_and_down_fall_through_the_ring)
{
    struct up u;
    const struct srv s[] = {{"10.0.0.1:80", 1}, {"10.0.0.2:80", 1}, {"10.0.0.3:80", 1}};
    CHECK(up_open(&u, "hash(ip.src)", s, 3, NULL));
    for (int i = 0; i < 200; i++) {
        uint32_t key = key_hash(i);
        long first = bw_balance_pick(&u.l, 1000, key, &NONE, NULL);
        CHECK(first >= 0);
        struct bw_tried t = {.bits = {0}};
        bw_tried_add(&t, (size_t)first);
        long second = bw_balance_pick(&u.l, 1000, key, &t, NULL);
        CHECK(second >= 0 && second != first);
        /* Stable too: a retry goes to the same next server every time. */
        CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, key, &t, NULL), second);
        bw_tried_add(&t, (size_t)second);
        long third = bw_balance_pick(&u.l, 1000, key, &t, NULL);
        CHECK(third >= 0 && third != first && third != second);
        bw_tried_add(&t, (size_t)third);
        CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, key, &t, NULL), -1);
    }
    atomic_store(&u.rt.servers[1].hc_down, true);
    for (int i = 0; i < 200; i++)
        CHECK(bw_balance_pick(&u.l, 1000, key_hash(i), &NONE, NULL) != 1);
    up_close(&u);
}

/* ---- max_conns ------------------------------------------------------------- */

TEST(max_conns_full_servers_are_skipped_by_every_policy)
{
    static const char *const policies[] = {"round_robin", "least_conn", "hash(ip.src)"};
    for (size_t p = 0; p < 3; p++) {
        struct up u;
        const struct srv s[] = {{"10.0.0.1:80", 1}, {"10.0.0.2:80", 1}, {"10.0.0.3:80", 1}};
        CHECK(up_open(&u, policies[p], s, 3, NULL));
        /* max_conns 2, 2 and none (the loader's parsing of it is test_load's). */
        struct bw_config_server *cs = (struct bw_config_server *)u.cfg->upstreams[0].servers;
        cs[0].max_conns = cs[1].max_conns = 2;
        CHECK(!bw_balance_any_full(&u.l));
        /* At the limit: never picked, whatever the key or the turn. */
        u.l.active[0] = 2;
        CHECK(bw_balance_any_full(&u.l));
        for (int i = 0; i < 50; i++)
            CHECK(bw_balance_pick(&u.l, 1000, key_hash(i), &NONE, NULL) != 0);
        /* Just under it: picked again (alone in the running). */
        u.l.active[0] = 1;
        u.l.active[1] = 2;
        struct bw_tried t = {.bits = {0}};
        bw_tried_add(&t, 2);
        CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, key_hash(7), &t, NULL), 0);
        /* Every server full or tried: none; no limit (0) is never full. */
        u.l.active[0] = 2;
        CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, key_hash(7), &t, NULL), -1);
        u.l.active[2] = 1000000;
        CHECK_INT_EQ(bw_balance_pick(&u.l, 1000, key_hash(7), &NONE, NULL), 2);
        u.l.active[0] = u.l.active[1] = u.l.active[2] = 0;
        up_close(&u);
    }
}

int main(void)
{
    /* Ejections log a warning each; keep the test output readable. */
    bw_log_set_level(BW_LOG_ERROR);
    RUN(rr_smooth_sequence_5_1_1);
    RUN(rr_exact_proportions_per_cycle);
    RUN(rr_equal_weights_alternate);
    RUN(rr_skips_tried_and_gives_up);
    RUN(rr_skips_health_check_down);
    RUN(ejection_after_max_fails_not_before);
    RUN(success_clears_failures_and_ejection);
    RUN(max_fails_zero_never_ejects);
    RUN(ejected_used_only_when_nothing_else);
    RUN(every_server_ejected_one_guess_per_request_in_turn);
    RUN(least_conn_prefers_smallest_active_per_weight);
    RUN(least_conn_ties_go_by_weight);
    RUN(least_conn_follows_active_counts);
    RUN(hash_same_key_same_server);
    RUN(hash_adding_a_server_moves_few_keys_and_only_to_it);
    RUN(hash_server_order_does_not_matter);
    RUN(hash_tried_and_down_fall_through_the_ring);
    RUN(max_conns_full_servers_are_skipped_by_every_policy);
    return t_done();
}
