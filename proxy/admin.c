/*
 * admin: /metrics, /status, /healthz and the dashboard, served by libevhtp
 * (DESIGN.md: a convenience server is fine off the client path) from the
 * stats region the workers write. It must never hold more than a head per
 * connection: heads that announce a body or break a limit are refused at
 * once (see "refusing a head"), every head has a deadline, and accept
 * pauses when descriptors run out.
 */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <evhtp/evhtp.h>

#include "http1.h"
#include "linger.h"
#include "log.h"
#include "util.h"

#include "dashboard.h"

/* One reading of every slot and of retired (see fold_seq). */
static void snapshot_once(const struct stats_shm *shm, struct stats_slot *out)
{
    memset(out, 0, sizeof(*out));
    /* Newest generation first: when the running conf and one still
     * draining name more pools or servers together than a snapshot holds,
     * those left out are the draining conf's (the running one's new pools
     * were hidden until the old workers were gone). */
    int last = INT_MAX;
    for (;;) {
        int gen = INT_MIN;
        for (int i = 0; i < shm->n_slots; i++) {
            int g = shm->slots[i].generation;
            if (shm->slots[i].in_use && g < last && g > gen) {
                gen = g;
            }
        }
        if (gen == INT_MIN) {
            break;
        }
        for (int i = 0; i < shm->n_slots; i++) {
            if (shm->slots[i].in_use && shm->slots[i].generation == gen) {
                stats_fold(out, &shm->slots[i], 1, 0);
            }
        }
        last = gen;
    }
    /* Workers that exited still count, but pools and servers no live
     * worker has (a reload removed them) are not shown. */
    stats_fold(out, &shm->retired, 0, 1);
    for (int p = 0; p < out->n_pools; p++) {
        struct stats_pool *sp = &out->pools[p];
        sp->servers_up = 0;
        for (int k = 0; k < sp->n_servers; k++) {
            if (sp->servers[k].up < 0) {
                sp->servers[k].up = 0;
            }
            sp->servers_up += sp->servers[k].up;
        }
    }
}

void admin_snapshot(const struct stats_shm *shm, struct stats_slot *out)
{
    for (int tries = 0; tries < 100; tries++) {
        unsigned before = __atomic_load_n(&shm->fold_seq, __ATOMIC_SEQ_CST);
        if (before & 1) {
            usleep(100); /* a fold is under way: microseconds */
            continue;
        }
        snapshot_once(shm, out);
        if (__atomic_load_n(&shm->fold_seq, __ATOMIC_SEQ_CST) == before) {
            return;
        }
    }
    snapshot_once(shm, out); /* never seen: the master stuck mid-fold */
}

/* ---- /metrics ---------------------------------------------------------- */

#define COUNTER_ROW(id, nm, lb, hp) {nm, lb, hp},
#define GAUGE_ROW(id, nm, hp) {nm, "", hp},
#define HIST_ROW(id, nm, hp) {nm, "", hp},
static const struct metric_row {
    const char *name, *labels, *help;
} counter_rows[] = {STATS_COUNTERS(COUNTER_ROW)},
  gauge_rows[] = {STATS_GAUGES(GAUGE_ROW)},
  hist_rows[] = {STATS_HISTOGRAMS(HIST_ROW)};

/* Pool and server figures: the rest of the one list /metrics shows. */
enum row_kind { POOL_REQUESTS, POOL_IDLE, POOL_UP, SRV_UP, SRV_ACTIVE,
                SRV_REQUESTS, SRV_FAILURES };
static const struct {
    enum row_kind kind;
    const char *name, *type, *help;
} pool_rows[] = {
    {POOL_REQUESTS, "switchboard_pool_requests_total", "counter",
     "Exchanges started with the pool's servers (a connect that failed "
     "counts, and each attempt of a retried request)"},
    {POOL_IDLE, "switchboard_pool_idle_connections", "gauge",
     "Keep-alive connections idle in the pool"},
    {POOL_UP, "switchboard_pool_servers_up", "gauge",
     "Servers of the pool in service"},
    {SRV_UP, "switchboard_server_up", "gauge",
     "1 when the server is in service in every worker"},
    {SRV_ACTIVE, "switchboard_server_active", "gauge",
     "Exchanges in progress with the server"},
    {SRV_REQUESTS, "switchboard_server_requests_total", "counter",
     "Exchanges started with the server (a connect that failed counts)"},
    {SRV_FAILURES, "switchboard_server_failures_total", "counter",
     "Failed exchanges with the server (they count toward max_fails)"},
};

static void help_type(struct evbuffer *out, const char *name, const char *help,
                      const char *type)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                        type);
}

