/*
 * session: the relay between one client and the upstreams it is served by.
 *
 *  client ──► client bufferevent (input held under buffer_size)
 *               │ request parser (http-parser, REQUEST); head stored whole
 *               │ head complete → checks → route → injected latency (timer)
 *               ▼
 *             pool: balancer picks a server → idle connection or connect
 *               │ request head regenerated (http1_write_request)
 *               │ body streamed: parsed only while the upstream's output
 *               │ holds less than buffer_size; its write callback resumes
 *               ▼
 *           upstream bufferevent (input held under buffer_size)
 *               │ response parser (RESPONSE); head regenerated for the client
 *               │ body streamed, re-framed: parsed only while the client's
 *               │ output holds less than buffer_size; its write callback
 *               │ resumes
 *               ▼
 *             exchange done → access log line → connection back to the pool
 *             (if clean) → next pipelined request, keep-alive wait or close
 *             (or, after a 101 to a WebSocket upgrade: a byte tunnel both
 *             ways, tunnel_relay, until either side closes or idles out)
 *
 * Every callback ends in session_flush(): what it queued for either side is
 * written at once (side_flush), and only a remainder turns on libevent's
 * write event, so a fast exchange costs no epoll_ctl for writing. Both
 * bufferevents read with one recv each (sockread), and a pooled upstream
 * connection keeps its read event from one exchange to the next: a fast
 * exchange is two recv and two writev.
 *
 * Backpressure lives in client_process() and upstream_process(): neither
 * consumes its input while the peer's output is above high water; they turn
 * that side's reads off (relay_pause) until the peer's write callback fires
 * below half (relay_resume). Input nothing takes is also capped near
 * buffer_size (side_bound_input). Memory per session is thus a few
 * buffer_sizes whatever the size of a body or the speed of a reader.
 *
 * Callbacks of the parsers never close the session (the parser lives inside
 * it): they record what happened and the code after http_parser_execute()
 * acts. Every path that may close returns -1, after which the caller
 * returns without touching the session. session_close() is the one exit.
 */
#include "session.h"

#include <errno.h>
#include <linux/sockios.h>
#include <math.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "accesslog.h"
#include "http1.h"
#include "log.h"
#include "pool.h"
#include "sockread.h"
#include "stats.h"
#include "util.h"
#include "worker.h"

/* Where the request direction is. */
enum client_state {
    CLIENT_IDLE,         /* between requests: keep-alive timer */
    CLIENT_READING_HEAD, /* header deadline running */
    CLIENT_WAITING,      /* head complete; the body waits for an upstream */
    CLIENT_READING_BODY, /* the rest of the request streams upstream */
    CLIENT_REQUEST_DONE, /* request read whole; the response is under way */
    CLIENT_CLOSING,      /* flushing a last response, then close */
    CLIENT_LINGERING,    /* answered and half-closed: discard until EOF */
    CLIENT_TUNNEL,       /* after 101: bytes relayed as they are */
};

/* Where the response direction is. */
enum upstream_state {
    UPSTREAM_NONE,
    UPSTREAM_LATENCY,        /* injected latency timer running */
    UPSTREAM_CONNECTING,     /* connect timer running */
    UPSTREAM_READING_HEAD,   /* waiting for the response head */
    UPSTREAM_STREAMING_BODY, /* relaying the response body */
    UPSTREAM_TUNNEL,         /* after 101: bytes relayed as they are */
};

/* What the session's one timer is waiting for. */
enum session_timer {
    TIMER_NONE,
    TIMER_HEADER,    /* client_header_timeout: deadline for a whole head */
    TIMER_KEEPALIVE, /* keepalive_timeout: idle client between requests */
    TIMER_LATENCY,   /* injected latency before forwarding */
    TIMER_LINGER,    /* the most a lingering close may last */
    TIMER_TUNNEL,    /* tunnel_timeout: nothing relayed either way */
};

/* What a parser callback saw, for the code after http_parser_execute(). */
enum parsed {
    PARSED_NOTHING,
    PARSED_HEAD,    /* a head complete, either side's (parser paused) */
    PARSED_MESSAGE, /* message complete (parser paused) */
};

/* One side of a session: a socket with its parser and stored head. */
struct side {
    struct bufferevent *bev;
    http_parser parser;
    struct http1_head head;
    enum parsed parsed;
    struct http1_scan scan; /* raw checks on the head being read */
    struct http1_chunks chunks; /* and on a chunked body */
    int read_err;       /* errno of a failed side_fill, for the event cb */
    int write_err;      /* errno of a failed write whose answer is read on */
    bool head_lf_pending; /* the head's last LF is still unparsed */
    bool paused;        /* reads off: the peer's output is above high water */
    bool held;          /* reads off: the input holds buffer_size untaken */
    bool writing;       /* a remainder is queued: libevent's write event on */
    uint64_t acked;     /* the peer's bytes_acked when sending last stalled */
    uint64_t bytes_in;  /* this exchange */
    uint64_t bytes_out; /* this exchange */
};

/* A client connection and the exchange in progress on it. */
struct session {
    struct worker *w;
    struct side client;
    struct side upstream; /* bev borrowed from conn */
    enum client_state cstate;
    enum upstream_state ustate;
    struct upconn *conn;
    struct pool *pool;
    int route;           /* index of the route the exchange took, or -1 */
    enum session_timer timer_kind;
    struct event *timer;

    /* The exchange in progress. */
    int method;
    int http_major, http_minor;
    const char *target; /* origin-form, inside client.head */
    size_t target_len;
    const char *authority; /* from an absolute-form target */
    size_t authority_len;
    enum http1_body req_body;
    enum http1_body req_framing; /* sent upstream: req_body, or a length 0 */
    enum http1_body framing;     /* of the response to the client */
    int status;
    double t_activity;    /* last byte relayed through the tunnel */
    /* Bytes the client and the upstream had acknowledged at the last look
     * (tunnel_kernel_progress), and when that was. */
    uint64_t tunnel_acked[2];
    double acked_at;
    int attempts;         /* retries to other servers (retries =) */
    int fault_abort;    /* status answered when it ends (fault_delay first) */
    uint64_t tried;       /* servers tried by this exchange, bit per index */
    /* The servers the request went to before the current one, in order,
     * as "a,b" for the access log; NULL until a retry (rare: heap). */
    char *sent_before;
    uint64_t hash_key;    /* balance = hash */
    /* A Content-Length response body relayed without the parser: the
     * bytes still to come (bufferevent chains move, nothing is copied). */
    uint64_t body_left;
    uint64_t body_received;
    struct http1_error error; /* set by a failing parser callback */
    double t_start, t_head, t_forward, t_connected, t_first_byte;
    double t_accept;
    double latency_ms;
    double latency_due; /* util_now_ms() when the injected latency ends */
    const char *close_reason;

    /* Independent facts about the exchange and the connection. */
    bool in_exchange;   /* bytes of a request arrived */
    bool logged;        /* its access log line is written */
    /* The response body is chunked (by its head; the parser's F_CHUNKED
     * goes when a trailer names Transfer-Encoding): its framing is
     * checked with http1_chunks_scan to the end. */
    bool resp_chunked;
    bool resp_until_close; /* the response body ends when the upstream closes */
    bool keep_alive;       /* the client connection outlives it */
    bool expect_continue;
    bool upgrade;          /* the request asks for a WebSocket tunnel */
    bool tunnel;           /* the upstream agreed: 101 */
    bool acked_probing; /* idle by t_activity, bytes queued: looked once */
    bool interim;          /* the response being parsed is a 1xx */
    bool response_started; /* a final response head went to the client */
    bool retried;          /* sent again on a fresh connection once */
    bool upstream_eof;
    bool client_eof;
    /* The client closed while its request's body waited with it: whether
     * it gave up is known once that body is read (request_done). */
    bool eof_while_waiting;
    /* This request was pipelined: it was already read when the one before
     * it on the connection ended. */
    bool pipelined;
    bool body_direct;   /* the response body moves without the parser */
    bool latency_waited; /* it ended (the access log shows it) */
    bool linger;    /* mid-request or requests queued at close_after_flush,
                     * or bytes came while its last answer was written */
    bool discarding; /* closing: what the client sends is read and dropped */
    bool too_slow;  /* answered 408: a client that slow is not waited for */
    bool idle;      /* in w->idle */

    /* "ip:port" or "[ip]:port"; the address alone is client_addr +
     * client_ip_at, client_ip_len bytes. */
    uint8_t client_ip_at;
    uint8_t client_ip_len;
    uint8_t interims; /* 1xx responses before this exchange's final one */
    char client_addr[INET6_ADDRSTRLEN + 8];
    TAILQ_ENTRY(session) link;
    TAILQ_ENTRY(session) idle_link; /* in w->idle while its keep-alive
                                     * timer runs (not while draining) */
};

static int client_process(struct session *s);
static int upstream_process(struct session *s);
static int upstream_start(struct session *s);
static int upstream_connect(struct session *s, struct pool_server *server,
                            int fresh);
static void client_body_start(struct session *s);
static int session_close(struct session *s, const char *reason);
static int client_done(struct session *s);
static int session_flush(struct session *s);
static int upstream_error(struct session *s, int err);
static int tunnel_start(struct session *s);
static int tunnel_relay(struct session *s, struct side *from, struct side *to);

static void exchange_ready(struct session *s);
static const http_parser_settings request_settings;

static const char *const TERM_DONE = "done";

/* ---- timers ------------------------------------------------------------ */

/* Out of w->idle: the keep-alive timer stopped (or never ran). */
static void idle_leave(struct session *s)
{
    if (s->idle) {
        TAILQ_REMOVE(&s->w->idle, s, idle_link);
        s->idle = 0;
    }
}

static void timer_set(struct session *s, enum session_timer kind,
                      const struct timeval *tv)
{
    s->timer_kind = kind;
    evtimer_add(s->timer, tv);
}

static void timer_cancel(struct session *s)
{
    if (s->timer_kind != TIMER_NONE) {
        evtimer_del(s->timer);
        s->timer_kind = TIMER_NONE;
        if (s->idle) {
            idle_leave(s);
            worker_session_busy(s->w); /* it may have let accepting on */
        }
    }
}

/* ---- the relay's switch ------------------------------------------------ */

/*
 * Stop reading a side whose peer cannot take more (its output holds
 * buffer_size), and start again once it drained below half. Turning reads
 * off also stops that side's read timer, so a slow reader on one side never
 * trips an idle timeout on the other. Reads are switched in this section
 * only: this pair for backpressure, side_bound_input for unread input, and
 * side_reads_on where libevent turned them off (a read timeout). Elsewhere
 * they are only turned on as a side starts (a new client, a connection
 * lent or connected), and off for good as the client's side closes.
 */
static void relay_pause(struct side *side)
{
    if (!side->paused) {
        side->paused = 1;
        if (!side->held) {
            bufferevent_disable(side->bev, EV_READ);
        }
    }
}

static void relay_resume(struct side *side)
{
    if (side->paused) {
        side->paused = 0;
        if (!side->held) {
            bufferevent_enable(side->bev, EV_READ);
        }
    }
}

/* Reads back on after libevent turned them off, unless paused or held. */
static void side_reads_on(struct side *side)
{
    if (!side->paused && !side->held) {
        bufferevent_enable(side->bev, EV_READ);
    }
}

/*
 * Reads stop while a side's input holds high bytes or more that nothing
 * takes (requests pipelined behind one in progress, a response held back),
 * and start again once it holds less. libevent's read high-water mark does
 * the same through a callback on every change to the input, each of which
 * re-arms the read event and its timeout: 9 of the 15 event_adds per
 * exchange, and 25,400 instructions per exchange against 21,900 without
 * it (callgrind, bench/README.md). Checked as every
 * callback ends (session_flush); a read adds at most 4 KiB to the input,
 * or fills it to one byte under high (side_fill).
 */
static void side_bound_input(struct side *side, size_t high)
{
    int full = evbuffer_get_length(bufferevent_get_input(side->bev)) >= high;
    if (full != side->held) {
        side->held = full;
        if (side->paused) {
            return; /* reads are off anyway; relay_resume sees held */
        }
        if (full) {
            bufferevent_disable(side->bev, EV_READ);
        } else {
            bufferevent_enable(side->bev, EV_READ);
        }
    }
}

/* Drop what is queued for side's peer (its output's start is frozen, as
 * side_flush says). */
static void side_discard_output(struct side *side)
{
    struct evbuffer *out = bufferevent_get_output(side->bev);
    evbuffer_unfreeze(out, 1);
    evbuffer_drain(out, evbuffer_get_length(out));
    evbuffer_freeze(out, 1);
}

/*
 * Writes are optimistic: what a callback queued for a peer is written at
 * its end, without waiting to hear that the socket is writable (it nearly
 * always is). Only a remainder turns on the bufferevent's write event, and
 * with it send_timeout; once libevent has drained it (on_*_write) the event
 * goes off again. This spares two epoll_ctl calls per direction per
 * exchange. Returns 0, or -1 with errno when the write failed.
 */
static int side_flush(struct side *side, int peer_paused)
{
    struct evbuffer *out = bufferevent_get_output(side->bev);
    if (side->writing) {
        return 0;
    }
    if (evbuffer_get_length(out) > 0) {
        /* A socket bufferevent keeps its output's start frozen except
         * while its own write callback writes; do as it does. */
        evbuffer_unfreeze(out, 1);
        int n = evbuffer_write(out, bufferevent_getfd(side->bev));
        int err = errno;
        evbuffer_freeze(out, 1);
        if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
            errno = err;
            return -1;
        }
    }
    if (evbuffer_get_length(out) > 0) {
        side->writing = 1;
        util_tcp_bytes_acked(bufferevent_getfd(side->bev), &side->acked);
        bufferevent_enable(side->bev, EV_WRITE);
    } else if (peer_paused) {
        /* The peer waits for this output to drain, and it has: let the
         * write callback resume it on the next loop turn rather than
         * relaying a whole body in one callback. Deferred, not through
         * the write event: libevent drops the write event of an empty
         * output when this runs in the callback of a completed connect,
         * and the write callback never came (an upload paused during the
         * connect stalled). `writing` stays 0: it means a remainder is
         * queued on the write event, and bytes queued before the callback
         * comes are written at once like any others. (Set here, it made
         * side_flush skip them, and the callback found them and left the
         * flag up with no write event on: a pipelined upload's tail stayed
         * in the output for good.) */
        bufferevent_trigger(side->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS |
                                BEV_TRIG_DEFER_CALLBACKS);
    }
    return 0;
}

/* Shorten v[0..n) to total bytes in all; how many of them hold some. */
static int vecs_trim(struct evbuffer_iovec *v, int n, size_t total)
{
    int used = 0;
    for (; used < n && total > 0; used++) {
        if (v[used].iov_len > total) {
            v[used].iov_len = total;
        }
        total -= v[used].iov_len;
    }
    return used;
}

