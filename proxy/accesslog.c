/*
 * accesslog: formats entries into an evbuffer and writes it out in whole
 * lines. Several workers may share the file or pipe: a write to a regular
 * file opened O_APPEND (or sharing one offset, as stderr redirected to a
 * file does) is never interleaved with another; a write to a pipe is
 * only up to PIPE_BUF bytes (`| logger`, systemd's stdout pipe), so there,
 * and on sockets, each write is whole lines of at most PIPE_BUF (on a
 * stream socket that makes splicing unlikely, not impossible).
 */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "log.h"
#include "util.h"

#define ACCESSLOG_FLUSH_BYTES 32768

/* An open access log. */
struct accesslog {
    char path[1024]; /* the file's, or "stderr" or "stdout" */
    int fd;
    int owns_fd;
    int piped; /* fd is a pipe or a socket: writes of PIPE_BUF at most */
    struct evbuffer *buf;
    struct event *flush_timer;
    uint64_t dropped;      /* bytes a failed write lost, all told */
    time_t dropped_logged; /* when that was last said (once a minute) */
};

/* How much of buf the next write takes: all of it, or on a pipe the
 * whole lines that fit in PIPE_BUF (a longer first line alone). */
static size_t next_write(struct accesslog *log)
{
    size_t len = evbuffer_get_length(log->buf);
    if (!log->piped || len <= PIPE_BUF) {
        return len;
    }
    const char *head = (const char *)evbuffer_pullup(log->buf, PIPE_BUF);
    for (size_t n = PIPE_BUF; n > 0; n--) {
        if (head[n - 1] == '\n') {
            return n;
        }
    }
    struct evbuffer_ptr eol = evbuffer_search(log->buf, "\n", 1, NULL);
    return eol.pos < 0 ? len : (size_t)eol.pos + 1;
}

static void accesslog_flush(struct accesslog *log)
{
    while (evbuffer_get_length(log->buf) > 0) {
        if (evbuffer_write_atmost(log->buf, log->fd,
                                  (ev_ssize_t)next_write(log)) < 0 &&
            errno != EINTR) {
            /* The lines are lost (a full disk, a closed pipe): say so,
             * once a minute at most, rather than holding them. */
            int err = errno;
            size_t len = evbuffer_get_length(log->buf);
            evbuffer_drain(log->buf, len);
            log->dropped += len;
            time_t now = time(NULL);
            if (now - log->dropped_logged >= 60) {
                log->dropped_logged = now;
                log_error("access_log %s: cannot write: %s; %llu bytes of "
                          "log lines lost so far",
                          log->path,
                          strerror(err), (unsigned long long)log->dropped);
            }
            return;
        }
    }
}

/* Is fd a pipe or a socket? */
static int is_piped(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
    accesslog_flush(arg);
}

int accesslog_stream(const char *where)
{
    if (strcmp(where, "stderr") == 0) {
        return STDERR_FILENO;
    }
    if (strcmp(where, "stdout") == 0) {
        return STDOUT_FILENO;
    }
    return -1;
}

int accesslog_is_file(const char *where)
{
    return strcmp(where, "off") != 0 && accesslog_stream(where) < 0;
}

