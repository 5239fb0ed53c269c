/*
 * config: reads the conf through one table of directives, then validates the
 * result in one place (config_validate).
 *
 * Owns the grammar of the file, every default, every range and every error
 * message about the conf. It must not touch sockets, resolve names, open the
 * access log or log anything: the first error goes back to the caller as
 * "FILE:LINE: message" and parsing stops there.
 *
 * inih does the splitting into sections and name = value pairs, but its
 * handler is never told the line number and never sees a section that has no
 * directives. So the line reader we hand it also classifies each line the way
 * inih r55 will (comment, [section], name = value, or an indented line that
 * continues the previous value): it counts lines, opens sections as their
 * headers go past, and reports malformed and over-long lines itself.
 */
/* strtok_r: POSIX, whatever the build defines. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "util.h"

/* Refuse to read a conf bigger than this (a typo'd path to a huge file). */
#define CONFIG_FILE_MAX ((size_t)4 << 20)

#define SECONDS(n) ((uint64_t)(n) * 1000)
#define MINUTES(n) (SECONDS(n) * 60)
#define HOURS(n) (MINUTES(n) * 60)
#define KIB(n) ((uint64_t)(n) << 10)
#define MIB(n) ((uint64_t)(n) << 20)

enum section_kind {
    SECTION_NONE, /* before the first header */
    SECTION_SERVER,
    SECTION_UPSTREAM,
    SECTION_ROUTE,
    SECTION_ADMIN,
};

/* How a directive's value is written and parsed. */
enum directive_type {
    TYPE_DURATION, /* "250ms", "30s", "2m", "1h" -> milliseconds */
    TYPE_SIZE,     /* "512", "64k", "1m" -> bytes */
    TYPE_INT,      /* a plain number, or the directive's keyword */
    TYPE_ENUM,     /* one of the directive's names -> its index */
    TYPE_STRING,   /* any non-empty text */
    TYPE_NAME,     /* an upstream's name: [A-Za-z0-9_.-]+ */
    TYPE_ADDR,     /* host:port, appended to an array (listen) */
    TYPE_SERVER,   /* host:port [weight=N], appended to an array (server) */
};

/* The C type of a numeric field, so one store serves every number. */
enum store_kind {
    STORE_INT,
    STORE_SIZE,
    STORE_U64,
    STORE_LOG_LEVEL,
};

/*
 * One row of the directive table: where the directive may appear, how its
 * value is read, which field of the section's struct (struct config,
 * config_upstream or config_route) receives it, and its default and range.
 * Arrays (TYPE_ADDR, TYPE_SERVER) also name their count field and capacity.
 */
struct directive {
    const char *name;
    enum section_kind section;
    enum directive_type type;
    enum store_kind store; /* numbers only */
    size_t offset;         /* the field */
    size_t size;           /* strings: the field's capacity in bytes */
    size_t count_offset;   /* arrays: the int counting the elements */
    int capacity;          /* arrays: how many fit */
    uint64_t def, min, max;
    const char *def_str;      /* strings */
    const char *keyword;      /* TYPE_INT: a word that stands for... */
    uint64_t keyword_value;   /* ...this value ("auto" -> 0) */
    const char *const *names; /* TYPE_ENUM: NULL-terminated, by value */
    int repeatable;
    /* TYPE_STRING: a further check; NULL or a description of what was
     * expected when value is refused */
    const char *(*check)(const char *value);
    /* TYPE_INT: the values allowed, in words, when min..max is not the
     * whole rule (a later check refuses the rest with the same words) */
    const char *range;
};

static const char *const log_level_names[] = {"error", "warn", "info",
                                              "debug", NULL};
static const char *const backend_names[] = {"auto", "epoll", "poll", "select",
                                            NULL};
static const char *const dist_names[] = {"fixed", "uniform", "exponential",
                                         NULL};
static const char *const off_on_names[] = {"off", "on", NULL};
const char *const config_balance_names[] = {"round_robin", "least_conn",
                                            "hash", NULL};

/* hash_key: client_address, or header NAME with NAME a header token. */
static const char *check_hash_key(const char *v)
{
    static const char expected[] =
        "client_address, or header NAME (like header X-User)";
    if (strcmp(v, "client_address") == 0) {
        return NULL;
    }
    if (strncmp(v, "header", 6) != 0 || !isspace((unsigned char)v[6])) {
        return expected;
    }
    const char *n = v + 6;
    while (isspace((unsigned char)*n)) {
        n++;
    }
    if (*n == '\0' || strlen(n) >= CONFIG_NAME_MAX) {
        return expected;
    }
    for (; *n != '\0'; n++) {
        if (!(isalnum((unsigned char)*n) || strchr("!#$%&'*+-.^_`|~", *n))) {
            return expected;
        }
    }
    return NULL;
}

/* health_check: off, or an origin-form path to GET. */
static const char *check_health_path(const char *v)
{
    if (strcmp(v, "off") == 0) {
        return NULL;
    }
    if (v[0] != '/') {
        return "off, or a path starting with / (like /healthz)";
    }
    for (; *v != '\0'; v++) {
        if ((unsigned char)*v <= 0x20 || (unsigned char)*v >= 0x7f) {
            return "a path without spaces or control characters";
        }
    }
    return NULL;
}

/* resolver: system, or a name server's IP address with an optional port. */
static const char *check_resolver(const char *v)
{
    static const char expected[] =
        "system, or a name server's address like 127.0.0.1 or 10.0.0.2:53";
    char host[CONFIG_HOST_MAX], buf[CONFIG_HOST_MAX + 8];
    uint16_t port;
    if (strcmp(v, "system") == 0) {
        return NULL;
    }
    if (strchr(v, ':') == NULL || (v[0] != '[' && strchr(v, ':') !=
                                                       strrchr(v, ':'))) {
        /* no port: "10.0.0.2", or a bare IPv6 address */
        snprintf(buf, sizeof(buf), strchr(v, ':') ? "[%s]:53" : "%s:53", v);
        v = buf;
    }
    unsigned char a[sizeof(struct in6_addr)];
    if (util_parse_hostport(v, host, sizeof(host), &port) < 0 || port == 0 ||
        /* evdns takes only the plain forms (not 127.1) */
        !(inet_pton(AF_INET, host, a) == 1 ||
          inet_pton(AF_INET6, host, a) == 1)) {
        return expected;
    }
    return NULL;
}

/* A route's host: a DNS name, or *. and one. */
static const char *check_route_host(const char *v)
{
    static const char expected[] =
        "a host name like api.example.com, or *.example.com";
    if (v[0] == '*') {
        if (v[1] != '.' || v[2] == '\0') {
            return expected;
        }
        v += 2;
    }
    /* Labels of letters, digits, '-' and '_', none empty (".a", "a..b" and
     * "a." could never match a valid Host: a Host's trailing dot is
     * dropped before matching). */
    if (*v == '.' || *v == '\0' || v[strlen(v) - 1] == '.') {
        return expected;
    }
    for (; *v != '\0'; v++) {
        if (!(isalnum((unsigned char)*v) || *v == '-' || *v == '.' ||
              *v == '_') ||
            (*v == '.' && v[1] == '.')) {
            return expected;
        }
    }
    return NULL;
}

#define F_SERVER(f) offsetof(struct config, f)
#define F_UPSTREAM(f) offsetof(struct config_upstream, f)
#define F_ROUTE(f) offsetof(struct config_route, f)
#define STRING(sec, nm, st, f, d, chk)                                        \
    {.name = nm, .section = sec, .type = TYPE_STRING,                         \
     .offset = offsetof(st, f), .size = sizeof(((st *)0)->f), .def_str = d,  \
     .check = chk}

#define DURATION(sec, nm, off, d, lo, hi)                                      \
    {.name = nm, .section = sec, .type = TYPE_DURATION, .store = STORE_INT,    \
     .offset = off, .def = d, .min = lo, .max = hi}
#define SIZE(sec, nm, st, off, d, lo, hi)                                      \
    {.name = nm, .section = sec, .type = TYPE_SIZE, .store = st,               \
     .offset = off, .def = d, .min = lo, .max = hi}
#define FAULT_ABORT_RANGE "0 (off) or 200..599"

#define INT(sec, nm, off, d, lo, hi)                                           \
    {.name = nm, .section = sec, .type = TYPE_INT, .store = STORE_INT,         \
     .offset = off, .def = d, .min = lo, .max = hi}

