/*
 * util: small pure helpers shared by every module: parsing durations, sizes
 * and host:port strings, and clocks. Nothing here logs or allocates.
 */
#ifndef SWITCHBOARD_UTIL_H
#define SWITCHBOARD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

/*
 * Parse a duration: digits with an optional unit `ms`, `s` (default), `m`
 * or `h`; "250ms" -> 250, "30s" -> 30000, "2m" -> 120000, "5" -> 5000.
 * Returns 0 and stores milliseconds in *ms, -1 on a malformed value, or -2
 * on a well-formed one past INT64_MAX.
 */
int util_parse_duration(const char *s, int64_t *ms);

/*
 * Parse a size: digits with an optional unit `k`, `m`, `g` (powers of 1024,
 * case-insensitive, an optional trailing `b`); "64k" -> 65536, "10" -> 10.
 * Returns 0 and stores bytes in *bytes, -1 on a malformed value, or -2 on
 * a well-formed one past 2^64 - 1.
 */
int util_parse_size(const char *s, uint64_t *bytes);

/* A duration in milliseconds as a timeval (for libevent timers). */
struct timeval util_ms_to_tv(int ms);

/* How many bytes the peer of TCP socket fd has acknowledged in all (TCP_INFO
 * tcpi_bytes_acked); 0 and -1 if the kernel does not say. */
int util_tcp_bytes_acked(int fd, uint64_t *acked);

/* Parse a plain non-negative decimal integer; 0, -1 or -2 as above. */
int util_parse_uint(const char *s, uint64_t *out);

/*
 * Split "host:port" (or "[v6]:port") into host (NUL-terminated, at most
 * hostlen-1 bytes) and port 0..65535. Returns 0, or -1 if malformed.
 */
int util_parse_hostport(const char *s, char *host, size_t hostlen,
                        uint16_t *port);

/* Is host an IPv4 or IPv6 address (rather than a name to resolve), in
 * any spelling the system resolver reads as one (127.1, 0x7f.0.0.1)? */
int util_is_ip_literal(const char *host);

/* Milliseconds from a monotonic clock, as a double (microsecond precision). */
double util_now_ms(void);

/* The next member of the comma-separated list v (len bytes) from *i:
 * 1 and [*start, *end) without its whitespace, or 0 at the end. Empty
 * members are skipped (RFC 9110 5.6.1.2). Start with *i = 0. */
int util_list_next(const char *v, size_t len, size_t *i, size_t *start,
                   size_t *end);

/* Does the comma-separated list v (len bytes) hold tok (toklen bytes),
 * ignoring case? */
int util_list_has(const char *v, size_t len, const char *tok, size_t toklen);

/* Copy at most dstlen-1 bytes and NUL-terminate; returns strlen(src). */
size_t util_strlcpy(char *dst, const char *src, size_t dstlen);

/* Whether the logs print byte c as \xHH: control bytes, the quote, the
 * backslash, and every byte from DEL up (8-bit terminal escapes, and the
 * pieces of bidirectional overrides). */
int util_log_unsafe(unsigned char c);

/* src[0, len) into dst (cap bytes, NUL-terminated), util_log_unsafe bytes
 * as \xHH, ending in "..." when it does not fit. Returns dst. */
const char *util_log_escape(char *dst, size_t cap, const char *src,
                            size_t len);

/* ASCII case-insensitive compare of a (alen bytes) with NUL-terminated b. */
int util_strieq(const char *a, size_t alen, const char *b);

/* ASCII case-insensitive compare of n bytes of a and b (NULs included, no
 * terminator needed). Returns 1 when they match, else 0. */
int util_strnieq(const char *a, const char *b, size_t n);

#endif
