/*
 * worker: sets up one event loop over inherited listening sockets and runs
 * it. Admission control lives here: at max_connections a new client takes
 * the place of the client idle longest between two requests (as nginx
 * reuses connections); with none idle, the listeners stop accepting (the
 * kernel queues new clients in the backlog) and resume when a session ends
 * or becomes idle. When accept fails for lack of descriptors the listeners
 * pause for 100 ms instead of spinning.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>

#include "accesslog.h"
#include "log.h"
#include "pool.h"
#include "session.h"
#include "stats.h"
#include "util.h"

/* How long an idle keep-alive client may still send one request during a
 * drain (it is answered with Connection: close), so that a request already
 * on its way is not met by a closed socket. */
#define DRAIN_GRACE_MS 250

/* How often a worker looks whether the admin wants fresh gauges (stats.h):
 * the longest a /metrics or /status waits for them. */
#define TICK_MS 50

/* Common timeouts: many events share a duration, libevent keeps a queue. */
static const struct timeval *common_tv(struct event_base *base, int ms)
{
    struct timeval tv = util_ms_to_tv(ms);
    const struct timeval *c = event_base_init_common_timeout(base, &tv);
    return c;
}

static void accepting_set(struct worker *w, int on)
{
    if (w->accepting == on) {
        return;
    }
    w->accepting = on;
    for (int i = 0; i < w->n_listeners; i++) {
        if (on) {
            evconnlistener_enable(w->listeners[i]);
        } else {
            evconnlistener_disable(w->listeners[i]);
        }
    }
}

/* Whether a warning last logged at *last is due again: once a second at
 * most (the worker at max_connections said so at every accept, 2,000
 * lines in 2 s). */
static int log_due(double *last)
{
    double now = util_now_ms();
    if (*last > 0 && now - *last < 1000) {
        return 0;
    }
    *last = now;
    return 1;
}

/* Whether a new client can be taken: below max_connections, or with an
 * idle session to close for it (session_close_idle). */
static int has_room(const struct worker *w)
{
    return w->n_sessions < w->cfg->max_connections || !TAILQ_EMPTY(&w->idle);
}

/* At max_connections with no idle session to close for a newcomer: stop
 * accepting (the kernel queues new clients). */
static void accepting_cap(struct worker *w)
{
    w->n_capped++;
    w->stats->counter[STAT_CAPPED]++;
    if (log_due(&w->capped_logged)) {
        log_warn("max_connections (%d) reached: not accepting (%llu times "
                 "so far)",
                 w->cfg->max_connections, (unsigned long long)w->n_capped);
    }
    accepting_set(w, 0);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int socklen, void *arg)
{
    struct worker *w = arg;
    w->stats->counter[STAT_ACCEPTED]++;
    if (w->n_sessions >= w->cfg->max_connections && session_close_idle(w)) {
        w->n_idle_closed++;
        w->stats->counter[STAT_IDLE_CLOSED]++;
        if (log_due(&w->reclaim_logged)) {
            log_warn("max_connections (%d) reached: closed an idle "
                     "keep-alive client to take a new one (%llu so far)",
                     w->cfg->max_connections,
                     (unsigned long long)w->n_idle_closed);
        }
    }
    session_start(w, fd, sa, socklen);
    if (!has_room(w)) {
        accepting_cap(w);
    }
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (has_room(w)) {
        accepting_set(w, 1);
    }
}

/*
 * accept failed. Out of descriptors (EMFILE/ENFILE), the pending client
 * would stay queued and the listener readable, so the loop would spin: give
 * up the reserve descriptor, accept that client and close it at once (it
 * sees the connection close instead of hanging), take the reserve back, and
 * pause accepting for 100 ms.
 */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct worker *w = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if ((err == EMFILE || err == ENFILE) && w->reserve_fd >= 0) {
        close(w->reserve_fd);
        int fd = accept(evconnlistener_get_fd(l), NULL, NULL);
        if (fd >= 0) {
            close(fd);
            w->n_shed++;
            w->stats->counter[STAT_REJECTED]++;
        }
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        log_error("accept: %s: closed a new connection (%llu so far); "
                  "pausing for 100 ms",
                  evutil_socket_error_to_string(err),
                  (unsigned long long)w->n_shed);
    } else {
        log_error("accept: %s; pausing for 100 ms",
                  evutil_socket_error_to_string(err));
    }
    accepting_set(w, 0);
    struct timeval tv = {0, 100 * 1000};
    evtimer_add(w->accept_retry, &tv);
}

