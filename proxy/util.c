/*
 * util: the small pure helpers declared in util.h.
 *
 * Owns the grammar of the values the conf is written in (durations, sizes,
 * plain numbers, host:port) and a monotonic clock. It must stay pure: no
 * logging, no allocation, no global state; a bad value is reported with -1
 * and the caller words the error.
 */
/* clock_gettime: POSIX, whatever the build defines. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include "util.h"

#include <arpa/inet.h>
#include <linux/tcp.h> /* tcpi_bytes_acked: glibc's tcp_info lacks it */
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/*
 * Read the run of decimal digits at *s into *out and advance *s past it.
 * Returns 0, -1 if there is no digit, or -2 if the number exceeds max (all
 * of it read even so, so the caller can tell a bad unit from a large
 * number).
 */
static int parse_digits(const char **s, uint64_t max, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    int over = 0;

    if (!is_digit(*p)) {
        return -1;
    }
    for (; is_digit(*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (over || v > (max - d) / 10) {
            over = 1;
            continue;
        }
        v = v * 10 + d;
    }
    *out = v;
    *s = p;
    return over ? -2 : 0;
}

struct timeval util_ms_to_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

int util_parse_uint(const char *s, uint64_t *out)
{
    uint64_t v;
    int rc;

    if (s == NULL || (rc = parse_digits(&s, UINT64_MAX, &v)) == -1 ||
        *s != '\0') {
        return -1;
    }
    if (rc < 0) {
        return -2;
    }
    *out = v;
    return 0;
}

/*
 * Units are lowercase on purpose: "1M" is a month to nginx users and a
 * megabyte to everyone else, so it is rejected rather than read as a minute.
 */
int util_parse_duration(const char *s, int64_t *ms)
{
    uint64_t v, mult;
    int rc;

    if (s == NULL || (rc = parse_digits(&s, INT64_MAX, &v)) == -1) {
        return -1;
    }
    if (strcmp(s, "ms") == 0) {
        mult = 1;
    } else if (strcmp(s, "s") == 0 || *s == '\0') {
        mult = 1000;
    } else if (strcmp(s, "m") == 0) {
        mult = 60 * 1000;
    } else if (strcmp(s, "h") == 0) {
        mult = 60 * 60 * 1000;
    } else {
        return -1;
    }
    if (rc < 0 || v > (uint64_t)INT64_MAX / mult) {
        return -2;
    }
    *ms = (int64_t)(v * mult);
    return 0;
}

int util_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t v, mult = 1;
    int rc;

    if (s == NULL || (rc = parse_digits(&s, UINT64_MAX, &v)) == -1) {
        return -1;
    }
    switch (ascii_lower(*s)) {
    case 'k':
        mult = (uint64_t)1 << 10;
        s++;
        break;
    case 'm':
        mult = (uint64_t)1 << 20;
        s++;
        break;
    case 'g':
        mult = (uint64_t)1 << 30;
        s++;
        break;
    default:
        break;
    }
    if (ascii_lower(*s) == 'b') {
        s++;
    }
    if (*s != '\0') {
        return -1;
    }
    if (rc < 0 || v > UINT64_MAX / mult) {
        return -2;
    }
    *bytes = v * mult;
    return 0;
}

/* A host name or IPv4 literal: letters, digits, '.', '-' and '_'. */
static int is_name_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '.' || c == '-' || c == '_';
}

/* Inside brackets: hex digits, ':' and '.', then an optional %zone. */
static int valid_v6(const char *h, size_t n)
{
    size_t i = 0;
    int colons = 0;

    for (; i < n && h[i] != '%'; i++) {
        char c = ascii_lower(h[i]);
        if (c == ':') {
            colons++;
        } else if (!is_digit(c) && !(c >= 'a' && c <= 'f') && c != '.') {
            return 0;
        }
    }
    if (colons < 2) {
        return 0;
    }
    if (i < n) { /* %zone: at least one name character */
        if (++i == n) {
            return 0;
        }
        for (; i < n; i++) {
            if (!is_name_char(h[i])) {
                return 0;
            }
        }
    }
    return 1;
}

