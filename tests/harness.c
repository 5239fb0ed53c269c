/*
 * harness: processes, sockets and HTTP reading for the integration suites.
 * Failures to set up abort the test with ck_abort_msg, so a test body only
 * holds what it asserts.
 */
#include "harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 32

int harness_nofile;
int harness_stderr = -1;
int harness_keep_stdout;
const char *const *harness_wrap;

void harness_preload(const char *rel, ...)
{
    static char preload[1100], set[2][128], asan[1100];
    static const char *wrap[6];
    int n = 0;
    snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", harness_path(rel));
    wrap[n++] = "/usr/bin/env";
    wrap[n++] = preload;
    va_list ap;
    va_start(ap, rel);
    const char *setting;
    for (int i = 0; i < 2 && (setting = va_arg(ap, const char *)) != NULL;
         i++) {
        snprintf(set[i], sizeof(set[i]), "%s", setting);
        wrap[n++] = set[i];
    }
    va_end(ap);
    /* ASan wants its runtime first among the libraries: the shim is. */
    const char *child = getenv("SB_CHILD_ASAN_OPTIONS");
    snprintf(asan, sizeof(asan), "ASAN_OPTIONS=%s%sverify_asan_link_order=0",
             child != NULL ? child : "", child != NULL ? ":" : "");
    wrap[n++] = asan;
    wrap[n] = NULL;
    harness_wrap = wrap;
}

static struct proc *started[MAX_PROCS];
static int n_started;
static int atexit_set;
/* The log and conf files this process made, removed at its exit (a
 * test's failure message quotes what it needs) unless SB_KEEP_LOGS is
 * set. */
#define MAX_MADE_FILES 1024
static char made_files[MAX_MADE_FILES][256];
static int n_made_files;

static void stop_all(void)
{
    for (int i = 0; i < n_started; i++) {
        if (started[i] != NULL) {
            harness_stop(started[i]);
        }
    }
    if (getenv("SB_KEEP_LOGS") == NULL) {
        for (int i = 0; i < n_made_files; i++) {
            unlink(made_files[i]);
        }
    }
}

static void track(struct proc *p)
{
    if (!atexit_set) {
        atexit(stop_all);
        atexit_set = 1;
        signal(SIGPIPE, SIG_IGN);
    }
    if (n_started < MAX_PROCS) {
        started[n_started++] = p;
    }
}

int harness_open_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