void admin_render_metrics(const struct stats_shm *shm, struct evbuffer *out)
{
    struct stats_slot *t = malloc(sizeof(*t));
    if (t == NULL) {
        return;
    }
    admin_snapshot(shm, t);
    for (int c = 0; c < STATS_N_COUNTERS; c++) {
        const struct metric_row *r = &counter_rows[c];
        if (c == 0 || strcmp(r->name, counter_rows[c - 1].name) != 0) {
            help_type(out, r->name, r->help, "counter");
        }
        evbuffer_add_printf(out, "%s%s%s%s %llu\n", r->name,
                            r->labels[0] ? "{" : "", r->labels,
                            r->labels[0] ? "}" : "",
                            (unsigned long long)t->counter[c]);
    }
    for (int g = 0; g < STATS_N_GAUGES; g++) {
        help_type(out, gauge_rows[g].name, gauge_rows[g].help, "gauge");
        evbuffer_add_printf(out, "%s %lld\n", gauge_rows[g].name,
                            (long long)t->gauge[g]);
    }
    help_type(out, "switchboard_reloads_total",
              "Configuration reloads (SIGHUP), by result", "counter");
    evbuffer_add_printf(out,
                        "switchboard_reloads_total{result=\"ok\"} %llu\n"
                        "switchboard_reloads_total{result=\"failed\"} %llu\n",
                        (unsigned long long)shm->reloads,
                        (unsigned long long)shm->reload_failures);
    for (size_t k = 0; k < sizeof(pool_rows) / sizeof(pool_rows[0]); k++) {
        help_type(out, pool_rows[k].name, pool_rows[k].help, pool_rows[k].type);
        for (int p = 0; p < t->n_pools; p++) {
            const struct stats_pool *sp = &t->pools[p];
            switch (pool_rows[k].kind) {
            case POOL_REQUESTS:
            case POOL_IDLE:
            case POOL_UP:
                evbuffer_add_printf(
                    out, "%s{pool=\"%s\"} %llu\n", pool_rows[k].name, sp->name,
                    (unsigned long long)(pool_rows[k].kind == POOL_REQUESTS
                                             ? sp->requests
                                         : pool_rows[k].kind == POOL_IDLE
                                             ? (uint64_t)sp->idle
                                             : (uint64_t)sp->servers_up));
                break;
            default:
                for (int i = 0; i < sp->n_servers; i++) {
                    const struct stats_server *ss = &sp->servers[i];
                    uint64_t v =
                        pool_rows[k].kind == SRV_UP       ? (uint64_t)ss->up
                        : pool_rows[k].kind == SRV_ACTIVE ? (uint64_t)ss->active
                        : pool_rows[k].kind == SRV_REQUESTS ? ss->requests
                                                            : ss->failures;
                    evbuffer_add_printf(out, "%s{pool=\"%s\",server=\"%s\"} "
                                             "%llu\n",
                                        pool_rows[k].name, sp->name,
                                        ss->address, (unsigned long long)v);
                }
                break;
            }
        }
    }
    for (int h = 0; h < STATS_N_HISTOGRAMS; h++) {
        help_type(out, hist_rows[h].name, hist_rows[h].help, "histogram");
        for (int p = 0; p < t->n_pools; p++) {
            const struct stats_histogram *hg = &t->pools[p].hist[h];
            const char *pool = t->pools[p].name;
            uint64_t cum = 0;
            for (int b = 0; b < STATS_BUCKETS; b++) {
                cum += hg->bucket[b];
                if (b < STATS_BUCKETS - 1) {
                    evbuffer_add_printf(out,
                                        "%s_bucket{pool=\"%s\",le=\"%g\"} "
                                        "%llu\n",
                                        hist_rows[h].name, pool,
                                        stats_bucket_ms[b] / 1000.0,
                                        (unsigned long long)cum);
                } else {
                    evbuffer_add_printf(out,
                                        "%s_bucket{pool=\"%s\",le=\"+Inf\"} "
                                        "%llu\n",
                                        hist_rows[h].name, pool,
                                        (unsigned long long)cum);
                }
            }
            evbuffer_add_printf(out, "%s_sum{pool=\"%s\"} %.6f\n",
                                hist_rows[h].name, pool,
                                (double)hg->sum_us / 1e6);
            evbuffer_add_printf(out, "%s_count{pool=\"%s\"} %llu\n",
                                hist_rows[h].name, pool,
                                (unsigned long long)hg->count);
        }
    }
    free(t);
}

/* ---- /status ----------------------------------------------------------- */

/* A JSON string; the values here are addresses and names, but escape. */
static void json_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            evbuffer_add_printf(out, "\\%c", c);
        } else if (c < 0x20 || c >= 0x7f) {
            evbuffer_add_printf(out, "\\u%04x", c);
        } else {
            evbuffer_add(out, s, 1);
        }
    }
    evbuffer_add(out, "\"", 1);
}

static void json_ms(struct evbuffer *out, double ms)
{
    if (ms < 0) {
        evbuffer_add_printf(out, "null");
    } else {
        evbuffer_add_printf(out, "%.2f", ms);
    }
}

/*
 * The counters of the list that share one metric name, as a JSON object
 * keyed by their label's value: {"2xx": 10, ...} for class="2xx".
 */
static void json_labelled(struct evbuffer *out, const struct stats_slot *t,
                          const char *name)
{
    int first = 1;
    evbuffer_add(out, "{", 1);
    for (int c = 0; c < STATS_N_COUNTERS; c++) {
        const char *label = counter_rows[c].labels;
        const char *q = strchr(label, '"');
        if (strcmp(counter_rows[c].name, name) != 0 || q == NULL) {
            continue;
        }
        int len = (int)strcspn(q + 1, "\"");
        evbuffer_add_printf(out, "%s\"%.*s\":%llu", first ? "" : ",", len,
                            q + 1, (unsigned long long)t->counter[c]);
        first = 0;
    }
    evbuffer_add(out, "}", 1);
}

static int by_age(const void *a, const void *b)
{
    const struct stats_session *x = a, *y = b;
    return x->started_ms < y->started_ms ? -1 : x->started_ms > y->started_ms;
}

