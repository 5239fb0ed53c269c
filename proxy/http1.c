/*
 * http1: stored heads, intermediary rules and head regeneration.
 *
 * Header names are compared case-insensitively; values are copied byte for
 * byte. Every regenerated head is written straight into an evbuffer in one
 * pass over the stored headers; nothing is allocated per message once a
 * head's buffers have grown to fit.
 */
#include "http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

#include "util.h"

void http1_head_init(struct http1_head *h, uint32_t limit, uint32_t max_hdrs)
{
    memset(h, 0, sizeof(*h));
    h->limit = limit;
    h->max_hdrs = max_hdrs;
}

void http1_head_deinit(struct http1_head *h)
{
    free(h->buf);
    free(h->hdrs);
    h->buf = NULL;
    h->hdrs = NULL;
    h->cap = h->cap_hdrs = 0;
    http1_head_reset(h);
}

void http1_head_reset(struct http1_head *h)
{
    h->len = 0;
    h->n_hdrs = 0;
    h->target = h->target_len = 0;
    h->last = HTTP1_PIECE_NONE;
}

/* Make room for len more bytes; -1 past the limit or on allocation failure. */
static int head_reserve(struct http1_head *h, size_t len)
{
    if ((size_t)h->len + len > h->limit) {
        return -1;
    }
    if (h->len + len <= h->cap) {
        return 0;
    }
    uint32_t cap = h->cap ? h->cap : 256;
    while (cap < h->len + len) {
        cap *= 2;
    }
    if (cap > h->limit) {
        cap = h->limit;
    }
    char *buf = realloc(h->buf, cap);
    if (buf == NULL) {
        return -1;
    }
    h->buf = buf;
    h->cap = cap;
    return 0;
}

int http1_head_add(struct http1_head *h, enum http1_piece kind,
                   const char *at, size_t len)
{
    if (head_reserve(h, len) < 0) {
        return -1;
    }
    uint32_t off = h->len;
    if (len > 0) {
        memcpy(h->buf + off, at, len);
    }
    h->len += (uint32_t)len;

    int continues = (h->last == kind);
    h->last = kind;
    switch (kind) {
    case HTTP1_PIECE_URL:
    case HTTP1_PIECE_STATUS:
        if (!continues) {
            h->target = off;
            h->target_len = 0;
        }
        h->target_len += (uint32_t)len;
        return 0;
    case HTTP1_PIECE_FIELD:
        if (!continues) {
            if (h->n_hdrs == h->max_hdrs) {
                return -1;
            }
            if (h->n_hdrs == h->cap_hdrs) {
                uint32_t cap = h->cap_hdrs ? h->cap_hdrs * 2 : 8;
                if (cap > h->max_hdrs) {
                    cap = h->max_hdrs;
                }
                struct http1_header *hdrs =
                    realloc(h->hdrs, cap * sizeof(*hdrs));
                if (hdrs == NULL) {
                    return -1;
                }
                h->hdrs = hdrs;
                h->cap_hdrs = cap;
            }
            struct http1_header *hd = &h->hdrs[h->n_hdrs++];
            hd->name = off;
            hd->name_len = 0;
            hd->value = off;
            hd->value_len = 0;
        }
        h->hdrs[h->n_hdrs - 1].name_len += (uint32_t)len;
        return 0;
    case HTTP1_PIECE_VALUE:
        if (h->n_hdrs == 0) {
            return -1;
        }
        if (!continues) {
            h->hdrs[h->n_hdrs - 1].value = off;
            h->hdrs[h->n_hdrs - 1].value_len = 0;
        }
        h->hdrs[h->n_hdrs - 1].value_len += (uint32_t)len;
        return 0;
    case HTTP1_PIECE_NONE:
        break;
    }
    return -1;
}

void http1_head_trim(struct http1_head *h)
{
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        struct http1_header *hd = &h->hdrs[i];
        while (hd->value_len > 0 && (h->buf[hd->value + hd->value_len - 1] ==
                                         ' ' ||
                                     h->buf[hd->value + hd->value_len - 1] ==
                                         '\t')) {
            hd->value_len--;
        }
    }
}

