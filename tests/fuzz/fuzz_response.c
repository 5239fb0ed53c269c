/*
 * fuzz_response: libFuzzer target for the response-head path of session.c.
 *
 * The input is one control byte and then what an upstream sends back:
 * interim (1xx) responses, then a final one. upstream_process() is
 * mirrored without backpressure: while a head is read it is scanned with
 * http1_scan_head, which also bounds what the parser is fed; the
 * HTTP_RESPONSE parser's callbacks store the head with http1_head_add
 * exactly as session.c's on_resp_* callbacks do; at headers complete the
 * head is trimmed and checked with http1_check_response, then an interim
 * head is regenerated with http1_write_response (interim), and a final one
 * is framed with http1_response_body and http1_client_framing and
 * regenerated for an HTTP/1.1 and for an HTTP/1.0 client. A chunked body
 * is checked by http1_chunks_scan before the parser reads it, from a
 * pause on the head's last LF, as session.c does. The end of the input is
 * the upstream closing (an execute call with no bytes), which ends a
 * close-delimited body.
 *
 * Control byte: bits 0-6 choose where the stream is cut into two
 * deliveries (fuzz_split_at); bit 7 says the request was HEAD. Every input
 * runs twice, fed whole and fed split.
 *
 * By default a finding is a crash, a sanitizer report or a leak. With
 * SWITCHBOARD_FUZZ_STRICT=1 it is also: two runs whose transcripts differ;
 * a regenerated head that is malformed or that the client would read
 * differently; the head scanner and the parser disagreeing on where a head
 * ends; body bytes reaching the client after a 1xx or after a head that
 * promised no body.
 *
 * Owns nothing past one call: everything is freed before returning.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <http_parser.h>

#include "fuzz_common.h"
#include "http1.h"
#include "util.h"

/* One upstream connection's response direction, for one exchange. */
struct fuzz_resp {
    http_parser parser;
    struct http1_head head;
    struct http1_scan scan;      /* raw checks on the head being read */
    struct http1_chunks chunks;  /* raw checks on a chunked body */
    struct evbuffer *out;        /* transcript: heads, body bytes, refusal */
    struct evbuffer *body_bytes; /* this message's body, until it is whole */
    struct fuzz_verdict verdict;
    int head_request;     /* the request was HEAD */
    int interim;          /* the message being parsed is a 1xx */
    int reading_head;     /* UPSTREAM_READING_HEAD, else streaming body */
    int head_complete;    /* the current message's head is parsed */
    int done;             /* the final response is complete */
    int chunked;          /* the final head says chunked: scan to the end */
    int paused_head;      /* the parser stopped on a chunked head's end */
    int head_lf_pending;  /* ...before its last LF, which is not a chunk's */
    int closed;           /* session.c answered an error */
    enum http1_body body; /* the final response's framing from upstream */
};

/* ---- strict checks ------------------------------------------------------ */

/*
 * The head just written (from offset from of the transcript) must be well
 * formed and must parse, at the client, into what we meant: accepted by our
 * own response check, the same status, and for a final response with a
 * body the framing we regenerated.
 */
static void strict_response(struct fuzz_resp *r, size_t from,
                            const struct http1_response_info *info)
{
    size_t len;
    char *head = fuzz_tail(r->out, from, &len);
    fuzz_strict_lines(head, len, 0);
    struct fuzz_reparse rp;
    fuzz_reparse(&rp, HTTP_RESPONSE, head, len);
    struct http1_error err;
    if (http1_check_response(&rp.head, &rp.parser, 0, 0, &err) < 0) {
        fprintf(stderr, "fuzz: %d %s\n", err.status, err.reason);
        fuzz_fail("strict: our own check refuses the response we sent", head,
                  len);
    }
    if (rp.parser.status_code != info->status) {
        fuzz_fail("strict: status changed on the way", head, len);
    }
    if (!info->interim && !info->no_body) {
        enum http1_body body = http1_response_body(&rp.parser, 0);
        if (body != info->framing ||
            (body == HTTP1_BODY_LENGTH &&
             rp.parser.content_length != info->content_length)) {
            fuzz_fail("strict: the client frames the body differently", head,
                      len);
        }
    }
    fuzz_reparse_deinit(&rp);
    free(head);
}

/* Regenerate a head into the transcript, checking it in strict mode. */
static void write_head(struct fuzz_resp *r,
                       const struct http1_response_info *info)
{
    evbuffer_add_printf(r->out, "head interim=%d framing=%d keep-alive=%d\n",
                        info->interim, (int)info->framing, info->keep_alive);
    size_t from = evbuffer_get_length(r->out);
    if (http1_write_response(r->out, &r->head, info) < 0) {
        fuzz_fail("http1_write_response failed", NULL, 0);
    }
    if (fuzz_strict) {
        strict_response(r, from, info);
    }
}

/*
 * At headers complete: a response the client is told has no body (a 1xx,
 * a 204, a 304, a length of 0) must not have one for the parser either,
 * or http-parser reads "body" bytes that session.c then relays raw after a
 * head without framing, or waits for bytes that never come. HEAD is
 * exempt: on_resp_headers_complete returns 1 for it, which makes the
 * parser skip the body.
 */