void admin_render_status(const struct stats_shm *shm, struct evbuffer *out)
{
    struct stats_slot *t = malloc(sizeof(*t));
    if (t == NULL) {
        return;
    }
    admin_snapshot(shm, t);
    double now = util_now_ms();
    evbuffer_add_printf(
        out,
        "{\"version\":\"%s\",\"pid\":%d,\"uptime_s\":%.0f,\"draining\":%s,"
        "\"generation\":%d,\"reloads\":%llu,\"reload_failures\":%llu,",
        PACKAGE_VERSION, (int)shm->master_pid,
        (now - shm->started_ms) / 1000.0, shm->draining ? "true" : "false",
        shm->generation, (unsigned long long)shm->reloads,
        (unsigned long long)shm->reload_failures);
    const uint64_t *c = t->counter;
    evbuffer_add_printf(
        out,
        "\"totals\":{\"accepted\":%llu,\"rejected\":%llu,"
        "\"open_sessions\":%lld,\"paused_sessions\":%lld,"
        "\"buffered_bytes\":%lld,\"requests\":%llu,\"responses\":",
        (unsigned long long)c[STAT_ACCEPTED],
        (unsigned long long)c[STAT_REJECTED],
        (long long)t->gauge[STAT_OPEN_SESSIONS],
        (long long)t->gauge[STAT_PAUSED_SESSIONS],
        (long long)t->gauge[STAT_BUFFERED_BYTES],
        (unsigned long long)c[STAT_REQUESTS]);
    json_labelled(out, t, "switchboard_responses_total");
    evbuffer_add_printf(
        out,
        ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"upstream_waiting\":%lld,"
        "\"retries\":%llu,\"no_server\":%llu,\"timeouts\":",
        (unsigned long long)c[STAT_BYTES_IN],
        (unsigned long long)c[STAT_BYTES_OUT],
        (long long)t->gauge[STAT_UPSTREAM_WAITING],
        (unsigned long long)c[STAT_RETRIES],
        (unsigned long long)c[STAT_NO_SERVER]);
    json_labelled(out, t, "switchboard_timeouts_total");
    evbuffer_add_printf(out, "},");

    evbuffer_add_printf(out, "\"workers\":[");
    int first = 1;
    struct stats_session all[STATS_OLDEST * 64];
    pid_t owner[STATS_OLDEST * 64];
    int n_all = 0;
    for (int i = 0; i < shm->n_slots; i++) {
        const struct stats_slot *w = &shm->slots[i];
        if (!w->in_use) {
            continue;
        }
        evbuffer_add_printf(
            out,
            "%s{\"slot\":%d,\"pid\":%d,\"generation\":%d,"
            "\"uptime_s\":%.0f,\"open_sessions\":%lld,"
            "\"paused_sessions\":%lld,\"buffered_bytes\":%lld,"
            "\"upstream_waiting\":%lld,\"accepted\":%llu,"
            "\"rejected\":%llu,\"requests\":%llu,\"retries\":%llu,"
            "\"responses\":",
            first ? "" : ",", w->index, (int)w->pid, w->generation,
            (now - w->started_ms) / 1000.0,
            (long long)w->gauge[STAT_OPEN_SESSIONS],
            (long long)w->gauge[STAT_PAUSED_SESSIONS],
            (long long)w->gauge[STAT_BUFFERED_BYTES],
            (long long)w->gauge[STAT_UPSTREAM_WAITING],
            (unsigned long long)w->counter[STAT_ACCEPTED],
            (unsigned long long)w->counter[STAT_REJECTED],
            (unsigned long long)w->counter[STAT_REQUESTS],
            (unsigned long long)w->counter[STAT_RETRIES]);
        json_labelled(out, w, "switchboard_responses_total");
        evbuffer_add_printf(out, ",\"timeouts\":");
        json_labelled(out, w, "switchboard_timeouts_total");
        evbuffer_add_printf(out, "}");
        first = 0;
        for (int k = 0; k < w->n_oldest && k < STATS_OLDEST &&
                        n_all < STATS_OLDEST * 64;
             k++) {
            owner[n_all] = w->pid;
            all[n_all] = w->oldest[k];
            n_all++;
        }
    }
    evbuffer_add_printf(out, "],\"pools\":[");
    for (int p = 0; p < t->n_pools; p++) {
        const struct stats_pool *sp = &t->pools[p];
        evbuffer_add_printf(out, "%s{\"name\":", p ? "," : "");
        json_str(out, sp->name);
        evbuffer_add_printf(out,
                            ",\"balance\":\"%s\",\"servers_up\":%d,"
                            "\"idle\":%d,\"requests\":%llu,\"servers\":[",
                            config_balance_names[sp->balance], sp->servers_up,
                            sp->idle, (unsigned long long)sp->requests);
        for (int k = 0; k < sp->n_servers; k++) {
            const struct stats_server *ss = &sp->servers[k];
            evbuffer_add_printf(out, "%s{\"address\":", k ? "," : "");
            json_str(out, ss->address);
            evbuffer_add_printf(out,
                                ",\"weight\":%d,\"up\":%s,\"active\":%d,"
                                "\"requests\":%llu,\"failures\":%llu}",
                                ss->weight, ss->up > 0 ? "true" : "false",
                                ss->active, (unsigned long long)ss->requests,
                                (unsigned long long)ss->failures);
        }
        const struct stats_histogram *d = &sp->hist[STAT_H_DURATION];
        evbuffer_add_printf(out, "],\"latency_ms\":{\"p50\":");
        json_ms(out, stats_quantile(d, 0.5));
        evbuffer_add_printf(out, ",\"p90\":");
        json_ms(out, stats_quantile(d, 0.9));
        evbuffer_add_printf(out, ",\"p99\":");
        json_ms(out, stats_quantile(d, 0.99));
        const struct stats_histogram *inj = &sp->hist[STAT_H_INJECTED];
        evbuffer_add_printf(out, "},\"injected_latency_ms\":{\"count\":%llu,"
                                 "\"mean\":",
                            (unsigned long long)inj->count);
        json_ms(out, inj->count ? (double)inj->sum_us / 1000.0 /
                                      (double)inj->count
                                : -1);
        evbuffer_add_printf(out, "}}");
    }
    /* The oldest sessions of all workers, oldest first (sorted by index,
     * so each keeps its owner). */
    int idx[STATS_OLDEST * 64];
    for (int i = 0; i < n_all; i++) {
        idx[i] = i;
    }
    /* insertion sort by age: at most a few hundred entries */
    for (int i = 1; i < n_all; i++) {
        int v = idx[i], j = i;
        while (j > 0 && by_age(&all[idx[j - 1]], &all[v]) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
    evbuffer_add_printf(out, "],\"oldest_sessions\":[");
    for (int i = 0; i < n_all && i < 10; i++) {
        const struct stats_session *o = &all[idx[i]];
        evbuffer_add_printf(out, "%s{\"worker\":%d,\"age_ms\":%.0f,\"phase\":",
                            i ? "," : "", (int)owner[idx[i]],
                            now - o->started_ms);
        json_str(out, o->phase);
        evbuffer_add_printf(out, ",\"peer\":");
        json_str(out, o->peer);
        evbuffer_add_printf(out, ",\"bytes_in\":%llu,\"bytes_out\":%llu}",
                            (unsigned long long)o->bytes_in,
                            (unsigned long long)o->bytes_out);
    }
    evbuffer_add_printf(out, "]}\n");
    free(t);
}

/* ---- the server -------------------------------------------------------- */

static struct stats_shm *admin_shm;

/* How long /metrics and /status wait for the workers' fresh gauges before
 * they show the last ones (a worker answers within its tick, 50 ms). */
#define GAUGES_WAIT_MS 500

/* The most header fields one head may have (as on the proxy's port). */
#define MAX_HEAD_FIELDS HTTP1_MAX_FIELDS

/*
 * The admin process's server: its loop, its libevhtp instance (whose
 * evconnlistener is htp->server), what it does when accept fails for lack
 * of descriptors, and the limits every connection gets. One per process.
 */
struct admin_server {
    struct event_base *base;
    evhtp_t *htp;
    struct timeval head_tv; /* client_header_timeout: deadline for a head */
    size_t max_head;        /* max_header_size: the fields of one head */
    int reserve_fd;         /* given up to shed a client when out of fds */
    struct event *accept_retry;
    unsigned long long n_shed;
    struct linger_set lingers; /* refused connections closing (linger.h) */
};

static struct admin_server admin = {.reserve_fd = -1};

typedef void (*render_fn)(const struct stats_shm *shm, struct evbuffer *out);

/*
 * A reply under way. libevhtp stalls a pipelined request behind a reply
 * sent from its own callback (DESIGN.md, libevhtp rules), so the callback
 * builds the reply, pauses the request, and a zero timer sends it and
 * resumes. /metrics and /status are built by that timer instead, once the
 * workers have answered for their gauges (stats.h); until then it looks
 * again every 5 ms. Freed with the request (on_reply_fini).
 */
struct admin_reply {
    evhtp_request_t *req;
    struct event *timer;
    int status;
    int paused; /* we paused the request and owe it a resume */
    render_fn render; /* NULL: the body is built already */
    unsigned ask;
    double give_up_ms;
};

/*
 * One admin connection: the deadline for the head it is sending, what the
 * fields of that head have cost so far, and whether we have refused it.
 * Created when evhtp has accepted the connection (on_conn_accepted), freed
 * with it (on_conn_fini).
 */
struct admin_conn {
    evhtp_connection_t *conn;
    struct event *deadline; /* client_header_timeout, while a head is due */
    size_t head_bytes;
    int head_fields;
    int refused; /* answered with Connection: close; nothing more to say */
    int too_slow; /* answered 408: not waited for (no lingering close) */
    struct evbuffer_cb_entry *input_cb; /* on_conn_input */
    struct event *closer; /* closes it after on_conn_input answered */
};

#define HOOK(f) ((evhtp_hook)(void (*)(void))(f))

static void add_header(evhtp_request_t *req, const char *key, const char *val)
{
    evhtp_headers_add_header(req->headers_out,
                             evhtp_header_new(key, val, 0, 1));
}

static void on_reply_timer(evutil_socket_t fd, short what, void *arg)
{
    struct admin_reply *r = arg;
    evhtp_request_t *req = r->req;
    if (r->render != NULL) {
        if (!stats_gauges_answered(admin_shm, r->ask) &&
            util_now_ms() < r->give_up_ms) {
            struct timeval again = {0, 5 * 1000};
            evtimer_add(r->timer, &again);
            return;
        }
        r->render(admin_shm, req->buffer_out);
    }
    char len[32];
    snprintf(len, sizeof(len), "%zu", evbuffer_get_length(req->buffer_out));
    add_header(req, "Content-Length", len);
    if (evhtp_request_get_method(req) == htp_method_HEAD) {
        /* The length of what GET would send, and no body. */
        evbuffer_drain(req->buffer_out, evbuffer_get_length(req->buffer_out));
    }
    evhtp_send_reply(req, r->status);
    r->paused = 0;
    evhtp_request_resume(req);
}

/*
 * The connection failed. If the reply still waits, let evhtp free the
 * connection now (a resume); once it is sent the request is no longer
 * paused, and resuming it again would only make evhtp log an "ODDITY".
 */
static void on_reply_error(evhtp_request_t *req, evhtp_error_flags flags,
                           void *arg)
{
    struct admin_reply *r = arg;
    event_del(r->timer);
    if (r->paused) {
        r->paused = 0;
        evhtp_request_resume(req);
    }
}

static evhtp_res on_reply_fini(evhtp_request_t *req, void *arg)
{
    struct admin_reply *r = arg;
    event_free(r->timer);
    free(r);
    return EVHTP_RES_OK;
}

/* Queue the reply built in req->buffer_out, or to be built by render;
 * pausing is the last call. */
static void reply(evhtp_request_t *req, int status, const char *type,
                 render_fn render)
{
    add_header(req, "Content-Type", type);
    add_header(req, "Cache-Control", "no-store");
    struct admin_reply *r = calloc(1, sizeof(*r));
    struct event_base *base = evhtp_request_get_connection(req)->evbase;
    if (r == NULL || (r->timer = evtimer_new(base, on_reply_timer, r)) == NULL) {
        free(r);
        evhtp_send_reply(req, 500); /* out of memory: at least answer */
        return;
    }
    r->req = req;
    r->status = status;
    r->render = render;
    if (render != NULL) {
        r->ask = stats_ask_gauges(admin_shm);
        r->give_up_ms = util_now_ms() + GAUGES_WAIT_MS;
    }
    evhtp_request_set_hook(req, evhtp_hook_on_error, HOOK(on_reply_error), r);
    evhtp_request_set_hook(req, evhtp_hook_on_request_fini, HOOK(on_reply_fini),
                           r);
    struct timeval now = {0, 0};
    evtimer_add(r->timer, &now);
    r->paused = 1;
    evhtp_request_pause(req);
}

static void on_admin_request(evhtp_request_t *req, void *arg)
{
    const char *path = req->uri != NULL && req->uri->path != NULL &&
                               req->uri->path->full != NULL
                           ? req->uri->path->full
                           : "/";
    if (strcmp(path, "/metrics") == 0) {
        reply(req, 200, "text/plain; version=0.0.4; charset=utf-8",
              admin_render_metrics);
    } else if (strcmp(path, "/status") == 0) {
        reply(req, 200, "application/json", admin_render_status);
    } else if (strcmp(path, "/healthz") == 0) {
        int draining = admin_shm->draining;
        evbuffer_add_printf(req->buffer_out, draining ? "draining\n" : "ok\n");
        reply(req, draining ? 503 : 200, "text/plain", NULL);
    } else if (strcmp(path, "/") == 0) {
        evbuffer_add(req->buffer_out, dashboard_html, dashboard_html_len);
        reply(req, 200, "text/html; charset=utf-8", NULL);
    } else {
        evbuffer_add_printf(req->buffer_out,
                            "not found: try /, /metrics, /status, /healthz\n");
        reply(req, 404, "text/plain", NULL);
    }
}

/* ---- refusing a head ---------------------------------------------------- */

/*
 * The admin serves GET and HEAD and needs no request body, so it answers a
 * head that is not for it as soon as it can tell and reads no further:
 * evhtp itself would buffer a whole body of any size before the callback
 * ran, and answers nothing to what its parser rejects (it just closes).
 * These answers are written straight to the socket and the connection is
 * closed at once, for three reasons: where evhtp rejects a head it frees
 * the connection without a request to answer on (a reply queued in its
 * bufferevent would be dropped); its reply would carry the request's
 * version ("HTTP/2.0 505") and its own reason phrases ("431 UNKNOWN"); and
 * a refused connection is closed anyway. Our output buffer is empty
 * whenever a head is being read (evhtp reads the next head only once the
 * last reply is flushed), so the few bytes go out whole unless the client
 * has not read its earlier answers.
 */

/* Write a closing answer, once, if nothing of ours is queued; with no
 * body if head_only (the answer to a HEAD). */
static void send_canned(struct admin_conn *ac, int status, const char *why,
                        int head_only)
{
    struct bufferevent *bev = evhtp_connection_get_bev(ac->conn);
    if (ac->refused || bev == NULL ||
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        return;
    }
    ac->refused = 1;
    char msg[512];
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n"
                     "Cache-Control: no-store\r\n\r\n%s\n",
                     status, http1_status_text(status),
                     status == 405 ? "Allow: GET, HEAD\r\n" : "",
                     strlen(why) + 1, head_only ? "" : why);
    if (n > 0 && (size_t)n < sizeof(msg)) {
        if (head_only) {
            n -= 1; /* the newline after the empty body */
        }
        (void)send(bufferevent_getfd(bev), msg, (size_t)n,
                   MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

/* Answer req and close: from a head hook, which returns this. evhtp then
 * stops its parser and frees the connection. */
static evhtp_res refuse(struct admin_conn *ac, evhtp_request_t *req,
                        int status, const char *why)
{
    send_canned(ac, status, why,
                evhtp_request_get_method(req) == htp_method_HEAD);
    return EVHTP_RES_ERROR;
}

/* Does a Content-Length value say zero ("0", "00": digits, all zeros)? */
static int zero_length(const char *v)
{
    if (*v == '\0') {
        return 0;
    }
    for (; *v != '\0'; v++) {
        if (*v != '0') {
            return 0;
        }
    }
    return 1;
}

/* Any Transfer-Encoding, or a Content-Length other than zero (evhtp's
 * parser keeps the last of several, so look at each). */
static int announces_body(evhtp_request_t *req)
{
    evhtp_header_t *h;
    TAILQ_FOREACH(h, req->headers_in, next) {
        if (strcasecmp(h->key, "Transfer-Encoding") == 0 ||
            (strcasecmp(h->key, "Content-Length") == 0 &&
             !zero_length(h->val))) {
            return 1;
        }
    }
    return 0;
}

/* Is a request under way on conn (its head begun, its reply not yet
 * written), rather than the connection between requests? */
static int in_request(const evhtp_connection_t *conn)
{
    return conn->request != NULL &&
           !(conn->request->flags & EVHTP_REQ_FLAG_FINISHED);
}

/* evhtp's parser says "too big" of a Content-Length it cannot read as a
 * number ("-1", "1x", or past 2^64), with the field's name already added
 * to the head and its value not yet. */
static int content_length_failed(evhtp_request_t *req)
{
    evhtp_header_t *last = TAILQ_LAST(req->headers_in, evhtp_kvs);
    return last != NULL && last->val == NULL && last->key != NULL &&
           strcasecmp(last->key, "Content-Length") == 0;
}

/* The answer to a head evhtp's parser rejected, its reason in *why; 0 if
 * the connection ends for another reason. */
static int parse_failure(evhtp_connection_t *conn, const char **why)
{
    evhtp_request_t *req = conn->request;
    int started = in_request(conn);
    /* Still in the request line until its version is read (a path alone is
     * not enough: the query may be what is too long). */
    int in_line = !started || htparser_get_major(conn->parser) == 0;
    htp_method m = htparser_get_method(conn->parser);
    switch (htparser_get_error(conn->parser)) {
    case htparse_error_none:
        return 0;
    case htparse_error_user:
        /* A hook said stop: ours (they answer for themselves), or evhtp's
         * own handling of the head, which marks the request so. */
        if (!started || (req->status != EVHTP_RES_ERROR &&
                         req->status != EVHTP_RES_FATAL)) {
            return 0;
        }
        break;
    case htparse_error_too_big:
        if (!in_line && content_length_failed(req)) {
            *why = "invalid Content-Length";
            return 400;
        }
        /* A token (method, target, field name or value) past evhtp's
         * 8 KiB: the request line's if its version has not come yet. */
        *why = in_line ? "request line too long"
                       : "request header field too large";
        return in_line ? 414 : 431;
    default:
        break;
    }
    if (in_line && started && m != htp_method_UNKNOWN &&
        m != htp_method_GET && m != htp_method_HEAD) {
        /* A method we know but do not serve, with a target evhtp cannot
         * take ("OPTIONS *"): what matters is the method. */
        *why = "only GET and HEAD";
        return 405;
    }
    *why = "malformed request head";
    return 400;
}

/* ---- connections -------------------------------------------------------- */

/*
 * client_header_timeout passed and no head is complete. The connection is
 * between requests or inside a head, never paused (the deadline stops when
 * a head is complete): a 408 if a head had begun, then close.
 */
static void on_head_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct admin_conn *ac = arg;
    if (in_request(ac->conn)) {
        send_canned(ac, 408, "request head not received in time", 0);
    }
    ac->too_slow = 1;
    evhtp_connection_free(ac->conn); /* frees ac (on_conn_fini) */
}

/* One header field parsed: count it against the head's limits. */
static evhtp_res on_head_field(evhtp_request_t *req, evhtp_header_t *hdr,
                               void *arg)
{
    struct admin_conn *ac = arg;
    ac->head_fields++;
    ac->head_bytes += hdr->klen + hdr->vlen + 4; /* ": " and CRLF */
    if (ac->head_bytes > admin.max_head || ac->head_fields > MAX_HEAD_FIELDS) {
        return refuse(ac, req, 431, "request header fields too large");
    }
    return EVHTP_RES_OK;
}

/* A head is complete: stop its deadline, and refuse what is not for us. */
static evhtp_res on_head_done(evhtp_request_t *req, evhtp_headers_t *hdrs,
                              void *arg)
{
    struct admin_conn *ac = arg;
    evtimer_del(ac->deadline);
    ac->head_bytes = 0;
    ac->head_fields = 0;
    unsigned major = htparser_get_major(ac->conn->parser);
    unsigned minor = htparser_get_minor(ac->conn->parser);
    if (major != 1) {
        char why[64];
        snprintf(why, sizeof(why), "HTTP/%u.%u is not supported: use HTTP/1.1",
                 major, minor);
        return refuse(ac, req, 505, why);
    }
    if (minor > 1) {
        /* Read as HTTP/1.1 (RFC 9110 2.5), as the proxy reads it; evhtp
         * would write "HTTP/1.2" in the reply's status line. */
        htparser_set_minor(ac->conn->parser, 1);
        req->proto = EVHTP_PROTO_11;
    }
    htp_method m = evhtp_request_get_method(req);
    if (m != htp_method_GET && m != htp_method_HEAD) {
        /* Here rather than from the handler: evhtp's reason phrase for
         * 405 is "Not Allowed". */
        return refuse(ac, req, 405, "only GET and HEAD");
    }
    if (announces_body(req)) {
        return refuse(ac, req, 413, "no request body is accepted here");
    }
    return EVHTP_RES_OK;
}

/*
 * Empty lines before a request line are to be ignored (RFC 9112 2.2).
 * evhtp's parser takes them one byte per run, and evhtp then waits for
 * more input before it reads on (logging "ODDITY"), so a request after
 * them went unanswered. Between requests, they are dropped here before
 * evhtp reads: from each read (on_conn_read) and from what a pipelining
 * client sent behind its last request (on_conn_flushed).
 */
static void drop_empty_lines(evhtp_connection_t *conn)
{
    if (in_request(conn)) {
        return; /* inside a head: an empty line ends it */
    }
    struct evbuffer *in = bufferevent_get_input(conn->bev);
    struct evbuffer_iovec v;
    while (evbuffer_get_length(in) > 0 &&
           evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
        const char *b = v.iov_base;
        size_t n = 0;
        while (n < v.iov_len && (b[n] == '\r' || b[n] == '\n')) {
            n++;
        }
        evbuffer_drain(in, n);
        if (n == 0 || n < v.iov_len) {
            break; /* a request line starts, or an empty chain */
        }
    }
}

/* evhtp's own read callback, which on_conn_read runs after its part. */
static bufferevent_data_cb evhtp_readcb;

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    drop_empty_lines(arg);
    evhtp_readcb(bev, arg);
}

/* A reply is all written: the next head is due within
 * client_header_timeout from now. evhtp reads what is already in next,
 * even after a reply that said Connection: close: such requests are
 * dropped here, and evhtp then closes. */
static evhtp_res on_conn_flushed(evhtp_connection_t *conn, void *arg)
{
    struct admin_conn *ac = arg;
    if (in_request(conn)) {
        return EVHTP_RES_OK;
    }
    if (conn->request != NULL &&
        !(conn->request->flags & EVHTP_REQ_FLAG_KEEPALIVE)) {
        struct evbuffer *in = bufferevent_get_input(conn->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return EVHTP_RES_OK;
    }
    evtimer_add(ac->deadline, &admin.head_tv);
    drop_empty_lines(conn);
    return EVHTP_RES_OK;
}

static void on_conn_close(evutil_socket_t fd, short what, void *arg)
{
    struct admin_conn *ac = arg;
    evhtp_connection_free(ac->conn); /* frees ac (on_conn_fini) */
}

/*
 * The connection's input changed. Bytes drained inside a request are what
 * evhtp's parser consumed. A request line without a version leaves the
 * major version 0 and the minor 9 (HTTP/0.9's form): ended by CRLF,
 * on_head_done answers 505, but ended by a bare LF ("GET /\n\n") no hook
 * runs and the parser waits for a byte more, so the client waited for
 * client_header_timeout and got a 408. Answer it here, and close from the
 * loop once evhtp's callback, which still uses the connection, returns.
 */
static void on_conn_input(struct evbuffer *in,
                          const struct evbuffer_cb_info *info, void *arg)
{
    struct admin_conn *ac = arg;
    if (info->n_deleted == 0 || ac->refused || !in_request(ac->conn) ||
        htparser_get_major(ac->conn->parser) != 0 ||
        htparser_get_minor(ac->conn->parser) != 9) {
        return;
    }
    send_canned(ac, 505, "HTTP/0.9 is not supported: use HTTP/1.1", 0);
    event_active(ac->closer, EV_TIMEOUT, 1);
}

/* evhtp is freeing the connection: answer a head its parser rejected,
 * then forget the connection. */
static evhtp_res on_conn_fini(evhtp_connection_t *conn, void *arg)
{
    struct admin_conn *ac = arg;
    const char *why = NULL;
    int status = parse_failure(conn, &why);
    if (status != 0) {
        send_canned(ac, status, why,
                    conn->request != NULL &&
                        htparser_get_method(conn->parser) == htp_method_HEAD);
    }
    if (ac->input_cb != NULL && conn->bev != NULL) {
        evbuffer_remove_cb_entry(bufferevent_get_input(conn->bev),
                                 ac->input_cb);
    }
    if (ac->refused && !ac->too_slow && conn->bev != NULL &&
        bufferevent_getfd(conn->bev) >= 0) {
        /* Refused connections close lingering, as the proxy's port's
         * do (by lingering_timeout and lingering_time). */
        linger_start(&admin.lingers, bufferevent_getfd(conn->bev));
    }
    event_free(ac->closer);
    event_free(ac->deadline);
    free(ac);
    return EVHTP_RES_OK;
}

/* evhtp accepted a connection: its hooks, and the deadline for its first
 * head. Anything but EVHTP_RES_OK makes evhtp close it. */
static evhtp_res on_conn_accepted(evhtp_connection_t *conn, void *arg)
{
    struct admin_conn *ac = calloc(1, sizeof(*ac));
    if (ac == NULL) {
        return EVHTP_RES_FATAL;
    }
    ac->conn = conn;
    ac->deadline = evtimer_new(conn->evbase, on_head_deadline, ac);
    ac->closer = event_new(conn->evbase, -1, 0, on_conn_close, ac);
    if (ac->deadline == NULL || ac->closer == NULL ||
        evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini,
                                  HOOK(on_conn_fini), ac) != 0) {
        if (ac->deadline != NULL) {
            event_free(ac->deadline);
        }
        if (ac->closer != NULL) {
            event_free(ac->closer);
        }
        free(ac);
        return EVHTP_RES_FATAL;
    }
    /* From here on_conn_fini frees ac, whatever fails. */
    if (evhtp_connection_set_hook(conn, evhtp_hook_on_header,
                                  HOOK(on_head_field), ac) != 0 ||
        evhtp_connection_set_hook(conn, evhtp_hook_on_headers,
                                  HOOK(on_head_done), ac) != 0 ||
        evhtp_connection_set_hook(conn, evhtp_hook_on_write,
                                  HOOK(on_conn_flushed), ac) != 0) {
        return EVHTP_RES_FATAL;
    }
    /* evhtp set its callbacks before this hook: read through ours. */
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    bufferevent_getcb(conn->bev, &readcb, &writecb, &eventcb, &cbarg);
    if (readcb != NULL && readcb != on_conn_read) {
        evhtp_readcb = readcb;
    }
    if (evhtp_readcb != NULL) {
        bufferevent_setcb(conn->bev, on_conn_read, writecb, eventcb, cbarg);
    }
    ac->input_cb = evbuffer_add_cb(bufferevent_get_input(conn->bev),
                                   on_conn_input, ac);
    if (ac->input_cb == NULL) {
        return EVHTP_RES_FATAL;
    }
    evtimer_add(ac->deadline, &admin.head_tv);
    return EVHTP_RES_OK;
}

/* ---- the listener ------------------------------------------------------- */

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    if (admin.htp->server != NULL) {
        evconnlistener_enable(admin.htp->server);
    }
}

/*
 * accept failed (as in worker.c). Out of descriptors (EMFILE/ENFILE), the
 * pending client would stay queued and the listener readable, so the loop
 * would spin: give up the reserve descriptor, accept that client and close
 * it at once (it sees the connection close instead of hanging), take the
 * reserve back, and pause accepting for 100 ms (so at most ten log lines a
 * second).
 */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    if ((err == EMFILE || err == ENFILE) && admin.reserve_fd >= 0) {
        close(admin.reserve_fd);
        int fd = accept(evconnlistener_get_fd(l), NULL, NULL);
        if (fd >= 0) {
            close(fd);
            admin.n_shed++;
        }
        admin.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        log_error("accept: %s: closed a new connection (%llu so far); "
                  "pausing for 100 ms",
                  evutil_socket_error_to_string(err), admin.n_shed);
    } else {
        log_error("accept: %s; pausing for 100 ms",
                  evutil_socket_error_to_string(err));
    }
    evconnlistener_disable(l);
    struct timeval tv = {0, 100 * 1000};
    evtimer_add(admin.accept_retry, &tv);
}

