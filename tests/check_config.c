/*
 * check_config: unit tests for proxy/config.c.
 *
 * Confs are given as strings (config_load_string, named "t.conf") so each
 * test shows the text it parses; error tests compare the whole message,
 * which pins both the wording and the line number. A few tests go through
 * config_load: the shipped conf/switchboard.conf and files that cannot be
 * read. Nothing here touches the network.
 */
/* mkstemp: POSIX, whatever the build defines. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#ifndef TOP_SRCDIR
#error "TOP_SRCDIR must name the source tree (the Makefile defines it)"
#endif

static struct config *cfg;
static char err[1024];

static void setup(void)
{
    cfg = config_new();
    ck_assert_ptr_nonnull(cfg);
    memset(err, 0, sizeof(err));
}

static void teardown(void)
{
    config_free(cfg);
    cfg = NULL;
}

static int load(const char *text)
{
    return config_load_string(cfg, text, "t.conf", err, sizeof(err));
}

/* The smallest valid conf: one upstream with one server. */
#define UPSTREAM "[upstream a]\nserver = 127.0.0.1:9000\n"

#define LOAD_OK(text)                                                          \
    do {                                                                       \
        int rc_ = load(text);                                                  \
        ck_assert_msg(rc_ == 0, "load failed: %s", err);                       \
    } while (0)

#define LOAD_ERROR(text, msg)                                                  \
    do {                                                                       \
        ck_assert_int_eq(load(text), -1);                                      \
        ck_assert_str_eq(err, msg);                                            \
    } while (0)

/* A growable string for the confs that repeat something many times. */
struct text {
    char *buf;
    size_t len, cap;
};

static void text_add(struct text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        t->buf = realloc(t->buf, t->cap);
        ck_assert_ptr_nonnull(t->buf);
    }
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* --- defaults ---------------------------------------------------------- */

START_TEST(defaults_match_header)
{
    config_defaults(cfg);
    ck_assert_int_eq(cfg->n_listen, 0);
    ck_assert_int_eq(cfg->workers, 0);
    ck_assert_int_eq(cfg->max_connections, 8192);
    ck_assert_int_eq(cfg->backlog, 4096);
    ck_assert_int_eq(cfg->client_header_timeout_ms, 10000);
    ck_assert_int_eq(cfg->client_body_timeout_ms, 60000);
    ck_assert_int_eq(cfg->keepalive_timeout_ms, 75000);
    ck_assert_int_eq(cfg->send_timeout_ms, 60000);
    ck_assert_int_eq(cfg->lingering_timeout_ms, 5000);
    ck_assert_int_eq(cfg->lingering_time_ms, 30000);
    ck_assert_int_eq(cfg->underscores_in_headers, 0);
    ck_assert_int_eq(cfg->ignore_client_abort, 0);
    ck_assert_uint_eq(cfg->buffer_size, 65536);
    ck_assert_uint_eq(cfg->max_header_size, 16384);
    ck_assert_uint_eq(cfg->sndbuf, 0);
    ck_assert_uint_eq(cfg->rcvbuf, 0);
    ck_assert_uint_eq(cfg->max_body_size, 0);
    ck_assert_str_eq(cfg->access_log, "stderr");
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
    ck_assert_int_eq(cfg->n_upstreams, 0);
    ck_assert_int_eq(cfg->n_routes, 0);
}
END_TEST

START_TEST(defaults_after_minimal_load)
{
    LOAD_OK(UPSTREAM);
    ck_assert_str_eq(cfg->path, "t.conf");
    /* the default listener */
    ck_assert_int_eq(cfg->n_listen, 1);
    ck_assert_str_eq(cfg->listen[0].host, "127.0.0.1");
    ck_assert_uint_eq(cfg->listen[0].port, 8080);
    ck_assert_int_eq(cfg->listen[0].line, 0);
    ck_assert_int_eq(cfg->max_connections, 8192);
    /* upstream defaults */
    ck_assert_int_eq(cfg->n_upstreams, 1);
    const struct config_upstream *up = &cfg->upstreams[0];
    ck_assert_str_eq(up->name, "a");
    ck_assert_int_eq(up->line, 1);
    ck_assert_int_eq(up->n_servers, 1);
    ck_assert_str_eq(up->servers[0].addr.host, "127.0.0.1");
    ck_assert_uint_eq(up->servers[0].addr.port, 9000);
    ck_assert_int_eq(up->servers[0].addr.line, 2);
    ck_assert_int_eq(up->servers[0].weight, 1);
    ck_assert_int_eq(up->keepalive, 32);
    ck_assert_int_eq(up->keepalive_timeout_ms, 60000);
    ck_assert_int_eq(up->connect_timeout_ms, 5000);
    ck_assert_int_eq(up->read_timeout_ms, 60000);
    ck_assert_int_eq(up->send_timeout_ms, 60000);
    ck_assert_int_eq(up->latency_ms, 0);
    ck_assert_int_eq(up->latency_jitter_ms, 0);
}
END_TEST

START_TEST(new_and_free)
{
    struct config *c = config_new();
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->backlog, 4096);
    ck_assert_str_eq(c->access_log, "stderr");
    config_free(c);
    config_free(NULL);
}
END_TEST

START_TEST(load_resets_previous_conf)
{
    LOAD_OK("[server]\nworkers = 3\nlisten = 0.0.0.0:1\n" UPSTREAM
            "[upstream b]\nserver = h:1\n");
    ck_assert_int_eq(cfg->workers, 3);
    LOAD_OK(UPSTREAM);
    ck_assert_int_eq(cfg->workers, 0);
    ck_assert_int_eq(cfg->n_upstreams, 1);
    ck_assert_int_eq(cfg->n_listen, 1);
    ck_assert_uint_eq(cfg->listen[0].port, 8080);
}
END_TEST

/* --- [server] ---------------------------------------------------------- */

START_TEST(server_all_directives)
{
    LOAD_OK("[server]\n"
            "listen = 0.0.0.0:80\n"
            "listen = [::1]:8443\n"
            "workers = 4\n"
            "max_connections = 1000000\n"
            "backlog = 65535\n"
            "client_header_timeout = 250ms\n"
            "client_body_timeout = 2m\n"
            "keepalive_timeout = 0\n"
            "send_timeout = 24h\n"
            "lingering_timeout = 0\n"
            "lingering_time = 2s\n"
            "buffer_size = 4k\n"
            "max_header_size = 1m\n"
            "sndbuf = 16k\n"
            "rcvbuf = 1m\n"
            "max_body_size = 10g\n"
            "access_log = /var/log/switchboard/access.log\n"
            "underscores_in_headers = on\n"
            "ignore_client_abort = on\n"
            "log_level = debug\n" UPSTREAM);
    ck_assert_int_eq(cfg->n_listen, 2);
    ck_assert_int_eq(cfg->underscores_in_headers, 1);
    ck_assert_int_eq(cfg->ignore_client_abort, 1);
    ck_assert_str_eq(cfg->listen[0].host, "0.0.0.0");
    ck_assert_uint_eq(cfg->listen[0].port, 80);
    ck_assert_int_eq(cfg->listen[0].line, 2);
    ck_assert_str_eq(cfg->listen[1].host, "::1");
    ck_assert_uint_eq(cfg->listen[1].port, 8443);
    ck_assert_int_eq(cfg->listen[1].line, 3);
    ck_assert_int_eq(cfg->workers, 4);
    ck_assert_int_eq(cfg->max_connections, 1000000);
    ck_assert_int_eq(cfg->backlog, 65535);
    ck_assert_int_eq(cfg->client_header_timeout_ms, 250);
    ck_assert_int_eq(cfg->client_body_timeout_ms, 120000);
    ck_assert_int_eq(cfg->keepalive_timeout_ms, 0);
    ck_assert_int_eq(cfg->send_timeout_ms, 86400000);
    ck_assert_int_eq(cfg->lingering_timeout_ms, 0);
    ck_assert_int_eq(cfg->lingering_time_ms, 2000);
    ck_assert_uint_eq(cfg->buffer_size, 4096);
    ck_assert_uint_eq(cfg->max_header_size, 1048576);
    ck_assert_uint_eq(cfg->sndbuf, 16384);
    ck_assert_uint_eq(cfg->rcvbuf, 1048576);
    ck_assert_uint_eq(cfg->max_body_size, 10ULL << 30);
    ck_assert_str_eq(cfg->access_log, "/var/log/switchboard/access.log");
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
}
END_TEST

START_TEST(server_workers_auto_and_edges)
{
    LOAD_OK("[server]\nworkers = auto\n" UPSTREAM);
    ck_assert_int_eq(cfg->workers, 0);
    LOAD_OK("[server]\nworkers = 1\n" UPSTREAM);
    ck_assert_int_eq(cfg->workers, 1);
    LOAD_OK("[server]\nworkers = 64\n" UPSTREAM);
    ck_assert_int_eq(cfg->workers, 64);
    LOAD_ERROR("[server]\nworkers = 0\n",
               "t.conf:2: value \"0\" for workers is out of range: expected "
               "auto or 1..64");
    LOAD_ERROR("[server]\n\nworkers = 65\n",
               "t.conf:3: value \"65\" for workers is out of range: expected "
               "auto or 1..64");
    LOAD_ERROR("[server]\nworkers = many\n",
               "t.conf:2: bad value \"many\" for workers: expected a whole "
               "number or auto");
    LOAD_ERROR("[server]\nworkers = AUTO\n",
               "t.conf:2: bad value \"AUTO\" for workers: expected a whole "
               "number or auto");
}
END_TEST