/*
 * A bufferevent's read (sockread) takes at most 4 KiB: a body streaming in
 * faster than that would cost three system calls per 4 KiB (recv, writev,
 * epoll_wait). When the input holds a full read, read what else is ready
 * here, in one readv, up to one byte under buffer_size (at it,
 * side_bound_input would stop reading and start again, two epoll_ctl per
 * turn). The room is reserved
 * for what FIONREAD says is there, so that the input's chains are sized to
 * what came: reserving buffer_size blindly would leave mostly empty 64 KiB
 * chains, which a relay moves whole into the peer's output. An error is
 * noted for the event callback and for reuse (an EOF cannot come here:
 * FIONREAD said there were bytes, and sockread's next read sees it).
 */
static void side_fill(struct side *side, size_t high)
{
    struct evbuffer *in = bufferevent_get_input(side->bev);
    size_t have = evbuffer_get_length(in);
    int fd = bufferevent_getfd(side->bev);
    int ready = 0;
    if (have < SOCKREAD_MAX || have + 1 >= high || side->read_err != 0 ||
        ioctl(fd, FIONREAD, &ready) < 0 || ready <= 0) {
        return;
    }
    size_t room = high - have - 1;
    if ((size_t)ready < room) {
        room = (size_t)ready;
    }
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    /* The input's end is frozen but while the bufferevent reads (as the
     * output's start is, side_flush). */
    evbuffer_unfreeze(in, 0);
    int used = vecs_trim(
        v, evbuffer_reserve_space(in, (ev_ssize_t)room, v, 2), room);
    for (int i = 0; i < used; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    ssize_t got = used > 0 ? readv(fd, iov, used) : 0;
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        side->read_err = errno;
    }
    int full = vecs_trim(v, used, got > 0 ? (size_t)got : 0);
    if (full > 0) {
        evbuffer_commit_space(in, v, full);
    }
    evbuffer_freeze(in, 0);
}

/*
 * The send timeout (timeout_ms) of a side fired: its socket has not turned
 * writable for that long. Linux reports a socket writable only once half
 * its send queue is free, and a send buffer autotuned to megabytes can
 * take longer than the timeout to drain halfway to a peer that reads
 * steadily but slowly. So a peer that has acknowledged at least a byte per
 * millisecond of the timeout since the write event was armed, or since the
 * last such check, gets the timeout again (1 here); one that read less
 * times out. A peer that stops reading is thus cut between one and two
 * timeouts after its last read, and one that reads a byte now and then
 * cannot hold its connection and buffers for ever. A peer's stack opens
 * its window in steps of about half its receive buffer: one reading
 * slower than that per timeout shows no progress for a whole timeout and
 * is cut too (the docs say so; nginx's send_timeout cuts it sooner).
 */
static int side_still_reading(struct side *side, int timeout_ms)
{
    uint64_t acked;
    if (util_tcp_bytes_acked(bufferevent_getfd(side->bev), &acked) < 0 ||
        acked < side->acked + (uint64_t)timeout_ms) {
        return 0;
    }
    side->acked = acked;
    bufferevent_enable(side->bev, EV_WRITE); /* libevent turned it off */
    return 1;
}

/* libevent has drained a remainder: back to optimistic writes. */
static void side_drained(struct side *side)
{
    if (side->writing &&
        evbuffer_get_length(bufferevent_get_output(side->bev)) == 0) {
        side->writing = 0;
        bufferevent_disable(side->bev, EV_WRITE);
    }
}

/* Pieces of an input smaller than this are copied to the peer's output
 * rather than moved (relay_move). */
#define RELAY_MOVE_MIN 2048

/*
 * Move up to n bytes (no more than in holds) from in to out, a relay's
 * step; how many moved. The input's chains hold what each read brought,
 * in a block sized to it (1 KiB at least): moved whole, a peer trickling
 * small segments to a reader that does not keep up would leave out
 * holding a 1 KiB block per segment, up to buffer_size of bytes (a second
 * reviewer measured 3 MB per stalled client behind 20-byte segments with
 * buffer_size 64k; 150 KiB now). So a chain is moved only when it holds
 * RELAY_MOVE_MIN bytes or more; smaller pieces are copied into out's last
 * block. What is moved can still sit in a block up to twice its size
 * (libevent rounds blocks up to a power of two), and a small piece copied
 * after a full block gets a new block as large: out holds at most about
 * twice its bytes. Stops short only out of memory, or if in holds less
 * than n (*failed set either way).
 */
static size_t relay_move(struct evbuffer *in, struct evbuffer *out, size_t n,
                         int *failed)
{
    size_t moved = 0;
    *failed = 0;
    while (moved < n) {
        struct evbuffer_iovec first;
        if (evbuffer_peek(in, -1, NULL, &first, 1) < 1 ||
            first.iov_len == 0) {
            *failed = 1; /* in held less than n, or an empty first block:
                            neither can happen; never loop on it */
            break;
        }
        size_t k = first.iov_len < n - moved ? first.iov_len : n - moved;
        if (k >= RELAY_MOVE_MIN) {
            if (evbuffer_remove_buffer(in, out, k) != (int)k) {
                *failed = 1;
                break;
            }
        } else if (evbuffer_add(out, first.iov_base, k) < 0) {
            *failed = 1;
            break;
        } else {
            evbuffer_drain(in, k);
        }
        moved += k;
    }
    return moved;
}

/*
 * The hard cap on what a session may hold queued for one peer. The relay
 * keeps each output near buffer_size by construction, plus a regenerated
 * head (up to max_header_size and the fields the proxy adds), which goes
 * out whole; this catches anything that would get past them, closing the
 * session instead of growing.
 */
static int over_buffer_cap(struct session *s, struct bufferevent *out)
{
    size_t cap = 2 * s->w->cfg->buffer_size + s->w->cfg->max_header_size +
                 65536;
    if (out == NULL || evbuffer_get_length(bufferevent_get_output(out)) <= cap) {
        return 0;
    }
    s->w->n_buffer_cap++;
    log_warn("%s: more than %zu bytes queued: closing (%llu so far)",
             s->client_addr, cap, (unsigned long long)s->w->n_buffer_cap);
    return 1;
}

/* ---- exchange bookkeeping ---------------------------------------------- */

static double since(double from, double to)
{
    return (from < 0 || to < 0) ? -1 : to - from;
}

/* The exchange's method, as the client sent it (client_method). */
static const char *method_name(const struct session *s)
{
    return http1_method_name(&s->client.head, s->method);
}

/* Bytes read from the client (n) and queued for it: the exchange's, for
 * its access log line, and the worker's counters at once, so that /metrics
 * follows a long download or a tunnel as it runs (it moved only when the
 * exchange ended, and not at all for a worker killed mid-exchange). */
static void count_in(struct session *s, size_t n)
{
    s->client.bytes_in += n;
    s->w->stats->counter[STAT_BYTES_IN] += n;
}

static void count_out(struct session *s, size_t n)
{
    s->client.bytes_out += n;
    s->w->stats->counter[STAT_BYTES_OUT] += n;
}

/* Write the access log line of the exchange in progress, once. */
static void exchange_log(struct session *s, const char *term)
{
    if (!s->in_exchange || s->logged) {
        return;
    }
    s->logged = 1;
    double now = util_now_ms();
    /* The injected latency was waited out: the request was forwarded
     * after it, or answered with a fault's abort (t_connected and
     * t_first_byte are set only after forwarding). */
    int injected = s->t_forward >= 0 || s->latency_waited;
    /* The parser pauses on the head's last LF: read, and counted once it
     * is parsed, which an exchange answered by the proxy never does. */
    int lf = s->t_head >= 0 && s->client.head_lf_pending;
    struct accesslog_entry e = {
        .client = s->client_addr,
        .method = s->t_head >= 0 ? method_name(s) : NULL,
        .target = s->t_head >= 0 ? s->target : NULL,
        .target_len = (int)s->target_len,
        .http_major = s->http_major,
        .http_minor = s->http_minor,
        .status = s->status,
        .bytes_in = s->client.bytes_in + (uint64_t)lf,
        .bytes_out = s->client.bytes_out,
        .upstream_before = s->sent_before,
        .upstream = s->conn ? s->conn->server->name : NULL,
        .head_ms = since(s->t_start, s->t_head),
        .latency_ms = injected ? s->latency_ms : -1,
        .connect_ms = since(s->t_forward, s->t_connected),
        .first_byte_ms = since(s->t_forward, s->t_first_byte),
        .total_ms = since(s->t_start, now),
        .term = term,
    };
    accesslog_write(s->w->access_log, &e);

    struct stats_slot *st = s->w->stats;
    if (s->status >= 100 && s->status < 600) {
        st->counter[STAT_RESP_1XX + s->status / 100 - 1]++;
    }
    st->counter[STAT_BYTES_IN] += (uint64_t)lf;
    if (s->pool != NULL && injected) {
        struct stats_pool *sp =
            worker_pool_stats(s->w, (int)(s->pool->cfg - s->w->cfg->upstreams));
        stats_observe(&sp->hist[STAT_H_INJECTED], s->latency_ms);
        if (s->t_forward >= 0) {
            stats_observe(&sp->hist[STAT_H_DURATION], since(s->t_head, now));
        }
        if (s->t_connected >= 0) {
            stats_observe(&sp->hist[STAT_H_CONNECT],
                          since(s->t_forward, s->t_connected));
        }
        if (s->t_first_byte >= 0) {
            stats_observe(&sp->hist[STAT_H_FIRST_BYTE],
                          since(s->t_forward, s->t_first_byte));
        }
    }
}

/* Forget the finished exchange; keep the buffers. */
static void exchange_reset(struct session *s)
{
    s->in_exchange = s->logged = 0;
    s->status = 0;
    s->response_started = s->expect_continue = s->interim = 0;
    s->interims = 0;
    s->upgrade = s->tunnel = 0;
    s->retried = s->upstream_eof = 0;
    s->attempts = 0;
    s->tried = 0;
    free(s->sent_before);
    s->sent_before = NULL;
    s->body_direct = 0;
    s->body_left = 0;
    s->body_received = 0;
    s->error.status = 0;
    s->error.reason = NULL;
    s->client.bytes_in = s->client.bytes_out = 0;
    s->upstream.bytes_in = s->upstream.bytes_out = 0;
    s->client.parsed = s->upstream.parsed = PARSED_NOTHING;
    http1_scan_reset(&s->client.scan);
    s->t_start = s->t_head = s->t_forward = s->t_connected = -1;
    s->t_first_byte = -1;
    s->latency_ms = 0;
    s->latency_waited = 0;
    s->fault_abort = 0;
    s->target = s->authority = NULL;
    s->target_len = s->authority_len = 0;
    s->pool = NULL;
    s->route = -1;
    s->ustate = UPSTREAM_NONE;
    s->req_body = HTTP1_BODY_NONE;
    s->req_framing = HTTP1_BODY_NONE;
    s->framing = HTTP1_BODY_NONE;
    s->resp_chunked = 0;
    s->resp_until_close = 0;
    s->eof_while_waiting = 0;
    s->pipelined = 0;
}

/* Let go of the upstream connection: back to its pool if clean. */
static void upstream_detach(struct session *s, int reusable)
{
    if (s->conn == NULL) {
        return;
    }
    if (reusable) {
        pool_release(s->conn);
    } else {
        pool_conn_free(s->conn);
    }
    s->conn = NULL;
    s->upstream.bev = NULL;
}

/* ---- the one exit ------------------------------------------------------ */

static int session_close(struct session *s, const char *reason)
{
    idle_leave(s);
    if (s->in_exchange && !s->logged && s->client.bev != NULL) {
        /* What is still queued here goes with the connection: not sent,
         * so not counted as sent (nginx's $bytes_sent counts what the
         * kernel took). The output's tail is this exchange's; an answer
         * before it may still be ahead of it. */
        uint64_t unsent =
            evbuffer_get_length(bufferevent_get_output(s->client.bev));
        if (unsent > s->client.bytes_out) {
            unsent = s->client.bytes_out;
        }
        s->client.bytes_out -= unsent;
        s->w->stats->counter[STAT_BYTES_OUT] -= unsent;
    }
    exchange_log(s, reason);
    log_debug("session %s closed: %s", s->client_addr, reason);
    if (s->timer != NULL) {
        event_free(s->timer);
    }
    upstream_detach(s, 0);
    if (s->client.bev != NULL) {
        bufferevent_free(s->client.bev);
    }
    http1_head_deinit(&s->client.head);
    http1_head_deinit(&s->upstream.head);
    free(s->sent_before);
    struct worker *w = s->w;
    TAILQ_REMOVE(&w->sessions, s, link);
    free(s);
    worker_session_closed(w);
    return -1;
}

void session_abort(struct session *s, const char *reason)
{
    session_close(s, reason);
}

int session_close_idle(struct worker *w)
{
    struct session *s = TAILQ_FIRST(&w->idle);
    if (s == NULL) {
        return 0;
    }
    session_close(s, "max_connections");
    return 1;
}

/* Drop the client's input, and read on (unbounded) to drop what comes. */
static void client_discard_input(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client.bev);
    s->client.paused = 0;
    s->client.held = 0;
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_enable(s->client.bev, EV_READ);
}

/* Close once what is queued for the client has been written. */
static int close_after_flush(struct session *s, const char *reason)
{
    timer_cancel(s);
    /* Mid-request, or with more requests queued: the client may be
     * sending still (client_done decides). So may a tunnel's client that
     * has not closed: the upstream's last bytes must not be lost to a
     * reset by closing on what it sends (they were). */
    int tunnel = s->cstate == CLIENT_TUNNEL;
    s->linger = tunnel ? !s->client_eof
                       : s->cstate == CLIENT_READING_HEAD ||
                             s->cstate == CLIENT_WAITING ||
                             s->cstate == CLIENT_READING_BODY ||
                             evbuffer_get_length(bufferevent_get_input(
                                 s->client.bev)) > 0;
    s->cstate = CLIENT_CLOSING;
    s->close_reason = reason;
    s->discarding = !s->too_slow && !s->client_eof;
    if (s->discarding) {
        /* What the client still sends (the rest of a body, requests
         * behind this answer, read or not yet) is read and dropped while
         * the answer is written, as nginx discards a body: a client that
         * reads only once it has sent everything would otherwise stall
         * on a full socket, with an answer larger than the buffers never
         * read. A byte dropped so makes the close a lingering one. */
        client_discard_input(s);
    } else {
        s->client.held = 0; /* reads stay off for good */
        bufferevent_disable(s->client.bev, EV_READ);
    }
    bufferevent_set_timeouts(s->client.bev, NULL, s->w->tv.send);
    if (evbuffer_get_length(bufferevent_get_output(s->client.bev)) == 0) {
        return client_done(s);
    }
    return 0;
}

/*
 * The last answer is flushed: close, or linger first.
 *
 * Lingering close (RFC 9112 9.6): a client whose request was cut short by
 * our answer may still be sending. Closing with its bytes unread would
 * reset the connection, and a reset can destroy the answer before the
 * client reads it. So the answer is followed by a FIN, and what the client
 * still sends is read and dropped until it closes, it pauses for
 * lingering_timeout, or lingering_time passes (as nginx's directives of
 * those names; the same defaults, 5s and 30s). So with a tunnel the
 * upstream ended while the client may still send. Not for a client that
 * has closed already, or one answered 408 (too slow to wait for).
 */