int harness_run_suite(struct Suite *s)
{
    check_set_max_msg_size(1 << 20);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

double harness_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

double harness_scale(void)
{
    const char *s = getenv("SB_TIME_SCALE");
    double v = s ? atof(s) : 1.0;
    return v >= 1.0 ? v : 1.0;
}

const char *harness_path(const char *rel)
{
    static char buf[4][1024];
    static int next;
    char *out = buf[next++ % 4];
    snprintf(out, sizeof(buf[0]), "%s/%s", TOP_BUILDDIR, rel);
    return out;
}

/*
 * fork/exec argv with stdout on a pipe (to read the port line) and stderr
 * into a log file; waits up to 10 s (times the scale) for the port.
 */
static void spawn(struct proc *p, char *const argv[])
{
    static int counter;
    snprintf(p->log_path, sizeof(p->log_path), "/tmp/sb-test-%d-%d.log",
             (int)getpid(), counter++);
    int pipefd[2];
    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    int logfd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(logfd, 0);
    if (n_made_files < MAX_MADE_FILES) {
        snprintf(made_files[n_made_files++], sizeof(made_files[0]), "%s",
                 p->log_path);
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        /* Sanitizer settings meant for the programs under test (leak
         * checks, report files) rather than for the test process. */
        if (harness_nofile > 0) {
            struct rlimit rl = {(rlim_t)harness_nofile, (rlim_t)harness_nofile};
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        const char *child_asan = getenv("SB_CHILD_ASAN_OPTIONS");
        if (child_asan != NULL) {
            setenv("ASAN_OPTIONS", child_asan, 1);
        }
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(harness_stderr >= 0 ? harness_stderr : logfd, STDERR_FILENO);
        close(pipefd[0]);
        close(pipefd[1]);
        close(logfd);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    close(logfd);
    p->pid = pid;
    p->port = 0;
    p->out = -1;
    track(p);

    char line[512];
    size_t len = 0;
    double deadline = harness_now() + 10000 * harness_scale();
    while (p->port == 0 && harness_now() < deadline) {
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        ssize_t n = read(pipefd[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        line[len] = '\0';
        /* The first "listening on HOST:PORT" line, read whole (an
         * "admin listening on" line may follow it in the same read). */
        char *at = strstr(line, "listening on ");
        char *eol = at ? strchr(at, '\n') : NULL;
        if (eol != NULL) {
            *eol = '\0';
            char *colon = strrchr(at, ':');
            if (colon != NULL) {
                p->port = atoi(colon + 1);
            }
            *eol = '\n';
        }
    }
    if (harness_keep_stdout && p->port != 0) {
        p->out = pipefd[0];
    } else {
        close(pipefd[0]);
    }
    if (p->port == 0) {
        harness_stop(p);
        ck_abort_msg("%s did not print its port; its log:\n%s", argv[0],
                     harness_log(p));
    }
}

void harness_origin(struct proc *p, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)harness_path("bench/slow-origin");
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    va_list ap;
    va_start(ap, p);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && n < 30) {
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    memset(p, 0, sizeof(*p));
    spawn(p, argv);
}

void harness_proxy(struct proc *p, const char *conf_fmt, ...)
{
    static int counter;
    memset(p, 0, sizeof(*p));
    snprintf(p->conf_path, sizeof(p->conf_path), "/tmp/sb-test-%d-%d.conf",
             (int)getpid(), counter++);
    FILE *f = fopen(p->conf_path, "w");
    ck_assert_ptr_nonnull(f);
    /* harness_stop removes it; a test that reaps the proxy itself (a
     * drain, a crash) leaves it to the exit, as its log. */
    if (n_made_files < MAX_MADE_FILES) {
        snprintf(made_files[n_made_files++], sizeof(made_files[0]), "%s",
                 p->conf_path);
    }
    va_list ap;
    va_start(ap, conf_fmt);
    vfprintf(f, conf_fmt, ap);
    va_end(ap);
    fclose(f);

    char *argv[16];
    int n = 0;
    char vglog[512];
    for (int i = 0; harness_wrap != NULL && harness_wrap[i] != NULL && n < 6;
         i++) {
        argv[n++] = (char *)harness_wrap[i];
    }
    if (getenv("SB_VALGRIND") && atoi(getenv("SB_VALGRIND")) > 0) {
        const char *dir = getenv("SB_VALGRIND_DIR");
        snprintf(vglog, sizeof(vglog), "--log-file=%s/vg-%%p.log",
                 dir ? dir : "/tmp");
        argv[n++] = "/usr/bin/valgrind";
        argv[n++] = "--leak-check=full";
        argv[n++] = "--errors-for-leak-kinds=definite";
        argv[n++] = "--error-exitcode=99";
        argv[n++] = "--suppressions=" TOP_SRCDIR "/tests/valgrind.supp";
        argv[n++] = vglog;
    }
    argv[n++] = (char *)harness_path("proxy/switchboard");
    argv[n++] = "-c";
    argv[n++] = p->conf_path;
    argv[n] = NULL;
    spawn(p, argv);
}

int harness_stop(struct proc *p)
{
    if (p->pid <= 0) {
        return -1;
    }
    int status = -1;
    kill(p->pid, SIGTERM);
    double deadline = harness_now() + 5000 * harness_scale();
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid || r < 0) {
            break;
        }
        if (harness_now() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            status = -1;
            break;
        }
        usleep(5000);
    }
    p->pid = 0;
    if (p->out > 0) {
        close(p->out);
        p->out = -1;
    }
    for (int i = 0; i < n_started; i++) {
        if (started[i] == p) {
            started[i] = NULL;
        }
    }
    if (p->conf_path[0]) {
        unlink(p->conf_path);
    }
    return status;
}

const char *harness_log(const struct proc *p)
{
    static char buf[1 << 20];
    buf[0] = '\0';
    FILE *f = fopen(p->log_path, "r");
    if (f == NULL) {
        return buf;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

int harness_log_wait(const struct proc *p, const char *text, int ms)
{
    double deadline = harness_now() + ms * harness_scale();
    do {
        if (strstr(harness_log(p), text) != NULL) {
            return 1;
        }
        usleep(10000);
    } while (harness_now() < deadline);
    return 0;
}

/* A socket listening on 127.0.0.1 with backlog, kernel-picked port. */
static int listen_backlog(int *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, backlog), 0);
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A listening socket on 127.0.0.1, kernel-picked port. */
static int listen_any(int *port)
{
    return listen_backlog(port, 1024);
}

int harness_connect_rcvbuf(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
                  "connect: %s", strerror(errno));
    return fd;
}

/* Connect to 127.0.0.1:port without waiting; returns the socket. */
static int connect_nowait(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    ck_assert_msg(rc == 0 || errno == EINPROGRESS, "connect: %s",
                  strerror(errno));
    return fd;
}

int harness_black_hole(void)
{
    int port;
    harness_own(listen_backlog(&port, 0));
    harness_own(harness_connect(port)); /* fills the accept queue */
    int probe = harness_own(connect_nowait(port));
    harness_own(connect_nowait(port));
    struct pollfd pfd = {.fd = probe, .events = POLLOUT};
    ck_assert_msg(poll(&pfd, 1, 200) == 0,
                  "the kernel completed a handshake past a full accept "
                  "queue: this test needs another black hole");
    return port;
}

int harness_listen_any(int *port)
{
    return listen_any(port);
}

/*
 * A loopback port that nothing listens on, and that the kernel will not
 * hand out meanwhile: one below ip_local_port_range, the range it draws
 * from for bind(port 0) and connect(). A port from listen_any(), closed,
 * is back in that range: make check runs suites in parallel, and another
 * suite's origin or one of its thousands of connections could take it
 * before the test uses it as dead (or binds it again, as check_ops does).
 */
int harness_dead_port(void)
{
    int low = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d", &low) != 1) {
            low = 32768;
        }
        fclose(f);
    }
    enum { FIRST = 10000 };
    if (low - FIRST < 1000) {
        int port;
        close(listen_any(&port));
        return port;
    }
    static unsigned next;
    unsigned start = (unsigned)getpid() * 2654435761u + next++ * 7919u;
    for (unsigned k = 0; k < 1000; k++) {
        int port = FIRST + (int)((start + k * 104729u) % (unsigned)(low - FIRST));
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(fd, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        if (rc == 0) {
            return port;
        }
    }
    ck_abort_msg("no free loopback port below %d", low);
    return -1;
}

void harness_script(struct proc *p, harness_handler handler, void *arg,
                    int concurrent)
{
    memset(p, 0, sizeof(*p));
    int lfd = listen_any(&p->port);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(0);
        }
        signal(SIGTERM, SIG_DFL);
        signal(SIGCHLD, SIG_IGN); /* concurrent handlers reap themselves */
        for (;;) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) {
                if (errno == EINTR) {
                    continue;
                }
                _exit(0);
            }
            if (concurrent) {
                if (fork() == 0) {
                    close(lfd);
                    handler(fd, arg);
                    _exit(0);
                }
                close(fd);
            } else {
                handler(fd, arg);
                close(fd);
            }
        }
    }
    close(lfd);
    p->pid = pid;
    p->out = -1;
    track(p);
}