START_TEST(server_log_levels)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    static const enum config_log_level levels[] = {
        LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG};
    char text[256];
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof(text), "[server]\nlog_level = %s\n" UPSTREAM,
                 names[i]);
        LOAD_OK(text);
        ck_assert_int_eq(cfg->log_level, levels[i]);
    }
    LOAD_ERROR("[server]\nlog_level = verbose\n",
               "t.conf:2: bad value \"verbose\" for log_level: expected one "
               "of error, warn, info, debug");
    LOAD_ERROR("[server]\nlog_level = INFO\n",
               "t.conf:2: bad value \"INFO\" for log_level: expected one "
               "of error, warn, info, debug");
}
END_TEST

START_TEST(server_event_backends)
{
    static const char *const names[] = {"auto", "epoll", "poll", "select"};
    static const enum config_backend backends[] = {
        BACKEND_AUTO, BACKEND_EPOLL, BACKEND_POLL, BACKEND_SELECT};
    char text[256];
    LOAD_OK("[server]\n" UPSTREAM);
    ck_assert_int_eq(cfg->event_backend, BACKEND_AUTO);
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof(text), "[server]\nevent_backend = %s\n" UPSTREAM,
                 names[i]);
        LOAD_OK(text);
        ck_assert_int_eq(cfg->event_backend, backends[i]);
    }
    LOAD_ERROR("[server]\nevent_backend = kqueue\n",
               "t.conf:2: bad value \"kqueue\" for event_backend: expected "
               "one of auto, epoll, poll, select");
}
END_TEST

START_TEST(route_host_values)
{
    LOAD_OK(UPSTREAM "[route /]\nupstream = a\nhost = api.example.com\n"
                     "[route /x]\nupstream = a\nhost = *.example.com\n"
                     "[route /y]\nupstream = a\nhost = my_host-1\n");
    ck_assert_str_eq(cfg->routes[0].host, "api.example.com");
    ck_assert_str_eq(cfg->routes[1].host, "*.example.com");
    static const char *bad[] = {".a", "a..b", "*.", "*a", "*..a", "a b",
                                "a/b", "www.example.com.", "*.example.org."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256], want[256];
        snprintf(text, sizeof(text),
                 UPSTREAM "[route /]\nupstream = a\nhost = %s\n", bad[i]);
        snprintf(want, sizeof(want),
                 "t.conf:5: bad value \"%s\" for host: expected a host name "
                 "like api.example.com, or *.example.com",
                 bad[i]);
        LOAD_ERROR(text, want);
    }
    /* Of two wildcards on one prefix the longer wins, in either order
     * (the first in the file did). */
    for (int order = 0; order < 2; order++) {
        const char *a = order ? "*.internal.example.com" : "*.example.com";
        const char *b = order ? "*.example.com" : "*.internal.example.com";
        char text[256];
        snprintf(text, sizeof(text),
                 UPSTREAM "[route /]\nupstream = a\nhost = %s\n"
                          "[route /]\nupstream = a\nhost = %s\n",
                 a, b);
        LOAD_OK(text);
        int internal = order ? 0 : 1;
        static const char db[] = "db.internal.example.com";
        static const char www[] = "www.example.com";
        ck_assert_int_eq(config_route_match(cfg, db, sizeof(db) - 1, "/", 1),
                         internal);
        ck_assert_int_eq(config_route_match(cfg, www, sizeof(www) - 1, "/", 1),
                         1 - internal);
    }
}
END_TEST

START_TEST(route_overrides_and_faults)
{
    LOAD_OK(UPSTREAM);
    const struct config_route *r = &cfg->routes[0];
    ck_assert_int_eq(r->read_timeout_ms, 0);
    ck_assert_int_eq(r->fault_delay_ms, 0);
    ck_assert_int_eq(r->fault_delay_percent, 100);
    ck_assert_int_eq(r->fault_delay_dist, FAULT_FIXED);
    ck_assert_int_eq(r->fault_abort, 0);
    ck_assert_int_eq(r->fault_abort_percent, 100);
    ck_assert_int_eq(r->fault_headers, 0);
    LOAD_OK(UPSTREAM "[route /lp]\nupstream = a\nread_timeout = 5m\n"
                     "fault_delay = 200ms\nfault_delay_percent = 25\n"
                     "fault_delay_distribution = exponential\n"
                     "fault_abort = 503\nfault_abort_percent = 10\n"
                     "fault_headers = on\n");
    r = &cfg->routes[0];
    ck_assert_str_eq(r->prefix, "/lp");
    ck_assert_int_eq(r->read_timeout_ms, 300000);
    ck_assert_int_eq(r->fault_delay_ms, 200);
    ck_assert_int_eq(r->fault_delay_percent, 25);
    ck_assert_int_eq(r->fault_delay_dist, FAULT_EXPONENTIAL);
    ck_assert_int_eq(r->fault_abort, 503);
    ck_assert_int_eq(r->fault_abort_percent, 10);
    ck_assert_int_eq(r->fault_headers, 1);
    LOAD_ERROR(UPSTREAM "[route /]\nupstream = a\nfault_delay_percent = 101\n",
               "t.conf:5: value \"101\" for fault_delay_percent is out of "
               "range: expected 0..100");
    LOAD_ERROR(UPSTREAM "[route /]\nupstream = a\n"
                        "fault_delay_distribution = normal\n",
               "t.conf:5: bad value \"normal\" for fault_delay_distribution: "
               "expected one of fixed, uniform, exponential");
    /* Below 200 and above 599: one rule, one message. */
    LOAD_ERROR(UPSTREAM "[route /]\nupstream = a\nfault_abort = 99\n",
               "t.conf:5: value \"99\" for fault_abort is out of range: "
               "expected 0 (off) or 200..599");
    LOAD_ERROR(UPSTREAM "[route /]\nupstream = a\nfault_abort = 600\n",
               "t.conf:5: value \"600\" for fault_abort is out of range: "
               "expected 0 (off) or 200..599");
    LOAD_ERROR(UPSTREAM "[route /]\nupstream = a\nfault_abort = 199\n",
               "t.conf:5: value \"199\" for fault_abort is out of range: "
               "expected 0 (off) or 200..599");
    LOAD_OK(UPSTREAM "[route /]\nupstream = a\nfault_abort = 200\n");
    ck_assert_int_eq(cfg->routes[0].fault_abort, 200);
    LOAD_ERROR(UPSTREAM "[route /]\nupstream = a\nfault_headers = yes\n",
               "t.conf:5: bad value \"yes\" for fault_headers: expected one "
               "of off, on");
}
END_TEST

START_TEST(server_access_log)
{
    LOAD_OK("[server]\naccess_log = off\n" UPSTREAM);
    ck_assert_str_eq(cfg->access_log, "off");
    /* ';' not after a blank is part of the value */
    LOAD_OK("[server]\naccess_log = /tmp/a;b ; the log\n" UPSTREAM);
    ck_assert_str_eq(cfg->access_log, "/tmp/a;b");
    LOAD_ERROR("[server]\naccess_log =\n",
               "t.conf:2: bad value \"\" for access_log: expected a "
               "non-empty value");
}
END_TEST

START_TEST(server_durations)
{
    LOAD_ERROR("[server]\nclient_header_timeout = abc\n",
               "t.conf:2: bad value \"abc\" for client_header_timeout: "
               "expected a duration like 250ms, 30s or 2m");
    LOAD_ERROR("[server]\nclient_header_timeout = 0\n",
               "t.conf:2: value \"0\" for client_header_timeout is out of "
               "range: expected 1ms..24h");
    LOAD_ERROR("[server]\nclient_body_timeout = 25h\n",
               "t.conf:2: value \"25h\" for client_body_timeout is out of "
               "range: expected 1ms..24h");
    LOAD_ERROR("[server]\nlingering_time = 0\n",
               "t.conf:2: value \"0\" for lingering_time is out of range: "
               "expected 1ms..24h");
    LOAD_ERROR("[server]\nlingering_timeout = 25h\n",
               "t.conf:2: value \"25h\" for lingering_timeout is out of "
               "range: expected 0..24h");
    LOAD_ERROR("[server]\nsend_timeout = 0ms\n",
               "t.conf:2: value \"0ms\" for send_timeout is out of range: "
               "expected 1ms..24h");
    LOAD_ERROR("[server]\nkeepalive_timeout = 1441m\n",
               "t.conf:2: value \"1441m\" for keepalive_timeout is out of "
               "range: expected 0..24h");
    LOAD_ERROR("[server]\nkeepalive_timeout = 1.5s\n",
               "t.conf:2: bad value \"1.5s\" for keepalive_timeout: "
               "expected a duration like 250ms, 30s or 2m");
    LOAD_OK("[server]\nclient_header_timeout = 1ms\n" UPSTREAM);
    ck_assert_int_eq(cfg->client_header_timeout_ms, 1);
    LOAD_OK("[server]\nclient_header_timeout = 5\n" UPSTREAM);
    ck_assert_int_eq(cfg->client_header_timeout_ms, 5000);
}
END_TEST