static int client_done(struct session *s)
{
    evutil_socket_t fd = bufferevent_getfd(s->client.bev);
    int ready = 0;
    if (s->client_eof || s->too_slow || s->w->cfg->lingering_timeout_ms == 0 ||
        (!s->linger && (ioctl(fd, FIONREAD, &ready) < 0 || ready <= 0)) ||
        shutdown(fd, SHUT_WR) < 0) {
        /* Nothing more can come (requests still in the kernel's buffer
         * count as coming), or nothing need be waited for. */
        return session_close(s, s->close_reason);
    }
    s->cstate = CLIENT_LINGERING;
    client_discard_input(s);
    bufferevent_set_timeouts(s->client.bev, s->w->tv.linger_idle, NULL);
    timer_set(s, TIMER_LINGER, s->w->tv.linger_max);
    return 0;
}

/*
 * May the client connection outlive an answer of our own (reply_error)?
 * As with nginx, after a request that went wrong elsewhere (no route, no
 * server, an upstream that failed or timed out, an injected fault), not
 * after one refused for what it was (term "bad_request", a client's
 * timeout or close, our out of memory): what follows such a request on
 * the connection cannot be trusted to start a request. And only with the
 * request read whole, or nothing of it left but its head's last LF (no
 * body): a body not yet read would have to be read to its end first, and
 * is not (the connection closes, discarding it, as before). A client that
 * half-closed keeps keep_alive only with requests queued behind this one
 * (on_client_event): they are answered, as after a relayed response.
 */
static int answer_keeps_alive(const struct session *s, const char *term)
{
    if (!s->keep_alive || s->t_head < 0 ||
        strcmp(term, "bad_request") == 0 ||
        strcmp(term, "internal_error") == 0 ||
        strncmp(term, "client_", 7) == 0) {
        return 0;
    }
    return s->cstate == CLIENT_REQUEST_DONE ||
           (s->cstate == CLIENT_WAITING && s->req_body == HTTP1_BODY_NONE &&
            s->client.head_lf_pending);
}

/*
 * A bodyless request answered by the proxy while its head's last LF waited
 * unparsed (the parser pauses on it: on_req_headers_complete): parse it,
 * which completes the message, so that the parser starts the next request
 * at its first byte; the LF is counted, before the exchange is logged.
 * Returns -1 if the parser did not end the message there (the connection
 * then closes).
 */
static int request_end_at_head(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client.bev);
    char lf;
    if (evbuffer_copyout(in, &lf, 1) != 1) {
        return -1;
    }
    http_parser *p = &s->client.parser;
    size_t n = http_parser_execute(p, &request_settings, &lf, 1);
    if (n != 1 || HTTP_PARSER_ERRNO(p) != HPE_PAUSED ||
        s->client.parsed != PARSED_MESSAGE) {
        return -1;
    }
    http_parser_pause(p, 0);
    s->client.parsed = PARSED_NOTHING;
    s->client.head_lf_pending = 0;
    evbuffer_drain(in, 1);
    count_in(s, 1);
    s->cstate = CLIENT_REQUEST_DONE;
    return 0;
}

/*
 * Answer the exchange with an error of our own (status and a one-line
 * reason): the connection then goes on to the next request where
 * answer_keeps_alive allows, and closes otherwise. If a response has
 * already started, the client connection is closed instead: it must never
 * see a complete-looking one.
 */
static int reply_error(struct session *s, int status, const char *term,
                       const char *reason)
{
    if (s->response_started) {
        /* Deliver what the client already has coming, then cut it off. */
        exchange_log(s, term);
        upstream_detach(s, 0);
        s->ustate = UPSTREAM_NONE;
        return close_after_flush(s, term);
    }
    struct evbuffer *out = bufferevent_get_output(s->client.bev);
    size_t before = evbuffer_get_length(out);
    /* The method is this exchange's once its head is in (t_head), and
     * the parser's once the request line has reached its target. */
    int method = s->t_head >= 0 ? s->method
                 : s->in_exchange && s->client.head.target_len > 0
                     ? (int)s->client.parser.method
                     : -1;
    if (s->t_head < 0) {
        /* A head refused before it was read whole: the bytes read of it
         * (and any behind it, dropped with it) count as the exchange's,
         * not only those the parser had taken (the access log's bytes in
         * were 3 for "BAD REQUEST\r\n\r\n"). */
        count_in(s, evbuffer_get_length(bufferevent_get_input(s->client.bev)));
    }
    int keep = answer_keeps_alive(s, term);
    if (keep && s->cstate == CLIENT_WAITING) {
        keep = request_end_at_head(s) == 0;
    }
    int flags = (method == HTTP_HEAD ? HTTP1_ERROR_HEAD_ONLY : 0) |
                (keep ? HTTP1_ERROR_KEEP_ALIVE : 0) |
                (keep && s->http_minor == 0 ? HTTP1_ERROR_HTTP10 : 0);
    if (http1_write_error(out, status, reason, flags) < 0) {
        keep = 0; /* out of memory: nothing was queued */
    }
    count_out(s, evbuffer_get_length(out) - before);
    s->status = status;
    s->response_started = 1;
    s->in_exchange = 1;
    exchange_log(s, term);
    upstream_detach(s, 0);
    s->ustate = UPSTREAM_NONE;
    log_info("%s: answered %d: %s", s->client_addr, status, reason);
    if (keep) {
        /* The next request is read from the client's read callback, not
         * from here: reply_error runs inside client_process too (routing,
         * a 503), and requests pipelined behind answers of our own would
         * each go one call deeper (a stack overflow, thousands of them
         * queued). Inside client_process, its loop takes the next one.
         * A client that half-closed is seen to there too (client_ended),
         * as exchange_end sees it after a relayed response. */
        http1_head_deinit(&s->upstream.head); /* as response_done */
        exchange_ready(s);
        if (evbuffer_get_length(bufferevent_get_input(s->client.bev)) > 0 ||
            s->client_eof) {
            bufferevent_trigger(s->client.bev, EV_READ,
                                BEV_TRIG_IGNORE_WATERMARKS |
                                    BEV_TRIG_DEFER_CALLBACKS);
        }
        return 0;
    }
    return close_after_flush(s, term);
}

/* ---- request parser callbacks ------------------------------------------ */

static int on_req_message_begin(http_parser *p)
{
    struct session *s = p->data;
    http1_head_reset(&s->client.head);
    s->in_exchange = 1;
    return 0;
}

/* The reason of a 500 of our own: compared by address, so that no
 * upstream's error is taken for it. */
static const char out_of_memory[] = "out of memory";

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* The most 1xx responses an exchange takes before its final one (nginx
 * reads none, HAProxy relays any number: one a server might send per
 * stage of a long job, with room to spare). */
#define SESSION_MAX_INTERIM 32

static int head_piece(struct session *s, struct side *side,
                      enum http1_piece kind, const char *at, size_t len,
                      int status, const char *reason)
{
    int rc = http1_head_add(&side->head, kind, at, len);
    if (rc < 0) {
        s->error.status = status;
        s->error.reason = reason;
        if (rc == -3) {
            s->error.status = 500; /* ours, either side's */
            s->error.reason = out_of_memory;
        } else if (rc == -2) {
            /* Not the size: one field more than a head may hold. */
            s->error.reason =
                side == &s->client
                    ? "more than " STRINGIFY(HTTP1_MAX_FIELDS) " header fields"
                    : "upstream sent more than " STRINGIFY(
                          HTTP1_MAX_FIELDS) " header fields";
        }
        return -1;
    }
    return 0;
}

/* The reason of a request head that outgrew its buffer: answered by
 * head_too_large, which tells 414 from 431 by the request line. */
static const char head_over_limit[] = "request head over max_header_size";

static int on_req_url(http_parser *p, const char *at, size_t len)
{
    struct session *s = p->data;
    return head_piece(s, &s->client, HTTP1_PIECE_URL, at, len, 414,
                      head_over_limit);
}

static int on_req_header_field(http_parser *p, const char *at, size_t len)
{
    struct session *s = p->data;
    if (p->flags & F_TRAILING) {
        return 0; /* trailers of a chunked upload are dropped */
    }
    return head_piece(s, &s->client, HTTP1_PIECE_FIELD, at, len, 431,
                      head_over_limit);
}

static int on_req_header_value(http_parser *p, const char *at, size_t len)
{
    struct session *s = p->data;
    if (p->flags & F_TRAILING) {
        return 0;
    }
    return head_piece(s, &s->client, HTTP1_PIECE_VALUE, at, len, 431,
                      head_over_limit);
}

static int on_req_headers_complete(http_parser *p)
{
    struct session *s = p->data;
    http1_head_trim(&s->client.head);
    s->client.parsed = PARSED_HEAD;
    s->client.head_lf_pending = 1;
    http_parser_pause(p, 1);
    return 0;
}

static int on_req_body(http_parser *p, const char *at, size_t len)
{
    struct session *s = p->data;
    uint64_t limit = s->w->cfg->max_body_size;
    s->body_received += len;
    if (limit > 0 && s->body_received > limit) {
        s->error.status = 413;
        s->error.reason = "request body too large";
        return -1;
    }
    if (s->upstream.write_err != 0) {
        return 0; /* the upstream reset, answering: the rest is dropped */
    }
    struct evbuffer *out = bufferevent_get_output(s->upstream.bev);
    if (s->req_body == HTTP1_BODY_CHUNKED) {
        evbuffer_add_printf(out, "%zx\r\n", len);
        evbuffer_add(out, at, len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, at, len);
    }
    return 0;
}

