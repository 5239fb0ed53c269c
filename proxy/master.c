/*
 * master: sockets, workers and signals.
 *
 * Each worker slot gets its own SO_REUSEPORT socket per listen address, all
 * bound by the master before any fork, so the kernel spreads connections
 * over the workers and a restarted worker picks up exactly the socket (and
 * the queued connections) its predecessor had. With port 0 the first bind
 * picks the port and the rest reuse it. A reload keeps the sockets of the
 * addresses both confs name (rebind), so its new workers take over their
 * queues too; a reload to fewer workers keeps the sockets of the slots
 * that go, served by those that stay, and steers new connections off
 * them (steer). Signals are blocked and taken
 * synchronously with sigtimedwait(): no handler runs concurrently with the
 * code here, and children unblock them after fork.
 */
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "accesslog.h"
#include "admin.h"
#include "log.h"
#include "pool.h"
#include "stats.h"
#include "util.h"
#include "worker.h"

#define MASTER_MAX_WORKERS 64
#define MASTER_MAX_RETIRING 256
/* Older generations of workers that may drain at once after reloads. */
#define MASTER_DRAINING_GENERATIONS 3

/* One worker slot: the process serving its sockets (master.fds[slot], and
 * every n_slots-th row after it). */
struct slot {
    pid_t pid;
    double started_ms;
    double respawn_at_ms; /* > 0: waiting to be restarted */
    int shutdown_ms;      /* the shutdown_timeout of the conf it runs */
};

/* A table of listening sockets: one per row and listen address (a row is
 * a worker slot's, or one a reload to fewer workers kept). */
typedef int listen_fds[MASTER_MAX_WORKERS][CONFIG_MAX_LISTEN];
_Static_assert(WORKER_MAX_LISTENERS >= MASTER_MAX_WORKERS * CONFIG_MAX_LISTEN,
               "a worker can serve every row of the table");

/* The master's state. */
struct master {
    const struct config *cfg; /* the conf new workers get */
    struct config *owned;     /* cfg, when a reload allocated it */
    listen_fds fds;           /* [row][cfg->listen index], -1 if none */
    struct slot slots[MASTER_MAX_WORKERS];
    int n_slots;
    int n_rows; /* rows of fds: n_slots, more once a reload drops slots */
    pid_t retiring[MASTER_MAX_RETIRING]; /* old workers draining */
    int retiring_shutdown_ms[MASTER_MAX_RETIRING]; /* what each drains by */
    int n_retiring;
    int generation;
    int reload_pending;       /* a valid SIGHUP waits for free stats slots */
    struct stats_shm *shm;
    int admin_fd;             /* -1: no admin listener */
    pid_t admin_pid;
    pid_t admin_old;          /* the one a reload replaced, until it exits */
    double admin_respawn_at_ms;
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

/*
 * Give a listening socket cfg's sndbuf and rcvbuf (0: leave it as it is).
 * Accepted connections inherit them from it, before their handshake, so
 * the window a client is offered fits the buffer (set after the
 * handshake, a smaller buffer drops what that window let in). The kernel
 * keeps a size once set: a reload to 0 leaves it.
 */
static void listen_buffers(int fd, const struct config *cfg,
                           const struct config_addr *a)
{
    const struct {
        int opt;
        size_t size;
        const char *name;
    } bufs[] = {{SO_SNDBUF, cfg->sndbuf, "sndbuf"},
                {SO_RCVBUF, cfg->rcvbuf, "rcvbuf"}};
    for (size_t b = 0; b < sizeof(bufs) / sizeof(bufs[0]); b++) {
        int size = (int)bufs[b].size;
        if (size > 0 &&
            setsockopt(fd, SOL_SOCKET, bufs[b].opt, &size, sizeof(size)) < 0) {
            log_warn("listen %s:%u: %s %d: %s", a->host, a->port,
                     bufs[b].name, size, strerror(errno));
        }
    }
}

/* A bound, listening socket (with cfg's buffers, unless cfg is NULL); -1
 * with err filled on failure. */
static int listen_socket(const struct sockaddr *sa, socklen_t len,
                         int reuseport, int backlog,
                         const struct config *cfg,
                         const struct config_addr *a, char *err,
                         size_t errlen)
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
    if (cfg != NULL) {
        listen_buffers(fd, cfg, a);
    }
    if (backlog > 0 && listen(fd, backlog) < 0) {
        snprintf(err, errlen, "listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The address to bind for a conf's host:port, or getaddrinfo's error. */
static int resolve_listen(const struct config_addr *a,
                          struct sockaddr_storage *ss, socklen_t *len)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", a->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0) {
        return rc;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* resolve_listen, which logs "what host:port: why" and returns -1 when the
 * name does not resolve. */
static int listen_address(const struct config_addr *a, const char *what,
                          struct sockaddr_storage *ss, socklen_t *len)
{
    int rc = resolve_listen(a, ss, len);
    if (rc != 0) {
        log_error("%s %s:%u: %s", what, a->host, a->port, gai_strerror(rc));
        return -1;
    }
    return 0;
}

/* The port a socket is bound to. */
static unsigned bound_port(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET6
                     ? ((const struct sockaddr_in6 *)ss)->sin6_port
                     : ((const struct sockaddr_in *)ss)->sin_port);
}

/* The port socket fd is bound to; 0 if it cannot say. */
static unsigned fd_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 ? bound_port(&ss)
                                                               : 0;
}

/* Print "[what]listening on HOST:PORT" with the port socket fd is bound
 * to, the line tests and scripts wait for: only once every address of the
 * start or the reload is bound, so that a reload failing on a later one
 * announces none it closes again (a start that then cannot fork exits). */
static void announce(const char *what, const char *host, int fd)
{
    printf(strchr(host, ':') ? "%slistening on [%s]:%u\n"
                             : "%slistening on %s:%u\n",
           what, host, fd_port(fd));
    fflush(stdout);
}

/*
 * Bind sockets for slots [from, to) into column i of fds, on ss (SO_REUSEPORT:
 * they share the address). With port 0 the first one picks the port, which
 * ss then holds. On failure those sockets are closed again (-1) and -1
 * returned, logged for address a.
 */
static int bind_slots(const struct config_addr *a, struct sockaddr_storage *ss,
                      socklen_t sslen, const struct config *cfg, int from,
                      int to, listen_fds fds, int i)
{
    char err[128];
    for (int s = from; s < to; s++) {
        int fd = listen_socket((struct sockaddr *)ss, sslen, 1, cfg->backlog,
                               cfg, a, err, sizeof(err));
        if (fd < 0) {
            log_error("listen %s:%u: %s", a->host, a->port, err);
            while (s-- > from) {
                close(fds[s][i]);
                fds[s][i] = -1;
            }
            return -1;
        }
        if (s == from) {
            /* Port 0: every other slot binds the port the kernel chose. */
            getsockname(fd, (struct sockaddr *)ss, &sslen);
        }
        fds[s][i] = fd;
    }
    return 0;
}

/*
 * Bind one socket per slot (n_slots of them) for listen address a into
 * column i of fds. -1 (logged) on failure.
 * With probe, a plain bind first reports a port another process holds.
 */
static int bind_address(const struct config_addr *a, const struct config *cfg,
                        int n_slots, listen_fds fds, int i, int probe)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (listen_address(a, "listen", &ss, &sslen) < 0) {
        return -1;
    }
    /* SO_REUSEPORT would let us share a port with a stale instance: probe
     * with a plain socket first so "address in use" is reported. */
    if (a->port != 0 && probe) {
        char err[128];
        int fd = listen_socket((struct sockaddr *)&ss, sslen, 0, 0, NULL, a,
                               err, sizeof(err));
        if (fd < 0) {
            log_error("listen %s:%u: %s", a->host, a->port, err);
            return -1;
        }
        close(fd);
    }
    return bind_slots(a, &ss, sslen, cfg, 0, n_slots, fds, i);
}