static void forget_leftover(int fd);

int harness_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ck_abort_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    forget_leftover(fd);
    return fd;
}

int harness_write(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int harness_send(int fd, const char *s)
{
    return harness_write(fd, s, strlen(s));
}

/* A buffered reader over a socket with one deadline. */
struct reader {
    int fd;
    double deadline;
    char buf[65536];
    size_t start, end;
    int eof;
};

/* Make at least one more byte available; 0, or -1 on EOF/timeout. */
static int fill(struct reader *rd)
{
    if (rd->start == rd->end) {
        rd->start = rd->end = 0;
    }
    if (rd->end == sizeof(rd->buf)) {
        memmove(rd->buf, rd->buf + rd->start, rd->end - rd->start);
        rd->end -= rd->start;
        rd->start = 0;
    }
    for (;;) {
        int left = (int)(rd->deadline - harness_now());
        if (left <= 0) {
            return -1;
        }
        struct pollfd pfd = {.fd = rd->fd, .events = POLLIN};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        ssize_t n = read(rd->fd, rd->buf + rd->end, sizeof(rd->buf) - rd->end);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rd->eof = 1;
            return -1;
        }
        rd->end += (size_t)n;
        return 0;
    }
}

/* Read a CRLF- (or LF-) terminated line into out (without the newline). */
static int read_line(struct reader *rd, char *out, size_t cap)
{
    size_t len = 0;
    for (;;) {
        while (rd->start < rd->end) {
            char c = rd->buf[rd->start++];
            if (c == '\n') {
                if (len > 0 && out[len - 1] == '\r') {
                    len--;
                }
                out[len] = '\0';
                return 0;
            }
            if (len + 1 < cap) {
                out[len++] = c;
            }
        }
        if (fill(rd) < 0) {
            return -1;
        }
    }
}

