/*
 * harness: what the integration suites need to drive the real programs.
 *
 * Starts `switchboard` and `slow-origin` as processes on 127.0.0.1 with
 * ports the kernel picks (each prints "listening on 127.0.0.1:PORT", which
 * the harness reads back), scripted upstreams (a forked process that plays a
 * test's handler on each connection), and raw-socket clients with deadlines.
 * Every process it starts is stopped by harness_stop(), at exit, and by
 * PR_SET_PDEATHSIG if the test process dies. Nothing here reaches beyond the
 * loopback interface.
 *
 * Environment: SB_VALGRIND=1 runs switchboard under valgrind (leak check,
 * logs in SB_VALGRIND_DIR or /tmp); SB_TIME_SCALE=N multiplies the time
 * bounds the tests assert (for sanitizer and valgrind runs);
 * SB_CHILD_ASAN_OPTIONS replaces ASAN_OPTIONS for the started programs;
 * SB_KEEP_LOGS=1 keeps their stderr logs (/tmp/sb-test-*.log), which are
 * otherwise removed when the test process exits.
 */
#ifndef SWITCHBOARD_HARNESS_H
#define SWITCHBOARD_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A process the harness started. */
struct proc {
    pid_t pid;
    int port;            /* from its "listening on" line */
    char log_path[256];  /* its stderr */
    char conf_path[256]; /* switchboard's conf, if any */
    int out;             /* its stdout's read end, kept if harness_keep_stdout */
};

/* When > 0, processes started next get this RLIMIT_NOFILE (soft and hard):
 * for descriptor-exhaustion tests. */
extern int harness_nofile;

/* When >= 0, processes started next get this descriptor as their stderr
 * instead of their log file (a pipe, say). */
extern int harness_stderr;

/* When set, processes started next keep their stdout pipe open after the
 * port line: p->out reads what they print later (else p->out is -1).
 * harness_stop closes it. */
extern int harness_keep_stdout;

/* When set (NULL-terminated), harness_proxy runs switchboard under this
 * command, e.g. {"/usr/bin/unshare", "-pf", ..., NULL}. */
extern const char *const *harness_wrap;

/* Set harness_wrap to run switchboard with the LD_PRELOAD shim at rel (in
 * the build tree) and NAME=VALUE settings for it (NULL-terminated, up to
 * 2); ASan is told the shim comes before its runtime. harness_wrap = NULL
 * ends it. */
void harness_preload(const char *rel, ...);

/* Start slow-origin with extra arguments (NULL-terminated list). */
void harness_origin(struct proc *p, ...);

/*
 * Start switchboard on a conf: conf is a printf format; the harness appends
 * nothing, so the test writes every section it needs. The listen address
 * should be 127.0.0.1:0.
 */
