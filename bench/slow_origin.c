/*
 * slow_origin: the bundled demonstration backend ("slow origin").
 *
 * An HTTP/1.1 server on libevhtp that answers every request after a
 * configurable delay, so that a proxy in front of it, or a bench, can be shown
 * holding thousands of slow exchanges at once. Every wait is a timer on the
 * event base of the loop that owns the connection (pause the request, arm
 * the timer, reply, resume: DESIGN.md "libevhtp rules"); nothing here ever
 * sleeps or blocks a loop. Bodies are never held whole: filler bytes are
 * queued by reference from one static block, a bounded amount at a time, as
 * the client drains them, so `?size=1g` costs no more memory than `?size=1k`.
 *
 *   /anything  wait delay (+ jitter), answer status with size bytes of filler
 *   /stream    chunked reply: one chunk at once, then one every interval
 *   /echo      describe the request: method, target, headers, body SHA-256
 *
 * It logs nothing per request (it is a benchmark backend); errors go to
 * stderr. It shares no proxy code but two dependency-free modules:
 * proxy/linger.c, the lingering close of the two libevhtp servers (this
 * and the admin port), and proxy/util.c (a list reader, clocks).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <evhtp.h>
#include <openssl/evp.h>

#include "linger.h"
#include "util.h"

#define LISTEN_BACKLOG 4096
#define DEFAULT_LISTEN "127.0.0.1:9000"
#define MAX_THREADS 256
#define MAX_DURATION_MS (24LL * 3600 * 1000) /* one day */
/* The largest body or chunk size: more than any bench sends, and far from
 * the 2^64 that would overflow a client's byte counters. */
#define MAX_BODY_SIZE (64ULL << 30) /* 64 GiB */

/*
 * Filler bodies are queued by reference from FILLER_SIZE bytes of static
 * memory, FILLER_SIZE at a time, while the connection's output holds less
 * than PUMP_HIGH; a drained output below PUMP_LOW asks for more. Memory per
 * connection is therefore a few chain headers, whatever the body size.
 */
#define FILLER_SIZE (64 * 1024)
#define PUMP_HIGH (256 * 1024)
#define PUMP_LOW (64 * 1024)
#define MAX_SINGLE_WRITE (128 * 1024)

/* A refused connection lingers (proxy/linger.h: its answer followed by a
 * FIN, what the client still sends read and dropped) at most this long. */
#define LINGER_MS 2000

/* The command line, read once in main and read-only afterwards. */
struct origin_conf {
    char listen[256];
    int64_t delay_ms;
    int64_t jitter_ms;
    uint64_t body_size;
    int threads;
};

/*
 * One event loop: its base, its own evhtp instance on its own SO_REUSEPORT
 * listening socket (the kernel spreads connections over the loops), its
 * thread and its sessions. Loop 0 runs on the main thread. Not evhtp's
 * thread pool: that hands each accepted connection to a thread through a
 * non-blocking socketpair and closes the connection, unanswered, when the
 * socketpair is full, which a burst of a few hundred connects does.
 */
struct origin_loop {
    struct event_base *base;
    evhtp_t *htp;
    pthread_t thread;
    bool started;
    LIST_HEAD(, session) sessions;
    struct linger_set lingers; /* refused connections closing (linger.h) */
};

/*
 * One client connection, tracked so that shutdown can free the connections
 * still open (evhtp keeps no list) and so that a bad head is answered once.
 * Owned by its loop; freed by the connection's fini hook.
 */
struct session {
    evhtp_connection_t *conn;
    struct origin_loop *loop;
    struct evbuffer_cb_entry *input_cb; /* on_session_input */
    struct event *closer; /* closes it after on_session_input refused */
    bool refused; /* a closing answer was written; nothing more to say */
    LIST_ENTRY(session) link;
};

/* What an exchange answers with, chosen by its path. */
enum exchange_kind {
    EXCHANGE_FILLER, /* any path: status + size bytes of filler */
    EXCHANGE_STREAM, /* /stream: chunked, one chunk per interval */
    EXCHANGE_ECHO,   /* /echo: a description of the request */
};

/* Where an exchange is; the request is paused in every state but the ends. */
enum exchange_state {
    EXCHANGE_READING,  /* request head parsed, body arriving */
    EXCHANGE_DELAYING, /* paused, delay timer armed */
    EXCHANGE_SENDING,  /* paused, filler queued as the client drains */
    EXCHANGE_INTERVAL, /* paused, /stream waiting for its next chunk */
    EXCHANGE_DONE,     /* reply complete, connection resumed */
    EXCHANGE_ABORTED,  /* client gone; waiting for evhtp to free it */
};

/* How the body of a reply is delimited. */
enum framing {
    FRAMING_LENGTH,  /* Content-Length */
    FRAMING_NONE,    /* 204/304: neither body nor Content-Length */
    FRAMING_CHUNKED, /* chunked for HTTP/1.1, close-delimited for 1.0 */
};

/*
 * One request/response pair: its parameters (from the command line and the
 * query), its timer and its progress. Created by the headers hook, freed by
 * the request's fini hook; evhtp owns the request it points to.
 */
struct exchange {
    evhtp_request_t *req;
    enum exchange_kind kind;
    enum exchange_state state;
    bool paused;          /* we paused the connection and owe a resume */
    bool head_only;       /* HEAD: headers of the reply, no body */
    bool chunked;         /* HTTP/1.1 chunk framing on the body */
    struct event *timer;  /* delay, then /stream intervals */
    /* The client's close (EV_CLOSED) while the connection is paused: evhtp
     * reads nothing then, so it would not see the client go until the
     * delay ended (a socket held per client that gave up: enough of them
     * took every descriptor). */
    struct event *gone;
    struct timespec due;  /* when the timer is meant to go off */
    struct evbuffer_cb_entry *drain_cb; /* on the output while SENDING */
    bool line_waits; /* a /stream text line waits for the output to drain */
    char bad[96];         /* "name=value" of the first bad query parameter */
    bool bad_version;     /* not HTTP/1.x: the reply is 505 */
    unsigned status;
    int64_t delay_ms;
    int64_t jitter_ms;
    uint64_t size;        /* filler bytes, or bytes per /stream chunk */
    bool size_given;
    uint64_t chunks;      /* /stream: how many */
    uint64_t chunk_next;  /* /stream: 1-based index of the next one */
    int64_t interval_ms;  /* /stream: time between chunks */
    uint64_t pump_left;   /* filler bytes still to queue */
    EVP_MD_CTX *md;       /* /echo: SHA-256 of the body so far */
    uint64_t body_length; /* request body bytes received */
};

static struct origin_conf conf;
static struct origin_loop loops[MAX_THREADS];
static char filler[FILLER_SIZE];
static _Thread_local uint64_t rng_state;

/* evhtp declares hooks unprototyped; cast through void (*)(void). */
#define HOOK(fn) ((evhtp_hook)(void (*)(void))(fn))

static void on_exchange_timer(evutil_socket_t fd, short what, void *arg);
static void stream_send_chunk(struct exchange *x);

/* ---- parsing (pure helpers: no logging, 0 or -1) ---- */

