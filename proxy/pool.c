/*
 * pool: servers, health, balancer and idle keep-alive connections of one
 * upstream.
 */
#include "pool.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "stats.h"
#include "util.h"

static void on_check_timer(evutil_socket_t fd, short what, void *arg);
static void on_resolve_timer(evutil_socket_t fd, short what, void *arg);

/* Take c out of the idle lists. */
static void idle_remove(struct upconn *c)
{
    TAILQ_REMOVE(&c->pool->idle, c, idle_link);
    TAILQ_REMOVE(&c->server->idle, c, server_link);
    c->pool->n_idle--;
    c->pool->st->idle = c->pool->n_idle;
}

/* The first IPv4 result, else the first: what a server connects to. */
static const struct evutil_addrinfo *preferred(const struct evutil_addrinfo *a)
{
    for (const struct evutil_addrinfo *i = a; i != NULL; i = i->ai_next) {
        if (i->ai_family == AF_INET) {
            return i;
        }
    }
    return a;
}

/* "192.0.2.1:80" or "[2001:db8::1]:80". */
static void format_sockaddr(const struct sockaddr *sa, char *buf, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(buf, n, "%s:%u", host, port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(buf, n, "[%s]:%u", host, port);
    }
}

struct pool *pool_new(struct event_base *base, struct evdns_base *dns,
                      int names_by_dns, const struct config_upstream *cfg,
                      const struct timeval *keepalive_tv,
                      const struct timeval *connect_tv, struct stats_pool *st,
                      const unsigned char *start_out, char *err,
                      size_t errlen)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->names_by_dns = names_by_dns;
    p->cfg = cfg;
    p->base = base;
    p->dns = dns;
    p->keepalive_tv = keepalive_tv;
    p->connect_tv = connect_tv;
    p->st = st;
    TAILQ_INIT(&p->idle);
    p->servers = calloc((size_t)cfg->n_servers, sizeof(*p->servers));
    if (p->servers == NULL) {
        snprintf(err, errlen, "out of memory");
        free(p);
        return NULL;
    }
    util_strlcpy(st->name, cfg->name, sizeof(st->name));
    st->balance = cfg->balance;
    st->check_id = pool_check_id(cfg);
    int weights[BALANCER_MAX];
    int names = 0, unresolved = 0;
    for (int i = 0; i < cfg->n_servers && i < BALANCER_MAX; i++) {
        const struct config_server *cs = &cfg->servers[i];
        struct pool_server *s = &p->servers[i];
        s->pool = p;
        s->index = i;
        s->check_up = 1;
        TAILQ_INIT(&s->idle);
        s->literal = util_is_ip_literal(cs->addr.host);
        names += !s->literal;
        if (s->literal || !names_by_dns || dns == NULL) {
            /* Before the worker serves anything: a blocking lookup is
             * harmless here, and the master checked the names already. */
            char port[8];
            snprintf(port, sizeof(port), "%u", cs->addr.port);
            struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
            struct addrinfo *res = NULL;
            int rc = getaddrinfo(cs->addr.host, port, &hints, &res);
            if (rc == 0) {
                const struct evutil_addrinfo *a = preferred(res);
                memcpy(&s->addr, a->ai_addr, a->ai_addrlen);
                s->addrlen = a->ai_addrlen;
                freeaddrinfo(res);
                s->resolved = 1;
            } else if (dns != NULL) {
                /* It resolved a moment ago in the master: out of service
                 * until evdns answers (on_resolve_timer, below). */
                log_warn("upstream %s: cannot resolve %s (%s); out of "
                         "service until it resolves",
                         cfg->name, cs->addr.host, gai_strerror(rc));
                unresolved++;
            } else {
                snprintf(err, errlen, "upstream %s: cannot resolve %s: %s",
                         cfg->name, cs->addr.host, gai_strerror(rc));
                pool_free(p);
                return NULL;
            }
        } else {
            unresolved++;
        }
        config_server_name(cs, s->name, sizeof(s->name));
        snprintf(s->host_header, sizeof(s->host_header), "%s", s->name);
        weights[i] = cs->weight;
        if (i < STATS_MAX_SERVERS) {
            s->st = &st->servers[i];
            util_strlcpy(s->st->address, s->name, sizeof(s->st->address));
            s->st->weight = cs->weight;
            s->st->up = s->resolved;
            st->n_servers = i + 1;
        } else {
            static struct stats_server spare; /* beyond what /metrics shows */
            s->st = &spare;
        }
        p->n_servers++;
        if (cfg->max_fails > 1 &&
            (s->fail_times = calloc((size_t)cfg->max_fails,
                                    sizeof(*s->fail_times))) == NULL) {
            snprintf(err, errlen, "out of memory");
            pool_free(p);
            return NULL;
        }
        if (strcmp(cfg->health_check, "off") != 0) {
            s->check_timer = evtimer_new(base, on_check_timer, s);
            if (s->check_timer == NULL) {
                snprintf(err, errlen, "out of memory");
                pool_free(p);
                return NULL;
            }
            /* Spread the first checks over the first interval; one that
             * starts out (start_out) is checked at once, so that a server
             * back meanwhile is not kept out for an interval more. */
            struct timeval tv = util_ms_to_tv(
                (int)((long)cfg->health_interval_ms * i / (cfg->n_servers + 1)));
            if (start_out != NULL && start_out[i] > 0 &&
                start_out[i] - 1 < cfg->health_rise) {
                s->check_up = 0;
                s->check_streak = start_out[i] - 1;
                /* What it was told stands as its own verdict until its
                 * first check ends (a silent server holds that check for
                 * health_timeout): a worker forked meanwhile asks it. */
                s->checks_done = 1;
                tv = util_ms_to_tv(0);
            }
            evtimer_add(s->check_timer, &tv);
        }
    }
    balancer_init(&p->balancer, weights, p->n_servers);
    pool_publish_health(p);
    /* Said once it is published: the master hands it on from there (to a
     * worker forked after this one dies), and a reader of the log may take
     * the line for that. */
    for (int i = 0; i < p->n_servers; i++) {
        const struct pool_server *s = &p->servers[i];
        if (!s->check_up) { /* only start_out holds one out here */
            log_info("upstream %s: server %s starts out of service: "
                     "health checks held it out when this worker "
                     "started (%d of health_rise %d good checks since)",
                     cfg->name, s->name, s->check_streak, cfg->health_rise);
        }
    }
    if (names > 0 && dns != NULL &&
        (cfg->resolve_interval_ms > 0 || unresolved > 0)) {
        /* Without re-resolution, an unanswered first lookup is still
         * retried every second until it succeeds. */
        p->resolve_timer = event_new(base, -1, EV_PERSIST, on_resolve_timer, p);
        struct timeval tv = util_ms_to_tv(
            cfg->resolve_interval_ms > 0 ? cfg->resolve_interval_ms : 1000);
        if (p->resolve_timer == NULL || event_add(p->resolve_timer, &tv) < 0) {
            snprintf(err, errlen, "out of memory");
            pool_free(p);
            return NULL;
        }
        if (unresolved > 0) {
            on_resolve_timer(-1, 0, p); /* the first answers, now */
        }
    }
    return p;
}