int master_check_outside(const struct config *cfg, char *err, size_t errlen)
{
    if (accesslog_is_file(cfg->access_log)) {
        int fd = accesslog_open_path(cfg->access_log);
        if (fd < 0) {
            snprintf(err, errlen, "%s:%d: access_log %s: cannot open it: %s",
                     cfg->path, cfg->access_log_line, cfg->access_log,
                     accesslog_strerror(cfg->access_log, errno));
            return -1;
        }
        close(fd);
    }
    /* The addresses to listen on: a name must resolve now (-t says so). */
    for (int i = 0; i < cfg->n_listen + cfg->n_admin_listen; i++) {
        const struct config_addr *a = i < cfg->n_listen
                                          ? &cfg->listen[i]
                                          : &cfg->admin_listen[0];
        struct sockaddr_storage ss;
        socklen_t len;
        int rc = resolve_listen(a, &ss, &len);
        if (rc != 0) {
            snprintf(err, errlen, "%s:%d: %slisten %s:%u: cannot resolve it: %s",
                     cfg->path, a->line, i < cfg->n_listen ? "" : "[admin] ",
                     a->host, a->port, gai_strerror(rc));
            return -1;
        }
    }
    if (strcmp(cfg->resolver, "system") != 0) {
        return 0;
    }
    for (int u = 0; u < cfg->n_upstreams; u++) {
        const struct config_upstream *up = &cfg->upstreams[u];
        for (int i = 0; i < up->n_servers; i++) {
            const struct config_addr *a = &up->servers[i].addr;
            struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
            struct addrinfo *res = NULL;
            int rc = getaddrinfo(a->host, NULL, &hints, &res);
            if (rc != 0) {
                snprintf(err, errlen,
                         "%s:%d: server %s in [upstream %s]: cannot resolve "
                         "it: %s",
                         cfg->path, a->line, a->host, up->name,
                         gai_strerror(rc));
                return -1;
            }
            freeaddrinfo(res);
        }
    }
    return 0;
}

/*
 * First steps of a child: die with the master (and not run if it is
 * already gone: the check compares with the master's pid, which may be 1 in
 * a container). Signals stay blocked until the child's loop has its
 * handlers; libevent then receives any that came meanwhile. SIGHUP is for
 * the master only.
 */
static void child_start(struct master *m)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != m->shm->master_pid) {
        _exit(1);
    }
    signal(SIGHUP, SIG_IGN);
}

/* In a child: close what the master holds that the child must not (the
 * sockets of slots other than keep_slot; -1: all). */
static void child_close(struct master *m, int keep_slot)
{
    for (int o = 0; o < m->n_rows; o++) {
        if (o % m->n_slots == keep_slot) {
            continue;
        }
        for (int i = 0; i < m->cfg->n_listen; i++) {
            if (m->fds[o][i] >= 0) {
                close(m->fds[o][i]);
            }
        }
    }
    if (m->admin_fd >= 0) {
        close(m->admin_fd);
    }
}

/*
 * What one worker's health checks say of the servers of cfg (its slot st):
 * per server 0 nothing (not checked there yet, or checked on another
 * path), 1 in service, 2 + p out with p good checks since. Pools are
 * matched by name and health_check path, servers by address.
 */
typedef unsigned char verdicts[CONFIG_MAX_UPSTREAMS][CONFIG_MAX_SERVERS];

/* The index of the server of cu named address ("host:port", as
 * config_server_name writes it), trying hint first; -1 if none. */
static int server_index(const struct config_upstream *cu, const char *address,
                        int hint)
{
    char name[CONFIG_HOST_MAX + 8];
    int i = hint >= 0 && hint < cu->n_servers ? hint : 0;
    for (int tried = 0; tried < cu->n_servers; tried++) {
        config_server_name(&cu->servers[i], name, sizeof(name));
        if (strcmp(name, address) == 0) {
            return i;
        }
        i = (i + 1) % cu->n_servers;
    }
    return -1;
}

static void slot_verdicts(const struct config *cfg,
                          const struct stats_slot *st, verdicts v)
{
    memset(v, 0, sizeof(verdicts));
    for (int p = 0; p < st->n_pools && p < STATS_MAX_POOLS; p++) {
        const struct stats_pool *sp = &st->pools[p];
        int u = 0;
        while (u < cfg->n_upstreams &&
               strcmp(cfg->upstreams[u].name, sp->name) != 0) {
            u++;
        }
        if (u == cfg->n_upstreams || sp->check_id == 0 ||
            sp->check_id != pool_check_id(&cfg->upstreams[u])) {
            continue;
        }
        for (int k = 0; k < sp->n_servers && k < STATS_MAX_SERVERS; k++) {
            const struct stats_server *sv = &sp->servers[k];
            /* Most often the server has kept its place in the list. */
            int i = sv->checked
                        ? server_index(&cfg->upstreams[u], sv->address, k)
                        : -1;
            if (i >= 0) {
                int passes = sv->check_passes < 200 ? sv->check_passes : 200;
                v[u][i] = (unsigned char)(sv->check_down ? 2 + passes : 1);
            }
        }
    }
}

/* The verdicts of each worker slot's last worker, saved as it died (reap)
 * for its restart: a lone worker has nobody else to ask. */
static verdicts last_verdicts[MASTER_MAX_WORKERS];
static int has_last_verdicts[MASTER_MAX_WORKERS];

/* Renumber verdicts v by conf from into conf to's numbering: pools by
 * name and health_check path, servers by address; what to lacks is
 * dropped. */
