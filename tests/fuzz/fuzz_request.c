/*
 * fuzz_request: libFuzzer target for the request-head path of session.c.
 *
 * The input is one control byte and then what a client sends: one request
 * or several pipelined ones. client_process() is mirrored without its
 * timers and backpressure: a request line's method is read whole first
 * (client_method: an extension method stands in as POST), a head is
 * scanned with http1_scan_head, which also bounds what the parser is fed,
 * a chunked body with http1_chunks_scan; the HTTP_REQUEST parser's
 * callbacks store the head with http1_head_add exactly as session.c's
 * on_req_* callbacks do (limit 16k, 256 fields, trailers dropped, a pause
 * at headers complete and at message complete). Each complete head is trimmed, checked with
 * http1_check_request, its target normalised as http1_origin_form does, its
 * framing taken from http1_request_body, the Expect rule applied, and the
 * head regenerated with http1_write_request; the next pipelined request is
 * read only if the connection persists.
 *
 * Control byte: bits 0-6 choose where the stream is cut into two
 * deliveries (fuzz_split_at), bit 7 sets the "Connection: close" of the
 * regenerated head. Every input runs twice, fed whole and fed split.
 *
 * By default a finding is a crash, a sanitizer report or a leak. With
 * SWITCHBOARD_FUZZ_STRICT=1 it is also: two runs whose transcripts
 * (regenerated heads, body bytes, whether refused) differ; a regenerated
 * head that is malformed or that the next hop would read differently; the
 * head scanner and the parser disagreeing on where a head ends; body bytes
 * for a request forwarded without a body.
 *
 * Owns nothing past one call: everything is freed before returning, so a
 * leak report is a leak in proxy/http1.c or here.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <http_parser.h>

#include "fuzz_common.h"
#include "http1.h"
#include "util.h"

/* What the last pause of the parser stands for. */
enum req_parsed {
    REQ_PARSED_NOTHING,
    REQ_PARSED_HEAD,
    REQ_PARSED_MESSAGE,
};

/* session.c's client states that the head path goes through. */
enum req_state {
    REQ_READING_HEAD,
    REQ_WAITING,      /* head accepted; the upstream is being reached */
    REQ_READING_BODY, /* the rest of the request streams upstream */
    REQ_DONE,         /* request whole; next one if the connection persists */
    REQ_CLOSED,       /* session.c answered an error or closed */
};

/* One client connection's request direction, as far as the head path goes. */
struct fuzz_req {
    http_parser parser;
    struct http1_head head;
    struct http1_scan scan;      /* raw checks on the head being read */
    struct http1_chunks chunks;  /* and on a chunked body */
    int head_lf_pending;         /* the head's last LF is still unparsed */
    struct evbuffer *out;        /* transcript: heads, body bytes, refusal */
    struct evbuffer *body_bytes; /* this message's body, until it is whole */
    struct fuzz_verdict verdict;
    enum req_state state;
    enum req_parsed parsed;
    enum http1_body body; /* framing of the current request upstream */
    int keep_alive;       /* the client connection persists */
    int close;            /* info.close of every regenerated head */
    size_t bytes_in;      /* this exchange, for max_header_size */
};

/* ---- parser callbacks, as session.c's on_req_* ------------------------- */

static int on_req_message_begin(http_parser *p)
{
    struct fuzz_req *r = p->data;
    http1_head_reset(&r->head);
    r->body = HTTP1_BODY_NONE;
    return 0;
}

static int head_piece(struct fuzz_req *r, enum http1_piece kind, const char *at,
                      size_t len, int status, const char *reason)
{
    if (http1_head_add(&r->head, kind, at, len) < 0) {
        fuzz_reject(r->out, &r->verdict, status, reason);
        return -1;
    }
    return 0;
}

static int on_req_url(http_parser *p, const char *at, size_t len)
{
    return head_piece(p->data, HTTP1_PIECE_URL, at, len, 414,
                      "request target too long");
}