static int on_req_message_complete(http_parser *p)
{
    struct session *s = p->data;
    if (s->req_body == HTTP1_BODY_CHUNKED && s->upstream.write_err == 0) {
        evbuffer_add(bufferevent_get_output(s->upstream.bev), "0\r\n\r\n", 5);
    }
    s->client.parsed = PARSED_MESSAGE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings request_settings = {
    .on_message_begin = on_req_message_begin,
    .on_url = on_req_url,
    .on_header_field = on_req_header_field,
    .on_header_value = on_req_header_value,
    .on_headers_complete = on_req_headers_complete,
    .on_body = on_req_body,
    .on_message_complete = on_req_message_complete,
};

/* ---- response parser callbacks ----------------------------------------- */

static int on_resp_message_begin(http_parser *p)
{
    struct session *s = p->data;
    http1_head_reset(&s->upstream.head);
    return 0;
}

static int on_resp_status(http_parser *p, const char *at, size_t len)
{
    struct session *s = p->data;
    return head_piece(s, &s->upstream, HTTP1_PIECE_STATUS, at, len, 502,
                      "upstream response head too large");
}

static int on_resp_header_field(http_parser *p, const char *at, size_t len)
{
    struct session *s = p->data;
    if (p->flags & F_TRAILING) {
        return 0;
    }
    return head_piece(s, &s->upstream, HTTP1_PIECE_FIELD, at, len, 502,
                      "upstream response head too large");
}

static int on_resp_header_value(http_parser *p, const char *at, size_t len)
{
    struct session *s = p->data;
    if (p->flags & F_TRAILING) {
        return 0;
    }
    return head_piece(s, &s->upstream, HTTP1_PIECE_VALUE, at, len, 502,
                      "upstream response head too large");
}

/* Queue bytes for the client and count them. */
static void client_send(struct session *s, const void *data, size_t len)
{
    evbuffer_add(bufferevent_get_output(s->client.bev), data, len);
    count_out(s, len);
}

/* Queue the client's copy of the response head (http1_write_response) and
 * count it. Out of memory, nothing is queued and the exchange ends with
 * a 500 of our own (upstream_process sees this reason): -1. */
static int client_send_head(struct session *s,
                            const struct http1_response_info *info)
{
    struct evbuffer *out = bufferevent_get_output(s->client.bev);
    size_t before = evbuffer_get_length(out);
    if (http1_write_response(out, &s->upstream.head, info) < 0) {
        s->error.status = 500;
        s->error.reason = out_of_memory;
        return -1;
    }
    count_out(s, evbuffer_get_length(out) - before);
    return 0;
}

static int on_resp_headers_complete(http_parser *p)
{
    struct session *s = p->data;
    http1_head_trim(&s->upstream.head);
    int switching = p->status_code == 101 && s->upgrade &&
                    http1_is_websocket_switch(&s->upstream.head);
    if (http1_check_response(&s->upstream.head, p, s->upgrade, switching,
                             &s->error) < 0) {
        return -1;
    }
    if (switching) {
        /* The upstream agreed to the WebSocket upgrade: relay the 101 and
         * become a tunnel once the parser stops (response_done). A final
         * answer as any other: a server on probation is back (a pool whose
         * traffic is all upgrades would otherwise keep a recovered server
         * out for fail_timeout after every probe). */
        pool_server_succeeded(s->conn->server);
        struct http1_response_info info = {
            .status = 101,
            .upstream_major = p->http_major,
            .upstream_minor = p->http_minor,
            .interim = 1,
            .upgrade = 1,
        };
        if (client_send_head(s, &info) < 0) {
            return -1;
        }
        s->status = 101;
        s->response_started = 1;
        s->tunnel = 1;
        return 1;
    }
    http1_settle_chunked(p);
    int http11 = s->http_major == 1 && s->http_minor >= 1;
    /* 1xx, 204 and 304 never have a body, whatever framing they claim
     * (http-parser would read one): skip it, like a HEAD response's. */
    int no_body = !http1_status_has_content(p->status_code) ||
                  s->method == HTTP_HEAD;
    if (p->status_code / 100 == 1) {
        /* Interim: relay 102/103 to HTTP/1.1 clients; 100 was ours to send.
         * A bounded number of them: an upstream that sends 1xx after 1xx
         * would otherwise hold the client (and feed it) for good, each one
         * resetting read_timeout. */
        if (++s->interims > SESSION_MAX_INTERIM) {
            s->error.status = 502;
            s->error.reason = "upstream sent more than " STRINGIFY(
                SESSION_MAX_INTERIM) " interim (1xx) responses";
            return -1;
        }
        s->interim = 1;
        if (http11 && p->status_code != 100) {
            struct http1_response_info info = {
                .status = p->status_code,
                .upstream_major = p->http_major,
                .upstream_minor = p->http_minor,
                .interim = 1,
            };
            if (client_send_head(s, &info) < 0) {
                return -1;
            }
        }
        return 1;
    }
    pool_server_succeeded(s->conn->server);
    enum http1_body body = http1_response_body(p, s->method == HTTP_HEAD);
    s->resp_until_close = body == HTTP1_BODY_EOF;
    s->framing = http1_client_framing(body, s->http_major, s->http_minor);
    if (s->framing == HTTP1_BODY_EOF || s->cstate != CLIENT_REQUEST_DONE) {
        /* Close-delimited, or an answer before the whole request came:
         * the rest of that request will never be read as one, so the
         * connection ends with this response, and says so. */
        s->keep_alive = 0;
    }
    struct http1_response_info info = {
        .status = p->status_code,
        .upstream_major = p->http_major,
        .upstream_minor = p->http_minor,
        .framing = s->framing,
        .content_length = p->content_length,
        .keep_alive = s->keep_alive,
        .client_http10 = !http11,
        .no_body = body == HTTP1_BODY_NONE,
    };
    if (client_send_head(s, &info) < 0) {
        return -1;
    }
    s->status = p->status_code;
    s->response_started = 1;
    s->ustate = UPSTREAM_STREAMING_BODY;
    if (!no_body && body == HTTP1_BODY_CHUNKED) {
        /* Stop on the head's last LF so that the body's chunk framing is
         * checked (http1_chunks_scan) before the parser reads it, as a
         * request's is. */
        http1_chunks_reset(&s->upstream.chunks);
        s->resp_chunked = 1;
        s->upstream.head_lf_pending = 1;
        s->upstream.parsed = PARSED_HEAD;
        http_parser_pause(p, 1);
        return 0;
    }
    if (!no_body && body == HTTP1_BODY_LENGTH &&
        s->framing == HTTP1_BODY_LENGTH) {
        /* The body is exactly content_length bytes, relayed as they are:
         * stop the parser here; upstream_process moves them. */
        s->body_direct = 1;
        s->body_left = p->content_length;
        s->upstream.parsed = PARSED_HEAD;
        http_parser_pause(p, 1);
        return 0;
    }
    return no_body ? 1 : 0;
}

static int on_resp_body(http_parser *p, const char *at, size_t len)
{
    struct session *s = p->data;
    if (s->framing == HTTP1_BODY_CHUNKED) {
        char size[24];
        int n = snprintf(size, sizeof(size), "%zx\r\n", len);
        client_send(s, size, (size_t)n);
        client_send(s, at, len);
        client_send(s, "\r\n", 2);
    } else {
        client_send(s, at, len);
    }
    return 0;
}

static int on_resp_message_complete(http_parser *p)
{
    struct session *s = p->data;
    if (s->interim) {
        s->interim = 0;
        http1_scan_reset_response(&s->upstream.scan);
        return 0; /* the final response follows on the same connection */
    }
    s->upstream.parsed = PARSED_MESSAGE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings response_settings = {
    .on_message_begin = on_resp_message_begin,
    .on_status = on_resp_status,
    .on_header_field = on_resp_header_field,
    .on_header_value = on_resp_header_value,
    .on_headers_complete = on_resp_headers_complete,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_message_complete,
};

/* ---- the request direction --------------------------------------------- */

/*
 * An idle client's keep-alive timer runs only once everything queued for it
 * has been written: a slow reader of the last response is bounded by
 * send_timeout, never cut off by keepalive_timeout. on_client_write arms it
 * when the output drains. Not with a pipelined request already in: that
 * starts at once (client_process), and the session is not idle.
 */
static void keepalive_arm(struct session *s)
{
    if (s->cstate == CLIENT_IDLE && s->timer_kind == TIMER_NONE &&
        evbuffer_get_length(bufferevent_get_output(s->client.bev)) == 0 &&
        evbuffer_get_length(bufferevent_get_input(s->client.bev)) == 0) {
        timer_set(s, TIMER_KEEPALIVE,
                  s->w->draining ? s->w->drain_grace : s->w->tv.keepalive);
        if (!s->w->draining) {
            TAILQ_INSERT_TAIL(&s->w->idle, s, idle_link);
            s->idle = 1;
            worker_session_idle(s->w);
        }
    }
}

/* Does in hold more than empty lines (a CRLF a client may send after a
 * body, which a server ignores: RFC 9112 2.2)? */
static int holds_a_request(struct evbuffer *in)
{
    struct evbuffer_iovec v[4];
    int n = evbuffer_peek(in, -1, NULL, v, 4);
    for (int i = 0; i < n && i < 4; i++) {
        const char *p = v[i].iov_base;
        for (size_t j = 0; j < v[i].iov_len; j++) {
            if (p[j] != '\r' && p[j] != '\n') {
                return 1;
            }
        }
    }
    return n > 4; /* more chains than empty lines would fill */
}

/* Drop the empty lines at in's start (RFC 9112 2.2: a server ignores them
 * before a request line); a CR that may start one stays. */
static void drop_empty_lines(struct evbuffer *in)
{
    char c[2];
    ev_ssize_t n;
    while ((n = evbuffer_copyout(in, c, 2)) > 0) {
        if (c[0] == '\n') {
            evbuffer_drain(in, 1);
        } else if (n == 2 && c[0] == '\r' && c[1] == '\n') {
            evbuffer_drain(in, 2);
        } else {
            return;
        }
    }
}

/* Ready the connection for its next request: idle, kept alive. */
static void exchange_ready(struct session *s)
{
    exchange_reset(s);
    /* A CRLF sent after a request (some clients end a body with one) is
     * no request: the connection idles kept alive (it waited for a head,
     * and got a 408 at client_header_timeout). */
    struct evbuffer *in = bufferevent_get_input(s->client.bev);
    drop_empty_lines(in);
    s->pipelined = holds_a_request(in);
    s->cstate = CLIENT_IDLE;
    bufferevent_set_timeouts(s->client.bev, NULL, s->w->tv.send);
    keepalive_arm(s);
}

/* Wait for the next request on a persistent connection. */
static int exchange_next(struct session *s)
{
    exchange_ready(s);
    return client_process(s);
}

/* The response is queued whole: log, then next request or close. */
static int exchange_end(struct session *s)
{
    exchange_log(s, TERM_DONE);
    /* A client that half-closed after pipelining requests has the rest
     * answered, then the connection ends. */
    if (!s->keep_alive || s->cstate != CLIENT_REQUEST_DONE ||
        (s->client_eof &&
         evbuffer_get_length(bufferevent_get_input(s->client.bev)) == 0)) {
        return close_after_flush(s, TERM_DONE);
    }
    return exchange_next(s);
}

/* The read timeout of the exchange: its route's, else its upstream's. */
static const struct timeval *upstream_read_tv(struct session *s)
{
    if (s->route >= 0 && s->w->tv.route_read[s->route] != NULL) {
        return s->w->tv.route_read[s->route];
    }
    return s->w->tv.up_read[s->pool->cfg - s->w->cfg->upstreams];
}

/* What the route's fault injection decided for one request. */
struct fault {
    int delay_ms; /* added before forwarding (a timer) */
    int abort;    /* status answered instead of forwarding; 0 = none */
};

/* A stored header's value as a C string, or NULL if absent; "" if it does
 * not fit in cap (a cut value could read as another). */
static const char *header_value(struct session *s, const char *name,
                                char *buf, size_t cap)
{
    int i = http1_head_find(&s->client.head, name, 0);
    if (i < 0) {
        return NULL;
    }
    const struct http1_header *hd = &s->client.head.hdrs[i];
    size_t n = hd->value_len < cap ? hd->value_len : 0;
    memcpy(buf, http1_str(&s->client.head, hd->value), n);
    buf[n] = '\0';
    return buf;
}

/*
 * Fault injection per route, like Envoy's fault filter: with
 * fault_abort_percent chance answer fault_abort; with fault_delay_percent
 * chance delay by fault_delay drawn from its distribution. With
 * fault_headers = on, X-Switchboard-Delay (a duration) and
 * X-Switchboard-Abort (a status) override both for this request. Returns
 * NULL, or why such a header cannot be obeyed (the request gets 400: a
 * fault asked for and silently not injected would mislead its test).
 */
static const char *fault_decide(struct session *s,
                                const struct config_route *r, struct fault *f)
{
    f->delay_ms = 0;
    f->abort = 0;
    if (r->fault_abort != 0 &&
        worker_random(s->w, 99) < r->fault_abort_percent) {
        f->abort = r->fault_abort;
    }
    if (r->fault_delay_ms > 0 &&
        worker_random(s->w, 99) < r->fault_delay_percent) {
        double d = r->fault_delay_ms;
        if (r->fault_delay_dist == FAULT_UNIFORM) {
            d = worker_random(s->w, 2 * r->fault_delay_ms);
        } else if (r->fault_delay_dist == FAULT_EXPONENTIAL) {
            double u = (worker_random(s->w, 999999) + 1) / 1000001.0;
            d = -r->fault_delay_ms * log(u);
            if (d > 3600000.0) {
                d = 3600000.0;
            }
        }
        f->delay_ms = (int)d;
    }
    if (r->fault_headers) {
        char buf[64];
        int64_t ms;
        uint64_t status;
        /* Twice, which one would be obeyed is a guess. */
        static const char *const names[] = {"X-Switchboard-Delay",
                                            "X-Switchboard-Abort"};
        static const char *const twice[] = {"X-Switchboard-Delay given twice",
                                            "X-Switchboard-Abort given twice"};
        for (int k = 0; k < 2; k++) {
            int i = http1_head_find(&s->client.head, names[k], 0);
            if (i >= 0 && http1_head_find(&s->client.head, names[k], i + 1) >= 0) {
                return twice[k];
            }
        }
        const char *v = header_value(s, names[0], buf, sizeof(buf));
        if (v != NULL) {
            /* A unit is required: the conf reads a bare number as seconds,
             * the slow origin as milliseconds (and Envoy's header too). */
            size_t len = strlen(v);
            if (len == 0 || !(v[len - 1] >= 'a' && v[len - 1] <= 'z') ||
                util_parse_duration(v, &ms) < 0 || ms > 3600000) {
                return "bad X-Switchboard-Delay: expected a duration with "
                       "its unit, up to 1h (250ms, 2s)";
            }
            f->delay_ms = (int)ms;
        }
        v = header_value(s, names[1], buf, sizeof(buf));
        if (v != NULL) {
            /* 0 is the conf's "no abort": it takes the route's away. A
             * value too long for buf reads as "" (it was cut, then
             * obeyed as another status, or as none). */
            if (util_parse_uint(v, &status) < 0 ||
                (status != 0 && (status < 200 || status > 599))) {
                return "bad X-Switchboard-Abort: expected a status from 200 "
                       "to 599, or 0 for none";
            }
            f->abort = (int)status;
        }
    }
    return NULL;
}

/* Answer the route's injected fault (s->fault_abort) instead of
 * forwarding. */
static int fault_abort_reply(struct session *s)
{
    s->w->stats->counter[STAT_FAULT_ABORTS]++;
    return reply_error(s, s->fault_abort, "fault_abort", "fault injected");
}

/* A whole request head is in: check it, route it, forward it. */
static int exchange_begin(struct session *s)
{
    const struct config *cfg = s->w->cfg;
    http_parser *p = &s->client.parser;
    timer_cancel(s);
    s->t_head = util_now_ms();
    s->cstate = CLIENT_WAITING;
    s->method = p->method;
    s->http_major = p->http_major;
    s->http_minor = p->http_minor;
    s->keep_alive = http1_keep_alive(&s->client.head, p) &&
                    cfg->keepalive_timeout_ms > 0 && !s->w->draining;
    s->w->stats->counter[STAT_REQUESTS]++;
    s->upgrade = http1_is_websocket_upgrade(&s->client.head, p);

    struct http1_error err;
    if (http1_check_request(&s->client.head, p, &err) < 0) {
        s->target = http1_str(&s->client.head, s->client.head.target);
        s->target_len = s->client.head.target_len;
        return reply_error(s, err.status, "bad_request", err.reason);
    }
    http1_settle_chunked(p);
    struct http1_target where;
    if (http1_origin_form(&s->client.head, &where) < 0) {
        return reply_error(s, 400, "bad_request", "invalid request target");
    }
    if (where.no_path && p->method == HTTP_OPTIONS) {
        /* "OPTIONS http://a" asks about the server: sent on as "*" (RFC
         * 9112 3.2.4), and routed as OPTIONS * is. */
        where.target = "*";
        where.target_len = 1;
    }
    s->target = where.target;
    s->target_len = where.target_len;
    s->authority = where.authority;
    s->authority_len = where.authority_len;
    s->req_body = http1_request_body(p);
    s->req_framing = http1_request_framing(p);
    http1_chunks_reset(&s->client.chunks);
    if (s->req_body == HTTP1_BODY_LENGTH && cfg->max_body_size > 0 &&
        p->content_length > cfg->max_body_size) {
        return reply_error(s, 413, "bad_request", "request body too large");
    }
    int expect = http1_expectation(&s->client.head);
    if (expect < 0) {
        return reply_error(s, 417, "bad_request", "unsupported expectation");
    }
    s->expect_continue = expect == 1 && s->http_minor >= 1;
    /* Route on the path alone: the query does not choose a pool. */
    size_t path_len = 0;
    while (path_len < s->target_len && s->target[path_len] != '?') {
        path_len++;
    }
    /* The host routes by: an absolute-form target's authority wins over
     * Host (RFC 9112 3.2.2). */
    const char *host = s->authority;
    size_t host_len = s->authority_len;
    if (host == NULL) {
        int h = http1_head_find(&s->client.head, "host", 0);
        if (h >= 0) {
            host = http1_str(&s->client.head, s->client.head.hdrs[h].value);
            host_len = s->client.head.hdrs[h].value_len;
        }
    }
    /* OPTIONS * asks about the server as a whole: the / route answers. */
    int route;
    if (s->target[0] == '*') {
        route = config_route_match(cfg, host, host_len, "/", 1);
    } else if (http1_path_is_normal(s->target, path_len)) {
        route = config_route_match(cfg, host, host_len, s->target, path_len);
    } else {
        /* Matched as nginx matches locations, so that "/%61dmin",
         * "//admin" or "/x/../admin" cannot get past [route /admin] to an
         * origin that reads them as /admin; forwarded as sent. And since
         * an origin may read it raw instead ("/admin/../x" as under
         * /admin), a path whose two readings take different routes is
         * refused rather than guessed at. */
        int raw = config_route_match(cfg, host, host_len, s->target,
                                     path_len);
        char small[1024];
        char *normal = path_len <= sizeof(small) ? small : malloc(path_len);
        size_t normal_len;
        if (normal == NULL) {
            return reply_error(s, 500, "internal_error", out_of_memory);
        }
        int bad = http1_path_normalize(s->target, path_len, normal,
                                       &normal_len) < 0;
        if (!bad) {
            route = config_route_match(cfg, host, host_len, normal,
                                       normal_len);
        }
        if (normal != small) {
            free(normal);
        }
        if (bad) {
            return reply_error(s, 400, "bad_request",
                               "invalid path: a bad %-escape, %00, or .. "
                               "above the root");
        }
        if (route != raw) {
            return reply_error(s, 400, "bad_request",
                               "ambiguous path: it takes another route "
                               "once %-escapes, // and dot-segments are "
                               "resolved");
        }
    }
    if (route < 0) {
        return reply_error(s, 404, "no_route", "no route for this path");
    }
    int up = cfg->routes[route].upstream;
    s->pool = s->w->pools[up];
    s->route = route;

    const struct config_upstream *ucfg = &cfg->upstreams[up];
    int latency = ucfg->latency_ms;
    if (ucfg->latency_jitter_ms > 0) {
        latency += worker_random(s->w, 2 * ucfg->latency_jitter_ms) -
                   ucfg->latency_jitter_ms;
        if (latency < 0) {
            latency = 0;
        }
    }
    struct fault fault;
    const char *bad_fault = fault_decide(s, &cfg->routes[route], &fault);
    if (bad_fault != NULL) {
        return reply_error(s, 400, "bad_request", bad_fault);
    }
    s->fault_abort = fault.abort;
    if (fault.abort != 0 && fault.delay_ms == 0) {
        return fault_abort_reply(s);
    }
    if (fault.abort != 0) {
        /* Envoy's order: the delay, then the abort (TIMER_LATENCY). The
         * upstream's latency is not waited: the request never reaches it. */
        latency = fault.delay_ms;
    } else {
        latency += fault.delay_ms;
    }
    if (latency > 0) {
        s->w->stats->counter[STAT_FAULT_DELAYS]++;
    }
    s->latency_ms = latency;
    if (latency > 0) {
        s->ustate = UPSTREAM_LATENCY;
        s->latency_due = util_now_ms() + latency;
        struct timeval tv = util_ms_to_tv(latency);
        timer_set(s, TIMER_LATENCY, &tv);
        return 0;
    }
    return upstream_start(s);
}

/* Has the client sent its request head and seen no response yet? */
static int waiting_for_answer(const struct session *s)
{
    return !s->response_started &&
           (s->cstate == CLIENT_WAITING || s->cstate == CLIENT_REQUEST_DONE);
}

/*
 * The client's EOF has come while it waits for its answer, with queued
 * bytes of it still unread: has it given up? Taken, like nginx
 * (proxy_ignore_client_abort off), for a client that gave up waiting
 * rather than one that only half-closed: the exchange and its upstream
 * connection end rather than keep an upstream busy for nobody. A client
 * that gives up and retries would otherwise pile its requests up on an
 * upstream already slow. It waits for the answer instead with
 * ignore_client_abort = on, and for a client that pipelined: with more
 * requests behind this one (queued), or with this one sent behind another
 * (read before the other's answer was), it sent them all and half-closed.
 */
static int client_gave_up(const struct session *s, size_t queued)
{
    return waiting_for_answer(s) && !s->w->cfg->ignore_client_abort &&
           !s->pipelined && queued == 0;
}

/* Nothing more is waited for from the client, the upstream's answer is:
 * the client's read timer off (client_body_timeout), the upstream's on
 * (read_timeout, off while the request was unfinished). */
static void timers_await_upstream(struct session *s)
{
    bufferevent_set_timeouts(s->client.bev, NULL, s->w->tv.send);
    if (s->ustate == UPSTREAM_READING_HEAD ||
        s->ustate == UPSTREAM_STREAMING_BODY) {
        int up = s->pool->cfg - s->w->cfg->upstreams;
        bufferevent_set_timeouts(s->upstream.bev, upstream_read_tv(s),
                                 s->w->tv.up_send[up]);
    }
}

/* The request has been read whole. */
static int request_done(struct session *s)
{
    s->cstate = CLIENT_REQUEST_DONE;
    timers_await_upstream(s);
    if (s->ustate == UPSTREAM_NONE) {
        /* The response ended before the request: it cannot go on. */
        return close_after_flush(s, TERM_DONE);
    }
    int eof_while_waiting = s->eof_while_waiting;
    s->eof_while_waiting = 0;
    if (eof_while_waiting &&
        client_gave_up(
            s, evbuffer_get_length(bufferevent_get_input(s->client.bev)))) {
        /* The client closed while its body waited for the upstream
         * connection (client_body_start), and nothing follows it: it has
         * given up, as on_client_event decides for a close after the
         * request. */
        s->w->stats->counter[STAT_CLIENT_ABORTS]++;
        return session_close(s, "client_closed");
    }
    return 0;
}

/* A head over max_header_size: 414 when its request line alone is over it
 * (however the bytes came and whatever follows), 431 otherwise. */
static int head_too_large(struct session *s)
{
    if (http1_scan_start_len(&s->client.scan) > s->w->cfg->max_header_size) {
        return reply_error(s, 414, "bad_request", "request target too long");
    }
    return reply_error(s, 431, "bad_request",
                       "request header section too large");
}

/* The client sent something http-parser or our limits refuse. */
static int client_parse_error(struct session *s, enum http_errno e)
{
    if (s->error.reason == out_of_memory) {
        return reply_error(s, 500, "internal_error", out_of_memory);
    }
    if (s->error.reason == head_over_limit) {
        return head_too_large(s);
    }
    if (s->error.status != 0) {
        return reply_error(s, s->error.status, "bad_request", s->error.reason);
    }
    if (s->cstate == CLIENT_READING_BODY) {
        /* http-parser counts a chunk-size line and the trailer section
         * against its head limit (2 x max_header_size + 4 KiB, set in
         * worker_run). */
        return reply_error(s, 400, "bad_request",
                           e == HPE_HEADER_OVERFLOW
                               ? "chunk line or trailer section too large"
                               : "malformed request body");
    }
    switch (e) {
    case HPE_HEADER_OVERFLOW:
        return head_too_large(s);
    case HPE_INVALID_VERSION:
        /* Well-formed versions other than 1.x get 505 from
         * http1_check_request; what the parser refuses is malformed. */
        return reply_error(s, 400, "bad_request", "malformed request line");
    case HPE_INVALID_METHOD:
        /* Method tokens are classified before the parser sees them
         * (client_method): what it refuses here is no token. */
        return reply_error(s, 400, "bad_request", "malformed request line");
    case HPE_INVALID_TRANSFER_ENCODING:
        return reply_error(s, 501, "bad_request",
                           "unsupported transfer coding");
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        return reply_error(s, 400, "bad_request",
                           http1_length_conflict(&s->client.head));
    case HPE_INVALID_CONTENT_LENGTH:
        return reply_error(s, 400, "bad_request", "invalid Content-Length");
    default:
        return reply_error(s, 400, "bad_request", http_errno_description(e));
    }
}

/*
 * The client sent its last byte (EOF) with everything before it parsed.
 * Between requests that is an ordinary close. Within a head or a body the
 * request can never be complete: say so (a client that only half-closed
 * still reads the answer), and never forward it as if it were.
 */
static int client_ended(struct session *s)
{
    if (s->cstate == CLIENT_READING_BODY) {
        return reply_error(s, 400, "client_closed",
                           "request body incomplete: the client closed its "
                           "side");
    }
    if (s->cstate == CLIENT_READING_HEAD &&
        (s->client.scan.lines > 0 || s->client.scan.line_len > 0)) {
        return reply_error(s, 400, "client_closed",
                           "request head incomplete: the client closed its "
                           "side");
    }
    /* The end of the last response may still be queued: it goes out
     * whole (a half-closed client reads it) before the close. */
    return close_after_flush(s, "client_closed");
}

/*
 * At the start of a request line, before the parser sees it: read the
 * method whole (http1_method_kind). A method http-parser knows, or bytes
 * that are no method token, go to it as they are (it answers the latter).
 * An extension method is taken here: the scanner counts it, the parser is
 * given POST in its place (the same rules for a request: a body only by
 * Content-Length or chunked, never replayed), and the head keeps its name
 * for the request line sent upstream and the log. v is the input's first
 * chain.
 * Returns 1: go on with v (cut to the empty lines before the request
 * line, if it starts with some); 2: a method was taken, read on; 0: wait
 * for the rest of it; -1 if the session closed.
 */
static int client_method(struct session *s, struct evbuffer *in,
                         struct evbuffer_iovec *v)
{
    char buf[HTTP1_METHOD_MAX + 1];
    const char *b = v->iov_base;
    size_t n = v->iov_len;
    if (n < sizeof(buf) && evbuffer_get_length(in) > n) {
        n = (size_t)evbuffer_copyout(in, buf, sizeof(buf));
        b = buf;
    }
    size_t len = 0;
    switch (http1_method_kind(b, n, &len)) {
    case HTTP1_METHOD_EMPTY_LINES:
        /* Before the request line (RFC 9112 2.2): the scanner counts them. */
        if (len < v->iov_len) {
            v->iov_len = len;
        }
        return 1;
    case HTTP1_METHOD_PARSER:
        return 1;
    case HTTP1_METHOD_WAIT:
        if (s->client_eof) {
            return reply_error(s, 400, "client_closed",
                               "request head incomplete: the client closed "
                               "its side");
        }
        s->in_exchange = 1; /* bytes of a request arrived: logged if cut */
        return 0; /* the rest may come: client_header_timeout bounds it */
    case HTTP1_METHOD_TOO_LONG:
        return reply_error(s, 501, "bad_request", "method name too long");
    case HTTP1_METHOD_UNKNOWN:
        return reply_error(s, 501, "bad_request", "unknown method");
    case HTTP1_METHOD_EXTENSION:
        break;
    }
    struct http1_error err;
    size_t used;
    if (http1_scan_head(&s->client.scan, b, len, &used, &err) < 0) {
        return reply_error(s, err.status, "bad_request", err.reason);
    }
    http_parser *p = &s->client.parser;
    size_t fed = http_parser_execute(p, &request_settings, "POST", 4);
    if (fed != 4 || HTTP_PARSER_ERRNO(p) != HPE_OK ||
        head_piece(s, &s->client, HTTP1_PIECE_METHOD, b, len, 500,
                   out_of_memory) < 0) {
        return client_parse_error(s, HTTP_PARSER_ERRNO(p));
    }
    evbuffer_drain(in, len); /* b may point into it: the last use */
    count_in(s, len);
    return 2;
}

/*
 * Feed the client's input to the request parser, as far as the state and
 * the upstream's output level allow. Returns -1 if the session closed.
 */
static int client_process(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->client.bev);
    size_t high = s->w->cfg->buffer_size;
    for (;;) {
        if (s->cstate == CLIENT_TUNNEL) {
            return tunnel_relay(s, &s->client, &s->upstream);
        }
        if (s->cstate == CLIENT_LINGERING ||
            (s->cstate == CLIENT_CLOSING && s->discarding)) {
            /* Dropped (close_after_flush, client_done); a client that
             * closes while the answer is being written may only have
             * half-closed: client_done sees it once that is flushed. */
            if (evbuffer_get_length(in) > 0) {
                s->linger = 1; /* it is sending: no reset at the end */
            }
            evbuffer_drain(in, evbuffer_get_length(in));
            return s->client_eof && s->cstate == CLIENT_LINGERING
                       ? session_close(s, s->close_reason)
                       : 0;
        }
        if (s->cstate == CLIENT_WAITING || s->cstate == CLIENT_REQUEST_DONE ||
            s->cstate == CLIENT_CLOSING) {
            return 0;
        }
        if (s->cstate == CLIENT_READING_BODY &&
            evbuffer_get_length(bufferevent_get_output(s->upstream.bev)) >=
                high) {
            relay_pause(&s->client); /* upstream's on_write resumes us */
            return 0;
        }
        if (s->cstate == CLIENT_IDLE &&
            evbuffer_get_length(bufferevent_get_output(s->client.bev)) >=
                high) {
            /* A client that sends requests without reading the answers:
             * the next one waits until it has read (on_client_write), so
             * that answers of our own, which no upstream paces (relayed
             * ones pause at this level: upstream_process), cannot pile
             * up. */
            relay_pause(&s->client);
            return 0;
        }
        relay_resume(&s->client);
        size_t avail = evbuffer_get_length(in);
        if (avail == 0) {
            if (s->client_eof) {
                return client_ended(s);
            }
            return 0;
        }
        if (s->cstate == CLIENT_IDLE) {
            s->cstate = CLIENT_READING_HEAD;
            s->t_start = util_now_ms();
            timer_cancel(s);
            timer_set(s, TIMER_HEADER, s->w->tv.client_header);
        } else if (s->t_start < 0) {
            /* A new connection's first byte: an exchange is timed from
             * it, as nginx's $request_time (client_header_timeout still
             * runs from the accept). */
            s->t_start = util_now_ms();
        }
        struct evbuffer_iovec v;
        evbuffer_peek(in, -1, NULL, &v, 1);
        if (s->cstate == CLIENT_READING_HEAD && s->client.scan.lines == 0 &&
            s->client.scan.line_len == 0) {
            int rc = client_method(s, in, &v);
            if (rc == 2) {
                continue;
            }
            if (rc <= 0) {
                return rc;
            }
        }
        size_t feed = v.iov_len;
        if (s->cstate == CLIENT_READING_HEAD && !s->client.scan.done) {
            struct http1_error err;
            if (http1_scan_head(&s->client.scan, v.iov_base, v.iov_len, &feed,
                                &err) < 0) {
                return reply_error(s, err.status, "bad_request", err.reason);
            }
            if (s->client.scan.lead > s->w->cfg->max_header_size) {
                /* Before the parser, which counts them against its own,
                 * larger limit. */
                return reply_error(s, 400, "bad_request",
                                   "too many empty lines before the request");
            }
        }
        if (s->cstate == CLIENT_READING_BODY &&
            s->req_body == HTTP1_BODY_CHUNKED) {
            /* The parser paused on the head's last LF: the body follows. */
            size_t skip = s->client.head_lf_pending ? 1 : 0;
            s->client.head_lf_pending = 0;
            struct http1_error err;
            if (http1_chunks_scan(&s->client.chunks, (char *)v.iov_base + skip,
                                  feed - skip, &err) < 0) {
                return reply_error(s, err.status, "bad_request", err.reason);
            }
        }
        http_parser *p = &s->client.parser;
        int lf_pending = s->client.head_lf_pending;
        size_t n = http_parser_execute(p, &request_settings, v.iov_base, feed);
        evbuffer_drain(in, n);
        count_in(s, n);
        if (lf_pending && n > 0) {
            s->client.head_lf_pending = 0; /* parsed (and counted) now */
        }
        enum http_errno e = HTTP_PARSER_ERRNO(p);
        if (e != HPE_OK && e != HPE_PAUSED) {
            return client_parse_error(s, e);
        }
        if (e == HPE_OK && n < feed) {
            return reply_error(s, 400, "bad_request", "unexpected bytes");
        }
        if (e == HPE_OK && s->cstate == CLIENT_READING_HEAD &&
            s->client.scan.done) {
            /* The scanner saw the blank line, the parser did not. */
            return reply_error(s, 400, "bad_request", "malformed head");
        }
        if (over_buffer_cap(s, s->upstream.bev)) {
            return session_close(s, "buffer_limit");
        }
        /* max_header_size counts the whole head as the scanner saw it:
         * request line, fields, separators and line ends, not the empty
         * lines before it (RFC 9112 2.2), bounded apart (above). */
        if (s->cstate == CLIENT_READING_HEAD &&
            s->client.scan.bytes > s->w->cfg->max_header_size) {
            return head_too_large(s);
        }
        if (e == HPE_PAUSED) {
            http_parser_pause(p, 0);
            enum parsed what = s->client.parsed;
            s->client.parsed = PARSED_NOTHING;
            int rc = what == PARSED_HEAD ? exchange_begin(s) : request_done(s);
            if (rc < 0) {
                return -1;
            }
        }
    }
}

/* ---- the WebSocket tunnel ---------------------------------------------- */

/*
 * Relay what from has read to to's output, as far as to's output stays
 * under buffer_size (backpressure as in the HTTP relay). A side whose peer
 * closed and whose input is drained ends the tunnel. Returns -1 if the
 * session closed.
 */
static int tunnel_relay(struct session *s, struct side *from, struct side *to)
{
    if (from == &s->client && s->upstream_eof) {
        /* The upstream has ended its side: the tunnel ends once what it
         * took already is delivered (below); nothing more is taken. */
        return tunnel_relay(s, &s->upstream, &s->client);
    }
    struct evbuffer *in = bufferevent_get_input(from->bev);
    struct evbuffer *out = bufferevent_get_output(to->bev);
    size_t high = s->w->cfg->buffer_size;
    size_t queued = evbuffer_get_length(out);
    size_t room = queued < high ? high - queued : 0;
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < room ? avail : room;
    if (n > 0) {
        int failed;
        n = relay_move(in, out, n, &failed);
        s->t_activity = util_now_ms();
        if (from == &s->client) {
            count_in(s, n);
        } else {
            count_out(s, n);
        }
        if (failed) {
            return session_close(s, "internal_error");
        }
    }
    if (evbuffer_get_length(in) > 0) {
        relay_pause(from);
        return 0;
    }
    relay_resume(from);
    if (from == &s->client && s->client_eof) {
        /* The client is done: what it said last reaches the upstream
         * first (the upstream's write callback comes back here until its
         * output has drained), then what is queued for the client. */
        if (side_flush(&s->upstream, 0) < 0) {
            return session_close(s, "upstream_error");
        }
        if (evbuffer_get_length(bufferevent_get_output(s->upstream.bev)) > 0) {
            return 0;
        }
        return close_after_flush(s, "client_closed");
    }
    if (from == &s->upstream && s->upstream_eof) {
        /* The upstream is done sending. What the client said last, read
         * and queued for the upstream already, reaches it first: it may
         * only have half-closed, and read on (its write callback comes
         * back here until that has drained; they were dropped). A write
         * that fails (it closed whole) drops them, and the log says so.
         * Then logged now (naming the server), and let go, so that it is
         * not held through the client's lingering close, nor its late
         * errors taken for the tunnel's. */
        int failed = side_flush(&s->upstream, 0) < 0;
        if (!failed &&
            evbuffer_get_length(bufferevent_get_output(s->upstream.bev)) > 0) {
            relay_pause(&s->client);
            return 0;
        }
        const char *term = failed ? "upstream_closed" : TERM_DONE;
        exchange_log(s, term);
        upstream_detach(s, 0);
        s->ustate = UPSTREAM_NONE;
        return close_after_flush(s, term);
    }
    return 0;
}

/*
 * Whether a tunnel's peers acknowledged bytes (tcpi_bytes_acked) since the
 * last look, if that look came after the last byte relayed; *pending: bytes
 * still wait in a kernel send queue (SIOCOUTQ). A peer reading slowly takes
 * them with nothing moving through the proxy's buffers, for as long as its
 * socket stays too full to be writable (Linux: until half the queue is
 * free): cut at tunnel_timeout, a tunnel whose reader still read was lost
 * (nginx keeps it).
 */
static int tunnel_kernel_progress(struct session *s, int *pending)
{
    struct side *sides[2] = {&s->client, &s->upstream};
    int compare = s->acked_at > s->t_activity;
    int progress = 0;
    *pending = 0;
    for (int i = 0; i < 2; i++) {
        evutil_socket_t fd =
            sides[i]->bev != NULL ? bufferevent_getfd(sides[i]->bev) : -1;
        int queued = 0;
        uint64_t acked;
        if (fd >= 0 && ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0) {
            *pending = 1;
        }
        if (fd >= 0 && util_tcp_bytes_acked(fd, &acked) == 0) {
            progress |= compare && acked > s->tunnel_acked[i];
            s->tunnel_acked[i] = acked;
        }
    }
    s->acked_at = util_now_ms();
    return progress;
}

/* After the 101: both sides relay raw bytes, idle-bounded by
 * tunnel_timeout; the upstream connection never returns to the pool. */
static int tunnel_start(struct session *s)
{
    int up = s->pool->cfg - s->w->cfg->upstreams;
    timer_cancel(s);
    s->cstate = CLIENT_TUNNEL;
    s->ustate = UPSTREAM_TUNNEL;
    s->t_activity = util_now_ms();
    s->acked_at = 0;
    s->acked_probing = 0;
    /* One timer for both directions (TIMER_TUNNEL), not a read timeout
     * per side: either side's may go off while the other relays. */
    bufferevent_set_timeouts(s->client.bev, NULL, s->w->tv.send);
    bufferevent_set_timeouts(s->upstream.bev, NULL, s->w->tv.up_send[up]);
    timer_set(s, TIMER_TUNNEL, s->w->tv.tunnel);
    if (tunnel_relay(s, &s->upstream, &s->client) < 0) {
        return -1;
    }
    if (s->cstate != CLIENT_TUNNEL) {
        return 0; /* the upstream has closed: flushing to the client */
    }
    return tunnel_relay(s, &s->client, &s->upstream);
}

/* ---- the response direction -------------------------------------------- */

/* The response is complete: settle the upstream connection, end exchange. */
static int response_done(struct session *s)
{
    if (s->tunnel) {
        return tunnel_start(s);
    }
    if (s->framing == HTTP1_BODY_CHUNKED) {
        client_send(s, "0\r\n\r\n", 5);
    }
    struct evbuffer *up_in = bufferevent_get_input(s->upstream.bev);
    size_t extra = evbuffer_get_length(up_in);
    if (extra > 0) {
        /* A stray CRLF after a body is a known quirk of some servers: not
         * worth a warning each time, though the connection is not reused
         * either way (what follows could be anything). */
        char peek[2];
        int crlf = extra <= 2 &&
                   evbuffer_copyout(up_in, peek, extra) == (ev_ssize_t)extra &&
                   memchr("\r\n", peek[0], 2) != NULL &&
                   (extra == 1 || memchr("\r\n", peek[1], 2) != NULL);
        log_msg(crlf ? LOG_LEVEL_INFO : LOG_LEVEL_WARN,
                "%s: upstream %s sent at least %zu bytes after a complete "
                "response: connection not reused",
                s->client_addr, s->conn->server->name, extra);
    }
    int reusable =
        http1_keep_alive(&s->upstream.head, &s->upstream.parser) &&
        !http1_te_in_http10(&s->upstream.parser) &&
        s->cstate == CLIENT_REQUEST_DONE && !s->upstream_eof &&
        s->upstream.read_err == 0 && s->upstream.write_err == 0 &&
        extra == 0 &&
        evbuffer_get_length(bufferevent_get_output(s->upstream.bev)) == 0;
    s->ustate = UPSTREAM_NONE;
    exchange_log(s, TERM_DONE);
    upstream_detach(s, reusable);
    /* The response head went out long ago: an idle or waiting session
     * should not hold its buffer (memory per held connection). */
    http1_head_deinit(&s->upstream.head);
    if (s->cstate != CLIENT_REQUEST_DONE) {
        /* Answered before the request was read whole: no reuse. */
        s->keep_alive = 0;
        return close_after_flush(s, TERM_DONE);
    }
    return exchange_end(s);
}

/* RFC 9110 9.2.2: repeating these has the effect of doing them once. */
static int idempotent(int method)
{
    return method == HTTP_GET || method == HTTP_HEAD ||
           method == HTTP_OPTIONS || method == HTTP_TRACE ||
           method == HTTP_PUT || method == HTTP_DELETE;
}

/* Could the request be sent once more on a fresh connection, were its
 * reused one found closed: idempotent, as for retries to another server
 * (a DELETE got 502 where nginx sends it again), and without a body (none
 * was consumed). */
static int replayable(const struct session *s)
{
    return s->req_body == HTTP1_BODY_NONE && idempotent(s->method);
}

/* A replayable request whose reused connection closed or reset before any
 * response byte is sent once more on a fresh one: the server most likely
 * closed an idle connection as we reused it. Not after a timeout (504): the
 * server may still be working on it. */
static int retry_allowed(struct session *s, int status)
{
    return status != 504 && !s->retried && s->conn != NULL &&
           s->conn->exchanges > 0 && s->upstream.bytes_in == 0 &&
           replayable(s);
}

/*
 * May the failed exchange go to another server (retries =)? Only while no
 * response byte came and no body byte was consumed (it could not be sent
 * again), and only if the request was never sent (connect failed) or
 * repeating it is harmless. A POST that reached a server is never resent.
 */
static int retry_other_allowed(struct session *s, int not_sent)
{
    return s->conn != NULL && s->attempts < s->pool->cfg->retries &&
           s->upstream.bytes_in == 0 && !s->response_started &&
           s->body_received == 0 && (not_sent || idempotent(s->method));
}

/* The upstream failed the exchange: count it against the server. Not
 * inside a tunnel: its response, the 101, was complete, and what ends a
 * WebSocket (a reset from a server closing with input unread, a peer
 * silent past a send timeout) says nothing of the server's health; one
 * client's tunnel took a healthy server out for fail_timeout. */
static void upstream_failed(struct session *s, const char *term)
{
    if (s->conn != NULL && s->ustate != UPSTREAM_TUNNEL) {
        s->w->stats->counter[STAT_UP_FAILURES]++;
        pool_server_failed(s->conn->server, term);
    }
}

/* Add the server of the failed attempt to sent_before. Out of memory, the
 * log names fewer servers; nothing else depends on it. */
static void remember_sent(struct session *s)
{
    if (s->conn == NULL) {
        return;
    }
    const char *name = s->conn->server->name;
    size_t had = s->sent_before ? strlen(s->sent_before) : 0;
    char *more = realloc(s->sent_before, had + strlen(name) + 2);
    if (more == NULL) {
        return;
    }
    if (had > 0) {
        more[had++] = ',';
    }
    strcpy(more + had, name);
    s->sent_before = more;
}

/* Send the request again, to server: on a new connection (fresh) or any.
 * A reused connection takes the rest of the request at once, which may be
 * waiting with the client (client_body_start). */
static int upstream_retry(struct session *s, struct pool_server *server,
                          int fresh)
{
    remember_sent(s);
    upstream_detach(s, 0);
    s->ustate = UPSTREAM_NONE;
    if (s->cstate == CLIENT_READING_BODY && s->body_received == 0) {
        /* Nothing of the body taken yet: it waits for this connection
         * too, so that should it fail as well, another may be tried.
         * client_body_timeout waits with it (client_body_start): while
         * the proxy connects, the client is not the one being slow. */
        s->cstate = CLIENT_WAITING;
        bufferevent_set_timeouts(s->client.bev, NULL, s->w->tv.send);
    }
    if (upstream_connect(s, server, fresh) < 0) {
        return -1;
    }
    return client_process(s);
}

/* The upstream failed: retry, answer status, or cut the client off. */
static int upstream_fail(struct session *s, int status, const char *term,
                         const char *reason)
{
    int not_sent = s->ustate == UPSTREAM_CONNECTING;
    if (retry_allowed(s, status)) {
        struct pool_server *server = s->conn->server;
        log_info("%s: retrying on a fresh connection to %s (%s)",
                 s->client_addr, server->name, term);
        s->retried = 1;
        s->w->stats->counter[STAT_RETRIES]++;
        return upstream_retry(s, server, 1);
    }
    if (s->conn != NULL) {
        log_warn("%s: upstream %s: %s", s->client_addr,
                 s->conn->server->name, reason);
    }
    upstream_failed(s, term);
    if (retry_other_allowed(s, not_sent)) {
        struct pool_server *failed = s->conn->server;
        if (failed->index < 64) {
            s->tried |= (uint64_t)1 << failed->index;
        }
        struct pool_server *next = pool_pick(s->pool, s->hash_key, s->tried);
        if (next != NULL) {
            s->attempts++;
            s->w->stats->counter[STAT_RETRIES]++;
            char target[256];
            log_warn("%s: retry %d of %d: %s %s to %s after %s from %s",
                     s->client_addr, s->attempts, s->pool->cfg->retries,
                     method_name(s),
                     util_log_escape(target, sizeof(target), s->target,
                                     s->target_len),
                     next->name, term, failed->name);
            return upstream_retry(s, next, 0);
        }
    }
    return reply_error(s, status, term, reason);
}

/*
 * Feed the upstream's input to the response parser, as far as the client's
 * output level allows. Returns -1 if the session closed.
 */
static int upstream_process(struct session *s)
{
    size_t high = s->w->cfg->buffer_size;
    if (s->ustate == UPSTREAM_TUNNEL) {
        return tunnel_relay(s, &s->upstream, &s->client);
    }
    while (s->ustate == UPSTREAM_READING_HEAD ||
           s->ustate == UPSTREAM_STREAMING_BODY) {
        struct evbuffer *in = bufferevent_get_input(s->upstream.bev);
        if (evbuffer_get_length(bufferevent_get_output(s->client.bev)) >=
            high) {
            relay_pause(&s->upstream); /* client's on_write resumes us */
            return 0;
        }
        relay_resume(&s->upstream);
        http_parser *p = &s->upstream.parser;
        size_t avail = evbuffer_get_length(in);
        size_t n = 0;
        if (s->body_direct) {
            if (s->body_left == 0) {
                s->upstream.parsed = PARSED_NOTHING;
                return response_done(s);
            }
            if (avail == 0) {
                if (s->upstream_eof) {
                    log_warn("%s: upstream %s: closed the connection "
                             "mid-response (%llu bytes short)",
                             s->client_addr, s->conn->server->name,
                             (unsigned long long)s->body_left);
                    upstream_failed(s, "upstream_closed");
                    return reply_error(s, 502, "upstream_closed",
                                       "upstream closed the connection "
                                       "mid-response");
                }
                return 0;
            }
            size_t move = avail < s->body_left ? avail : (size_t)s->body_left;
            int failed;
            move = relay_move(in, bufferevent_get_output(s->client.bev), move,
                              &failed);
            s->body_left -= move;
            s->upstream.bytes_in += move;
            count_out(s, move);
            if (failed) {
                return session_close(s, "internal_error");
            }
            if (over_buffer_cap(s, s->client.bev)) {
                return session_close(s, "buffer_limit");
            }
            continue;
        }
        if (avail > 0) {
            if (s->t_first_byte < 0) {
                s->t_first_byte = util_now_ms();
            }
            struct evbuffer_iovec v;
            evbuffer_peek(in, -1, NULL, &v, 1);
            size_t feed = v.iov_len;
            if (s->ustate == UPSTREAM_READING_HEAD &&
                !s->upstream.scan.done &&
                http1_scan_head(&s->upstream.scan, v.iov_base, v.iov_len,
                                &feed, &s->error) < 0) {
                log_warn("%s: upstream %s: %s", s->client_addr,
                         s->conn->server->name, s->error.reason);
                upstream_failed(s, "bad_response");
                return reply_error(s, 502, "bad_response",
                                   "upstream sent a malformed head");
            }
            /* The whole head on the wire counts, as a request's does, before
             * any of it is parsed (head_piece counts only what it stores). */
            if (s->ustate == UPSTREAM_READING_HEAD &&
                (s->upstream.scan.bytes > s->w->cfg->max_header_size ||
                 s->upstream.scan.lead > s->w->cfg->max_header_size)) {
                log_warn("%s: upstream %s: response head too large",
                         s->client_addr, s->conn->server->name);
                upstream_failed(s, "bad_response");
                return reply_error(s, 502, "bad_response",
                                   "upstream response head too large");
            }
            if (s->ustate == UPSTREAM_STREAMING_BODY && s->resp_chunked) {
                size_t skip = s->upstream.head_lf_pending ? 1 : 0;
                s->upstream.head_lf_pending = 0;
                struct http1_error err;
                if (http1_chunks_scan(&s->upstream.chunks,
                                      (char *)v.iov_base + skip, feed - skip,
                                      &err) < 0) {
                    log_warn("%s: upstream %s: %s", s->client_addr,
                             s->conn->server->name, err.reason);
                    upstream_failed(s, "bad_response");
                    return reply_error(s, 502, "bad_response",
                                       "upstream sent an invalid chunk");
                }
            }
            n = http_parser_execute(p, &response_settings, v.iov_base, feed);
            evbuffer_drain(in, n);
            s->upstream.bytes_in += n;
            if (over_buffer_cap(s, s->client.bev)) {
                return session_close(s, "buffer_limit");
            }
            if (HTTP_PARSER_ERRNO(p) == HPE_OK &&
                (n < feed || (s->ustate == UPSTREAM_READING_HEAD &&
                              s->upstream.scan.done))) {
                /* Bytes left over, or a head whose end the scanner saw
                 * and the parser did not. */
                upstream_failed(s, "bad_response");
                return reply_error(s, 502, "bad_response",
                                   "upstream sent an invalid response");
            }
        } else if (s->upstream_eof) {
            if (s->resp_until_close && s->upstream.write_err != 0) {
                /* Its end is the close, and the reset that came with it
                 * may have destroyed the tail: never complete it. */
                log_warn("%s: upstream %s: a response that ends at the "
                         "close, after a reset: cut short",
                         s->client_addr, s->conn->server->name);
                return reply_error(s, 502, "upstream_error",
                                   "upstream reset the connection "
                                   "mid-response");
            }
            http_parser_execute(p, &response_settings, NULL, 0);
            if (HTTP_PARSER_ERRNO(p) == HPE_OK &&
                s->upstream.parsed != PARSED_MESSAGE) {
                return upstream_fail(s, 502, "upstream_closed",
                                     "upstream closed the connection "
                                     "before responding");
            }
        } else {
            return 0;
        }
        enum http_errno e = HTTP_PARSER_ERRNO(p);
        if (e == HPE_PAUSED && s->body_direct) {
            /* http-parser paused on the head's last LF, not yet counted:
             * the body starts after it. */
            char lf = 0;
            if (evbuffer_copyout(in, &lf, 1) == 1 && lf == '\n') {
                evbuffer_drain(in, 1);
                s->upstream.bytes_in++;
            }
            http_parser_pause(p, 0);
            continue; /* the head is out; the body moves directly */
        }
        if (e == HPE_PAUSED && s->upstream.parsed == PARSED_HEAD) {
            http_parser_pause(p, 0); /* a chunked body follows */
            s->upstream.parsed = PARSED_NOTHING;
            continue;
        }
        if (e == HPE_PAUSED) {
            http_parser_pause(p, 0);
            s->upstream.parsed = PARSED_NOTHING;
            return response_done(s);
        }
        if (e != HPE_OK && s->error.reason == out_of_memory) {
            /* Ours, not the upstream's: no failure counted against it. */
            return reply_error(s, 500, "internal_error", out_of_memory);
        }
        if (e != HPE_OK) {
            if (s->error.status == 0) {
                s->error.status = 502;
                switch (e) {
                case HPE_INVALID_EOF_STATE:
                    s->error.reason = "upstream closed the connection "
                                      "mid-response";
                    break;
                case HPE_INVALID_HEADER_TOKEN:
                    s->error.reason = "upstream sent an invalid header "
                                      "field (a control character, or a "
                                      "bad name)";
                    break;
                default:
                    s->error.reason = "upstream sent an invalid response";
                    break;
                }
            }
            if (s->conn != NULL) {
                log_warn("%s: upstream %s: %s (%s)", s->client_addr,
                         s->conn->server->name, s->error.reason,
                         http_errno_name(e));
                upstream_failed(s, "bad_response");
            }
            return reply_error(s, s->error.status,
                               e == HPE_INVALID_EOF_STATE ? "upstream_closed"
                                                          : "bad_response",
                               s->error.reason);
        }
    }
    return 0;
}

/* ---- upstream connection ----------------------------------------------- */

static void on_upstream_read(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    side_fill(&s->upstream, s->w->cfg->buffer_size);
    if (upstream_process(s) == 0) {
        session_flush(s);
    }
}

static void on_upstream_write(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    side_drained(&s->upstream);
    if ((s->cstate == CLIENT_READING_BODY || s->cstate == CLIENT_TUNNEL) &&
        client_process(s) < 0) {
        return;
    }
    session_flush(s);
}

/*
 * A write of the request to the upstream failed with errno err. A server
 * that answers before it has read the whole request (a 413 or a 401 to an
 * upload) and closes with the body unread makes its stack reset the
 * connection, and the next write fails; its answer is still in the
 * socket's receive queue, ahead of the reset. Then that answer is read on
 * (libevent's read event finds it) and relayed, and the rest of the
 * request is dropped (on_req_body): an answer before the request was read
 * whole ends as any early answer does, with Connection: close; the server
 * is not blamed, and its connection is not reused. An answer whose end is
 * the close is cut, never completed: the reset may have destroyed its
 * tail. Returns 1 so, 0 when no answer came (the write failure is the
 * exchange's failure).
 */
static int upstream_answered_anyway(struct session *s, int err)
{
    struct side *up = &s->upstream;
    int ready = 0;
    if (up->write_err != 0 || retry_allowed(s, 502) ||
        (s->ustate != UPSTREAM_READING_HEAD &&
         s->ustate != UPSTREAM_STREAMING_BODY)) {
        /* A request that is sent again on a fresh connection (what a
         * reused one holds may be a stale answer), or no exchange. */
        return 0;
    }
    if (up->bytes_in == 0 &&
        evbuffer_get_length(bufferevent_get_input(up->bev)) == 0 &&
        (ioctl(bufferevent_getfd(up->bev), FIONREAD, &ready) < 0 ||
         ready <= 0)) {
        return 0;
    }
    log_info("%s: upstream %s: %s while sending the request, after it "
             "began to answer: the answer is relayed, the rest of the "
             "request dropped",
             s->client_addr, s->conn->server->name,
             evutil_socket_error_to_string(err));
    up->write_err = err;
    up->writing = 0;
    bufferevent_disable(up->bev, EV_WRITE);
    side_discard_output(up);
    /* Nothing more goes to the server: its answer is waited for now. */
    bufferevent_set_timeouts(up->bev, upstream_read_tv(s), NULL);
    if (s->cstate == CLIENT_READING_BODY && s->client.paused) {
        /* It waited for the upstream's output to drain: it is dropped. */
        relay_resume(&s->client);
        bufferevent_trigger(s->client.bev, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS |
                                BEV_TRIG_DEFER_CALLBACKS);
    }
    return 1;
}

/* The upstream connection failed with errno err. */
static int upstream_error(struct session *s, int err)
{
    char reason[160];
    const char *why = err != 0 ? evutil_socket_error_to_string(err)
                               : "connection refused or reset";
    if (s->ustate == UPSTREAM_CONNECTING) {
        snprintf(reason, sizeof(reason), "cannot connect to upstream: %s",
                 why);
        return upstream_fail(s, 502, "upstream_connect_error", reason);
    }
    snprintf(reason, sizeof(reason), "upstream connection failed: %s", why);
    return upstream_fail(s, 502, "upstream_error", reason);
}

static void on_upstream_event(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    int up = s->pool->cfg - s->w->cfg->upstreams;
    int rc;
    if (what & BEV_EVENT_CONNECTED) {
        s->conn->connected = 1;
        s->t_connected = util_now_ms();
        s->ustate = UPSTREAM_READING_HEAD;
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof(one));
        /* Connected: the socket is the bufferevent's for good (the connect
         * assigned libevent's read callback), and ours reads it. */
        sockread_attach(bev);
        bufferevent_set_timeouts(
            bev, s->cstate == CLIENT_REQUEST_DONE ? upstream_read_tv(s) : NULL,
            s->w->tv.up_send[up]);
        side_reads_on(&s->upstream);
        client_body_start(s);
        rc = client_process(s);
    } else if ((what & BEV_EVENT_EOF) && s->upstream.read_err == 0) {
        s->upstream_eof = 1;
        rc = upstream_process(s);
    } else if (what & BEV_EVENT_TIMEOUT) {
        if (s->ustate == UPSTREAM_CONNECTING) {
            s->w->stats->counter[STAT_TO_UP_CONNECT]++;
            rc = upstream_fail(s, 504, "upstream_connect_timeout",
                               "upstream connect timed out");
        } else if ((what & BEV_EVENT_WRITING) &&
                   side_still_reading(&s->upstream,
                                      s->pool->cfg->send_timeout_ms)) {
            return;
        } else if (what & BEV_EVENT_WRITING) {
            s->w->stats->counter[STAT_TO_UP_SEND]++;
            rc = upstream_fail(s, 504, "upstream_send_timeout",
                               "upstream did not accept the request in time");
        } else if (s->response_started && s->cstate == CLIENT_READING_BODY) {
            /* It answered early and may wait for the rest of the body,
             * which the client may have stopped sending: the exchange
             * ends, with no failure of the server's (nor a retry). */
            s->w->stats->counter[STAT_TO_UP_READ]++;
            log_info("%s: upstream %s: silent for read_timeout while the "
                     "client had not sent the whole body",
                     s->client_addr, s->conn->server->name);
            rc = reply_error(s, 504, "upstream_read_timeout",
                             "upstream stopped sending mid-response");
        } else {
            s->w->stats->counter[STAT_TO_UP_READ]++;
            rc = upstream_fail(s, 504, "upstream_read_timeout",
                               s->response_started
                                   ? "upstream stopped sending mid-response "
                                     "(read_timeout)"
                                   : "upstream did not respond in time");
        }
    } else if ((what & BEV_EVENT_WRITING) &&
               upstream_answered_anyway(s, EVUTIL_SOCKET_ERROR())) {
        rc = 0;
    } else {
        rc = upstream_error(s, s->upstream.read_err != 0
                                   ? s->upstream.read_err
                                   : EVUTIL_SOCKET_ERROR());
    }
    if (rc == 0) {
        session_flush(s);
    }
}