static void verdicts_renumber(const struct config *from,
                              const struct config *to, verdicts v)
{
    static verdicts out;
    memset(out, 0, sizeof(out));
    for (int u = 0; u < from->n_upstreams; u++) {
        const struct config_upstream *a = &from->upstreams[u];
        for (int t = 0; t < to->n_upstreams; t++) {
            const struct config_upstream *b = &to->upstreams[t];
            if (strcmp(a->name, b->name) != 0 ||
                strcmp(a->health_check, b->health_check) != 0) {
                continue;
            }
            for (int i = 0; i < a->n_servers; i++) {
                char name[CONFIG_HOST_MAX + 8];
                config_server_name(&a->servers[i], name, sizeof(name));
                int j = v[u][i] != 0 ? server_index(b, name, i) : -1;
                if (j >= 0) {
                    out[t][j] = v[u][i];
                }
            }
        }
    }
    memcpy(v, out, sizeof(out));
}

/*
 * How the servers of m's conf start in a new worker: out of service where
 * the health checks of every running worker that has checked them (and of
 * every slot's last worker that died and waits for its restart) hold them
 * out, with the fewest good checks any of them counts
 * since; in service where any says so, or none has checked them. A worker
 * whose checks use another path, or that has not checked yet, says
 * nothing.
 */
/* The votes health_at_fork counts, per server of the conf. */
struct tally {
    unsigned short seen[CONFIG_MAX_UPSTREAMS][CONFIG_MAX_SERVERS];
    unsigned short in[CONFIG_MAX_UPSTREAMS][CONFIG_MAX_SERVERS];
    unsigned char fewest[CONFIG_MAX_UPSTREAMS][CONFIG_MAX_SERVERS];
};

/* Count one worker's verdicts v into t. */
static void tally_add(struct tally *t, const struct config *cfg,
                      const verdicts v)
{
    for (int u = 0; u < cfg->n_upstreams; u++) {
        for (int i = 0; i < cfg->upstreams[u].n_servers; i++) {
            if (v[u][i] == 0) {
                continue;
            }
            t->seen[u][i]++;
            if (v[u][i] == 1) {
                t->in[u][i]++;
            } else if (v[u][i] - 2 < t->fewest[u][i]) {
                t->fewest[u][i] = (unsigned char)(v[u][i] - 2);
            }
        }
    }
}

static void health_at_fork(const struct master *m, struct worker_health *h)
{
    static verdicts v;
    static struct tally t;
    memset(&t, 0, sizeof(t));
    memset(t.fewest, 0xff, sizeof(t.fewest));
    const struct config *cfg = m->cfg;
    for (int k = 0; k < m->shm->n_slots; k++) {
        const struct stats_slot *st = &m->shm->slots[k];
        if (st->in_use && st->pid != 0) { /* else free, or not yet forked */
            slot_verdicts(cfg, st, v);
            tally_add(&t, cfg, v);
        }
    }
    for (int s = 0; s < MASTER_MAX_WORKERS; s++) {
        if (has_last_verdicts[s]) {
            tally_add(&t, cfg, last_verdicts[s]);
        }
    }
    memset(h, 0, sizeof(*h));
    for (int u = 0; u < cfg->n_upstreams; u++) {
        for (int i = 0; i < cfg->upstreams[u].n_servers; i++) {
            if (t.seen[u][i] > 0 && t.in[u][i] == 0) {
                h->out[u][i] = (unsigned char)(1 + t.fewest[u][i]);
            }
        }
    }
}

/* A worker of slot s died: keep what its health checks said, for its
 * restart (its stats slot is about to be released). */
static void save_verdicts(struct master *m, int s, pid_t pid)
{
    const struct stats_slot *st = stats_slot_of(m->shm, pid);
    has_last_verdicts[s] = st != NULL;
    if (st != NULL) {
        slot_verdicts(m->cfg, st, last_verdicts[s]);
    }
}

/* Fork the worker of slot s, its servers starting as health says (NULL:
 * asked of the running workers now). */
static int spawn(struct master *m, int s, const struct worker_health *health)
{
    static struct worker_health now; /* the child's copy is its own */
    if (health == NULL) {
        health_at_fork(m, &now);
        health = &now;
    }
    has_last_verdicts[s] = 0; /* the new worker will say */
    struct stats_slot *st = stats_claim(m->shm, 0, s, m->generation);
    if (st == NULL) {
        log_warn("worker %d: no free stats slot; its figures are not shown",
                 s);
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        if (st != NULL) {
            st->in_use = 0;
        }
        return -1;
    }
    if (pid == 0) {
        child_start(m);
        int fd = m->admin_fd;
        m->admin_fd = -1;
        if (fd >= 0) {
            close(fd);
        }
        child_close(m, s);
        if (st != NULL) {
            st->pid = getpid();
        }
        int mine[WORKER_MAX_LISTENERS];
        int n_mine = 0;
        for (int r = s; r < m->n_rows; r += m->n_slots) {
            for (int i = 0; i < m->cfg->n_listen; i++) {
                if (m->fds[r][i] >= 0) {
                    mine[n_mine++] = m->fds[r][i];
                }
            }
        }
        int rc = worker_run(m->cfg, s, mine, n_mine, st, health);
        libevent_global_shutdown();
        exit(rc);
    }
    if (st != NULL) {
        st->pid = pid;
    }
    m->slots[s].pid = pid;
    m->slots[s].shutdown_ms = m->cfg->shutdown_timeout_ms;
    m->slots[s].started_ms = util_now_ms();
    m->slots[s].respawn_at_ms = 0;
    log_info("worker %d started, pid %d", s, (int)pid);
    return 0;
}

/* Fork the admin process onto the admin socket. */
static int spawn_admin(struct master *m)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        child_start(m);
        int fd = m->admin_fd;
        m->admin_fd = -1;
        child_close(m, -1);
        int rc = admin_run(m->cfg, fd, m->shm);
        libevent_global_shutdown();
        exit(rc);
    }
    m->admin_pid = pid;
    m->admin_respawn_at_ms = 0;
    log_info("admin started, pid %d", (int)pid);
    return 0;
}

/* Collect dead workers; schedule restarts unless stopping. */
static int reap(struct master *m, int stopping)
{
    int alive = 0;
    pid_t pid;
    int status;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int s = 0; s < m->n_slots && !stopping; s++) {
            if (m->slots[s].pid == pid) {
                save_verdicts(m, s, pid);
            }
        }
        stats_release(m->shm, pid);
        if (pid == m->admin_old) {
            m->admin_old = 0;
            continue;
        }
        if (pid == m->admin_pid) {
            m->admin_pid = 0;
            if (stopping) {
                continue;
            }
            if (WIFSIGNALED(status)) {
                log_error("admin process (pid %d) killed by signal %d; "
                          "restarting",
                          (int)pid, WTERMSIG(status));
            } else {
                log_error("admin process (pid %d) exited with status %d; "
                          "restarting",
                          (int)pid, WEXITSTATUS(status));
            }
            m->admin_respawn_at_ms = util_now_ms() + 1000;
            continue;
        }
        for (int r = 0; r < m->n_retiring; r++) {
            if (m->retiring[r] == pid) {
                if (WIFSIGNALED(status)) {
                    log_warn("old worker (pid %d) killed by signal %d while "
                             "draining", (int)pid, WTERMSIG(status));
                } else {
                    log_info("old worker (pid %d) finished draining",
                             (int)pid);
                }
                m->n_retiring--;
                m->retiring[r] = m->retiring[m->n_retiring];
                m->retiring_shutdown_ms[r] =
                    m->retiring_shutdown_ms[m->n_retiring];
                break;
            }
        }
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
            } else if (WEXITSTATUS(status) == 0) {
                /* Stopped by a signal sent to it, not to the master: not
                 * a failure, but the slot must not stay empty. */
                log_warn("worker %d (pid %d) stopped on its own signal; "
                         "restarting", s, (int)pid);
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
    return alive + m->n_retiring;
}

