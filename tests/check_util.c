/*
 * check_util: unit tests for proxy/util.c.
 *
 * Every grammar util accepts (durations, sizes, numbers, host:port) is tried
 * with good values, each unit, the overflow edge and malformed input; the
 * string helpers and the clock get a few sanity checks. No I/O, no sockets.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Parse s as a duration; -2 marks "rejected" in these tests. */
static int64_t dur(const char *s)
{
    int64_t ms = -1;
    return util_parse_duration(s, &ms) == 0 ? ms : -2;
}

START_TEST(duration_units)
{
    ck_assert_int_eq(dur("250ms"), 250);
    ck_assert_int_eq(dur("30s"), 30000);
    ck_assert_int_eq(dur("2m"), 120000);
    ck_assert_int_eq(dur("1h"), 3600000);
    ck_assert_int_eq(dur("5"), 5000);
    ck_assert_int_eq(dur("0"), 0);
    ck_assert_int_eq(dur("0ms"), 0);
    ck_assert_int_eq(dur("007s"), 7000);
    ck_assert_int_eq(dur("24h"), 86400000);
}
END_TEST

START_TEST(duration_overflow)
{
    ck_assert_int_eq(dur("9223372036854775807ms"), INT64_MAX);
    ck_assert_int_eq(dur("9223372036854775808ms"), -2);
    ck_assert_int_eq(dur("9223372036854775s"), 9223372036854775000);
    ck_assert_int_eq(dur("9223372036854776s"), -2);
    ck_assert_int_eq(dur("2562047788015215h"), -2);
    ck_assert_int_eq(dur("99999999999999999999999999"), -2);
    /* Too large (-2) and malformed (-1) are told apart. */
    int64_t ms;
    ck_assert_int_eq(util_parse_duration("9223372036854776s", &ms), -2);
    ck_assert_int_eq(util_parse_duration("99999999999999999999h", &ms), -2);
    ck_assert_int_eq(util_parse_duration("99999999999999999999x", &ms), -1);
}
END_TEST

START_TEST(duration_malformed)
{
    static const char *const bad[] = {
        "",    "ms",  "s",    "abc", "10x",  "1.5s", "-1s", "+1s",
        " 1s", "1s ", "1 s",  "10mss", "1sm", "1hh", "0x10", "10S",
        "1M",  "1H",  "1d",   "1e3",
    };
    int64_t ms = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(util_parse_duration(bad[i], &ms) == -1,
                      "accepted \"%s\"", bad[i]);
    }
    ck_assert_int_eq(ms, 42); /* untouched on failure */
    ck_assert_int_eq(util_parse_duration(NULL, &ms), -1);
}
END_TEST

static uint64_t size(const char *s)
{
    uint64_t b = 7;
    return util_parse_size(s, &b) == 0 ? b : UINT64_MAX - 1;
}

#define REJECTED (UINT64_MAX - 1)

START_TEST(size_units)
{
    ck_assert_uint_eq(size("10"), 10);
    ck_assert_uint_eq(size("0"), 0);
    ck_assert_uint_eq(size("64k"), 65536);
    ck_assert_uint_eq(size("64K"), 65536);
    ck_assert_uint_eq(size("64kb"), 65536);
    ck_assert_uint_eq(size("64KB"), 65536);
    ck_assert_uint_eq(size("1m"), 1048576);
    ck_assert_uint_eq(size("1M"), 1048576);
    ck_assert_uint_eq(size("1mb"), 1048576);
    ck_assert_uint_eq(size("2g"), 2147483648ULL);
    ck_assert_uint_eq(size("2G"), 2147483648ULL);
    ck_assert_uint_eq(size("10b"), 10);
    ck_assert_uint_eq(size("10B"), 10);
}
END_TEST

START_TEST(size_overflow)
{
    ck_assert_uint_eq(size("18446744073709551615"), UINT64_MAX);
    ck_assert_uint_eq(size("18446744073709551616"), REJECTED);
    ck_assert_uint_eq(size("17179869183g"), 17179869183ULL << 30);
    ck_assert_uint_eq(size("17179869184g"), REJECTED);
    ck_assert_uint_eq(size("18014398509481984k"), REJECTED);
    uint64_t b;
    ck_assert_int_eq(util_parse_size("18014398509481984k", &b), -2);
    ck_assert_int_eq(util_parse_size("99999999999999999999", &b), -2);
    ck_assert_int_eq(util_parse_size("99999999999999999999t", &b), -1);
}
END_TEST

