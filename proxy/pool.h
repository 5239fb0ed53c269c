/*
 * pool: one [upstream] section inside a worker: its servers, the balancer
 * over them, and the keep-alive connections idling between exchanges.
 *
 * Owns every upstream connection that is not lent to a session. An idle
 * connection is watched: bytes or EOF from the server, or keepalive_timeout,
 * close it. A session borrows a connection (pool_acquire), installs its own
 * callbacks, and gives it back clean (pool_release) or frees it
 * (upconn_free). Nothing here knows HTTP.
 */
#ifndef SWITCHBOARD_POOL_H
#define SWITCHBOARD_POOL_H

#include <sys/queue.h>
#include <sys/socket.h>

#include "balancer.h"
#include "config.h"

struct event_base;
struct bufferevent;
struct pool;

/* One server of a pool, resolved. */
struct pool_server {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[CONFIG_HOST_MAX + 8]; /* "host:port" for logs */
    char host_header[CONFIG_HOST_MAX + 8]; /* Host to send when none came */
};

/* An upstream connection, idle in a pool or lent to a session. */
struct upconn {
    struct bufferevent *bev;
    struct pool *pool;
    struct pool_server *server;
    unsigned exchanges; /* completed on this connection; >0 means reused */
    int connected;
    TAILQ_ENTRY(upconn) idle_link;
};

TAILQ_HEAD(upconn_list, upconn);

/* A pool as a worker holds it. */
struct pool {
    const struct config_upstream *cfg;
    struct event_base *base;
    struct pool_server *servers;
    int n_servers;
    struct balancer balancer;
    struct upconn_list idle; /* most recently released first */
    int n_idle;
    const struct timeval *keepalive_tv; /* idle lifetime */
    const struct timeval *connect_tv;
};

/*
 * Resolve the upstream's servers (getaddrinfo: at start only) and build the
 * pool. Returns NULL and fills err on failure. timeouts are common-timeout
 * timevals from the worker.
 */
struct pool *pool_new(struct event_base *base,
                      const struct config_upstream *cfg,
                      const struct timeval *keepalive_tv,
                      const struct timeval *connect_tv, char *err,
                      size_t errlen);

/* Close every idle connection and free the pool; NULL is a no-op. */
void pool_free(struct pool *p);

/* The server the balancer chooses next. */
struct pool_server *pool_pick(struct pool *p);

/*
 * A connection to server: an idle one (already connected, exchanges > 0) or
 * a new one whose connect has been started (connected == 0). The caller
 * sets its callbacks and timeouts. Returns NULL with errno set when a socket
 * cannot even be created.
 */
struct upconn *pool_acquire(struct pool *p, struct pool_server *server);

/*
 * Give a clean connection (response complete, nothing unread) back to the
 * pool, or free it when the pool already holds `keepalive` idle ones.
 */
void pool_release(struct upconn *c);

/* Close and free a connection that is not idle; NULL is a no-op. */
void upconn_free(struct upconn *c);

#endif