static int read_bytes(struct reader *rd, char *out, size_t n)
{
    while (n > 0) {
        if (rd->start == rd->end && fill(rd) < 0) {
            return -1;
        }
        size_t take = rd->end - rd->start;
        if (take > n) {
            take = n;
        }
        memcpy(out, rd->buf + rd->start, take);
        rd->start += take;
        out += take;
        n -= take;
    }
    return 0;
}

/* The reader is per call: responses are read one at a time, and any bytes
 * past the response stay queued in a per-fd leftover. */
static struct {
    int fd;
    char data[65536];
    size_t len;
} leftover = {.fd = -1};

/* A new connection on a descriptor number closed before: what was left
 * over from the old one is not its. */
static void forget_leftover(int fd)
{
    if (leftover.fd == fd) {
        leftover.len = 0;
    }
}

static void body_append(struct response *r, size_t *cap, const char *p,
                        size_t n)
{
    if (r->body_len + n + 1 > *cap) {
        while (r->body_len + n + 1 > *cap) {
            *cap = *cap ? *cap * 2 : 4096;
        }
        r->body = realloc(r->body, *cap);
        ck_assert_ptr_nonnull(r->body);
    }
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

const char *response_header(const struct response *r, const char *name)
{
    static char value[8192];
    size_t nlen = strlen(name);
    const char *line = strchr(r->head, '\n');
    while (line != NULL) {
        line++;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ' || *v == '\t') {
                v++;
            }
            size_t len = strcspn(v, "\r\n");
            if (len >= sizeof(value)) {
                len = sizeof(value) - 1;
            }
            memcpy(value, v, len);
            value[len] = '\0';
            return value;
        }
        line = strchr(line, '\n');
    }
    return NULL;
}

int response_header_count(const struct response *r, const char *name)
{
    int count = 0;
    size_t nlen = strlen(name);
    const char *line = strchr(r->head, '\n');
    while (line != NULL) {
        line++;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            count++;
        }
        line = strchr(line, '\n');
    }
    return count;
}