static int on_req_header_field(http_parser *p, const char *at, size_t len)
{
    if (p->flags & F_TRAILING) {
        return 0;
    }
    return head_piece(p->data, HTTP1_PIECE_FIELD, at, len, 431,
                      "request header section too large");
}

static int on_req_header_value(http_parser *p, const char *at, size_t len)
{
    if (p->flags & F_TRAILING) {
        return 0;
    }
    return head_piece(p->data, HTTP1_PIECE_VALUE, at, len, 431,
                      "request header section too large");
}

static int on_req_headers_complete(http_parser *p)
{
    struct fuzz_req *r = p->data;
    http1_head_trim(&r->head);
    if (fuzz_strict) {
        fuzz_strict_scan_agrees(r->scan.done, 1);
    }
    r->parsed = REQ_PARSED_HEAD;
    r->head_lf_pending = 1;
    http_parser_pause(p, 1);
    return 0;
}

/* Body bytes go to the transcript as they are, not re-chunked (chunk sizes
 * follow the split, the bytes must not), once the message is whole: how
 * much of a refused body was streamed before the refusal depends on the
 * split. */
static int on_req_body(http_parser *p, const char *at, size_t len)
{
    struct fuzz_req *r = p->data;
    if (fuzz_strict && r->body == HTTP1_BODY_NONE && len > 0) {
        fuzz_fail("strict: body bytes for a request forwarded without a body",
                  at, len);
    }
    evbuffer_add(r->body_bytes, at, len);
    return 0;
}

