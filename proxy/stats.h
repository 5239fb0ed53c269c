/*
 * stats: the figures /metrics and /status show, in memory shared by the
 * master, the workers and the admin process.
 *
 * The master maps one region before it forks anything. Each worker owns one
 * slot and is its only writer (but for gauges_asked): counters are plain
 * increments on its hot path. The session gauges take a walk over every
 * session, so they are refreshed on demand: the admin asks each slot
 * (stats_ask_gauges) before it renders /metrics or /status, every worker
 * answers at its next tick (worker.c, 20 times a second), and nobody asking
 * costs no more than that tick looking. Readers (the admin process) add the
 * slots up; a reading torn against a concurrent increment is off by one at
 * worst. When a worker exits, the master folds its counters and histograms
 * into the `retired` slot so totals never go backwards across restarts and
 * reloads. The master also reads the servers' health-check verdicts, for
 * the workers it forks (master.c: health_at_fork).
 *
 * Every metric is declared once, in the lists below, with its Prometheus
 * name, labels and help; admin.c renders them (Prometheus text and
 * JSON) by walking the same lists.
 */
#ifndef SWITCHBOARD_STATS_H
#define SWITCHBOARD_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* Counters of a worker: X(id, name, labels, help) */
#define STATS_COUNTERS(X)                                                      \
    X(ACCEPTED, "switchboard_connections_accepted_total", "",                  \
      "Client connections accepted")                                           \
    X(REJECTED, "switchboard_connections_rejected_total", "",                  \
      "Client connections closed at once (out of descriptors)")                \
    X(CAPPED, "switchboard_max_connections_reached_total", "",                 \
      "Times a worker reached max_connections and stopped accepting")          \
    X(IDLE_CLOSED, "switchboard_idle_closed_total", "",                        \
      "Idle keep-alive clients closed to make room at max_connections")        \
    X(REQUESTS, "switchboard_requests_total", "",                              \
      "Requests whose head was read whole")                                    \
    X(RESP_1XX, "switchboard_responses_total", "class=\"1xx\"",                \
      "Final responses sent to clients, by status class (1xx: a 101 that "     \
      "starts a tunnel)")                                                      \
    X(RESP_2XX, "switchboard_responses_total", "class=\"2xx\"", "")            \
    X(RESP_3XX, "switchboard_responses_total", "class=\"3xx\"", "")            \
    X(RESP_4XX, "switchboard_responses_total", "class=\"4xx\"", "")            \
    X(RESP_5XX, "switchboard_responses_total", "class=\"5xx\"", "")            \
    X(BYTES_IN, "switchboard_client_received_bytes_total", "",                 \
      "Bytes read from clients")                                               \
    X(BYTES_OUT, "switchboard_client_sent_bytes_total", "",                    \
      "Bytes queued for clients, less what a cut-off exchange dropped")        \
    X(TO_CLIENT_HEADER, "switchboard_timeouts_total",                          \
      "kind=\"client_header\"", "Timeouts, by kind")                           \
    X(TO_CLIENT_BODY, "switchboard_timeouts_total", "kind=\"client_body\"", "")\
    X(TO_CLIENT_SEND, "switchboard_timeouts_total", "kind=\"client_send\"", "")\
    X(TO_KEEPALIVE, "switchboard_timeouts_total", "kind=\"keepalive\"", "")    \
    X(TO_UP_CONNECT, "switchboard_timeouts_total",                             \
      "kind=\"upstream_connect\"", "")                                         \
    X(TO_UP_READ, "switchboard_timeouts_total", "kind=\"upstream_read\"", "")  \
    X(TO_UP_SEND, "switchboard_timeouts_total", "kind=\"upstream_send\"", "")  \
    X(TO_TUNNEL, "switchboard_timeouts_total", "kind=\"tunnel\"", "")          \
    X(RETRIES, "switchboard_upstream_retries_total", "",                       \
      "Requests sent again to an upstream after a failure")                    \
    X(UP_CONNECTS, "switchboard_upstream_connects_total", "",                  \
      "Upstream connects begun (those that failed too)")                       \
    X(UP_REUSES, "switchboard_upstream_reuses_total", "",                      \
      "Exchanges sent on a pooled keep-alive connection")                      \
    X(UP_FAILURES, "switchboard_upstream_failures_total", "",                  \
      "Upstream connect errors, resets, timeouts and bad responses")           \
    X(NO_SERVER, "switchboard_no_server_total", "",                            \
      "Requests answered 503: every server of the pool was out")               \
    X(FAULT_DELAYS, "switchboard_fault_delays_total", "",                      \
      "Requests delayed by injected latency or a fault")                       \
    X(FAULT_ABORTS, "switchboard_fault_aborts_total", "",                      \
      "Requests answered by an injected fault")                                \
    X(CLIENT_ABORTS, "switchboard_client_aborts_total", "",                    \
      "Exchanges ended by the client closing after its request head, "         \
      "before any response (nginx's 499)")

/* Gauges of a worker: X(id, name, help) */
#define STATS_GAUGES(X)                                                        \
    X(OPEN_SESSIONS, "switchboard_open_sessions",                              \
      "Client connections open")                                               \
    X(PAUSED_SESSIONS, "switchboard_paused_sessions",                          \
      "Sessions with a side paused by backpressure")                           \
    X(BUFFERED_BYTES, "switchboard_buffered_bytes",                            \
      "Bytes held in session buffers")                                         \
    X(UPSTREAM_WAITING, "switchboard_upstream_waiting",                        \
      "Requests forwarded and waiting for the response head")

