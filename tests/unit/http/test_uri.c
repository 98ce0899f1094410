#include <stdlib.h>

#include "http/uri.h"
#include "test.h"

/* Normalises in an exact-size heap buffer so ASan sees any overrun. */
static bool norm_is(const char *in, const char *want)
{
    size_t n = strlen(in);
    char *src = malloc(n ? n : 1);
    char *out = malloc(n + 1);
    memcpy(src, in, n);
    bw_slice got = bw_uri_normalize_path(bw_slice_make(src, n), out, n + 1);
    bool ok = got.len == strlen(want) && memcmp(got.ptr, want, got.len) == 0;
    if (!ok)
        printf("     normalize(\"%s\") = \"%.*s\", want \"%s\"\n", in, (int)got.len, got.ptr, want);
    free(src);
    free(out);
    return ok;
}

TEST(plain_paths_unchanged)
{
    CHECK(norm_is("/", "/"));
    CHECK(norm_is("/admin", "/admin"));
    CHECK(norm_is("/admin/", "/admin/"));
    CHECK(norm_is("/a/b/c.html", "/a/b/c.html"));
    CHECK(norm_is("/a.b/..c/d..", "/a.b/..c/d.."));
}

/* Every way a rule on /admin could be slipped past (DESIGN.md §2). */
TEST(dot_segments_removed)
{
    CHECK(norm_is("/a/../admin", "/admin"));
    CHECK(norm_is("/public/../admin/x", "/admin/x"));
    CHECK(norm_is("/./admin", "/admin"));
    CHECK(norm_is("/admin/.", "/admin/"));
    CHECK(norm_is("/admin/x/..", "/admin/"));
    CHECK(norm_is("/../admin", "/admin")); /* never above the root */
    CHECK(norm_is("/../../../admin", "/admin"));
    CHECK(norm_is("/a/b/../../admin", "/admin"));
    CHECK(norm_is("/..", "/"));
    CHECK(norm_is("/.", "/"));
}

TEST(repeated_slashes_merged)
{
    CHECK(norm_is("//admin", "/admin"));
    CHECK(norm_is("///admin//x///", "/admin/x/"));
    CHECK(norm_is("/a//..//admin", "/admin"));
}

TEST(percent_encoded_unreserved_decoded)
{
    CHECK(norm_is("/%61dmin", "/admin"));
    CHECK(norm_is("/%41DMIN", "/ADMIN"));
    CHECK(norm_is("/%2e%2e/admin", "/admin"));
    CHECK(norm_is("/x/%2E%2E/admin", "/admin"));
    CHECK(norm_is("/%2e/admin", "/admin"));
    CHECK(norm_is("/a%2d%5f%7e", "/a-_~"));
}

/* Windows servers split paths at '\' too (Cloudflare's normalisation
 * does the same); an encoded one stays data, as an encoded '/' does. */
TEST(backslashes_are_slashes)
{
    CHECK(norm_is("/x\\..\\admin", "/admin"));
    CHECK(norm_is("/\\admin", "/admin"));
    CHECK(norm_is("/admin\\", "/admin/"));
    CHECK(norm_is("/a\\b", "/a/b"));
    CHECK(norm_is("/x/%5c../admin", "/x/%5C../admin"));
}

TEST(other_percent_encodings_kept_uppercased)
{
    CHECK(norm_is("/a%2fb", "/a%2Fb")); /* an encoded slash stays data */
    CHECK(norm_is("/%c3%a9t%C3%A9", "/%C3%A9t%C3%A9"));
    CHECK(norm_is("/100%", "/100%")); /* malformed: kept as is */
    CHECK(norm_is("/%zz/%4", "/%zz/%4"));
}

TEST(not_a_path_returned_as_is)
{
    char out[8];
    bw_slice star = bw_uri_normalize_path(BW_SLICE_LIT("*"), out, sizeof out);
    CHECK_SLICE_EQ(star, "*");
    bw_slice empty = bw_uri_normalize_path(BW_SLICE_LIT(""), out, sizeof out);
    CHECK_SLICE_EQ(empty, "/");
    /* Too small an output: the input comes back untouched, never truncated. */
    bw_slice big = bw_uri_normalize_path(BW_SLICE_LIT("/a/../b"), out, 4);
    CHECK_SLICE_EQ(big, "/a/../b");
}

int main(void)
{
    RUN(plain_paths_unchanged);
    RUN(dot_segments_removed);
    RUN(repeated_slashes_merged);
    RUN(percent_encoded_unreserved_decoded);
    RUN(backslashes_are_slashes);
    RUN(other_percent_encodings_kept_uppercased);
    RUN(not_a_path_returned_as_is);
    return t_done();
}