int http1_head_find(const struct http1_head *h, const char *name, int from)
{
    for (uint32_t i = (uint32_t)from; i < h->n_hdrs; i++) {
        if (util_strieq(h->buf + h->hdrs[i].name, h->hdrs[i].name_len,
                        name)) {
            return (int)i;
        }
    }
    return -1;
}

/* Does the comma-separated list v (len bytes) hold token, ignoring case? */
static int list_has(const char *v, size_t len, const char *tok, size_t toklen)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        size_t start = i;
        while (i < len && v[i] != ',') {
            i++;
        }
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) {
            end--;
        }
        if (end - start == toklen && strncasecmp(v + start, tok, toklen) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Does any header called name list token (case-insensitive)? */
static int header_has_token(const struct http1_head *h, const char *name,
                            const char *token)
{
    size_t toklen = strlen(token);
    for (int i = http1_head_find(h, name, 0); i >= 0;
         i = http1_head_find(h, name, i + 1)) {
        if (list_has(h->buf + h->hdrs[i].value, h->hdrs[i].value_len, token,
                     toklen)) {
            return 1;
        }
    }
    return 0;
}

int http1_is_websocket_upgrade(const struct http1_head *h,
                               const http_parser *p)
{
    return p->method == HTTP_GET && p->http_major == 1 &&
           p->http_minor == 1 && header_has_token(h, "connection", "upgrade") &&
           header_has_token(h, "upgrade", "websocket");
}

int http1_is_websocket_switch(const struct http1_head *h)
{
    return header_has_token(h, "upgrade", "websocket");
}

int http1_connection_has(const struct http1_head *h, const char *token)
{
    size_t toklen = strlen(token);
    for (int i = http1_head_find(h, "connection", 0); i >= 0;
         i = http1_head_find(h, "connection", i + 1)) {
        if (list_has(h->buf + h->hdrs[i].value, h->hdrs[i].value_len, token,
                     toklen)) {
            return 1;
        }
    }
    return 0;
}

/* Hop-by-hop by definition (RFC 9110 7.6.1), plus framing we regenerate. */
static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "content-length",
};

int http1_is_hop_by_hop(const struct http1_head *h, const char *name,
                        size_t len)
{
    for (size_t i = 0; i < sizeof(hop_by_hop) / sizeof(hop_by_hop[0]); i++) {
        if (util_strieq(name, len, hop_by_hop[i])) {
            return 1;
        }
    }
    for (int i = http1_head_find(h, "connection", 0); i >= 0;
         i = http1_head_find(h, "connection", i + 1)) {
        if (list_has(h->buf + h->hdrs[i].value, h->hdrs[i].value_len, name,
                     len)) {
            return 1;
        }
    }
    return 0;
}

/* A Host value: host [":" port], no userinfo, path, spaces or second port. */
static int host_valid(const char *v, size_t len)
{
    size_t i = 0;
    if (len > 0 && v[0] == '[') {
        while (i < len && v[i] != ']') {
            char c = v[i];
            if (!(c == '[' || c == ':' || c == '.' ||
                  (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                  (c >= 'A' && c <= 'F'))) {
                return 0;
            }
            i++;
        }
        if (i == len) {
            return 0;
        }
        i++;
    } else {
        for (; i < len && v[i] != ':'; i++) {
            char c = v[i];
            int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                     c == '_' || c == '~' || c == '%' || c == '!' ||
                     c == '$' || c == '&' || c == '\'' || c == '(' ||
                     c == ')' || c == '*' || c == '+' || c == ',' ||
                     c == ';' || c == '=';
            if (!ok) {
                return 0;
            }
        }
    }
    if (i == len) {
        return 1;
    }
    if (v[i] != ':') {
        return 0;
    }
    i++;
    size_t digits = 0;
    unsigned port = 0;
    for (; i < len; i++, digits++) {
        if (v[i] < '0' || v[i] > '9' || digits == 5) {
            return 0;
        }
        port = port * 10 + (unsigned)(v[i] - '0');
    }
    return port <= 65535;
}

/* A header name is a token (RFC 9110 5.1): no whitespace, no separators. */
static int name_valid(const char *v, size_t len)
{
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c)) {
            return 0;
        }
    }
    return 1;
}