/*
 * SIGTERM and SIGINT: stop. SIGQUIT, from a reload that started a new
 * admin process on the same (or a new) socket: stop accepting at once,
 * and leave once the replies under way are out (they wait at most
 * GAUGES_WAIT_MS for the gauges).
 */
static void on_admin_signal(evutil_socket_t sig, short what, void *arg)
{
    if (sig == SIGQUIT) {
        evtimer_del(admin.accept_retry);
        evhtp_unbind_socket(admin.htp);
        struct timeval grace = util_ms_to_tv(GAUGES_WAIT_MS + 500);
        event_base_loopexit(admin.base, &grace);
        return;
    }
    event_base_loopbreak(admin.base);
}

/* Set up the server on the listening socket fd; 0 or -1 (logged). */
static int admin_serve(const struct config *cfg, int fd)
{
    evhtp_set_gencb(admin.htp, on_admin_request, NULL);
    evhtp_set_post_accept_cb(admin.htp, on_conn_accepted, NULL);
    /* A backstop: on_head_done refuses every head that announces a body,
     * so evhtp never reads one; were it to, it would close at its first
     * byte instead of holding it. */
    evhtp_set_max_body_size(admin.htp, 1);
    admin.head_tv = util_ms_to_tv(cfg->client_header_timeout_ms);
    admin.max_head = cfg->max_header_size;
    linger_init(&admin.lingers, admin.base, cfg->lingering_timeout_ms,
                cfg->lingering_time_ms);
    /* A head must be whole within client_header_timeout (on_head_deadline);
     * evhtp's idle timeouts stay as a backstop for reads, and close one
     * that does not read its answer after send_timeout (as on the proxy's
     * side). */
    struct timeval wtv = util_ms_to_tv(cfg->send_timeout_ms);
    evhtp_set_timeouts(admin.htp, &admin.head_tv, &wtv);
    admin.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    admin.accept_retry = evtimer_new(admin.base, on_accept_retry, NULL);
    if (admin.accept_retry == NULL ||
        evhtp_accept_socket(admin.htp, fd, 128) < 0) {
        log_error("cannot serve on the admin socket");
        return -1;
    }
    evconnlistener_set_error_cb(admin.htp->server, on_accept_error);
    return 0;
}

