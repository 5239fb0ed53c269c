/*
 * master: sockets, workers and signals.
 *
 * Each worker slot gets its own SO_REUSEPORT socket per listen address, all
 * bound by the master before any fork, so the kernel spreads connections
 * over the workers and a restarted worker picks up exactly the socket (and
 * the queued connections) its predecessor had. With port 0 the first bind
 * picks the port and the rest reuse it. Signals are blocked and taken
 * synchronously with sigtimedwait(): no handler runs concurrently with the
 * code here, and children unblock them after fork.
 */
#include "master.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "util.h"
#include "worker.h"

#define MASTER_MAX_WORKERS 64

/* One worker slot: its sockets and the process serving them. */
struct slot {
    int fds[CONFIG_MAX_LISTEN];
    pid_t pid;
    double started_ms;
    double respawn_at_ms; /* > 0: waiting to be restarted */
};

/* The master's state. */
struct master {
    const struct config *cfg;
    struct slot slots[MASTER_MAX_WORKERS];
    int n_slots;
    sigset_t sigs;
    sigset_t old_mask;
};

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* A bound, listening socket; -1 with err filled on failure. */
static int listen_socket(const struct sockaddr *sa, socklen_t len,
                         int reuseport, int backlog, char *err, size_t errlen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        snprintf(err, errlen, "SO_REUSEPORT: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (bind(fd, sa, len) < 0) {
        snprintf(err, errlen, "bind: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (backlog > 0 && listen(fd, backlog) < 0) {
        snprintf(err, errlen, "listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Bind every slot's socket for listen address i; prints where it listens. */
static int bind_address(struct master *m, int i)
{
    const struct config_addr *a = &m->cfg->listen[i];
    char port[8];
    snprintf(port, sizeof(port), "%u", a->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0) {
        log_error("listen %s:%u: %s", a->host, a->port, gai_strerror(rc));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = res->ai_addrlen;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    char err[128];
    /* SO_REUSEPORT would let us share a port with a stale instance: probe
     * with a plain socket first so "address in use" is reported. */
    if (a->port != 0) {
        int probe = listen_socket((struct sockaddr *)&ss, sslen, 0, 0, err,
                                  sizeof(err));
        if (probe < 0) {
            log_error("listen %s:%u: %s", a->host, a->port, err);
            return -1;
        }
        close(probe);
    }
    for (int s = 0; s < m->n_slots; s++) {
        int fd = listen_socket((struct sockaddr *)&ss, sslen, 1,
                               m->cfg->backlog, err, sizeof(err));
        if (fd < 0) {
            log_error("listen %s:%u: %s", a->host, a->port, err);
            return -1;
        }
        if (s == 0) {
            /* Port 0: every other slot binds the port the kernel chose. */
            getsockname(fd, (struct sockaddr *)&ss, &sslen);
        }
        m->slots[s].fds[i] = fd;
    }
    uint16_t bound = ntohs(ss.ss_family == AF_INET6
                               ? ((struct sockaddr_in6 *)&ss)->sin6_port
                               : ((struct sockaddr_in *)&ss)->sin_port);
    printf(strchr(a->host, ':') ? "listening on [%s]:%u\n"
                                : "listening on %s:%u\n",
           a->host, bound);
    fflush(stdout);
    return 0;
}

/* Fork the worker of slot s. */
static int spawn(struct master *m, int s)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &m->old_mask, NULL);
        int n = m->cfg->n_listen;
        for (int o = 0; o < m->n_slots; o++) {
            if (o == s) {
                continue;
            }
            for (int i = 0; i < n; i++) {
                close(m->slots[o].fds[i]);
            }
        }
        int rc = worker_run(m->cfg, s, m->slots[s].fds, n);
        libevent_global_shutdown();
        exit(rc);
    }
    m->slots[s].pid = pid;
    m->slots[s].started_ms = util_now_ms();
    m->slots[s].respawn_at_ms = 0;
    log_info("worker %d started, pid %d", s, (int)pid);
    return 0;
}

/* Collect dead workers; schedule restarts unless stopping. */
static int reap(struct master *m, int stopping)
{
    int alive = 0;
    pid_t pid;
    int status;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int s = 0; s < m->n_slots; s++) {
            if (m->slots[s].pid != pid) {
                continue;
            }
            m->slots[s].pid = 0;
            if (stopping) {
                break;
            }
            double now = util_now_ms();
            if (WIFSIGNALED(status)) {
                log_error("worker %d (pid %d) killed by signal %d; "
                          "restarting",
                          s, (int)pid, WTERMSIG(status));
            } else {
                log_error("worker %d (pid %d) exited with status %d; "
                          "restarting",
                          s, (int)pid, WEXITSTATUS(status));
            }
            /* A worker that dies at once is restarted after a pause. */
            m->slots[s].respawn_at_ms =
                now - m->slots[s].started_ms < 1000 ? now + 1000 : now;
        }
    }
    for (int s = 0; s < m->n_slots; s++) {
        alive += m->slots[s].pid != 0;
    }
    return alive;
}

