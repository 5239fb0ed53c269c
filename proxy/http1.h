/*
 * http1: the HTTP/1.1 rules an intermediary lives by, kept apart from I/O.
 *
 * Owns the stored message head (request or response line plus headers, as
 * received, in one buffer), the checks http-parser does not make, the
 * hop-by-hop rules, the framing decisions and the regeneration of a head for
 * the other side. The parser itself (Debian's http-parser 2.9) stays behind
 * this header so it can be swapped for llhttp. Nothing here touches a socket,
 * a timer or a log.
 */
#ifndef SWITCHBOARD_HTTP1_H
#define SWITCHBOARD_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

struct evbuffer;

/* One header: offsets into http1_head.buf, as received (case kept). */
struct http1_header {
    uint32_t name;
    uint32_t name_len;
    uint32_t value;
    uint32_t value_len;
};

/* Which callback of the parser delivered the last piece. */
enum http1_piece {
    HTTP1_PIECE_NONE,
    HTTP1_PIECE_URL,
    HTTP1_PIECE_STATUS,
    HTTP1_PIECE_FIELD,
    HTTP1_PIECE_VALUE,
    HTTP1_PIECE_METHOD, /* an extension method's name (whole, once) */
};

/*
 * A message head as it arrives: the target (requests) or reason (responses)
 * and the header fields, appended piece by piece by the parser callbacks, so
 * however the bytes were split the stored head is whole. Bounded by limit.
 */
struct http1_head {
    char *buf;
    uint32_t len;
    uint32_t cap;
    uint32_t limit; /* most bytes stored (max_header_size) */
    struct http1_header *hdrs;
    uint32_t n_hdrs;
    uint32_t cap_hdrs;
    uint32_t max_hdrs;
    uint32_t target; /* request target, or response reason phrase */
    uint32_t target_len;
    uint32_t method;     /* an extension method's name, NUL-terminated */
    uint32_t method_len; /* 0: the parser's method is the request's */
    enum http1_piece last;
};

/* Result of a failed check: an HTTP status and a one-line reason. */
struct http1_error {
    int status;
    const char *reason;
};

/* Initialise an empty head that may hold limit bytes and max_hdrs fields. */
void http1_head_init(struct http1_head *h, uint32_t limit, uint32_t max_hdrs);
/* Free the head's buffers; the struct may be initialised again. */
void http1_head_deinit(struct http1_head *h);
/* Forget the stored message, keep the buffers. */
void http1_head_reset(struct http1_head *h);

/* Is c a token character (RFC 9110 5.6.2: a method, a field name)? */
int http1_is_tchar(unsigned char c);

/* The most header fields a head may hold, either way (SECURITY.md). */
#define HTTP1_MAX_FIELDS 256

/*
 * Append a piece delivered by a parser callback. Returns 0; -1 when the
 * head would exceed its size limit (the caller answers 431 or 414); -2
 * when a field would be one more than max_hdrs; -3 when memory runs out
 * (the caller answers 500).
 */
int http1_head_add(struct http1_head *h, enum http1_piece kind,
                   const char *at, size_t len);

/* Drop trailing whitespace from every stored value (RFC 9112 section 5: it
 * is not part of the value). Call once the head is complete. */
void http1_head_trim(struct http1_head *h);

/* Pointer to a stored string at offset off. */
static inline const char *http1_str(const struct http1_head *h, uint32_t off)
{
    return h->buf + off;
}

/* Index of the first header named name (case-insensitive), from index from;
 * -1 when there is none. */
int http1_head_find(const struct http1_head *h, const char *name, int from);

/* What the request's Expect fields ask, all lines and list members taken
 * together (empty members ignored, case ignored): 0 nothing, 1 only
 * 100-continue, -1 some other expectation (417). */
int http1_expectation(const struct http1_head *h);

/* True when the header is hop-by-hop, either by RFC 9110 section 7.6.1 or by
 * being named in one of the message's Connection headers. */
int http1_is_hop_by_hop(const struct http1_head *h, const char *name,
                        size_t len);

/*
 * May the connection carry another message after this one (RFC 9112 9.3)?
 * Not when a Connection (or Proxy-Connection, which http-parser reads as
 * one) header lists "close", nor for HTTP/1.0 without "keep-alive", nor
 * when the body ends at the close. http_should_keep_alive() says the same
 * but matches the tokens itself and misses one followed by a tab
 * ("close\t"); this reads them with the list rules (RFC 9110 5.6.1).
 */
int http1_keep_alive(const struct http1_head *h, const http_parser *p);