static const struct directive directives[] = {
    /* [server] */
    {.name = "listen", .section = SECTION_SERVER, .type = TYPE_ADDR,
     .offset = F_SERVER(listen), .count_offset = F_SERVER(n_listen),
     .capacity = CONFIG_MAX_LISTEN, .repeatable = 1},
    {.name = "workers", .section = SECTION_SERVER, .type = TYPE_INT,
     .store = STORE_INT, .offset = F_SERVER(workers), .def = 0, .min = 1,
     .max = 64, .keyword = "auto", .keyword_value = 0},
    INT(SECTION_SERVER, "max_connections", F_SERVER(max_connections), 8192, 1,
        1000000),
    INT(SECTION_SERVER, "backlog", F_SERVER(backlog), 4096, 1, 65535),
    DURATION(SECTION_SERVER, "client_header_timeout",
             F_SERVER(client_header_timeout_ms), SECONDS(10), 1, HOURS(24)),
    DURATION(SECTION_SERVER, "client_body_timeout",
             F_SERVER(client_body_timeout_ms), SECONDS(60), 1, HOURS(24)),
    /* 0: no keep-alive, the session closes after each exchange */
    DURATION(SECTION_SERVER, "keepalive_timeout",
             F_SERVER(keepalive_timeout_ms), SECONDS(75), 0, HOURS(24)),
    DURATION(SECTION_SERVER, "send_timeout", F_SERVER(send_timeout_ms),
             SECONDS(60), 1, HOURS(24)),
    DURATION(SECTION_SERVER, "tunnel_timeout", F_SERVER(tunnel_timeout_ms),
             HOURS(1), 1, HOURS(24)),
    /* 0: no lingering close, the connection closes after the answer */
    {.name = "underscores_in_headers", .section = SECTION_SERVER,
     .type = TYPE_ENUM, .store = STORE_INT,
     .offset = F_SERVER(underscores_in_headers), .def = 0,
     .names = off_on_names},
    {.name = "ignore_client_abort", .section = SECTION_SERVER,
     .type = TYPE_ENUM, .store = STORE_INT,
     .offset = F_SERVER(ignore_client_abort), .def = 0,
     .names = off_on_names},
    DURATION(SECTION_SERVER, "lingering_timeout",
             F_SERVER(lingering_timeout_ms), SECONDS(5), 0, HOURS(24)),
    DURATION(SECTION_SERVER, "lingering_time", F_SERVER(lingering_time_ms),
             SECONDS(30), 1, HOURS(24)),
    SIZE(SECTION_SERVER, "buffer_size", STORE_SIZE, F_SERVER(buffer_size),
         KIB(64), KIB(4), MIB(64)),
    /* 0: the kernel's default, which it grows as a connection needs */
    SIZE(SECTION_SERVER, "sndbuf", STORE_SIZE, F_SERVER(sndbuf), 0, 0,
         MIB(64)),
    SIZE(SECTION_SERVER, "rcvbuf", STORE_SIZE, F_SERVER(rcvbuf), 0, 0,
         MIB(64)),
    SIZE(SECTION_SERVER, "max_header_size", STORE_SIZE,
         F_SERVER(max_header_size), KIB(16), KIB(1), MIB(1)),
    /* 0: unlimited */
    SIZE(SECTION_SERVER, "max_body_size", STORE_U64, F_SERVER(max_body_size),
         0, 0, UINT64_MAX),
    {.name = "access_log", .section = SECTION_SERVER, .type = TYPE_STRING,
     .offset = F_SERVER(access_log),
     .size = sizeof(((struct config *)0)->access_log), .def_str = "stderr"},
    {.name = "log_level", .section = SECTION_SERVER, .type = TYPE_ENUM,
     .store = STORE_LOG_LEVEL, .offset = F_SERVER(log_level),
     .def = LOG_LEVEL_INFO, .names = log_level_names},
    {.name = "event_backend", .section = SECTION_SERVER, .type = TYPE_ENUM,
     .store = STORE_INT, .offset = F_SERVER(event_backend),
     .def = BACKEND_AUTO, .names = backend_names},
    STRING(SECTION_SERVER, "resolver", struct config, resolver, "system",
           check_resolver),
    /* 0: a drain closes everything at once */
    DURATION(SECTION_SERVER, "shutdown_timeout",
             F_SERVER(shutdown_timeout_ms), SECONDS(30), 0, HOURS(24)),

    /* [admin] */
    {.name = "listen", .section = SECTION_ADMIN, .type = TYPE_ADDR,
     .offset = F_SERVER(admin_listen), .count_offset = F_SERVER(n_admin_listen),
     .capacity = 1},

    /* [upstream NAME] */
    {.name = "server", .section = SECTION_UPSTREAM, .type = TYPE_SERVER,
     .offset = F_UPSTREAM(servers), .count_offset = F_UPSTREAM(n_servers),
     .capacity = CONFIG_MAX_SERVERS, .repeatable = 1},
    INT(SECTION_UPSTREAM, "keepalive", F_UPSTREAM(keepalive), 32, 0, 100000),
    /* 0: a connection is not kept once its exchange is done */
    DURATION(SECTION_UPSTREAM, "keepalive_timeout",
             F_UPSTREAM(keepalive_timeout_ms), SECONDS(60), 0, HOURS(24)),
    DURATION(SECTION_UPSTREAM, "connect_timeout",
             F_UPSTREAM(connect_timeout_ms), SECONDS(5), 1, HOURS(24)),
    DURATION(SECTION_UPSTREAM, "read_timeout", F_UPSTREAM(read_timeout_ms),
             SECONDS(60), 1, HOURS(24)),
    DURATION(SECTION_UPSTREAM, "send_timeout", F_UPSTREAM(send_timeout_ms),
             SECONDS(60), 1, HOURS(24)),
    DURATION(SECTION_UPSTREAM, "latency", F_UPSTREAM(latency_ms), 0, 0,
             HOURS(1)),
    DURATION(SECTION_UPSTREAM, "latency_jitter",
             F_UPSTREAM(latency_jitter_ms), 0, 0, HOURS(1)),
    {.name = "balance", .section = SECTION_UPSTREAM, .type = TYPE_ENUM,
     .store = STORE_INT, .offset = F_UPSTREAM(balance),
     .def = BALANCE_ROUND_ROBIN, .names = config_balance_names},
    STRING(SECTION_UPSTREAM, "hash_key", struct config_upstream, hash_key,
           "client_address", check_hash_key),
    /* 0: passive health checks off */
    INT(SECTION_UPSTREAM, "max_fails", F_UPSTREAM(max_fails), 1, 0, 1000),
    DURATION(SECTION_UPSTREAM, "fail_timeout", F_UPSTREAM(fail_timeout_ms),
             SECONDS(10), 1, HOURS(24)),
    STRING(SECTION_UPSTREAM, "health_check", struct config_upstream,
           health_check, "off", check_health_path),
    DURATION(SECTION_UPSTREAM, "health_interval",
             F_UPSTREAM(health_interval_ms), SECONDS(5), 10, HOURS(24)),
    DURATION(SECTION_UPSTREAM, "health_timeout",
             F_UPSTREAM(health_timeout_ms), SECONDS(2), 1, HOURS(1)),
    INT(SECTION_UPSTREAM, "health_rise", F_UPSTREAM(health_rise), 2, 1, 100),
    INT(SECTION_UPSTREAM, "health_fall", F_UPSTREAM(health_fall), 3, 1, 100),
    INT(SECTION_UPSTREAM, "retries", F_UPSTREAM(retries), 1, 0,
        CONFIG_MAX_SERVERS),
    /* 0: names are resolved at start only */
    DURATION(SECTION_UPSTREAM, "resolve_interval",
             F_UPSTREAM(resolve_interval_ms), SECONDS(30), 0, HOURS(24)),

    /* [route PREFIX] */
    {.name = "upstream", .section = SECTION_ROUTE, .type = TYPE_NAME,
     .offset = F_ROUTE(upstream_name),
     .size = sizeof(((struct config_route *)0)->upstream_name)},
    STRING(SECTION_ROUTE, "host", struct config_route, host, "",
           check_route_host),
    /* 0: the upstream's read_timeout */
    DURATION(SECTION_ROUTE, "read_timeout", F_ROUTE(read_timeout_ms), 0, 0,
             HOURS(24)),
    DURATION(SECTION_ROUTE, "fault_delay", F_ROUTE(fault_delay_ms), 0, 0,
             HOURS(1)),
    INT(SECTION_ROUTE, "fault_delay_percent", F_ROUTE(fault_delay_percent),
        100, 0, 100),
    {.name = "fault_delay_distribution", .section = SECTION_ROUTE,
     .type = TYPE_ENUM, .store = STORE_INT,
     .offset = F_ROUTE(fault_delay_dist), .def = FAULT_FIXED,
     .names = dist_names},
    /* 0: off; otherwise the status answered (200..599) */
    {.name = "fault_abort", .section = SECTION_ROUTE, .type = TYPE_INT,
     .store = STORE_INT, .offset = F_ROUTE(fault_abort), .def = 0, .min = 0,
     .max = 599, .range = FAULT_ABORT_RANGE},
    INT(SECTION_ROUTE, "fault_abort_percent", F_ROUTE(fault_abort_percent),
        100, 0, 100),
    {.name = "fault_headers", .section = SECTION_ROUTE, .type = TYPE_ENUM,
     .store = STORE_INT, .offset = F_ROUTE(fault_headers), .def = 0,
     .names = off_on_names},
};