int harness_read_response(int fd, struct response *r, int timeout_ms,
                          int head_only)
{
    memset(r, 0, sizeof(*r));
    struct reader *rd = calloc(1, sizeof(*rd));
    ck_assert_ptr_nonnull(rd);
    rd->fd = fd;
    rd->deadline = harness_now() + timeout_ms * harness_scale();
    if (leftover.fd == fd && leftover.len > 0) {
        memcpy(rd->buf, leftover.data, leftover.len);
        rd->end = leftover.len;
    }
    leftover.len = 0;
    int rc = -1;
    char line[8192];
    size_t hlen = 0;
    size_t cap = 0;
    /* Status line and headers; interim 1xx heads are kept in head too. */
    for (;;) {
        if (read_line(rd, line, sizeof(line)) < 0) {
            r->closed = rd->eof;
            goto out;
        }
        if (hlen == 0 && line[0] == '\0') {
            continue;
        }
        if (hlen == 0 && strncmp(line, "HTTP/1.", 7) == 0) {
            r->status = atoi(line + 9);
        }
        int n = snprintf(r->head + hlen, sizeof(r->head) - hlen, "%s\r\n",
                         line);
        if (n > 0 && hlen + (size_t)n < sizeof(r->head)) {
            hlen += (size_t)n;
        }
        if (line[0] == '\0') {
            if (r->status >= 100 && r->status < 200 && r->status != 101) {
                hlen = 0; /* interim response: read the final one */
                r->head[0] = '\0';
                continue;
            }
            break;
        }
    }
    rc = 0;
    r->body = calloc(1, 1);
    if (head_only || r->status == 204 || r->status == 304) {
        r->complete = 1;
        goto out;
    }
    const char *te = response_header(r, "transfer-encoding");
    const char *cl = response_header(r, "content-length");
    if (te != NULL && strcasestr(te, "chunked") != NULL) {
        r->chunked = 1;
        for (;;) {
            if (read_line(rd, line, sizeof(line)) < 0) {
                goto out;
            }
            unsigned long size = strtoul(line, NULL, 16);
            if (size == 0) {
                do {
                    if (read_line(rd, line, sizeof(line)) < 0) {
                        goto out;
                    }
                } while (line[0] != '\0');
                r->complete = 1;
                goto out;
            }
            char *chunk = malloc(size);
            ck_assert_ptr_nonnull(chunk);
            int ok = read_bytes(rd, chunk, size) == 0;
            if (ok) {
                body_append(r, &cap, chunk, size);
            }
            free(chunk);
            if (!ok || read_line(rd, line, sizeof(line)) < 0) {
                goto out;
            }
        }
    } else if (cl != NULL) {
        size_t want = strtoull(cl, NULL, 10);
        while (r->body_len < want) {
            if (rd->start == rd->end && fill(rd) < 0) {
                goto out;
            }
            size_t take = rd->end - rd->start;
            if (take > want - r->body_len) {
                take = want - r->body_len;
            }
            body_append(r, &cap, rd->buf + rd->start, take);
            rd->start += take;
        }
        r->complete = 1;
    } else {
        /* Close-delimited. */
        for (;;) {
            if (rd->start < rd->end) {
                body_append(r, &cap, rd->buf + rd->start, rd->end - rd->start);
                rd->start = rd->end;
            }
            if (fill(rd) < 0) {
                r->complete = rd->eof;
                r->closed = rd->eof;
                goto out;
            }
        }
    }
out:
    if (rd->start < rd->end) {
        leftover.fd = fd;
        leftover.len = rd->end - rd->start;
        memcpy(leftover.data, rd->buf + rd->start, leftover.len);
    }
    if (rd->eof) {
        r->closed = 1;
    }
    free(rd);
    return rc;
}

void response_free(struct response *r)
{
    free(r->body);
    r->body = NULL;
}

int harness_exchange(int port, const char *raw, struct response *r,
                     int timeout_ms)
{
    int fd = harness_connect(port);
    ck_assert_int_eq(harness_send(fd, raw), 0);
    int rc = harness_read_response(fd, r, timeout_ms, 0);
    close(fd);
    return rc;
}

void harness_exchange_kept(int port, const char *raw, struct response *r,
                           struct response *again, int timeout_ms)
{
    int fd = harness_own(harness_connect(port));
    ck_assert_int_eq(harness_send(fd, raw), 0);
    ck_assert_msg(harness_read_response(fd, r, timeout_ms, 0) == 0,
                  "no response to %.60s", raw);
    const char *conn = response_header(r, "connection");
    ck_assert_msg(conn == NULL || strcasecmp(conn, "close") != 0,
                  "a %d said Connection: close", r->status);
    ck_assert_msg(r->complete && !r->closed, "a %d: complete %d, closed %d",
                  r->status, r->complete, r->closed);
    ck_assert_int_eq(harness_send(fd, raw), 0);
    ck_assert_msg(harness_read_response(fd, again, timeout_ms, 0) == 0,
                  "no second response on the connection after a %d",
                  r->status);
    ck_assert_msg(again->complete, "the second response is cut short");
    harness_close_owned(fd);
}