/* Pick a server (503 when the pool has none in service) and forward. */
static int upstream_start(struct session *s)
{
    const struct config_upstream *ucfg = s->pool->cfg;
    if (ucfg->balance == BALANCE_HASH) {
        /* The whole value, however long (a Cookie's distinguishing part
         * may come late); no such header, or an empty one (every client
         * without a key would share one server): the address decides. */
        int i = ucfg->hash_header[0] != '\0'
                    ? http1_head_find(&s->client.head, ucfg->hash_header, 0)
                    : -1;
        if (i >= 0 && s->client.head.hdrs[i].value_len > 0) {
            const struct http1_header *hd = &s->client.head.hdrs[i];
            s->hash_key = balancer_key(
                http1_str(&s->client.head, hd->value), hd->value_len);
        } else {
            s->hash_key = balancer_key(s->client_addr + s->client_ip_at,
                                      s->client_ip_len);
        }
    }
    struct pool_server *server = pool_pick(s->pool, s->hash_key, 0);
    if (server == NULL) {
        s->w->stats->counter[STAT_NO_SERVER]++;
        log_warn("%s: upstream %s: every server is out of service",
                 s->client_addr, ucfg->name);
        return reply_error(s, 503, "no_server",
                           "no upstream server available");
    }
    return upstream_connect(s, server, 0);
}