struct stats_pool *worker_pool_stats(struct worker *w, int i)
{
    static struct stats_pool spare; /* pools beyond what /metrics shows */
    if (i >= STATS_MAX_POOLS) {
        return &spare;
    }
    if (w->stats->n_pools <= i) {
        w->stats->n_pools = i + 1;
    }
    return &w->stats->pools[i];
}

/* Accept again if max_connections stopped it and a new client can now be
 * taken (not while an accept error's pause runs, nor once listeners are
 * closed). */
static void accepting_resume(struct worker *w)
{
    if (!w->accepting && w->n_listeners > 0 && has_room(w) &&
        !evtimer_pending(w->accept_retry, NULL)) {
        accepting_set(w, 1);
    }
}

void worker_session_closed(struct worker *w)
{
    w->n_sessions--;
    if (w->draining && !w->stopped && w->n_sessions == 0) {
        log_info("drained: every session is closed");
        event_base_loopexit(w->base, NULL);
    }
    accepting_resume(w);
}

void worker_session_idle(struct worker *w)
{
    accepting_resume(w);
}

void worker_session_busy(struct worker *w)
{
    if (w->accepting && !has_room(w)) {
        accepting_cap(w);
    }
}

int worker_random(struct worker *w, int n)
{
    /* xorshift64: plenty for jitter. */
    uint64_t x = w->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    w->rng = x;
    return n <= 0 ? 0 : (int)(x % (uint64_t)(n + 1));
}

/* Close the listeners: the kernel hands new clients to other workers. */
static void listeners_close(struct worker *w)
{
    for (int i = 0; i < w->n_listeners; i++) {
        evconnlistener_free(w->listeners[i]);
    }
    w->n_listeners = 0;
    w->accepting = 0;
}

/* Stop now: close the listeners and every session, then leave the loop. */
static void worker_stop(struct worker *w, const char *why)
{
    log_info("stopping (%s), %d open sessions", why, w->n_sessions);
    listeners_close(w);
    w->stopped = 1; /* cut, not drained: worker_session_closed says nothing */
    struct session *s;
    while ((s = TAILQ_FIRST(&w->sessions)) != NULL) {
        session_abort(s, "shutdown");
    }
    event_base_loopexit(w->base, NULL);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    log_warn("shutdown_timeout (%d ms) reached with %d sessions open",
             w->cfg->shutdown_timeout_ms, w->n_sessions);
    worker_stop(w, "shutdown_timeout");
}

/*
 * Drain: stop accepting, close idle connections, let every exchange in
 * flight finish (each session closes after its response), and leave the
 * loop when the last session is gone or shutdown_timeout has passed.
 */