START_TEST(size_malformed)
{
    static const char *const bad[] = {
        "", "k", "b", "kb", "abc", "1.5k", "-1", "+1", " 1k", "1k ",
        "1 k", "1kk", "1kbb", "1t", "1bk", "0x10",
    };
    uint64_t b = 42;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(util_parse_size(bad[i], &b) == -1, "accepted \"%s\"",
                      bad[i]);
    }
    ck_assert_uint_eq(b, 42);
    ck_assert_int_eq(util_parse_size(NULL, &b), -1);
}
END_TEST

START_TEST(uint_values)
{
    uint64_t v = 0;
    ck_assert_int_eq(util_parse_uint("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(util_parse_uint("12345", &v), 0);
    ck_assert_uint_eq(v, 12345);
    ck_assert_int_eq(util_parse_uint("18446744073709551615", &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
    /* Well formed but too large: -2, so a conf can say "out of range". */
    ck_assert_int_eq(util_parse_uint("18446744073709551616", &v), -2);
    ck_assert_int_eq(util_parse_uint("99999999999999999999", &v), -2);
    ck_assert_int_eq(util_parse_uint("99999999999999999999x", &v), -1);
    ck_assert_int_eq(util_parse_uint("", &v), -1);
    ck_assert_int_eq(util_parse_uint("-1", &v), -1);
    ck_assert_int_eq(util_parse_uint("+1", &v), -1);
    ck_assert_int_eq(util_parse_uint("1k", &v), -1);
    ck_assert_int_eq(util_parse_uint(" 1", &v), -1);
    ck_assert_int_eq(util_parse_uint("1 ", &v), -1);
    ck_assert_int_eq(util_parse_uint(NULL, &v), -1);
    ck_assert_uint_eq(v, UINT64_MAX); /* untouched by the failures */
}
END_TEST

/* Parse s; on success compare host and port, on failure expect -1. */
static void hostport(const char *s, int ok, const char *host, unsigned port)
{
    char h[64] = "untouched";
    uint16_t p = 4242;
    int rc = util_parse_hostport(s, h, sizeof(h), &p);
    if (!ok) {
        ck_assert_msg(rc == -1, "accepted \"%s\"", s);
        return;
    }
    ck_assert_msg(rc == 0, "rejected \"%s\"", s);
    ck_assert_str_eq(h, host);
    ck_assert_uint_eq(p, port);
}

START_TEST(hostport_good)
{
    hostport("127.0.0.1:8080", 1, "127.0.0.1", 8080);
    hostport("localhost:80", 1, "localhost", 80);
    hostport("a-b_c.example.com:443", 1, "a-b_c.example.com", 443);
    hostport("0.0.0.0:0", 1, "0.0.0.0", 0);
    hostport("h:65535", 1, "h", 65535);
    hostport("h:080", 1, "h", 80);
    hostport("[::1]:80", 1, "::1", 80);
    hostport("[::]:0", 1, "::", 0);
    hostport("[2001:db8::a:1]:8443", 1, "2001:db8::a:1", 8443);
    hostport("[::ffff:10.0.0.1]:80", 1, "::ffff:10.0.0.1", 80);
    hostport("[fe80::1%eth0]:80", 1, "fe80::1%eth0", 80);
}
END_TEST

START_TEST(hostport_bad)
{
    hostport("127.0.0.1", 0, NULL, 0);        /* missing port */
    hostport("127.0.0.1:", 0, NULL, 0);       /* empty port */
    hostport(":80", 0, NULL, 0);              /* missing host */
    hostport("h:65536", 0, NULL, 0);          /* port > 65535 */
    hostport("h:99999999999999999999", 0, NULL, 0);
    hostport("h:-1", 0, NULL, 0);
    hostport("h:+1", 0, NULL, 0);
    hostport("h:80x", 0, NULL, 0);
    hostport("h:8 0", 0, NULL, 0);
    hostport("h :80", 0, NULL, 0);
    hostport("::1:80", 0, NULL, 0);           /* IPv6 needs brackets */
    hostport("[::1]", 0, NULL, 0);
    hostport("[::1]80", 0, NULL, 0);
    hostport("[::1]:", 0, NULL, 0);
    hostport("[]:80", 0, NULL, 0);
    hostport("[::1:80", 0, NULL, 0);
    hostport("[1:2]:80", 0, NULL, 0);         /* not an IPv6 literal */
    hostport("[::g]:80", 0, NULL, 0);
    hostport("[fe80::1%]:80", 0, NULL, 0);
    hostport("[::1]]:80", 0, NULL, 0);
    hostport("a/b:80", 0, NULL, 0);
    hostport("", 0, NULL, 0);
    hostport(NULL, 0, NULL, 0);
}
END_TEST

START_TEST(hostport_host_length)
{
    char h[8];
    uint16_t p = 0;
    ck_assert_int_eq(util_parse_hostport("1234567:1", h, sizeof(h), &p), 0);
    ck_assert_str_eq(h, "1234567");
    ck_assert_int_eq(util_parse_hostport("12345678:1", h, sizeof(h), &p), -1);
    ck_assert_int_eq(util_parse_hostport("[::1234]:1", h, sizeof(h), &p), 0);
    ck_assert_str_eq(h, "::1234");
    ck_assert_int_eq(util_parse_hostport("[::123456]:1", h, sizeof(h), &p),
                     -1);
}
END_TEST

START_TEST(log_escape_hides_what_a_terminal_would_act_on)
{
    /* An 8-bit CSI, a right-to-left override (UTF-8), a quote, a
     * backslash and a tab, as the access log writes them. */
    const char raw[] = "/\x9b" "31m\xe2\x80\xae\"q\\\tz";
    char d[64];
    ck_assert_str_eq(util_log_escape(d, sizeof(d), raw, sizeof(raw) - 1),
                     "/\\x9b31m\\xe2\\x80\\xae\\x22q\\x5c\\x09z");
    /* What fits is whole; the rest is cut with "...", never inside an
     * escape. */
    char small[12];
    ck_assert_str_eq(util_log_escape(small, 12, "/ab\x9b" "cdef", 8),
                     "/ab\\x9b" "cdef");
    ck_assert_str_eq(util_log_escape(small, 10, "/ab\x9b" "cdef", 8),
                     "/ab...");
    ck_assert_str_eq(util_log_escape(small, 12, "/abcdefghij", 11),
                     "/abcdefghij");
    ck_assert_str_eq(util_log_escape(small, 12, "/abcdefghijk", 12),
                     "/abcdefg...");
    ck_assert_str_eq(util_log_escape(small, 3, "/abc", 4), "");
    ck_assert_int_eq(util_log_unsafe('a'), 0);
    ck_assert_int_eq(util_log_unsafe(0x7f), 1);
    ck_assert_int_eq(util_log_unsafe(0x1f), 1);
}
END_TEST

START_TEST(strlcpy_truncates)
{
    char d[6];
    memset(d, 'x', sizeof(d));
    ck_assert_uint_eq(util_strlcpy(d, "abc", sizeof(d)), 3);
    ck_assert_str_eq(d, "abc");
    ck_assert_uint_eq(util_strlcpy(d, "abcdefgh", sizeof(d)), 8);
    ck_assert_str_eq(d, "abcde");
    ck_assert_uint_eq(util_strlcpy(d, "", sizeof(d)), 0);
    ck_assert_str_eq(d, "");
    d[0] = 'q';
    ck_assert_uint_eq(util_strlcpy(d, "abc", 0), 3);
    ck_assert_int_eq(d[0], 'q');
    ck_assert_uint_eq(util_strlcpy(d, "abc", 1), 3);
    ck_assert_str_eq(d, "");
}
END_TEST

START_TEST(strieq_compares)
{
    ck_assert(util_strieq("Content-Length", 14, "content-length"));
    ck_assert(util_strieq("HOST", 4, "host"));
    ck_assert(util_strieq("hostXYZ", 4, "HoSt"));
    ck_assert(util_strieq("", 0, ""));
    ck_assert(!util_strieq("hos", 3, "host"));
    ck_assert(!util_strieq("hosts", 5, "host"));
    ck_assert(!util_strieq("host", 4, "hosp"));
    ck_assert(!util_strieq("", 0, "x"));
    ck_assert(!util_strieq("[", 1, "{")); /* no case folding outside A-Z */
}
END_TEST

START_TEST(strnieq_compares_n_bytes)
{
    ck_assert(util_strnieq("Content-Length", "content-length", 14));
    ck_assert(util_strnieq("HOSTx", "hosty", 4)); /* only n bytes count */
    ck_assert(util_strnieq("", "", 0));
    ck_assert(util_strnieq("a\0B", "A\0b", 3)); /* NULs compared, not ends */
    ck_assert(!util_strnieq("a\0b", "a\0c", 3));
    ck_assert(!util_strnieq("host", "hosp", 4));
    ck_assert(!util_strnieq("[", "{", 1)); /* no case folding outside A-Z */
    ck_assert(!util_strnieq("\r", "-", 1));
    ck_assert(!util_strnieq("@", "`", 1));
}
END_TEST

START_TEST(ip_literal_or_name)
{
    ck_assert(util_is_ip_literal("127.0.0.1"));
    ck_assert(util_is_ip_literal("::1"));
    ck_assert(util_is_ip_literal("2001:db8::2"));
    ck_assert(!util_is_ip_literal("localhost"));
    ck_assert(!util_is_ip_literal("origin.test"));
    /* Every IPv4 spelling getaddrinfo reads as an address (inet_aton):
     * never re-resolved as a name. */
    ck_assert(util_is_ip_literal("127.1"));
    ck_assert(util_is_ip_literal("127.000.000.001"));
    ck_assert(util_is_ip_literal("0x7f.1"));
    ck_assert(util_is_ip_literal("127.0.0")); /* 127.0.0.0 */
    ck_assert(!util_is_ip_literal("256.1.1.1"));
    ck_assert(!util_is_ip_literal("127.0.0.1.2"));
    ck_assert(!util_is_ip_literal("1.example"));
    ck_assert(!util_is_ip_literal("[::1]")); /* brackets belong to URLs */
    ck_assert(!util_is_ip_literal(""));
}
END_TEST

START_TEST(ms_to_tv_splits)
{
    struct timeval tv = util_ms_to_tv(0);
    ck_assert(tv.tv_sec == 0 && tv.tv_usec == 0);
    tv = util_ms_to_tv(250);
    ck_assert(tv.tv_sec == 0 && tv.tv_usec == 250000);
    tv = util_ms_to_tv(86400000);
    ck_assert(tv.tv_sec == 86400 && tv.tv_usec == 0);
    tv = util_ms_to_tv(1999);
    ck_assert(tv.tv_sec == 1 && tv.tv_usec == 999000);
}
END_TEST

START_TEST(now_ms_is_monotonic)
{
    double a = util_now_ms();
    double b = util_now_ms();
    ck_assert(a > 0);
    ck_assert(b >= a);
    /* Microsecond precision: no part below a microsecond. */
    double us = a * 1000.0;
    ck_assert(us - (double)(int64_t)us < 0.01 ||
              us - (double)(int64_t)us > 0.99);
}
END_TEST

START_TEST(list_members_and_tokens)
{
    /* Members trimmed of spaces and tabs, empty ones skipped. */
    static const char v[] = " ,keep-alive ,\t, Close\t,,x y ";
    size_t len = sizeof(v) - 1, i = 0, start, end;
    const char *want[] = {"keep-alive", "Close", "x y"};
    for (int k = 0; k < 3; k++) {
        ck_assert(util_list_next(v, len, &i, &start, &end));
        ck_assert_uint_eq(end - start, strlen(want[k]));
        ck_assert(strncmp(v + start, want[k], end - start) == 0);
    }
    ck_assert(!util_list_next(v, len, &i, &start, &end));
    ck_assert(util_list_has(v, len, "close", 5));
    ck_assert(util_list_has(v, len, "KEEP-ALIVE", 10));
    ck_assert(!util_list_has(v, len, "clos", 4));
    ck_assert(!util_list_has(v, len, "x", 1));
    ck_assert(!util_list_has(", ,", 3, "", 0));
    /* len bounds it: no NUL needed, none read past. */
    ck_assert(!util_list_has("closed", 5, "closed", 6));
    ck_assert(util_list_has("close, upgrade", 5, "close", 5));
}
END_TEST

static Suite *util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *t;

    t = tcase_create("duration");
    tcase_add_test(t, duration_units);
    tcase_add_test(t, duration_overflow);
    tcase_add_test(t, duration_malformed);
    suite_add_tcase(s, t);

    t = tcase_create("size");
    tcase_add_test(t, size_units);
    tcase_add_test(t, size_overflow);
    tcase_add_test(t, size_malformed);
    suite_add_tcase(s, t);

    t = tcase_create("uint");
    tcase_add_test(t, uint_values);
    suite_add_tcase(s, t);

    t = tcase_create("hostport");
    tcase_add_test(t, hostport_good);
    tcase_add_test(t, hostport_bad);
    tcase_add_test(t, hostport_host_length);
    suite_add_tcase(s, t);

    t = tcase_create("strings and clock");
    tcase_add_test(t, strlcpy_truncates);
    tcase_add_test(t, strieq_compares);
    tcase_add_test(t, strnieq_compares_n_bytes);
    tcase_add_test(t, now_ms_is_monotonic);
    tcase_add_test(t, ms_to_tv_splits);
    tcase_add_test(t, ip_literal_or_name);
    tcase_add_test(t, list_members_and_tokens);
    tcase_add_test(t, log_escape_hides_what_a_terminal_would_act_on);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(util_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