char *harness_read_all(int fd, size_t *len, int timeout_ms)
{
    size_t cap = 65536;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    *len = 0;
    if (leftover.fd == fd && leftover.len > 0) {
        memcpy(buf, leftover.data, leftover.len);
        *len = leftover.len;
        leftover.len = 0;
    }
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(timeout_ms * harness_scale()));
        if (r <= 0) {
            break;
        }
        if (*len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        ssize_t n = read(fd, buf + *len, cap - *len - 1);
        if (n <= 0) {
            break;
        }
        *len += (size_t)n;
    }
    buf[*len] = '\0';
    return buf;
}

int harness_wait_closed(int fd, int timeout_ms)
{
    double deadline = harness_now() + timeout_ms * harness_scale();
    char buf[65536];
    for (;;) {
        int left = (int)(deadline - harness_now());
        if (left <= 0) {
            return 0;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0) {
            return 0;
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return 1;
        }
    }
}

long harness_proc_field(pid_t pid, const char *file, const char *key)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, n) == 0) {
            v = atol(line + n);
            break;
        }
    }
    fclose(f);
    return v;
}

long harness_rss_kb(pid_t pid)
{
    return harness_proc_field(pid, "status", "VmRSS:");
}

int harness_children(pid_t pid, pid_t *out, int max)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid,
             (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    int n = 0;
    int v;
    while (n < max && fscanf(f, "%d", &v) == 1) {
        out[n++] = v;
    }
    fclose(f);
    return n;
}

const char *harness_server_lines(const char *extra)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "%s%s",
             strstr(extra, "workers") ? "" : "workers = 1\n", extra);
    return buf;
}

int harness_wait_children(pid_t master, pid_t *out, int n)
{
    double t0 = harness_now();
    int got = 0;
    while (harness_now() - t0 < 5000 * harness_scale()) {
        got = harness_children(master, out, 8);
        if (got == n) {
            break;
        }
        usleep(10 * 1000);
    }
    return got;
}

void harness_read_request_head(int fd)
{
    char buf[8192];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) {
            return;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL) {
            return;
        }
    }
}

int harness_client_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

int harness_access_line(const struct proc *p, int port, char *out, size_t cap,
                        int ms)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "Z 127.0.0.1:%d \"", port);
    out[0] = '\0';
    if (!harness_log_wait(p, needle, ms)) {
        return 0;
    }
    const char *line = strstr(harness_log(p), needle);
    size_t len = strcspn(line, "\n");
    if (len >= cap) {
        len = cap - 1;
    }
    memcpy(out, line, len);
    out[len] = '\0';
    return 1;
}

void harness_assert_logged(const struct proc *p, int port, ...)
{
    char line[1024];
    ck_assert_msg(harness_access_line(p, port, line, sizeof(line), 2000),
                  "no access log line for 127.0.0.1:%d; log:\n%s", port,
                  harness_log(p));
    va_list ap;
    va_start(ap, port);
    const char *want;
    while ((want = va_arg(ap, const char *)) != NULL) {
        ck_assert_msg(strstr(line, want) != NULL, "\"%s\" not in: %s", want,
                      line);
    }
    va_end(ap);
}

int harness_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL;
         p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

int harness_poll_open(const int *fds, const int *done, int n, int *ready,
                      int ms)
{
    struct pollfd *pfds = calloc((size_t)n, sizeof(*pfds));
    int *map = calloc((size_t)n, sizeof(*map));
    ck_assert(pfds != NULL && map != NULL);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!done[i]) {
            pfds[m].fd = fds[i];
            pfds[m].events = POLLIN;
            map[m++] = i;
        }
    }
    int found = 0;
    if (m > 0 && poll(pfds, (nfds_t)m, ms) > 0) {
        for (int k = 0; k < m; k++) {
            if (pfds[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                ready[found++] = map[k];
            }
        }
    }
    free(pfds);
    free(map);
    return found;
}

