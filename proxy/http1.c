/*
 * http1: stored heads, intermediary rules and head regeneration.
 *
 * Header names are compared case-insensitively; values are copied byte for
 * byte. Every regenerated head is written straight into an evbuffer in one
 * pass over the stored headers; nothing is allocated per message once a
 * head's buffers have grown to fit.
 */
#include "http1.h"

#include <arpa/inet.h>
#include <netinet/in.h>
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
    h->method = h->method_len = 0;
    h->last = HTTP1_PIECE_NONE;
}

/* Make room for len more bytes; -1 past the limit, -3 out of memory. */
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
        return -3;
    }
    h->buf = buf;
    h->cap = cap;
    return 0;
}

int http1_head_add(struct http1_head *h, enum http1_piece kind,
                   const char *at, size_t len)
{
    if (kind == HTTP1_PIECE_METHOD) {
        /* Whole and NUL-terminated: it is printed as it is. */
        int rc = head_reserve(h, len + 1);
        if (rc < 0) {
            return rc;
        }
        h->method = h->len;
        h->method_len = (uint32_t)len;
        memcpy(h->buf + h->len, at, len);
        h->buf[h->len + len] = '\0';
        h->len += (uint32_t)len + 1;
        h->last = kind;
        return 0;
    }
    int rc = head_reserve(h, len);
    if (rc < 0) {
        return rc;
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
                return -2;
            }
            if (h->n_hdrs == h->cap_hdrs) {
                uint32_t cap = h->cap_hdrs ? h->cap_hdrs * 2 : 8;
                if (cap > h->max_hdrs) {
                    cap = h->max_hdrs;
                }
                struct http1_header *hdrs =
                    realloc(h->hdrs, cap * sizeof(*hdrs));
                if (hdrs == NULL) {
                    return -3;
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
    case HTTP1_PIECE_METHOD: /* taken above */
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

int http1_expectation(const struct http1_head *h)
{
    int found = 0;
    for (int i = http1_head_find(h, "expect", 0); i >= 0;
         i = http1_head_find(h, "expect", i + 1)) {
        const char *v = h->buf + h->hdrs[i].value;
        size_t len = h->hdrs[i].value_len, at = 0, start, end;
        while (util_list_next(v, len, &at, &start, &end)) {
            if (end - start != 12 ||
                strncasecmp(v + start, "100-continue", 12) != 0) {
                return -1;
            }
            found = 1;
        }
    }
    return found;
}

/* Does any header called name list token (case-insensitive)? */
static int header_has_token(const struct http1_head *h, const char *name,
                            const char *token)
{
    size_t toklen = strlen(token);
    for (int i = http1_head_find(h, name, 0); i >= 0;
         i = http1_head_find(h, name, i + 1)) {
        if (util_list_has(h->buf + h->hdrs[i].value, h->hdrs[i].value_len,
                          token, toklen)) {
            return 1;
        }
    }
    return 0;
}

int http1_is_websocket_upgrade(const struct http1_head *h,
                               const http_parser *p)
{
    return p->method == HTTP_GET && p->http_major == 1 &&
           p->http_minor >= 1 && header_has_token(h, "connection", "upgrade") &&
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
        if (util_list_has(h->buf + h->hdrs[i].value, h->hdrs[i].value_len,
                          token, toklen)) {
            return 1;
        }
    }
    return 0;
}

/*
 * The header names the writers treat specially. Classifying a name costs a
 * switch on its length and at most two case-insensitive compares, instead of
 * one compare per special name.
 */
enum header_kind {
    HDR_OTHER,
    /* Hop-by-hop by definition (RFC 9110 7.6.1), plus framing we
     * regenerate: everything up to HDR_HOP_LAST. */
    HDR_CONNECTION,
    HDR_HOP_FIRST = HDR_CONNECTION,
    HDR_KEEP_ALIVE,
    HDR_PROXY_CONNECTION,
    HDR_TE,
    HDR_TRAILER,
    HDR_TRANSFER_ENCODING,
    HDR_UPGRADE,
    HDR_CONTENT_LENGTH,
    HDR_HOP_LAST = HDR_CONTENT_LENGTH,
    HDR_EXPECT,
    HDR_HOST,
    HDR_DATE,
    HDR_X_FORWARDED_FOR,
    HDR_X_FORWARDED_PROTO,
};

/* kind when name (len bytes) is lower (same length), else HDR_OTHER. */
static enum header_kind kind_if(const char *name, const char *lower,
                                size_t len, enum header_kind kind)
{
    return util_strnieq(name, lower, len) ? kind : HDR_OTHER;
}

static enum header_kind header_kind(const char *name, size_t len)
{
    /* Picks between two candidates of one length; the compare decides. */
    char first = len > 0 ? (char)(name[0] | 0x20) : 0;
    switch (len) {
    case 2:
        return kind_if(name, "te", 2, HDR_TE);
    case 4:
        if (first == 'h') {
            return kind_if(name, "host", 4, HDR_HOST);
        }
        return kind_if(name, "date", 4, HDR_DATE);
    case 6:
        return kind_if(name, "expect", 6, HDR_EXPECT);
    case 7:
        if (first == 't') {
            return kind_if(name, "trailer", 7, HDR_TRAILER);
        }
        return kind_if(name, "upgrade", 7, HDR_UPGRADE);
    case 10:
        if (first == 'c') {
            return kind_if(name, "connection", 10, HDR_CONNECTION);
        }
        return kind_if(name, "keep-alive", 10, HDR_KEEP_ALIVE);
    case 14:
        return kind_if(name, "content-length", 14, HDR_CONTENT_LENGTH);
    case 15:
        return kind_if(name, "x-forwarded-for", 15, HDR_X_FORWARDED_FOR);
    case 16:
        return kind_if(name, "proxy-connection", 16, HDR_PROXY_CONNECTION);
    case 17:
        if (first == 't') {
            return kind_if(name, "transfer-encoding", 17,
                           HDR_TRANSFER_ENCODING);
        }
        return kind_if(name, "x-forwarded-proto", 17, HDR_X_FORWARDED_PROTO);
    default:
        return HDR_OTHER;
    }
}

static int kind_is_hop(enum header_kind k)
{
    return k >= HDR_HOP_FIRST && k <= HDR_HOP_LAST;
}

static int header_is_connection(const struct http1_header *hd,
                                const char *buf)
{
    return hd->name_len == 10 &&
           util_strnieq(buf + hd->name, "connection", 10);
}

/* Index of the first Connection header at or after from, or -1. */
static int find_connection(const struct http1_head *h, uint32_t from)
{
    for (uint32_t i = from; i < h->n_hdrs; i++) {
        if (header_is_connection(&h->hdrs[i], h->buf)) {
            return (int)i;
        }
    }
    return -1;
}

int http1_method_known(const char *m, size_t len)
{
#define METHOD_IS(num, name, string)                                       \
    if (len == sizeof(#string) - 1 && memcmp(m, #string, len) == 0) {      \
        return 1;                                                          \
    }
    HTTP_METHOD_MAP(METHOD_IS)
#undef METHOD_IS
    return 0;
}

enum http1_method_kind http1_method_kind(const char *b, size_t n,
                                         size_t *len)
{
    if (n > HTTP1_METHOD_MAX + 1) {
        n = HTTP1_METHOD_MAX + 1;
    }
    size_t i = 0;
    while (i < n && (b[i] == '\r' || b[i] == '\n')) {
        i++;
    }
    if (i > 0) {
        *len = i;
        return HTTP1_METHOD_EMPTY_LINES;
    }
    while (i < n && http1_is_tchar((unsigned char)b[i])) {
        i++;
    }
    if (i == n) {
        return n > HTTP1_METHOD_MAX ? HTTP1_METHOD_TOO_LONG : HTTP1_METHOD_WAIT;
    }
    if (i == 0 || b[i] != ' ' || http1_method_known(b, i)) {
        return HTTP1_METHOD_PARSER;
    }
    for (size_t j = 0; j < i; j++) {
        if (!((b[j] >= 'A' && b[j] <= 'Z') || b[j] == '-' || b[j] == '_')) {
            return HTTP1_METHOD_UNKNOWN;
        }
    }
    *len = i;
    return HTTP1_METHOD_EXTENSION;
}

const char *http1_method_name(const struct http1_head *h, int method)
{
    if (h->method_len > 0) {
        return h->buf + h->method;
    }
    return http_method_str((enum http_method)method);
}

/* Does the message's body end only when the connection closes (RFC 9112
 * 6.3: a response with neither a length nor chunked as its last coding)?
 * http-parser's own answer is not in its public header. */
static int body_ends_at_close(const http_parser *p)
{
    if (p->type == HTTP_REQUEST || p->status_code / 100 == 1 ||
        p->status_code == 204 || p->status_code == 304 ||
        (p->flags & F_SKIPBODY)) {
        return 0;
    }
    if (p->flags & F_CHUNKED) {
        return 0;
    }
    return p->uses_transfer_encoding || !(p->flags & F_CONTENTLENGTH);
}

int http1_keep_alive(const struct http1_head *h, const http_parser *p)
{
    int close = (p->flags & F_CONNECTION_CLOSE) != 0;
    int keep = (p->flags & F_CONNECTION_KEEP_ALIVE) != 0;
    for (uint32_t i = 0; i < h->n_hdrs && !close; i++) {
        const struct http1_header *hd = &h->hdrs[i];
        if (!header_is_connection(hd, h->buf) &&
            !(hd->name_len == 16 &&
              util_strnieq(h->buf + hd->name, "proxy-connection", 16))) {
            continue;
        }
        const char *v = h->buf + hd->value;
        close = util_list_has(v, hd->value_len, "close", 5);
        keep |= util_list_has(v, hd->value_len, "keep-alive", 10);
    }
    if (close || ((p->http_major != 1 || p->http_minor == 0) && !keep)) {
        return 0;
    }
    return !body_ends_at_close(p);
}

/* Is name listed by a Connection header, the first of which is first (-1:
 * there is none)? */
static int named_in_connection(const struct http1_head *h, int first,
                               const char *name, size_t len)
{
    for (int i = first; i >= 0; i = find_connection(h, (uint32_t)i + 1)) {
        if (util_list_has(h->buf + h->hdrs[i].value, h->hdrs[i].value_len,
                          name, len)) {
            return 1;
        }
    }
    return 0;
}

/*
 * Does the Connection header (the first at conn, -1: none) make a field of
 * this kind hop-by-hop? Never Host: it is end to end whatever Connection
 * says, the authority the request was checked and routed by.
 */
static int dropped_by_connection(const struct http1_head *h, int conn,
                                 enum header_kind kind, const char *name,
                                 size_t len)
{
    return conn >= 0 && kind != HDR_HOST &&
           named_in_connection(h, conn, name, len);
}

int http1_is_hop_by_hop(const struct http1_head *h, const char *name,
                        size_t len)
{
    enum header_kind kind = header_kind(name, len);
    return kind_is_hop(kind) ||
           dropped_by_connection(h, find_connection(h, 0), kind, name, len);
}

/* A Host value: host [":" port], no userinfo, path, spaces or second port;
 * the host not empty (RFC 9110 4.2.1: an http URI with an empty host is
 * refused), nor with an empty label ("a..b", ".a"; one trailing dot is a
 * fully qualified name): nginx refuses an empty host and "a..b". An IP
 * literal in brackets is an IPv6 address ("[]" was taken). */
static int host_valid(const char *v, size_t len)
{
    size_t i = 0;
    if (len > 0 && v[0] == '[') {
        const char *close = memchr(v, ']', len);
        char addr[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        size_t n = close != NULL ? (size_t)(close - v) - 1 : 0;
        if (n == 0 || n >= sizeof(addr)) {
            return 0;
        }
        memcpy(addr, v + 1, n);
        addr[n] = '\0';
        if (inet_pton(AF_INET6, addr, &a6) != 1) {
            return 0;
        }
        i = n + 2;
    } else {
        for (; i < len && v[i] != ':'; i++) {
            char c = v[i];
            if (c == '.' && (i == 0 || v[i - 1] == '.')) {
                return 0;
            }
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
        if (i == 0) {
            return 0;
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

/* tchar (RFC 9110 5.6.2): visible ASCII except DQUOTE and (),/:;<=>?@[\]{}
 * (one table lookup per byte instead of a strchr). */
static const unsigned char tchar[128] = {
    /* 00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 20 */ 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,
    /* 30 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
    /* 40 */ 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 50 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
    /* 60 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 70 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
};

int http1_is_tchar(unsigned char c)
{
    return c < 128 && tchar[c];
}

/* A header name is a token (RFC 9110 5.1): no whitespace, no separators. */
static int name_valid(const char *v, size_t len)
{
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (!http1_is_tchar((unsigned char)v[i])) {
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
        if (c < 0x20 ? c != '\t' : c == 0x7f) {
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

uint32_t http1_scan_start_len(const struct http1_scan *sc)
{
    return sc->lines == 0 ? sc->line_len : sc->start_len;
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
 * version is the first token of a status line, the last of a request line;
 * a status line's code, after it, is three digits (RFC 9112 4: http-parser
 * would take "0200" for 200). Returns -1 when the version is settled as
 * wrong, -2 when the status code is. */
static int scan_start_line(struct http1_scan *sc, unsigned char c)
{
    static const char version[] = "HTTP/";
    if (sc->start_done) {
        return 0;
    }
    if (sc->in_code) {
        if (c >= '0' && c <= '9' && sc->code_len < 3) {
            sc->code_len++;
            return 0;
        }
        sc->start_done = 1;
        return sc->code_len == 3 && (c == ' ' || c == '\r' || c == '\n')
                   ? 0
                   : -2;
    }
    if (c == ' ' || c == '\r' || c == '\n') {
        int is_version = sc->vmatch == 5 && !sc->vbad;
        if (sc->response) {
            /* A status line's first token: the code follows it. */
            if (c == ' ' && is_version) {
                sc->in_code = 1;
                sc->vmatch = 0;
                return 0;
            }
            sc->start_done = 1;
            return is_version ? -2 : -1;
        }
        if (c != ' ') {
            /* A request line's last token. */
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
    uint32_t lead = sc->lead;
    for (; i < len && !sc->done; i++) {
        if (sc->line_len > 0 && sc->prev != '\r' &&
            (sc->lines > 0 || sc->start_done || sc->vmatch == 5)) {
            /* Inside a line whose start is checked, only CR, LF and NUL
             * matter (and SP and HTAB on the start line, whose current
             * token is settled): skip the rest in a tight loop. */
            unsigned char stop = sc->lines > 0 || sc->start_done ? '\r' : ' ';
            size_t run = i;
            while (run < len && (unsigned char)data[run] > stop) {
                run++;
            }
            if (run > i) {
                sc->line_len += (uint32_t)(run - i);
                sc->prev = (unsigned char)data[run - 1];
                i = run;
                if (i == len) {
                    break;
                }
            }
        }
        unsigned char c = (unsigned char)data[i];
        if (sc->prev == '\r' && c != '\n') {
            return fail(err, 400, "bare CR in the message head");
        }
        sc->prev = c;
        if (c == '\0') {
            return fail(err, 400, "NUL in the message head");
        }
        if (sc->lines == 0 && sc->line_len == 0 && (c == '\r' || c == '\n')) {
            sc->lead++; /* an empty line before the start line */
        } else if (sc->lines == 0) {
            int rc = scan_start_line(sc, c);
            if (rc < 0) {
                return fail(err, 400,
                            rc == -1 ? "malformed HTTP version in the start line"
                                     : "status code is not three digits");
            }
        }
        if (c == '\n') {
            if (sc->line_len > 0) {
                if (sc->lines == 0) {
                    sc->start_len = sc->line_len;
                }
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
    sc->bytes += (uint32_t)i - (sc->lead - lead);
    return 0;
}

/*
 * Transfer-Encoding as an intermediary can pass it on: absent, or exactly
 * one coding, "chunked" (RFC 9112 6.1). Returns 0 when acceptable; 1 when
 * it names other codings (well-formed tokens: not supported); -1 when it is
 * malformed (empty members, quotes, odd characters). first is the index of
 * the first Transfer-Encoding field, -1 when there is none.
 */
static int transfer_encoding_kind(const struct http1_head *h, int first)
{
    int codings = 0;
    int chunked_last = 0;
    int malformed = 0;
    if (first < 0) {
        return 0;
    }
    for (uint32_t i = (uint32_t)first; i < h->n_hdrs; i++) {
        if (header_kind(h->buf + h->hdrs[i].name, h->hdrs[i].name_len) !=
            HDR_TRANSFER_ENCODING) {
            continue;
        }
        const char *v = h->buf + h->hdrs[i].value;
        size_t len = h->hdrs[i].value_len;
        size_t p = 0;
        do {
            while (p < len && (v[p] == ' ' || v[p] == '\t')) {
                p++;
            }
            size_t start = p;
            while (p < len && v[p] != ',' && v[p] != ' ' && v[p] != '\t') {
                if (!http1_is_tchar((unsigned char)v[p])) {
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
    CHUNK_TRAILER_START, /* at the start of a trailer line or the last one */
    CHUNK_TRAILER,
    CHUNK_TRAILER_LF,
    CHUNK_END_LF,
    CHUNK_DONE,
};

void http1_chunks_reset(struct http1_chunks *c)
{
    memset(c, 0, sizeof(*c));
}

/* The largest Content-Length (and chunk size) passed on: a signed 64-bit
 * length, what nginx's off_t and most peers hold; above it a peer could
 * wrap. */
#define CONTENT_LENGTH_MAX ((uint64_t)INT64_MAX)

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int http1_chunks_scan(struct http1_chunks *c, char *data, size_t len,
                      struct http1_error *err)
{
    for (size_t i = 0; i < len && c->state != CHUNK_DONE; i++) {
        unsigned char ch = (unsigned char)data[i];
        switch (c->state) {
        case CHUNK_SIZE_START:
        case CHUNK_SIZE:
            if (hexval(ch) >= 0) {
                /* 1*HEXDIG: leading zeros are legal and do not count. */
                if ((c->left != 0 || ch != '0') && ++c->digits > 16) {
                    return fail(err, 400, "chunk size too large");
                }
                c->left = c->left * 16 + (uint64_t)hexval(ch);
                if (c->left > CONTENT_LENGTH_MAX) {
                    return fail(err, 400, "chunk size too large");
                }
                c->state = CHUNK_SIZE;
            } else if (c->state == CHUNK_SIZE_START) {
                return fail(err, 400, "invalid chunk size");
            } else if (ch == ';') {
                c->state = CHUNK_EXT;
            } else if (ch == ' ' || ch == '\t') {
                /* BWS before a chunk extension may be a tab; http_parser
                 * takes only a space there (and ignores what follows up
                 * to the CR), so it reads a space. */
                data[i] = ' ';
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
            c->state = c->left == 0 ? CHUNK_TRAILER_START : CHUNK_DATA;
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
        /* The trailer section and the body's last line: the parser reads
         * their fields; here every line must end in CRLF, as every other
         * line of the body must (a bare LF the parser would take). */
        case CHUNK_TRAILER_START:
        case CHUNK_TRAILER:
            if (ch == '\n') {
                return fail(err, 400, "bare LF at the end of a chunked body");
            }
            if (ch == '\r') {
                c->state = c->state == CHUNK_TRAILER_START ? CHUNK_END_LF
                                                           : CHUNK_TRAILER_LF;
            } else {
                c->state = CHUNK_TRAILER;
            }
            break;
        case CHUNK_TRAILER_LF:
        case CHUNK_END_LF:
            if (ch != '\n') {
                return fail(err, 400, "bare CR at the end of a chunked body");
            }
            c->state = c->state == CHUNK_END_LF ? CHUNK_DONE
                                                : CHUNK_TRAILER_START;
            break;
        }
    }
    return 0;
}

/*
 * One pass over a head's fields for the checks: is every field well formed,
 * and where are the fields whose presence matters.
 */
struct fields {
    int bad;            /* 0; FIELD_BAD_NAME or FIELD_BAD_VALUE: the first
                         * field that is not well formed */
    int te;             /* first Transfer-Encoding, or -1 */
    int content_length; /* first Content-Length, or -1 */
    int host;           /* first Host, or -1 */
    int hosts;          /* how many Host fields */
    int te_alike;       /* a name longer than "Transfer-Encoding" that
                         * starts with it (framing_mismatch) */
};

enum { FIELD_BAD_NAME = 1, FIELD_BAD_VALUE = 2 };

/* A name longer than "Transfer-Encoding" that starts with it
 * (framing_mismatch says why that matters). */
static int te_alike(const char *name, size_t len)
{
    return len > 17 && (name[0] | 0x20) == 't' &&
           strncasecmp(name, "transfer-encoding", 17) == 0;
}

/* Fill f from h; stops at the first field that is not well formed. */
static void fields_scan(const struct http1_head *h, struct fields *f)
{
    f->bad = 0;
    f->te = f->content_length = f->host = -1;
    f->hosts = f->te_alike = 0;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct http1_header *hd = &h->hdrs[i];
        const char *name = h->buf + hd->name;
        if (te_alike(name, hd->name_len)) {
            f->te_alike = 1;
        }
        if (!name_valid(name, hd->name_len)) {
            f->bad = FIELD_BAD_NAME;
            return;
        }
        if (!value_valid(h->buf + hd->value, hd->value_len)) {
            f->bad = FIELD_BAD_VALUE;
            return;
        }
        switch (header_kind(name, hd->name_len)) {
        case HDR_TRANSFER_ENCODING:
            if (f->te < 0) {
                f->te = (int)i;
            }
            break;
        case HDR_CONTENT_LENGTH:
            if (f->content_length < 0) {
                f->content_length = (int)i;
            }
            break;
        case HDR_HOST:
            if (f->host < 0) {
                f->host = (int)i;
            }
            f->hosts++;
            break;
        default:
            break;
        }
    }
}

/*
 * http-parser 2.9.4 takes a field whose name merely starts with
 * "Transfer-Encoding" (Transfer-Encoding-Foo) for the real one. Framing the
 * parser believes in must come from the exact fields we see; and such a
 * field is refused even beside a real one, since it is passed on as it is
 * and a next hop on the same parser would take it for one.
 */
static int framing_mismatch(const struct fields *f, const http_parser *p)
{
    if (f->te_alike) {
        return 1;
    }
    if ((p->uses_transfer_encoding || (p->flags & F_CHUNKED)) && f->te < 0) {
        return 1;
    }
    if ((p->flags & F_CONTENTLENGTH) && f->content_length < 0) {
        return 1;
    }
    return 0;
}

const char *http1_length_conflict(const struct http1_head *h)
{
    /* By name over every field: fields_scan stops at the first malformed
     * one, which http-parser may have let through before these. */
    int te = 0, alike = 0;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct http1_header *hd = &h->hdrs[i];
        const char *name = h->buf + hd->name;
        te |= header_kind(name, hd->name_len) == HDR_TRANSFER_ENCODING;
        alike |= te_alike(name, hd->name_len);
    }
    if (te) {
        return "both Content-Length and Transfer-Encoding";
    }
    if (alike) {
        return "a header name that mimics Transfer-Encoding or Content-Length";
    }
    return "more than one Content-Length";
}

int http1_path_is_normal(const char *path, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (path[i] == '%') {
            return 0;
        }
        if (path[i] == '/' && i + 1 < len &&
            (path[i + 1] == '/' || path[i + 1] == '.')) {
            return 0;
        }
    }
    return 1;
}

int http1_path_normalize(const char *path, size_t len, char *out,
                         size_t *out_len)
{
    /* Decode and merge slashes: out never outgrows path. */
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)path[i++];
        if (c == '%') {
            int hi = i < len ? hexval((unsigned char)path[i]) : -1;
            int lo = i + 1 < len ? hexval((unsigned char)path[i + 1]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return -1;
            }
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '/' && n > 0 && out[n - 1] == '/') {
            continue;
        }
        out[n++] = (char)c;
    }
    if (n == 0 || out[0] != '/') {
        return -1;
    }
    /* Then the segments, "/seg" at a time, written over themselves: the
     * result never overtakes what is still to be read. */
    size_t w = 0;
    for (size_t r = 0; r < n;) {
        size_t s = r + 1, e = s;
        while (e < n && out[e] != '/') {
            e++;
        }
        size_t seg = e - s;
        int last = e >= n;
        if (seg == 1 && out[s] == '.') {
            if (last) {
                out[w++] = '/';
            }
        } else if (seg == 2 && out[s] == '.' && out[s + 1] == '.') {
            if (w == 0) {
                return -1; /* above the root */
            }
            while (out[--w] != '/') {
            }
            if (last) {
                out[w++] = '/';
            }
        } else {
            out[w++] = '/';
            memmove(out + w, out + s, seg);
            w += seg;
        }
        r = e;
    }
    if (w == 0) {
        out[w++] = '/';
    }
    *out_len = w;
    return 0;
}

/*
 * http_parser_parse_url, also taking an authority with an empty port
 * ("http://a:/p"): RFC 3986 3.2.3 allows it, and it means the scheme's
 * default, as nginx reads it; http-parser refuses it. Such a URL is
 * parsed without that ':' and the offsets mapped back onto s, where the
 * host then ends before it and no UF_PORT is set.
 */
static int parse_absolute_url(const char *s, size_t len,
                              struct http_parser_url *u)
{
    http_parser_url_init(u);
    if (http_parser_parse_url(s, len, 0, u) == 0) {
        return 0;
    }
    const char *sep = memchr(s, ':', len); /* the scheme's */
    if (sep == NULL || (size_t)(sep - s) + 3 > len || sep[1] != '/' ||
        sep[2] != '/') {
        return -1;
    }
    size_t a = (size_t)(sep - s) + 3, e = a;
    while (e < len && s[e] != '/' && s[e] != '?' && s[e] != '#') {
        e++;
    }
    if (e == a || s[e - 1] != ':') {
        return -1;
    }
    size_t colon = e - 1;
    char *copy = malloc(len);
    if (copy == NULL) {
        return -1;
    }
    memcpy(copy, s, colon);
    memcpy(copy + colon, s + colon + 1, len - colon - 1);
    http_parser_url_init(u);
    int rc = http_parser_parse_url(copy, len - 1, 0, u);
    free(copy);
    if (rc != 0 || (u->field_set & (1 << UF_PORT))) {
        return -1;
    }
    for (int f = 0; f < UF_MAX; f++) {
        if ((u->field_set & (1 << f)) && u->field_data[f].off >= colon) {
            u->field_data[f].off++;
        }
    }
    return 0;
}

int http1_origin_form(struct http1_head *h, struct http1_target *t)
{
    char *s = h->buf + h->target;
    t->target = s;
    t->target_len = h->target_len;
    t->authority = NULL;
    t->authority_len = 0;
    t->no_path = 0;
    if (h->target_len == 0) {
        return -1;
    }
    if (s[0] == '/' || (h->target_len == 1 && s[0] == '*')) {
        return 0;
    }
    struct http_parser_url u;
    if (parse_absolute_url(s, h->target_len, &u) != 0 ||
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
    /* The authority becomes the Host sent on: held to what a Host field
     * must be, and only for an http or https URI. */
    const char *scheme = s + u.field_data[UF_SCHEMA].off;
    size_t scheme_len = u.field_data[UF_SCHEMA].len;
    if (!(u.field_set & (1 << UF_SCHEMA)) ||
        !((scheme_len == 4 && strncasecmp(scheme, "http", 4) == 0) ||
          (scheme_len == 5 && strncasecmp(scheme, "https", 5) == 0)) ||
        !host_valid(s + start, end - start)) {
        return -1;
    }
    t->authority = s + start;
    t->authority_len = end - start;
    /* An empty query ("http://a/x?") sets no UF_QUERY, but its '?' is
     * part of the target (RFC 3986 3.4): passed on, as nginx does. */
    size_t after = end;
    if (u.field_set & (1 << UF_PATH)) {
        after = (size_t)u.field_data[UF_PATH].off + u.field_data[UF_PATH].len;
    } else if (!(u.field_set & (1 << UF_PORT)) && after < h->target_len &&
               s[after] == ':') {
        after++; /* an empty port: "http://a:?" */
    }
    int query = (u.field_set & (1 << UF_QUERY)) != 0;
    size_t qoff = after + 1; /* an empty query's: just after its '?' */
    size_t qlen = 0;
    if (query) {
        qoff = u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
    } else {
        query = after < h->target_len && s[after] == '?';
    }
    if (u.field_set & (1 << UF_PATH)) {
        size_t pstart = u.field_data[UF_PATH].off;
        t->target = s + pstart;
        t->target_len = (query ? qoff + qlen : after) - pstart;
    } else if (query) {
        /* "http://a?q": the origin form is "/?q" (RFC 9112 3.2.1), which
         * is not in the string. Make room for its '/' by moving scheme
         * and authority one byte left, over the scheme's first letter:
         * nothing reads the scheme after this. */
        size_t q = qoff - 1; /* the '?' */
        memmove(s, s + 1, q - 1);
        s[q - 1] = '/';
        t->authority--;
        t->target = s + q - 1;
        t->target_len = qoff + qlen - (q - 1); /* no fragment */
    } else {
        t->target = "/";
        t->target_len = 1;
        t->no_path = 1;
    }
    return 0;
}

int http1_check_request(const struct http1_head *h, const http_parser *p,
                        struct http1_error *err)
{
    /* HTTP/1.2 and on are read as HTTP/1.1, the highest 1.x the proxy
     * implements (RFC 9110 2.5), as nginx and HAProxy read them. */
    if (p->http_major != 1) {
        return fail(err, 505, "HTTP version not supported");
    }
    if (p->method == HTTP_CONNECT) {
        return fail(err, 405, "CONNECT is not supported: not a forward proxy");
    }
    if (p->method == HTTP_TRACE) {
        /* As nginx: TRACE would echo the request, cookies and all, to
         * whatever script can make the browser send one (XST). */
        return fail(err, 405, "TRACE is not allowed");
    }
    struct fields f;
    fields_scan(h, &f);
    if (f.bad == FIELD_BAD_NAME) {
        return fail(err, 400, "invalid header name (whitespace before "
                              "the colon?)");
    }
    if (f.bad == FIELD_BAD_VALUE) {
        return fail(err, 400, "control character in a header value");
    }
    int te = transfer_encoding_kind(h, f.te);
    if (f.te >= 0 && p->http_minor == 0) {
        return fail(err, 400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if (te < 0) {
        return fail(err, 400, "malformed Transfer-Encoding");
    }
    if (te > 0) {
        return fail(err, 501, "unsupported transfer coding");
    }
    if (f.te >= 0 && f.content_length >= 0) {
        return fail(err, 400, "both Content-Length and Transfer-Encoding");
    }
    if (f.content_length >= 0 && p->content_length > CONTENT_LENGTH_MAX) {
        return fail(err, 400, "Content-Length too large");
    }
    if (framing_mismatch(&f, p)) {
        return fail(err, 400, "a header name that mimics Transfer-Encoding "
                              "or Content-Length");
    }
    if (f.hosts > 1) {
        return fail(err, 400, "more than one Host header");
    }
    if (f.host < 0 && p->http_minor >= 1) {
        return fail(err, 400, "missing Host header");
    }
    if (f.host >= 0 && !host_valid(h->buf + h->hdrs[f.host].value,
                                   h->hdrs[f.host].value_len)) {
        return fail(err, 400, "invalid Host header");
    }
    if (h->target_len == 0) {
        return fail(err, 400, "empty request target");
    }
    for (uint32_t i = 0; i < h->target_len; i++) {
        /* http-parser (not built strict) takes HTAB and FF in a target; a
         * next hop may split the request line on them (RFC 9112 3). */
        unsigned char c = (unsigned char)h->buf[h->target + i];
        if (c < 0x20 || c == 0x7f) {
            return fail(err, 400, "control character in the request target");
        }
    }
    if (memchr(h->buf + h->target, '#', h->target_len) != NULL) {
        /* A fragment is the client's own (RFC 9110 4.2.4) and no target
         * form has one: an origin would drop it where a route would not. */
        return fail(err, 400, "fragment (#) in the request target");
    }
    char first = h->buf[h->target];
    if (first != '/' && !(h->target_len == 1 && first == '*' &&
                          p->method == HTTP_OPTIONS)) {
        struct http_parser_url u;
        if (parse_absolute_url(h->buf + h->target, h->target_len, &u) != 0 ||
            !(u.field_set & (1 << UF_HOST))) {
            return fail(err, 400, "invalid request target");
        }
        if (u.field_set & (1 << UF_USERINFO)) {
            /* As in Host: credentials in a URL are an error (RFC 9110
             * 4.2.4), never passed on or dropped quietly. */
            return fail(err, 400, "userinfo in the request target");
        }
    }
    return 0;
}

int http1_check_response(const struct http1_head *h, const http_parser *p,
                         int asked, int switching, struct http1_error *err)
{
    if (p->http_major != 1) {
        return fail(err, 502, "upstream sent an unsupported HTTP version");
    }
    if (p->status_code < 100 || p->status_code > 599) {
        return fail(err, 502, "upstream sent an invalid status code");
    }
    if (p->status_code == 101 && !switching) {
        return fail(err, 502, asked ? "upstream switched protocols, but not "
                                      "to websocket"
                                    : "upstream switched protocols unasked");
    }
    if (p->status_code == 101 && p->http_minor == 0) {
        return fail(err, 502, "upstream switched protocols over HTTP/1.0");
    }
    struct fields f;
    fields_scan(h, &f);
    if (f.bad == FIELD_BAD_NAME) {
        return fail(err, 502, "upstream sent an invalid header name");
    }
    if (f.bad == FIELD_BAD_VALUE) {
        return fail(err, 502, "upstream sent a control character in a "
                              "header value");
    }
    if (transfer_encoding_kind(h, f.te) != 0) {
        return fail(err, 502, "upstream sent a transfer coding other than "
                              "chunked");
    }
    if (f.te >= 0 && f.content_length >= 0) {
        return fail(err, 502, "upstream sent both Content-Length and "
                              "Transfer-Encoding");
    }
    if (f.content_length >= 0 && p->content_length > CONTENT_LENGTH_MAX) {
        return fail(err, 502, "upstream sent a Content-Length too large");
    }
    if (framing_mismatch(&f, p)) {
        return fail(err, 502, "upstream sent a header name that mimics "
                              "Transfer-Encoding or Content-Length");
    }
    return 0;
}

void http1_settle_chunked(http_parser *p)
{
    if (p->uses_transfer_encoding) {
        p->flags |= F_CHUNKED;
    }
}

int http1_te_in_http10(const http_parser *p)
{
    return p->http_major == 1 && p->http_minor == 0 &&
           (p->uses_transfer_encoding || (p->flags & F_CHUNKED));
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

enum http1_body http1_request_framing(const http_parser *p)
{
    if ((p->flags & F_CONTENTLENGTH) && !(p->flags & F_CHUNKED)) {
        return HTTP1_BODY_LENGTH;
    }
    return http1_request_body(p);
}

int http1_status_has_content(int status)
{
    return status / 100 != 1 && status != 204 && status != 304;
}

enum http1_body http1_response_body(const http_parser *p, int head_request)
{
    if (head_request || !http1_status_has_content(p->status_code)) {
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

/*
 * Heads are written in one piece: the writer reserves room for the longest
 * head it could produce (everything stored in the head, four bytes of ": "
 * and CRLF per header, plus the lines it adds), copies into it and commits
 * what it wrote, so the evbuffer sees one append and runs its callbacks
 * once. The reservation must cover every byte a writer puts: a writer
 * that adds a line adds its length to the reservation (or to HEAD_EXTRA).
 */

/* Room for the lines a writer adds besides the stored ones: Via, framing,
 * Connection, Upgrade, Date and the blank line, with numbers at full width. */
#define HEAD_EXTRA 256

/* Copy n bytes to p; returns the end. */
static char *put(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Copy a string literal. */
#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

/* Write v in decimal; returns the end. */
static char *put_uint(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return put(p, tmp + sizeof(tmp) - n, n);
}

/* Write v in decimal, as "%d" does. */
static char *put_int(char *p, int v)
{
    if (v < 0) {
        *p++ = '-';
        return put_uint(p, (uint64_t)0 - (uint64_t)(int64_t)v);
    }
    return put_uint(p, (uint64_t)v);
}

/* Write a status code as "%03d" does. */
static char *put_status(char *p, int status)
{
    if (status >= 0 && status <= 999) {
        p[0] = (char)('0' + status / 100);
        p[1] = (char)('0' + status / 10 % 10);
        p[2] = (char)('0' + status % 10);
        return p + 3;
    }
    return put_int(p, status);
}

/* Copy one stored header line "Name: value\r\n". */
static char *put_header(char *p, const struct http1_head *h,
                        const struct http1_header *hd)
{
    p = put(p, h->buf + hd->name, hd->name_len);
    p = PUT_LIT(p, ": ");
    p = put(p, h->buf + hd->value, hd->value_len);
    return PUT_LIT(p, "\r\n");
}

/* "Via: 1.1 switchboard\r\n" for HTTP/major.minor. */
static char *put_via(char *p, int major, int minor)
{
    p = PUT_LIT(p, "Via: ");
    p = put_int(p, major);
    *p++ = '.';
    p = put_int(p, minor);
    return PUT_LIT(p, " switchboard\r\n");
}

/* "Content-Length: n\r\n" or "Transfer-Encoding: chunked\r\n" for body. */
static char *put_framing(char *p, enum http1_body body, uint64_t length)
{
    if (body == HTTP1_BODY_LENGTH) {
        p = PUT_LIT(p, "Content-Length: ");
        p = put_uint(p, length);
        p = PUT_LIT(p, "\r\n");
    } else if (body == HTTP1_BODY_CHUNKED) {
        p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
    }
    return p;
}

/* Room for at most max bytes at the end of out, contiguous; NULL on
 * failure. */
static char *head_begin(struct evbuffer *out, size_t max,
                        struct evbuffer_iovec *v)
{
    if (evbuffer_reserve_space(out, (ev_ssize_t)max, v, 1) < 1) {
        return NULL;
    }
    return v->iov_base;
}

/* Commit the bytes written from v's start up to end; 0 or -1. */
static int head_end(struct evbuffer *out, struct evbuffer_iovec *v,
                    const char *end)
{
    v->iov_len = (size_t)(end - (const char *)v->iov_base);
    return evbuffer_commit_space(out, v, 1);
}

/* The cached IMF-fixdate of this second (29 bytes and a NUL). */
static const char *date_now(void);

int http1_write_request(struct evbuffer *out, const struct http1_head *h,
                        const struct http1_request_info *info)
{
    size_t method_len = strlen(info->method);
    size_t host_len = info->host != NULL ? strlen(info->host) : 0;
    size_t ip_len = info->client_ip_len;
    size_t proto_len = strlen(info->proto);
    size_t max = method_len + info->target_len + (size_t)h->len +
                 4 * (size_t)h->n_hdrs + info->authority_len + host_len +
                 ip_len + proto_len + HEAD_EXTRA;
    if (info->authority != NULL) {
        /* Each Host header is rewritten to the authority, however long. */
        for (uint32_t i = 0; i < h->n_hdrs; i++) {
            if (header_kind(h->buf + h->hdrs[i].name, h->hdrs[i].name_len) ==
                HDR_HOST) {
                max += info->authority_len;
            }
        }
    }
    struct evbuffer_iovec v;
    char *p = head_begin(out, max, &v);
    if (p == NULL) {
        return -1;
    }
    p = put(p, info->method, method_len);
    *p++ = ' ';
    p = put(p, info->target, info->target_len);
    p = PUT_LIT(p, " HTTP/1.1\r\n");

    int conn = find_connection(h, 0);
    int have_host = 0;
    int first_xff = -1;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct http1_header *hd = &h->hdrs[i];
        const char *name = h->buf + hd->name;
        size_t len = hd->name_len;
        enum header_kind kind = header_kind(name, len);
        if (kind_is_hop(kind) || kind == HDR_EXPECT ||
            dropped_by_connection(h, conn, kind, name, len) ||
            kind == HDR_X_FORWARDED_PROTO ||
            (!info->underscores && memchr(name, '_', len) != NULL)) {
            continue;
        }
        if (kind == HDR_X_FORWARDED_FOR) {
            if (first_xff < 0) {
                first_xff = (int)i;
            }
            continue;
        }
        if (kind == HDR_HOST) {
            have_host = 1;
            if (info->authority != NULL) {
                p = PUT_LIT(p, "Host: ");
                p = put(p, info->authority, info->authority_len);
                p = PUT_LIT(p, "\r\n");
                continue;
            }
        }
        p = put_header(p, h, hd);
    }
    if (!have_host) {
        p = PUT_LIT(p, "Host: ");
        if (info->authority != NULL) {
            p = put(p, info->authority, info->authority_len);
        } else {
            p = put(p, info->host, host_len);
        }
        p = PUT_LIT(p, "\r\n");
    }
    p = PUT_LIT(p, "X-Forwarded-For: ");
    for (uint32_t i = first_xff < 0 ? h->n_hdrs : (uint32_t)first_xff;
         i < h->n_hdrs; i++) {
        const struct http1_header *hd = &h->hdrs[i];
        if (hd->value_len > 0 &&
            header_kind(h->buf + hd->name, hd->name_len) ==
                HDR_X_FORWARDED_FOR) {
            p = put(p, h->buf + hd->value, hd->value_len);
            p = PUT_LIT(p, ", ");
        }
    }
    p = put(p, info->client_ip, ip_len);
    p = PUT_LIT(p, "\r\nX-Forwarded-Proto: ");
    p = put(p, info->proto, proto_len);
    p = PUT_LIT(p, "\r\n");
    p = put_via(p, info->client_major, info->client_minor);
    p = put_framing(p, info->body, info->content_length);
    if (info->upgrade) {
        p = PUT_LIT(p, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    } else if (info->close) {
        p = PUT_LIT(p, "Connection: close\r\n");
    }
    p = PUT_LIT(p, "\r\n");
    return head_end(out, &v, p);
}

int http1_write_response(struct evbuffer *out, const struct http1_head *h,
                         const struct http1_response_info *info)
{
    const char *reason;
    size_t reason_len = h->target_len;
    if (reason_len > 0 && value_valid(h->buf + h->target, reason_len)) {
        reason = h->buf + h->target;
    } else {
        /* None, or one with control characters (a reason phrase is HTAB,
         * SP, VCHAR and obs-text, RFC 9112 4, as a field value is): the
         * client gets the standard text. */
        reason = http1_status_text(info->status);
        reason_len = strlen(reason);
    }
    size_t max = reason_len + (size_t)h->len + 4 * (size_t)h->n_hdrs +
                 HEAD_EXTRA;
    struct evbuffer_iovec v;
    char *p = head_begin(out, max, &v);
    if (p == NULL) {
        return -1;
    }
    p = PUT_LIT(p, "HTTP/1.1 ");
    p = put_status(p, info->status);
    *p++ = ' ';
    p = put(p, reason, reason_len);
    p = PUT_LIT(p, "\r\n");

    int conn = find_connection(h, 0);
    int keep_length = info->no_body && info->status != 204;
    int have_date = 0;
    for (uint32_t i = 0; i < h->n_hdrs; i++) {
        const struct http1_header *hd = &h->hdrs[i];
        const char *name = h->buf + hd->name;
        size_t len = hd->name_len;
        enum header_kind kind = header_kind(name, len);
        if (keep_length && kind == HDR_CONTENT_LENGTH) {
            p = put_header(p, h, hd); /* a HEAD or 304 keeps its length */
            continue;
        }
        if (kind_is_hop(kind) ||
            (conn >= 0 && named_in_connection(h, conn, name, len))) {
            continue;
        }
        if (kind == HDR_DATE) {
            have_date = 1;
        }
        p = put_header(p, h, hd);
    }
    p = put_via(p, info->upstream_major, info->upstream_minor);
    if (info->upgrade) {
        p = PUT_LIT(p, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    }
    if (!info->interim) {
        if (!have_date) {
            p = PUT_LIT(p, "Date: ");
            p = put(p, date_now(), 29);
            p = PUT_LIT(p, "\r\n");
        }
        p = put_framing(p, info->framing, info->content_length);
        if (!info->keep_alive) {
            p = PUT_LIT(p, "Connection: close\r\n");
        } else if (info->client_http10) {
            p = PUT_LIT(p, "Connection: keep-alive\r\n");
        }
    }
    p = PUT_LIT(p, "\r\n");
    return head_end(out, &v, p);
}

int http1_write_error(struct evbuffer *out, int status, const char *reason,
                      int flags)
{
    int head_only = (flags & HTTP1_ERROR_HEAD_ONLY) != 0;
    const char *text = http1_status_text(status);
    size_t text_len = strlen(text);
    size_t reason_len = strlen(reason);
    /* 1xx, 204 and 304 have no content, and no Content-Length either
     * (RFC 9110 8.6); a reply to HEAD has the header, not the content. */
    int no_content = !http1_status_has_content(status);
    /* RFC 9110 15.5.6: a 405 says what is allowed. Every method is passed
     * on except the two refused for any target (CONNECT, TRACE), so this
     * lists the standard ones passed on. */
    static const char allow[] =
        "\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";
    struct evbuffer_iovec v;
    char *p = head_begin(out, text_len + reason_len + sizeof(allow) +
                                  HEAD_EXTRA, &v);
    if (p == NULL) {
        return -1;
    }
    char *start = p;
    p = PUT_LIT(p, "HTTP/1.1 ");
    p = put_status(p, status);
    *p++ = ' ';
    p = put(p, text, text_len);
    p = PUT_LIT(p, "\r\nServer: switchboard\r\nDate: ");
    p = put(p, date_now(), 29);
    if (status == 405) {
        p = PUT_LIT(p, allow);
    }
    if (status == 205) {
        /* Reset Content: no content, and says so (RFC 9110 15.3.6). */
        p = PUT_LIT(p, "\r\nContent-Length: 0");
    } else if (!no_content) {
        p = PUT_LIT(p, "\r\nContent-Type: text/plain\r\nContent-Length: ");
        p = put_uint(p, (uint64_t)reason_len + 1);
    }
    if (!(flags & HTTP1_ERROR_KEEP_ALIVE)) {
        p = PUT_LIT(p, "\r\nConnection: close");
    } else if (flags & HTTP1_ERROR_HTTP10) {
        p = PUT_LIT(p, "\r\nConnection: keep-alive");
    }
    p = PUT_LIT(p, "\r\n\r\n");
    if (!no_content && !head_only && status != 205) {
        p = put(p, reason, reason_len);
        *p++ = '\n';
    }
    int n = (int)(p - start);
    return head_end(out, &v, p) < 0 ? -1 : n;
}

const char *http1_status_text(int status)
{
    /* RFC 9110 15, with 102 (RFC 2518), 103 (RFC 8297), 428, 429, 431,
     * 511 (RFC 6585), 451 (RFC 7725), 207, 208, 423, 424, 507, 508
     * (WebDAV: RFC 4918, 5842), 226 (RFC 3229), 425 (RFC 8470), 506
     * (RFC 2295), 510 (RFC 2774) and 418 (RFC 2324, often injected). */
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 208: return "Already Reported";
    case 226: return "IM Used";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 305: return "Use Proxy";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 506: return "Variant Also Negotiates";
    case 507: return "Insufficient Storage";
    case 508: return "Loop Detected";
    case 510: return "Not Extended";
    case 511: return "Network Authentication Required";
    default: return "Unknown";
    }
}

static const char *date_now(void)
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
    return cached;
}

const char *http1_date(char buf[30])
{
    memcpy(buf, date_now(), 30);
    return buf;
}