uint64_t pool_check_id(const struct config_upstream *cfg)
{
    if (strcmp(cfg->health_check, "off") == 0) {
        return 0;
    }
    return balancer_key(cfg->health_check, strlen(cfg->health_check));
}

void pool_close_idle(struct pool *p)
{
    struct upconn *c;
    while ((c = TAILQ_FIRST(&p->idle)) != NULL) {
        idle_remove(c);
        pool_conn_free(c);
    }
}

void pool_free(struct pool *p)
{
    if (p == NULL) {
        return;
    }
    pool_close_idle(p);
    for (int i = 0; i < p->n_servers; i++) {
        struct pool_server *s = &p->servers[i];
        if (s->check_timer != NULL) {
            event_free(s->check_timer);
        }
        if (s->check_bev != NULL) {
            bufferevent_free(s->check_bev);
        }
        if (s->dns_req != NULL) {
            evdns_getaddrinfo_cancel(s->dns_req);
        }
        free(s->fail_times);
    }
    if (p->resolve_timer != NULL) {
        event_free(p->resolve_timer);
    }
    free(p->servers);
    free(p);
}

/* ---- health ------------------------------------------------------------ */

/* Keep the pool's servers_up gauge and the server's up flag true. A
 * change of health publishes at once; a fail_timeout running out is seen
 * when the worker publishes before the admin reads the flags (on_tick). */