/*
 * The rest of the request (the body, or the head's last LF) may now be read
 * and sent: the upstream connection is up, or the request has no body. A
 * body stays with the client until then (bounded: side_bound_input), so
 * that a connect that fails leaves the request whole for another server
 * (retry_other_allowed).
 */
static void client_body_start(struct session *s)
{
    if (s->cstate != CLIENT_WAITING) {
        return;
    }
    if (s->expect_continue && s->req_body != HTTP1_BODY_NONE) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        client_send(s, cont, sizeof(cont) - 1);
        s->expect_continue = 0; /* once, whatever retries follow */
    }
    s->cstate = CLIENT_READING_BODY;
    if (s->req_body != HTTP1_BODY_NONE) {
        bufferevent_set_timeouts(s->client.bev, s->w->tv.client_body,
                                 s->w->tv.send);
    }
}

/* Borrow (unless fresh) or open a connection to server, send the head. */
static int upstream_connect(struct session *s, struct pool_server *server,
                            int fresh)
{
    const struct config *cfg = s->w->cfg;
    int up = s->pool->cfg - cfg->upstreams;
    s->t_forward = util_now_ms();
    struct upconn *c = pool_acquire(s->pool, server, fresh, !replayable(s));
    if (c == NULL) {
        return reply_error(s, 502, "upstream_connect_error",
                           "cannot open an upstream connection");
    }
    s->conn = c;
    s->upstream.bev = c->bev;
    s->upstream.paused = 0;
    s->upstream.held = 0;
    s->upstream.writing = 0;
    s->t_connected = s->t_first_byte = -1;
    s->upstream.bytes_in = 0;
    s->upstream.read_err = 0;
    s->upstream.write_err = 0;
    s->upstream_eof = 0; /* a retry: the last connection's EOF is not this one's */
    http_parser_init(&s->upstream.parser, HTTP_RESPONSE);
    s->upstream.parser.data = s;
    http1_scan_reset_response(&s->upstream.scan);
    http1_head_reset(&s->upstream.head);
    bufferevent_setcb(c->bev, on_upstream_read, on_upstream_write,
                      on_upstream_event, s);
    bufferevent_setwatermark(c->bev, EV_WRITE, cfg->buffer_size / 2, 0);

    struct http1_request_info info = {
        .method = method_name(s),
        .target = s->target,
        .target_len = s->target_len,
        .authority = s->authority,
        .authority_len = s->authority_len,
        .client_ip = s->client_addr + s->client_ip_at,
        .client_ip_len = s->client_ip_len,
        .proto = "http",
        .host = server->host_header,
        .client_major = s->http_major,
        .client_minor = s->http_minor,
        .body = s->req_framing,
        .content_length = s->req_body == HTTP1_BODY_LENGTH
                              ? s->client.parser.content_length
                              : 0,
        .close = !pool_keeps_idle(s->pool),
        .upgrade = s->upgrade,
        .underscores = s->w->cfg->underscores_in_headers,
    };
    if (http1_write_request(bufferevent_get_output(c->bev), &s->client.head,
                            &info) < 0) {
        return reply_error(s, 500, "internal_error", out_of_memory);
    }
    if (s->req_body == HTTP1_BODY_CHUNKED && s->cstate == CLIENT_REQUEST_DONE) {
        /* A retry of a chunked request whose body was empty (a retry needs
         * body_received == 0): its last chunk went to the failed
         * connection (on_req_message_complete), and goes here again. */
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    }

    s->w->stats->counter[c->exchanges > 0 ? STAT_UP_REUSES : STAT_UP_CONNECTS]++;
    if (c->exchanges > 0) {
        s->t_connected = s->t_forward;
        s->ustate = UPSTREAM_READING_HEAD;
        bufferevent_set_timeouts(
            c->bev,
            s->cstate == CLIENT_REQUEST_DONE ? upstream_read_tv(s) : NULL,
            s->w->tv.up_send[up]);
        bufferevent_enable(c->bev, EV_READ);
        bufferevent_disable(c->bev, EV_WRITE); /* see side_flush */
    } else {
        s->ustate = UPSTREAM_CONNECTING;
        /* The connect itself waits on the write event (and its timeout);
         * once connected, libevent turns it off since EV_WRITE is not
         * enabled, and on_upstream_event flushes the request. */
        bufferevent_disable(c->bev, EV_WRITE);
        bufferevent_set_timeouts(c->bev, NULL, s->w->tv.up_connect[up]);
        if (bufferevent_socket_connect(c->bev,
                                       (struct sockaddr *)&server->addr,
                                       (int)server->addrlen) < 0) {
            /* Failed at once. Short of descriptors or memory here, the
             * proxy is at fault, not the server: answered, not counted
             * (one request would take every server out). Else (an
             * unreachable network, no local port for it) like a connect
             * that fails later: counted, and another server may be tried. */
            int err = errno;
            char reason[160];
            snprintf(reason, sizeof(reason), "cannot connect to upstream: %s",
                     strerror(err));
            if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
                err == ENOMEM) {
                log_warn("%s: upstream %s: %s", s->client_addr, server->name,
                         reason);
                return reply_error(s, 502, "upstream_connect_error", reason);
            }
            return upstream_fail(s, 502, "upstream_connect_error", reason);
        }
        /* Reads start once connected (on_upstream_event): an EOF read
         * first, in the loop pass that also reports the connect, would
         * go unanswered while still connecting. */
    }
    if (c->exchanges > 0 || s->req_body == HTTP1_BODY_NONE) {
        /* The rest of the request may be read now: the connection is up,
         * or there is no body to keep for another server (the head's last
         * LF, taken at once, frees the client's input during the connect:
         * 0.4 KiB per held connection in the bench's memory scenario). */
        client_body_start(s);
    }
    return 0;
}