/* No control characters other than HTAB in a field value. */
static int value_valid(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int fail(struct http1_error *err, int status, const char *reason)
{
    err->status = status;
    err->reason = reason;
    return -1;
}

void http1_scan_reset(struct http1_scan *sc)
{
    memset(sc, 0, sizeof(*sc));
}

void http1_scan_reset_response(struct http1_scan *sc)
{
    memset(sc, 0, sizeof(*sc));
    sc->response = 1;
}

/* A start-line byte: track whether the current token reads "HTTP/". The
 * version is the first token of a status line, the last of a request line.
 * Returns -1 when the line is settled as wrong. */
static int scan_start_line(struct http1_scan *sc, unsigned char c)
{
    static const char version[] = "HTTP/";
    if (sc->start_done) {
        return 0;
    }
    if (c == ' ' || c == '\r' || c == '\n') {
        int is_version = sc->vmatch == 5 && !sc->vbad;
        if (sc->response || c != ' ') {
            /* A status line's first token, a request line's last. */
            sc->start_done = 1;
            return is_version ? 0 : -1;
        }
        sc->vmatch = 0;
        sc->vbad = 0;
        return 0;
    }
    if (sc->vmatch < 5) {
        if ((char)c == version[sc->vmatch]) {
            sc->vmatch++;
        } else {
            sc->vbad = 1;
            sc->vmatch = 5;
        }
    }
    return 0;
}

int http1_scan_head(struct http1_scan *sc, const char *data, size_t len,
                    size_t *used, struct http1_error *err)
{
    size_t i = 0;
    for (; i < len && !sc->done; i++) {
        unsigned char c = (unsigned char)data[i];
        if (sc->prev == '\r' && c != '\n') {
            return fail(err, 400, "bare CR in the message head");
        }
        sc->prev = c;
        if (c == '\0') {
            return fail(err, 400, "NUL in the message head");
        }
        if (sc->lines == 0 && (sc->line_len > 0 || (c != '\r' && c != '\n')) &&
            scan_start_line(sc, c) < 0) {
            return fail(err, 400, "malformed HTTP version in the start line");
        }
        if (c == '\n') {
            if (sc->line_len > 0) {
                sc->lines++;
            } else if (sc->lines > 0) {
                sc->done = 1; /* the blank line: the head ends here */
            }
            sc->line_len = 0;
        } else if (c != '\r') {
            if (sc->line_len == 0 && sc->lines > 0 && (c == ' ' || c == '\t')) {
                return fail(err, 400, sc->lines == 1
                                          ? "whitespace before the first header"
                                          : "obsolete line folding in a header");
            }
            sc->line_len++;
        }
    }
    *used = i;
    return 0;
}

/*
 * Transfer-Encoding as an intermediary can pass it on: absent, or exactly
 * one coding, "chunked" (RFC 9112 6.1). Returns 0 when acceptable; 1 when
 * it names other codings (well-formed tokens: not supported); -1 when it is
 * malformed (empty members, quotes, odd characters).
 */
static int transfer_encoding_kind(const struct http1_head *h, int *present)
{
    int codings = 0;
    int chunked_last = 0;
    int malformed = 0;
    *present = 0;
    for (int i = http1_head_find(h, "transfer-encoding", 0); i >= 0;
         i = http1_head_find(h, "transfer-encoding", i + 1)) {
        *present = 1;
        const char *v = h->buf + h->hdrs[i].value;
        size_t len = h->hdrs[i].value_len;
        size_t p = 0;
        do {
            while (p < len && (v[p] == ' ' || v[p] == '\t')) {
                p++;
            }
            size_t start = p;
            while (p < len && v[p] != ',' && v[p] != ' ' && v[p] != '\t') {
                unsigned char c = (unsigned char)v[p];
                if (c <= 0x20 || c >= 0x7f ||
                    strchr("\"(),/:;<=>?@[\\]{}", c) != NULL) {
                    malformed = 1;
                }
                p++;
            }
            size_t end = p;
            while (p < len && (v[p] == ' ' || v[p] == '\t')) {
                p++;
            }
            if (p < len && v[p] != ',') {
                malformed = 1; /* "chunked x": two words, one member */
                while (p < len && v[p] != ',') {
                    p++;
                }
            }
            if (end == start) {
                malformed = 1;
            } else {
                codings++;
                chunked_last = end - start == 7 &&
                               strncasecmp(v + start, "chunked", 7) == 0;
            }
            p++; /* past the comma */
        } while (p <= len);
    }
    if (!*present) {
        return 0;
    }
    if (malformed) {
        return -1;
    }
    return codings == 1 && chunked_last ? 0 : 1;
}

/* Where a chunked body scan is. */
enum chunk_state {
    CHUNK_SIZE_START,
    CHUNK_SIZE,
    CHUNK_BWS,
    CHUNK_EXT,
    CHUNK_SIZE_LF,
    CHUNK_DATA,
    CHUNK_DATA_CR,
    CHUNK_DATA_LF,
    CHUNK_DONE,
};

void http1_chunks_reset(struct http1_chunks *c)
{
    memset(c, 0, sizeof(*c));
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int http1_chunks_scan(struct http1_chunks *c, const char *data, size_t len,
                      struct http1_error *err)
{
    for (size_t i = 0; i < len && c->state != CHUNK_DONE; i++) {
        unsigned char ch = (unsigned char)data[i];
        switch (c->state) {
        case CHUNK_SIZE_START:
        case CHUNK_SIZE:
            if (hexval(ch) >= 0) {
                if (++c->digits > 16) {
                    return fail(err, 400, "chunk size too large");
                }
                c->left = c->left * 16 + (uint64_t)hexval(ch);
                c->state = CHUNK_SIZE;
            } else if (c->state == CHUNK_SIZE_START) {
                return fail(err, 400, "invalid chunk size");
            } else if (ch == ';') {
                c->state = CHUNK_EXT;
            } else if (ch == ' ' || ch == '\t') {
                c->state = CHUNK_BWS;
            } else if (ch == '\r') {
                c->state = CHUNK_SIZE_LF;
            } else {
                return fail(err, 400, "invalid chunk size");
            }
            break;
        case CHUNK_BWS:
            if (ch == ';') {
                c->state = CHUNK_EXT;
            } else if (ch != ' ' && ch != '\t') {
                return fail(err, 400, "whitespace after a chunk size");
            }
            break;
        case CHUNK_EXT:
            if (ch == '\r') {
                c->state = CHUNK_SIZE_LF;
            } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                return fail(err, 400, "invalid chunk extension");
            }
            break;
        case CHUNK_SIZE_LF:
            if (ch != '\n') {
                return fail(err, 400, "bare CR in a chunk size line");
            }
            c->state = c->left == 0 ? CHUNK_DONE : CHUNK_DATA;
            break;
        case CHUNK_DATA: {
            size_t take = len - i;
            if (take > c->left) {
                take = (size_t)c->left;
            }
            c->left -= take;
            i += take - 1;
            if (c->left == 0) {
                c->state = CHUNK_DATA_CR;
            }
            break;
        }
        case CHUNK_DATA_CR:
            if (ch != '\r') {
                return fail(err, 400, "chunk data longer than its size");
            }
            c->state = CHUNK_DATA_LF;
            break;
        case CHUNK_DATA_LF:
            if (ch != '\n') {
                return fail(err, 400, "chunk data not followed by CRLF");
            }
            c->state = CHUNK_SIZE_START;
            c->digits = 0;
            break;
        }
    }
    return 0;
}

/*
 * http-parser 2.9.4 takes a field whose name merely starts with
 * "Transfer-Encoding" (Transfer-Encoding-Foo) for the real one. Framing the
 * parser believes in must come from the exact fields we see.
 */
static int framing_mismatch(const struct http1_head *h, const http_parser *p,
                            int te_present)
{
    if ((p->uses_transfer_encoding || (p->flags & F_CHUNKED)) && !te_present) {
        return 1;
    }
    if ((p->flags & F_CONTENTLENGTH) &&
        http1_head_find(h, "content-length", 0) < 0) {
        return 1;
    }
    return 0;
}

int http1_origin_form(const struct http1_head *h, struct http1_target *t)
{
    const char *s = http1_str(h, h->target);
    t->target = s;
    t->target_len = h->target_len;
    t->authority = NULL;
    t->authority_len = 0;
    if (h->target_len == 0) {
        return -1;
    }
    if (s[0] == '/' || (h->target_len == 1 && s[0] == '*')) {
        return 0;
    }
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(s, h->target_len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_HOST))) {
        return -1;
    }
    size_t start = u.field_data[UF_HOST].off;
    size_t end = start + u.field_data[UF_HOST].len;
    if (start > 0 && s[start - 1] == '[' && end < h->target_len &&
        s[end] == ']') {
        start--; /* an IP literal keeps its brackets */
        end++;
    }
    if (u.field_set & (1 << UF_PORT)) {
        end = (size_t)u.field_data[UF_PORT].off + u.field_data[UF_PORT].len;
    }
    t->authority = s + start;
    t->authority_len = end - start;
    if (u.field_set & (1 << UF_PATH)) {
        size_t pstart = u.field_data[UF_PATH].off;
        size_t pend = pstart + u.field_data[UF_PATH].len;
        if (u.field_set & (1 << UF_QUERY)) {
            pend = (size_t)u.field_data[UF_QUERY].off +
                   u.field_data[UF_QUERY].len;
        }
        t->target = s + pstart;
        t->target_len = pend - pstart;
    } else {
        t->target = "/";
        t->target_len = 1;
    }
    return 0;
}