/* Has the current worker pid begun to drain (its stats slot says so)? */
static int worker_draining(const struct master *m, pid_t pid)
{
    const struct stats_slot *st = stats_slot_of(m->shm, pid);
    return st != NULL && __atomic_load_n(&st->draining, __ATOMIC_ACQUIRE);
}

/*
 * A current worker drains only on a signal sent to it alone (kill -TERM
 * <worker pid>): the master's own stops and reloads take it out of the
 * slot first. It has closed its copies of the slot's listening sockets,
 * but the master's keep them open, so the kernel would go on queueing the
 * slot's share of new clients for nobody until it exited (shutdown_timeout
 * at most). It is replaced at once instead, as a reload replaces workers:
 * it finishes draining as a retiring one. Not while a stop of the master's
 * is pending (a signal sent to the whole process group reaches both).
 */
static void replace_draining_workers(struct master *m)
{
    sigset_t pending;
    if (sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGQUIT) ||
         sigismember(&pending, SIGINT))) {
        return;
    }
    for (int s = 0; s < m->n_slots; s++) {
        pid_t pid = m->slots[s].pid;
        if (pid == 0 || m->n_retiring >= MASTER_MAX_RETIRING ||
            !worker_draining(m, pid)) {
            continue;
        }
        /* A replacement takes a stats slot while the old worker keeps its
         * own: only with a whole generation's worth left over beside it,
         * for the next reload's workers (the region is sized for
         * generations, not for replacements). Else, as before, the slot
         * is filled when the old worker exits. */
        int free_slots = 0;
        for (int i = 0; i < m->shm->n_slots; i++) {
            free_slots += !m->shm->slots[i].in_use;
        }
        if (free_slots < m->n_slots + 1) {
            continue;
        }
        log_warn("worker %d (pid %d) drains on a signal of its own; a new "
                 "worker %d takes its sockets",
                 s, (int)pid, s);
        m->retiring_shutdown_ms[m->n_retiring] = m->slots[s].shutdown_ms;
        m->retiring[m->n_retiring++] = pid;
        m->slots[s].pid = 0;
        if (spawn(m, s, NULL) < 0) {
            m->slots[s].respawn_at_ms = util_now_ms() + 1000;
        }
    }
}

/* Send sig to every worker, current and retiring. */
static void signal_workers(struct master *m, int sig)
{
    for (int s = 0; s < m->n_slots; s++) {
        if (m->slots[s].pid > 0) {
            kill(m->slots[s].pid, sig);
        }
    }
    for (int r = 0; r < m->n_retiring; r++) {
        kill(m->retiring[r], sig);
    }
}

/* The longest a drain may take: each worker drains by the shutdown_timeout
 * of the conf it runs, and after a reload that is not always the current
 * one (retired workers, and one kept when its replacement failed). */
static int drain_ms(const struct master *m)
{
    int ms = m->cfg->shutdown_timeout_ms;
    for (int s = 0; s < m->n_slots; s++) {
        if (m->slots[s].pid > 0 && m->slots[s].shutdown_ms > ms) {
            ms = m->slots[s].shutdown_ms;
        }
    }
    for (int r = 0; r < m->n_retiring; r++) {
        if (m->retiring_shutdown_ms[r] > ms) {
            ms = m->retiring_shutdown_ms[r];
        }
    }
    return ms;
}

/*
 * Stop every worker with sig (SIGTERM and SIGQUIT drain, SIGINT stops at
 * once) and wait for them; past the deadline they are killed. Then the
 * admin. Returns 1 if any had to be killed, else 0.
 */
static int stop_workers(struct master *m, int sig)
{
    int killed = 0;
    signal_workers(m, sig);
    double grace = sig != SIGINT ? drain_ms(m) + 5000.0 : 10000.0;
    double deadline = util_now_ms() + grace;
    while (reap(m, 1) > 0) {
        if (util_now_ms() > deadline) {
            log_error("workers did not stop in %.0f s: killing them",
                      grace / 1000);
            signal_workers(m, SIGKILL);
            killed = 1;
            deadline += 10000;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        int got = sigtimedwait(&m->sigs, NULL, &ts);
        if (got == SIGUSR1) {
            /* Log rotation does not wait for the drain. */
            log_info("SIGUSR1: workers reopen their log files");
            signal_workers(m, SIGUSR1);
        } else if (got == SIGINT && sig != SIGINT) {
            /* SIGINT means now, even in the middle of a drain. */
            log_info("%s: stopping workers now", strsignal(SIGINT));
            sig = SIGINT;
            signal_workers(m, SIGINT);
            deadline = util_now_ms() + 10000.0;
        } else if (got == SIGHUP) {
            log_warn("SIGHUP: ignored: stopping");
        }
    }
    pid_t admins[2] = {m->admin_pid, m->admin_old};
    for (int i = 0; i < 2; i++) {
        if (admins[i] > 0) {
            kill(admins[i], SIGTERM);
            waitpid(admins[i], NULL, 0);
        }
    }
    m->admin_pid = m->admin_old = 0;
    return killed;
}

/*
 * Whether max_connections can be met within the open-files limit the
 * workers will have (the hard one: raise_fd_limit; FD_SETSIZE with
 * select): a session takes a client and an upstream connection, and each
 * pool keeps idle ones. Past the limit, clients get 502 (the upstream
 * connect fails) or are closed (accept fails), with nothing said before;
 * nginx warns at start, HAProxy refuses to start.
 */
static void fd_limit_warning(const struct config *cfg, char *msg, size_t len)
{
    struct rlimit rl;
    msg[0] = '\0';
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max == RLIM_INFINITY) {
        return;
    }
    unsigned long long limit = rl.rlim_max;
    int by_select = cfg->event_backend == BACKEND_SELECT && limit > FD_SETSIZE;
    if (by_select) {
        limit = FD_SETSIZE;
    }
    unsigned long long need = 2ULL * (unsigned long long)cfg->max_connections +
                              64; /* listeners, logs, the reserve, ... */
    for (int u = 0; u < cfg->n_upstreams; u++) {
        need += (unsigned long long)cfg->upstreams[u].keepalive;
    }
    if (need <= limit) {
        return;
    }
    char where[CONFIG_PATH_MAX + 16];
    if (cfg->max_connections_line > 0) {
        snprintf(where, sizeof(where), "%s:%d", cfg->path,
                 cfg->max_connections_line);
    } else {
        snprintf(where, sizeof(where), "%s", cfg->path);
    }
    if (by_select) {
        /* No open-files limit lifts it: select() cannot watch a descriptor
         * past FD_SETSIZE, so the workers hold themselves below it. */
        snprintf(msg, len,
                 "%s: max_connections = %d may take %llu descriptors per "
                 "worker (a client and an upstream connection a session, the "
                 "pools' idle ones), above the %llu that event_backend = "
                 "select can watch (FD_SETSIZE): past it clients get 502 or "
                 "are closed (use event_backend = epoll or poll, or lower "
                 "max_connections)",
                 where, cfg->max_connections, need, limit);
        return;
    }
    snprintf(msg, len,
             "%s: max_connections = %d may take %llu descriptors per worker "
             "(a client and an upstream connection a session, the pools' "
             "idle ones), above the open-files limit of %llu: past it "
             "clients get 502 or are closed (raise the limit, or lower "
             "max_connections)",
             where, cfg->max_connections, need, limit);
}

