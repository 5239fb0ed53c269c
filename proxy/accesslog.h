/*
 * accesslog: one line per exchange, buffered per worker and written with
 * whole lines only, so lines of several workers appending to one file never
 * interleave. Flushed when the buffer passes 32 KiB, by a 100 ms timer, and
 * on close.
 */
#ifndef SWITCHBOARD_ACCESSLOG_H
#define SWITCHBOARD_ACCESSLOG_H

#include <stdint.h>

struct event_base;
struct accesslog;

/* What one exchange leaves in the log. Times in ms; < 0 means "did not
 * happen" and prints as "-". */
struct accesslog_entry {
    const char *client;   /* "127.0.0.1:5555" */
    const char *method;
    const char *target;
    int target_len;
    int http_major, http_minor;
    int status;           /* 0 when nothing was sent */
    uint64_t bytes_in;    /* from the client, head and body */
    uint64_t bytes_out;   /* to the client, head and body */
    const char *upstream; /* "127.0.0.1:9000" or NULL */
    /* The servers tried before upstream, "a,b", or NULL (no retry). */
    const char *upstream_before;
    double head_ms, latency_ms, connect_ms, first_byte_ms, total_ms;
    const char *term;     /* termination code: "done", "upstream_read_timeout" */
};

/* The descriptor a conf's access_log names as a stream ("stderr",
 * "stdout"), or -1 for "off" and paths. */
int accesslog_stream(const char *where);

/* Does a conf's access_log name a file (neither "off" nor a stream)? */
int accesslog_is_file(const char *where);

/*
 * Open the file at path to append log lines to, without waiting for a
 * reader: a FIFO nobody has open for reading fails at once (ENXIO) where
 * open(2) would block until one came (a worker's loop, or the master in a
 * reload). The descriptor returned blocks as usual. -1 with errno.
 */
int accesslog_open_path(const char *path);

/* Why accesslog_open_path(path) failed with errno err: strerror's words,
 * or "a FIFO with no reader" for ENXIO on a FIFO, whose own text ("No such
 * device or address") misleads there. */
const char *accesslog_strerror(const char *path, int err);

/*
 * Open the log: "off" returns NULL with *err NULL; "stderr", "stdout" or a
 * path opens (appending). On failure returns NULL and *err is set to a static message
 * with errno describing why.
 */
struct accesslog *accesslog_open(struct event_base *base, const char *where,
                                 const char **err);

/* Append one line. NULL log is a no-op. */
void accesslog_write(struct accesslog *log, const struct accesslog_entry *e);

/*
 * Flush, then open the file again by its path (after logrotate moved it);
 * on failure keep the old one and return -1. stderr and NULL: no-op.
 */
int accesslog_reopen(struct accesslog *log);

/* Flush and close; NULL is a no-op. */
void accesslog_close(struct accesslog *log);

#endif