int http1_check_request(const struct http1_head *h, const http_parser *p,
                        struct http1_error *err)
{
    if (p->http_major != 1 || p->http_minor > 1) {
        return fail(err, 505, "HTTP version not supported");
    }
    if (p->method == HTTP_CONNECT) {
        return fail(err, 405, "CONNECT is not supported: not a forward proxy");
    }
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        if (!name_valid(h->buf + h->hdrs[i].name, h->hdrs[i].name_len)) {
            return fail(err, 400, "invalid header name (whitespace before "
                                  "the colon?)");
        }
        if (!value_valid(h->buf + h->hdrs[i].value, h->hdrs[i].value_len)) {
            return fail(err, 400, "control character in a header value");
        }
    }
    int te_present;
    int te = transfer_encoding_kind(h, &te_present);
    if (te_present && p->http_minor == 0) {
        return fail(err, 400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if (te < 0) {
        return fail(err, 400, "malformed Transfer-Encoding");
    }
    if (te > 0) {
        return fail(err, 501, "unsupported transfer coding");
    }
    if (te_present && http1_head_find(h, "content-length", 0) >= 0) {
        return fail(err, 400, "both Content-Length and Transfer-Encoding");
    }
    if (framing_mismatch(h, p, te_present)) {
        return fail(err, 400, "a header name that mimics Transfer-Encoding "
                              "or Content-Length");
    }
    int host = http1_head_find(h, "host", 0);
    if (host >= 0 && http1_head_find(h, "host", host + 1) >= 0) {
        return fail(err, 400, "more than one Host header");
    }
    if (host < 0 && p->http_minor == 1) {
        return fail(err, 400, "missing Host header");
    }
    if (host >= 0 &&
        !host_valid(h->buf + h->hdrs[host].value, h->hdrs[host].value_len)) {
        return fail(err, 400, "invalid Host header");
    }
    if (h->target_len == 0) {
        return fail(err, 400, "empty request target");
    }
    char first = h->buf[h->target];
    if (first != '/' && !(h->target_len == 1 && first == '*' &&
                          p->method == HTTP_OPTIONS)) {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(h->buf + h->target, h->target_len, 0, &u) !=
                0 ||
            !(u.field_set & (1 << UF_HOST))) {
            return fail(err, 400, "invalid request target");
        }
    }
    return 0;
}