/* One warning master_warnings will say, and the conf line it is about. */
struct pending_warning {
    int line; /* INT_MAX: about the whole file */
    int seq;  /* the order found, among warnings of one line */
    enum { W_CONF, W_FD, W_UNUSED, W_HIDDEN_POOL, W_HIDDEN_SERVERS } kind;
    int index; /* into cfg->warnings, or the upstream */
};

static int pending_cmp(const void *a, const void *b)
{
    const struct pending_warning *x = a, *y = b;
    if (x->line != y->line) {
        return x->line < y->line ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void master_warnings(const struct config *cfg, void (*say)(const char *msg))
{
    /* Found by different passes (the conf's own, the descriptor budget,
     * the upstreams'), said in the order of the lines they are about. */
    size_t cap = (size_t)cfg->n_warnings + 1 + 2 * (size_t)cfg->n_upstreams;
    struct pending_warning *w = calloc(cap, sizeof(*w));
    if (w == NULL) {
        say("out of memory: the conf's warnings are not shown");
        return;
    }
    int n = 0;
    for (int i = 0; i < cfg->n_warnings; i++) {
        w[n] = (struct pending_warning){cfg->warnings[i].line, n, W_CONF, i};
        n++;
    }
    char msg[CONFIG_PATH_MAX + 512];
    char fd_msg[CONFIG_PATH_MAX + 512];
    fd_limit_warning(cfg, fd_msg, sizeof(fd_msg));
    if (fd_msg[0] != '\0') {
        int line = cfg->max_connections_line > 0 ? cfg->max_connections_line
                                                  : INT_MAX;
        w[n] = (struct pending_warning){line, n, W_FD, 0};
        n++;
    }
    for (int u = 0; u < cfg->n_upstreams; u++) {
        const struct config_upstream *up = &cfg->upstreams[u];
        int used = 0;
        for (int r = 0; r < cfg->n_routes && !used; r++) {
            used = cfg->routes[r].upstream == u;
        }
        if (!used) {
            w[n] = (struct pending_warning){up->line, n, W_UNUSED, u};
            n++;
        }
        if (u >= STATS_MAX_POOLS) {
            w[n] = (struct pending_warning){up->line, n, W_HIDDEN_POOL, u};
            n++;
        } else if (up->n_servers > STATS_MAX_SERVERS) {
            w[n] = (struct pending_warning){
                up->servers[STATS_MAX_SERVERS].addr.line, n, W_HIDDEN_SERVERS,
                u};
            n++;
        }
    }
    qsort(w, (size_t)n, sizeof(*w), pending_cmp);
    for (int i = 0; i < n; i++) {
        const struct config_upstream *up =
            w[i].kind == W_CONF || w[i].kind == W_FD
                ? NULL
                : &cfg->upstreams[w[i].index];
        switch (w[i].kind) {
        case W_CONF:
            snprintf(msg, sizeof(msg), "%s:%d: %s", cfg->path, w[i].line,
                     cfg->warnings[w[i].index].msg);
            break;
        case W_FD:
            snprintf(msg, sizeof(msg), "%s", fd_msg);
            break;
        case W_UNUSED:
            snprintf(msg, sizeof(msg),
                     "%s:%d: [upstream %s] is used by no [route]: no request "
                     "goes to it",
                     cfg->path, up->line, up->name);
            break;
        case W_HIDDEN_POOL:
            snprintf(msg, sizeof(msg),
                     "%s:%d: [upstream %s] is not shown in /metrics and "
                     "/status, which show the first %d upstreams (nor "
                     "are its health checks' verdicts kept across a "
                     "reload)",
                     cfg->path, up->line, up->name, STATS_MAX_POOLS);
            break;
        case W_HIDDEN_SERVERS:
            snprintf(msg, sizeof(msg),
                     "%s:%d: [upstream %s]: only its first %d servers are "
                     "shown in /metrics and /status (and have their health "
                     "checks' verdicts kept across a reload)",
                     cfg->path, w[i].line, up->name, STATS_MAX_SERVERS);
            break;
        }
        say(msg);
    }
    free(w);
}

static void warn_line(const char *msg)
{
    log_warn("%s", msg);
}

/* How many generations of workers are running or draining. */
static int generations_alive(const struct master *m)
{
    int gens[MASTER_DRAINING_GENERATIONS + 2];
    int n = 0;
    for (int i = 0; i < m->shm->n_slots; i++) {
        const struct stats_slot *st = &m->shm->slots[i];
        int seen = 0;
        for (int g = 0; g < n && !seen; g++) {
            seen = gens[g] == st->generation;
        }
        if (st->in_use && !seen && n < MASTER_DRAINING_GENERATIONS + 2) {
            gens[n++] = st->generation;
        }
    }
    return n;
}

/* How many workers a conf asks for: workers, or one per online core. */
static int workers_wanted(const struct config *cfg)
{
    int n = cfg->workers;
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    return n > MASTER_MAX_WORKERS ? MASTER_MAX_WORKERS : n;
}

/* Is a (as the conf says it, old as it was said when fd was bound) the
 * address fd is bound to (with the port the kernel gave it, for port 0)?
 * A new port 0 matches an old port 0 on the same host: such a socket
 * keeps the port it was given. */
static int bound_to(int fd, const struct config_addr *old,
                    const struct config_addr *a)
{
    struct sockaddr_storage want, have;
    socklen_t want_len, have_len = sizeof(have);
    if ((a->port == 0) != (old->port == 0)) {
        /* An old port-0 socket still matches its actual port. */
        if (a->port == 0) {
            return 0;
        }
    } else if (strcmp(a->host, old->host) == 0) {
        return a->port == old->port;
    }
    if (resolve_listen(a, &want, &want_len) != 0 ||
        getsockname(fd, (struct sockaddr *)&have, &have_len) < 0 ||
        want.ss_family != have.ss_family) {
        return 0;
    }
    if (want.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&want;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&have;
        return memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) ==
                   0 &&
               x->sin6_scope_id == y->sin6_scope_id &&
               (a->port == 0 || x->sin6_port == y->sin6_port);
    }
    const struct sockaddr_in *x = (const struct sockaddr_in *)&want;
    const struct sockaddr_in *y = (const struct sockaddr_in *)&have;
    return x->sin_addr.s_addr == y->sin_addr.s_addr &&
           (a->port == 0 || x->sin_port == y->sin_port);
}

/* Is listen entry j's socket bound to a? */
static int same_address(const struct master *m, int j,
                        const struct config_addr *a)
{
    return bound_to(m->fds[0][j], &m->cfg->listen[j], a);
}

/* Does the master hold a listening socket on port (any address)? */
static int holds_port(const struct master *m, unsigned port)
{
    for (int j = 0; j < m->cfg->n_listen && port != 0; j++) {
        if (fd_port(m->fds[0][j]) == port) {
            return 1;
        }
    }
    return 0;
}

/* Close column i of fds for slots [from, to). */
static void close_slots(listen_fds fds, int i, int from, int to)
{
    for (int s = from; s < to; s++) {
        if (fds[s][i] >= 0) {
            close(fds[s][i]);
            fds[s][i] = -1;
        }
    }
}

/*
 * Keep new clients off the sockets of an address (rows of them, fd the
 * first) that no worker has for its own: after a reload to n workers
 * from more, rows n and up only hand their queued connections to the
 * workers that serve them, and a reuseport program has the kernel pick
 * each new client's socket among the first n at random (the group lists
 * its sockets in the order they started listening: by row, as none is
 * closed before the address is dropped). With rows == n and a program
 * set (steered), the kernel's own hash takes over again. -1 (logged)
 * when the kernel refuses the program.
 */
static int steer(int fd, int rows, int n, int steered,
                 const struct config_addr *a)
{
    if (rows > n) {
        struct sock_filter code[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_RANDOM),
            BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (unsigned)n),
            BPF_STMT(BPF_RET | BPF_A, 0),
        };
        struct sock_fprog prog;
        memset(&prog, 0, sizeof(prog)); /* its padding too: it is copied in */
        prog.len = sizeof(code) / sizeof(code[0]);
        prog.filter = code;
        if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog,
                       sizeof(prog)) < 0) {
            log_warn("listen %s:%u: new clients still reach the %d "
                     "socket%s of dropped workers (SO_ATTACH_REUSEPORT_CBPF: "
                     "%s): the workers serving those get more than their "
                     "share",
                     a->host, fd_port(fd), rows - n, rows - n == 1 ? "" : "s",
                     strerror(errno));
            return -1;
        }
        return 0;
    }
    if (!steered) {
        return 0;
    }
