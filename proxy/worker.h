/*
 * worker: one process, one event_base. Owns its listeners (inherited from
 * the master), its sessions, its upstream pools and its access log. Nothing
 * here is shared with another worker.
 */
#ifndef SWITCHBOARD_WORKER_H
#define SWITCHBOARD_WORKER_H

#include <sys/queue.h>
#include <sys/time.h>

#include "config.h"

struct event_base;
struct event;
struct evconnlistener;
struct accesslog;
struct pool;
struct session;
struct evdns_base;
struct stats_slot;

TAILQ_HEAD(session_list, session);

/* Listening sockets a worker may serve: one per address for each of up
 * to 64 slots (a reload to fewer workers leaves its sockets to those
 * that stay). */
#define WORKER_MAX_LISTENERS (CONFIG_MAX_LISTEN * 64)

/* Timeouts as libevent common timeouts (O(1) add/remove for 10k timers). */
struct worker_timeouts {
    const struct timeval *client_header;
    const struct timeval *client_body;
    const struct timeval *keepalive;
    const struct timeval *send;
    const struct timeval *tunnel;
    const struct timeval *linger_idle; /* lingering_timeout */
    const struct timeval *linger_max;  /* lingering_time */
    const struct timeval *up_keepalive[CONFIG_MAX_UPSTREAMS];
    const struct timeval *up_connect[CONFIG_MAX_UPSTREAMS];
    const struct timeval *up_read[CONFIG_MAX_UPSTREAMS];
    const struct timeval *up_send[CONFIG_MAX_UPSTREAMS];
    const struct timeval *route_read[CONFIG_MAX_ROUTES]; /* NULL: inherit */
};

/*
 * How a new worker's servers start, by upstream and server index of its
 * conf: 0 in service; n > 0 out of service, with n - 1 good checks toward
 * health_rise. What the health checks of the running workers said when the
 * master forked it (master.c: health_at_fork), so that a reload or a
 * restart does not send requests to a server known down.
 */
struct worker_health {
    unsigned char out[CONFIG_MAX_UPSTREAMS][CONFIG_MAX_SERVERS];
};

/* A worker process's whole state. */
struct worker {
    int index;
    const struct config *cfg;
    const struct worker_health *health; /* NULL: every server starts up */
    struct event_base *base;
    struct evconnlistener *listeners[WORKER_MAX_LISTENERS];
    int n_listeners;
    int accepting;           /* listeners enabled */
    struct event *accept_retry; /* re-enables accepting after EMFILE */
    struct pool *pools[CONFIG_MAX_UPSTREAMS];
    struct accesslog *access_log;
    struct session_list sessions;
    int n_sessions;
    /* Sessions idle between two requests, their keep-alive timer running,
     * longest idle first: at max_connections the first is closed to make
     * room for a new client (session_close_idle), as nginx does. */
    struct session_list idle;
    struct worker_timeouts tv;
    struct event *sig_term;
    struct event *sig_int;
    struct event *sig_quit;
    struct event *sig_usr1;
    struct event *tick;          /* refreshes the gauges when asked */
    struct event *drain_timer;   /* shutdown_timeout after a drain began */
    const struct timeval *drain_grace; /* idle keep-alive clients, draining */
    int draining;
    int stopped;  /* worker_stop: its sessions were cut */
    struct evdns_base *dns;      /* re-resolves upstream host names */
    struct stats_slot *stats;    /* this worker's figures (shared) */
    struct stats_slot *own_stats; /* when no shared slot was given */
    uint64_t rng; /* latency jitter */
    int reserve_fd;        /* spare descriptor, given up to shed on EMFILE */
    uint64_t n_shed;       /* connections closed for lack of descriptors */
    uint64_t n_capped;     /* times max_connections stopped accepting */
    uint64_t n_idle_closed; /* idle clients closed to make room */
    double capped_logged;  /* util_now_ms() of the last "not accepting" */
    double reclaim_logged; /* and of the last "closed an idle client" */
    uint64_t n_buffer_cap; /* sessions closed by the hard buffer cap */
};

/*
 * Run worker index on the listening sockets fds (at least one per listen
 * address, already bound and listening), writing its figures into slot (NULL: kept
 * private), its servers' health starting from health (NULL: all in
 * service). SIGTERM and SIGQUIT drain: stop accepting, let exchanges in
 * flight finish (up to shutdown_timeout), close idle clients, return.
 * SIGINT stops at once; SIGUSR1 reopens the access log. Returns the
 * process exit status.
 */
int worker_run(const struct config *cfg, int index, const int *fds, int n_fds,
               struct stats_slot *slot, const struct worker_health *health);

/* The stats of pool i of this worker. */
struct stats_pool *worker_pool_stats(struct worker *w, int i);

/* A session ended: update counts and resume accepting if it was capped. */
void worker_session_closed(struct worker *w);

/* A session became idle (w->idle): resume accepting if it was capped,
 * since the session can now make room for a new client. */
void worker_session_idle(struct worker *w);

/* An idle session is busy again: stop accepting if that leaves the
 * worker at max_connections with none idle (else it went past it). */
void worker_session_busy(struct worker *w);

/* Uniform random integer in [0, n]. */
int worker_random(struct worker *w, int n);

#endif