static void worker_drain(struct worker *w, const char *why)
{
    if (w->draining || w->stopped) {
        return;
    }
    w->draining = 1;
    __atomic_store_n(&w->stats->draining, 1, __ATOMIC_RELEASE);
    log_info("draining (%s): %d open sessions, up to %d ms",
             why, w->n_sessions, w->cfg->shutdown_timeout_ms);
    listeners_close(w);
    if (w->accept_retry != NULL) {
        evtimer_del(w->accept_retry);
    }
    for (int i = 0; i < w->cfg->n_upstreams; i++) {
        pool_close_idle(w->pools[i]);
    }
    if (w->n_sessions == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    struct timeval tv = util_ms_to_tv(w->cfg->shutdown_timeout_ms);
    evtimer_add(w->drain_timer, &tv);
    struct session *s, *next;
    for (s = TAILQ_FIRST(&w->sessions); s != NULL; s = next) {
        next = session_next(s);
        session_drain(s);
    }
}

/* Open the access log the conf names into w->access_log; 0, or -1 with
 * why logged after prefix. */
static int access_log_open(struct worker *w, const char *prefix)
{
    const char *err = NULL;
    w->access_log = accesslog_open(w->base, w->cfg->access_log, &err);
    if (err != NULL) {
        log_error("%saccess_log %s: %s: %s; no access log for this worker "
                  "until SIGUSR1",
                  prefix, w->cfg->access_log, err,
                  accesslog_strerror(w->cfg->access_log, errno));
        return -1;
    }
    return 0;
}

static void on_worker_signal(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w = arg;
    switch (sig) {
    case SIGTERM:
        worker_drain(w, "SIGTERM");
        break;
    case SIGQUIT:
        worker_drain(w, "SIGQUIT");
        break;
    case SIGUSR1:
        if (!accesslog_is_file(w->cfg->access_log)) {
            break; /* no file of its own to reopen */
        }
        if (w->access_log == NULL) {
            /* Could not be opened when this worker started: try again. */
            if (access_log_open(w, "SIGUSR1: ") == 0) {
                log_info("SIGUSR1: access log opened");
            }
        } else if (accesslog_reopen(w->access_log) < 0) {
            log_error("SIGUSR1: cannot reopen access_log %s: %s",
                      w->cfg->access_log,
                      accesslog_strerror(w->cfg->access_log, errno));
        } else {
            log_info("SIGUSR1: access log reopened");
        }
        break;
    default:
        worker_stop(w, "SIGINT");
        break;
    }
}

/*
 * The session gauges, the oldest sessions and the servers' health, when
 * the admin has asked since the last time (stats.h): the walk visits every
 * session, which at 10,000 of them is worth doing only for someone who
 * reads the result.
 */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct stats_slot *st = w->stats;
    unsigned asked = __atomic_load_n(&st->gauges_asked, __ATOMIC_ACQUIRE);
    if (asked == st->gauges_answered) {
        return;
    }
    int64_t paused = 0, buffered = 0, waiting = 0;
    int n_oldest = 0;
    struct session *s;
    for (s = TAILQ_FIRST(&w->sessions); s != NULL; s = session_next(s)) {
        struct session_info info;
        session_describe(s, &info);
        paused += info.paused;
        buffered += (int64_t)info.buffered;
        waiting += info.upstream_waiting;
        if (n_oldest < STATS_OLDEST) {
            /* Sessions are listed oldest first. */
            struct stats_session *o = &st->oldest[n_oldest++];
            o->started_ms = info.started_ms;
            util_strlcpy(o->phase, info.phase, sizeof(o->phase));
            util_strlcpy(o->peer, info.peer, sizeof(o->peer));
            o->bytes_in = info.bytes_in;
            o->bytes_out = info.bytes_out;
        }
    }
    st->n_oldest = n_oldest;
    for (int i = 0; i < w->cfg->n_upstreams; i++) {
        pool_publish_health(w->pools[i]);
    }
    st->gauge[STAT_OPEN_SESSIONS] = w->n_sessions;
    st->gauge[STAT_PAUSED_SESSIONS] = paused;
    st->gauge[STAT_BUFFERED_BYTES] = buffered;
    st->gauge[STAT_UPSTREAM_WAITING] = waiting;
    __atomic_store_n(&st->gauges_answered, asked, __ATOMIC_RELEASE);
}