#ifdef SO_DETACH_REUSEPORT_BPF
    int unused = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused,
                   sizeof(unused)) == 0 ||
        errno == ENOENT) {
        return 0;
    }
#endif
    /* A kernel (or headers) before 5.8: a program over all n rows, which
     * picks at random rather than by the connection's hash. */
    return steer(fd, n + 1, n, 1, a);
}

/*
 * The sockets next listens on with n workers, into fds; the rows fds then
 * has (n, or more: see steer), or -1 on failure. An address the running
 * conf listens on too keeps all its sockets, and the connections queued on
 * them (more workers than sockets: more sockets on it); a new one is bound
 * (and announced). Once every address is bound, the sockets of dropped
 * addresses are closed and a changed backlog is set on the kept ones: a
 * failure (-1, logged) leaves everything as it was.
 */
static int rebind(struct master *m, const struct config *next, int n,
                  listen_fds fds)
{
    const struct config *cur = m->cfg;
    int kept_from[CONFIG_MAX_LISTEN]; /* next's i: cur's index, or -1 */
    int kept[CONFIG_MAX_LISTEN] = {0};
    int rows[CONFIG_MAX_LISTEN] = {0}; /* next's i: sockets kept */
    memset(fds, -1, sizeof(listen_fds));
    /* Addresses with a port first, then those with port 0, so that a
     * port-0 entry never takes the socket an explicit port names. */
    for (int i = 0; i < next->n_listen; i++) {
        kept_from[i] = -1;
    }
    for (int zero = 0; zero < 2; zero++) {
        for (int i = 0; i < next->n_listen; i++) {
            const struct config_addr *a = &next->listen[i];
            for (int j = 0; j < cur->n_listen && kept_from[i] < 0 &&
                            (a->port == 0) == zero;
                 j++) {
                if (!kept[j] && same_address(m, j, a)) {
                    kept_from[i] = j;
                    kept[j] = 1;
                }
            }
        }
    }
    for (int i = 0; i < next->n_listen; i++) {
        const struct config_addr *a = &next->listen[i];
        int bound = 0;
        if (kept_from[i] >= 0) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof(ss);
            /* Rows run from 0 without a gap: they are only ever added. */
            while (rows[i] < m->n_rows && m->fds[rows[i]][kept_from[i]] >= 0) {
                fds[rows[i]][i] = m->fds[rows[i]][kept_from[i]];
                rows[i]++;
            }
            getsockname(m->fds[0][kept_from[i]], (struct sockaddr *)&ss, &len);
            if (rows[i] < n) {
                bound = bind_slots(a, &ss, len, next, rows[i], n, fds, i);
            }
        } else {
            /* The stale-instance probe would collide with our own socket
             * on that port (127.0.0.1:P becoming 0.0.0.0:P, say). */
            bound = bind_address(a, next, n, fds, i,
                                 !holds_port(m, a->port));
        }
        if (bound < 0) {
            log_error("SIGHUP: reload failed, still running the previous "
                      "configuration: %s:%d: listen %s:%u cannot be bound",
                      next->path, a->line, a->host, a->port);
            while (i-- > 0) {
                close_slots(fds, i, rows[i], n);
            }
            return -1;
        }
    }
    for (int j = 0; j < cur->n_listen; j++) {
        if (!kept[j]) {
            log_info("SIGHUP: listen %s:%u removed: its old workers stop "
                     "accepting there as they drain",
                     cur->listen[j].host, fd_port(m->fds[0][j]));
            close_slots(m->fds, j, 0, m->n_rows);
        }
    }
    for (int i = 0; i < next->n_listen; i++) {
        const struct config_addr *a = &next->listen[i];
        if (kept_from[i] < 0) {
            log_info("SIGHUP: listen %s:%u added (line %d)", a->host,
                     fd_port(fds[0][i]), a->line);
            announce("", a->host, fds[0][i]);
        }
        for (int r = 0; r < rows[i]; r++) {
            /* Kept sockets take the new conf's buffers and backlog. */
            listen_buffers(fds[r][i], next, a);
            if (next->backlog != cur->backlog &&
                listen(fds[r][i], next->backlog) < 0) {
                log_warn("listen %s:%u: backlog %d: %s", a->host, a->port,
                         next->backlog, strerror(errno));
            }
        }
        /* The running workers' sockets were steered if it had more. */
        int steered = kept_from[i] >= 0 && rows[i] > m->n_slots;
        if (steer(fds[0][i], rows[i] > n ? rows[i] : n, n, steered, a) == 0 &&
            rows[i] > n && n < m->n_slots) {
            log_info("SIGHUP: listen %s:%u keeps %d socket%s of dropped "
                     "workers open: the workers left accept what queued "
                     "there, and new clients reach only their own sockets",
                     a->host, fd_port(fds[0][i]), rows[i] - n,
                     rows[i] - n == 1 ? "" : "s");
        }
    }
    /* The table's rows: n, or the most sockets an address kept (the rows
     * of dropped addresses go with them). */
    int n_rows = n;
    for (int i = 0; i < next->n_listen; i++) {
        if (rows[i] > n_rows) {
            n_rows = rows[i];
        }
    }
    return n_rows;
}