/*
 * The last step of every callback that did not close the session: write
 * what it queued for either side (side_flush), then close a session that
 * was only waiting to flush, or start the keep-alive wait of an idle one.
 * Returns -1 if the session closed.
 */
static int session_flush(struct session *s)
{
    side_bound_input(&s->client, s->w->cfg->buffer_size);
    if (s->conn != NULL) {
        side_bound_input(&s->upstream, s->w->cfg->buffer_size);
    }
    while (s->conn != NULL && s->ustate != UPSTREAM_CONNECTING &&
           side_flush(&s->upstream, s->client.paused) < 0) {
        /* The write failed: a retry may have put the request on a reused
         * connection, which is flushed in turn (each failure retries at
         * most as allowed, then answers and lets the connection go). */
        int err = errno;
        if (!upstream_answered_anyway(s, err) && upstream_error(s, err) < 0) {
            return -1;
        }
    }
    /* The peer waiting for the client's output: the upstream (paused), or
     * the client's own next request (paused idle: client_process). */
    if (side_flush(&s->client, (s->conn != NULL && s->upstream.paused) ||
                                   (s->cstate == CLIENT_IDLE &&
                                    s->client.paused)) < 0) {
        return session_close(s, "client_closed");
    }
    if (!s->client.writing &&
        evbuffer_get_length(bufferevent_get_output(s->client.bev)) == 0) {
        if (s->cstate == CLIENT_CLOSING) {
            return client_done(s);
        }
        if (s->cstate == CLIENT_LINGERING) {
            return 0;
        }
        keepalive_arm(s);
    }
    return 0;
}