void pool_publish_health(struct pool *p)
{
    int up = 0;
    for (int i = 0; i < p->n_servers; i++) {
        const struct pool_server *s = &p->servers[i];
        int u = pool_server_usable(s);
        s->st->up = u;
        s->st->checked = s->checks_done > 0;
        s->st->check_down = !s->check_up;
        s->st->check_passes = s->check_up ? 0 : s->check_streak;
        up += u;
    }
    p->st->servers_up = up;
}

int pool_server_usable(const struct pool_server *s)
{
    return s->resolved && s->check_up &&
           (s->down_until_ms == 0 || util_now_ms() >= s->down_until_ms);
}

/* Can s take this request: usable, and not back from being out with its
 * probe in flight (a probe whose exchange ended with neither answer nor
 * failure, its client gone, say, is given up after fail_timeout)? */
static int server_pickable(const struct pool_server *s, double now)
{
    return pool_server_usable(s) &&
           !(s->down_until_ms != 0 && s->probe_ms > 0 &&
             now - s->probe_ms < s->pool->cfg->fail_timeout_ms);
}

void pool_server_failed(struct pool_server *s, const char *why)
{
    const struct config_upstream *cfg = s->pool->cfg;
    s->st->failures++;
    /* Like nginx: a lone server is never taken out by failures, since
     * refusing every request at once would only add to its outage. */
    if (cfg->max_fails == 0 || s->pool->n_servers == 1) {
        return;
    }
    double now = util_now_ms();
    if (s->down_until_ms != 0 && now >= s->down_until_ms) {
        /* Back from being out, it failed again before any answer (its
         * probe, most likely): out again at once. */
        s->down_until_ms = now + cfg->fail_timeout_ms;
        s->probe_ms = 0;
        log_warn("upstream %s: server %s out again for %d ms (%s)",
                 cfg->name, s->name, cfg->fail_timeout_ms, why);
        pool_publish_health(s->pool);
        return;
    }
    int n = cfg->max_fails;
    if (s->fails < n) {
        s->fails++;
    }
    /* A window that slides with each failure: the last max_fails of them,
     * with no success between, all within fail_timeout. */
    int within = 1;
    if (n > 1) {
        s->fail_times[s->fail_next] = now;
        s->fail_next = (s->fail_next + 1) % n;
        within = now - s->fail_times[s->fail_next] <= cfg->fail_timeout_ms;
    }
    if (s->fails >= n && within &&
        (s->down_until_ms == 0 || now >= s->down_until_ms)) {
        s->down_until_ms = now + cfg->fail_timeout_ms;
        s->fails = 0;
        s->probe_ms = 0;
        log_warn("upstream %s: server %s out for %d ms after %d failure%s "
                 "(last: %s)",
                 cfg->name, s->name, cfg->fail_timeout_ms, cfg->max_fails,
                 cfg->max_fails == 1 ? "" : "s", why);
        pool_publish_health(s->pool);
    }
}

void pool_server_succeeded(struct pool_server *s)
{
    /* The failures counted stay (as nginx's): max_fails of them within
     * fail_timeout take it out, however many answers came between. */
    if (s->down_until_ms != 0 && util_now_ms() >= s->down_until_ms) {
        /* Its probe answered: back in full, counting afresh. */
        s->probe_ms = 0;
        s->down_until_ms = 0;
        s->fails = 0;
        pool_publish_health(s->pool);
    }
}

/* One active check finished: pass or fail, and the rise/fall counting. */
static void check_done(struct pool_server *s, int pass, const char *why)
{
    const struct config_upstream *cfg = s->pool->cfg;
    if (s->check_bev != NULL) {
        bufferevent_free(s->check_bev);
        s->check_bev = NULL;
    }
    s->checks_done++;
    if (s->check_up) {
        s->check_streak = pass ? 0 : s->check_streak + 1;
        if (s->check_streak >= cfg->health_fall) {
            s->check_up = 0;
            s->check_streak = 0;
            log_warn("upstream %s: server %s down: %d health check%s failed "
                     "(last: %s)",
                     cfg->name, s->name, cfg->health_fall,
                     cfg->health_fall == 1 ? "" : "s", why);
        }
    } else {
        s->check_streak = pass ? s->check_streak + 1 : 0;
        if (s->check_streak >= cfg->health_rise) {
            s->check_up = 1;
            s->check_streak = 0;
            s->down_until_ms = 0; /* proven healthy: passive state too */
            s->fails = 0;
            s->probe_ms = 0;
            log_warn("upstream %s: server %s up: %d health check%s passed",
                     cfg->name, s->name, cfg->health_rise,
                     cfg->health_rise == 1 ? "" : "s");
        }
    }
    /* Every check: the master reads the progress too (health_at_fork). */
    pool_publish_health(s->pool);
    struct timeval tv = util_ms_to_tv(cfg->health_interval_ms);
    evtimer_add(s->check_timer, &tv);
}