static int on_req_message_complete(http_parser *p)
{
    struct fuzz_req *r = p->data;
    r->parsed = REQ_PARSED_MESSAGE;
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

/* ---- what session.c does with a complete head --------------------------- */

/*
 * Strict mode: the head just written (from offset from of the transcript)
 * must be well formed and must parse, at the next hop, into the request we
 * meant to send: accepted by our own checks, same method and target, the
 * framing we regenerated, the authority as Host.
 */
static void strict_request(struct fuzz_req *r, size_t from,
                           const struct http1_request_info *info)
{
    size_t len;
    char *head = fuzz_tail(r->out, from, &len);
    fuzz_strict_lines(head, len, 1);
    size_t mlen = r->head.method_len;
    if (mlen > 0) {
        /* An extension method: sent as it came, and read again, as the
         * proxy reads it, with POST standing in for it. */
        if (len <= mlen || head[mlen] != ' ' ||
            memcmp(head, http1_str(&r->head, r->head.method), mlen) != 0) {
            fuzz_fail("strict: the extension method changed on the way", head,
                      len);
        }
        char *stand_in = malloc(len - mlen + 5);
        if (stand_in == NULL) {
            abort();
        }
        memcpy(stand_in, "POST", 4);
        memcpy(stand_in + 4, head + mlen, len - mlen + 1);
        free(head);
        head = stand_in;
        len = len - mlen + 4;
    }
    struct fuzz_reparse rp;
    fuzz_reparse(&rp, HTTP_REQUEST, head, len);
    struct http1_error err;
    if (http1_check_request(&rp.head, &rp.parser, &err) < 0) {
        fprintf(stderr, "fuzz: %d %s\n", err.status, err.reason);
        fuzz_fail("strict: the proxy's own checks refuse the request it sent",
                  head, len);
    }
    if (rp.parser.method != r->parser.method ||
        rp.head.target_len != info->target_len ||
        memcmp(http1_str(&rp.head, rp.head.target), info->target,
               info->target_len) != 0) {
        fuzz_fail("strict: request line changed on the way", head, len);
    }
    enum http1_body body = http1_request_body(&rp.parser);
    if (body != info->body ||
        (body == HTTP1_BODY_LENGTH &&
         rp.parser.content_length != info->content_length)) {
        fuzz_fail("strict: the next hop frames the body differently", head,
                  len);
    }
    int host = http1_head_find(&rp.head, "host", 0);
    if (info->authority != NULL &&
        (host < 0 || rp.head.hdrs[host].value_len != info->authority_len ||
         memcmp(http1_str(&rp.head, rp.head.hdrs[host].value), info->authority,
                info->authority_len) != 0)) {
        fuzz_fail("strict: Host is not the absolute-form authority", head, len);
    }
    fuzz_reparse_deinit(&rp);
    free(head);
}

/* exchange_begin() up to forwarding: 0 to go on, -1 where session.c
 * answers an error and closes. */
/* The path routes match on: never longer than the path, its own normal
 * form, and "normal" paths need no copy. Aborts (a finding) otherwise. */
static void check_path_normal_form(const struct http1_target *t)
{
    if (t->target[0] != '/') {
        return; /* "*" */
    }
    size_t len = 0;
    while (len < t->target_len && t->target[len] != '?') {
        len++;
    }
    char *once = malloc(len), *twice = malloc(len);
    size_t n1, n2;
    if (once == NULL || twice == NULL) {
        abort();
    }
    if (http1_path_normalize(t->target, len, once, &n1) == 0) {
        if (n1 > len || n1 == 0 || once[0] != '/' ||
            http1_path_normalize(once, n1, twice, &n2) != 0 || n2 != n1 ||
            memcmp(once, twice, n1) != 0) {
            /* A decoded %25 may start a new escape: only a path without
             * one must be stable. */
            if (memchr(once, '%', n1) == NULL) {
                abort();
            }
        }
        if (http1_path_is_normal(t->target, len) &&
            (n1 != len || memcmp(once, t->target, len) != 0)) {
            abort();
        }
    } else if (http1_path_is_normal(t->target, len)) {
        abort();
    }
    free(once);
    free(twice);
}

/* Is the head's one Transfer-Encoding field "chunked" with only blanks
 * (OWS: spaces and tabs) around it? http-parser 2.9.4 does not read
 * "chunked" followed by a tab as chunked; http1_settle_chunked makes it. */
static int te_is_lone_chunked(const struct http1_head *h)
{
    int found = 0;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const char *name = h->buf + h->hdrs[i].name;
        if (h->hdrs[i].name_len != 17 ||
            strncasecmp(name, "transfer-encoding", 17) != 0) {
            continue;
        }
        const char *v = h->buf + h->hdrs[i].value;
        size_t a = 0, b = h->hdrs[i].value_len;
        while (a < b && (v[a] == ' ' || v[a] == '\t')) {
            a++;
        }
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) {
            b--;
        }
        if (found++ || b - a != 7 || strncasecmp(v + a, "chunked", 7) != 0) {
            return 0;
        }
    }
    return found == 1;
}

static int request_head(struct fuzz_req *r)
{
    http_parser *p = &r->parser;
    r->keep_alive = http1_keep_alive(&r->head, p);
    struct http1_error err;
    if (http1_check_request(&r->head, p, &err) < 0) {
        fuzz_reject(r->out, &r->verdict, err.status, err.reason);
        return -1;
    }
    if (fuzz_strict && p->uses_transfer_encoding &&
        !(p->flags & F_CHUNKED) && !te_is_lone_chunked(&r->head)) {
        /* The parser and the check disagree on the framing other than in
         * the one way http1_settle_chunked settles: http-parser would
         * refuse the body after the head was taken. */
        fuzz_fail("strict: http1_check_request accepts a Transfer-Encoding "
                  "the parser does not read as chunked",
                  NULL, 0);
    }
    http1_settle_chunked(p);
    struct http1_target t;
    if (http1_origin_form(&r->head, &t) < 0) {
        fuzz_reject(r->out, &r->verdict, 400, "invalid request target");
        return -1;
    }
    check_path_normal_form(&t);
    r->body = http1_request_body(p);
    http1_chunks_reset(&r->chunks);
    int expect = http1_head_find(&r->head, "expect", 0);
    if (expect >= 0) {
        const struct http1_header *hd = &r->head.hdrs[expect];
        if (!util_strieq(http1_str(&r->head, hd->value), hd->value_len,
                         "100-continue")) {
            fuzz_reject(r->out, &r->verdict, 417, "unsupported expectation");
            return -1;
        }
    }
    struct http1_request_info info = {
        .method = http1_method_name(&r->head, p->method),
        .target = t.target,
        .target_len = t.target_len,
        .authority = t.authority,
        .authority_len = t.authority_len,
        .client_ip = "192.0.2.7",
        .client_ip_len = 9,
        .proto = "http",
        .host = "backend.test:8080",
        .client_major = p->http_major,
        .client_minor = p->http_minor,
        .body = r->body,
        .content_length = p->content_length,
        .close = r->close,
    };
    evbuffer_add_printf(r->out, "forward keep-alive=%d\n", r->keep_alive);
    size_t from = evbuffer_get_length(r->out);
    if (http1_write_request(r->out, &r->head, &info) < 0) {
        fuzz_fail("http1_write_request failed", NULL, 0);
    }
    if (fuzz_strict) {
        strict_request(r, from, &info);
    }
    return 0;
}