#define N_DIRECTIVES (sizeof(directives) / sizeof(directives[0]))

/* What the reader decided the current line is (inih will agree). */
enum line_kind {
    LINE_BLANK, /* empty or a comment */
    LINE_SECTION,
    LINE_PAIR,         /* name = value */
    LINE_CONTINUATION, /* indented: another value for the previous name */
};

/* The state of one parse: the input, where we are, and the first error. */
struct parser {
    struct config *cfg;
    const char *name; /* the file, for messages */
    const char *text;
    size_t len, pos;
    int line;             /* the line inih is working on */
    enum line_kind kind;  /* ...and what it is */
    int after_name;       /* inih has a previous name in this section */
    enum section_kind section;
    int server_seen[N_DIRECTIVES];  /* line where each was first set */
    int section_seen[N_DIRECTIVES]; /* the same for this upstream/route */
    int route_upstream_line[CONFIG_MAX_ROUTES];
    int route_fault_abort_line[CONFIG_MAX_ROUTES];
    int admin_line; /* the [admin] header, 0 if none */
    int server_line; /* the [server] header, 0 if none */
    int failed;
    int fail_line;
    char *err;
    size_t errlen;
};

static void vformat_error(char *err, size_t errlen, const char *name,
                          int line, const char *fmt, va_list ap)
{
    int n;

    if (err == NULL || errlen == 0) {
        return;
    }
    if (line > 0) {
        n = snprintf(err, errlen, "%s:%d: ", name, line);
    } else {
        n = snprintf(err, errlen, "%s: ", name);
    }
    if (n < 0 || (size_t)n >= errlen) {
        return;
    }
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

static void format_error(char *err, size_t errlen, const char *name, int line,
                         const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void format_error(char *err, size_t errlen, const char *name, int line,
                         const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vformat_error(err, errlen, name, line, fmt, ap);
    va_end(ap);
}

/*
 * Record an error at line (0: none applies). Only the first one counts;
 * validation may find several, and then the earliest line wins.
 */
static void fail(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct parser *p, int line, const char *fmt, ...)
{
    va_list ap;

    if (p->failed && (line == 0 || line >= p->fail_line)) {
        return;
    }
    p->failed = 1;
    p->fail_line = line;
    va_start(ap, fmt);
    vformat_error(p->err, p->errlen, p->name, line, fmt, ap);
    va_end(ap);
}

/* Copy s for quoting in a message, control characters shown as '?'. */
static const char *shown(char *buf, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i + 1 < n && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    buf[i] = '\0';
    return buf;
}

/* "[upstream origin]" for the section being read, for messages. */
static const char *section_label(const struct parser *p, char *buf, size_t n)
{
    const struct config *cfg = p->cfg;

    switch (p->section) {
    case SECTION_SERVER:
        snprintf(buf, n, "[server]");
        break;
    case SECTION_UPSTREAM:
        snprintf(buf, n, "[upstream %s]",
                 cfg->upstreams[cfg->n_upstreams - 1].name);
        break;
    case SECTION_ROUTE:
        snprintf(buf, n, "[route %s]", cfg->routes[cfg->n_routes - 1].prefix);
        break;
    case SECTION_ADMIN:
        snprintf(buf, n, "[admin]");
        break;
    default:
        snprintf(buf, n, "(no section)");
        break;
    }
    return buf;
}

static const char *kind_label(enum section_kind k)
{
    switch (k) {
    case SECTION_SERVER:
        return "[server]";
    case SECTION_UPSTREAM:
        return "[upstream NAME]";
    case SECTION_ROUTE:
        return "[route PREFIX]";
    case SECTION_ADMIN:
        return "[admin]";
    default:
        return "no section";
    }
}

/* A unit a value can be shown in: the largest that divides it is used. */
struct unit {
    uint64_t mult;
    const char *unit;
};

/* A value as the user would write it: "30s", "64k"; for range messages. */
static const char *format_value(const struct directive *d, uint64_t v,
                                char *buf, size_t n)
{
    static const struct unit durations[] = {
        {HOURS(1), "h"}, {MINUTES(1), "m"}, {SECONDS(1), "s"}, {1, "ms"}};
    static const struct unit sizes[] = {
        {MIB(1024), "g"}, {MIB(1), "m"}, {KIB(1), "k"}, {1, ""}};
    const struct unit *units = NULL;

    if (d->type == TYPE_DURATION) {
        units = durations;
    } else if (d->type == TYPE_SIZE) {
        units = sizes;
    }
    if (units == NULL || v == 0) {
        snprintf(buf, n, "%llu", (unsigned long long)v);
        return buf;
    }
    for (int i = 0;; i++) {
        if (v % units[i].mult == 0) {
            snprintf(buf, n, "%llu%s", (unsigned long long)(v / units[i].mult),
                     units[i].unit);
            return buf;
        }
    }
}

static void *field_at(void *base, size_t offset)
{
    return (char *)base + offset;
}

static void store_number(void *field, enum store_kind store, uint64_t v)
{
    switch (store) {
    case STORE_INT:
        *(int *)field = (int)v;
        break;
    case STORE_SIZE:
        *(size_t *)field = (size_t)v;
        break;
    case STORE_U64:
        *(uint64_t *)field = v;
        break;
    case STORE_LOG_LEVEL:
        *(enum config_log_level *)field = (enum config_log_level)v;
        break;
    }
}

/* Write the table's defaults for one kind of section into base. */
static void apply_defaults(enum section_kind section, void *base)
{
    for (size_t i = 0; i < N_DIRECTIVES; i++) {
        const struct directive *d = &directives[i];
        if (d->section != section) {
            continue;
        }
        switch (d->type) {
        case TYPE_DURATION:
        case TYPE_SIZE:
        case TYPE_INT:
        case TYPE_ENUM:
            store_number(field_at(base, d->offset), d->store, d->def);
            break;
        case TYPE_STRING:
        case TYPE_NAME:
            util_strlcpy(field_at(base, d->offset),
                         d->def_str != NULL ? d->def_str : "", d->size);
            break;
        case TYPE_ADDR:
        case TYPE_SERVER:
            *(int *)field_at(base, d->count_offset) = 0;
            break;
        }
    }
}

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    apply_defaults(SECTION_SERVER, cfg);
}

struct config *config_new(void)
{
    struct config *cfg = malloc(sizeof(*cfg));

    if (cfg != NULL) {
        config_defaults(cfg);
    }
    return cfg;
}

void config_server_name(const struct config_server *cs, char *buf,
                        size_t len)
{
    int v6 = strchr(cs->addr.host, ':') != NULL;
    snprintf(buf, len, v6 ? "[%s]:%u" : "%s:%u", cs->addr.host,
             cs->addr.port);
}

void config_free(struct config *cfg)
{
    free(cfg);
}

static const struct directive *find_directive(enum section_kind section,
                                              const char *name)
{
    for (size_t i = 0; i < N_DIRECTIVES; i++) {
        if (directives[i].section == section &&
            strcmp(directives[i].name, name) == 0) {
            return &directives[i];
        }
    }
    return NULL;
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

static int valid_name(const char *s)
{
    if (*s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (!is_name_char(*s)) {
            return 0;
        }
    }
    return 1;
}

/* host:port for messages, with brackets back around an IPv6 literal. */
static const char *addr_label(const struct config_addr *a, char *buf,
                              size_t n)
{
    const char *fmt = strchr(a->host, ':') != NULL ? "[%s]:%u" : "%s:%u";

    snprintf(buf, n, fmt, a->host, (unsigned)a->port);
    return buf;
}

/* Where a listen address was given, for a message: "line N", or "the
 * default" for the one implied when none is (line 0). */
static const char *listen_where(const struct config_addr *l, char buf[32])
{
    if (l->line > 0) {
        snprintf(buf, 32, "line %d", l->line);
    } else {
        snprintf(buf, 32, "the default");
    }
    return buf;
}

/* Do two hosts name one address: the same name (in any case), or the same
 * numeric address however spelt (127.1 and 127.000.000.001 are 127.0.0.1,
 * as to the resolver; 0:0::1 is ::1). Different names for one address
 * (localhost beside 127.0.0.1) are not looked up here. */
static int same_host(const char *a, const char *b)
{
    struct in_addr a4, b4;
    struct in6_addr a6, b6;

    if (strcasecmp(a, b) == 0) {
        return 1;
    }
    if (inet_aton(a, &a4) != 0 && inet_aton(b, &b4) != 0) {
        return a4.s_addr == b4.s_addr;
    }
    return inet_pton(AF_INET6, a, &a6) == 1 &&
           inet_pton(AF_INET6, b, &b6) == 1 &&
           memcmp(&a6, &b6, sizeof(a6)) == 0;
}

/* Does a socket bound to [::] take IPv4's connections too? Linux's default
 * (net.ipv6.bindv6only = 0); read once. */
static int v6_wildcard_takes_v4(void)
{
    static int known = -1;
    if (known < 0) {
        int only = 0;
        FILE *f = fopen("/proc/sys/net/ipv6/bindv6only", "r");
        if (f != NULL) {
            if (fscanf(f, "%d", &only) != 1) {
                only = 0;
            }
            fclose(f);
        }
        known = only == 0;
    }
    return known;
}

/* host as a literal address: AF_INET (an IPv4-mapped IPv6 one read as
 * IPv4), AF_INET6, or 0 for a name. With dest, the unspecified address
 * becomes the loopback one a connect to it reaches. */
static int host_addr(const char *host, int dest, struct in_addr *v4,
                     struct in6_addr *v6)
{
    if (inet_aton(host, v4) == 0) {
        if (inet_pton(AF_INET6, host, v6) != 1) {
            return 0;
        }
        if (!IN6_IS_ADDR_V4MAPPED(v6)) {
            if (dest && IN6_IS_ADDR_UNSPECIFIED(v6)) {
                *v6 = in6addr_loopback;
            }
            return AF_INET6;
        }
        memcpy(&v4->s_addr, &v6->s6_addr[12], 4);
    }
    if (dest && v4->s_addr == htonl(INADDR_ANY)) {
        v4->s_addr = htonl(INADDR_LOOPBACK);
    }
    return AF_INET;
}

/* Could sockets bound to a and b on one port take each other's
 * connections: the same address, or a wildcard that covers the other.
 * [::] covers IPv4 too where Linux binds it dual-stack (the default);
 * 0.0.0.0 (or [::ffff:0.0.0.0]) covers every IPv4 address. A name is
 * judged only against the same name: resolved at start, its family is not
 * known here (the start says, naming the line, if it cannot be bound). */
static int hosts_overlap(const char *a, const char *b)
{
    struct in_addr a4, b4;
    struct in6_addr a6, b6;

    if (same_host(a, b)) {
        return 1;
    }
    int fa = host_addr(a, 0, &a4, &a6), fb = host_addr(b, 0, &b4, &b6);
    if (fa == 0 || fb == 0) {
        return 0;
    }
    if (fa == AF_INET && fb == AF_INET && a4.s_addr == b4.s_addr) {
        return 1; /* one of them IPv4-mapped */
    }
    if (same_host(a, "::") || same_host(b, "::")) {
        return fa == fb || v6_wildcard_takes_v4();
    }
    /* 0.0.0.0, however written ([::ffff:0.0.0.0] binds it too). */
    if (fa == AF_INET && a4.s_addr == htonl(INADDR_ANY)) {
        return fb == AF_INET;
    }
    if (fb == AF_INET && b4.s_addr == htonl(INADDR_ANY)) {
        return fa == AF_INET;
    }
    return 0;
}

/* Would a request sent to server come back to this proxy: the address of
 * one of its listen lines (however written, IPv4-mapped or not; 0.0.0.0
 * and [::] as the loopback address a connect to them reaches; localhost
 * as 127.0.0.1, the address the pool prefers), or a loopback address on
 * the port of a wildcard listen? Other addresses under a wildcard may well
 * be other machines; other names are not looked up. */
static int server_is_listen(const struct config_addr *server,
                            const struct config_addr *l)
{
    if (l->port == 0 || server->port != l->port) {
        return 0;
    }
    if (same_host(server->host, l->host)) {
        return 1;
    }
    struct in_addr s4, l4;
    struct in6_addr s6, l6;
    int fs = host_addr(server->host, 1, &s4, &s6);
    if (fs == 0 && strcasecmp(server->host, "localhost") == 0) {
        fs = AF_INET;
        s4.s_addr = htonl(INADDR_LOOPBACK);
    }
    if (fs == 0) {
        return 0;
    }
    int loop4 = fs == AF_INET && (ntohl(s4.s_addr) >> 24) == 127;
    int loop6 = fs == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&s6);
    if (same_host(l->host, "0.0.0.0")) {
        return loop4;
    }
    if (same_host(l->host, "::")) {
        return loop6 || (loop4 && v6_wildcard_takes_v4());
    }
    int fl = host_addr(l->host, 0, &l4, &l6);
    if (fs == AF_INET && fl == AF_INET) {
        return s4.s_addr == l4.s_addr;
    }
    return fs == AF_INET6 && fl == AF_INET6 &&
           memcmp(&s6, &l6, sizeof(s6)) == 0;
}

/* Could a request's path take a route of this prefix? Routes are chosen
 * by the normalised path, and a request whose raw and normalised paths
 * take different routes is refused (session.c). A normalised path holds
 * no "//", no "." or ".." segment, and a '?' or '#' only decoded from an
 * escape, which the raw path, spelling it %3F or %23, does not share. Its
 * '%' comes from a raw "%25": so a '%' in the prefix can be matched only
 * where the prefix goes on with "25" (or ends within it). */
static int prefix_can_match(const char *prefix)
{
    for (const char *c = prefix; *c != '\0'; c++) {
        if (c[0] == '?' || c[0] == '#') {
            return 0;
        }
        if (c[0] == '%' && c[1] != '\0' &&
            !(c[1] == '2' && (c[2] == '\0' || c[2] == '5'))) {
            return 0;
        }
        if (c[0] == '/' &&
            (c[1] == '/' || (c[1] == '.' && c[2] == '/') ||
             (c[1] == '.' && c[2] == '.' && c[3] == '/'))) {
            return 0;
        }
    }
    return 1;
}

/* --- values ------------------------------------------------------------ */

static void bad_value(struct parser *p, const struct directive *d,
                      const char *value, const char *expected)
{
    char v[256];

    /* An indented directive under listen or server is read as one more
     * value of it: say why, or "workers = 2" reads as a bad address. */
    fail(p, p->line, "bad value \"%s\" for %s: expected %s%s",
         shown(v, sizeof(v), value), d->name, expected,
         p->kind == LINE_CONTINUATION
             ? " (this indented line continues it: do not indent "
               "directives)"
             : "");
}

static void out_of_range(struct parser *p, const struct directive *d,
                         const char *value)
{
    char v[256], lo[32], hi[32];

    if (d->range != NULL) {
        fail(p, p->line, "value \"%s\" for %s is out of range: expected %s",
             shown(v, sizeof(v), value), d->name, d->range);
        return;
    }
    format_value(d, d->min, lo, sizeof(lo));
    format_value(d, d->max, hi, sizeof(hi));
    fail(p, p->line, "value \"%s\" for %s is out of range: expected %s%s%s..%s",
         shown(v, sizeof(v), value), d->name,
         d->keyword != NULL ? d->keyword : "", d->keyword != NULL ? " or " : "",
         lo, hi);
}

/* A util_parse_* failure rc: -2, well formed but too large, is out of
 * range; -1 is not the expected form. */
static void number_failed(struct parser *p, const struct directive *d,
                          const char *value, int rc, const char *expected)
{
    if (rc == -2) {
        out_of_range(p, d, value);
    } else {
        bad_value(p, d, value, expected);
    }
}

/* Claim the next slot of an array directive; NULL (and an error) if full. */
static void *array_slot(struct parser *p, const struct directive *d,
                        void *base, size_t elem_size)
{
    int *count = field_at(base, d->count_offset);
    char label[CONFIG_PATH_MAX + 32];

    if (*count >= d->capacity) {
        if (d->section == SECTION_SERVER) {
            fail(p, p->line, "too many %s directives (at most %d)", d->name,
                 d->capacity);
        } else {
            fail(p, p->line, "too many %s directives in %s (at most %d)",
                 d->name, section_label(p, label, sizeof(label)), d->capacity);
        }
        return NULL;
    }
    return (char *)field_at(base, d->offset) + (size_t)(*count)++ * elem_size;
}

static const char expect_addr[] =
    "host:port like 127.0.0.1:8080 or [::1]:8080";

/* "host:port [weight=N]": the address, then options separated by blanks. */
static int set_server(struct parser *p, const struct directive *d,
                      void *base, const char *value)
{
    static const char expected[] =
        "host:port [weight=N] like 10.0.0.1:8080 weight=2";
    char buf[INI_MAX_LINE + 1], v[256];
    struct config_server srv = {.weight = 1};
    char *tok, *save = NULL;
    int have_weight = 0;

    if (util_strlcpy(buf, value, sizeof(buf)) >= sizeof(buf)) {
        fail(p, p->line, "value for %s is too long", d->name);
        return -1;
    }
    tok = strtok_r(buf, " \t", &save);
    if (tok == NULL || util_parse_hostport(tok, srv.addr.host,
                                           sizeof(srv.addr.host),
                                           &srv.addr.port) < 0) {
        bad_value(p, d, value, expected);
        return -1;
    }
    if (srv.addr.port == 0) {
        fail(p, p->line,
             "value \"%s\" for %s is out of range: expected a port in "
             "1..65535",
             shown(v, sizeof(v), tok), d->name);
        return -1;
    }
    while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
        uint64_t w;
        if (strncmp(tok, "weight=", 7) != 0 || have_weight ||
            util_parse_uint(tok + 7, &w) < 0) {
            bad_value(p, d, value, expected);
            return -1;
        }
        if (w < 1 || w > 1000) {
            fail(p, p->line,
                 "value \"%s\" for %s is out of range: expected weight=1..1000",
                 shown(v, sizeof(v), tok), d->name);
            return -1;
        }
        srv.weight = (int)w;
        have_weight = 1;
    }
    srv.addr.line = p->line;

    struct config_server *slot = array_slot(p, d, base, sizeof(srv));
    if (slot == NULL) {
        return -1;
    }
    *slot = srv;
    return 0;
}