START_TEST(server_numbers_and_sizes)
{
    LOAD_ERROR("[server]\nmax_connections = 0\n",
               "t.conf:2: value \"0\" for max_connections is out of range: "
               "expected 1..1000000");
    LOAD_ERROR("[server]\nmax_connections = 1000001\n",
               "t.conf:2: value \"1000001\" for max_connections is out of "
               "range: expected 1..1000000");
    LOAD_ERROR("[server]\nmax_connections = 99999999999999999999999\n",
               "t.conf:2: value \"99999999999999999999999\" for "
               "max_connections is out of range: expected 1..1000000");
    LOAD_ERROR("[server]\nclient_header_timeout = 99999999999999999999h\n",
               "t.conf:2: value \"99999999999999999999h\" for "
               "client_header_timeout is out of range: expected 1ms..24h");
    LOAD_ERROR("[server]\nbuffer_size = 99999999999g\n",
               "t.conf:2: value \"99999999999g\" for buffer_size is out of "
               "range: expected 4k..64m");
    LOAD_ERROR("[server]\nbacklog = 65536\n",
               "t.conf:2: value \"65536\" for backlog is out of range: "
               "expected 1..65535");
    LOAD_ERROR("[server]\nbacklog = -1\n",
               "t.conf:2: bad value \"-1\" for backlog: expected a whole "
               "number");
    LOAD_ERROR("[server]\nbuffer_size = 4095\n",
               "t.conf:2: value \"4095\" for buffer_size is out of range: "
               "expected 4k..64m");
    LOAD_ERROR("[server]\nbuffer_size = 65m\n",
               "t.conf:2: value \"65m\" for buffer_size is out of range: "
               "expected 4k..64m");
    LOAD_ERROR("[server]\nbuffer_size = big\n",
               "t.conf:2: bad value \"big\" for buffer_size: expected a size "
               "like 512, 64k or 1m");
    LOAD_ERROR("[server]\nmax_header_size = 1023\n",
               "t.conf:2: value \"1023\" for max_header_size is out of range: "
               "expected 1k..1m");
    LOAD_ERROR("[server]\nmax_header_size = 2m\n",
               "t.conf:2: value \"2m\" for max_header_size is out of range: "
               "expected 1k..1m");
    LOAD_ERROR("[server]\nsndbuf = 65m\n",
               "t.conf:2: value \"65m\" for sndbuf is out of range: "
               "expected 0..64m");
    LOAD_ERROR("[server]\nrcvbuf = -1\n",
               "t.conf:2: bad value \"-1\" for rcvbuf: expected a size "
               "like 512, 64k or 1m");
    LOAD_ERROR("[server]\nmax_body_size = 1t\n",
               "t.conf:2: bad value \"1t\" for max_body_size: expected a size "
               "like 512, 64k or 1m");
    LOAD_OK("[server]\nmax_body_size = 18446744073709551615\n" UPSTREAM);
    ck_assert_uint_eq(cfg->max_body_size, UINT64_MAX);
    LOAD_OK("[server]\nbuffer_size = 64m\nmax_header_size = 1k\n" UPSTREAM);
    ck_assert_uint_eq(cfg->buffer_size, 64u << 20);
    ck_assert_uint_eq(cfg->max_header_size, 1024);
}
END_TEST

START_TEST(server_listen)
{
    LOAD_ERROR("[server]\nlisten = 127.0.0.1\n",
               "t.conf:2: bad value \"127.0.0.1\" for listen: expected "
               "host:port like 127.0.0.1:8080 or [::1]:8080");
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:65536\n",
               "t.conf:2: bad value \"127.0.0.1:65536\" for listen: expected "
               "host:port like 127.0.0.1:8080 or [::1]:8080");
    LOAD_ERROR("[server]\nlisten = ::1:80\n",
               "t.conf:2: bad value \"::1:80\" for listen: expected "
               "host:port like 127.0.0.1:8080 or [::1]:8080");
    /* port 0: the kernel picks; two of them are two listeners */
    LOAD_OK("[server]\nlisten = 127.0.0.1:0\nlisten = 127.0.0.1:0\n" UPSTREAM);
    ck_assert_int_eq(cfg->n_listen, 2);
    ck_assert_uint_eq(cfg->listen[0].port, 0);
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:80\nlisten = [::1]:80\n"
               "listen = 127.0.0.1:80\n" UPSTREAM,
               "t.conf:4: duplicate listen 127.0.0.1:80 (first at line 2)");
    LOAD_ERROR("[server]\nlisten = [::1]:80\nlisten = [::1]:80\n" UPSTREAM,
               "t.conf:3: duplicate listen [::1]:80 (first at line 2)");
    /* One address however spelt (as the resolver reads it). */
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:80\nlisten = 127.1:80\n" UPSTREAM,
               "t.conf:3: duplicate listen 127.1:80 (first at line 2)");
    LOAD_ERROR("[server]\nlisten = [::1]:80\nlisten = [0:0::1]:80\n" UPSTREAM,
               "t.conf:3: duplicate listen [0:0::1]:80 (first at line 2)");
    LOAD_ERROR("[server]\nlisten = LocalHost:80\nlisten = localhost:80\n"
               UPSTREAM,
               "t.conf:3: duplicate listen localhost:80 (first at line 2)");
    /* A wildcard and an address it covers, on one port: the start could
     * not bind them both, so -t says so first. Not across families for
     * 0.0.0.0, nor on different ports. */
    LOAD_ERROR("[server]\nlisten = 0.0.0.0:80\nlisten = 127.0.0.1:80\n"
               UPSTREAM,
               "t.conf:3: listen 127.0.0.1:80 overlaps listen 0.0.0.0:80 (line "
               "2): the wildcard takes that port on every address ([::] on "
               "IPv4's too)");
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:80\nlisten = [::]:80\n"
               UPSTREAM,
               "t.conf:3: listen [::]:80 overlaps listen 127.0.0.1:80 (line "
               "2): the wildcard takes that port on every address ([::] on "
               "IPv4's too)");
    LOAD_ERROR("[server]\nlisten = [::]:80\nlisten = 0.0.0.0:80\n" UPSTREAM,
               "t.conf:3: listen 0.0.0.0:80 overlaps listen [::]:80 (line "
               "2): the wildcard takes that port on every address ([::] on "
               "IPv4's too)");
    LOAD_ERROR("[server]\nlisten = [::ffff:127.0.0.1]:80\n"
               "listen = 0.0.0.0:80\n" UPSTREAM,
               "t.conf:3: listen 0.0.0.0:80 overlaps listen "
               "[::ffff:127.0.0.1]:80 (line 2): the wildcard takes that port on "
               "every address ([::] on IPv4's too)");
    /* The IPv4 wildcard written IPv4-mapped binds 0.0.0.0 all the same
     * (it passed -t, and the start could not bind). */
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:80\n"
               "listen = [::ffff:0.0.0.0]:80\n" UPSTREAM,
               "t.conf:3: listen [::ffff:0.0.0.0]:80 overlaps listen "
               "127.0.0.1:80 (line 2): the wildcard takes that port on "
               "every address ([::] on IPv4's too)");
    LOAD_OK("[server]\nlisten = [::ffff:0.0.0.0]:80\nlisten = [::1]:80\n"
            UPSTREAM);
    /* A name's family is known only once it is resolved, at start: not
     * judged here. */
    LOAD_OK("[server]\nlisten = 0.0.0.0:80\nlisten = [::1]:80\n"
            "listen = 0.0.0.0:81\nlisten = 127.0.0.1:82\n"
            "listen = ip6-localhost:81\n" UPSTREAM);
    ck_assert_int_eq(cfg->n_listen, 5);
}
END_TEST

START_TEST(server_listen_limit)
{
    struct text t = {0};
    text_add(&t, "[server]\n");
    for (int i = 0; i < CONFIG_MAX_LISTEN; i++) {
        text_add(&t, "listen = 127.0.0.1:%d\n", 8000 + i);
    }
    text_add(&t, UPSTREAM);
    LOAD_OK(t.buf);
    ck_assert_int_eq(cfg->n_listen, CONFIG_MAX_LISTEN);
    ck_assert_uint_eq(cfg->listen[CONFIG_MAX_LISTEN - 1].port,
                      8000 + CONFIG_MAX_LISTEN - 1);

    t.len = 0;
    text_add(&t, "[server]\n");
    for (int i = 0; i <= CONFIG_MAX_LISTEN; i++) {
        text_add(&t, "listen = 127.0.0.1:%d\n", 8000 + i);
    }
    LOAD_ERROR(t.buf, "t.conf:18: too many listen directives (at most 16)");
    free(t.buf);
}
END_TEST

/* --- [upstream NAME] --------------------------------------------------- */

START_TEST(upstream_all_directives)
{
    LOAD_OK("[upstream api.v2-x_y]\n"
            "server = 10.0.0.1:8080\n"
            "server = backend.local:80 weight=5\n"
            "server = [2001:db8::1]:443\t weight=1000\n"
            "keepalive = 0\n"
            "keepalive_timeout = 0\n"
            "connect_timeout = 250ms\n"
            "read_timeout = 2m\n"
            "send_timeout = 1h\n"
            "latency = 1h\n"
            "latency_jitter = 50ms\n");
    const struct config_upstream *up = &cfg->upstreams[0];
    ck_assert_str_eq(up->name, "api.v2-x_y");
    ck_assert_int_eq(up->n_servers, 3);
    ck_assert_str_eq(up->servers[0].addr.host, "10.0.0.1");
    ck_assert_int_eq(up->servers[0].weight, 1);
    ck_assert_str_eq(up->servers[1].addr.host, "backend.local");
    ck_assert_uint_eq(up->servers[1].addr.port, 80);
    ck_assert_int_eq(up->servers[1].weight, 5);
    ck_assert_int_eq(up->servers[1].addr.line, 3);
    ck_assert_str_eq(up->servers[2].addr.host, "2001:db8::1");
    ck_assert_uint_eq(up->servers[2].addr.port, 443);
    ck_assert_int_eq(up->servers[2].weight, 1000);
    ck_assert_int_eq(up->keepalive, 0);
    ck_assert_int_eq(up->keepalive_timeout_ms, 0);
    ck_assert_int_eq(up->connect_timeout_ms, 250);
    ck_assert_int_eq(up->read_timeout_ms, 120000);
    ck_assert_int_eq(up->send_timeout_ms, 3600000);
    ck_assert_int_eq(up->latency_ms, 3600000);
    ck_assert_int_eq(up->latency_jitter_ms, 50);
}
END_TEST