int http1_check_response(const struct http1_head *h, const http_parser *p,
                         struct http1_error *err)
{
    if (p->http_major != 1 || p->http_minor > 1) {
        return fail(err, 502, "upstream sent an unsupported HTTP version");
    }
    if (p->status_code < 100 || p->status_code > 999) {
        return fail(err, 502, "upstream sent an invalid status code");
    }
    if (p->status_code == 101) {
        return fail(err, 502, "upstream switched protocols unasked");
    }
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        if (!name_valid(h->buf + h->hdrs[i].name, h->hdrs[i].name_len)) {
            return fail(err, 502, "upstream sent an invalid header name");
        }
        if (!value_valid(h->buf + h->hdrs[i].value, h->hdrs[i].value_len)) {
            return fail(err, 502, "upstream sent a control character in a "
                                  "header value");
        }
    }
    int te_present;
    if (transfer_encoding_kind(h, &te_present) != 0) {
        return fail(err, 502, "upstream sent a transfer coding other than "
                              "chunked");
    }
    if (te_present && http1_head_find(h, "content-length", 0) >= 0) {
        return fail(err, 502, "upstream sent both Content-Length and "
                              "Transfer-Encoding");
    }
    if (framing_mismatch(h, p, te_present)) {
        return fail(err, 502, "upstream sent a header name that mimics "
                              "Transfer-Encoding or Content-Length");
    }
    return 0;
}

