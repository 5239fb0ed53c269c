/*
 * linger: the lingering close for the libevhtp servers (the admin port and
 * the slow origin), as linger.h describes. Owns the duplicated sockets and
 * their events; must not touch the proxy's sessions, which linger on their
 * own (session.c).
 */
#include "linger.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

/* One lingering connection: a duplicate of its socket, owned by its set
 * (not "struct linger": <sys/socket.h> has one, for SO_LINGER). */
struct linger_conn {
    struct linger_set *set;
    evutil_socket_t fd;
    struct event *ev;   /* readable, or a bound passed */
    double end_ms;      /* max_ms after the answer (util_now_ms) */
    LIST_ENTRY(linger_conn) link;
};

static void linger_free(struct linger_conn *l)
{
    event_free(l->ev);
    close(l->fd);
    LIST_REMOVE(l, link);
    free(l);
}

/* Wait for a byte until idle_ms pass or the end comes, whichever first;
 * -1 if the end has come. */
static int linger_wait(struct linger_conn *l)
{
    double left = l->end_ms - util_now_ms();
    if (left <= 0) {
        return -1;
    }
    struct timeval tv = util_ms_to_tv(
        left < l->set->idle_ms ? (int)left + 1 : l->set->idle_ms);
    return event_add(l->ev, &tv);
}

/* A lingering connection is readable, or a bound passed: drop what came;
 * close at its EOF, an error, or either bound. */
static void on_linger(evutil_socket_t fd, short what, void *arg)
{
    struct linger_conn *l = arg;
    char buf[16384];
    /* 64 KiB at most per turn: a fast sender cannot hold the loop. */
    for (int i = 0; i < 4 && (what & EV_READ); i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                      errno == EINTR)) {
            break;
        }
        if (n <= 0) {
            linger_free(l); /* the client closed, or reset */
            return;
        }
    }
    if (!(what & EV_READ) || linger_wait(l) < 0) {
        linger_free(l);
    }
}

void linger_init(struct linger_set *set, struct event_base *base, int idle_ms,
                 int max_ms)
{
    set->base = base;
    set->idle_ms = idle_ms;
    set->max_ms = max_ms;
    LIST_INIT(&set->all);
}

void linger_start(struct linger_set *set, evutil_socket_t fd)
{
    if (set->idle_ms <= 0) {
        return;
    }
    struct linger_conn *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return;
    }
    l->set = set;
    l->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    l->ev = l->fd >= 0 ? event_new(set->base, l->fd, EV_READ, on_linger, l)
                       : NULL;
    if (l->ev == NULL) {
        if (l->fd >= 0) {
            close(l->fd);
        }
        free(l);
        return;
    }
    LIST_INSERT_HEAD(&set->all, l, link);
    l->end_ms = util_now_ms() + set->max_ms;
    if (shutdown(l->fd, SHUT_WR) < 0 || linger_wait(l) < 0) {
        linger_free(l); /* the client has gone already */
    }
}

void linger_close_all(struct linger_set *set)
{
    while (!LIST_EMPTY(&set->all)) {
        linger_free(LIST_FIRST(&set->all));
    }
}