START_TEST(upstream_each_has_own_values)
{
    LOAD_OK("[upstream a]\nserver = h:1\nkeepalive = 7\n"
            "[upstream b]\nserver = h:2\n"
            "[route /b]\nupstream = b\n");
    ck_assert_int_eq(cfg->n_upstreams, 2);
    ck_assert_int_eq(cfg->upstreams[0].keepalive, 7);
    ck_assert_int_eq(cfg->upstreams[1].keepalive, 32);
    ck_assert_int_eq(cfg->upstreams[1].line, 4);
    /* the same directive in two upstreams is not a duplicate */
    LOAD_OK("[upstream a]\nserver = h:1\nkeepalive = 1\n"
            "[upstream b]\nserver = h:2\nkeepalive = 2\n");
    ck_assert_int_eq(cfg->upstreams[1].keepalive, 2);
}
END_TEST

START_TEST(upstream_server_errors)
{
    LOAD_ERROR("[upstream a]\nserver = h:1 weight=0\n",
               "t.conf:2: value \"weight=0\" for server is out of range: "
               "expected weight=1..1000");
    LOAD_ERROR("[upstream a]\nserver = h:1 weight=1001\n",
               "t.conf:2: value \"weight=1001\" for server is out of range: "
               "expected weight=1..1000");
    LOAD_ERROR("[upstream a]\nserver = h:1 weight=x\n",
               "t.conf:2: bad value \"h:1 weight=x\" for server: expected "
               "host:port [weight=N] like 10.0.0.1:8080 weight=2");
    LOAD_ERROR("[upstream a]\nserver = h:1 weight=2 weight=3\n",
               "t.conf:2: bad value \"h:1 weight=2 weight=3\" for server: "
               "expected host:port [weight=N] like 10.0.0.1:8080 weight=2");
    LOAD_ERROR("[upstream a]\nserver = h:1 backup\n",
               "t.conf:2: bad value \"h:1 backup\" for server: expected "
               "host:port [weight=N] like 10.0.0.1:8080 weight=2");
    LOAD_ERROR("[upstream a]\nserver = h:1 weight = 2\n",
               "t.conf:2: bad value \"h:1 weight = 2\" for server: expected "
               "host:port [weight=N] like 10.0.0.1:8080 weight=2");
    LOAD_ERROR("[upstream a]\nserver = h\n",
               "t.conf:2: bad value \"h\" for server: expected host:port "
               "[weight=N] like 10.0.0.1:8080 weight=2");
    LOAD_ERROR("[upstream a]\nserver = h:65536\n",
               "t.conf:2: bad value \"h:65536\" for server: expected "
               "host:port [weight=N] like 10.0.0.1:8080 weight=2");
    LOAD_ERROR("[upstream a]\nserver =\n",
               "t.conf:2: bad value \"\" for server: expected host:port "
               "[weight=N] like 10.0.0.1:8080 weight=2");
    LOAD_ERROR("[upstream a]\nserver = h:0\n",
               "t.conf:2: value \"h:0\" for server is out of range: expected "
               "a port in 1..65535");
    LOAD_ERROR("[upstream a]\nserver = h:1\nserver = h:2\nserver = h:1\n",
               "t.conf:4: duplicate server h:1 in [upstream a] (first at line "
               "2); use weight= to send it more");
    /* One address however spelt, as the resolver reads it; names are
     * compared without case; a name beside an address is not looked up. */
    static const char *const spellings[][2] = {
        {"127.0.0.1", "127.000.000.001"},
        {"127.0.0.1", "127.1"},
        {"10.0.0.1", "10.1"},
        {"[::1]", "[0:0:0:0:0:0:0:1]"},
        {"Origin.Example", "origin.example"},
    };
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        char conf[160], want[200];
        snprintf(conf, sizeof(conf), "[upstream a]\nserver = %s:1\n"
                 "server = %s:1\n", spellings[i][0], spellings[i][1]);
        const char *second = spellings[i][1];
        snprintf(want, sizeof(want), "t.conf:3: duplicate server %s:1 in "
                 "[upstream a] (first at line 2); use weight= to send it "
                 "more", second);
        LOAD_ERROR(conf, want);
    }
    LOAD_OK("[upstream a]\nserver = 127.0.0.1:1\nserver = 127.0.0.2:1\n"
            "server = localhost:1\nserver = [::1]:1\n");
    ck_assert_int_eq(cfg->upstreams[0].n_servers, 4);

    /* A server that is the proxy itself: its requests would loop back
     * (one request filled a worker with connections to itself until
     * read_timeout). The default listen counts; under a wildcard listen,
     * only loopback addresses are surely this machine. */
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:8000\n[upstream a]\n"
               "server = 127.0.0.1:9000\nserver = 127.1:8000\n",
               "t.conf:5: server 127.1:8000 in [upstream a] is where this "
               "proxy listens (line 2): its requests would come back to it");
    LOAD_ERROR("[upstream a]\nserver = 127.0.0.1:8080\n",
               "t.conf:2: server 127.0.0.1:8080 in [upstream a] is where this "
               "proxy listens (the default): its requests would come back "
               "to it");
    LOAD_ERROR("[server]\nlisten = 0.0.0.0:80\n[upstream a]\n"
               "server = 127.0.0.53:80\n",
               "t.conf:4: server 127.0.0.53:80 in [upstream a] is where this "
               "proxy listens (line 2): its requests would come back to it");
    LOAD_ERROR("[server]\nlisten = [::]:80\n[upstream a]\n"
               "server = [::1]:80\n",
               "t.conf:4: server [::1]:80 in [upstream a] is where this "
               "proxy listens (line 2): its requests would come back to it");
    /* However the address is written: IPv4-mapped, or the unspecified
     * address (a connect to it reaches the loopback one), or localhost
     * (the pool prefers its IPv4 address). */
    static const char *const same[] = {"[::ffff:127.0.0.1]", "0.0.0.0", "0",
                                       "localhost", "127.000.000.001"};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        char conf[200], want[300];
        snprintf(conf, sizeof(conf),
                 "[server]\nlisten = 127.0.0.1:8000\n[upstream a]\n"
                 "server = %s:8000\n",
                 same[i]);
        snprintf(want, sizeof(want),
                 "t.conf:4: server %s:8000 in [upstream a] is where this "
                 "proxy listens (line 2): its requests would come back to it",
                 same[i]);
        LOAD_ERROR(conf, want);
    }
    LOAD_ERROR("[server]\nlisten = [::]:80\n[upstream a]\n"
               "server = 127.0.0.1:80\n",
               "t.conf:4: server 127.0.0.1:80 in [upstream a] is where this "
               "proxy listens (line 2): its requests would come back to it");
    LOAD_OK("[server]\nlisten = 0.0.0.0:80\nlisten = 127.0.0.1:0\n"
            "[upstream a]\nserver = 10.0.0.5:80\nserver = [::1]:80\n"
            "server = 127.0.0.1:81\nserver = origin.example:80\n");
    LOAD_OK("[server]\nlisten = 127.0.0.2:80\n[upstream a]\n"
            "server = 127.0.0.1:80\nserver = [::1]:80\n");
}
END_TEST

START_TEST(upstream_value_errors)
{
    LOAD_ERROR("[upstream a]\nkeepalive = 100001\n",
               "t.conf:2: value \"100001\" for keepalive is out of range: "
               "expected 0..100000");
    LOAD_ERROR("[upstream a]\nconnect_timeout = 0\n",
               "t.conf:2: value \"0\" for connect_timeout is out of range: "
               "expected 1ms..24h");
    LOAD_ERROR("[upstream a]\nread_timeout = soon\n",
               "t.conf:2: bad value \"soon\" for read_timeout: expected a "
               "duration like 250ms, 30s or 2m");
    LOAD_ERROR("[upstream a]\nlatency = 61m\n",
               "t.conf:2: value \"61m\" for latency is out of range: "
               "expected 0..1h");
    LOAD_ERROR("[upstream a]\nlatency_jitter = 3600001ms\n",
               "t.conf:2: value \"3600001ms\" for latency_jitter is out of "
               "range: expected 0..1h");
    LOAD_ERROR("[upstream a]\nkeepalive_timeout = 86400001ms\n",
               "t.conf:2: value \"86400001ms\" for keepalive_timeout is out "
               "of range: expected 0..24h");
    LOAD_ERROR("[upstream a]\nsend_timeout = 1ms\nsend_timeout = 2ms\n",
               "t.conf:3: duplicate directive \"send_timeout\" (first set at "
               "line 2)");
}
END_TEST

START_TEST(upstream_section_errors)
{
    LOAD_ERROR("[server]\nworkers = 2\n\n[upstream a]\nkeepalive = 3\n"
               "[upstream b]\nserver = h:1\n",
               "t.conf:4: [upstream a] has no server");
    /* a section with no directives at all is seen too */
    LOAD_ERROR("[upstream b]\nserver = h:1\n[upstream empty]\n",
               "t.conf:3: [upstream empty] has no server");
    LOAD_ERROR(UPSTREAM "\n[upstream a]\nserver = h:1\n",
               "t.conf:4: duplicate [upstream a] (first at line 1)");
    LOAD_ERROR("[upstream]\n",
               "t.conf:1: [upstream] needs a name, like [upstream origin]");
    LOAD_ERROR("[upstream a b]\n",
               "t.conf:1: bad upstream name \"a b\": use letters, digits, "
               "'_', '.' and '-'");
    LOAD_ERROR("[upstream a/b]\n",
               "t.conf:1: bad upstream name \"a/b\": use letters, digits, "
               "'_', '.' and '-'");
    LOAD_OK("[ upstream \t spaced ]\nserver = h:1\n");
    ck_assert_str_eq(cfg->upstreams[0].name, "spaced");

    char text[256], name[CONFIG_NAME_MAX + 1];
    memset(name, 'n', sizeof(name) - 1);
    name[CONFIG_NAME_MAX - 1] = '\0'; /* 63 characters: fits */
    snprintf(text, sizeof(text), "[upstream %s]\nserver = h:1\n", name);
    LOAD_OK(text);
    ck_assert_str_eq(cfg->upstreams[0].name, name);
    name[CONFIG_NAME_MAX - 1] = 'n';
    name[CONFIG_NAME_MAX] = '\0'; /* 64: too long */
    snprintf(text, sizeof(text), "\n[upstream %s]\nserver = h:1\n", name);
    char msg[256];
    snprintf(msg, sizeof(msg),
             "t.conf:2: upstream name \"%s\" is too long (at most 63 "
             "characters)",
             name);
    LOAD_ERROR(text, msg);
}
END_TEST