int admin_run(const struct config *cfg, int fd, struct stats_shm *shm)
{
    log_init(cfg->log_level, "admin");
    admin_shm = shm;
    signal(SIGUSR1, SIG_IGN);
    admin.base = event_base_new();
    if (admin.base == NULL) {
        log_error("cannot create an event base");
        return 1;
    }
    admin.htp = evhtp_new(admin.base, NULL);
    struct event *term = evsignal_new(admin.base, SIGTERM, on_admin_signal,
                                      NULL);
    struct event *intr = evsignal_new(admin.base, SIGINT, on_admin_signal,
                                      NULL);
    struct event *quit = evsignal_new(admin.base, SIGQUIT, on_admin_signal,
                                      NULL);
    int rc = 1;
    if (admin.htp == NULL || term == NULL || intr == NULL || quit == NULL ||
        evsignal_add(term, NULL) < 0 || evsignal_add(intr, NULL) < 0 ||
        evsignal_add(quit, NULL) < 0) {
        log_error("cannot set up the admin server");
    } else {
        /* The handlers are in: let the signals the master blocked in. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (admin_serve(cfg, fd) == 0) {
            rc = 0;
            event_base_dispatch(admin.base);
            evhtp_unbind_socket(admin.htp);
        }
    }
    if (admin.htp != NULL) {
        evhtp_free(admin.htp);
    }
    linger_close_all(&admin.lingers);
    if (admin.accept_retry != NULL) {
        event_free(admin.accept_retry);
    }
    if (admin.reserve_fd >= 0) {
        close(admin.reserve_fd);
    }
    if (term != NULL) {
        event_free(term);
    }
    if (intr != NULL) {
        event_free(intr);
    }
    if (quit != NULL) {
        event_free(quit);
    }
    event_base_free(admin.base);
    return rc;
}