int accesslog_open_path(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK,
                  0644);
    if (fd < 0) {
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

const char *accesslog_strerror(const char *path, int err)
{
    struct stat st;
    if (err == ENXIO && stat(path, &st) == 0 && S_ISFIFO(st.st_mode)) {
        return "a FIFO with no reader";
    }
    return strerror(err);
}

struct accesslog *accesslog_open(struct event_base *base, const char *where,
                                 const char **err)
{
    *err = NULL;
    if (strcmp(where, "off") == 0) {
        return NULL;
    }
    struct accesslog *log = calloc(1, sizeof(*log));
    if (log == NULL) {
        *err = "out of memory";
        return NULL;
    }
    int stream = accesslog_stream(where);
    if (stream >= 0) {
        log->fd = stream;
    } else {
        log->fd = accesslog_open_path(where);
        if (log->fd < 0) {
            *err = "cannot open access log";
            free(log);
            return NULL;
        }
        log->owns_fd = 1;
    }
    snprintf(log->path, sizeof(log->path), "%s", where);
    log->piped = is_piped(log->fd);
    log->buf = evbuffer_new();
    log->flush_timer = event_new(base, -1, 0, on_flush_timer, log);
    if (log->buf == NULL || log->flush_timer == NULL) {
        *err = "out of memory";
        accesslog_close(log);
        return NULL;
    }
    return log;
}

int accesslog_reopen(struct accesslog *log)
{
    if (log == NULL || !log->owns_fd) {
        return 0;
    }
    accesslog_flush(log);
    int fd = accesslog_open_path(log->path);
    if (fd < 0) {
        return -1; /* keep writing to the old file */
    }
    close(log->fd);
    log->fd = fd;
    log->piped = is_piped(fd);
    return 0;
}

/* Print a phase time, or "-" when it did not happen. */
static void add_ms(struct evbuffer *b, const char *name, double ms)
{
    if (ms < 0) {
        evbuffer_add_printf(b, " %s=-", name);
    } else {
        evbuffer_add_printf(b, " %s=%.1f", name, ms);
    }
}

/* The target as logged: never let it break the line or the quoting. */
static void log_target(struct evbuffer *b, const struct accesslog_entry *e)
{
    if (e->target == NULL || e->target_len == 0) {
        evbuffer_add(b, "-", 1);
        return;
    }
    /* Room for every byte escaped (4 each) and util_log_escape's NUL, so
     * that it never cuts. */
    size_t room = (size_t)e->target_len * 4 + 1;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(b, (ev_ssize_t)room, &v, 1) < 1) {
        evbuffer_add(b, "-", 1);
        return;
    }
    v.iov_len = strlen(util_log_escape(v.iov_base, room, e->target,
                                       (size_t)e->target_len));
    evbuffer_commit_space(b, &v, 1);
}

void accesslog_write(struct accesslog *log, const struct accesslog_entry *e)
{
    if (log == NULL) {
        return;
    }
    static time_t cached_at;
    static char stamp[32];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_at) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_at = tv.tv_sec;
    }
    struct evbuffer *b = log->buf;
    evbuffer_add_printf(b, "%s.%03dZ %s \"", stamp, (int)(tv.tv_usec / 1000),
                        e->client);
    if (e->method == NULL && (e->target == NULL || e->target_len == 0)) {
        /* No complete head was read (a 408 or 431 on a head, say): "-",
         * as nginx logs it. */
        evbuffer_add(b, "-\"", 2);
    } else {
        evbuffer_add_printf(b, "%s ", e->method ? e->method : "-");
        log_target(b, e);
        evbuffer_add_printf(b, " HTTP/%d.%d\"", e->http_major,
                            e->http_minor);
    }
    evbuffer_add_printf(b, " %d %llu %llu ", e->status,
                        (unsigned long long)e->bytes_in,
                        (unsigned long long)e->bytes_out);
    if (e->upstream_before != NULL) {
        evbuffer_add_printf(b, "%s%s", e->upstream_before,
                            e->upstream ? "," : "");
    }
    if (e->upstream != NULL) {
        evbuffer_add_printf(b, "%s", e->upstream);
    } else if (e->upstream_before == NULL) {
        evbuffer_add(b, "-", 1);
    }
    add_ms(b, "head", e->head_ms);
    add_ms(b, "latency", e->latency_ms);
    add_ms(b, "connect", e->connect_ms);
    add_ms(b, "first_byte", e->first_byte_ms);
    add_ms(b, "total", e->total_ms);
    evbuffer_add_printf(b, " term=%s\n", e->term);

    if (evbuffer_get_length(b) >= ACCESSLOG_FLUSH_BYTES) {
        accesslog_flush(log);
    } else if (!evtimer_pending(log->flush_timer, NULL)) {
        struct timeval later = {0, 100 * 1000};
        evtimer_add(log->flush_timer, &later);
    }
}

void accesslog_close(struct accesslog *log)
{
    if (log == NULL) {
        return;
    }
    if (log->buf != NULL) {
        accesslog_flush(log);
        evbuffer_free(log->buf);
    }
    if (log->flush_timer != NULL) {
        event_free(log->flush_timer);
    }
    if (log->owns_fd) {
        close(log->fd);
    }
    free(log);
}