START_TEST(upstream_server_limit)
{
    struct text t = {0};
    text_add(&t, "[upstream a]\n");
    for (int i = 0; i < CONFIG_MAX_SERVERS; i++) {
        text_add(&t, "server = 10.0.0.1:%d weight=%d\n", 1000 + i, i + 1);
    }
    LOAD_OK(t.buf);
    ck_assert_int_eq(cfg->upstreams[0].n_servers, CONFIG_MAX_SERVERS);
    ck_assert_int_eq(cfg->upstreams[0].servers[63].weight, 64);
    ck_assert_int_eq(cfg->upstreams[0].servers[63].addr.line, 65);
    text_add(&t, "server = 10.0.0.2:1\n");
    LOAD_ERROR(t.buf, "t.conf:66: too many server directives in [upstream a] "
                      "(at most 64)");
    free(t.buf);
}
END_TEST

/* A setting changed from its default that has no effect without another
 * the section leaves off is accepted with a warning naming its line (it
 * was accepted silently); defaults written out, as in the shipped conf,
 * are not warned of. */
START_TEST(upstream_surplus_settings_warn)
{
    LOAD_OK("[server]\n"
            "[upstream a]\nserver = 127.0.0.1:9000\n"
            "hash_key = header X-User\n"   /* 4 */
            "health_interval = 1s\n"       /* 5 */
            "health_timeout = 2s\n"        /* 6: the default */
            "health_rise = 5\n"            /* 7 */
            "health_fall = 1\n"            /* 8 */
            "[upstream b]\nserver = 127.0.0.1:9001\nbalance = hash\n"
            "hash_key = header X-User\nhealth_check = /h\n"
            "health_interval = 1s\n"
            "[route /a]\nupstream = a\n"
            "fault_delay_percent = 50\n"   /* 17 */
            "fault_delay_distribution = uniform\n" /* 18 */
            "fault_abort_percent = 10\n"   /* 19 */
            "[route /b]\nupstream = b\nfault_delay = 1s\n"
            "fault_delay_percent = 50\nfault_abort = 503\n"
            "fault_abort_percent = 10\n"
            "[route /c]\nupstream = b\nfault_delay = 0\n"
            "fault_delay_percent = 100\nfault_abort_percent = 100\n");
    static const struct {
        int line;
        const char *msg;
    } want[] = {
        {4, "hash_key has no effect: the pool does not balance by hash "
            "(balance = hash)"},
        {5, "health_interval has no effect: active health checks are off "
            "(health_check = off)"},
        {7, "health_rise has no effect: active health checks are off "
            "(health_check = off)"},
        {8, "health_fall has no effect: active health checks are off "
            "(health_check = off)"},
        {17, "fault_delay_percent has no effect: the route sets no "
             "fault_delay"},
        {18, "fault_delay_distribution has no effect: the route sets no "
             "fault_delay"},
        {19, "fault_abort_percent has no effect: the route sets no "
             "fault_abort"},
    };
    int n = (int)(sizeof(want) / sizeof(want[0]));
    ck_assert_msg(cfg->n_warnings == n, "%d warnings, the last line %d: %s",
                  cfg->n_warnings,
                  cfg->n_warnings > 0 ? cfg->warnings[cfg->n_warnings - 1].line
                                      : 0,
                  cfg->n_warnings > 0 ? cfg->warnings[cfg->n_warnings - 1].msg
                                      : "");
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(cfg->warnings[i].line, want[i].line);
        ck_assert_str_eq(cfg->warnings[i].msg, want[i].msg);
    }
    /* In line order, whichever is checked first. */
    LOAD_OK("[server]\n[upstream a]\nserver = 127.0.0.1:9000\n"
            "health_fall = 1\nretries = 0\nhash_key = header X\n"
            "health_interval = 1s\n");
    ck_assert_int_eq(cfg->n_warnings, 3);
    ck_assert_int_eq(cfg->warnings[0].line, 4);
    ck_assert_int_eq(cfg->warnings[1].line, 6);
    ck_assert_int_eq(cfg->warnings[2].line, 7);
    /* A conf read again starts with none. */
    LOAD_OK("[server]\n" UPSTREAM);
    ck_assert_int_eq(cfg->n_warnings, 0);
}
END_TEST

START_TEST(upstream_limit)
{
    struct text t = {0};
    for (int i = 0; i < CONFIG_MAX_UPSTREAMS; i++) {
        text_add(&t, "[upstream u%d]\nserver = h:%d\n", i, i + 1);
    }
    LOAD_OK(t.buf);
    ck_assert_int_eq(cfg->n_upstreams, CONFIG_MAX_UPSTREAMS);
    ck_assert_str_eq(cfg->upstreams[63].name, "u63");
    ck_assert_int_eq(cfg->n_routes, 0); /* several upstreams: no implicit / */
    text_add(&t, "[upstream one-too-many]\nserver = h:1\n");
    LOAD_ERROR(t.buf, "t.conf:129: too many [upstream] sections (at most 64)");
    free(t.buf);
}
END_TEST

/* --- [route PREFIX] ---------------------------------------------------- */

START_TEST(route_resolves_upstream)
{
    LOAD_OK("[route /api]\nupstream = b\n"
            "[upstream a]\nserver = h:1\n"
            "[upstream b]\nserver = h:2\n"
            "[route /]\nupstream = a\n");
    ck_assert_int_eq(cfg->n_routes, 2);
    ck_assert_str_eq(cfg->routes[0].prefix, "/api");
    ck_assert_str_eq(cfg->routes[0].upstream_name, "b");
    ck_assert_int_eq(cfg->routes[0].upstream, 1);
    ck_assert_int_eq(cfg->routes[0].line, 1);
    ck_assert_str_eq(cfg->routes[1].prefix, "/");
    ck_assert_int_eq(cfg->routes[1].upstream, 0);
    ck_assert_int_eq(cfg->routes[1].line, 7);
}
END_TEST

START_TEST(route_errors)
{
    LOAD_ERROR("[route /api]\n; which pool\n\nupstream = nope\n" UPSTREAM,
               "t.conf:4: upstream \"nope\" in [route /api] is not defined "
               "(no [upstream nope] section)");
    /* [admin] with no listen, or on the proxy's own address. */
    LOAD_ERROR(UPSTREAM "[admin]\n",
               "t.conf:3: [admin] has no listen directive (leave the section "
               "out to have no admin listener)");
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:8080\n" UPSTREAM
               "[admin]\nlisten = 127.0.0.1:8080\n",
               "t.conf:6: [admin] listen 127.0.0.1:8080 is also where [server] "
               "listens (line 2)");
    LOAD_ERROR(UPSTREAM "[admin]\nlisten = 127.0.0.1:8080\n",
               "t.conf:4: [admin] listen 127.0.0.1:8080 is also where [server] "
               "listens (the default)");
    LOAD_ERROR("[server]\nlisten = 0.0.0.0:9100\n" UPSTREAM
               "[admin]\nlisten = 127.0.0.1:9100\n",
               "t.conf:6: [admin] listen 127.0.0.1:9100 is also where [server] "
               "listens (line 2)");
    LOAD_OK(UPSTREAM "[admin]\nlisten = 127.0.0.1:9001\n");
    /* The wildcard spelt otherwise (0 is 0.0.0.0), on the admin's side. */
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:9100\n" UPSTREAM
               "[admin]\nlisten = 0:9100\n",
               "t.conf:6: [admin] listen 0:9100 is also where [server] "
               "listens (line 2)");
    /* [::] takes IPv4 connections too; 0.0.0.0 takes no IPv6 ones. */
    LOAD_ERROR("[server]\nlisten = [::]:9100\n" UPSTREAM
               "[admin]\nlisten = 127.0.0.1:9100\n",
               "t.conf:6: [admin] listen 127.0.0.1:9100 is also where [server] "
               "listens (line 2)");
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:9100\n" UPSTREAM
               "[admin]\nlisten = [0:0::0]:9100\n",
               "t.conf:6: [admin] listen [0:0::0]:9100 is also where [server] "
               "listens (line 2)");
    LOAD_OK("[server]\nlisten = 0.0.0.0:9100\n" UPSTREAM
            "[admin]\nlisten = [::1]:9100\n");
    LOAD_OK("[server]\nlisten = [::1]:9100\n" UPSTREAM
            "[admin]\nlisten = 0.0.0.0:9100\n");
    /* evdns takes only the plain forms of a name server's address. */
    LOAD_ERROR("[server]\nresolver = 127.1\n" UPSTREAM,
               "t.conf:2: bad value \"127.1\" for resolver: expected system, "
               "or a name server's address like 127.0.0.1 or 10.0.0.2:53");
    /* The upstream line, not the route's last directive. */
    LOAD_ERROR("[route /api]\nupstream = nope\nfault_delay = 1s\n" UPSTREAM,
               "t.conf:2: upstream \"nope\" in [route /api] is not defined "
               "(no [upstream nope] section)");
    LOAD_ERROR(UPSTREAM "[route /api]\n",
               "t.conf:3: [route /api] has no upstream directive");
    LOAD_ERROR(UPSTREAM "[route /api]\nupstream = a\nupstream = a\n",
               "t.conf:5: duplicate directive \"upstream\" (first set at line "
               "4)");
    LOAD_ERROR(UPSTREAM "[route /api]\nupstream = a b\n",
               "t.conf:4: bad value \"a b\" for upstream: expected an "
               "upstream name (letters, digits, '_', '.', '-')");
    LOAD_ERROR(UPSTREAM "[route api]\n",
               "t.conf:3: bad route prefix \"api\": expected a path starting "
               "with /, like /api");
    LOAD_ERROR(UPSTREAM "[route /a b]\n",
               "t.conf:3: bad route prefix \"/a b\": expected a path starting "
               "with /, like /api");
    LOAD_ERROR(UPSTREAM "[route]\n",
               "t.conf:3: [route] needs a path prefix, like [route /api]");
    /* Paths are routed normalised: these prefixes could never match. */
    static const char *const dead[] = {"/%41", "/a%2fb", "//b", "/a//",
                                       "/./x", "/a/../b", "/a/./", "/a?b",
                                       "/a#b", "/a%zz", "/a%2z"};
    for (size_t i = 0; i < sizeof(dead) / sizeof(dead[0]); i++) {
        char conf[128], want[256];
        snprintf(conf, sizeof(conf), UPSTREAM "[route %s]\nupstream = a\n",
                 dead[i]);
        snprintf(want, sizeof(want),
                 "t.conf:3: route prefix \"%s\" can never match: paths are "
                 "routed without their query, with %%-escapes decoded, // "
                 "merged and . and .. segments resolved, so write it that "
                 "way",
                 dead[i]);
        LOAD_ERROR(conf, want);
    }
    /* A '%' that a raw "%25" can spell, and names that only start with
     * dots, can. */
    LOAD_OK(UPSTREAM "[route /100%]\nupstream = a\n[route /a%25]\n"
            "upstream = a\n[route /b%2]\nupstream = a\n"
            "[route /a/.well-known]\nupstream = a\n[route /a/..b]\n"
            "upstream = a\n[route /a/.]\nupstream = a\n");
    LOAD_ERROR(UPSTREAM "[route /x]\nupstream = a\n[route /x]\n",
               "t.conf:5: duplicate [route /x] (first at line 3)");
}
END_TEST