void harness_proxy(struct proc *p, const char *conf_fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* SIGTERM, wait (5 s), then SIGKILL. Returns the exit status as waitpid
 * encodes it, or -1. Safe to call twice. */
int harness_stop(struct proc *p);

/* Contents of a started process's stderr so far (static buffer). */
const char *harness_log(const struct proc *p);

/* Wait up to ms for text to appear in the process's stderr; 1 if it did. */
int harness_log_wait(const struct proc *p, const char *text, int ms);

/* A scripted upstream: handler runs in a forked child for each accepted
 * connection (one at a time, or in its own process if concurrent != 0),
 * with arg. */
typedef void (*harness_handler)(int fd, void *arg);
void harness_script(struct proc *p, harness_handler handler, void *arg,
                    int concurrent);

/* A loopback port nobody listens on, below the kernel's ephemeral range. */
int harness_dead_port(void);

/* A socket listening on 127.0.0.1 at a port the kernel picked (in *port):
 * holds that port, so that binding it fails. */
int harness_listen_any(int *port);

/* Blocking connect to 127.0.0.1:port; aborts the test on failure. */
int harness_connect(int port);

/* The same with SO_RCVBUF set to rcvbuf before the handshake (so that the
 * window stays small whatever tcp_rmem allows). */
int harness_connect_rcvbuf(int port, int rcvbuf);

/*
 * An upstream that never completes a handshake, on loopback: a socket
 * listening with backlog 0 whose accept queue is already full. Linux
 * queues backlog + 1 = 1 connection; the SYN of any further one is
 * dropped in tcp_conn_request() ("if (sk_acceptq_is_full(sk)) goto
 * drop", counted as ListenOverflows) whatever tcp_syncookies says, so
 * the connecting side stays in SYN-SENT, retransmitting after 1 s.
 * Checks that this holds before a test relies on it; returns the port
 * (its sockets are the test's, harness_own).
 */
int harness_black_hole(void);

/* Write all of len bytes; 0 or -1. */
int harness_write(int fd, const void *buf, size_t len);
int harness_send(int fd, const char *s);

/* Read one byte-exact HTTP/1.x response (head + body by its framing). */
struct response {
    int status;
    char head[16384];       /* status line and headers, NUL-terminated */
    char *body;             /* malloc'd, NUL-terminated; free with response_free */
    size_t body_len;
    int chunked;
    int complete;           /* body ended by its framing (or by close when
                               close-delimited) */
    int closed;             /* the connection was closed after it */
};

/*
 * Read a response from fd within timeout_ms. head_only: for HEAD requests.
 * Returns 0 when a head was read (check complete), -1 on timeout/close
 * before a head.
 */
int harness_read_response(int fd, struct response *r, int timeout_ms,
                          int head_only);
void response_free(struct response *r);

/* The value of header name in r->head (first one), or NULL (static). */
const char *response_header(const struct response *r, const char *name);
/* Number of headers named name. */
int response_header_count(const struct response *r, const char *name);

/* One-shot: connect, send raw, read one response. */
int harness_exchange(int port, const char *raw, struct response *r,
                     int timeout_ms);

/*
 * An answer the connection outlives: connect, send raw and read the
 * response into r, then send raw again on the same connection and read the
 * second response into again. Asserts that the first response says nothing
 * of closing, that the proxy did not close after it, and that the second
 * came whole: the connection was kept alive and still serves.
 */
void harness_exchange_kept(int port, const char *raw, struct response *r,
                           struct response *again, int timeout_ms);

/* Bytes readable until EOF or timeout_ms of silence; malloc'd. */
char *harness_read_all(int fd, size_t *len, int timeout_ms);

/* 1 if the peer closed fd within timeout_ms (reads and drops data). */
int harness_wait_closed(int fd, int timeout_ms);

/* How many descriptors process pid has open, or -1. */
int harness_open_fds(pid_t pid);

/* Milliseconds, monotonic. */
double harness_now(void);

/* Run the suite and return main's exit status: failure messages that quote
 * a whole proxy log pass Check's default 4 KiB limit, which would report
 * an "Early exit" instead of the assertion and its log. */
struct Suite;
int harness_run_suite(struct Suite *s);

/* Time bound scale from SB_TIME_SCALE (default 1). */
double harness_scale(void);

/* The number after key at the start of a line of /proc/PID/file (the
 * first such line), or -1. */
long harness_proc_field(pid_t pid, const char *file, const char *key);

/* Resident memory of pid and its children, in KiB. */
long harness_rss_kb(pid_t pid);

/* Pids of the children of pid (the workers of a master); count returned. */
int harness_children(pid_t pid, pid_t *out, int max);

/*
 * A conf with one upstream "origin" and route / to it; fill with
 * harness_server_lines(extra [server] lines), the origin's port and extra
 * [upstream] lines.
 */
#define HARNESS_CONF                                                         \
    "[server]\nlisten = 127.0.0.1:0\naccess_log = stderr\n%s\n"             \
    "[upstream origin]\nserver = 127.0.0.1:%d\n%s\n"                         \
    "[route /]\nupstream = origin\n"

/* [server] lines for a test: extra, with one worker unless extra says
 * otherwise (static buffer). */
const char *harness_server_lines(const char *extra);

/* Wait until master has forked n children (its workers); returns how many
 * it has (pids in out, at most 8). */
int harness_wait_children(pid_t master, pid_t *out, int n);

/* Read and drop one request head (up to the blank line) from fd; for
 * scripted upstreams. */
void harness_read_request_head(int fd);

/* The local port of a connected socket: the proxy logs a client by it. */
int harness_client_port(int fd);

/*
 * Wait up to ms (scaled) for the access log line of the client at
 * 127.0.0.1:port in p's log, and copy it (without its newline) into out.
 * Returns 1 if it appeared.
 */
int harness_access_line(const struct proc *p, int port, char *out, size_t cap,
                        int ms);

/* Assert that the access log line of the client at port holds each of the
 * NULL-terminated strings that follow. */
void harness_assert_logged(const struct proc *p, int port, ...);

/* How many times needle occurs in hay. */
int harness_count(const char *hay, const char *needle);

/*
 * Wait up to ms (not scaled) until some of the n sockets fds[i] with
 * done[i] == 0 are readable or closed; their indexes go into ready (room
 * for n). Returns how many (0 on timeout).
 */
int harness_poll_open(const int *fds, const int *done, int n, int *ready,
                      int ms);

/*
 * Read the n sockets fds[i] (done[i] == 0) at once until each ends: EOF,
 * an error, or cap - 1 bytes in got[i] (cap bytes, zeroed by the caller:
 * it stays NUL-terminated), for at most ms (not scaled). Closes each socket
 * that ended and sets its done[i]; returns how many ended.
 */
int harness_collect(const int *fds, char **got, size_t *len, int *done, int n,
                    size_t cap, double ms);

/*
 * Sockets a test owns: harness_own remembers fd (and returns it),
 * harness_close_owned closes one now, and a teardown's
 * harness_close_owned_all closes what is left (a failed assertion skips
 * the test's own closes).
 */
int harness_own(int fd);
void harness_close_owned(int fd);
void harness_close_owned_all(void);

/*
 * Close every socket of the test process, owned or not (and forget the
 * owned ones): a teardown's first step, so that the proxy it then stops
 * finds its clients gone and exits at once. With them open, it drained
 * them, up to lingering_timeout or the harness's 5 s: the suites spent
 * most of their time stopping proxies.
 */
void harness_close_sockets(void);

/*
 * Read from fd, appending to buf (len bytes so far, NUL-terminated, cap in
 * all) until needle appears within ms (scaled); with needle NULL, until the
 * peer closes. Returns 1 when it did.
 */
int harness_read_until(int fd, char *buf, size_t cap, size_t *len,
                       const char *needle, int ms);

/*
 * Send head, then total bytes of filler ('u'), on fd while reading what
 * comes (nothing for the first read_after_ms), until the peer closes or
 * 10 s (scaled) pass. What was read goes into got (NUL-terminated), its
 * length is returned; *sent is the filler sent, and *send_err (if not
 * NULL) the errno that stopped the sending, or 0.
 */
size_t harness_flood(int fd, const char *head, size_t total, int read_after_ms,
                     char *got, size_t cap, size_t *sent, int *send_err);

/* Path of a built program ("proxy/switchboard"). */
const char *harness_path(const char *rel);

#endif