/* ---- client connection ------------------------------------------------- */

static void on_client_read(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    side_fill(&s->client, s->w->cfg->buffer_size);
    if (client_process(s) == 0) {
        session_flush(s);
    }
}

static void on_client_write(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    side_drained(&s->client);
    if (s->conn != NULL && s->cstate != CLIENT_CLOSING &&
        upstream_process(s) < 0) {
        return;
    }
    if (s->cstate == CLIENT_IDLE && s->client.paused &&
        client_process(s) < 0) {
        return; /* the next request waited for the answers to drain */
    }
    session_flush(s);
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    int rc;
    if (s->cstate == CLIENT_LINGERING) {
        /* EOF, lingering_timeout or an error: done either way. */
        session_close(s, s->close_reason);
        return;
    }
    if ((what & BEV_EVENT_EOF) && s->client.read_err == 0) {
        struct evbuffer *in = bufferevent_get_input(bev);
        size_t pipelined = evbuffer_get_length(in);
        if (s->cstate == CLIENT_REQUEST_DONE ||
            (s->cstate == CLIENT_WAITING && s->req_body == HTTP1_BODY_NONE)) {
            /* No body left to come: what is here is a request, or empty
             * lines (the head's last LF, not yet taken; a CRLF a client
             * sent after its request), which are none. */
            pipelined = (size_t)holds_a_request(in);
        }
        /* libevent says EOF again if reads are turned back on after it
         * (relay_resume): only the first one is the client's news. */
        int first = !s->client_eof;
        s->client_eof = 1;
        if (pipelined == 0) {
            s->keep_alive = 0;
        } /* else each queued request is answered; the last one's end is
           * the connection's (exchange_end) */
        if (s->cstate == CLIENT_CLOSING) {
            return; /* keep flushing: the client may only have half-closed */
        }
        if (first && s->cstate == CLIENT_WAITING &&
            s->req_body != HTTP1_BODY_NONE) {
            s->eof_while_waiting = 1;
        } else if (first && client_gave_up(s, pipelined)) {
            s->w->stats->counter[STAT_CLIENT_ABORTS]++;
            session_close(s, "client_closed");
            return;
        }
        rc = client_process(s);
    } else if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
               s->response_started && s->cstate == CLIENT_READING_BODY) {
        /* Answered before the whole body: a client may stop sending it
         * (RFC 9112 9.6), and the answer must not be cut for that (it
         * was). It goes on, and the upstream's read_timeout now bounds an
         * upstream that waits for the rest (on_upstream_event); reads go
         * on too (libevent turned them off), relaying what still comes. */
        timers_await_upstream(s);
        side_reads_on(&s->client);
        rc = 0;
    } else if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING)) {
        s->w->stats->counter[STAT_TO_CLIENT_BODY]++;
        s->too_slow = 1;
        rc = reply_error(s, 408, "client_body_timeout",
                         "request body not received in time");
    } else if (what & BEV_EVENT_TIMEOUT) {
        if (side_still_reading(&s->client, s->w->cfg->send_timeout_ms)) {
            return;
        }
        s->w->stats->counter[STAT_TO_CLIENT_SEND]++;
        session_close(s, "client_send_timeout");
        return;
    } else {
        if (waiting_for_answer(s)) {
            s->w->stats->counter[STAT_CLIENT_ABORTS]++;
        }
        session_close(s, "client_closed");
        return;
    }
    if (rc == 0) {
        session_flush(s);
    }
}

static void on_session_timer(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;
    enum session_timer kind = s->timer_kind;
    s->timer_kind = TIMER_NONE;
    idle_leave(s);
    int rc = 0;
    switch (kind) {
    case TIMER_HEADER:
        s->w->stats->counter[STAT_TO_CLIENT_HEADER]++;
        if (s->t_start < 0) {
            s->t_start = s->t_accept; /* not a byte: timed from the accept */
        }
        s->in_exchange = 1;
        s->too_slow = 1;
        rc = reply_error(s, 408, "client_header_timeout",
                         "request head not received in time");
        break;
    case TIMER_KEEPALIVE:
        if (!s->w->draining) {
            s->w->stats->counter[STAT_TO_KEEPALIVE]++;
        }
        session_close(s, s->w->draining ? "drain" : "keepalive_timeout");
        return;
    case TIMER_LINGER:
        session_close(s, s->close_reason);
        return;
    case TIMER_TUNNEL: {
        double rest =
            s->t_activity + s->w->cfg->tunnel_timeout_ms - util_now_ms();
        int pending = 0;
        if (rest <= 0 && tunnel_kernel_progress(s, &pending)) {
            s->t_activity = util_now_ms();
            rest = s->w->cfg->tunnel_timeout_ms;
        } else if (rest <= 0 && pending && !s->acked_probing) {
            /* Bytes wait in a kernel queue: look again shortly whether
             * the peer takes them (a reader too slow to make the socket
             * writable within tunnel_timeout still reads). */
            s->acked_probing = 1;
            struct timeval tv = util_ms_to_tv(
                s->w->cfg->tunnel_timeout_ms < 1000
                    ? s->w->cfg->tunnel_timeout_ms
                    : 1000);
            timer_set(s, TIMER_TUNNEL, &tv);
            return;
        }
        if (rest > 0) {
            /* Bytes went through since it was set, or libevent's coarse
             * clock (TIMER_LATENCY) let it go off early: wait out the
             * rest, from the last byte either way. */
            s->acked_probing = 0;
            struct timeval tv = util_ms_to_tv((int)ceil(rest));
            timer_set(s, TIMER_TUNNEL, &tv);
            return;
        }
        s->w->stats->counter[STAT_TO_TUNNEL]++;
        session_close(s, "tunnel_timeout");
        return;
    }
    case TIMER_LATENCY: {
        double early_ms = s->latency_due - util_now_ms();
        if (early_ms > 0) {
            /* libevent keeps time with CLOCK_MONOTONIC_COARSE, whose tick
             * (4 ms at 250 Hz) can let a timer go off that much early:
             * wait out the rest, so an injected latency is never short.
             * (EVENT_BASE_FLAG_PRECISE_TIMER would cost a timerfd_settime
             * per loop turn.) */
            struct timeval rest = util_ms_to_tv((int)ceil(early_ms));
            timer_set(s, TIMER_LATENCY, &rest);
            return;
        }
        /* Waited whole: logged, whatever comes of the exchange now (a
         * 503 with every server out logged "latency=-"). */
        s->latency_waited = 1;
        if (s->fault_abort != 0) {
            s->ustate = UPSTREAM_NONE;
            rc = fault_abort_reply(s);
            break;
        }
        rc = upstream_start(s);
        if (rc == 0) {
            rc = client_process(s);
        }
        break;
    }
    case TIMER_NONE:
        return;
    }
    if (rc == 0) {
        session_flush(s);
    }
}

struct session *session_next(struct session *s)
{
    return TAILQ_NEXT(s, link);
}

void session_describe(const struct session *s, struct session_info *info)
{
    static const char *const client_phases[] = {
        [CLIENT_IDLE] = "keepalive",
        [CLIENT_READING_HEAD] = "reading_head",
        [CLIENT_WAITING] = "waiting",
        [CLIENT_READING_BODY] = "reading_body",
        [CLIENT_REQUEST_DONE] = "request_done",
        [CLIENT_CLOSING] = "closing",
        [CLIENT_LINGERING] = "lingering",
        [CLIENT_TUNNEL] = "tunnel",
    };
    static const char *const upstream_phases[] = {
        [UPSTREAM_NONE] = NULL,
        [UPSTREAM_LATENCY] = "injected_latency",
        [UPSTREAM_CONNECTING] = "connecting",
        [UPSTREAM_READING_HEAD] = "upstream_wait",
        [UPSTREAM_STREAMING_BODY] = "streaming",
        [UPSTREAM_TUNNEL] = "tunnel",
    };
    info->started_ms = s->t_accept;
    info->phase = upstream_phases[s->ustate] != NULL
                      ? upstream_phases[s->ustate]
                      : client_phases[s->cstate];
    info->peer = s->client_addr;
    info->bytes_in = s->client.bytes_in;
    info->bytes_out = s->client.bytes_out;
    info->buffered =
        evbuffer_get_length(bufferevent_get_input(s->client.bev)) +
        evbuffer_get_length(bufferevent_get_output(s->client.bev));
    if (s->conn != NULL) {
        info->buffered +=
            evbuffer_get_length(bufferevent_get_input(s->upstream.bev)) +
            evbuffer_get_length(bufferevent_get_output(s->upstream.bev));
    }
    info->paused = s->client.paused || (s->conn != NULL && s->upstream.paused);
    info->upstream_waiting = s->ustate == UPSTREAM_READING_HEAD ||
                             s->ustate == UPSTREAM_CONNECTING;
}

void session_drain(struct session *s)
{
    s->keep_alive = 0;
    /* A lingering session is left to end on its own: closing it now could
     * reset its answer. lingering_time and shutdown_timeout bound it. */
    if (s->cstate == CLIENT_READING_HEAD && !s->in_exchange &&
        evbuffer_get_length(bufferevent_get_input(s->client.bev)) == 0) {
        /* Connected but silent: as idle as a keep-alive client. */
        s->cstate = CLIENT_IDLE;
        timer_cancel(s);
    }
    if (s->cstate == CLIENT_IDLE &&
        (s->timer_kind == TIMER_KEEPALIVE || s->timer_kind == TIMER_NONE)) {
        timer_cancel(s);
        keepalive_arm(s); /* now the drain's short grace */
    }
}

int session_start(struct worker *w, evutil_socket_t fd,
                  const struct sockaddr *sa, int socklen)
{
    const struct config *cfg = w->cfg;
    struct session *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        evutil_closesocket(fd);
        return -1;
    }
    s->w = w;
    s->client.bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    s->timer = evtimer_new(w->base, on_session_timer, s);
    if (s->client.bev == NULL || s->timer == NULL) {
        if (s->client.bev == NULL) {
            evutil_closesocket(fd);
        } else {
            bufferevent_free(s->client.bev);
        }
        if (s->timer != NULL) {
            event_free(s->timer);
        }
        free(s);
        return -1;
    }
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(s->client_addr, sizeof(s->client_addr), "%s:%u", ip,
                 ntohs(in->sin_port));
        s->client_ip_at = 0;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(s->client_addr, sizeof(s->client_addr), "[%s]:%u", ip,
                 ntohs(in6->sin6_port));
        s->client_ip_at = 1;
    } else {
        util_strlcpy(ip, "unknown", sizeof(ip));
        util_strlcpy(s->client_addr, "unknown", sizeof(s->client_addr));
        s->client_ip_at = 0;
    }
    s->client_ip_len = (uint8_t)strlen(ip);
    (void)socklen;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    http_parser_init(&s->client.parser, HTTP_REQUEST);
    s->client.parser.data = s;
    http1_head_init(&s->client.head, (uint32_t)cfg->max_header_size,
                    HTTP1_MAX_FIELDS);
    http1_head_init(&s->upstream.head, (uint32_t)cfg->max_header_size,
                    HTTP1_MAX_FIELDS);
    exchange_reset(s);
    TAILQ_INSERT_TAIL(&w->sessions, s, link);
    w->n_sessions++;

    sockread_attach(s->client.bev);
    bufferevent_setcb(s->client.bev, on_client_read, on_client_write,
                      on_client_event, s);
    bufferevent_setwatermark(s->client.bev, EV_WRITE, cfg->buffer_size / 2,
                             0);
    bufferevent_set_timeouts(s->client.bev, NULL, w->tv.send);
    bufferevent_enable(s->client.bev, EV_READ);
    bufferevent_disable(s->client.bev, EV_WRITE); /* see side_flush */
    /* A new connection must deliver its first head in time. */
    s->cstate = CLIENT_READING_HEAD;
    s->t_accept = util_now_ms(); /* s->t_start: at the first byte */
    timer_set(s, TIMER_HEADER, w->tv.client_header);
    return 0;
}