enum http1_body http1_request_body(const http_parser *p)
{
    if (p->flags & F_CHUNKED) {
        return HTTP1_BODY_CHUNKED;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > 0) {
        return HTTP1_BODY_LENGTH;
    }
    return HTTP1_BODY_NONE;
}

enum http1_body http1_response_body(const http_parser *p, int head_request)
{
    int status = p->status_code;
    if (head_request || status / 100 == 1 || status == 204 || status == 304) {
        return HTTP1_BODY_NONE;
    }
    if (p->flags & F_CHUNKED) {
        return HTTP1_BODY_CHUNKED;
    }
    if (p->flags & F_CONTENTLENGTH) {
        return p->content_length > 0 ? HTTP1_BODY_LENGTH : HTTP1_BODY_NONE;
    }
    return HTTP1_BODY_EOF;
}

enum http1_body http1_client_framing(enum http1_body upstream,
                                     int client_major, int client_minor)
{
    int http11 = client_major > 1 || (client_major == 1 && client_minor >= 1);
    switch (upstream) {
    case HTTP1_BODY_NONE:
    case HTTP1_BODY_LENGTH:
        return upstream;
    case HTTP1_BODY_CHUNKED:
    case HTTP1_BODY_EOF:
        return http11 ? HTTP1_BODY_CHUNKED : HTTP1_BODY_EOF;
    }
    return HTTP1_BODY_EOF;
}

/* Copy one stored header line "Name: value\r\n". */
static void add_header(struct evbuffer *out, const struct http1_head *h,
                       const struct http1_header *hd)
{
    evbuffer_add(out, h->buf + hd->name, hd->name_len);
    evbuffer_add(out, ": ", 2);
    evbuffer_add(out, h->buf + hd->value, hd->value_len);
    evbuffer_add(out, "\r\n", 2);
}

