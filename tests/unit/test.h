/* A small unit-test harness. A test file defines TEST(name) functions and a
 * main() that RUNs them and returns t_done(). Each test prints "ok" or
 * "FAIL" with the first failing check; t_done() prints the totals line
 * "# N passed, M failed" that scripts/check.sh sums across suites. */
#ifndef BW_TEST_H
#define BW_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int t_passed, t_failed, t_cur_failed;
static const char *t_cur_name;

#define TEST(name) static void name(void)

#define RUN(name)                                                                                  \
    do {                                                                                           \
        t_cur_failed = 0;                                                                          \
        t_cur_name = #name;                                                                        \
        name();                                                                                    \
        if (t_cur_failed) {                                                                        \
            t_failed++;                                                                            \
        } else {                                                                                   \
            t_passed++;                                                                            \
            printf("ok   %s\n", #name);                                                            \
        }                                                                                          \
    } while (0)

#define T_FAILF(...)                                                                               \
    do {                                                                                           \
        if (!t_cur_failed)                                                                         \
            printf("FAIL %s\n", t_cur_name);                                                       \
        t_cur_failed = 1;                                                                          \
        printf("     %s:%d: ", __FILE__, __LINE__);                                                \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
    } while (0)

/* CHECK stops the test at the first failure; EXPECT would go on, but going
 * on after a failed precondition mostly produces noise. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            T_FAILF("check failed: %s", #cond);                                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long t_a = (long long)(a), t_b = (long long)(b);                                      \
        if (t_a != t_b) {                                                                          \
            T_FAILF("%s == %s: got %lld, want %lld", #a, #b, t_a, t_b);                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *t_a = (a), *t_b = (b);                                                         \
        if (strcmp(t_a, t_b) != 0) {                                                               \
            T_FAILF("%s == %s: got \"%s\", want \"%s\"", #a, #b, t_a, t_b);                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Compares a slice to a C string literal. */
#define CHECK_SLICE_EQ(s, lit)                                                                     \
    do {                                                                                           \
        bw_slice t_s = (s);                                                                        \
        const char *t_l = (lit);                                                                   \
        if (t_s.len != strlen(t_l) || memcmp(t_s.ptr, t_l, t_s.len) != 0) {                        \
            T_FAILF("%s == \"%s\": got \"%.*s\"", #s, t_l, (int)t_s.len, t_s.ptr);                 \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static inline int t_done(void)
{
    printf("# %d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

#endif