int util_parse_hostport(const char *s, char *host, size_t hostlen,
                        uint16_t *port)
{
    const char *h, *colon;
    size_t n;
    uint64_t p;

    if (s == NULL || host == NULL || hostlen == 0) {
        return -1;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            return -1;
        }
        h = s + 1;
        n = (size_t)(close - h);
        colon = close + 1;
        if (!valid_v6(h, n)) {
            return -1;
        }
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            return -1;
        }
        h = s;
        n = (size_t)(colon - s);
        for (size_t i = 0; i < n; i++) {
            if (!is_name_char(h[i])) {
                return -1; /* includes a bare IPv6 literal: needs [] */
            }
        }
    }
    if (n == 0 || n >= hostlen) {
        return -1;
    }
    if (util_parse_uint(colon + 1, &p) < 0 || p > 65535) {
        return -1;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (uint16_t)p;
    return 0;
}

int util_is_ip_literal(const char *host)
{
    struct in_addr a4;
    unsigned char a6[sizeof(struct in6_addr)];
    /* inet_aton, as getaddrinfo reads IPv4: 127.1 is 127.0.0.1 too. */
    return inet_aton(host, &a4) != 0 || inet_pton(AF_INET6, host, a6) == 1;
}

double util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000) / 1000.0;
}

size_t util_strlcpy(char *dst, const char *src, size_t dstlen)
{
    size_t n = strlen(src);

    if (dstlen > 0) {
        size_t k = n < dstlen - 1 ? n : dstlen - 1;
        memcpy(dst, src, k);
        dst[k] = '\0';
    }
    return n;
}

int util_log_unsafe(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c >= 0x7f;
}

const char *util_log_escape(char *dst, size_t cap, const char *src,
                            size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (cap == 0) {
        return dst;
    }
    size_t total = 0;
    for (size_t i = 0; i < len; i++) {
        total += util_log_unsafe((unsigned char)src[i]) ? 4 : 1;
    }
    /* What does not fit ends in "...", never inside an escape. */
    int cut = total >= cap;
    size_t room = !cut ? total : cap > 3 ? cap - 4 : 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        int unsafe = util_log_unsafe(c);
        if (o + (unsafe ? 4 : 1) > room) {
            break;
        }
        if (unsafe) {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            dst[o++] = (char)c;
        }
    }
    if (cut && cap > 3) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}

int util_strnieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i] && ascii_lower(a[i]) != ascii_lower(b[i])) {
            return 0;
        }
    }
    return 1;
}

int util_strieq(const char *a, size_t alen, const char *b)
{
    /* Most calls compare names of different lengths: settle those first. */
    return strlen(b) == alen && util_strnieq(a, b, alen);
}

int util_tcp_bytes_acked(int fd, uint64_t *acked)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    *acked = 0;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_acked) +
                  sizeof(ti.tcpi_bytes_acked)) {
        return -1;
    }
    *acked = ti.tcpi_bytes_acked;
    return 0;
}

int util_list_next(const char *v, size_t len, size_t *i, size_t *start,
                   size_t *end)
{
    while (*i < len) {
        while (*i < len && (v[*i] == ' ' || v[*i] == '\t' || v[*i] == ',')) {
            (*i)++;
        }
        *start = *i;
        while (*i < len && v[*i] != ',') {
            (*i)++;
        }
        *end = *i;
        while (*end > *start && (v[*end - 1] == ' ' || v[*end - 1] == '\t')) {
            (*end)--;
        }
        if (*end > *start) {
            return 1;
        }
    }
    return 0;
}

int util_list_has(const char *v, size_t len, const char *tok, size_t toklen)
{
    size_t i = 0, start, end;
    while (util_list_next(v, len, &i, &start, &end)) {
        if (end - start == toklen && strncasecmp(v + start, tok, toklen) == 0) {
            return 1;
        }
    }
    return 0;
}