int http1_write_request(struct evbuffer *out, const struct http1_head *h,
                        const struct http1_request_info *info)
{
    evbuffer_add_printf(out, "%s ", info->method);
    evbuffer_add(out, info->target, info->target_len);
    evbuffer_add(out, " HTTP/1.1\r\n", 11);

    int have_host = 0;
    int first_xff = -1;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct http1_header *hd = &h->hdrs[i];
        const char *name = h->buf + hd->name;
        size_t len = hd->name_len;
        if (http1_is_hop_by_hop(h, name, len) ||
            util_strieq(name, len, "expect") ||
            util_strieq(name, len, "x-forwarded-proto")) {
            continue;
        }
        if (util_strieq(name, len, "x-forwarded-for")) {
            if (first_xff < 0) {
                first_xff = (int)i;
            }
            continue;
        }
        if (util_strieq(name, len, "host")) {
            have_host = 1;
            if (info->authority != NULL) {
                evbuffer_add(out, "Host: ", 6);
                evbuffer_add(out, info->authority, info->authority_len);
                evbuffer_add(out, "\r\n", 2);
                continue;
            }
        }
        add_header(out, h, hd);
    }
    if (!have_host) {
        evbuffer_add(out, "Host: ", 6);
        if (info->authority != NULL) {
            evbuffer_add(out, info->authority, info->authority_len);
        } else {
            evbuffer_add(out, info->host, strlen(info->host));
        }
        evbuffer_add(out, "\r\n", 2);
    }
    evbuffer_add(out, "X-Forwarded-For: ", 17);
    for (int i = first_xff; i >= 0;
         i = http1_head_find(h, "x-forwarded-for", i + 1)) {
        if (h->hdrs[i].value_len > 0) {
            evbuffer_add(out, h->buf + h->hdrs[i].value, h->hdrs[i].value_len);
            evbuffer_add(out, ", ", 2);
        }
    }
    evbuffer_add_printf(out,
                        "%s\r\nX-Forwarded-Proto: %s\r\n"
                        "Via: %d.%d switchboard\r\n",
                        info->client_ip, info->proto, info->client_major,
                        info->client_minor);
    if (info->body == HTTP1_BODY_LENGTH) {
        evbuffer_add_printf(out, "Content-Length: %llu\r\n",
                            (unsigned long long)info->content_length);
    } else if (info->body == HTTP1_BODY_CHUNKED) {
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    }
    if (info->upgrade) {
        evbuffer_add(out, "Connection: Upgrade\r\nUpgrade: websocket\r\n", 41);
    } else if (info->close) {
        evbuffer_add(out, "Connection: close\r\n", 19);
    }
    return evbuffer_add(out, "\r\n", 2);
}

int http1_write_response(struct evbuffer *out, const struct http1_head *h,
                         const struct http1_response_info *info)
{
    evbuffer_add_printf(out, "HTTP/1.1 %03d ", info->status);
    if (h->target_len > 0) {
        evbuffer_add(out, h->buf + h->target, h->target_len);
    } else {
        const char *text = http1_status_text(info->status);
        evbuffer_add(out, text, strlen(text));
    }
    evbuffer_add(out, "\r\n", 2);

    int have_date = 0;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct http1_header *hd = &h->hdrs[i];
        const char *name = h->buf + hd->name;
        size_t len = hd->name_len;
        if (info->no_body && info->status != 204 &&
            util_strieq(name, len, "content-length")) {
            add_header(out, h, hd); /* a HEAD or 304 keeps its length */
            continue;
        }
        if (http1_is_hop_by_hop(h, name, len)) {
            continue;
        }
        if (util_strieq(name, len, "date")) {
            have_date = 1;
        }
        add_header(out, h, hd);
    }
    evbuffer_add_printf(out, "Via: %d.%d switchboard\r\n",
                        info->upstream_major, info->upstream_minor);
    if (info->upgrade) {
        evbuffer_add(out, "Connection: Upgrade\r\nUpgrade: websocket\r\n", 41);
    }
    if (info->interim) {
        return evbuffer_add(out, "\r\n", 2);
    }
    if (!have_date) {
        char date[30];
        evbuffer_add_printf(out, "Date: %s\r\n", http1_date(date));
    }
    if (info->framing == HTTP1_BODY_LENGTH) {
        evbuffer_add_printf(out, "Content-Length: %llu\r\n",
                            (unsigned long long)info->content_length);
    } else if (info->framing == HTTP1_BODY_CHUNKED) {
        evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
    }
    if (!info->keep_alive) {
        evbuffer_add(out, "Connection: close\r\n", 19);
    } else if (info->client_http10) {
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    }
    return evbuffer_add(out, "\r\n", 2);
}

int http1_write_error(struct evbuffer *out, int status, const char *reason)
{
    char date[30];
    return evbuffer_add_printf(
        out,
        "HTTP/1.1 %03d %s\r\nServer: switchboard\r\nDate: %s\r\n"
        "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
        "Connection: close\r\n\r\n%s\n",
        status, http1_status_text(status), http1_date(date),
        strlen(reason) + 1, reason);
}

const char *http1_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

const char *http1_date(char buf[30])
{
    static time_t cached_at;
    static char cached[30];
    time_t now = time(NULL);
    if (now != cached_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_at = now;
    }
    memcpy(buf, cached, sizeof(cached));
    return buf;
}