/* Parse len bytes of decimal digits into *out; -1 if empty, bad or > max. */
static int parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0) {
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (d > max || v > (max - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Length of the leading run of digits in s[0..len). */
static size_t digits_prefix(const char *s, size_t len)
{
    size_t n = 0;

    while (n < len && s[n] >= '0' && s[n] <= '9') {
        n++;
    }
    return n;
}

/*
 * Parse a duration: digits and an optional unit `ms` (the default), `s`,
 * `m` or `h`; "250ms" -> 250, "2s" -> 2000, "100" -> 100. At most one day.
 */
static int parse_duration(const char *s, size_t len, int64_t *ms)
{
    size_t n = digits_prefix(s, len);
    const char *unit = s + n;
    size_t ulen = len - n;
    uint64_t scale;
    uint64_t v;

    if (ulen == 0 || (ulen == 2 && strncmp(unit, "ms", 2) == 0)) {
        scale = 1;
    } else if (ulen == 1 && unit[0] == 's') {
        scale = 1000;
    } else if (ulen == 1 && unit[0] == 'm') {
        scale = 60 * 1000;
    } else if (ulen == 1 && unit[0] == 'h') {
        scale = 3600 * 1000;
    } else {
        return -1;
    }
    if (parse_uint(s, n, (uint64_t)MAX_DURATION_MS / scale, &v) != 0) {
        return -1;
    }
    *ms = (int64_t)(v * scale);
    return 0;
}

/*
 * Parse a size: digits and an optional unit `k`, `m` or `g` (powers of
 * 1024, any case, optionally followed by `b`); "64k" -> 65536. At most
 * MAX_BODY_SIZE.
 */
static int parse_size(const char *s, size_t len, uint64_t *bytes)
{
    size_t n = digits_prefix(s, len);
    const char *unit = s + n;
    size_t ulen = len - n;
    unsigned shift = 0;
    uint64_t v;

    if (ulen > 0 && (unit[ulen - 1] == 'b' || unit[ulen - 1] == 'B')) {
        ulen--;
    }
    if (ulen == 1) {
        switch (unit[0]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return -1;
        }
    } else if (ulen != 0) {
        return -1;
    }
    if (parse_uint(s, n, MAX_BODY_SIZE >> shift, &v) != 0) {
        return -1;
    }
    *bytes = v << shift;
    return 0;
}

/* A uniform random integer in [0, max], from a per-thread xorshift64*. */
static uint64_t random_upto(uint64_t max)
{
    if (rng_state == 0) {
        rng_state = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&rng_state;
        rng_state |= 1;
    }
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (rng_state * 2685821657736338717ULL) % (max + 1);
}

/* ---- between requests ---- */

/*
 * Is conn between requests, expecting a request line? It is once evhtp
 * has freed the last request, or once our reply to it is complete (what
 * follows then is the next request, read when the reply is flushed).
 */
static bool conn_expects_request_line(const evhtp_connection_t *conn)
{
    return conn->request == NULL ||
           (conn->request->flags & EVHTP_REQ_FLAG_FINISHED) != 0;
}

/*
 * Drop the empty lines in front of the next request line (RFC 9112 2.2: a
 * server SHOULD ignore at least one). evhtp's parser skips them as well,
 * but one byte per run, and evhtp runs it again only when more bytes
 * arrive: a request behind two of them ("\r\nGET ...") was never
 * answered. Any CR or LF goes, as the parser would skip it; nothing is
 * dropped inside a request, where an empty line ends a head and CRLFs may
 * be body bytes.
 */
static void conn_drop_empty_lines(evhtp_connection_t *conn)
{
    struct bufferevent *bev = evhtp_connection_get_bev(conn);
    struct evbuffer_iovec vec[4];
    int n;

    if (bev == NULL || !conn_expects_request_line(conn)) {
        return;
    }
    /* Peek a few chains at a time; all CRs and LFs: drain, peek on. */
    while ((n = evbuffer_peek(bufferevent_get_input(bev), -1, NULL, vec,
                              4)) > 0) {
        size_t skip = 0;
        bool all = true;

        for (int i = 0; i < n && i < 4 && all; i++) {
            const char *b = vec[i].iov_base;
            size_t k = 0;

            while (k < vec[i].iov_len && (b[k] == '\r' || b[k] == '\n')) {
                k++;
            }
            skip += k;
            all = k == vec[i].iov_len;
        }
        evbuffer_drain(bufferevent_get_input(bev), skip);
        if (!all) {
            return;
        }
    }
}

/* ---- exchanges ---- */

/* The exchange of a request, or NULL (it rides on the request's hooks). */
static struct exchange *exchange_of(evhtp_request_t *req)
{
    evhtp_hooks_t *hooks = evhtp_request_get_hooks(req);

    return hooks != NULL ? hooks->on_request_fini_arg : NULL;
}

/* Note the first bad query parameter; the reply will be a 400 naming it. */
static void exchange_set_bad(struct exchange *x, const char *key, size_t klen,
                             const char *val, size_t vlen)
{
    if (x->bad[0] == '\0') {
        snprintf(x->bad, sizeof(x->bad), "%.*s=%.*s", (int)klen, key,
                 (int)(vlen > 48 ? 48 : vlen), val);
    }
}

/*
 * Apply the query string (`delay`, `jitter`, `size`, `status`, `chunks`,
 * `interval`; others are ignored) over the defaults already in x.
 */
static void exchange_parse_query(struct exchange *x, const char *q)
{
    while (q != NULL && *q != '\0') {
        const char *end = strchr(q, '&');
        size_t plen = end != NULL ? (size_t)(end - q) : strlen(q);
        const char *eq = memchr(q, '=', plen);
        size_t klen = eq != NULL ? (size_t)(eq - q) : plen;
        const char *val = eq != NULL ? eq + 1 : q + plen;
        size_t vlen = plen - klen - (eq != NULL ? 1 : 0);
        uint64_t u;
        int rc = 0;

        if (klen == 5 && strncmp(q, "delay", 5) == 0) {
            rc = parse_duration(val, vlen, &x->delay_ms);
        } else if (klen == 6 && strncmp(q, "jitter", 6) == 0) {
            rc = parse_duration(val, vlen, &x->jitter_ms);
        } else if (klen == 4 && strncmp(q, "size", 4) == 0) {
            rc = parse_size(val, vlen, &x->size);
            x->size_given = true;
        } else if (klen == 6 && strncmp(q, "status", 6) == 0) {
            rc = parse_uint(val, vlen, 599, &u);
            if (rc == 0 && u < 200) {
                rc = -1;
            }
            if (rc == 0) {
                x->status = (unsigned)u;
            }
        } else if (klen == 6 && strncmp(q, "chunks", 6) == 0) {
            rc = parse_uint(val, vlen, 1000000, &x->chunks);
        } else if (klen == 8 && strncmp(q, "interval", 8) == 0) {
            rc = parse_duration(val, vlen, &x->interval_ms);
        }
        if (rc != 0) {
            exchange_set_bad(x, q, klen, val, vlen);
        }
        q = end != NULL ? end + 1 : NULL;
    }
}

/*
 * Start an exchange for a request whose head has been parsed: pick the
 * kind from the path, take defaults from the command line and overrides
 * from the query. Returns NULL when out of memory.
 */
/* Does a Connection field of req list token (a comma-separated list,
 * case ignored: RFC 9110 7.6.1)? evhtp matches a single exact value. */
static bool connection_lists(evhtp_request_t *req, const char *token)
{
    evhtp_header_t *h;

    TAILQ_FOREACH(h, req->headers_in, next) {
        if (h->key != NULL && h->val != NULL &&
            strcasecmp(h->key, "Connection") == 0 &&
            util_list_has(h->val, strlen(h->val), token, strlen(token))) {
            return true;
        }
    }
    return false;
}

static struct exchange *exchange_new(evhtp_request_t *req)
{
    struct exchange *x = calloc(1, sizeof(*x));
    const char *path = "/";

    if (x == NULL) {
        return NULL;
    }
    x->req = req;
    x->state = EXCHANGE_READING;
    x->status = 200;
    x->size = conf.body_size;
    x->chunks = 5;
    x->chunk_next = 1;
    x->interval_ms = 500;
    x->head_only = evhtp_request_get_method(req) == htp_method_HEAD;
    if (connection_lists(req, "close")) {
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
    }
    htparser *parser = evhtp_request_get_connection(req)->parser;
    x->bad_version = htparser_get_major(parser) != 1;
    if (!x->bad_version && htparser_get_minor(parser) > 1) {
        /* Read as HTTP/1.1 (RFC 9110 2.5); evhtp would write the
         * request's version in the reply's status line. */
        htparser_set_minor(parser, 1);
        req->proto = EVHTP_PROTO_11;
    }
    if (req->uri != NULL && req->uri->path != NULL &&
        req->uri->path->full != NULL) {
        path = req->uri->path->full;
    }
    if (strcmp(path, "/stream") == 0) {
        x->kind = EXCHANGE_STREAM;
    } else if (strcmp(path, "/echo") == 0) {
        x->kind = EXCHANGE_ECHO;
        x->md = EVP_MD_CTX_new();
        if (x->md == NULL || EVP_DigestInit_ex(x->md, EVP_sha256(), NULL) != 1) {
            EVP_MD_CTX_free(x->md);
            free(x);
            return NULL;
        }
    } else {
        x->kind = EXCHANGE_FILLER;
        x->delay_ms = conf.delay_ms;
        x->jitter_ms = conf.jitter_ms;
    }
    if (req->uri != NULL && req->uri->query_raw != NULL) {
        exchange_parse_query(x, (const char *)req->uri->query_raw);
    }
    return x;
}

/* Stop the timer and the drain callback; safe to call in any state. */
static void exchange_stop(struct exchange *x)
{
    if (x->timer != NULL) {
        event_del(x->timer);
    }
    if (x->gone != NULL) {
        event_del(x->gone);
    }
    if (x->drain_cb != NULL) {
        struct bufferevent *bev = evhtp_request_get_bev(x->req);

        evbuffer_remove_cb_entry(bufferevent_get_output(bev), x->drain_cb);
        x->drain_cb = NULL;
    }
}

/* Free an exchange and everything it holds (exchange_free(NULL) is a no-op). */
static void exchange_free(struct exchange *x)
{
    if (x == NULL) {
        return;
    }
    exchange_stop(x);
    if (x->timer != NULL) {
        event_free(x->timer);
    }
    if (x->gone != NULL) {
        event_free(x->gone);
    }
    EVP_MD_CTX_free(x->md);
    free(x);
}

/* Microseconds from now (CLOCK_MONOTONIC) to t; negative once past. */
static int64_t us_until(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(t->tv_sec - now.tv_sec) * 1000000 +
           (t->tv_nsec - now.tv_nsec) / 1000;
}

/* Set *t to ms milliseconds from now (CLOCK_MONOTONIC). */
static void clock_after(struct timespec *t, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000;
    if (t->tv_nsec >= 1000000000) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000;
    }
}

/* Arm the exchange's timer on its connection's own event base. */
static void exchange_arm(struct exchange *x, int64_t ms)
{
    struct timeval tv = { .tv_sec = ms / 1000,
                          .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    clock_after(&x->due, ms);
    struct event_base *base = evhtp_request_get_connection(x->req)->evbase;

    if (x->timer == NULL) {
        x->timer = evtimer_new(base, on_exchange_timer, x);
        if (x->timer == NULL) {
            fprintf(stderr, "slow-origin: out of memory for a timer\n");
            abort();
        }
    }
    /* Timers count from the time cached at the top of the loop iteration,
     * which under load is milliseconds old: count from now instead. */
    event_base_update_cache_time(base);
    evtimer_add(x->timer, &tv);
}

/* Add a response header; the value is copied. */
static void exchange_add_header(struct exchange *x, const char *key,
                                const char *val)
{
    evhtp_headers_add_header(x->req->headers_out,
                             evhtp_header_new(key, val, 0, 1));
}

/*
 * Queue the response head. evhtp adds `Content-Length: 0` to any HTTP/1.1
 * reply without Content-Length unless the request carries its CHUNKED flag,
 * so that flag is set for the replies that must have no length (204/304,
 * chunked); evhtp uses it for nothing else once we frame bodies ourselves.
 */
static void exchange_send_head(struct exchange *x, unsigned status,
                               enum framing framing, uint64_t length)
{
    evhtp_request_t *req = x->req;
    char num[32];

    exchange_add_header(x, "Content-Type", "text/plain");
    switch (framing) {
    case FRAMING_LENGTH:
        snprintf(num, sizeof(num), "%" PRIu64, length);
        exchange_add_header(x, "Content-Length", num);
        break;
    case FRAMING_NONE:
        evhtp_request_enable_flag(req, EVHTP_REQ_FLAG_CHUNKED);
        break;
    case FRAMING_CHUNKED:
        evhtp_request_enable_flag(req, EVHTP_REQ_FLAG_CHUNKED);
        if (evhtp_request_get_proto(req) == EVHTP_PROTO_11) {
            exchange_add_header(x, "Transfer-Encoding", "chunked");
            x->chunked = true;
        } else {
            /* HTTP/1.0 has no chunks: the body ends when we close. */
            evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
            exchange_add_header(x, "Connection", "close");
        }
        break;
    }
    evhtp_send_reply_start(req, (evhtp_res)status);
}

/* The connection's output buffer. */
static struct evbuffer *exchange_output(struct exchange *x)
{
    return bufferevent_get_output(evhtp_request_get_bev(x->req));
}

/*
 * The reply is complete: mark it finished and resume the connection, which
 * flushes it and goes on with the next (maybe pipelined) request. The
 * exchange stays until evhtp frees the request.
 */
static void exchange_finish(struct exchange *x)
{
    if (x->chunked && !x->head_only) {
        evbuffer_add(exchange_output(x), "0\r\n\r\n", 5);
    }
    evhtp_send_reply_end(x->req);
    x->state = EXCHANGE_DONE;
    evhtp_connection_t *conn = evhtp_request_get_connection(x->req);
    if (!(x->req->flags & EVHTP_REQ_FLAG_KEEPALIVE)) {
        /* The connection ends with this reply (Connection: close, HTTP/1.0,
         * a 1.0 stream ended by the close, a 505): a request pipelined
         * behind it must not be answered (RFC 9112 9.6), yet evhtp would
         * parse it once the request resumes. Drop it. */
        struct evbuffer *in = bufferevent_get_input(evhtp_connection_get_bev(conn));
        evbuffer_drain(in, evbuffer_get_length(in));
    }
    /* A pipelined request may follow, read by evhtp once this reply is
     * flushed: not through on_session_input, so empty lines go now. */
    conn_drop_empty_lines(conn);
    if (x->gone != NULL) {
        event_del(x->gone); /* evhtp reads the connection again */
    }
    if (x->paused) {
        x->paused = false;
        evhtp_request_resume(x->req);
    }
}

/* Queue filler until the output is full or the body is; true when done. */
static bool exchange_pump(struct exchange *x)
{
    struct evbuffer *out = exchange_output(x);

    while (x->pump_left > 0 && evbuffer_get_length(out) < PUMP_HIGH) {
        size_t n = x->pump_left < FILLER_SIZE ? (size_t)x->pump_left
                                              : FILLER_SIZE;

        if (evbuffer_add_reference(out, filler, n, NULL, NULL) != 0) {
            break; /* out of memory: retry when the output drains */
        }
        x->pump_left -= n;
    }
    return x->pump_left == 0;
}

/* A /stream chunk is queued: wait for the next one, or end the body. */
static void stream_next(struct exchange *x)
{
    if (x->chunk_next > x->chunks) {
        exchange_finish(x);
        return;
    }
    x->state = EXCHANGE_INTERVAL;
    exchange_arm(x, x->interval_ms);
}

/* The filler of a body (or of one /stream chunk) is all queued. */
static void exchange_pump_done(struct exchange *x)
{
    if (x->kind != EXCHANGE_STREAM) {
        exchange_finish(x);
        return;
    }
    if (x->chunked) {
        evbuffer_add(exchange_output(x), "\r\n", 2);
    }
    stream_next(x);
}

/*
 * The output drained: queue more filler. Runs inside libevent's write path;
 * the data we add re-enters this callback with nothing deleted, which is
 * ignored. Never frees the exchange.
 */
static void on_output_drained(struct evbuffer *out,
                              const struct evbuffer_cb_info *info, void *arg)
{
    struct exchange *x = arg;

    if (info->n_deleted == 0 || evbuffer_get_length(out) >= PUMP_LOW) {
        return;
    }
    if (x->line_waits) {
        evbuffer_remove_cb_entry(out, x->drain_cb);
        x->drain_cb = NULL;
        x->line_waits = false;
        stream_send_chunk(x);
        return;
    }
    if (exchange_pump(x)) {
        evbuffer_remove_cb_entry(out, x->drain_cb);
        x->drain_cb = NULL;
        exchange_pump_done(x);
    }
}

/* Send `bytes` bytes of filler, as the client drains, then go on. */
static void exchange_send_filler(struct exchange *x, uint64_t bytes)
{
    x->pump_left = bytes;
    x->state = EXCHANGE_SENDING;
    if (exchange_pump(x)) {
        exchange_pump_done(x);
        return;
    }
    bufferevent_set_max_single_write(evhtp_request_get_bev(x->req),
                                     MAX_SINGLE_WRITE);
    x->drain_cb = evbuffer_add_cb(exchange_output(x), on_output_drained, x);
    if (x->drain_cb == NULL) {
        fprintf(stderr, "slow-origin: out of memory for a drain callback\n");
        abort();
    }
}

/* 204 and 304 replies have neither a body nor a Content-Length. */
static bool status_has_body(unsigned status)
{
    return status != 204 && status != 304;
}

/* Send a reply whose whole body is in `body` (which may be emptied). */
static void exchange_send_buffer(struct exchange *x, unsigned status,
                                 struct evbuffer *body)
{
    if (!status_has_body(status)) {
        exchange_send_head(x, status, FRAMING_NONE, 0);
    } else {
        exchange_send_head(x, status, FRAMING_LENGTH,
                           evbuffer_get_length(body));
        if (!x->head_only) {
            evbuffer_add_buffer(exchange_output(x), body);
        }
    }
    exchange_finish(x);
}

/* Answer 400 naming the bad query parameter. */
static void exchange_send_bad(struct exchange *x)
{
    struct evbuffer *body = evbuffer_new();

    if (body == NULL) {
        abort();
    }
    evbuffer_add_printf(body, "bad query parameter: %s\n", x->bad);
    exchange_send_buffer(x, 400, body);
    evbuffer_free(body);
}

/*
 * Answer 505 to a request that is not HTTP/1.x, and close.
 * evhtp writes the request's version in the status line ("HTTP/2.0 505"),
 * so the parser's version is set to the one we speak first.
 */
static void exchange_send_bad_version(struct exchange *x)
{
    evhtp_request_t *req = x->req;
    htparser *parser = evhtp_request_get_connection(req)->parser;
    struct evbuffer *body = evbuffer_new();

    if (body == NULL) {
        abort();
    }
    evbuffer_add_printf(body, "HTTP/%u.%u is not supported: use HTTP/1.1\n",
                        (unsigned)htparser_get_major(parser),
                        (unsigned)htparser_get_minor(parser));
    htparser_set_major(parser, 1);
    htparser_set_minor(parser, 1);
    req->proto = EVHTP_PROTO_11;
    evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
    exchange_send_buffer(x, 505, body);
    evbuffer_free(body);
}

/* One request header as an /echo line. */
static int on_echo_header(evhtp_kv_t *kv, void *arg)
{
    evbuffer_add_printf(arg, "header: %s: %s\n", kv->key,
                        kv->val != NULL ? kv->val : "");
    return 0;
}

/* Answer /echo: what we received, in the order we received it. */
static void exchange_send_echo(struct exchange *x)
{
    evhtp_request_t *req = x->req;
    htparser *parser = evhtp_request_get_connection(req)->parser;
    struct evbuffer *body = evbuffer_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    const char *path = "/";

    if (body == NULL) {
        abort();
    }
    if (req->uri != NULL && req->uri->path != NULL &&
        req->uri->path->full != NULL) {
        path = req->uri->path->full;
    }
    /* libevhtp names only the methods it knows; it keeps no other. */
    const char *method = htparser_get_methodstr(parser);
    evbuffer_add_printf(body, "method: %s\n",
                        method != NULL ? method : "(one libevhtp does not know)");
    evbuffer_add_printf(body, "target: %s%s%s\n", path,
                        req->uri != NULL && req->uri->query_raw ? "?" : "",
                        req->uri != NULL && req->uri->query_raw
                            ? (const char *)req->uri->query_raw
                            : "");
    evbuffer_add_printf(body, "version: HTTP/%u.%u\n",
                        (unsigned)htparser_get_major(parser),
                        (unsigned)htparser_get_minor(parser));
    evhtp_headers_for_each(req->headers_in, on_echo_header, body);
    evbuffer_add_printf(body, "body-length: %" PRIu64 "\n", x->body_length);
    EVP_DigestFinal_ex(x->md, digest, &dlen);
    evbuffer_add_printf(body, "body-sha256: ");
    for (unsigned int i = 0; i < dlen; i++) {
        evbuffer_add_printf(body, "%02x", digest[i]);
    }
    evbuffer_add(body, "\n", 1);
    exchange_send_buffer(x, x->status, body);
    evbuffer_free(body);
}

/* Queue /stream chunk number chunk_next and move on. */
static void stream_send_chunk(struct exchange *x)
{
    struct evbuffer *out = exchange_output(x);
    uint64_t i = x->chunk_next++;

    char line[64];
    int n;

    if (x->size_given) {
        if (x->size == 0) {
            stream_next(x); /* an empty chunk would end the body */
            return;
        }
        if (x->chunked) {
            evbuffer_add_printf(out, "%" PRIx64 "\r\n", x->size);
        }
        exchange_send_filler(x, x->size);
        return;
    }
    if (evbuffer_get_length(out) >= PUMP_HIGH) {
        /* A client that does not read (interval=0) must not make the
         * lines pile up: this one waits until it has taken most of them. */
        x->chunk_next--;
        x->line_waits = true;
        x->state = EXCHANGE_SENDING;
        x->drain_cb = evbuffer_add_cb(out, on_output_drained, x);
        if (x->drain_cb == NULL) {
            fprintf(stderr, "slow-origin: out of memory for a drain callback\n");
            abort();
        }
        return;
    }
    n = snprintf(line, sizeof(line), "chunk %" PRIu64 " of %" PRIu64 "\n", i,
                 x->chunks);
    if (x->chunked) {
        evbuffer_add_printf(out, "%x\r\n%s\r\n", (unsigned)n, line);
    } else {
        evbuffer_add(out, line, (size_t)n);
    }
    stream_next(x);
}

/* The delay is over: answer according to the kind of exchange. */
static void exchange_respond(struct exchange *x)
{
    bool no_body = !status_has_body(x->status);

    if (x->bad_version) {
        exchange_send_bad_version(x);
        return;
    }
    if (x->bad[0] != '\0') {
        exchange_send_bad(x);
        return;
    }
    if (x->status == 205) {
        /* No content (RFC 9110 15.3.6) on any path, but a length: unlike
         * 204 and 304, a 205 without one would be read to the close. */
        exchange_send_head(x, x->status, FRAMING_LENGTH, 0);
        exchange_finish(x);
        return;
    }
    switch (x->kind) {
    case EXCHANGE_ECHO:
        exchange_send_echo(x);
        return;
    case EXCHANGE_FILLER:
        if (no_body) {
            exchange_send_head(x, x->status, FRAMING_NONE, 0);
            exchange_finish(x);
            return;
        }
        exchange_send_head(x, x->status, FRAMING_LENGTH, x->size);
        if (x->head_only) {
            exchange_finish(x);
            return;
        }
        exchange_send_filler(x, x->size);
        return;
    case EXCHANGE_STREAM:
        exchange_send_head(x, x->status,
                           no_body ? FRAMING_NONE : FRAMING_CHUNKED, 0);
        if (no_body || x->head_only || x->chunks == 0) {
            exchange_finish(x);
            return;
        }
        stream_send_chunk(x);
        return;
    }
}

/* The exchange's timer: the delay ended, or a /stream interval did. */
static void on_exchange_timer(evutil_socket_t fd, short what, void *arg)
{
    struct exchange *x = arg;
    /* libevent keeps time with CLOCK_MONOTONIC_COARSE, whose tick (4 ms
     * at 250 Hz) can let a timer go off that much early: wait out the
     * rest, so a delay is never short. */
    int64_t early_us = us_until(&x->due);
    if (early_us > 0) {
        struct timeval rest = { .tv_sec = early_us / 1000000,
                                .tv_usec = (suseconds_t)(early_us % 1000000) };
        evtimer_add(x->timer, &rest);
        return;
    }

    switch (x->state) {
    case EXCHANGE_DELAYING:
        exchange_respond(x);
        break;
    case EXCHANGE_INTERVAL:
        stream_send_chunk(x);
        break;
    default:
        break;
    }
}

/* ---- bad heads ---- */

/*
 * What evhtp's parser rejects, evhtp answers with nothing: it frees the
 * connection, with no request left to reply on. So the connection's fini
 * hook reads the parser's error and writes a closing answer straight to
 * the socket, once. Nothing is written if a reply of ours is still queued
 * (the answer would cut into it); otherwise the output is empty, as it is
 * while a head is read, and the few bytes go out whole. A connection so
 * answered (by the fini hook or by a head hook) then lingers, below.
 */

/* Write a closing answer to s's client, once; no body if head_only. */
static void session_refuse(struct session *s, unsigned status,
                           const char *why, bool head_only)
{
    struct bufferevent *bev = evhtp_connection_get_bev(s->conn);
    const char *reason = status == 505   ? "HTTP Version Not Supported"
                         : status == 431 ? "Request Header Fields Too Large"
                         : status == 414 ? "URI Too Long"
                                         : "Bad Request";
    char msg[512];
    int n;

    if (s->refused || bev == NULL ||
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        return;
    }
    s->refused = true;
    n = snprintf(msg, sizeof(msg),
                 "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                 status, reason, strlen(why) + 1, head_only ? "" : why);
    if (n > 0 && (size_t)n < sizeof(msg)) {
        if (head_only) {
            n--; /* the newline of the empty body */
        }
        (void)send(bufferevent_getfd(bev), msg, (size_t)n,
                   MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

/*
 * The answer to a head evhtp's parser rejected, with its reason in *why;
 * 0 if the connection ends for another reason. The parser reads a version
 * only after the target, so major 0 means "still in the request line".
 */
static unsigned parse_failure(evhtp_connection_t *conn, const char **why)
{
    evhtp_request_t *req = conn->request;
    bool in_line = htparser_get_major(conn->parser) == 0;
    evhtp_header_t *last;

    switch (htparser_get_error(conn->parser)) {
    case htparse_error_none:
        return 0;
    case htparse_error_user:
        /* A hook said stop: ours answer for themselves, and a complete
         * request we paused leaves this error behind; evhtp's own mark
         * the request (a field with no colon, a query it cannot split). */
        if (req == NULL || (req->status != EVHTP_RES_ERROR &&
                            req->status != EVHTP_RES_FATAL)) {
            return 0;
        }
        break;
    case htparse_error_too_big:
        /* Or a Content-Length that is no number below 2^64: its name is
         * in the head and its value not yet. */
        last = req != NULL ? TAILQ_LAST(req->headers_in, evhtp_kvs) : NULL;
        if (!in_line && last != NULL && last->val == NULL &&
            strcasecmp(last->key, "Content-Length") == 0) {
            *why = "invalid Content-Length";
            return 400;
        }
        /* A token (target, field name or value) past the parser's 8 KiB. */
        *why = in_line ? "request line too long (limit 8 KiB)"
                       : "request header field too large (limit 8 KiB)";
        return in_line ? 414 : 431;
    case htparse_error_inval_ver:
        /* "HTTP/" then no digit 1-9: HTTP/0.9, HTTP/0.0 (or "HTTP/x"). */
        if (in_line) {
            *why = "HTTP version not supported: use HTTP/1.1";
            return 505;
        }
        break;
    default:
        break;
    }
    /* With its exchange started, the head was whole: the fault is in the
     * chunked body (evhtp's parser also takes no chunk extension). */
    *why = req != NULL && exchange_of(req) != NULL
               ? "malformed chunked request body (or one with a chunk "
                 "extension, which this origin cannot read)"
               : "malformed request head";
    return 400;
}

/* ---- evhtp hooks and callbacks ---- */

/* Request body bytes: hash them for /echo, count and drop them always. */
static evhtp_res on_request_body(evhtp_request_t *req, struct evbuffer *buf,
                                 void *arg)
{
    struct exchange *x = arg;
    size_t len = evbuffer_get_length(buf);

    while (x->md != NULL && evbuffer_get_length(buf) > 0) {
        struct evbuffer_iovec vec[16];
        int n = evbuffer_peek(buf, -1, NULL, vec, 16);
        size_t done = 0;

        for (int i = 0; i < n && i < 16; i++) {
            EVP_DigestUpdate(x->md, vec[i].iov_base, vec[i].iov_len);
            done += vec[i].iov_len;
        }
        evbuffer_drain(buf, done);
    }
    x->body_length += len;
    evbuffer_drain(buf, evbuffer_get_length(buf));
    return EVHTP_RES_OK;
}

/*
 * The connection failed (client gone, reset, write error) while this
 * exchange was current. Stop our timer and drain callback; if we hold the
 * connection paused, resume it so that evhtp frees it now rather than
 * waiting for a resume that will never come. The exchange itself is freed
 * by the fini hook.
 */
static void on_request_error(evhtp_request_t *req, evhtp_error_flags flags,
                             void *arg)
{
    struct exchange *x = arg;

    exchange_stop(x);
    x->state = EXCHANGE_ABORTED;
    if (x->paused) {
        x->paused = false;
        evhtp_request_resume(req);
    }
}

/*
 * The client closed its side while the request was paused (delayed, or
 * its body being sent): it has left, as evhtp takes any EOF. Handled as
 * on_request_error: evhtp, resumed, reads the EOF and frees the
 * connection, and with it the exchange.
 */
static void on_client_gone(evutil_socket_t fd, short what, void *arg)
{
    struct exchange *x = arg;
    if (!(what & EV_CLOSED)) {
        /* Readable: a reset (epoll reports it as readable, not as
         * closed), an EOF, or the next request pipelined. */
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0) {
            /* Bytes wait: a close behind them is seen when the request
             * resumes, as evhtp reads on (watching on would spin). */
            event_del(x->gone);
            return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return; /* nothing there after all */
        }
    }
    on_request_error(x->req, 0, x);
}

/* Watch for the client's close (or reset) while the request is paused:
 * EV_CLOSED for a FIN where the backend tells one (epoll), and readable
 * for a reset (epoll reports no close for it, and would report it again
 * and again) or an EOF elsewhere, told apart from pipelined bytes by a
 * peek. */
static void exchange_watch_close(struct exchange *x)
{
    evhtp_connection_t *conn = evhtp_request_get_connection(x->req);
    if (x->gone == NULL) {
        x->gone = event_new(conn->evbase,
                            bufferevent_getfd(evhtp_connection_get_bev(conn)),
                            EV_READ | EV_CLOSED | EV_PERSIST, on_client_gone,
                            x);
    }
    if (x->gone != NULL) {
        event_add(x->gone, NULL);
    }
}

/* evhtp is freeing the request: free the exchange with it. */
static evhtp_res on_request_fini(evhtp_request_t *req, void *arg)
{
    exchange_free(arg);
    return EVHTP_RES_OK;
}

/* Attach an exchange to a request through per-request hooks. */
static struct exchange *exchange_attach(evhtp_request_t *req)
{
    struct exchange *x = exchange_new(req);

    if (x == NULL) {
        return NULL;
    }
    evhtp_request_set_hook(req, evhtp_hook_on_request_fini,
                           HOOK(on_request_fini), x);
    evhtp_request_set_hook(req, evhtp_hook_on_error, HOOK(on_request_error),
                           x);
    evhtp_request_set_hook(req, evhtp_hook_on_read, HOOK(on_request_body), x);
    return x;
}

/* Refuse a head without an HTTP version; see on_request_line. */
static evhtp_res session_refuse_versionless(struct session *s,
                                            evhtp_request_t *req)
{
    session_refuse(s, 400, "no HTTP version in the request line",
                   evhtp_request_get_method(req) == htp_method_HEAD);
    return EVHTP_RES_ERROR;
}

/*
 * A request line ended in CRLF (connection hook). Without a version
 * ("GET /", HTTP/0.9's form) the parser goes on to read a head, and evhtp,
 * which picks a request's callback when the target ends in a space, gives
 * "GET /" none: it would never be answered. Refuse it now, before its
 * head; anything but EVHTP_RES_OK stops the parser and evhtp frees the
 * connection.
 */
static evhtp_res on_request_line(evhtp_request_t *req, void *arg)
{
    if (htparser_get_major(evhtp_request_get_connection(req)->parser) == 0) {
        return session_refuse_versionless(arg, req);
    }
    return EVHTP_RES_OK;
}

/* Request head parsed (connection hook): refuse it if its request line,
 * ended by a bare LF, had no version (on_session_input does when the head
 * is not all read at once); else start its exchange. */
static evhtp_res on_request_headers(evhtp_request_t *req,
                                    evhtp_headers_t *headers, void *arg)
{
    if (htparser_get_major(evhtp_request_get_connection(req)->parser) == 0) {
        return session_refuse_versionless(arg, req);
    }
    if (exchange_of(req) != NULL) {
        return EVHTP_RES_OK;
    }
    /* Two different lengths (RFC 9112 6.3: unrecoverable): evhtp's parser
     * would take the last one. */
    const char *length = NULL;
    evhtp_header_t *h;
    TAILQ_FOREACH(h, headers, next) {
        if (strcasecmp(h->key, "Content-Length") != 0) {
            continue;
        }
        const char *val = h->val != NULL ? h->val : "";
        if (length != NULL && strcmp(length, val) != 0) {
            session_refuse(arg, 400, "conflicting Content-Length headers",
                           evhtp_request_get_method(req) == htp_method_HEAD);
            return EVHTP_RES_ERROR;
        }
        length = val;
    }
    return exchange_attach(req) != NULL ? EVHTP_RES_OK : EVHTP_RES_FATAL;
}

/*
 * Request complete (body included): arm the delay and pause. Even a zero
 * delay goes through the timer: a reply sent from here would stall a
 * pipelined request behind it (DESIGN.md). Pausing is the last call.
 */
static void on_request(evhtp_request_t *req, void *arg)
{
    struct exchange *x = exchange_of(req);
    int64_t delay;

    if (x == NULL && (x = exchange_attach(req)) == NULL) {
        evhtp_request_disable_flag(req, EVHTP_REQ_FLAG_KEEPALIVE);
        evhtp_headers_add_header(req->headers_out,
                                 evhtp_header_new("Content-Length", "0", 0, 0));
        evhtp_send_reply(req, 500);
        return;
    }
    /* A request refused (bad version, bad query value) is answered at
     * once: its delay may be one of the bad values, or a good one given
     * next to a bad one. */
    delay = 0;
    if (!x->bad_version && x->bad[0] == '\0') {
        delay = x->delay_ms;
        if (x->jitter_ms > 0) {
            delay += (int64_t)random_upto((uint64_t)x->jitter_ms);
        }
    }
    x->state = EXCHANGE_DELAYING;
    x->paused = true;
    exchange_arm(x, delay);
    evhtp_request_pause(req);
    exchange_watch_close(x);
}

/* ---- sessions and loops ---- */

/* The deferred close of a refused connection (session_close_later). */
static void on_session_close(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;

    evhtp_connection_free(s->conn); /* frees s: on_session_fini */
}

/*
 * Close s's connection from the loop, once the evhtp callback that runs
 * now has returned (it still uses the connection). Aborts when out of
 * memory, as the origin does for its timers.
 */
static void session_close_later(struct session *s)
{
    if (s->closer == NULL) {
        s->closer = event_new(s->conn->evbase, -1, 0, on_session_close, s);
        if (s->closer == NULL) {
            fprintf(stderr, "slow-origin: out of memory for an event\n");
            abort();
        }
    }
    event_active(s->closer, EV_TIMEOUT, 1);
}

/*
 * The connection's input changed (an evbuffer callback, run as bytes are
 * added or drained; never frees the session).
 *
 * Bytes read from the client between requests lose their empty lines
 * before evhtp's read callback parses them.
 *
 * Bytes drained inside a request are what the parser consumed, whichever
 * of evhtp's paths ran it. A request line without a version sets its minor
 * version to 9 (HTTP/0.9's form), its major staying 0; ended by CRLF,
 * on_request_line refuses it, but ended by a bare LF ("GET /\n\n") it
 * runs no hook, and the parser waits for one more byte after the empty
 * line: the client waited for ever. Refuse it here, once its line is in.
 */
static void on_session_input(struct evbuffer *in,
                             const struct evbuffer_cb_info *info, void *arg)
{
    struct session *s = arg;
    htparser *parser = s->conn->parser;

    if (info->n_added > 0) {
        conn_drop_empty_lines(s->conn);
    }
    if (info->n_deleted > 0 && !s->refused &&
        !conn_expects_request_line(s->conn) &&
        htparser_get_major(parser) == 0 && htparser_get_minor(parser) == 9) {
        (void)session_refuse_versionless(s, s->conn->request);
        session_close_later(s);
    }
}

/* evhtp is freeing a connection: answer a head its parser rejected, close
 * a refused connection gracefully, and forget the session. */
static evhtp_res on_session_fini(evhtp_connection_t *conn, void *arg)
{
    struct session *s = arg;
    struct bufferevent *bev = evhtp_connection_get_bev(conn);
    const char *why = NULL;
    unsigned status = parse_failure(conn, &why);

    if (status != 0) {
        session_refuse(s, status, why,
                       htparser_get_method(conn->parser) == htp_method_HEAD);
    }
    if (s->input_cb != NULL && bev != NULL) {
        evbuffer_remove_cb_entry(bufferevent_get_input(bev), s->input_cb);
    }
    if (s->closer != NULL) {
        event_free(s->closer);
    }
    if (s->refused && bev != NULL && bufferevent_getfd(bev) >= 0) {
        linger_start(&s->loop->lingers, bufferevent_getfd(bev));
    }
    LIST_REMOVE(s, link);
    free(s);
    return EVHTP_RES_OK;
}

/* A connection was accepted (on its loop's thread): track it. */
static evhtp_res on_session_accepted(evhtp_connection_t *conn, void *arg)
{
    struct origin_loop *loop = arg;
    struct session *s;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return EVHTP_RES_FATAL;
    }
    s->conn = conn;
    s->loop = loop;
    LIST_INSERT_HEAD(&loop->sessions, s, link);
    evhtp_connection_set_hook(conn, evhtp_hook_on_connection_fini,
                              HOOK(on_session_fini), s);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers_start,
                              HOOK(on_request_line), s);
    evhtp_connection_set_hook(conn, evhtp_hook_on_headers,
                              HOOK(on_request_headers), s);
    /* If this fails, evhtp frees the connection and on_session_fini s. */
    s->input_cb = evbuffer_add_cb(
        bufferevent_get_input(evhtp_connection_get_bev(conn)),
        on_session_input, s);
    return s->input_cb != NULL ? EVHTP_RES_OK : EVHTP_RES_FATAL;
}

/*
 * Run a stopped loop until nothing is active. A freed bufferevent is
 * finalized by its loop, and one with a deferred callback pending (a
 * connection the peer closed as we stopped) holds a reference that only
 * running that callback drops; event_base_free cancels it instead, and the
 * bufferevent leaks.
 */
static void settle(struct event_base *base)
{
    for (int i = 0; i < 8; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
}

/* Free every connection still open on a loop, lingering ones last (its
 * thread, loop stopped). */
static void origin_loop_close_all(struct origin_loop *loop)
{
    while (!LIST_EMPTY(&loop->sessions)) {
        evhtp_connection_free(LIST_FIRST(&loop->sessions)->conn);
    }
    linger_close_all(&loop->lingers);
}

/*
 * Set up a loop: its base, its evhtp with the catch-all callback and hooks,
 * listening on ss with SO_REUSEPORT. Returns 0, or -1 with a message in err.
 */
static int origin_loop_init(struct origin_loop *loop,
                            const struct sockaddr_storage *ss,
                            socklen_t sslen, char *err, size_t errlen)
{
    LIST_INIT(&loop->sessions);
    loop->base = event_base_new();
    linger_init(&loop->lingers, loop->base, LINGER_MS, LINGER_MS);
    loop->htp = loop->base != NULL ? evhtp_new(loop->base, NULL) : NULL;
    if (loop->htp == NULL) {
        snprintf(err, errlen, "cannot initialise libevent/libevhtp");
        return -1;
    }
    /* Every request comes here; its head hooks are the connection's. */
    evhtp_set_gencb(loop->htp, on_request, NULL);
    /* Set on the listener, inherited by every accepted socket: without it,
     * Nagle holds a /stream chunk back until the client's delayed ACK. */
    evhtp_enable_flag(loop->htp, EVHTP_FLAG_ENABLE_NODELAY);
    evhtp_enable_flag(loop->htp, EVHTP_FLAG_ENABLE_REUSEPORT);
    evhtp_set_post_accept_cb(loop->htp, on_session_accepted, loop);
    if (evhtp_bind_sockaddr(loop->htp, (struct sockaddr *)ss, sslen,
                            LISTEN_BACKLOG) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", conf.listen,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Tear a stopped loop down: stop accepting, close its connections, let the
 * closes finish, free it. Runs on the loop's own thread.
 */
static void origin_loop_free(struct origin_loop *loop)
{
    if (loop->htp != NULL) {
        evhtp_unbind_socket(loop->htp);
        origin_loop_close_all(loop);
        settle(loop->base);
        evhtp_free(loop->htp);
        loop->htp = NULL;
    }
    if (loop->base != NULL) {
        event_base_free(loop->base);
        loop->base = NULL;
    }
}

/* A loop's thread: run until main breaks the loop, then tear it down. */
static void *origin_loop_run(void *arg)
{
    struct origin_loop *loop = arg;

    event_base_dispatch(loop->base);
    origin_loop_free(loop);
    return NULL;
}

/* SIGINT/SIGTERM: leave the main loop; main cleans up and exits 0. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopbreak(loops[0].base);
}

/* ---- command line and main ---- */

static void usage(FILE *f)
{
    fprintf(f,
"usage: slow-origin [--listen HOST:PORT] [--delay 100ms] [--jitter 0ms]\n"
"                   [--body 1k] [--threads N]\n"
"\n"
"A deliberately slow HTTP/1.1 origin for benchmarks.\n"
"  --listen HOST:PORT  address to listen on (default " DEFAULT_LISTEN
"; port 0\n"
"                      picks one); prints `listening on HOST:PORT`\n"
"  --delay D           wait before answering (default 100ms)\n"
"  --jitter D          add a uniform random 0..D to each delay (default 0)\n"
"  --body SIZE         body size of the default reply (default 1k)\n"
"  --threads N         event-loop threads (default 1)\n"
"Durations take ms (the default), s, m, h, up to 24h; sizes take k, m, g\n"
"(1024-based), up to 64g.\n"
"\n"
"Paths:\n"
"  /any/path  wait delay+jitter, answer status with size bytes of filler;\n"
"             query: delay=250ms jitter=0 size=1m status=503\n"
"  /stream    chunked: one chunk at once, then one per interval;\n"
"             query: chunks=5 interval=500ms [size=BYTES per chunk]\n"
"             [delay=0 status=200]\n"
"  /echo      method, target, version, headers, body-length, body-sha256;\n"
"             query: delay=0 status=200\n"
"HEAD gets the headers only; 204 and 304 get neither body nor length,\n"
"205 no body and a length of 0;\n"
"a bad query value gets a 400 naming it, at once; a version other than\n"
"HTTP/1.x gets 505 (1.2 and on are read as 1.1). A target over 8189\n"
"bytes gets 414, a header name or value over 8191 bytes 431 (libevhtp's\n"
"limit, per field: a head of many fields may be larger); a malformed\n"
"head, or one without a version, gets 400. After a 414, 431 or 400 the\n"
"origin shuts its side of the connection down and reads and drops what\n"
"the client still sends, until the client closes or for 2 s at most, so\n"
"that the answer is not lost to a reset.\n"
"Empty lines (CRLF or LF) before a request line are ignored.\n");
}

/* Parse the command line into conf; exits on error or -h. */
static void parse_args(int argc, char **argv)
{
    static const struct option options[] = {
        { "listen", required_argument, NULL, 'l' },
        { "delay", required_argument, NULL, 'd' },
        { "jitter", required_argument, NULL, 'j' },
        { "body", required_argument, NULL, 'b' },
        { "threads", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t u;
    int c;

    snprintf(conf.listen, sizeof(conf.listen), "%s", DEFAULT_LISTEN);
    conf.delay_ms = 100;
    conf.jitter_ms = 0;
    conf.body_size = 1024;
    conf.threads = 1;
    while ((c = getopt_long(argc, argv, "l:d:j:b:t:h", options, NULL)) != -1) {
        int rc = 0;

        switch (c) {
        case 'l':
            if (strlen(optarg) >= sizeof(conf.listen)) {
                rc = -1;
            } else {
                snprintf(conf.listen, sizeof(conf.listen), "%s", optarg);
            }
            break;
        case 'd':
            rc = parse_duration(optarg, strlen(optarg), &conf.delay_ms);
            break;
        case 'j':
            rc = parse_duration(optarg, strlen(optarg), &conf.jitter_ms);
            break;
        case 'b':
            rc = parse_size(optarg, strlen(optarg), &conf.body_size);
            break;
        case 't':
            rc = parse_uint(optarg, strlen(optarg), MAX_THREADS, &u);
            if (rc == 0 && u == 0) {
                rc = -1;
            }
            conf.threads = (int)u;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
        if (rc != 0) {
            fprintf(stderr, "slow-origin: bad value for --%s: '%s'\n",
                    c == 'l' ? "listen" : c == 'd' ? "delay"
                    : c == 'j' ? "jitter" : c == 'b' ? "body" : "threads",
                    optarg);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "slow-origin: unexpected argument '%s'\n",
                argv[optind]);
        usage(stderr);
        exit(2);
    }
}

/*
 * Resolve conf.listen ("host:port", "[v6]:port") to a socket address.
 * Returns 0, or -1 with a message in err.
 */
static int resolve_listen(struct sockaddr_storage *ss, socklen_t *sslen,
                          char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(conf.listen, ':');
    const char *h = conf.listen;
    size_t hlen;
    uint64_t port;
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    int rc;

    if (colon == NULL ||
        parse_uint(colon + 1, strlen(colon + 1), 65535, &port) != 0) {
        snprintf(err, errlen, "expected HOST:PORT, got '%s'", conf.listen);
        return -1;
    }
    hlen = (size_t)(colon - h);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        snprintf(err, errlen, "bad host in '%s'", conf.listen);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sslen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* The address a loop's listener is bound to (the port the kernel gave). */
static int bound_address(evhtp_t *htp, struct sockaddr_storage *ss,
                         socklen_t *sslen)
{
    *sslen = sizeof(*ss);
    return getsockname(evconnlistener_get_fd(htp->server),
                       (struct sockaddr *)ss, sslen);
}

/* The port of an IPv4 or IPv6 address, in host order. */
static unsigned port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6) {
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    }
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/*
 * Fail like a plain bind would when something already listens on ss's
 * (non-zero) port. The loops' sockets carry SO_REUSEPORT, which would let
 * a second origin share the port of a running one (same user) instead of
 * failing. Returns 0, or -1 with errno set (EADDRINUSE).
 */
static int check_port_free(const struct sockaddr_storage *ss, socklen_t sslen)
{
    int on = 1;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc;

    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (ss->ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    }
    rc = bind(fd, (const struct sockaddr *)ss, sslen);
    if (rc != 0) {
        int err = errno;

        close(fd);
        errno = err;
        return -1;
    }
    close(fd);
    return 0;
}

/* Print `listening on HOST:PORT`. */
static void print_listening(const struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        printf("listening on [%s]:%u\n", host, port_of(ss));
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        printf("listening on %s:%u\n", host, port_of(ss));
    }
    fflush(stdout);
}

/* Raise the soft descriptor limit to the hard one; 10k clients need it. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            fprintf(stderr, "slow-origin: setrlimit(RLIMIT_NOFILE): %s\n",
                    strerror(errno));
        }
    }
}

int main(int argc, char **argv)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    char err[512];
    struct event_base *base;
    struct event *sigint_ev;
    struct event *sigterm_ev;

    parse_args(argc, argv);
    if (resolve_listen(&ss, &sslen, err, sizeof(err)) != 0) {
        fprintf(stderr, "slow-origin: --listen: %s\n", err);
        return 2;
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(filler); i++) {
        filler[i] = alphabet[i % 64];
    }

    /* Every event base reads this: timers on CLOCK_MONOTONIC, not the 4 ms
     * coarse clock. */
    setenv("EVENT_PRECISE_TIMER", "1", 0);
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "slow-origin: cannot initialise libevent threads\n");
        return 1;
    }
    if (port_of(&ss) != 0 && check_port_free(&ss, sslen) != 0) {
        fprintf(stderr, "slow-origin: cannot listen on %s: %s\n", conf.listen,
                strerror(errno));
        return 1;
    }
    /* Loop 0 binds first; with port 0 the others bind the port it got. */
    for (int i = 0; i < conf.threads; i++) {
        if (origin_loop_init(&loops[i], &ss, sslen, err, sizeof(err)) != 0) {
            fprintf(stderr, "slow-origin: %s\n", err);
            return 1;
        }
        if (i == 0 && bound_address(loops[0].htp, &ss, &sslen) != 0) {
            fprintf(stderr, "slow-origin: getsockname: %s\n", strerror(errno));
            return 1;
        }
    }
    base = loops[0].base;
    sigint_ev = evsignal_new(base, SIGINT, on_signal, NULL);
    sigterm_ev = evsignal_new(base, SIGTERM, on_signal, NULL);
    if (sigint_ev == NULL || sigterm_ev == NULL ||
        evsignal_add(sigint_ev, NULL) != 0 ||
        evsignal_add(sigterm_ev, NULL) != 0) {
        fprintf(stderr, "slow-origin: cannot install signal handlers\n");
        return 1;
    }
    /* Threads start with every signal blocked: the main loop takes them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (int i = 1; i < conf.threads; i++) {
        int rc = pthread_create(&loops[i].thread, NULL, origin_loop_run,
                                &loops[i]);

        if (rc != 0) {
            fprintf(stderr, "slow-origin: cannot start a thread: %s\n",
                    strerror(rc));
            return 1;
        }
        loops[i].started = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* Only now: a SIGTERM sent as soon as this is read must find the
     * handlers in (it killed the process), and the threads started. */
    print_listening(&ss);

    event_base_dispatch(base);

    /* Stop the other loops (each closes its connections), then this one.
     * loopexit, not loopbreak: a thread that has not entered its loop yet
     * would lose a break (the loop clears it when it starts), and main
     * would wait for it for ever; loopexit is an event, kept till then. */
    for (int i = 1; i < conf.threads; i++) {
        event_base_loopexit(loops[i].base, NULL);
    }
    for (int i = 1; i < conf.threads; i++) {
        if (loops[i].started) {
            pthread_join(loops[i].thread, NULL);
        }
    }
    event_free(sigint_ev);
    event_free(sigterm_ev);
    origin_loop_free(&loops[0]);
    libevent_global_shutdown();
    return 0;
}