/* Parse value as directive d and store it into the section struct base. */
static int set_value(struct parser *p, const struct directive *d, void *base,
                     const char *value)
{
    void *field = field_at(base, d->offset);
    uint64_t v = 0;
    int64_t ms;
    int rc;

    switch (d->type) {
    case TYPE_DURATION:
        if ((rc = util_parse_duration(value, &ms)) < 0) {
            number_failed(p, d, value, rc, "a duration like 250ms, 30s or 2m");
            return -1;
        }
        v = (uint64_t)ms;
        break;
    case TYPE_SIZE:
        if ((rc = util_parse_size(value, &v)) < 0) {
            number_failed(p, d, value, rc, "a size like 512, 64k or 1m");
            return -1;
        }
        break;
    case TYPE_INT:
        if (d->keyword != NULL && strcmp(value, d->keyword) == 0) {
            store_number(field, d->store, d->keyword_value);
            return 0;
        }
        if ((rc = util_parse_uint(value, &v)) < 0) {
            number_failed(p, d, value, rc,
                          d->keyword != NULL ? "a whole number or auto"
                                             : "a whole number");
            return -1;
        }
        break;
    case TYPE_ENUM: {
        char expected[128] = "one of ";
        for (int i = 0; d->names[i] != NULL; i++) {
            if (strcmp(value, d->names[i]) == 0) {
                store_number(field, d->store, (uint64_t)i);
                return 0;
            }
            if (i > 0) {
                strncat(expected, ", ",
                        sizeof(expected) - strlen(expected) - 1);
            }
            strncat(expected, d->names[i],
                    sizeof(expected) - strlen(expected) - 1);
        }
        bad_value(p, d, value, expected);
        return -1;
    }
    case TYPE_STRING:
    case TYPE_NAME:
        if (*value == '\0' || (d->type == TYPE_NAME && !valid_name(value))) {
            bad_value(p, d, value,
                      d->type == TYPE_NAME
                          ? "an upstream name (letters, digits, '_', '.', '-')"
                          : "a non-empty value");
            return -1;
        }
        if (strlen(value) >= d->size) {
            fail(p, p->line,
                 "value for %s is too long (at most %zu characters)", d->name,
                 d->size - 1);
            return -1;
        }
        if (d->check != NULL) {
            const char *expected = d->check(value);
            if (expected != NULL) {
                bad_value(p, d, value, expected);
                return -1;
            }
        }
        util_strlcpy(field, value, d->size);
        return 0;
    case TYPE_ADDR: {
        struct config_addr a;
        if (util_parse_hostport(value, a.host, sizeof(a.host), &a.port) < 0) {
            bad_value(p, d, value, expect_addr);
            return -1;
        }
        a.line = p->line;
        struct config_addr *slot = array_slot(p, d, base, sizeof(a));
        if (slot == NULL) {
            return -1;
        }
        *slot = a;
        return 0;
    }
    case TYPE_SERVER:
        return set_server(p, d, base, value);
    }
    if (v < d->min || v > d->max) {
        out_of_range(p, d, value);
        return -1;
    }
    store_number(field, d->store, v);
    return 0;
}