static void stop_workers(struct master *m)
{
    for (int s = 0; s < m->n_slots; s++) {
        if (m->slots[s].pid > 0) {
            kill(m->slots[s].pid, SIGTERM);
        }
    }
    double deadline = util_now_ms() + 10000;
    while (reap(m, 1) > 0) {
        if (util_now_ms() > deadline) {
            log_error("workers did not stop in 10 s: killing them");
            for (int s = 0; s < m->n_slots; s++) {
                if (m->slots[s].pid > 0) {
                    kill(m->slots[s].pid, SIGKILL);
                }
            }
            deadline += 10000;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        sigtimedwait(&m->sigs, NULL, &ts);
    }
}

static void close_sockets(struct master *m)
{
    for (int s = 0; s < m->n_slots; s++) {
        for (int i = 0; i < m->cfg->n_listen; i++) {
            if (m->slots[s].fds[i] >= 0) {
                close(m->slots[s].fds[i]);
            }
        }
    }
}

int master_run(const struct config *cfg)
{
    log_init(cfg->log_level, "master");
    raise_fd_limit();
    struct master m;
    memset(&m, 0, sizeof(m));
    m.cfg = cfg;
    m.n_slots = cfg->workers;
    if (m.n_slots <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        m.n_slots = n > 0 ? (int)n : 1;
    }
    if (m.n_slots > MASTER_MAX_WORKERS) {
        m.n_slots = MASTER_MAX_WORKERS;
    }
    for (int s = 0; s < m.n_slots; s++) {
        for (int i = 0; i < CONFIG_MAX_LISTEN; i++) {
            m.slots[s].fds[i] = -1;
        }
    }
    for (int i = 0; i < cfg->n_listen; i++) {
        if (bind_address(&m, i) < 0) {
            close_sockets(&m);
            return 1;
        }
    }

    sigemptyset(&m.sigs);
    sigaddset(&m.sigs, SIGCHLD);
    sigaddset(&m.sigs, SIGTERM);
    sigaddset(&m.sigs, SIGINT);
    sigaddset(&m.sigs, SIGQUIT);
    sigaddset(&m.sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &m.sigs, &m.old_mask);

    log_info("starting %d workers", m.n_slots);
    for (int s = 0; s < m.n_slots; s++) {
        if (spawn(&m, s) < 0) {
            stop_workers(&m);
            close_sockets(&m);
            return 1;
        }
    }
    int rc = 0;
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        siginfo_t info;
        int sig = sigtimedwait(&m.sigs, &info, &ts);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
            log_info("%s: stopping workers", strsignal(sig));
            break;
        }
        if (sig == SIGHUP) {
            log_warn("SIGHUP: configuration reload is not supported yet; "
                     "restart to apply changes");
        }
        reap(&m, 0);
        double now = util_now_ms();
        for (int s = 0; s < m.n_slots; s++) {
            if (m.slots[s].pid == 0 && m.slots[s].respawn_at_ms > 0 &&
                now >= m.slots[s].respawn_at_ms) {
                if (spawn(&m, s) < 0) {
                    m.slots[s].respawn_at_ms = now + 1000;
                }
            }
        }
    }
    stop_workers(&m);
    close_sockets(&m);
    log_info("stopped");
    return rc;
}