/* The check's response: its status line decides (2xx and 3xx pass). */
static void on_check_read(struct bufferevent *bev, void *arg)
{
    struct pool_server *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL,
                                                  EVBUFFER_EOL_CRLF);
    if (eol.pos < 0) {
        if (evbuffer_get_length(in) > 1024) {
            check_done(s, 0, "status line too long");
        }
        return;
    }
    /* As strict as the data path (RFC 9112 4): HTTP/1.x, one space,
     * exactly three digits, then a space or the line's end (CR, or a bare
     * LF, which the data path takes too). */
    char line[16] = "";
    evbuffer_copyout(in, line, sizeof(line) - 1);
    const char *c = line + 9;
    if (strncmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) ||
        line[8] != ' ' || !isdigit((unsigned char)c[0]) ||
        !isdigit((unsigned char)c[1]) || !isdigit((unsigned char)c[2]) ||
        (c[3] != ' ' && c[3] != '\r' && c[3] != '\n')) {
        check_done(s, 0, "not an HTTP/1.x status line");
        return;
    }
    int status = (c[0] - '0') * 100 + (c[1] - '0') * 10 + (c[2] - '0');
    char why[40];
    snprintf(why, sizeof(why), "status %d", status);
    check_done(s, status >= 200 && status < 400, why);
}

static void on_check_event(struct bufferevent *bev, short what, void *arg)
{
    struct pool_server *s = arg;
    if (what & BEV_EVENT_CONNECTED) {
        return;
    }
    check_done(s, 0,
               (what & BEV_EVENT_TIMEOUT) ? "timed out"
               : (what & BEV_EVENT_EOF)   ? "closed without a response"
                                          : evutil_socket_error_to_string(
                                                EVUTIL_SOCKET_ERROR()));
}

/* Time for a check: GET the path on a connection of its own. */
static void on_check_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pool_server *s = arg;
    const struct config_upstream *cfg = s->pool->cfg;
    if (s->check_bev != NULL) {
        /* The timer doubles as the check's deadline: health_timeout for
         * the whole check, not per read, so that a server trickling its
         * answer fails like a silent one. */
        check_done(s, 0, "timed out");
        return;
    }
    if (!s->resolved) {
        /* Nothing to check yet: look again at the next interval. */
        struct timeval tv = util_ms_to_tv(cfg->health_interval_ms);
        evtimer_add(s->check_timer, &tv);
        return;
    }
    s->check_bev = bufferevent_socket_new(s->pool->base, -1,
                                          BEV_OPT_CLOSE_ON_FREE);
    if (s->check_bev == NULL) {
        check_done(s, 0, "out of memory");
        return;
    }
    struct timeval tv = util_ms_to_tv(cfg->health_timeout_ms);
    evtimer_add(s->check_timer, &tv);
    bufferevent_setcb(s->check_bev, on_check_read, NULL, on_check_event, s);
    evbuffer_add_printf(bufferevent_get_output(s->check_bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\n"
                        "User-Agent: switchboard-health-check\r\n"
                        "Connection: close\r\n\r\n",
                        cfg->health_check, s->host_header);
    bufferevent_enable(s->check_bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(s->check_bev, (struct sockaddr *)&s->addr,
                                   (int)s->addrlen) < 0) {
        check_done(s, 0, strerror(errno));
    }
}

/* ---- re-resolution ----------------------------------------------------- */

/* Is the server's address among those of an answer? A name with several
 * addresses, answered in a new order each time (round-robin DNS), keeps
 * the one it has, and its idle connections with it. */