/*
 * Bind cfg's admin listener: the socket, or -1.
 * A reload's failure names the conf's line (the reload is refused).
 */
static int bind_admin(const struct config *cfg, int reloading)
{
    const struct config_addr *a = &cfg->admin_listen[0];
    struct sockaddr_storage ss;
    socklen_t sslen;
    char err[128];
    int rc = resolve_listen(a, &ss, &sslen);
    int fd = -1;
    if (rc != 0) {
        snprintf(err, sizeof(err), "%s", gai_strerror(rc));
    } else {
        fd = listen_socket((struct sockaddr *)&ss, sslen, 0, 128, NULL, a, err,
                           sizeof(err));
    }
    if (fd < 0) {
        log_error("%s%s:%d: [admin] listen %s:%u cannot be bound: %s",
                  reloading ? "SIGHUP: reload failed, still running the "
                              "previous configuration: "
                            : "",
                  cfg->path, a->line, a->host, a->port, err);
        return -1;
    }
    return fd;
}

/* Whether next's [admin] listen is another address than the admin
 * socket's, compared as [server] listen entries are (bound_to). */
static int admin_moved(const struct master *m, const struct config *next)
{
    const struct config *cur = m->cfg;
    if (next->n_admin_listen != cur->n_admin_listen) {
        return 1;
    }
    return next->n_admin_listen > 0 &&
           !bound_to(m->admin_fd, &cur->admin_listen[0],
                     &next->admin_listen[0]);
}

/*
 * After a reload: a new admin process on the new conf and on m->admin_fd;
 * the old one stops accepting at once and leaves when its replies under
 * way are out (admin.c).
 */
static void restart_admin(struct master *m)
{
    pid_t old = m->admin_pid;
    m->admin_pid = 0;
    m->admin_respawn_at_ms = 0;
    if (old > 0) {
        /* One old admin is tracked: one still finishing from the reload
         * before is told to stop now. */
        if (m->admin_old > 0) {
            kill(m->admin_old, SIGTERM);
        }
        kill(old, SIGQUIT);
        m->admin_old = old;
    }
    if (m->admin_fd >= 0 && spawn_admin(m) < 0) {
        m->admin_respawn_at_ms = util_now_ms() + 1000; /* tried again */
    }
}

/*
 * SIGHUP: read and check the conf again. If it is good, start a new
 * worker per slot on it (same sockets: nothing queued is lost) and let the
 * old ones drain; if not, log why and go on with the one we have.
 */
static void reload(struct master *m, int signalled)
{
    /* A reload that was waiting is done or dropped here, whatever
     * happens: a conf that has turned invalid is reported once. */
    int was_pending = m->reload_pending;
    m->reload_pending = 0;
    struct config *next = config_new();
    char err[512];
    if (next == NULL) {
        log_error("SIGHUP: out of memory; still running the previous "
                  "configuration");
        m->shm->reload_failures++;
        return;
    }
    if (config_load(next, m->cfg->path, err, sizeof(err)) < 0 ||
        master_check_outside(next, err, sizeof(err)) < 0) {
        log_error("SIGHUP: reload failed, still running the previous "
                  "configuration: %s",
                  err);
        m->shm->reload_failures++;
        config_free(next);
        return;
    }
    /* Up to three older generations drain at once (the stats region has
     * a slot for each of their workers and the new ones): a reload that
     * comes while they all still drain waits, and the master's loop
     * retries it once one of them has finished, rather than start workers
     * whose figures /metrics and /status would never show. */
    if (generations_alive(m) > MASTER_DRAINING_GENERATIONS) {
        if (!was_pending) {
            log_warn("SIGHUP: %s is valid, but %d older generations of "
                     "workers are still draining: the reload waits until "
                     "one of them finishes",
                     next->path, MASTER_DRAINING_GENERATIONS);
        } else if (signalled) {
            /* Said, so that SIGHUPs can be matched to reloads_total. */
            log_info("SIGHUP: a reload already waits; this one joins it "
                     "(the conf is read again when it starts)");
        }
        m->reload_pending = 1;
        config_free(next);
        return;
    }
    /* A moved admin listener is bound first: a reload whose admin address
     * cannot be bound changes nothing. */
    int moved = admin_moved(m, next);
    int admin_fd = m->admin_fd;
    if (moved) {
        admin_fd = next->n_admin_listen > 0 ? bind_admin(next, 1) : -1;
        if (next->n_admin_listen > 0 && admin_fd < 0) {
            m->shm->reload_failures++;
            config_free(next);
            return;
        }
    }
    int n = workers_wanted(next);
    listen_fds fds;
    int n_rows = rebind(m, next, n, fds);
    if (n_rows < 0) {
        if (moved && admin_fd >= 0) {
            close(admin_fd);
        }
        m->shm->reload_failures++;
        config_free(next);
        return;
    }
    if (moved && admin_fd >= 0) {
        announce("admin ", next->admin_listen[0].host, admin_fd);
    }
    memcpy(m->fds, fds, sizeof(fds));
    m->n_rows = n_rows;
    /* Before any fork: the new workers close the admin socket they get. */
    if (admin_fd != m->admin_fd && m->admin_fd >= 0) {
        close(m->admin_fd);
    }
    m->admin_fd = admin_fd;
    struct config *old_owned = m->owned;
    /* A dead worker's verdicts, kept for its restart, in next's numbering:
     * the new generation asks them too. */
    for (int s = 0; s < m->n_slots; s++) {
        if (has_last_verdicts[s]) {
            verdicts_renumber(m->cfg, next, last_verdicts[s]);
        }
    }
    m->cfg = next;
    m->owned = next;
    m->generation++;
    m->shm->generation = m->generation;
    log_info("SIGHUP: %s is valid: generation %d takes over with %d "
             "worker%s",
             next->path, m->generation, n, n == 1 ? "" : "s");
    log_init(next->log_level, "master");
    master_warnings(next, warn_line);
    int was_slots = m->n_slots;
    m->n_slots = n;
    /* Asked once for the whole generation. */
    static struct worker_health health;
    health_at_fork(m, &health);
    memset(has_last_verdicts, 0, sizeof(has_last_verdicts));
    for (int s = 0; s < was_slots || s < n; s++) {
        pid_t was = m->slots[s].pid;
        int was_shutdown_ms = m->slots[s].shutdown_ms;
        m->slots[s].pid = 0;
        m->slots[s].respawn_at_ms = 0;
        if (s < n && spawn(m, s, &health) < 0) {
            /* An old worker keeps serving, if its sockets are still the
             * slot's (the count of workers is the same); a new slot, one
             * that was waiting for a restart, or one whose sockets
             * changed is tried again in a second (its sockets queue). */
            int keeps = was > 0 && n == was_slots;
            log_error("SIGHUP: cannot start worker %d; %s", s,
                      keeps ? "the old one keeps serving"
                            : "trying again in 1 s");
            if (keeps) {
                m->slots[s].pid = was;
                continue;
            }
            m->slots[s].respawn_at_ms = util_now_ms() + 1000;
        }
        if (was > 0) {
            if (m->n_retiring < MASTER_MAX_RETIRING) {
                m->retiring_shutdown_ms[m->n_retiring] = was_shutdown_ms;
                m->retiring[m->n_retiring++] = was;
            }
            kill(was, SIGQUIT);
        }
    }
    restart_admin(m);
    m->shm->reloads++;
    config_free(old_owned);
}

