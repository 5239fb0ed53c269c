/*
 * fuzz_common: what the two http1 fuzz targets share, kept in one header so
 * the request and the response targets feed the parser the same way.
 *
 * It owns the input layout (one control byte, then the bytes of the
 * stream), where the stream is cut in two deliveries, the comparison of
 * the two runs of an input, and the optional strict checks on a regenerated
 * head. It must not replicate more of session.c than the head path needs
 * (each target mirrors one process loop): every rule under test lives in
 * proxy/http1.c, which is compiled in directly.
 *
 * Included by exactly one translation unit per fuzz binary, so the few
 * non-static definitions here (the sanitizer options) appear once.
 */
#ifndef SWITCHBOARD_FUZZ_COMMON_H
#define SWITCHBOARD_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <http_parser.h>

#include "http1.h"
#include "util.h"

/* The session's defaults: max_header_size 16k, 256 fields a head. */
#define FUZZ_HEAD_LIMIT (16u * 1024u)
#define FUZZ_MAX_HDRS 256u

/*
 * UBSan recovers by default: it prints and goes on, and libFuzzer would not
 * count the input as a crash. Stop at the first report instead.
 */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

/* Set from SWITCHBOARD_FUZZ_STRICT=1: check what a regenerated head says,
 * not only that producing it is memory-safe (fuzz_strict_lines and the
 * targets' strict_* functions). */
static int fuzz_strict;
/* Set from SWITCHBOARD_FUZZ_DUMP=1: print each run's transcript, to see
 * what a reproducer does. */
static int fuzz_dump;

static int fuzz_env_flag(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' && v[0] != '0';
}

static void fuzz_read_env(void)
{
    fuzz_strict = fuzz_env_flag("SWITCHBOARD_FUZZ_STRICT");
    fuzz_dump = fuzz_env_flag("SWITCHBOARD_FUZZ_DUMP");
}

/* Print why an invariant broke and abort, so libFuzzer keeps the input. */
static void fuzz_fail(const char *what, const char *detail, size_t len)
{
    fprintf(stderr, "fuzz: %s\n", what);
    if (detail != NULL) {
        fprintf(stderr, "---\n%.*s\n---\n", (int)len, detail);
    }
    abort();
}

/*
 * Where to cut a stream of len bytes into two deliveries (two reads, so at
 * least two execute calls), from the low
 * seven bits of the control byte: below 64 an absolute offset (splits in the
 * request or status line and the first fields), from 64 on a proportion of
 * len (splits anywhere). Never past len.
 */
static size_t fuzz_split_at(uint8_t control, size_t len)
{
    size_t sel = control & 0x7f;
    size_t at = sel < 64 ? sel : (sel - 64) * len / 63;
    return at < len ? at : len;
}

/*
 * Strict mode: session.c feeds the parser a head only as far as
 * http1_scan_head says it goes, and everything after the scanner's blank
 * line unscanned. If the two disagree on where a head ends, bytes of a
 * head (bare CR, NUL, obs-fold) reach the parser unchecked, or bytes past
 * it are refused. Called when the parser ends a head (parser_done) or
 * consumed everything the scanner gave it (scan_done); each must hold the
 * other too.
 */
static void fuzz_strict_scan_agrees(int scan_done, int parser_done)
{
    if (scan_done && !parser_done) {
        fuzz_fail("strict: the head scanner saw the end of a head the parser "
                  "is still reading; the rest of it goes unscanned",
                  NULL, 0);
    }
    if (parser_done && !scan_done) {
        fuzz_fail("strict: the parser ended a head the scanner had not seen "
                  "the end of",
                  NULL, 0);
    }
}

/* RFC 9110 tchar: what a field name may hold. */
static int fuzz_is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Names a regenerated head must never carry: hop-by-hop, and in a
 * request Expect (the proxy answers it; last in the list). Framing and
 * Connection, which http1_write_* add themselves once, are counted apart. */
static const char *const fuzz_dropped[] = {
    "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect",
};