static void strict_parser_framing(struct fuzz_resp *r, const http_parser *p)
{
    /* uses_transfer_encoding: http-parser 2.9.4 sets it for any field
     * name that starts with "Transfer-Encoding", and then reads a
     * response without Content-Length to the end of the connection. */
    int parser_body =
        (p->flags & F_CHUNKED) || p->uses_transfer_encoding ||
        (p->content_length > 0 && p->content_length != UINT64_MAX);
    int no_body = p->status_code / 100 == 1 ||
                  http1_response_body(p, r->head_request) == HTTP1_BODY_NONE;
    /* session.c tells the parser to skip the body of these (returns 1
     * from headers-complete), whatever framing they claim. */
    int skipped = r->head_request || p->status_code / 100 == 1 ||
                  p->status_code == 204 || p->status_code == 304;
    if (no_body && parser_body && !skipped) {
        fprintf(stderr, "fuzz: status %d\n", p->status_code);
        fuzz_fail("strict: http-parser will read a body for a response "
                  "the client is told has none",
                  NULL, 0);
    }
}

/* ---- parser callbacks, as session.c's on_resp_* ------------------------ */

static int on_resp_message_begin(http_parser *p)
{
    struct fuzz_resp *r = p->data;
    http1_head_reset(&r->head);
    r->head_complete = 0;
    return 0;
}

static int head_piece(struct fuzz_resp *r, enum http1_piece kind,
                      const char *at, size_t len)
{
    if (http1_head_add(&r->head, kind, at, len) < 0) {
        fuzz_reject(r->out, &r->verdict, 502,
                    "upstream response head too large");
        return -1;
    }
    return 0;
}

static int on_resp_status(http_parser *p, const char *at, size_t len)
{
    return head_piece(p->data, HTTP1_PIECE_STATUS, at, len);
}

static int on_resp_header_field(http_parser *p, const char *at, size_t len)
{
    if (p->flags & F_TRAILING) {
        return 0;
    }
    return head_piece(p->data, HTTP1_PIECE_FIELD, at, len);
}

static int on_resp_header_value(http_parser *p, const char *at, size_t len)
{
    if (p->flags & F_TRAILING) {
        return 0;
    }
    return head_piece(p->data, HTTP1_PIECE_VALUE, at, len);
}

static int on_resp_headers_complete(http_parser *p)
{
    struct fuzz_resp *r = p->data;
    http1_head_trim(&r->head);
    r->head_complete = 1;
    if (fuzz_strict) {
        fuzz_strict_scan_agrees(r->scan.done, 1);
    }
    struct http1_error err;
    if (http1_check_response(&r->head, p, 0, 0, &err) < 0) {
        fuzz_reject(r->out, &r->verdict, err.status, err.reason);
        return -1;
    }
    http1_settle_chunked(p);
    if (fuzz_strict) {
        strict_parser_framing(r, p);
    }
    if (p->status_code / 100 == 1) {
        /* session.c relays only 102/103 to 1.1 clients; write every 1xx
         * here so the interim path sees all of them. */
        r->interim = 1;
        struct http1_response_info info = {
            .status = p->status_code,
            .upstream_major = p->http_major,
            .upstream_minor = p->http_minor,
            .interim = 1,
        };
        write_head(r, &info);
        return 1; /* as session.c: a 1xx never has a body */
    }
    r->body = http1_response_body(p, r->head_request);
    for (int minor = 1; minor >= 0; minor--) {
        enum http1_body framing = http1_client_framing(r->body, 1, minor);
        struct http1_response_info info = {
            .status = p->status_code,
            .upstream_major = p->http_major,
            .upstream_minor = p->http_minor,
            .framing = framing,
            .content_length = p->content_length,
            .keep_alive = framing != HTTP1_BODY_EOF,
            .client_http10 = minor == 0,
            .no_body = r->body == HTTP1_BODY_NONE,
        };
        write_head(r, &info);
    }
    r->reading_head = 0;
    /* As session.c: HEAD, 204 and 304 never have a body. */
    if (r->head_request || p->status_code == 204 || p->status_code == 304) {
        return 1;
    }
    if (r->body == HTTP1_BODY_CHUNKED) {
        /* Stop on the head's last LF: the chunks are scanned first. */
        http1_chunks_reset(&r->chunks);
        r->chunked = 1;
        r->head_lf_pending = 1;
        r->paused_head = 1;
        http_parser_pause(p, 1);
    }
    return 0;
}

/* Body bytes go to the transcript as they are (session.c forwards them,
 * re-chunked or not, after the head it wrote) once the message is whole. */
static int on_resp_body(http_parser *p, const char *at, size_t len)
{
    struct fuzz_resp *r = p->data;
    if (fuzz_strict && len > 0 && (r->interim || r->body == HTTP1_BODY_NONE)) {
        fuzz_fail(r->interim
                      ? "strict: body bytes of a 1xx reach the client"
                      : "strict: body bytes after a head that promised none "
                        "reach the client",
                  at, len);
    }
    evbuffer_add(r->body_bytes, at, len);
    return 0;
}