/* A stop has begun: the listening sockets close now, so that a new client
 * is refused at once (and a balancer can go elsewhere) instead of waiting
 * in a queue nobody will accept from. The workers close their copies as
 * they start draining. */
static void close_listeners(struct master *m)
{
    for (int i = 0; i < m->cfg->n_listen; i++) {
        close_slots(m->fds, i, 0, m->n_rows);
    }
}

static void close_sockets(struct master *m)
{
    if (m->admin_fd >= 0) {
        close(m->admin_fd);
        m->admin_fd = -1;
    }
    close_listeners(m);
}

int master_run(const struct config *cfg)
{
    log_init(cfg->log_level, "master");
    master_warnings(cfg, warn_line);
    raise_fd_limit();
    struct master m;
    memset(&m, 0, sizeof(m));
    m.cfg = cfg;
    m.admin_fd = -1;
    m.generation = 1;
    m.n_slots = workers_wanted(cfg);
    m.n_rows = m.n_slots;
    /* Room for the workers and three generations draining, each as many
     * as a reload may ask for. */
    m.shm = stats_map((MASTER_DRAINING_GENERATIONS + 1) * MASTER_MAX_WORKERS);
    if (m.shm == NULL) {
        log_error("cannot map the stats region: %s", strerror(errno));
        return 1;
    }
    m.shm->master_pid = getpid();
    m.shm->started_ms = util_now_ms();
    m.shm->generation = m.generation;
    memset(m.fds, -1, sizeof(m.fds));
    for (int i = 0; i < cfg->n_listen; i++) {
        const struct config_addr *a = &cfg->listen[i];
        if (bind_address(a, cfg, m.n_slots, m.fds, i, 1) < 0) {
            log_error("%s:%d: listen %s:%u cannot be bound", cfg->path,
                      a->line, a->host, a->port);
            close_sockets(&m);
            stats_unmap(m.shm);
            return 1;
        }
    }
    if (cfg->n_admin_listen > 0 &&
        (m.admin_fd = bind_admin(cfg, 0)) < 0) {
        close_sockets(&m);
        stats_unmap(m.shm);
        return 1;
    }
    for (int i = 0; i < cfg->n_listen; i++) {
        announce("", cfg->listen[i].host, m.fds[0][i]);
    }
    if (m.admin_fd >= 0) {
        announce("admin ", cfg->admin_listen[0].host, m.admin_fd);
    }

    sigemptyset(&m.sigs);
    sigaddset(&m.sigs, SIGCHLD);
    sigaddset(&m.sigs, SIGTERM);
    sigaddset(&m.sigs, SIGINT);
    sigaddset(&m.sigs, SIGQUIT);
    sigaddset(&m.sigs, SIGHUP);
    sigaddset(&m.sigs, SIGUSR1);
    sigprocmask(SIG_BLOCK, &m.sigs, &m.old_mask);

    log_info("starting %d workers", m.n_slots);
    for (int s = 0; s < m.n_slots; s++) {
        if (spawn(&m, s, NULL) < 0) {
            stop_workers(&m, SIGINT);
            close_sockets(&m);
            stats_unmap(m.shm);
            return 1;
        }
    }
    if (m.admin_fd >= 0 && spawn_admin(&m) < 0) {
        stop_workers(&m, SIGINT);
        close_sockets(&m);
        stats_unmap(m.shm);
        return 1;
    }
    int stop_sig = 0;
    while (stop_sig == 0) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        siginfo_t info;
        int sig = sigtimedwait(&m.sigs, &info, &ts);
        switch (sig) {
        case SIGTERM:
        case SIGQUIT:
            log_info("%s: draining: no new connections; exchanges in "
                     "flight have %d ms to finish",
                     strsignal(sig), drain_ms(&m));
            m.shm->draining = 1;
            stop_sig = sig; /* passed on: the workers drain on either */
            close_listeners(&m);
            continue;
        case SIGINT:
            log_info("%s: stopping workers now", strsignal(sig));
            m.shm->draining = 1;
            stop_sig = SIGINT;
            close_listeners(&m);
            continue;
        case SIGHUP:
            reload(&m, 1);
            break;
        case SIGUSR1:
            log_info("SIGUSR1: workers reopen their log files");
            signal_workers(&m, SIGUSR1);
            break;
        default:
            break;
        }
        reap(&m, 0);
        replace_draining_workers(&m);
        if (m.reload_pending &&
            generations_alive(&m) <= MASTER_DRAINING_GENERATIONS) {
            reload(&m, 0); /* read and checked again: the file may have moved on */
        }
        double now = util_now_ms();
        for (int s = 0; s < m.n_slots; s++) {
            if (m.slots[s].pid == 0 && m.slots[s].respawn_at_ms > 0 &&
                now >= m.slots[s].respawn_at_ms) {
                if (spawn(&m, s, NULL) < 0) {
                    m.slots[s].respawn_at_ms = now + 1000;
                }
            }
        }
        if (m.admin_fd >= 0 && m.admin_pid == 0 &&
            m.admin_respawn_at_ms > 0 && now >= m.admin_respawn_at_ms &&
            spawn_admin(&m) < 0) {
            m.admin_respawn_at_ms = now + 1000;
        }
    }
    /* Workers that had to be killed did not stop as asked: the exit
     * says so to whatever supervises the process. */
    int killed = stop_workers(&m, stop_sig);
    close_sockets(&m);
    stats_unmap(m.shm);
    config_free(m.owned);
    log_info("stopped");
    return killed;
}
