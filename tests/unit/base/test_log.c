/* The error log (src/base/log.c): level filter, line format, and the
 * per-site rate limiter (at most BW_LOG_BURST lines per site per second,
 * the suppressed count reported on the site's next line). stderr is
 * redirected to a temporary file with dup2 while a test writes.
 *
 * The limiter counts per wall-clock second, so a burst is started right
 * after a second begins; if the clock still crosses into the next second
 * during the burst (a very busy machine), the burst is retried. Nothing
 * asserts how long anything takes. */
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "test.h"

static int saved_stderr = -1;
static FILE *capture;

static void capture_start(void)
{
    fflush(stderr);
    capture = tmpfile();
    saved_stderr = dup(STDERR_FILENO);
    dup2(fileno(capture), STDERR_FILENO);
}

/* Restores stderr; returns what was written (static buffer). */
static const char *capture_end(void)
{
    static char text[65536];
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    rewind(capture);
    size_t n = fread(text, 1, sizeof text - 1, capture);
    text[n] = '\0';
    fclose(capture);
    return text;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static size_t count_sub(const char *s, const char *sub)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, sub)) != NULL; p++)
        n++;
    return n;
}

static time_t now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec;
}

/* Waits until a new wall-clock second has begun. */
static time_t next_second(void)
{
    time_t s = now_sec();
    while (now_sec() == s)
        usleep(1000);
    return now_sec();
}

/* One call site, called n times. */
static void site_a(int n)
{
    for (int i = 0; i < n; i++)
        BW_ERRORF("site a line %d", i);
}

static void site_b(int n)
{
    for (int i = 0; i < n; i++)
        BW_WARNF("site b line %d", i);
}

TEST(burst_limit_per_site_and_suppressed_count)
{
    const char *out = NULL;
    bool same_second = false;
    for (int attempt = 0; attempt < 5 && !same_second; attempt++) {
        time_t s = next_second();
        capture_start();
        site_a(3 * BW_LOG_BURST);
        site_b(2);
        out = capture_end();
        same_second = now_sec() == s;
    }
    CHECK(same_second);
    CHECK_INT_EQ(count_sub(out, "site a line"), BW_LOG_BURST);
    CHECK_INT_EQ(count_sub(out, "site b line"), 2); /* another site, its own budget */
    CHECK_INT_EQ(count_lines(out), BW_LOG_BURST + 2);
    CHECK(strstr(out, "site a line 0\n") != NULL);
    CHECK(strstr(out, "suppressed") == NULL);

    /* Next second: the site writes again and says what it dropped. */
    next_second();
    capture_start();
    site_a(1);
    out = capture_end();
    CHECK_INT_EQ(count_lines(out), 1);
    char want[128];
    snprintf(want, sizeof want, "site a line 0 (%d similar lines suppressed)\n", 2 * BW_LOG_BURST);
    CHECK(strstr(out, want) != NULL);

    /* And the count starts again from zero. */
    next_second();
    capture_start();
    site_a(1);
    out = capture_end();
    CHECK(strstr(out, "suppressed") == NULL);
}

TEST(line_format_and_levels)
{
    bw_log_set_level(BW_LOG_INFO);
    capture_start();
    BW_INFOF("hello %s %d", "world", 42);
    BW_DEBUGF("not at info level");
    BW_WARNF("careful");
    const char *out = capture_end();
    CHECK_INT_EQ(count_lines(out), 2);
    /* 2024-01-02T03:04:05.678Z info: hello world 42 */
    int y, mo, d, h, mi, s, ms;
    char rest[128];
    CHECK(sscanf(out, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %127[^\n]", &y, &mo, &d, &h, &mi, &s, &ms,
                 rest) == 8);
    CHECK_STR_EQ(rest, "info: hello world 42");
    CHECK(strstr(out, "Z warn: careful\n") != NULL);
    CHECK(strstr(out, "not at info level") == NULL);

    bw_log_set_level(BW_LOG_DEBUG);
    capture_start();
    BW_DEBUGF("now visible");
    out = capture_end();
    CHECK(strstr(out, "Z debug: now visible\n") != NULL);
    bw_log_set_level(BW_LOG_ERROR);
    capture_start();
    BW_WARNF("hidden");
    BW_ERRORF("shown");
    out = capture_end();
    CHECK_INT_EQ(count_lines(out), 1);
    CHECK(strstr(out, "Z error: shown\n") != NULL);
    bw_log_set_level(BW_LOG_INFO);
}

static void long_site(const char *msg)
{
    BW_ERRORF("%s", msg);
}

TEST(long_line_is_cut_but_whole)
{
    static char msg[4096];
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    bool same_second = false;
    const char *out = NULL;
    for (int attempt = 0; attempt < 5 && !same_second; attempt++) {
        time_t s = next_second();
        capture_start();
        for (int i = 0; i < BW_LOG_BURST + 3; i++)
            long_site(msg);
        out = capture_end();
        same_second = now_sec() == s;
    }
    CHECK(same_second);
    CHECK_INT_EQ(count_lines(out), BW_LOG_BURST);
    /* Each line bounded and ended by its newline. */
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        CHECK(nl != NULL);
        CHECK((size_t)(nl - p) < 1024);
        CHECK(nl - p > 900);
        p = nl + 1;
    }
    /* The suppressed count still fits after a cut line. */
    next_second();
    capture_start();
    long_site(msg);
    out = capture_end();
    CHECK_INT_EQ(count_lines(out), 1);
    CHECK(strstr(out, "m (3 similar lines suppressed)\n") != NULL);
    CHECK(strlen(out) <= 1024);
}

int main(void)
{
    RUN(burst_limit_per_site_and_suppressed_count);
    RUN(line_format_and_levels);
    RUN(long_line_is_cut_but_whole);
    return t_done();
}