/* Stop the session with a verdict in the transcript. */
static void req_close(struct fuzz_req *r, int status, const char *reason)
{
    fuzz_reject(r->out, &r->verdict, status, reason);
    r->state = REQ_CLOSED;
}

/*
 * client_process() over the bytes delivered so far, data[*pos, end): scan,
 * feed, act on pauses, until the input runs dry or the session stops. The
 * upstream side is taken to answer at once: a waiting request goes on to
 * its body, a finished one to the next request when the connection
 * persists.
 */
static void req_process(struct fuzz_req *r, char *data, size_t *pos,
                        size_t end)
{
    while (r->state != REQ_CLOSED) {
        if (r->state == REQ_WAITING) {
            r->state = REQ_READING_BODY; /* upstream_start() */
        }
        if (r->state == REQ_DONE) {
            evbuffer_add_printf(r->out, "\nend\n");
            if (!r->keep_alive) {
                r->state = REQ_CLOSED; /* exchange_end() */
                return;
            }
            http1_scan_reset(&r->scan); /* exchange_reset() */
            r->bytes_in = 0;
            r->state = REQ_READING_HEAD;
        }
        char *v = data + *pos;
        size_t avail = end - *pos;
        if (avail == 0) {
            return;
        }
        struct http1_error err;
        if (r->state == REQ_READING_HEAD && r->scan.lines == 0 &&
            r->scan.line_len == 0) {
            /* client_method(): empty lines go to the scanner alone; the
             * method is read whole, an extension standing in as POST. */
            size_t len = 0;
            switch (http1_method_kind(v, avail, &len)) {
            case HTTP1_METHOD_EMPTY_LINES:
                avail = len;
                break;
            case HTTP1_METHOD_PARSER:
                break;
            case HTTP1_METHOD_WAIT:
                return; /* the rest may come */
            case HTTP1_METHOD_TOO_LONG:
                req_close(r, 501, "method name too long");
                return;
            case HTTP1_METHOD_UNKNOWN:
                req_close(r, 501, "unknown method");
                return;
            case HTTP1_METHOD_EXTENSION: {
                size_t used;
                if (http1_scan_head(&r->scan, v, len, &used, &err) < 0) {
                    req_close(r, err.status, err.reason);
                    return;
                }
                if (http_parser_execute(&r->parser, &request_settings, "POST",
                                        4) != 4 ||
                    HTTP_PARSER_ERRNO(&r->parser) != HPE_OK ||
                    http1_head_add(&r->head, HTTP1_PIECE_METHOD, v, len) < 0) {
                    req_close(r, 400, "method stand-in refused");
                    return;
                }
                *pos += len;
                r->bytes_in += len;
                continue;
            }
            }
        }
        size_t feed = avail;
        if (r->state == REQ_READING_HEAD && !r->scan.done &&
            http1_scan_head(&r->scan, v, avail, &feed, &err) < 0) {
            req_close(r, err.status, err.reason);
            return;
        }
        if (r->state == REQ_READING_BODY && r->body == HTTP1_BODY_CHUNKED) {
            size_t skip = r->head_lf_pending ? 1 : 0;
            r->head_lf_pending = 0;
            if (http1_chunks_scan(&r->chunks, v + skip, feed - skip, &err) <
                0) {
                req_close(r, err.status, err.reason);
                return;
            }
        }
        http_parser *p = &r->parser;
        size_t n = http_parser_execute(p, &request_settings, v, feed);
        *pos += n;
        r->bytes_in += n;
        enum http_errno e = HTTP_PARSER_ERRNO(p);
        if (e != HPE_OK && e != HPE_PAUSED) {
            req_close(r, 400, http_errno_name(e));
            return;
        }
        if (e == HPE_OK && n < feed) {
            req_close(r, 400, "unexpected bytes");
            return;
        }
        if (fuzz_strict && r->state == REQ_READING_HEAD && e == HPE_OK) {
            fuzz_strict_scan_agrees(r->scan.done, 0);
        }
        if (r->state == REQ_READING_HEAD && r->bytes_in > FUZZ_HEAD_LIMIT) {
            req_close(r, 431, "request header section too large");
            return;
        }
        if (e == HPE_PAUSED) {
            http_parser_pause(p, 0);
            enum req_parsed what = r->parsed;
            r->parsed = REQ_PARSED_NOTHING;
            if (what == REQ_PARSED_HEAD) {
                r->state = REQ_WAITING;
                if (request_head(r) < 0) {
                    r->state = REQ_CLOSED;
                }
            } else {
                r->state = REQ_DONE;
                evbuffer_add_buffer(r->out, r->body_bytes);
            }
        }
    }
}