/* Does http-parser know the method token m (len bytes, case-sensitive)? */
int http1_method_known(const char *m, size_t len);

/* The longest method read (the longest http-parser knows has 11 bytes). */
#define HTTP1_METHOD_MAX 64

/* What the first bytes of a request line say of its method. */
enum http1_method_kind {
    HTTP1_METHOD_EMPTY_LINES, /* *len bytes of CR and LF (RFC 9112 2.2) */
    HTTP1_METHOD_WAIT,        /* a token so far: the rest may come */
    HTTP1_METHOD_PARSER,      /* one http-parser knows, or no token */
    HTTP1_METHOD_EXTENSION,   /* one it does not know: forward it (*len) */
    HTTP1_METHOD_UNKNOWN,     /* a token beyond nginx's rule for methods */
    HTTP1_METHOD_TOO_LONG,    /* over HTTP1_METHOD_MAX bytes */
};

/*
 * Classify the start of a request line at b (n bytes, at most
 * HTTP1_METHOD_MAX + 1 looked at): the empty lines that may come first,
 * else the method. Methods are
 * extensible (RFC 9110 9.1): one http-parser does not know is an extension
 * when it is made, as nginx requires, of capital letters, '-' and '_'. So
 * no case variant of a known method ("head", "Trace") passes as another:
 * an origin that ignores case would answer it as that method.
 */
enum http1_method_kind http1_method_kind(const char *b, size_t n,
                                         size_t *len);

/* The request's method: the extension method stored in h, else the
 * parser's (method). NUL-terminated. */
const char *http1_method_name(const struct http1_head *h, int method);

/* True when a Connection header of h lists token (case-insensitive). */
int http1_connection_has(const struct http1_head *h, const char *token);

/* Why http-parser refused a Content-Length as unexpected
 * (HPE_UNEXPECTED_CONTENT_LENGTH), read from the fields it passed on: next
 * to Transfer-Encoding (or a name that mimics it), or a second one. */
const char *http1_length_conflict(const struct http1_head *h);

/*
 * The checks on a parsed request head that http-parser does not make: an
 * HTTP/1.x version (else 505), no CONNECT or TRACE (405), Host present
 * exactly once in HTTP/1.1 and well formed, no control characters in names
 * or values, a Transfer-Encoding that is chunked last and known (else 400
 * or 501) and not beside Content-Length, a target in origin or absolute
 * form. Returns 0, or -1 and fills err (status and reason).
 */
int http1_check_request(const struct http1_head *h, const http_parser *p,
                        struct http1_error *err);

/* The same for a response head from an upstream (status and version).
 * A 101 passes only when switching says it is one the proxy relays (to a
 * WebSocket upgrade it was asked for), and only from HTTP/1.1; asked says
 * whether the request asked for one, for the message. */
int http1_check_response(const struct http1_head *h, const http_parser *p,
                         int asked, int switching, struct http1_error *err);

/*
 * Once http1_check_request or http1_check_response has passed a head: any
 * Transfer-Encoding in it is a lone "chunked", and the parser must read the
 * body so. http-parser 2.9.4 takes "chunked" followed by a tab (OWS, RFC
 * 9110 5.6.3) for another coding: it would refuse such a request after its
 * head was taken, and read such a response to its close, relaying the chunk
 * framing as content. Call before the body's framing is decided.
 */
void http1_settle_chunked(http_parser *p);

/*
 * Raw-byte checks on a message head as it streams in, for what http-parser
 * lets through or folds silently: obs-fold (a line starting with SP or HTAB
 * after the start line, which also covers whitespace before the first
 * header), bare CR and NUL, and an HTTP-version that is not "HTTP/..."
 * (Debian's http-parser checks only its "H"). Feed it the bytes in order, however split; it
 * stops at the blank line that ends the head. Reset it per message.
 */
struct http1_scan {
    uint32_t lines;    /* complete lines seen, leading empty lines aside */
    uint32_t line_len; /* bytes on the current line, CR and LF aside */
    unsigned char prev;
    int done;          /* the head's blank line has been seen */
    int response;      /* a status line, not a request line, comes first */
    uint8_t vmatch;    /* bytes of "HTTP/" matched by the current token */
    uint8_t vbad;      /* the current token is not "HTTP/..." */
    uint8_t start_done; /* the start line's version has been checked */
    uint8_t in_code;    /* on a status line's code, after its version */
    uint8_t code_len;   /* digits of that code so far */
    uint32_t bytes;     /* of the head so far, leading empty lines aside */
    uint32_t lead;      /* CR and LF of empty lines before the start line */
    uint32_t start_len; /* of the start line, CR and LF aside, once it ended */
};

