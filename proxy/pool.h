/*
 * pool: one [upstream] section inside a worker: its servers, their health,
 * the balancer over them, and the keep-alive connections idling between
 * exchanges.
 *
 * Owns every upstream connection that is not lent to a session. An idle
 * connection is watched: bytes or EOF from the server, or keepalive_timeout,
 * close it. A session borrows a connection (pool_acquire), installs its own
 * callbacks, and gives it back clean (pool_release) or frees it
 * (pool_conn_free).
 *
 * Health, per worker like nginx's: passive (max_fails failures within
 * fail_timeout take a server out for fail_timeout, reported by sessions
 * through pool_server_failed; then one request at a time probes it until
 * one is answered, a failed probe taking it out again) and, with
 * health_check set, active (a GET
 * every health_interval; health_fall failures in a row take the server
 * out, health_rise passes bring it back). Nothing here knows HTTP beyond
 * the health check's status line.
 */
#ifndef SWITCHBOARD_POOL_H
#define SWITCHBOARD_POOL_H

#include <sys/queue.h>
#include <sys/socket.h>

#include "balancer.h"
#include "config.h"

struct event_base;
struct event;
struct bufferevent;
struct evdns_base;
struct evdns_getaddrinfo_request;
struct pool;
struct stats_pool;
struct stats_server;

TAILQ_HEAD(upconn_list, upconn);

/* One server of a pool, resolved. */
struct pool_server {
    struct pool *pool;
    int index;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[CONFIG_HOST_MAX + 8]; /* "host:port" for logs */
    char host_header[CONFIG_HOST_MAX + 8]; /* Host to send when none came */
    struct upconn_list idle;        /* this server's idle connections */
    int active;                     /* connections lent to sessions */
    /* passive health */
    int fails;             /* counted, up to max_fails, since it was last out */
    double *fail_times;    /* of the last max_fails failures (a ring) */
    int fail_next;         /* the ring's next slot: its oldest time */
    /* Out of service until then; once past, and until an answer sets it
     * back to 0, one request at a time probes it: probe_ms is when the
     * probe in flight was picked. */
    double down_until_ms;
    double probe_ms;
    /* active health */
    int check_up;         /* 1 unless health checks took it out */
    int check_streak;     /* passes (up) or failures (down) in a row */
    int checks_done;      /* checks finished, pass or fail */
    struct event *check_timer;
    struct bufferevent *check_bev;
    int literal; /* the conf gave an address, not a name */
    int resolved; /* addr holds an address (a name may wait for evdns) */
    unsigned addr_gen; /* bumped when re-resolution changes addr */
    struct evdns_getaddrinfo_request *dns_req;
    struct stats_server *st;
};

/* An upstream connection, idle in a pool or lent to a session. */
struct upconn {
    struct bufferevent *bev;
    struct pool *pool;
    struct pool_server *server;
    unsigned exchanges; /* completed on this connection; >0 means reused */
    int connected;
    int lent;           /* counted in server->active */
    unsigned addr_gen;  /* the server's addr_gen when it connected */
    TAILQ_ENTRY(upconn) idle_link;   /* pool-wide, most recent first */
    TAILQ_ENTRY(upconn) server_link; /* the server's */
};

/* A pool as a worker holds it. */
struct pool {
    const struct config_upstream *cfg;
    struct event_base *base;
    struct evdns_base *dns;
    struct pool_server *servers;
    int n_servers;
    struct balancer balancer;
    struct upconn_list idle; /* most recently released first */
    int n_idle;
    const struct timeval *keepalive_tv; /* idle lifetime */
    const struct timeval *connect_tv;
    struct event *resolve_timer; /* re-resolves host names */
    int names_by_dns; /* a `resolver` is set: no hosts file */
    struct stats_pool *st;
};

/*
 * Resolve the upstream's servers and build the pool; start its health
 * checks and, for host names, re-resolution with dns every
 * resolve_interval. Names are resolved at start with getaddrinfo, or, with
 * names_by_dns (a `resolver` is set), only through dns: such a server is
 * out of service until its first answer. Returns NULL and fills err on
 * failure.
 * Timeouts are common-timeout timevals from the worker. st receives the
 * pool's figures (never NULL). start_out (NULL: none) has one entry per
 * server (worker_health): with health checks on, a server whose entry is
 * n > 0 starts out of service with n - 1 of its health_rise good checks
 * passed, and is checked at once.
 */
struct pool *pool_new(struct event_base *base, struct evdns_base *dns,
                      int names_by_dns, const struct config_upstream *cfg,
                      const struct timeval *keepalive_tv,
                      const struct timeval *connect_tv, struct stats_pool *st,
                      const unsigned char *start_out, char *err,
                      size_t errlen);

/* What tells one health_check path from another in the stats (stats_pool's
 * check_id): a key of cfg's path, 0 when checks are off. */
uint64_t pool_check_id(const struct config_upstream *cfg);

/* Close every idle connection, stop checks and free the pool; NULL: no-op. */
void pool_free(struct pool *p);

/* Close the idle connections (a drain). */
void pool_close_idle(struct pool *p);

/*
 * The server the balancer chooses among those in service and not in tried
 * (bit i: server i), with key for balance = hash. NULL when none is left.
 */
struct pool_server *pool_pick(struct pool *p, uint64_t key, uint64_t tried);

/* Is the server in service (passive and active health)? One back from
 * being out is, though it takes one request at a time until a probe is
 * answered (pool_pick). */
int pool_server_usable(const struct pool_server *s);

/* Publish the servers' up flags and the pool's servers_up as they are now
 * (a server taken out by max_fails is back when fail_timeout has passed,
 * with nothing else to publish it). */
void pool_publish_health(struct pool *p);

/* An exchange with the server failed (counts toward max_fails; a probe's
 * takes it out again) or was answered (a probe's puts it back in full). */
void pool_server_failed(struct pool_server *s, const char *why);
void pool_server_succeeded(struct pool_server *s);

/*
 * A connection to server: an idle one (already connected, exchanges > 0),
 * unless fresh, or a new one (connected == 0, not yet connecting). With
 * peek, an idle one is taken only if a look at its socket (one system call)
 * finds it still open and silent: a server may close a connection right
 * after its last response, and the loop may not have seen that yet. For
 * requests that cannot be replayed on a fresh connection. The
 * caller sets its callbacks and timeouts, and connects a new one (its
 * socket is made then). Returns NULL when memory runs out.
 */
struct upconn *pool_acquire(struct pool *p, struct pool_server *server,
                            int fresh, int peek);

/*
 * Does the pool keep idle connections at all? Not with keepalive = 0 or
 * keepalive_timeout = 0: a request then says Connection: close.
 */
int pool_keeps_idle(const struct pool *p);

/*
 * Give a clean connection (response complete, nothing unread) back to the
 * pool, or free it when the pool keeps none or its server's address
 * changed since it connected (a name resolved anew). A pool that already holds
 * `keepalive` idle ones closes its oldest idle one to make room (nginx
 * does the same).
 */
void pool_release(struct upconn *c);

/* Close and free a connection that is not idle; NULL is a no-op. */
void pool_conn_free(struct upconn *c);

#endif