/* Build everything the loop needs; -1 and a log line on failure. */
static int worker_setup(struct worker *w, const int *fds, int n_fds)
{
    const struct config *cfg = w->cfg;
    /* event_backend: keep libevent from the methods not asked for. */
    static const char *const methods[] = {"epoll", "poll", "select"};
    struct event_config *ec = event_config_new();
    if (ec == NULL) {
        log_error("cannot create an event config");
        return -1;
    }
    for (int m = 0; m < 3 && cfg->event_backend != BACKEND_AUTO; m++) {
        if (m + BACKEND_EPOLL != cfg->event_backend) {
            event_config_avoid_method(ec, methods[m]);
        }
    }
    if (cfg->event_backend == BACKEND_SELECT) {
        /* select() cannot watch a descriptor >= FD_SETSIZE (glibc aborts
         * the process): hold this worker below it, so that accept fails
         * with EMFILE, which sheds the client, instead. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > FD_SETSIZE) {
            rl.rlim_cur = FD_SETSIZE;
            setrlimit(RLIMIT_NOFILE, &rl);
            log_info("event_backend select: at most %d descriptors",
                     FD_SETSIZE);
        }
    }
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (w->base == NULL) {
        log_error("cannot create an event base (event_backend %d)",
                  cfg->event_backend);
        return -1;
    }
    log_debug("event backend: %s", event_base_get_method(w->base));
    w->tv.client_header = common_tv(w->base, cfg->client_header_timeout_ms);
    w->tv.client_body = common_tv(w->base, cfg->client_body_timeout_ms);
    w->tv.keepalive = common_tv(w->base, cfg->keepalive_timeout_ms);
    w->tv.send = common_tv(w->base, cfg->send_timeout_ms);
    w->tv.tunnel = common_tv(w->base, cfg->tunnel_timeout_ms);
    w->tv.linger_idle = common_tv(w->base, cfg->lingering_timeout_ms);
    w->tv.linger_max = common_tv(w->base, cfg->lingering_time_ms);
    w->drain_grace = common_tv(w->base, DRAIN_GRACE_MS);
    /* A resolver for host names, if any server has one and they are
     * re-resolved or a `resolver` is set (evdns: lookups never block the
     * loop). "system" reads /etc/resolv.conf and /etc/hosts. */
    int by_dns = strcmp(cfg->resolver, "system") != 0;
    for (int i = 0; i < cfg->n_upstreams && w->dns == NULL; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        for (int k = 0; k < u->n_servers &&
                        (u->resolve_interval_ms > 0 || by_dns);
             k++) {
            if (util_is_ip_literal(u->servers[k].addr.host)) {
                continue;
            }
            w->dns = evdns_base_new(
                w->base, by_dns ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
            if (w->dns != NULL && by_dns &&
                evdns_base_nameserver_ip_add(w->dns, cfg->resolver) != 0) {
                log_error("resolver %s: cannot use it", cfg->resolver);
                return -1;
            }
            if (w->dns == NULL) {
                log_warn("no resolver (see /etc/resolv.conf): host "
                         "names are resolved at start only");
            }
            break;
        }
    }
    for (int i = 0; i < cfg->n_upstreams; i++) {
        const struct config_upstream *u = &cfg->upstreams[i];
        w->tv.up_keepalive[i] = common_tv(w->base, u->keepalive_timeout_ms);
        w->tv.up_connect[i] = common_tv(w->base, u->connect_timeout_ms);
        w->tv.up_read[i] = common_tv(w->base, u->read_timeout_ms);
        w->tv.up_send[i] = common_tv(w->base, u->send_timeout_ms);
        char err[256];
        w->pools[i] = pool_new(w->base, w->dns, by_dns, u,
                               w->tv.up_keepalive[i],
                               w->tv.up_connect[i], worker_pool_stats(w, i),
                               w->health != NULL ? w->health->out[i] : NULL,
                               err, sizeof(err));
        if (w->pools[i] == NULL) {
            log_error("%s", err);
            return -1;
        }
    }
    for (int r = 0; r < cfg->n_routes; r++) {
        if (cfg->routes[r].read_timeout_ms > 0) {
            w->tv.route_read[r] =
                common_tv(w->base, cfg->routes[r].read_timeout_ms);
        }
    }
    /* Should it fail, the master opened it when it read the conf: it has
     * gone since (its directory removed, say) and this worker is a
     * restart. Exiting would only restart it again, a second later, with
     * its listening socket's share of new connections left waiting; so it
     * serves, without the log, until SIGUSR1 opens it. */
    access_log_open(w, "");
    w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    w->accept_retry = evtimer_new(w->base, on_accept_retry, w);
    w->drain_timer = evtimer_new(w->base, on_drain_timeout, w);
    w->tick = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    w->sig_term = evsignal_new(w->base, SIGTERM, on_worker_signal, w);
    w->sig_int = evsignal_new(w->base, SIGINT, on_worker_signal, w);
    w->sig_quit = evsignal_new(w->base, SIGQUIT, on_worker_signal, w);
    w->sig_usr1 = evsignal_new(w->base, SIGUSR1, on_worker_signal, w);
    struct timeval tick = {0, TICK_MS * 1000};
    if (w->accept_retry == NULL || w->sig_term == NULL || w->sig_int == NULL ||
        w->sig_quit == NULL || w->sig_usr1 == NULL || w->tick == NULL ||
        w->drain_timer == NULL || evsignal_add(w->sig_term, NULL) < 0 ||
        evsignal_add(w->sig_int, NULL) < 0 ||
        evsignal_add(w->sig_quit, NULL) < 0 ||
        evsignal_add(w->sig_usr1, NULL) < 0 ||
        event_add(w->tick, &tick) < 0) {
        log_error("cannot set up worker events");
        return -1;
    }
    for (int i = 0; i < n_fds; i++) {
        int fd = fds[i];
        if (cfg->event_backend == BACKEND_SELECT && fd >= FD_SETSIZE) {
            /* Inherited that high (the master holds a socket per worker
             * and address, and in a reload the new ones while the old are
             * open): select() cannot watch it, so it moves to the lowest
             * free descriptor, which the sockets of the other workers,
             * closed in this one, have left. */
            int low = fcntl(fd, F_DUPFD_CLOEXEC, 0);
            if (low < 0 || low >= FD_SETSIZE) {
                log_error("event_backend select: listening socket %d is "
                          "past FD_SETSIZE (%d) and cannot move below it",
                          fd, FD_SETSIZE);
                if (low >= 0) {
                    close(low);
                }
                return -1;
            }
            close(fd);
            fd = low;
        }
        struct evconnlistener *l = evconnlistener_new(
            w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
            0, fd);
        if (l == NULL) {
            log_error("cannot listen on inherited socket %d", fd);
            return -1;
        }
        evconnlistener_set_error_cb(l, on_accept_error);
        w->listeners[w->n_listeners++] = l;
    }
    w->accepting = 1;
    return 0;
}

/* Free the events of evs[0..n) that were made. */
static void events_free(struct event *const *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
}

static void worker_teardown(struct worker *w)
{
    /* Freeing the signal events puts back the actions the worker started
     * with (SIG_DFL: core for SIGQUIT, an exit for the others), and the
     * master passes a SIGQUIT on at stop to workers a reload already
     * retired: held back, they cannot take one that is leaving anyway.
     * (Ignoring them would not do: event_free restores the old action
     * over SIG_IGN.) */
    sigset_t leaving;
    sigemptyset(&leaving);
    sigaddset(&leaving, SIGQUIT);
    sigaddset(&leaving, SIGTERM);
    sigaddset(&leaving, SIGINT);
    sigaddset(&leaving, SIGUSR1);
    sigprocmask(SIG_BLOCK, &leaving, NULL);
    /* Their events go first: one libevent caught before the block would
     * still be delivered by the loop pass below, to a worker half freed. */
    struct event *sigs[] = {w->sig_quit, w->sig_usr1, w->sig_term, w->sig_int};
    events_free(sigs, sizeof(sigs) / sizeof(sigs[0]));
    listeners_close(w);
    struct session *s;
    while ((s = TAILQ_FIRST(&w->sessions)) != NULL) {
        session_abort(s, "shutdown");
    }
    for (int i = 0; i < CONFIG_MAX_UPSTREAMS; i++) {
        pool_free(w->pools[i]);
        w->pools[i] = NULL;
    }
    struct event *timers[] = {w->accept_retry, w->tick, w->drain_timer};
    events_free(timers, sizeof(timers) / sizeof(timers[0]));
    if (w->dns != NULL) {
        /* A lookup pool_free cancelled ends in a callback libevent runs
         * on its next pass (pool.c's on_resolved sees the cancel): run it
         * (with the signals' and timers' events gone, nothing else can),
         * or freeing the resolver first leaks the lookup. */
        event_base_loop(w->base, EVLOOP_NONBLOCK);
        evdns_base_free(w->dns, 0);
    }
    accesslog_close(w->access_log);
    if (w->reserve_fd >= 0) {
        close(w->reserve_fd);
    }
    if (w->base != NULL) {
        event_base_free(w->base);
    }
}

int worker_run(const struct config *cfg, int index, const int *fds, int n_fds,
               struct stats_slot *slot, const struct worker_health *health)
{
    char role[32];
    snprintf(role, sizeof(role), "worker %d", index);
    log_init(cfg->log_level, role);
    /* http-parser's limit is per process: set from this worker's conf, so
     * that a reload changes it. Our own limits answer 431 before it trips;
     * it also bounds a chunk-size line and a trailer section. */
    http_parser_set_max_header_size((uint32_t)cfg->max_header_size * 2 +
                                    4096);
    struct worker w;
    memset(&w, 0, sizeof(w));
    w.index = index;
    w.cfg = cfg;
    w.health = health;
    w.reserve_fd = -1;
    w.rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    TAILQ_INIT(&w.sessions);
    TAILQ_INIT(&w.idle);
    w.stats = slot;
    if (slot == NULL) {
        w.own_stats = calloc(1, sizeof(*w.own_stats));
        w.stats = w.own_stats;
    }
    int rc = 1;
    if (w.stats == NULL) {
        log_error("out of memory");
        return 1;
    }
    if (worker_setup(&w, fds, n_fds) == 0) {
        /* The handlers are in: let the signals the master blocked in. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        log_info("started");
        event_base_dispatch(w.base);
        rc = 0;
    }
    worker_teardown(&w);
    free(w.own_stats);
    return rc;
}
