/*
 * Tests the generated proxy/dashboard.c: the bytes compiled into the binary
 * are exactly proxy/dashboard.html, NUL-terminated, and look like the page.
 * The page itself is exercised in a browser by tests/check_dashboard.py.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashboard.h"

START_TEST(test_bytes_match_source)
{
    FILE *f = fopen(TOP_SRCDIR "/proxy/dashboard.html", "rb");
    ck_assert_ptr_nonnull(f);
    size_t cap = dashboard_html_len + 2;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    ck_assert_uint_eq(n, dashboard_html_len);
    ck_assert_int_eq(memcmp(buf, dashboard_html, n), 0);
    ck_assert_int_eq(dashboard_html[dashboard_html_len], '\0');
    free(buf);
}
END_TEST

START_TEST(test_looks_like_the_page)
{
    ck_assert_uint_gt(dashboard_html_len, 1000);
    ck_assert_int_eq(strncmp(dashboard_html, "<!doctype html>", 15), 0);
    ck_assert_ptr_nonnull(strstr(dashboard_html, "id=\"open-sessions\""));
    ck_assert_ptr_nonnull(strstr(dashboard_html, "fetch(\"status\""));
    /* Self-contained: nothing fetched from elsewhere. */
    ck_assert_ptr_null(strstr(dashboard_html, "src=\"http"));
    ck_assert_ptr_null(strstr(dashboard_html, "href=\"http"));
    ck_assert_ptr_null(strstr(dashboard_html, "@import"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dashboard");
    TCase *tc = tcase_create("embed");
    tcase_add_test(tc, test_bytes_match_source);
    tcase_add_test(tc, test_looks_like_the_page);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