/*
 * Strict mode: the lines of a head that http1_write_request or
 * http1_write_response produced (len bytes, ending in an empty line). Every
 * field name must be a token, so a downstream parser reads the same names
 * we did; no dropped name may survive; framing and Connection appear at
 * most once. Aborts with the head on a violation.
 */
static void fuzz_strict_lines(const char *head, size_t len, int request)
{
    size_t n_dropped =
        sizeof(fuzz_dropped) / sizeof(*fuzz_dropped) - (request ? 0 : 1);
    size_t i = 0;
    int first = 1;
    int n_cl = 0, n_te = 0, n_conn = 0;
    while (i < len) {
        size_t end = i;
        while (end + 1 < len && !(head[end] == '\r' && head[end + 1] == '\n')) {
            end++;
        }
        if (end + 1 >= len) {
            fuzz_fail("strict: regenerated head not CRLF-terminated", head,
                      len);
        }
        if (end == i) {
            if (end + 2 != len) {
                fuzz_fail("strict: bytes after the empty line", head, len);
            }
            break;
        }
        if (!first) {
            size_t colon = i;
            while (colon < end && head[colon] != ':') {
                colon++;
            }
            if (colon == i || colon == end) {
                fuzz_fail("strict: field line without a name or a colon", head,
                          len);
            }
            for (size_t k = i; k < colon; k++) {
                if (!fuzz_is_tchar((unsigned char)head[k])) {
                    fuzz_fail("strict: forwarded field name is not a token "
                              "(RFC 9112 5.1: no whitespace before the colon)",
                              head, len);
                }
            }
            for (size_t k = colon + 1; k < end; k++) {
                unsigned char c = (unsigned char)head[k];
                if ((c < 0x20 && c != '\t') || c == 0x7f) {
                    fuzz_fail("strict: control character in a forwarded "
                              "value",
                              head, len);
                }
            }
            size_t nlen = colon - i;
            for (size_t k = 0; k < n_dropped; k++) {
                if (util_strieq(head + i, nlen, fuzz_dropped[k])) {
                    fuzz_fail("strict: hop-by-hop field forwarded", head, len);
                }
            }
            n_cl += util_strieq(head + i, nlen, "content-length");
            n_te += util_strieq(head + i, nlen, "transfer-encoding");
            n_conn += util_strieq(head + i, nlen, "connection");
        }
        first = 0;
        i = end + 2;
    }
    if (n_cl > 1 || n_te > 1 || n_conn > 1 || (n_cl && n_te)) {
        fuzz_fail("strict: framing or Connection repeated", head, len);
    }
}

/* A parser over a regenerated head, stopping at its end (strict mode). */
struct fuzz_reparse {
    http_parser parser;
    struct http1_head head;
    int complete;
};

static int on_reparse_piece(http_parser *p, enum http1_piece kind,
                            const char *at, size_t len)
{
    struct fuzz_reparse *r = p->data;
    return http1_head_add(&r->head, kind, at, len) < 0 ? -1 : 0;
}

static int on_reparse_url(http_parser *p, const char *at, size_t len)
{
    return on_reparse_piece(p, HTTP1_PIECE_URL, at, len);
}

static int on_reparse_status(http_parser *p, const char *at, size_t len)
{
    return on_reparse_piece(p, HTTP1_PIECE_STATUS, at, len);
}

static int on_reparse_field(http_parser *p, const char *at, size_t len)
{
    return on_reparse_piece(p, HTTP1_PIECE_FIELD, at, len);
}

static int on_reparse_value(http_parser *p, const char *at, size_t len)
{
    return on_reparse_piece(p, HTTP1_PIECE_VALUE, at, len);
}