static int on_resp_message_complete(http_parser *p)
{
    struct fuzz_resp *r = p->data;
    evbuffer_add_buffer(r->out, r->body_bytes);
    if (r->interim) {
        r->interim = 0;
        http1_scan_reset_response(&r->scan);
        return 0; /* the final response follows */
    }
    r->done = 1;
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

/* Stop with a verdict in the transcript (reply_error or upstream_fail). */
static void resp_close(struct fuzz_resp *r, const char *reason)
{
    fuzz_reject(r->out, &r->verdict, 502, reason);
    r->closed = 1;
}

/* A pause is a chunked head's end (the body follows) or the end of the
 * final response: response_done(). */
static void resp_after_execute(struct fuzz_resp *r)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e == HPE_PAUSED && r->paused_head) {
        http_parser_pause(&r->parser, 0);
        r->paused_head = 0;
    } else if (e == HPE_PAUSED) {
        http_parser_pause(&r->parser, 0);
        evbuffer_add_printf(r->out, "\nend keep-alive=%d\n",
                            http1_keep_alive(&r->head, &r->parser));
        r->closed = 1;
    } else if (e != HPE_OK) {
        resp_close(r, http_errno_name(e));
    }
}

/*
 * upstream_process() over the bytes delivered so far, data[*pos, end), and
 * at eof the upstream's close: scan, feed, until the input runs dry or the
 * exchange ends.
 */
static void resp_process(struct fuzz_resp *r, char *data, size_t *pos,
                         size_t end, int eof)
{
    while (!r->closed) {
        http_parser *p = &r->parser;
        size_t avail = end - *pos;
        if (avail > 0) {
            char *v = data + *pos;
            size_t feed = avail;
            struct http1_error err;
            if (r->reading_head && !r->scan.done &&
                http1_scan_head(&r->scan, v, avail, &feed, &err) < 0) {
                resp_close(r, err.reason);
                return;
            }
            if (!r->reading_head && r->chunked) {
                size_t skip = r->head_lf_pending ? 1 : 0;
                r->head_lf_pending = 0;
                if (http1_chunks_scan(&r->chunks, v + skip, feed - skip,
                                      &err) < 0) {
                    resp_close(r, err.reason);
                    return;
                }
            }
            size_t n = http_parser_execute(p, &response_settings, v, feed);
            *pos += n;
            if (HTTP_PARSER_ERRNO(p) == HPE_OK && n < feed) {
                resp_close(r, "unexpected bytes");
                return;
            }
            if (fuzz_strict && r->reading_head && !r->head_complete &&
                HTTP_PARSER_ERRNO(p) == HPE_OK) {
                fuzz_strict_scan_agrees(r->scan.done, 0);
            }
        } else if (eof) {
            http_parser_execute(p, &response_settings, NULL, 0);
            if (HTTP_PARSER_ERRNO(p) == HPE_OK && !r->done) {
                resp_close(r, "closed before responding");
                return;
            }
        } else {
            return;
        }
        resp_after_execute(r);
    }
}

/* Run the stream delivered in two reads, cut at split, then the upstream's
 * close; returns the transcript (caller frees) and fills verdict. */
static struct evbuffer *run(uint8_t control, const char *data, size_t len,
                            size_t split, struct fuzz_verdict *verdict)
{
    struct fuzz_resp r;
    memset(&r, 0, sizeof(r));
    http_parser_init(&r.parser, HTTP_RESPONSE);
    r.parser.data = &r;
    http1_head_init(&r.head, FUZZ_HEAD_LIMIT, FUZZ_MAX_HDRS);
    http1_scan_reset_response(&r.scan);
    r.out = evbuffer_new();
    r.body_bytes = evbuffer_new();
    if (r.out == NULL || r.body_bytes == NULL) {
        abort();
    }
    r.head_request = (control & 0x80) != 0;
    r.reading_head = 1;
    /* http1_chunks_scan may rewrite bytes, as it does in the proxy's
     * input buffer: each run reads its own copy. */
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        abort();
    }
    memcpy(copy, data, len);
    size_t pos = 0;
    resp_process(&r, copy, &pos, split, 0);
    resp_process(&r, copy, &pos, len, 1);
    free(copy);
    evbuffer_add_printf(r.out, "done %d\n", r.done);
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
    /* A head without Date gets the current second: compare the two runs
     * (strict mode) only when the clock did not tick between them. */
    char before[30], after[30];
    http1_date(before);
    struct fuzz_verdict vw, vc;
    struct evbuffer *whole = run(data[0], stream, len, len, &vw);
    struct evbuffer *cut = run(data[0], stream, len, split, &vc);
    fuzz_print("whole", whole, &vw);
    fuzz_print("split", cut, &vc);
    http1_date(after);
    if (fuzz_strict && memcmp(before, after, sizeof(before)) == 0) {
        fuzz_same(whole, cut, split);
    }
    evbuffer_free(whole);
    evbuffer_free(cut);
    return 0;
}