static int answer_holds(const struct evutil_addrinfo *res,
                        const struct pool_server *s)
{
    for (const struct evutil_addrinfo *i = res; i != NULL; i = i->ai_next) {
        if (i->ai_addrlen == s->addrlen &&
            memcmp(i->ai_addr, &s->addr, i->ai_addrlen) == 0) {
            return 1;
        }
    }
    return 0;
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct pool_server *s = arg;
    if (result == EVUTIL_EAI_CANCEL) {
        return; /* pool_free cancelled it: s may be gone */
    }
    s->dns_req = NULL;
    if (result != 0 || res == NULL) {
        if (s->resolved) {
            log_warn("upstream %s: cannot re-resolve %s (%s); keeping its "
                     "address",
                     s->pool->cfg->name, s->name, evutil_gai_strerror(result));
        } else {
            log_warn("upstream %s: cannot resolve %s (%s); out of service "
                     "until it resolves",
                     s->pool->cfg->name, s->name, evutil_gai_strerror(result));
        }
        if (res != NULL) {
            evutil_freeaddrinfo(res);
        }
        return;
    }
    const struct evutil_addrinfo *a = preferred(res);
    if (!s->resolved) {
        memcpy(&s->addr, a->ai_addr, a->ai_addrlen);
        s->addrlen = a->ai_addrlen;
        s->resolved = 1;
        char now[INET6_ADDRSTRLEN + 8];
        format_sockaddr((struct sockaddr *)&s->addr, now, sizeof(now));
        log_info("upstream %s: %s resolves to %s", s->pool->cfg->name,
                 s->name, now);
        if (!s->check_up && s->check_bev == NULL && s->check_timer != NULL) {
            /* Started out (pool_new): its check at once, now that it can
             * be made, not an interval on. */
            struct timeval at_once = util_ms_to_tv(0);
            evtimer_add(s->check_timer, &at_once);
        }
        pool_publish_health(s->pool);
    } else if (!answer_holds(res, s)) {
        char was[INET6_ADDRSTRLEN + 8], now[INET6_ADDRSTRLEN + 8];
        format_sockaddr((struct sockaddr *)&s->addr, was, sizeof(was));
        memcpy(&s->addr, a->ai_addr, a->ai_addrlen);
        s->addrlen = a->ai_addrlen;
        format_sockaddr((struct sockaddr *)&s->addr, now, sizeof(now));
        s->addr_gen++; /* connections lent now are not kept (pool_release) */
        log_info("upstream %s: %s now resolves to %s (was %s)",
                 s->pool->cfg->name, s->name, now, was);
        /* New exchanges connect to the new address; idle connections to
         * the old one are let go. */
        struct upconn *c;
        while ((c = TAILQ_FIRST(&s->idle)) != NULL) {
            idle_remove(c);
            pool_conn_free(c);
        }
    }
    evutil_freeaddrinfo(res);
}

/* Every resolve_interval: look each named server up again (evdns). */
static void on_resolve_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pool *p = arg;
    if (!p->names_by_dns && p->dns != NULL && what != 0) {
        /* The system's resolver, on the timer: /etc/hosts read again, as
         * getaddrinfo would (evdns read it once, at the worker's start,
         * which the first round, called with what 0, uses). */
        evdns_base_clear_host_addresses(p->dns);
        evdns_base_load_hosts(p->dns, "/etc/hosts");
    }
    for (int i = 0; i < p->n_servers; i++) {
        struct pool_server *s = &p->servers[i];
        const struct config_server *cs = &p->cfg->servers[i];
        if (s->literal || s->dns_req != NULL ||
            (p->cfg->resolve_interval_ms == 0 && s->resolved)) {
            continue;
        }
        char port[8];
        snprintf(port, sizeof(port), "%u", cs->addr.port);
        struct evutil_addrinfo hints = {.ai_socktype = SOCK_STREAM,
                                        .ai_protocol = IPPROTO_TCP};
        /* Answered at once from the hosts file, it returns NULL. */
        s->dns_req = evdns_getaddrinfo(p->dns, cs->addr.host, port, &hints,
                                       on_resolved, s);
    }
}

/* ---- balancing and connections ----------------------------------------- */

struct pool_server *pool_pick(struct pool *p, uint64_t key, uint64_t tried)
{
    unsigned char ok[BALANCER_MAX];
    int active[BALANCER_MAX];
    int any = 0;
    double now = util_now_ms();
    for (int i = 0; i < p->n_servers; i++) {
        ok[i] = !(i < 64 && (tried >> i) & 1) &&
                server_pickable(&p->servers[i], now);
        active[i] = p->servers[i].active;
        any |= ok[i];
    }
    if (!any) {
        return NULL;
    }
    int i;
    switch (p->cfg->balance) {
    case BALANCE_LEAST_CONN:
        i = balancer_least_conn(&p->balancer, ok, active);
        break;
    case BALANCE_HASH:
        i = balancer_hash(&p->balancer, ok, key);
        break;
    default:
        i = balancer_round_robin(&p->balancer, ok);
        break;
    }
    if (i < 0) {
        return NULL;
    }
    struct pool_server *s = &p->servers[i];
    if (s->down_until_ms != 0) {
        /* Out, and fail_timeout over: this request is its probe (nginx
         * sends one too), the others go elsewhere until it is answered
         * or fails. Not all of them, each held connect_timeout. */
        s->probe_ms = now;
    }
    return s;
}