START_TEST(route_limit)
{
    struct text t = {0};
    text_add(&t, UPSTREAM);
    for (int i = 0; i < CONFIG_MAX_ROUTES - 1; i++) {
        text_add(&t, "[route /r%d]\nupstream = a\n", i);
    }
    /* 255 routes and the implicit / */
    LOAD_OK(t.buf);
    ck_assert_int_eq(cfg->n_routes, CONFIG_MAX_ROUTES);
    ck_assert_str_eq(cfg->routes[CONFIG_MAX_ROUTES - 1].prefix, "/");
    /* 256 routes, none of them /: no room for the implicit one */
    text_add(&t, "[route /last]\nupstream = a\n");
    LOAD_ERROR(t.buf, "t.conf: too many [route] sections to add the "
                      "implicit [route /] (at most 256)");
    text_add(&t, "[route /one-too-many]\nupstream = a\n");
    LOAD_ERROR(t.buf, "t.conf:515: too many [route] sections (at most 256)");
    free(t.buf);
}
END_TEST

START_TEST(route_implicit)
{
    /* one upstream, no routes: / goes to it */
    LOAD_OK(UPSTREAM);
    ck_assert_int_eq(cfg->n_routes, 1);
    ck_assert_str_eq(cfg->routes[0].prefix, "/");
    ck_assert_str_eq(cfg->routes[0].upstream_name, "a");
    ck_assert_int_eq(cfg->routes[0].upstream, 0);
    ck_assert_int_eq(cfg->routes[0].line, 0);
    /* one upstream and other routes: / is still added */
    LOAD_OK(UPSTREAM "[route /api]\nupstream = a\n");
    ck_assert_int_eq(cfg->n_routes, 2);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/x", 2), 1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/api/x", 6), 0);
    /* an explicit / is not doubled */
    LOAD_OK(UPSTREAM "[route /]\nupstream = a\n");
    ck_assert_int_eq(cfg->n_routes, 1);
    ck_assert_int_eq(cfg->routes[0].line, 3);
    /* several upstreams, no /: unmatched paths match nothing (404) */
    LOAD_OK(UPSTREAM "[upstream b]\nserver = h:1\n[route /b]\nupstream = b\n");
    ck_assert_int_eq(cfg->n_routes, 1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/", 1), -1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/a", 2), -1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/b/c", 4), 0);
}
END_TEST

START_TEST(route_longest_prefix)
{
    LOAD_OK(UPSTREAM "[route /api]\nupstream = a\n"
                     "[route /]\nupstream = a\n"
                     "[route /api/v2]\nupstream = a\n"
                     "[route /static/]\nupstream = a\n");
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/", 1), 1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/index.html", 11), 1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/api", 4), 0);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/api/x", 6), 0);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/apix", 5), 0);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/api/v2", 7), 2);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/api/v2/users", 13), 2);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/api/v3", 7), 0);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/static", 7), 1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/static/a.css", 13), 3);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/API", 4), 1); /* case matters */
    /* only len bytes count: the path need not be NUL-terminated */
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/api/v2/users", 4), 0);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "/api/v2/users", 3), 1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "", 0), -1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, "x", 1), -1);
    ck_assert_int_eq(config_route_match(cfg, NULL, 0, NULL, 0), -1);
}
END_TEST

/* --- syntax ------------------------------------------------------------ */

START_TEST(syntax_sections)
{
    LOAD_ERROR("; comment\n[servers]\n",
               "t.conf:2: unknown section [servers]: expected [server], "
               "[upstream NAME], [route PREFIX] or [admin]");
    LOAD_ERROR("[Server]\n",
               "t.conf:1: unknown section [Server]: expected [server], "
               "[upstream NAME], [route PREFIX] or [admin]");
    LOAD_ERROR("[]\n", "t.conf:1: unknown section []: expected [server], "
                       "[upstream NAME], [route PREFIX] or [admin]");
    LOAD_ERROR("[server main]\n",
               "t.conf:1: [server] takes no name (found \"main\")");
    LOAD_ERROR("\n\n[server\n",
               "t.conf:3: section header without a closing ]");
    LOAD_ERROR("[server ; oops]\n",
               "t.conf:1: section header without a closing ]");
    LOAD_ERROR("[server] workers = 2\n",
               "t.conf:1: unexpected text after the section header");
    LOAD_OK("[server] ; the proxy itself\nworkers = 2\n" UPSTREAM);
    ck_assert_int_eq(cfg->workers, 2);
    /* [server] and [admin] appear once, as [upstream NAME] and
     * [route PREFIX] do for each name and prefix */
    LOAD_ERROR("[server]\nworkers = 2\n" UPSTREAM "[server]\nbacklog = 7\n",
               "t.conf:5: a second [server] section (the first is at line 1)");
    LOAD_ERROR("[admin]\nlisten = 127.0.0.1:9\n[admin]\n" UPSTREAM,
               "t.conf:3: a second [admin] section (the first is at line 1)");
}
END_TEST

START_TEST(syntax_directives)
{
    LOAD_ERROR("# top\nworkers = 2\n",
               "t.conf:2: directive \"workers\" appears before any section "
               "header");
    LOAD_ERROR("[server]\nworker = 2\n",
               "t.conf:2: unknown directive \"worker\" in [server]");
    LOAD_ERROR("[server]\nkeepalive = 2\n",
               "t.conf:2: unknown directive \"keepalive\" in [server] (it "
               "belongs in [upstream NAME])");
    LOAD_ERROR("[upstream a]\nlisten = h:1\n",
               "t.conf:2: unknown directive \"listen\" in [upstream a] (it "
               "belongs in [server])");
    LOAD_ERROR("[route /x]\nserver = h:1\n",
               "t.conf:2: unknown directive \"server\" in [route /x] (it "
               "belongs in [upstream NAME])");
    LOAD_ERROR("[route /x]\nhosts = example.com\n",
               "t.conf:2: unknown directive \"hosts\" in [route /x]");
    LOAD_ERROR("[server]\n= 2\n",
               "t.conf:2: unknown directive \"\" in [server]");
    /* nginx's way, a value after the name without '=' (split by the ini
     * parser at a ':'): the directive named, and how to write it. */
    LOAD_ERROR("[server]\nlisten 127.0.0.1:8080\n",
               "t.conf:2: \"listen 127.0.0.1\" is no directive: write "
               "\"listen = \" and the value (an '=' between them)");
    LOAD_ERROR("[upstream a]\nserver\t10.0.0.1:80\n",
               "t.conf:2: \"server?10.0.0.1\" is no directive: write "
               "\"server = \" and the value (an '=' between them)");
    LOAD_ERROR("[server]\nlisten [::1]:80\n",
               "t.conf:2: \"listen [\" is no directive: write \"listen = \" "
               "and the value (an '=' between them)");
    LOAD_ERROR("[server]\nlistens 1:2\n",
               "t.conf:2: unknown directive \"listens 1\" in [server]");
    LOAD_ERROR("[server]\nworkers\n",
               "t.conf:2: expected \"name = value\" or a [section] header");
    LOAD_ERROR("[server]\nworkers ; = 2\n",
               "t.conf:2: expected \"name = value\" or a [section] header");
    LOAD_ERROR("[server]\nbacklog = 5\nbacklog = 6\n",
               "t.conf:3: duplicate directive \"backlog\" (first set at line "
               "2)");
    /* name: value is accepted, as inih does */
    LOAD_OK("[server]\nworkers: 3\n" UPSTREAM);
    ck_assert_int_eq(cfg->workers, 3);
}
END_TEST