/* --- sections ---------------------------------------------------------- */

/* Where each directive of a section kind was set: [server] and [admin]
 * once per file, an upstream's or a route's per section. */
static int *seen_lines(struct parser *p, enum section_kind section)
{
    return section == SECTION_SERVER || section == SECTION_ADMIN
               ? p->server_seen
               : p->section_seen;
}

/* The line where directive name of section was set (for an upstream or a
 * route, in the one being read), or 0. */
static int set_at(struct parser *p, enum section_kind section,
                  const char *name)
{
    for (size_t i = 0; i < N_DIRECTIVES; i++) {
        if (directives[i].section == section &&
            strcmp(directives[i].name, name) == 0) {
            return seen_lines(p, section)[i];
        }
    }
    return 0;
}

/* Warn, when changed (set to other than its default) is true, that the
 * directive the section set has no effect, and why. */
static void surplus(struct parser *p, int changed, const char *name,
                    const char *why)
{
    struct config *cfg = p->cfg;
    int line = set_at(p, p->section, name);
    if (!changed || line == 0 || cfg->n_warnings >= CONFIG_MAX_WARNINGS) {
        return;
    }
    struct config_warning *w = &cfg->warnings[cfg->n_warnings++];
    w->line = line;
    snprintf(w->msg, sizeof(w->msg), "%s has no effect: %s", name, why);
}

/*
 * The [upstream] or [route] just read whole: a setting changed from its
 * default that only matters beside another one the section leaves off
 * (hash_key without balance = hash) is kept, with a warning. Defaults
 * written out are not warned of: the shipped conf lists every directive.
 */
static void section_end(struct parser *p)
{
    static struct config_upstream du;
    static struct config_route dr;
    struct config *cfg = p->cfg;
    if (p->failed) {
        return;
    }
    int had = cfg->n_warnings;
    if (p->section == SECTION_UPSTREAM) {
        const struct config_upstream *up = &cfg->upstreams[cfg->n_upstreams - 1];
        const char *off = "active health checks are off (health_check = off)";
        apply_defaults(SECTION_UPSTREAM, &du);
        if (up->balance != BALANCE_HASH) {
            surplus(p, strcmp(up->hash_key, du.hash_key) != 0, "hash_key",
                    "the pool does not balance by hash (balance = hash)");
        }
        if (strcmp(up->health_check, "off") == 0) {
            surplus(p, up->health_interval_ms != du.health_interval_ms,
                    "health_interval", off);
            surplus(p, up->health_timeout_ms != du.health_timeout_ms,
                    "health_timeout", off);
            surplus(p, up->health_rise != du.health_rise, "health_rise", off);
            surplus(p, up->health_fall != du.health_fall, "health_fall", off);
        }
    } else if (p->section == SECTION_ROUTE) {
        const struct config_route *r = &cfg->routes[cfg->n_routes - 1];
        const char *no_delay = "the route sets no fault_delay";
        apply_defaults(SECTION_ROUTE, &dr);
        if (r->fault_delay_ms == 0) {
            surplus(p, r->fault_delay_percent != dr.fault_delay_percent,
                    "fault_delay_percent", no_delay);
            surplus(p, r->fault_delay_dist != dr.fault_delay_dist,
                    "fault_delay_distribution", no_delay);
        }
        if (r->fault_abort == 0) {
            surplus(p, r->fault_abort_percent != dr.fault_abort_percent,
                    "fault_abort_percent", "the route sets no fault_abort");
        }
    }
    /* This section's, checked in the order above, into line order. */
    for (int i = had + 1; i < cfg->n_warnings; i++) {
        struct config_warning w = cfg->warnings[i];
        int j = i;
        for (; j > had && cfg->warnings[j - 1].line > w.line; j--) {
            cfg->warnings[j] = cfg->warnings[j - 1];
        }
        cfg->warnings[j] = w;
    }
}

