/*
 * sockread: the read half of the proxy's socket bufferevents (sockread.h).
 *
 * Owns one libevent callback, put in the place of libevent's own on the
 * bufferevent's read event (struct bufferevent's ev_read, public in
 * event2/bufferevent_struct.h), and what it does when the socket is
 * readable. It must not change anything else about the bufferevent: which
 * events are enabled and their timeouts stay with bufferevent_enable,
 * bufferevent_disable and bufferevent_set_timeouts, which add and delete
 * that same event.
 */
#include "sockread.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

int sockread_trim(struct evbuffer_iovec *v, int n, size_t total)
{
    int used = 0;
    for (; used < n && total > 0; used++) {
        if (v[used].iov_len > total) {
            v[used].iov_len = total;
        }
        total -= v[used].iov_len;
    }
    return used;
}

/*
 * One read into the input's end: at most SOCKREAD_MAX (the room reserved
 * may be larger: libevent rounds new chains up), in at most two pieces of
 * the buffer's free space (two so that the end of its last chain is used
 * before a new one is allocated, as evbuffer_read does). Returns what
 * recv/readv returned; errno is theirs, or ENOMEM.
 */
static ssize_t sockread_once(struct evbuffer *in, evutil_socket_t fd)
{
    struct evbuffer_iovec vec[2];
    /* The input's end is frozen but while the bufferevent reads. */
    evbuffer_unfreeze(in, 0);
    int n_vec = sockread_trim(
        vec, evbuffer_reserve_space(in, SOCKREAD_MAX, vec, 2), SOCKREAD_MAX);
    ssize_t n;
    if (n_vec < 1) {
        errno = ENOMEM;
        n = -1;
    } else if (n_vec == 1) {
        n = recv(fd, vec[0].iov_base, vec[0].iov_len, 0);
    } else {
        struct iovec iov[2] = {
            {.iov_base = vec[0].iov_base, .iov_len = vec[0].iov_len},
            {.iov_base = vec[1].iov_base, .iov_len = vec[1].iov_len},
        };
        n = readv(fd, iov, 2);
    }
    int err = errno;
    if (n > 0) {
        evbuffer_commit_space(in, vec, sockread_trim(vec, n_vec, (size_t)n));
    }
    evbuffer_freeze(in, 0);
    errno = err;
    return n;
}

/*
 * The read event: readable (a read, then the read callback), or its
 * timeout. As libevent's bufferevent_readcb: a timeout, the end of the
 * stream or an error turns reads off and goes to the event callback; a
 * read that would block waits for the next event.
 */
static void on_socket_readable(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    short event = BEV_EVENT_READING;
    if (what == EV_TIMEOUT) {
        event |= BEV_EVENT_TIMEOUT;
    } else {
        ssize_t n = sockread_once(bufferevent_get_input(bev), fd);
        if (n > 0) {
            bufferevent_trigger(bev, EV_READ, 0);
            return;
        }
        if (n < 0 &&
            (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return;
        }
        event |= n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR;
    }
    bufferevent_disable(bev, EV_READ);
    bufferevent_trigger_event(bev, event, 0);
}

int sockread_attach(struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0) {
        return -1;
    }
    /* Off while it is reassigned (event_assign must not touch an added
     * event); back on with its timeout if it was on. */
    int reading = (bufferevent_get_enabled(bev) & EV_READ) != 0;
    bufferevent_disable(bev, EV_READ);
    event_assign(&bev->ev_read, bufferevent_get_base(bev), fd,
                 EV_READ | EV_PERSIST | EV_FINALIZE, on_socket_readable, bev);
    if (reading) {
        bufferevent_enable(bev, EV_READ);
    }
    return 0;
}