static int on_reparse_headers_complete(http_parser *p)
{
    struct fuzz_reparse *r = p->data;
    http1_head_trim(&r->head);
    r->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings fuzz_reparse_settings = {
    .on_url = on_reparse_url,
    .on_status = on_reparse_status,
    .on_header_field = on_reparse_field,
    .on_header_value = on_reparse_value,
    .on_headers_complete = on_reparse_headers_complete,
};

/*
 * Strict mode: parse a regenerated head (len bytes) as the next hop would.
 * It must reach the end of the head without an error; r holds the parser
 * and the stored head for the caller's checks; free with
 * fuzz_reparse_deinit.
 */
static void fuzz_reparse(struct fuzz_reparse *r, enum http_parser_type type,
                         const char *head, size_t len)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, type);
    r->parser.data = r;
    http1_head_init(&r->head, UINT32_MAX, UINT32_MAX);
    http_parser_execute(&r->parser, &fuzz_reparse_settings, head, len);
    if (!r->complete || HTTP_PARSER_ERRNO(&r->parser) != HPE_PAUSED) {
        fprintf(stderr, "fuzz: parser error %s\n",
                http_errno_name(HTTP_PARSER_ERRNO(&r->parser)));
        fuzz_fail("strict: the regenerated head does not parse", head, len);
    }
}

static void fuzz_reparse_deinit(struct fuzz_reparse *r)
{
    http1_head_deinit(&r->head);
}

/* Copy of the last len bytes of buf from offset from (a head just written),
 * for the strict checks; the caller frees it. */
static char *fuzz_tail(struct evbuffer *buf, size_t from, size_t *len)
{
    *len = evbuffer_get_length(buf) - from;
    char *copy = malloc(*len + 1);
    if (copy == NULL) {
        abort();
    }
    struct evbuffer_ptr pos;
    evbuffer_ptr_set(buf, &pos, from, EVBUFFER_PTR_SET);
    if (evbuffer_copyout_from(buf, &pos, copy, *len) != (ev_ssize_t)*len) {
        abort();
    }
    copy[*len] = '\0';
    return copy;
}

/*
 * Why a run stopped, kept beside its transcript and not compared between
 * the two runs of an input: the head scanner looks at every byte delivered
 * before the parser sees any, so a head with two faults is refused for one
 * or the other depending on where the delivery was cut. Whether a run was
 * refused, and after which forwarded heads, is compared: the transcript
 * says "reject" there.
 */
struct fuzz_verdict {
    int status;               /* 0 while nothing was refused */
    const char *reason;       /* static string */
    const char *parser_errno; /* http_errno_name() at the end of the run */
};

/* Record a refusal; the first one of a run is the one session.c answers,
 * with http1_write_error (written here to a scratch buffer: its reason is
 * not compared). */
static void fuzz_reject(struct evbuffer *out, struct fuzz_verdict *v,
                        int status, const char *reason)
{
    if (v->status == 0) {
        v->status = status;
        v->reason = reason;
        evbuffer_add(out, "reject\n", 7);
        struct evbuffer *answer = evbuffer_new();
        if (answer == NULL || http1_write_error(answer, status, reason, 0) < 0) {
            abort();
        }
        evbuffer_free(answer);
    }
}

/* With SWITCHBOARD_FUZZ_DUMP=1, print a run's transcript to stderr. */
static void fuzz_print(const char *label, struct evbuffer *out,
                       const struct fuzz_verdict *v)
{
    if (fuzz_dump) {
        size_t n = evbuffer_get_length(out);
        fprintf(stderr, "=== %s (%zu bytes)\n%.*s\n=== %s: %d %s (parser %s)\n",
                label, n, (int)n, (const char *)evbuffer_pullup(out, -1), label,
                v->status, v->status ? v->reason : "not refused",
                v->parser_errno);
    }
}

/* Strict mode: abort unless the two transcripts of one input (fed whole,
 * fed split) are byte for byte the same: what is forwarded must not depend
 * on how the bytes arrived. */
static void fuzz_same(struct evbuffer *whole, struct evbuffer *split,
                      size_t split_at)
{
    size_t a = evbuffer_get_length(whole);
    size_t b = evbuffer_get_length(split);
    const unsigned char *pa = evbuffer_pullup(whole, -1);
    const unsigned char *pb = evbuffer_pullup(split, -1);
    if (a != b || (a > 0 && memcmp(pa, pb, a) != 0)) {
        fprintf(stderr, "fuzz: split at %zu changes the result\n", split_at);
        fprintf(stderr, "--- whole\n%.*s\n--- split\n%.*s\n---\n", (int)a,
                (const char *)pa, (int)b, (const char *)pb);
        abort();
    }
}

#endif