START_TEST(syntax_comments_and_blanks)
{
    LOAD_OK("; a comment\n"
            "# another\n"
            "\n"
            "   \t\n"
            "[server]   \n"
            "   ; indented comment\n"
            "workers = 5 ; five\n"
            "backlog=9 # nine\n"
            "\n"
            "[upstream a] # the pool\n"
            "server = h:1 weight=2 ; heavy\n");
    ck_assert_int_eq(cfg->workers, 5);
    ck_assert_int_eq(cfg->backlog, 9);
    ck_assert_int_eq(cfg->upstreams[0].line, 10);
    ck_assert_int_eq(cfg->upstreams[0].servers[0].weight, 2);
    ck_assert_int_eq(cfg->upstreams[0].servers[0].addr.line, 11);
    /* '#' starts a comment only after a blank */
    LOAD_ERROR("[server]\nworkers = 1#2\n" UPSTREAM,
               "t.conf:2: bad value \"1#2\" for workers: expected a whole "
               "number or auto");
}
END_TEST

START_TEST(syntax_quoted_values)
{
    /* Double quotes around a whole value go, as in nginx and HAProxy; a
     * quote at one end only is refused, as there; quotes inside a value
     * stay and are judged as written. */
    LOAD_OK("[server]\n"
            "listen = \"127.0.0.1:8081\"\n"
            "access_log = \"/var/log/a b.log\" ; quoted\n"
            "client_header_timeout = \"3s\"\n"
            "[upstream a]\n"
            "server = \"h:1 weight=2\"\n");
    ck_assert_int_eq(cfg->listen[0].port, 8081);
    ck_assert_str_eq(cfg->access_log, "/var/log/a b.log");
    ck_assert_int_eq(cfg->client_header_timeout_ms, 3000);
    ck_assert_int_eq(cfg->upstreams[0].servers[0].weight, 2);
    LOAD_OK("[server]\naccess_log = /tmp/a\"b.log\n" UPSTREAM);
    ck_assert_str_eq(cfg->access_log, "/tmp/a\"b.log");
    LOAD_ERROR("[server]\nworkers = \"3\n" UPSTREAM,
               "t.conf:2: unbalanced double quote in value \"\"3\" for "
               "workers");
    LOAD_ERROR("[server]\naccess_log = /var/log/a.log\"\n" UPSTREAM,
               "t.conf:2: unbalanced double quote in value "
               "\"/var/log/a.log\"\" for access_log");
    LOAD_ERROR("[server]\naccess_log = \"\n" UPSTREAM,
               "t.conf:2: unbalanced double quote in value \"\"\" for "
               "access_log");
    LOAD_ERROR("[server]\nworkers = \"\"\n" UPSTREAM,
               "t.conf:2: bad value \"\" for workers: expected a whole "
               "number or auto");
}
END_TEST

START_TEST(syntax_crlf_bom_and_last_line)
{
    LOAD_OK("\xEF\xBB\xBF[server]\r\nworkers = 2\r\n\r\n[upstream a]\r\n"
            "server = h:1");
    ck_assert_int_eq(cfg->workers, 2);
    ck_assert_int_eq(cfg->upstreams[0].line, 4);
    ck_assert_uint_eq(cfg->upstreams[0].servers[0].addr.port, 1);
    LOAD_ERROR("[server]\r\nworkers = 2\r\nbacklog = x\r\n",
               "t.conf:3: bad value \"x\" for backlog: expected a whole "
               "number");
    LOAD_ERROR("", "t.conf: no [upstream NAME] section: nothing to proxy to");
    LOAD_ERROR("[server]\nworkers = 2\n",
               "t.conf: no [upstream NAME] section: nothing to proxy to");
}
END_TEST

START_TEST(syntax_continuation_lines)
{
    /* an indented line adds a value to a repeatable directive */
    LOAD_OK("[server]\n"
            "listen = 127.0.0.1:1\n"
            "    127.0.0.1:2 ; second\n"
            "\n"
            "\t[::1]:3\n"
            "[upstream a]\n"
            "server = h:1\n"
            "  h:2 weight=3\n");
    ck_assert_int_eq(cfg->n_listen, 3);
    ck_assert_uint_eq(cfg->listen[1].port, 2);
    ck_assert_int_eq(cfg->listen[1].line, 3);
    ck_assert_str_eq(cfg->listen[2].host, "::1");
    ck_assert_int_eq(cfg->listen[2].line, 5);
    ck_assert_int_eq(cfg->upstreams[0].n_servers, 2);
    ck_assert_int_eq(cfg->upstreams[0].servers[1].weight, 3);
    /* ...and is an error under a directive that takes one value */
    LOAD_ERROR("[server]\nworkers = 2\n  backlog = 5\n",
               "t.conf:3: indented line continues \"workers\", which takes "
               "one value (do not indent directives)");
    /* an indented line with nothing before it to continue is refused, as
     * the first line of a section (a header resets) or of the file */
    LOAD_ERROR("[server]\n  workers = 2\n" UPSTREAM,
               "t.conf:2: indented line, with no directive before it in this "
               "section to continue (do not indent directives)");
    LOAD_ERROR("[upstream a]\nserver = h:1\n[server]\n  workers = 4\n",
               "t.conf:4: indented line, with no directive before it in this "
               "section to continue (do not indent directives)");
    LOAD_ERROR(" [server]\nworkers = 4\n" UPSTREAM,
               "t.conf:1: indented line, with no directive before it in this "
               "section to continue (do not indent directives)");
    /* a BOM is no indent */
    LOAD_OK("\xEF\xBB\xBF[server]\nworkers = 4\n" UPSTREAM);
    ck_assert_int_eq(cfg->workers, 4);
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:1\n   nonsense\n",
               "t.conf:3: bad value \"nonsense\" for listen: expected "
               "host:port like 127.0.0.1:8080 or [::1]:8080 (this indented "
               "line continues it: do not indent directives)");
    /* An indented directive under listen or server says why it is one
     * (it read as a bad address, nothing more). */
    LOAD_ERROR("[server]\nlisten = 127.0.0.1:1\n  workers = 2\n",
               "t.conf:3: bad value \"workers = 2\" for listen: expected "
               "host:port like 127.0.0.1:8080 or [::1]:8080 (this indented "
               "line continues it: do not indent directives)");
    LOAD_ERROR("[upstream a]\nserver = h:1\n  weight = 2\n",
               "t.conf:3: bad value \"weight = 2\" for server: expected "
               "host:port [weight=N] like 10.0.0.1:8080 weight=2 (this "
               "indented line continues it: do not indent directives)");
}
END_TEST

START_TEST(syntax_line_too_long)
{
    char text[1200], line[300];

    /* 197 characters is the longest line */
    memset(line, 'x', sizeof(line));
    memcpy(line, "[route /", 8);
    line[196] = ']';
    line[197] = '\0';
    snprintf(text, sizeof(text), "%s\nupstream = a\n" UPSTREAM, line);
    LOAD_OK(text);
    line[196] = 'x';
    line[197] = ']';
    line[198] = '\0';
    snprintf(text, sizeof(text), "[server]\n%s\n" UPSTREAM, line);
    LOAD_ERROR(text, "t.conf:2: line too long (198 characters, at most 197)");
    /* the line break does not count, \r\n or \n */
    line[196] = ']';
    line[197] = '\0';
    snprintf(text, sizeof(text), "%s\r\nupstream = a\n" UPSTREAM, line);
    LOAD_OK(text);
    /* Comment lines have no limit (they had the same one), indented or
     * not, and neither has a UTF-8 BOM on the first line (it counted). */
    memset(line, 'x', sizeof(line));
    memcpy(line, "  ; ", 4);
    line[sizeof(line) - 1] = '\0';
    snprintf(text, sizeof(text), "%s\n# %s\n[server]\n%s\n" UPSTREAM,
             line + 2, line + 4, line);
    LOAD_OK(text);
    ck_assert_int_eq(cfg->upstreams[0].line, 5); /* lines still counted */
    memset(line, 'x', sizeof(line));
    memcpy(line, "\xEF\xBB\xBF[route /", 11);
    line[199] = ']';
    line[200] = '\0';
    snprintf(text, sizeof(text), "%s\nupstream = a\n" UPSTREAM, line);
    LOAD_OK(text);
}
END_TEST

START_TEST(syntax_first_error_only)
{
    LOAD_ERROR("[server]\nworkers = x\nbacklog = y\n[nope]\n",
               "t.conf:2: bad value \"x\" for workers: expected a whole "
               "number or auto");
    LOAD_ERROR("[server]\nworkers\nbacklog = y\n",
               "t.conf:2: expected \"name = value\" or a [section] header");
    /* validation reports the earliest line among its findings */
    LOAD_ERROR("[route /r]\nupstream = missing\n"
               "[upstream empty]\n"
               "[upstream a]\nserver = h:1\n",
               "t.conf:2: upstream \"missing\" in [route /r] is not defined "
               "(no [upstream missing] section)");
    LOAD_ERROR("[upstream empty]\n"
               "[upstream a]\nserver = h:1\n"
               "[route /r]\nupstream = missing\n",
               "t.conf:1: [upstream empty] has no server");
    /* a parse error wins over anything validation would find */
    LOAD_ERROR("[upstream empty]\n[server]\nworkers = x\n",
               "t.conf:3: bad value \"x\" for workers: expected a whole "
               "number or auto");
}
END_TEST

START_TEST(syntax_control_chars_shown)
{
    LOAD_ERROR("[server]\nworkers = a\x01" "b\n",
               "t.conf:2: bad value \"a?b\" for workers: expected a whole "
               "number or auto");
}
END_TEST

START_TEST(small_error_buffer)
{
    char small[12];
    ck_assert_int_eq(config_load_string(cfg, "[nope]\n", "t.conf", small,
                                        sizeof(small)),
                     -1);
    ck_assert_str_eq(small, "t.conf:1: u");
    ck_assert_int_eq(config_load_string(cfg, "[nope]\n", "t.conf", NULL, 0),
                     -1);
}
END_TEST

/* --- files ------------------------------------------------------------- */