/* Open the section whose header holds [b, e) between its brackets. */
static int open_section(struct parser *p, const char *b, const char *e)
{
    struct config *cfg = p->cfg;
    char kind[16], arg[INI_MAX_LINE + 1], v[256];
    size_t kn, an;
    const char *a;

    while (b < e && isspace((unsigned char)*b)) {
        b++;
    }
    while (e > b && isspace((unsigned char)e[-1])) {
        e--;
    }
    for (a = b; a < e && !isspace((unsigned char)*a); a++) {
    }
    kn = (size_t)(a - b);
    while (a < e && isspace((unsigned char)*a)) {
        a++;
    }
    an = (size_t)(e - a);
    if (an >= sizeof(arg)) {
        an = sizeof(arg) - 1; /* cannot happen: lines are shorter */
    }
    memcpy(arg, a, an);
    arg[an] = '\0';
    if (kn >= sizeof(kind)) {
        kn = sizeof(kind) - 1; /* long enough to be unknown */
    }
    memcpy(kind, b, kn);
    kind[kn] = '\0';

    section_end(p);
    memset(p->section_seen, 0, sizeof(p->section_seen));
    if (strcmp(kind, "server") == 0) {
        if (an > 0) {
            fail(p, p->line, "[server] takes no name (found \"%s\")",
                 shown(v, sizeof(v), arg));
            return -1;
        }
        if (p->server_line > 0) {
            fail(p, p->line, "a second [server] section (the first is at "
                             "line %d)",
                 p->server_line);
            return -1;
        }
        p->section = SECTION_SERVER;
        p->server_line = p->line;
        return 0;
    }
    if (strcmp(kind, "admin") == 0) {
        if (an > 0) {
            fail(p, p->line, "[admin] takes no name (found \"%s\")",
                 shown(v, sizeof(v), arg));
            return -1;
        }
        if (p->admin_line > 0) {
            fail(p, p->line, "a second [admin] section (the first is at "
                             "line %d)",
                 p->admin_line);
            return -1;
        }
        p->section = SECTION_ADMIN;
        p->admin_line = p->line;
        return 0;
    }
    if (strcmp(kind, "upstream") == 0) {
        if (an == 0) {
            fail(p, p->line, "[upstream] needs a name, like [upstream origin]");
            return -1;
        }
        if (!valid_name(arg)) {
            fail(p, p->line,
                 "bad upstream name \"%s\": use letters, digits, '_', '.' "
                 "and '-'",
                 shown(v, sizeof(v), arg));
            return -1;
        }
        if (an >= CONFIG_NAME_MAX) {
            fail(p, p->line,
                 "upstream name \"%s\" is too long (at most %d characters)",
                 arg, CONFIG_NAME_MAX - 1);
            return -1;
        }
        for (int i = 0; i < cfg->n_upstreams; i++) {
            if (strcmp(cfg->upstreams[i].name, arg) == 0) {
                fail(p, p->line, "duplicate [upstream %s] (first at line %d)",
                     arg, cfg->upstreams[i].line);
                return -1;
            }
        }
        if (cfg->n_upstreams >= CONFIG_MAX_UPSTREAMS) {
            fail(p, p->line, "too many [upstream] sections (at most %d)",
                 CONFIG_MAX_UPSTREAMS);
            return -1;
        }
        struct config_upstream *up = &cfg->upstreams[cfg->n_upstreams++];
        memset(up, 0, sizeof(*up));
        apply_defaults(SECTION_UPSTREAM, up);
        util_strlcpy(up->name, arg, sizeof(up->name));
        up->line = p->line;
        p->section = SECTION_UPSTREAM;
        return 0;
    }
    if (strcmp(kind, "route") == 0) {
        if (an == 0) {
            fail(p, p->line, "[route] needs a path prefix, like [route /api]");
            return -1;
        }
        int ok = arg[0] == '/';
        for (size_t i = 0; ok && i < an; i++) {
            ok = arg[i] > 0x20 && arg[i] < 0x7f;
        }
        if (!ok) {
            fail(p, p->line,
                 "bad route prefix \"%s\": expected a path starting with /, "
                 "like /api",
                 shown(v, sizeof(v), arg));
            return -1;
        }
        if (an >= CONFIG_PATH_MAX) {
            fail(p, p->line, "route prefix is too long (at most %d characters)",
                 CONFIG_PATH_MAX - 1);
            return -1;
        }
        if (!prefix_can_match(arg)) {
            fail(p, p->line,
                 "route prefix \"%s\" can never match: paths are routed "
                 "without their query, with %%-escapes decoded, // merged "
                 "and . and .. segments resolved, so write it that way",
                 shown(v, sizeof(v), arg));
            return -1;
        }
        if (cfg->n_routes >= CONFIG_MAX_ROUTES) {
            fail(p, p->line, "too many [route] sections (at most %d)",
                 CONFIG_MAX_ROUTES);
            return -1;
        }
        struct config_route *r = &cfg->routes[cfg->n_routes++];
        memset(r, 0, sizeof(*r));
        apply_defaults(SECTION_ROUTE, r);
        util_strlcpy(r->prefix, arg, sizeof(r->prefix));
        r->upstream = -1;
        r->line = p->line;
        p->section = SECTION_ROUTE;
        return 0;
    }
    fail(p, p->line,
         "unknown section [%s]: expected [server], [upstream NAME], "
         "[route PREFIX] or [admin]",
         shown(v, sizeof(v), kind));
    return -1;
}

/* --- the line reader and the handler inih calls ------------------------ */

/*
 * inih's scan for the first of chars, or for an inline comment (a prefix
 * character right after whitespace), within [s, e). Returns where it stopped.
 */
static const char *find_chars_or_comment(const char *s, const char *e,
                                         const char *chars)
{
    int was_space = 0;

    for (; s < e; s++) {
        if (chars != NULL && strchr(chars, *s) != NULL) {
            break;
        }
        if (INI_ALLOW_INLINE_COMMENTS && was_space &&
            strchr(INI_INLINE_COMMENT_PREFIXES, *s) != NULL) {
            break;
        }
        was_space = isspace((unsigned char)*s);
    }
    return s;
}

/*
 * Decide what inih r55 will make of line, as its ini_parse_stream does:
 * comment first, then an indented continuation if a name came before in this
 * section, then a [section], then name = value (or name: value). Opens
 * sections and reports malformed lines; returns -1 on an error.
 */
static int classify_line(struct parser *p, const char *line)
{
    const char *b = line, *e, *sep;

    if (INI_ALLOW_BOM && p->line == 1 && (unsigned char)line[0] == 0xEF &&
        (unsigned char)line[1] == 0xBB && (unsigned char)line[2] == 0xBF) {
        b += 3;
    }
    const char *start = b;
    while (*b != '\0' && isspace((unsigned char)*b)) {
        b++;
    }
    e = b + strlen(b);
    while (e > b && isspace((unsigned char)e[-1])) {
        e--;
    }

    if (b == e || strchr(INI_START_COMMENT_PREFIXES, *b) != NULL) {
        p->kind = LINE_BLANK;
        return 0;
    }
    if (INI_ALLOW_MULTILINE && p->after_name && b > start) {
        p->kind = LINE_CONTINUATION;
        return 0;
    }
    /* inih would read it as a directive (or a section): refused, so that
     * indenting is never right on one line and wrong on the next. */
    if (b > start) {
        fail(p, p->line,
             "indented line, with no directive before it in this section to "
             "continue (do not indent directives)");
        return -1;
    }
    if (*b == '[') {
        const char *close = find_chars_or_comment(b + 1, e, "]");
        if (close == e || *close != ']') {
            fail(p, p->line, "section header without a closing ]");
            return -1;
        }
        const char *rest = close + 1;
        while (rest < e && isspace((unsigned char)*rest)) {
            rest++;
        }
        if (rest < e && strchr(INI_INLINE_COMMENT_PREFIXES, *rest) == NULL) {
            fail(p, p->line, "unexpected text after the section header");
            return -1;
        }
        p->kind = LINE_SECTION;
        p->after_name = 0;
        return open_section(p, b + 1, close);
    }
    sep = find_chars_or_comment(b, e, "=:");
    if (sep == e || (*sep != '=' && *sep != ':')) {
        fail(p, p->line, "expected \"name = value\" or a [section] header");
        return -1;
    }
    p->kind = LINE_PAIR;
    /* inih remembers the name (for continuations) only if it is not empty */
    while (sep > b && isspace((unsigned char)sep[-1])) {
        sep--;
    }
    p->after_name = sep > b;
    return 0;
}

/*
 * inih's reader: hand over the next line without its line break, after
 * counting and classifying it. Returns NULL at the end or after an error,
 * which stops the parse at the first error.
 */
static char *on_read_line(char *str, int num, void *stream)
{
    struct parser *p = stream;
    const char *s, *nl;
    size_t n, max;

    if (p->failed || p->pos >= p->len) {
        return NULL;
    }
    s = p->text + p->pos;
    nl = memchr(s, '\n', p->len - p->pos);
    n = nl != NULL ? (size_t)(nl - s) : p->len - p->pos;
    p->pos += n + (nl != NULL);
    p->line++;
    if (n > 0 && s[n - 1] == '\r') {
        n--;
    }
    /* A UTF-8 BOM (which inih would skip) and a comment line, however
     * long, take no room: inih gets a blank line in its place, so the
     * limit below is on what it reads. */
    if (p->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        n -= 3;
    }
    size_t lead = 0;
    while (lead < n && (s[lead] == ' ' || s[lead] == '\t')) {
        lead++;
    }
    if (lead < n && (s[lead] == ';' || s[lead] == '#')) {
        n = 0;
    }
    /* inih needs room for "\r\n\0" after the longest line. */
    max = num > 3 ? (size_t)num - 3 : 0;
    if (n > max) {
        fail(p, p->line, "line too long (%zu characters, at most %zu)", n,
             max);
        return NULL;
    }
    memcpy(str, s, n);
    str[n] = '\0';
    /* inih, as Debian builds it, takes only ';' to start an inline
     * comment: a '#' after a blank starts one too (switchboard.conf(5)). */
    for (char *c = str + (n > 0); *c != '\0'; c++) {
        if (*c == '#' && (c[-1] == ' ' || c[-1] == '\t')) {
            *c = '\0';
            break;
        }
    }
    if (classify_line(p, str) < 0) {
        return NULL;
    }
    return str;
}