int harness_collect(const int *fds, char **got, size_t *len, int *done, int n,
                    size_t cap, double ms)
{
    int *ready = calloc((size_t)n, sizeof(*ready));
    ck_assert_ptr_nonnull(ready);
    int finished = 0;
    double t0 = harness_now();
    while (finished < n && harness_now() - t0 < ms) {
        int k_ready = harness_poll_open(fds, done, n, ready, 1000);
        for (int k = 0; k < k_ready; k++) {
            int i = ready[k];
            ssize_t r = read(fds[i], got[i] + len[i], cap - 1 - len[i]);
            if (r <= 0 || len[i] + (size_t)r >= cap - 1) {
                done[i] = 1;
                finished++;
                close(fds[i]);
                continue;
            }
            len[i] += (size_t)r;
        }
    }
    free(ready);
    return finished;
}

static int owned[2048];
static int n_owned;

int harness_own(int fd)
{
    ck_assert_int_lt(n_owned, (int)(sizeof(owned) / sizeof(owned[0])));
    owned[n_owned++] = fd;
    return fd;
}

void harness_close_owned(int fd)
{
    for (int i = 0; i < n_owned; i++) {
        if (owned[i] == fd) {
            owned[i] = -1;
        }
    }
    close(fd);
}

void harness_close_owned_all(void)
{
    for (int i = 0; i < n_owned; i++) {
        if (owned[i] >= 0) {
            close(owned[i]);
        }
    }
    n_owned = 0;
}

void harness_close_sockets(void)
{
    harness_close_owned_all();
    int fds[4096], n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 4096) {
        int fd = atoi(e->d_name); /* "." and "..": 0 */
        struct stat st;
        if (fd > 2 && fd != dirfd(d) && fstat(fd, &st) == 0 &&
            S_ISSOCK(st.st_mode)) {
            fds[n++] = fd;
        }
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
    leftover.len = 0;
}

int harness_read_until(int fd, char *buf, size_t cap, size_t *len,
                       const char *needle, int ms)
{
    double deadline = harness_now() + ms * harness_scale();
    buf[*len] = '\0';
    /* memmem: bytes before the needle may include NULs. */
    while (needle == NULL ||
           memmem(buf, *len, needle, strlen(needle)) == NULL) {
        int left = (int)(deadline - harness_now());
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            return 0;
        }
        ssize_t n = read(fd, buf + *len, cap - 1 - *len);
        if (n <= 0) {
            return needle == NULL; /* the end is what NULL waits for */
        }
        *len += (size_t)n;
        buf[*len] = '\0';
    }
    return 1;
}

size_t harness_flood(int fd, const char *head, size_t total, int read_after_ms,
                     char *got, size_t cap, size_t *sent, int *send_err)
{
    ck_assert_int_eq(harness_send(fd, head), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static char block[65536];
    memset(block, 'u', sizeof(block));
    size_t len = 0;
    int eof = 0, err = 0;
    double t0 = harness_now();
    double deadline = t0 + 10000 * harness_scale();
    *sent = 0;
    /* Sending goes on after the peer's FIN (a lingering close reads
     * on), until all is sent or a send fails. */
    for (;;) {
        int reading = !eof && harness_now() - t0 >= read_after_ms;
        int sending = *sent < total && err == 0;
        if ((!reading && eof && !sending) || harness_now() >= deadline) {
            break;
        }
        struct pollfd pfd = {.fd = fd,
                             .events = (reading ? POLLIN : 0) |
                                       (sending ? POLLOUT : 0)};
        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        if (sending && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
            size_t n = total - *sent < sizeof(block) ? total - *sent
                                                     : sizeof(block);
            ssize_t w = send(fd, block, n, MSG_NOSIGNAL);
            if (w > 0) {
                *sent += (size_t)w;
            } else if (errno != EAGAIN) {
                err = errno; /* the peer has gone: stop sending */
            }
        }
        if (reading && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(fd, got + len, cap - 1 - len);
            if (r > 0) {
                len += (size_t)r;
            } else if (r == 0 || errno != EAGAIN) {
                eof = 1;
            }
        }
    }
    got[len] = '\0';
    if (send_err != NULL) {
        *send_err = err;
    }
    return len;
}