/* An idle connection spoke or closed: it cannot be reused. */
static void on_idle_read(struct bufferevent *bev, void *arg)
{
    struct upconn *c = arg;
    idle_remove(c);
    pool_conn_free(c);
}

static void on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    struct upconn *c = arg;
    idle_remove(c);
    pool_conn_free(c);
}

/*
 * Whether ev came due (ready, or its timeout passed) in this loop pass and
 * its callback has not run yet. libevent has no call for it; the flags are
 * public in event2/event_struct.h (in 2.1 and 2.2 alike).
 */
static int event_is_due(const struct event *ev)
{
    return (ev->ev_evcallback.evcb_flags &
            (EVLIST_ACTIVE | EVLIST_ACTIVE_LATER)) != 0;
}

/* Is idle c's socket still open with nothing to read? One MSG_PEEK. */
static int idle_is_silent(const struct upconn *c)
{
    char byte;
    ssize_t n = recv(bufferevent_getfd(c->bev), &byte, 1,
                     MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct upconn *pool_acquire(struct pool *p, struct pool_server *server,
                            int fresh, int peek)
{
    struct upconn *c = NULL;
    while (!fresh && (c = TAILQ_FIRST(&server->idle)) != NULL) {
        idle_remove(c);
        if (!peek || idle_is_silent(c)) {
            /* Its events off if one came due in this loop pass (its
             * keepalive_timeout passed, bytes came) with its callback still
             * to run, which the borrower would then get as its own news (a
             * 504 "did not respond in time" at once), or whose re-arming
             * would not watch the socket (the answer left unread until
             * read_timeout). Disabling drops the pending callback; the
             * borrower enables them afresh. Otherwise its read event stays
             * on, and the borrower only sets its timeouts: turning it off
             * and on again is two epoll_ctl calls per exchange. */
            bufferevent_disable(c->bev, event_is_due(&c->bev->ev_read)
                                            ? EV_READ | EV_WRITE
                                            : EV_WRITE);
            break;
        }
        pool_conn_free(c); /* closed or spoke: as on_idle_read would */
    }
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            return NULL;
        }
        c->pool = p;
        c->server = server;
        c->addr_gen = server->addr_gen;
        c->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (c->bev == NULL) {
            free(c);
            errno = ENOMEM;
            return NULL;
        }
    }
    c->lent = 1;
    server->active++;
    server->st->active = server->active;
    server->st->requests++;
    p->st->requests++;
    return c;
}

/* A lent connection comes back: no longer active. */
static void give_back(struct upconn *c)
{
    if (c->lent) {
        c->lent = 0;
        c->server->active--;
        c->server->st->active = c->server->active;
    }
}

int pool_keeps_idle(const struct pool *p)
{
    return p->cfg->keepalive > 0 && p->cfg->keepalive_timeout_ms > 0;
}

void pool_release(struct upconn *c)
{
    struct pool *p = c->pool;
    give_back(c);
    c->exchanges++;
    if (!pool_keeps_idle(p) || c->addr_gen != c->server->addr_gen) {
        pool_conn_free(c); /* or its server's name moved meanwhile */
        return;
    }
    if (p->n_idle >= p->cfg->keepalive) {
        struct upconn *oldest = TAILQ_LAST(&p->idle, upconn_list);
        idle_remove(oldest);
        pool_conn_free(oldest);
    }
    bufferevent_setcb(c->bev, on_idle_read, NULL, on_idle_event, c);
    bufferevent_set_timeouts(c->bev, p->keepalive_tv, NULL);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    bufferevent_disable(c->bev, EV_WRITE);
    TAILQ_INSERT_HEAD(&p->idle, c, idle_link);
    TAILQ_INSERT_HEAD(&c->server->idle, c, server_link);
    p->n_idle++;
    p->st->idle = p->n_idle;
}

void pool_conn_free(struct upconn *c)
{
    if (c == NULL) {
        return;
    }
    give_back(c);
    bufferevent_free(c->bev);
    free(c);
}