/* inih's handler: one name = value pair (or continuation line). 1 = ok. */
static int on_directive(void *user, const char *section, const char *name,
                        const char *value)
{
    struct parser *p = user;
    struct config *cfg = p->cfg;
    const struct directive *d;
    char buf[INI_MAX_LINE + 1], label[CONFIG_PATH_MAX + 32], n[256];
    void *base;
    int *seen;

    (void)section; /* ours is p->section: inih's is cut at 49 bytes */
    if (p->failed) {
        return 0;
    }
    if (p->kind == LINE_CONTINUATION) {
        /* r55 keeps an inline comment on a continuation line: drop it. */
        if (util_strlcpy(buf, value, sizeof(buf)) >= sizeof(buf)) {
            fail(p, p->line, "line too long");
            return 0;
        }
        char *end = (char *)find_chars_or_comment(buf, buf + strlen(buf),
                                                  NULL);
        while (end > buf && isspace((unsigned char)end[-1])) {
            end--;
        }
        *end = '\0';
        value = buf;
    } else if (p->kind != LINE_PAIR) {
        fail(p, p->line, "internal error: the ini parser saw a directive "
                         "where none was expected");
        return 0;
    }

    if (p->section == SECTION_NONE) {
        fail(p, p->line, "directive \"%s\" appears before any section header",
             shown(n, sizeof(n), name));
        return 0;
    }
    d = find_directive(p->section, name);
    if (d == NULL) {
        const struct directive *other = NULL;
        for (size_t i = 0; i < N_DIRECTIVES && other == NULL; i++) {
            if (strcmp(directives[i].name, name) == 0) {
                other = &directives[i];
            }
        }
        /* nginx's "listen 127.0.0.1:8080" reaches here split at its ':'
         * (the ini parser takes ':' for '=' too): its first word is a
         * directive, a value after it and no '='. */
        size_t word = strcspn(name, " \t");
        const struct directive *spaced = NULL;
        for (size_t i = 0; i < N_DIRECTIVES && name[word] != '\0' &&
                           spaced == NULL;
             i++) {
            if (strlen(directives[i].name) == word &&
                strncmp(directives[i].name, name, word) == 0) {
                spaced = &directives[i];
            }
        }
        if (spaced != NULL) {
            fail(p, p->line,
                 "\"%s\" is no directive: write \"%s = \" and the value "
                 "(an '=' between them)",
                 shown(n, sizeof(n), name), spaced->name);
        } else if (other != NULL) {
            fail(p, p->line,
                 "unknown directive \"%s\" in %s (it belongs in %s)", name,
                 section_label(p, label, sizeof(label)),
                 kind_label(other->section));
        } else {
            fail(p, p->line, "unknown directive \"%s\" in %s",
                 shown(n, sizeof(n), name),
                 section_label(p, label, sizeof(label)));
        }
        return 0;
    }

    seen = seen_lines(p, p->section);
    size_t idx = (size_t)(d - directives);
    if (!d->repeatable) {
        if (p->kind == LINE_CONTINUATION) {
            fail(p, p->line,
                 "indented line continues \"%s\", which takes one value "
                 "(do not indent directives)",
                 d->name);
            return 0;
        }
        if (seen[idx] != 0) {
            fail(p, p->line,
                 "duplicate directive \"%s\" (first set at line %d)", d->name,
                 seen[idx]);
            return 0;
        }
    }

    switch (p->section) {
    case SECTION_UPSTREAM:
        base = &cfg->upstreams[cfg->n_upstreams - 1];
        break;
    case SECTION_ROUTE:
        base = &cfg->routes[cfg->n_routes - 1];
        /* Validation names these lines if what they say does not hold. */
        if (strcmp(d->name, "upstream") == 0) {
            p->route_upstream_line[cfg->n_routes - 1] = p->line;
        } else if (strcmp(d->name, "fault_abort") == 0) {
            p->route_fault_abort_line[cfg->n_routes - 1] = p->line;
        }
        break;
    default:
        base = cfg;
        if (strcmp(d->name, "access_log") == 0) {
            cfg->access_log_line = p->line; /* the master opens it */
        }
        break;
    }
    /* A value in double quotes, as nginx and HAProxy take them: the
     * quotes go. A quote at one end only is a quote left open (both
     * refuse it too), not part of a file name. */
    char unquoted[INI_MAX_LINE + 1];
    size_t len = strlen(value);
    int opens = len >= 1 && value[0] == '"';
    int closes = len >= 2 && value[len - 1] == '"';
    if (opens != closes) {
        char v[256];
        fail(p, p->line, "unbalanced double quote in value \"%s\" for %s",
             shown(v, sizeof(v), value), d->name);
        return 0;
    }
    if (opens) {
        memcpy(unquoted, value + 1, len - 2);
        unquoted[len - 2] = '\0';
        value = unquoted;
    }
    if (set_value(p, d, base, value) < 0) {
        return 0;
    }
    if (seen[idx] == 0) {
        seen[idx] = p->line;
    }
    return 1;
}

/* --- validation -------------------------------------------------------- */

/*
 * Everything that needs the whole file: the default listener, duplicate
 * addresses, upstreams without servers, routes resolved to upstream indexes,
 * and the implicit route. Several problems are possible here; the one on
 * the earliest line is reported.
 */