/* Histograms of a pool: X(id, name, help); values in milliseconds. */
#define STATS_HISTOGRAMS(X)                                                    \
    X(H_DURATION, "switchboard_request_duration_seconds",                      \
      "Time from request head to response end")                                \
    X(H_CONNECT, "switchboard_upstream_connect_seconds",                       \
      "Time to connect to the upstream (0 on a pooled connection)")            \
    X(H_FIRST_BYTE, "switchboard_upstream_first_byte_seconds",                 \
      "Time from forwarding to the response's first byte")                     \
    X(H_INJECTED, "switchboard_injected_latency_seconds",                      \
      "Latency injected before forwarding (latency, fault_delay; 0 if none)")

#define STATS_ID(id, ...) STAT_##id,
enum stats_counter { STATS_COUNTERS(STATS_ID) STATS_N_COUNTERS };
enum stats_gauge { STATS_GAUGES(STATS_ID) STATS_N_GAUGES };
enum stats_histogram_id { STATS_HISTOGRAMS(STATS_ID) STATS_N_HISTOGRAMS };
#undef STATS_ID

/* Bucket upper bounds in ms; the last bucket is +Inf. */
#define STATS_BUCKETS 15
extern const double stats_bucket_ms[STATS_BUCKETS - 1];

#define STATS_MAX_POOLS 16
#define STATS_MAX_SERVERS 32
#define STATS_OLDEST 8

struct stats_histogram {
    uint64_t bucket[STATS_BUCKETS]; /* not cumulative */
    uint64_t count;
    uint64_t sum_us;
};

struct stats_server {
    char address[CONFIG_HOST_MAX + 8];
    int weight;
    int up;          /* gauge: 1 in service, 0 out (passive or active) */
    /* Health checks (read by the master for a new worker, master.c): */
    int checked;      /* this worker has checked it at least once */
    int check_down;   /* its checks hold it out */
    int check_passes; /* good checks in a row since, toward health_rise */
    int active;      /* gauge: exchanges in progress */
    uint64_t requests;
    uint64_t failures;
};

struct stats_pool {
    char name[CONFIG_NAME_MAX];
    int balance;
    int n_servers;
    int idle;        /* gauge: pooled keep-alive connections */
    int servers_up;  /* gauge */
    uint64_t check_id; /* balancer_key of its health_check path; 0: off */
    uint64_t requests;
    struct stats_histogram hist[STATS_N_HISTOGRAMS];
    struct stats_server servers[STATS_MAX_SERVERS];
};

/* One of the oldest sessions of a worker, for /status. */
struct stats_session {
    double started_ms; /* util_now_ms() clock */
    char phase[24];
    char peer[56];
    uint64_t bytes_in, bytes_out;
};

/* What one worker writes. */
struct stats_slot {
    int in_use;
    int index;       /* worker slot in the master */
    int generation;  /* conf generation it runs */
    pid_t pid;
    double started_ms;
    /* Set by the worker as it starts draining: on a signal sent to it
     * alone, the master replaces it at once (master.c). */
    int draining;
    uint64_t counter[STATS_N_COUNTERS];
    int64_t gauge[STATS_N_GAUGES];
    /* The admin stores a new number in gauges_asked; the worker refreshes
     * the gauges and oldest[], then stores that number in gauges_answered. */
    unsigned gauges_asked, gauges_answered;
    int n_pools;
    struct stats_pool pools[STATS_MAX_POOLS];
    int n_oldest;
    struct stats_session oldest[STATS_OLDEST];
};

/* The whole shared region. */
struct stats_shm {
    pid_t master_pid;
    double started_ms;
    int generation;   /* bumped by each successful reload */
    int draining;     /* SIGTERM/SIGQUIT: /healthz answers 503 */
    uint64_t reloads, reload_failures;
    /* Odd while the master folds an exited worker into retired: a reader
     * that saw it change reads again (else it would count that worker
     * twice, or not at all, and a counter would go backwards). */
    unsigned fold_seq;
    unsigned gauges_ask; /* the last number stats_ask_gauges stored */
    struct stats_slot retired; /* counters of workers that have exited */
    int n_slots;
    struct stats_slot slots[];
};

/* Map a region with n slots (shared across fork); NULL on failure. */
struct stats_shm *stats_map(int n_slots);
void stats_unmap(struct stats_shm *shm);

/* A free slot, marked in use for pid; NULL when every slot is taken. */
struct stats_slot *stats_claim(struct stats_shm *shm, pid_t pid, int index,
                               int generation);

/* The slot in use for pid; NULL if none. */
struct stats_slot *stats_slot_of(struct stats_shm *shm, pid_t pid);

/* A worker is gone: fold its slot into retired and free it. */
void stats_release(struct stats_shm *shm, pid_t pid);

/*
 * Add src into dst: counters and histograms always, gauges only when
 * with_gauges; pools are matched by name and servers by address, and added
 * to dst when new unless known_only (then what dst lacks is dropped).
 */
void stats_fold(struct stats_slot *dst, const struct stats_slot *src,
                int with_gauges, int known_only);

/* Ask every worker for fresh gauges; the number to wait for. */
unsigned stats_ask_gauges(struct stats_shm *shm);

/* Whether every worker asked for ask has answered (a worker that exited or
 * replaced since is not waited for). */
int stats_gauges_answered(const struct stats_shm *shm, unsigned ask);

/* Count one observation of ms into h. */
void stats_observe(struct stats_histogram *h, double ms);

/* The q-quantile (0..1) of h in ms, interpolated in its bucket; -1 if empty. */
double stats_quantile(const struct stats_histogram *h, double q);

#endif