/* The start line's length so far (CR and LF aside): whole once it ended. */
uint32_t http1_scan_start_len(const struct http1_scan *sc);

/* Ready the scanner for a new request (http1_scan_reset) or response. */
void http1_scan_reset(struct http1_scan *sc);
void http1_scan_reset_response(struct http1_scan *sc);

/*
 * Scan len bytes of a head. Returns 0 and sets *used to the bytes that
 * belong to the head (all of len, or up to and including the LF of the
 * blank line, after which sc->done is set); or -1 with err filled (status
 * 400; the caller maps it to 502 for responses). sc->bytes and sc->lead
 * count what was used: the head's bytes, and the empty lines before it
 * (RFC 9112 2.2: ignored, so not part of the head).
 */
int http1_scan_head(struct http1_scan *sc, const char *data, size_t len,
                    size_t *used, struct http1_error *err);

/*
 * Framing checks on a chunked body as it streams in, stricter than
 * http-parser (which takes whitespace after a chunk size and ignores what
 * follows): a chunk-size line is 1*HEXDIG (any leading zeros, then at most
 * 16 digits), then either CRLF or optional whitespace, ';' and an extension
 * up to CRLF; chunk data is followed by CRLF; after the last chunk, each
 * trailer line and the final one end in CRLF (the parser reads the trailer
 * fields). Scanning stops at the body's end.
 */
struct http1_chunks {
    int state;
    int digits;    /* of the size so far, leading zeros not counted */
    uint64_t left; /* data bytes left in the current chunk */
};

/* Ready the scanner for a new body. */
void http1_chunks_reset(struct http1_chunks *c);

/* Scan len bytes of a chunked body; 0, or -1 with err (400) filled. A tab
 * right after a chunk size is rewritten to a space in data, for the parser
 * that reads the same bytes next. */
int http1_chunks_scan(struct http1_chunks *c, char *data, size_t len,
                      struct http1_error *err);

/* Where a request goes, as the upstream should see it. */
struct http1_target {
    const char *target;    /* origin-form ("/x?y") or "*" */
    size_t target_len;
    const char *authority; /* host[:port] of an absolute-form target, or NULL */
    size_t authority_len;
    int no_path; /* absolute-form with neither path nor query ("http://a") */
};

/*
 * Split the stored request target into origin-form and authority (for an
 * absolute-form target; an IP literal keeps its brackets). Pointers are
 * into h, whose stored target this may rewrite in place (an empty path
 * before a query becomes "/"). Returns 0, or -1 when the target is not a
 * URL.
 */
int http1_origin_form(struct http1_head *h, struct http1_target *t);

/*
 * The path a route is chosen by, as nginx matches locations: %XX decoded,
 * repeated slashes merged, "." and ".." segments resolved. path (len bytes,
 * starting with '/', no query) is written normalised to out, which has room
 * for len bytes; *out_len is set. Returns 0, or -1 for a path that has no
 * normal form: a bad %XX, an encoded NUL, or ".." above the root.
 */
int http1_path_normalize(const char *path, size_t len, char *out,
                         size_t *out_len);

/* Whether path is its own normal form (no '%', "//" or dot-segment): the
 * common case, which needs no copy. */
int http1_path_is_normal(const char *path, size_t len);

/* How a message body is delimited. */
enum http1_body {
    HTTP1_BODY_NONE,    /* no body at all */
    HTTP1_BODY_LENGTH,  /* Content-Length bytes */
    HTTP1_BODY_CHUNKED, /* chunked transfer coding */
    HTTP1_BODY_EOF,     /* until the connection closes (responses only) */
};

/* Did an HTTP/1.0 message carry Transfer-Encoding? Its framing is then
 * unreliable (RFC 9112 6.1). A request is refused (http1_check_request); a
 * response is read as the header says, and its connection closed after. */
int http1_te_in_http10(const http_parser *p);

/* How the parsed request's body is delimited (after headers complete). */
enum http1_body http1_request_body(const http_parser *p);

/* The framing to send upstream for the parsed request: its body's, but a
 * Content-Length of 0 is kept (a POST's empty body has a length, RFC 9110
 * 8.6, and an origin may answer 411 without one). */
enum http1_body http1_request_framing(const http_parser *p);

/* Whether a response with this status may have content: 1xx, 204 and 304
 * never do, whatever framing they claim (RFC 9110 6.4.1). */