static int config_validate(struct parser *p)
{
    struct config *cfg = p->cfg;
    char a[CONFIG_HOST_MAX + 16];

    if (cfg->n_listen == 0) {
        struct config_addr *l = &cfg->listen[cfg->n_listen++];
        util_strlcpy(l->host, "127.0.0.1", sizeof(l->host));
        l->port = 8080;
        l->line = 0;
    }
    /* Two SO_REUSEPORT sockets on one address would both bind, silently;
     * a wildcard and an address it covers on one port would not bind at
     * start (the error -t must give first). */
    for (int i = 0; i < cfg->n_listen; i++) {
        for (int j = 0; j < i; j++) {
            const struct config_addr *x = &cfg->listen[i], *y = &cfg->listen[j];
            if (x->port == 0 || x->port != y->port ||
                !hosts_overlap(x->host, y->host)) {
                continue;
            }
            if (same_host(x->host, y->host)) {
                fail(p, x->line, "duplicate listen %s (first at line %d)",
                     addr_label(x, a, sizeof(a)), y->line);
            } else {
                char b[80];
                fail(p, x->line,
                     "listen %s overlaps listen %s (line %d): the wildcard "
                     "takes that port on every address ([::] on IPv4's "
                     "too)",
                     addr_label(x, a, sizeof(a)), addr_label(y, b, sizeof(b)),
                     y->line);
            }
            break;
        }
    }

    if (p->admin_line > 0 && cfg->n_admin_listen == 0) {
        fail(p, p->admin_line,
             "[admin] has no listen directive (leave the section out to have "
             "no admin listener)");
    }
    for (int i = 0; i < cfg->n_admin_listen; i++) {
        const struct config_addr *x = &cfg->admin_listen[i];
        for (int j = 0; j < cfg->n_listen && x->port != 0; j++) {
            const struct config_addr *y = &cfg->listen[j];
            if (x->port == y->port && hosts_overlap(x->host, y->host)) {
                char at[32];
                fail(p, x->line,
                     "[admin] listen %s is also where [server] listens (%s)",
                     addr_label(x, a, sizeof(a)), listen_where(y, at));
                break;
            }
        }
    }

    for (int u = 0; u < cfg->n_upstreams; u++) {
        const struct config_upstream *up = &cfg->upstreams[u];
        if (up->n_servers == 0) {
            fail(p, up->line, "[upstream %s] has no server", up->name);
        }
        for (int i = 0; i < up->n_servers; i++) {
            const struct config_addr *x = &up->servers[i].addr;
            for (int j = 0; j < cfg->n_listen; j++) {
                const struct config_addr *y = &cfg->listen[j];
                if (server_is_listen(x, y)) {
                    char at[32];
                    fail(p, x->line,
                         "server %s in [upstream %s] is where this proxy "
                         "listens (%s): its requests would come back to it",
                         addr_label(x, a, sizeof(a)), up->name,
                         listen_where(y, at));
                    break;
                }
            }
        }
        for (int i = 0; i < up->n_servers; i++) {
            for (int j = 0; j < i; j++) {
                const struct config_addr *x = &up->servers[i].addr;
                const struct config_addr *y = &up->servers[j].addr;
                if (x->port == y->port && same_host(x->host, y->host)) {
                    fail(p, x->line,
                         "duplicate server %s in [upstream %s] (first at line "
                         "%d); use weight= to send it more",
                         addr_label(x, a, sizeof(a)), up->name, y->line);
                    break;
                }
            }
        }
    }

    for (int u = 0; u < cfg->n_upstreams; u++) {
        struct config_upstream *up = &cfg->upstreams[u];
        up->hash_header[0] = '\0';
        if (strncmp(up->hash_key, "header", 6) == 0) {
            const char *n = up->hash_key + 6;
            while (isspace((unsigned char)*n)) {
                n++;
            }
            util_strlcpy(up->hash_header, n, sizeof(up->hash_header));
        }
    }

    for (int r = 0; r < cfg->n_routes; r++) {
        struct config_route *route = &cfg->routes[r];
        for (int i = 0; i < r; i++) {
            if (strcmp(cfg->routes[i].prefix, route->prefix) == 0 &&
                strcasecmp(cfg->routes[i].host, route->host) == 0) {
                if (route->host[0] != '\0') {
                    fail(p, route->line,
                         "duplicate [route %s] for host %s (first at line %d)",
                         route->prefix, route->host, cfg->routes[i].line);
                } else {
                    fail(p, route->line,
                         "duplicate [route %s] (first at line %d)",
                         route->prefix, cfg->routes[i].line);
                }
                break;
            }
        }
        if (route->upstream_name[0] == '\0') {
            fail(p, route->line, "[route %s] has no upstream directive",
                 route->prefix);
            continue;
        }
        if (route->fault_abort != 0 && route->fault_abort < 200) {
            fail(p, p->route_fault_abort_line[r],
                 "value \"%d\" for fault_abort is out of range: expected "
                 FAULT_ABORT_RANGE,
                 route->fault_abort);
        }
        route->upstream = -1;
        for (int u = 0; u < cfg->n_upstreams; u++) {
            if (strcmp(cfg->upstreams[u].name, route->upstream_name) == 0) {
                route->upstream = u;
                break;
            }
        }
        if (route->upstream < 0) {
            fail(p, p->route_upstream_line[r],
                 "upstream \"%s\" in [route %s] is not defined (no [upstream "
                 "%s] section)",
                 route->upstream_name, route->prefix, route->upstream_name);
        }
    }
    if (p->failed) {
        return -1;
    }

    cfg->max_connections_line = set_at(p, SECTION_SERVER, "max_connections");
    if (cfg->n_upstreams == 0) {
        fail(p, 0, "no [upstream NAME] section: nothing to proxy to");
        return -1;
    }

    /*
     * With a single upstream and no [route /], everything goes to it. With
     * several upstreams and no [route /] nothing is added: a path that no
     * route matches gets a 404 from the proxy.
     */
    int have_root = 0;
    for (int r = 0; r < cfg->n_routes; r++) {
        have_root |= strcmp(cfg->routes[r].prefix, "/") == 0;
    }
    if (!have_root && cfg->n_upstreams == 1) {
        if (cfg->n_routes >= CONFIG_MAX_ROUTES) {
            fail(p, 0,
                 "too many [route] sections to add the implicit [route /] "
                 "(at most %d)",
                 CONFIG_MAX_ROUTES);
            return -1;
        }
        struct config_route *route = &cfg->routes[cfg->n_routes++];
        memset(route, 0, sizeof(*route));
        apply_defaults(SECTION_ROUTE, route);
        util_strlcpy(route->prefix, "/", sizeof(route->prefix));
        util_strlcpy(route->upstream_name, cfg->upstreams[0].name,
                     sizeof(route->upstream_name));
        route->upstream = 0;
        route->line = 0;
    }
    return 0;
}

/* --- entry points ------------------------------------------------------ */

static int parse_text(struct config *cfg, const char *text, size_t len,
                      const char *name, char *err, size_t errlen)
{
    struct parser p;
    int rc;

    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.name = name;
    p.text = text;
    p.len = len;
    p.err = err;
    p.errlen = errlen;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    config_defaults(cfg);
    if (util_strlcpy(cfg->path, name, sizeof(cfg->path)) >=
        sizeof(cfg->path)) {
        fail(&p, 0, "file name too long (at most %d characters)",
             CONFIG_PATH_MAX - 1);
        return -1;
    }

    rc = ini_parse_stream(on_read_line, &p, on_directive, &p);
    if (!p.failed && rc > 0) {
        /* The reader rejects every malformed line first; kept as a net. */
        fail(&p, rc, "malformed line");
    } else if (!p.failed && rc < 0) {
        fail(&p, 0, "cannot parse (inih error %d)", rc);
    }
    if (!p.failed) {
        section_end(&p);
        config_validate(&p);
    }
    return p.failed ? -1 : 0;
}

int config_load_string(struct config *cfg, const char *text, const char *name,
                       char *err, size_t errlen)
{
    return parse_text(cfg, text, strlen(text), name, err, errlen);
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f;
    char *text = NULL;
    size_t len = 0, cap = 0;
    const char *nul;
    int rc, saved;

    f = fopen(path, "rb");
    if (f == NULL) {
        saved = errno;
        format_error(err, errlen, path, 0, "cannot open: %s", strerror(saved));
        return -1;
    }
    /* The buffer grows to one byte past the limit, so that a file of
     * exactly CONFIG_FILE_MAX bytes is read whole and one byte more is
     * seen. */
    for (;;) {
        if (len == cap) {
            size_t ncap = cap == 0 ? 8192 : cap * 2;
            char *t;
            if (cap > CONFIG_FILE_MAX) {
                format_error(err, errlen, path, 0,
                             "too large (more than %zu bytes)",
                             CONFIG_FILE_MAX);
                goto fail;
            }
            if (ncap > CONFIG_FILE_MAX) {
                ncap = CONFIG_FILE_MAX + 1;
            }
            t = realloc(text, ncap);
            if (t == NULL) {
                format_error(err, errlen, path, 0, "out of memory");
                goto fail;
            }
            text = t;
            cap = ncap;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        saved = errno;
        format_error(err, errlen, path, 0, "cannot read: %s", strerror(saved));
        goto fail;
    }
    fclose(f);
    f = NULL;

    nul = len > 0 ? memchr(text, '\0', len) : NULL;
    if (nul != NULL) {
        int line = 1;
        for (const char *c = text; c < nul; c++) {
            line += *c == '\n';
        }
        format_error(err, errlen, path, line, "contains a NUL byte");
        goto fail;
    }
    rc = parse_text(cfg, text != NULL ? text : "", len, path, err, errlen);
    free(text);
    return rc;

fail:
    if (f != NULL) {
        fclose(f);
    }
    free(text);
    return -1;
}

int config_host_matches(const char *pattern, const char *host, size_t len)
{
    if (pattern[0] == '\0') {
        return 1;
    }
    if (host == NULL) {
        return 0;
    }
    /* Drop a port: "a.example:8080"; an IPv6 literal keeps its brackets. */
    for (size_t i = len; i > 0; i--) {
        if (host[i - 1] == ':') {
            len = i - 1;
            break;
        }
        if (host[i - 1] == ']' || !isdigit((unsigned char)host[i - 1])) {
            break;
        }
    }
    if (len > 0 && host[len - 1] == '.') {
        len--; /* a fully qualified "a.example." */
    }
    if (pattern[0] == '*') {
        size_t n = strlen(pattern + 1); /* ".example.com" */
        return len > n &&
               strncasecmp(host + len - n, pattern + 1, n) == 0;
    }
    return strlen(pattern) == len && strncasecmp(host, pattern, len) == 0;
}

int config_route_match(const struct config *cfg, const char *host,
                       size_t host_len, const char *path, size_t len)
{
    int best = -1;
    size_t best_len = 0;
    int best_rank = 0; /* 2 exact host, 1 wildcard, 0 any */

    if (path == NULL) {
        return -1;
    }
    for (int i = 0; i < cfg->n_routes; i++) {
        const struct config_route *r = &cfg->routes[i];
        size_t n = strlen(r->prefix);
        if (n > len || memcmp(path, r->prefix, n) != 0 ||
            !config_host_matches(r->host, host, host_len)) {
            continue;
        }
        int rank = r->host[0] == '\0' ? 0 : r->host[0] == '*' ? 1 : 2;
        /* Of two wildcards on one prefix, the longer is the more specific
         * (*.internal.example.com before *.example.com), as in nginx;
         * it was the first in the file. */
        int longer = rank == 1 && best_rank == 1 &&
                     strlen(r->host) > strlen(cfg->routes[best].host);
        if (best < 0 || n > best_len ||
            (n == best_len && (rank > best_rank || longer))) {
            best = i;
            best_len = n;
            best_rank = rank;
        }
    }
    return best;
}