/* Run the stream delivered in two reads, cut at split; returns the
 * transcript (caller frees) and fills verdict. */
static struct evbuffer *run(uint8_t control, const char *data, size_t len,
                            size_t split, struct fuzz_verdict *verdict)
{
    struct fuzz_req r;
    memset(&r, 0, sizeof(r));
    http_parser_init(&r.parser, HTTP_REQUEST);
    r.parser.data = &r;
    http1_head_init(&r.head, FUZZ_HEAD_LIMIT, FUZZ_MAX_HDRS);
    http1_scan_reset(&r.scan);
    r.out = evbuffer_new();
    r.body_bytes = evbuffer_new();
    if (r.out == NULL || r.body_bytes == NULL) {
        abort();
    }
    r.state = REQ_READING_HEAD;
    r.close = (control & 0x80) != 0;
    /* http1_chunks_scan may rewrite bytes, as it does in the proxy's
     * input buffer: each run reads its own copy. */
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        abort();
    }
    memcpy(copy, data, len);
    size_t pos = 0;
    req_process(&r, copy, &pos, split);
    req_process(&r, copy, &pos, len);
    free(copy);
    evbuffer_add_printf(r.out, "state %d\n", (int)r.state);
    r.verdict.parser_errno = http_errno_name(HTTP_PARSER_ERRNO(&r.parser));
    *verdict = r.verdict;
    if (r.verdict.status == 0) {
        evbuffer_add_buffer(r.out, r.body_bytes); /* a body still arriving */
    }
    evbuffer_free(r.body_bytes);
    http1_head_deinit(&r.head);
    return r.out;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_read_env();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const char *stream = (const char *)data + 1;
    size_t len = size - 1;
    size_t split = fuzz_split_at(data[0], len);
    struct fuzz_verdict vw, vc;
    struct evbuffer *whole = run(data[0], stream, len, len, &vw);
    struct evbuffer *cut = run(data[0], stream, len, split, &vc);
    fuzz_print("whole", whole, &vw);
    fuzz_print("split", cut, &vc);
    if (fuzz_strict) {
        fuzz_same(whole, cut, split);
    }
    evbuffer_free(whole);
    evbuffer_free(cut);
    return 0;
}