START_TEST(file_shipped_conf)
{
    const char *path = TOP_SRCDIR "/conf/switchboard.conf";
    struct config *def = config_new();

    ck_assert_ptr_nonnull(def);
    ck_assert_msg(config_load(cfg, path, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(cfg->path, path);
    ck_assert_int_eq(cfg->n_listen, 1);
    ck_assert_str_eq(cfg->listen[0].host, "127.0.0.1");
    ck_assert_uint_eq(cfg->listen[0].port, 8080);
    ck_assert_int_gt(cfg->listen[0].line, 0); /* written, not defaulted */
    ck_assert_int_eq(cfg->workers, 0);
    ck_assert_str_eq(cfg->access_log, "stderr");
    ck_assert_int_eq(cfg->n_upstreams, 1);
    const struct config_upstream *up = &cfg->upstreams[0];
    ck_assert_str_eq(up->name, "origin");
    ck_assert_int_eq(up->n_servers, 1);
    ck_assert_str_eq(up->servers[0].addr.host, "127.0.0.1");
    ck_assert_uint_eq(up->servers[0].addr.port, 9000);
    ck_assert_int_eq(up->servers[0].weight, 1);
    ck_assert_int_eq(cfg->n_routes, 1);
    ck_assert_str_eq(cfg->routes[0].prefix, "/");
    ck_assert_int_eq(cfg->routes[0].upstream, 0);
    ck_assert_int_gt(cfg->routes[0].line, 0); /* explicit, not implied */
    ck_assert_int_eq(cfg->n_warnings, 0); /* every default written out */

    /* the file documents the defaults: every [server] value is one */
    ck_assert_int_eq(cfg->max_connections, def->max_connections);
    ck_assert_int_eq(cfg->backlog, def->backlog);
    ck_assert_int_eq(cfg->client_header_timeout_ms,
                     def->client_header_timeout_ms);
    ck_assert_int_eq(cfg->client_body_timeout_ms, def->client_body_timeout_ms);
    ck_assert_int_eq(cfg->keepalive_timeout_ms, def->keepalive_timeout_ms);
    ck_assert_int_eq(cfg->send_timeout_ms, def->send_timeout_ms);
    ck_assert_int_eq(cfg->lingering_timeout_ms, def->lingering_timeout_ms);
    ck_assert_int_eq(cfg->lingering_time_ms, def->lingering_time_ms);
    ck_assert_uint_eq(cfg->buffer_size, def->buffer_size);
    ck_assert_uint_eq(cfg->max_header_size, def->max_header_size);
    ck_assert_uint_eq(cfg->max_body_size, def->max_body_size);
    ck_assert_int_eq(cfg->log_level, def->log_level);
    config_free(def);

    /* and so are the upstream's */
    LOAD_OK(UPSTREAM);
    const struct config_upstream *d = &cfg->upstreams[0];
    struct config *again = config_new();
    ck_assert_int_eq(config_load(again, path, err, sizeof(err)), 0);
    up = &again->upstreams[0];
    ck_assert_int_eq(up->keepalive, d->keepalive);
    ck_assert_int_eq(up->keepalive_timeout_ms, d->keepalive_timeout_ms);
    ck_assert_int_eq(up->connect_timeout_ms, d->connect_timeout_ms);
    ck_assert_int_eq(up->read_timeout_ms, d->read_timeout_ms);
    ck_assert_int_eq(up->send_timeout_ms, d->send_timeout_ms);
    ck_assert_int_eq(up->latency_ms, d->latency_ms);
    ck_assert_int_eq(up->latency_jitter_ms, d->latency_jitter_ms);
    config_free(again);
}
END_TEST

START_TEST(file_cannot_open)
{
    const char *path = TOP_SRCDIR "/conf/does-not-exist.conf";
    ck_assert_int_eq(config_load(cfg, path, err, sizeof(err)), -1);
    ck_assert_str_eq(err, TOP_SRCDIR
                     "/conf/does-not-exist.conf: cannot open: No such file "
                     "or directory");
}
END_TEST

START_TEST(file_is_a_directory)
{
    ck_assert_int_eq(config_load(cfg, TOP_SRCDIR "/conf", err, sizeof(err)),
                     -1);
    ck_assert_str_eq(err, TOP_SRCDIR "/conf: cannot read: Is a directory");
}
END_TEST

/* Write data to a new temporary file; its path goes into path. */
static void write_temp(char *path, size_t n, const char *data, size_t len)
{
    snprintf(path, n, "/tmp/check_config.XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

START_TEST(file_errors_name_the_file)
{
    static const char data[] = "[server]\nworkers = 2\nbogus = 1\n";
    char path[64], msg[128];

    write_temp(path, sizeof(path), data, sizeof(data) - 1);
    ck_assert_int_eq(config_load(cfg, path, err, sizeof(err)), -1);
    unlink(path);
    snprintf(msg, sizeof(msg), "%s:3: unknown directive \"bogus\" in [server]",
             path);
    ck_assert_str_eq(err, msg);
}
END_TEST

START_TEST(file_with_nul_byte)
{
    static const char data[] = "[server]\nworkers = 2\n\nback\0log = 1\n";
    char path[64], msg[128];

    write_temp(path, sizeof(path), data, sizeof(data) - 1);
    ck_assert_int_eq(config_load(cfg, path, err, sizeof(err)), -1);
    unlink(path);
    snprintf(msg, sizeof(msg), "%s:4: contains a NUL byte", path);
    ck_assert_str_eq(err, msg);
}
END_TEST

START_TEST(file_empty_and_large)
{
    char path[64];
    struct text t = {0};

    write_temp(path, sizeof(path), "", 0);
    ck_assert_int_eq(config_load(cfg, path, err, sizeof(err)), -1);
    unlink(path);
    ck_assert_ptr_nonnull(strstr(err, ": no [upstream NAME] section"));

    /* bigger than the first read buffer: the whole file is read */
    text_add(&t, UPSTREAM);
    for (int i = 0; i < 2000; i++) {
        text_add(&t, "; filler comment line number %d\n", i);
    }
    text_add(&t, "[server]\nworkers = 9\n");
    write_temp(path, sizeof(path), t.buf, t.len);
    ck_assert_msg(config_load(cfg, path, err, sizeof(err)) == 0, "%s", err);
    unlink(path);
    ck_assert_int_eq(cfg->workers, 9);

    /* 4 MiB exactly is read whole; one byte more is refused */
    size_t max = (size_t)4 << 20;
    while (t.len < max) {
        size_t line = max - t.len < 80 ? max - t.len : 80;
        if (line < 2) {
            text_add(&t, "\n");
        } else {
            text_add(&t, ";%.*s\n", (int)line - 2,
                     "filler filler filler filler filler filler filler "
                     "filler filler filler filler filler");
        }
    }
    ck_assert_uint_eq(t.len, max);
    write_temp(path, sizeof(path), t.buf, t.len);
    ck_assert_msg(config_load(cfg, path, err, sizeof(err)) == 0, "%s", err);
    unlink(path);
    text_add(&t, "\n");
    write_temp(path, sizeof(path), t.buf, t.len);
    ck_assert_int_eq(config_load(cfg, path, err, sizeof(err)), -1);
    unlink(path);
    ck_assert_msg(strstr(err, ": too large (more than 4194304 bytes)") != NULL,
                  "%s", err);
    free(t.buf);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *t;

    t = tcase_create("defaults");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, defaults_match_header);
    tcase_add_test(t, defaults_after_minimal_load);
    tcase_add_test(t, new_and_free);
    tcase_add_test(t, load_resets_previous_conf);
    suite_add_tcase(s, t);

    t = tcase_create("server");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, server_all_directives);
    tcase_add_test(t, server_workers_auto_and_edges);
    tcase_add_test(t, server_log_levels);
    tcase_add_test(t, server_event_backends);
    tcase_add_test(t, route_overrides_and_faults);
    tcase_add_test(t, route_host_values);
    tcase_add_test(t, server_access_log);
    tcase_add_test(t, server_durations);
    tcase_add_test(t, server_numbers_and_sizes);
    tcase_add_test(t, server_listen);
    tcase_add_test(t, server_listen_limit);
    suite_add_tcase(s, t);

    t = tcase_create("upstream");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, upstream_all_directives);
    tcase_add_test(t, upstream_each_has_own_values);
    tcase_add_test(t, upstream_server_errors);
    tcase_add_test(t, upstream_value_errors);
    tcase_add_test(t, upstream_section_errors);
    tcase_add_test(t, upstream_server_limit);
    tcase_add_test(t, upstream_limit);
    tcase_add_test(t, upstream_surplus_settings_warn);
    suite_add_tcase(s, t);

    t = tcase_create("route");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, route_resolves_upstream);
    tcase_add_test(t, route_errors);
    tcase_add_test(t, route_limit);
    tcase_add_test(t, route_implicit);
    tcase_add_test(t, route_longest_prefix);
    suite_add_tcase(s, t);

    t = tcase_create("syntax");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, syntax_sections);
    tcase_add_test(t, syntax_directives);
    tcase_add_test(t, syntax_comments_and_blanks);
    tcase_add_test(t, syntax_quoted_values);
    tcase_add_test(t, syntax_crlf_bom_and_last_line);
    tcase_add_test(t, syntax_continuation_lines);
    tcase_add_test(t, syntax_line_too_long);
    tcase_add_test(t, syntax_first_error_only);
    tcase_add_test(t, syntax_control_chars_shown);
    tcase_add_test(t, small_error_buffer);
    suite_add_tcase(s, t);

    t = tcase_create("files");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, file_shipped_conf);
    tcase_add_test(t, file_cannot_open);
    tcase_add_test(t, file_is_a_directory);
    tcase_add_test(t, file_errors_name_the_file);
    tcase_add_test(t, file_with_nul_byte);
    tcase_add_test(t, file_empty_and_large);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
