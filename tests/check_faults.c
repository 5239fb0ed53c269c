/*
 * check_faults: integration suite for per-route fault injection and
 * per-route read_timeout (proxy/session.c: fault_decide, upstream_read_tv).
 * Starts the real switchboard in front of the real slow-origin on loopback.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static struct proc origin, proxy;

static void teardown(void)
{
    harness_stop(&proxy);
    harness_stop(&origin);
}

/* Origin with no delay; proxy with one route / carrying route_extra. */
static void start(const char *up_extra, const char *route_extra)
{
    harness_origin(&origin, "--delay", "0ms", NULL);
    harness_proxy(&proxy,
                  "[server]\nlisten = 127.0.0.1:0\nworkers = 1\n"
                  "access_log = stderr\n"
                  "[upstream origin]\nserver = 127.0.0.1:%d\n%s\n"
                  "[route /]\nupstream = origin\n%s\n",
                  origin.port, up_extra, route_extra);
}

/* One request on a fresh connection; returns its status, *ms its time. */
static int get(const char *raw, double *ms)
{
    double t0 = harness_now();
    struct response r;
    ck_assert_int_eq(harness_exchange(proxy.port, raw, &r, 10000), 0);
    if (ms != NULL) {
        *ms = harness_now() - t0;
    }
    int status = r.status;
    response_free(&r);
    return status;
}

START_TEST(test_fault_abort_percentage)
{
    start("", "fault_abort = 503\nfault_abort_percent = 30");
    int aborted = 0;
    for (int i = 0; i < 1000; i++) {
        int status = get("GET / HTTP/1.1\r\nHost: a\r\n\r\n", NULL);
        ck_assert(status == 200 || status == 503);
        aborted += status == 503;
    }
    /* Binomial(1000, 0.3): sd ~14.5; +-5 sd. */
    ck_assert_msg(aborted >= 228 && aborted <= 372, "%d of 1000 aborted",
                  aborted);
    ck_assert(harness_log_wait(&proxy, "term=fault_abort", 2000));
}
END_TEST

START_TEST(test_fault_delay_fixed_and_percentage)
{
    start("", "fault_delay = 200ms\nfault_delay_percent = 50");
    int delayed = 0;
    for (int i = 0; i < 40; i++) {
        double ms;
        ck_assert_int_eq(get("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &ms), 200);
        if (ms >= 195) {
            ck_assert_msg(ms < 200 + 300 * harness_scale(), "took %.0f ms",
                          ms);
            delayed++;
        } else {
            ck_assert_msg(ms < 100 * harness_scale(), "took %.0f ms", ms);
        }
    }
    /* Binomial(40, 0.5): sd ~3.2; +-4.5 sd. */
    ck_assert_msg(delayed >= 6 && delayed <= 34, "%d of 40 delayed", delayed);
    ck_assert(harness_log_wait(&proxy, "latency=200.0", 2000));
}
END_TEST

START_TEST(test_fault_delay_exponential_mean)
{
    start("", "fault_delay = 20ms\nfault_delay_distribution = exponential");
    double total = 0;
    for (int i = 0; i < 200; i++) {
        double ms;
        ck_assert_int_eq(get("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &ms), 200);
        total += ms;
    }
    /* Mean 20 ms (+ the request itself); the sample mean of 200 draws has
     * sd ~1.4 ms. */
    double mean = total / 200;
    ck_assert_msg(mean >= 15 && mean < 30 * harness_scale(), "mean %.1f ms",
                  mean);
}
END_TEST

START_TEST(test_fault_headers_only_when_on)
{
    start("", "fault_headers = on");
    double ms;
    ck_assert_int_eq(get("GET / HTTP/1.1\r\nHost: a\r\n"
                         "X-Switchboard-Delay: 300ms\r\n\r\n",
                         &ms),
                     200);
    ck_assert_msg(ms >= 295, "took %.0f ms", ms);
    ck_assert_int_eq(get("GET / HTTP/1.1\r\nHost: a\r\n"
                         "X-Switchboard-Abort: 418\r\n\r\n",
                         NULL),
                     418);
    harness_stop(&proxy);
    harness_stop(&origin);

    start("", "");
    ck_assert_int_eq(get("GET / HTTP/1.1\r\nHost: a\r\n"
                         "X-Switchboard-Delay: 2s\r\n"
                         "X-Switchboard-Abort: 503\r\n\r\n",
                         &ms),
                     200);
    ck_assert_msg(ms < 200 * harness_scale(), "took %.0f ms", ms);
}
END_TEST

START_TEST(test_route_read_timeout_lets_long_poll_wait)
{
    harness_origin(&origin, "--delay", "0ms", NULL);
    harness_proxy(&proxy,
                  "[server]\nlisten = 127.0.0.1:0\nworkers = 1\n"
                  "access_log = stderr\n"
                  "[upstream origin]\nserver = 127.0.0.1:%d\n"
                  "read_timeout = 300ms\n"
                  "[route /]\nupstream = origin\n"
                  "[route /poll]\nupstream = origin\nread_timeout = 5s\n",
                  origin.port);
    /* A long poll outlives the upstream's read_timeout on its own route... */
    double ms;
    ck_assert_int_eq(
        get("GET /poll?delay=1s HTTP/1.1\r\nHost: a\r\n\r\n", &ms), 200);
    ck_assert_msg(ms >= 995, "took %.0f ms", ms);
    /* ...while the default route keeps the short one. */
    ck_assert_int_eq(get("GET /?delay=1s HTTP/1.1\r\nHost: a\r\n\r\n", &ms),
                     504);
    ck_assert_msg(ms < 1000, "504 after %.0f ms", ms);
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults and route overrides");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fault_abort_percentage);
    tcase_add_test(tc, test_fault_delay_fixed_and_percentage);
    tcase_add_test(tc, test_fault_delay_exponential_mean);
    tcase_add_test(tc, test_fault_headers_only_when_on);
    tcase_add_test(tc, test_route_read_timeout_lets_long_poll_wait);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(faults_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