int http1_status_has_content(int status);

/* How the parsed response's body is delimited, given the request method was
 * HEAD or not. */
enum http1_body http1_response_body(const http_parser *p, int head_request);

/*
 * How the body goes to the client: a length stays a length; chunked or
 * close-delimited becomes chunked for HTTP/1.1 clients and close-delimited
 * for HTTP/1.0 ones.
 */
enum http1_body http1_client_framing(enum http1_body upstream,
                                     int client_major, int client_minor);

/* What http1_write_request needs beyond the head itself. */
struct http1_request_info {
    const char *method;      /* "GET" */
    const char *target;      /* origin-form target to send */
    size_t target_len;
    const char *authority;   /* Host from an absolute-form target, or NULL */
    size_t authority_len;
    const char *client_ip;   /* appended to X-Forwarded-For */
    size_t client_ip_len;
    const char *proto;       /* X-Forwarded-Proto: "http" */
    const char *host;        /* Host to send when the client sent none */
    int client_major;        /* for Via */
    int client_minor;
    enum http1_body body;    /* framing to send upstream */
    uint64_t content_length; /* with HTTP1_BODY_LENGTH */
    int close;               /* send Connection: close (no upstream keep-alive) */
    int upgrade;             /* pass the WebSocket upgrade on */
    int underscores;         /* keep fields whose name has a '_' */
};

/*
 * Regenerate the request head for the upstream into out: origin-form target,
 * HTTP/1.1, hop-by-hop and framing headers removed, Expect removed (the proxy
 * answers 100-continue itself), X-Forwarded-For appended, X-Forwarded-Proto
 * set, Via added, Host preserved, framing regenerated. Fields whose name has
 * a '_' are dropped unless info->underscores: CGI and WSGI read X_Forwarded_For
 * as X-Forwarded-For, which would get past the ones set here.
 */
int http1_write_request(struct evbuffer *out, const struct http1_head *h,
                        const struct http1_request_info *info);

/* What http1_write_response needs beyond the head itself. */
struct http1_response_info {
    int status;
    int upstream_major; /* for Via */
    int upstream_minor;
    enum http1_body framing;  /* to the client (http1_client_framing) */
    uint64_t content_length;  /* with HTTP1_BODY_LENGTH */
    int keep_alive;           /* the client connection stays open */
    int client_http10;        /* say Connection: keep-alive explicitly */
    int interim;              /* a 1xx: status line and headers only */
    int no_body;              /* HEAD/204/304: keep the origin's length */
    int upgrade;              /* a 101 to a WebSocket upgrade: say so */
};

/*
 * Does the request ask to become a WebSocket tunnel: GET, HTTP/1.1,
 * Connection listing "upgrade" and Upgrade listing "websocket"? Other
 * upgrades (h2c) are never passed on: Upgrade stays hop-by-hop for them.
 */
int http1_is_websocket_upgrade(const struct http1_head *h,
                               const http_parser *p);

/* Does a 101 response switch to websocket (Upgrade lists it)? */
int http1_is_websocket_switch(const struct http1_head *h);

/*
 * Regenerate the response head for the client into out: HTTP/1.1 status line
 * with the origin's reason, hop-by-hop and framing headers removed, Via
 * added, Date added when missing, framing and Connection regenerated.
 */
int http1_write_response(struct evbuffer *out, const struct http1_head *h,
                         const struct http1_response_info *info);

/* How http1_write_error answers (flags, or'ed). */
enum {
    HTTP1_ERROR_HEAD_ONLY = 1,  /* a reply to HEAD: the head alone */
    HTTP1_ERROR_KEEP_ALIVE = 2, /* the connection stays open: no close */
    HTTP1_ERROR_HTTP10 = 4,     /* to HTTP/1.0: say keep-alive explicitly */
};

/* Write a complete error response (the reason as a text body), with
 * Connection: close unless HTTP1_ERROR_KEEP_ALIVE: without the body for
 * HTTP1_ERROR_HEAD_ONLY, and without body or Content-Length for 1xx, 204
 * and 304. Returns the bytes written, -1 out of memory (nothing written). */
int http1_write_error(struct evbuffer *out, int status, const char *reason,
                      int flags);

/* The standard reason phrase for a status ("Bad Gateway"), or "Unknown". */
const char *http1_status_text(int status);

/* Format the current time as an IMF-fixdate into a 30-byte buffer; cached
 * per second. Returns buf. */
const char *http1_date(char buf[30]);

#endif
