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

#include <event2/buffer.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

/*
 * One read of at most SOCKREAD_MAX into a scratch block, then added to the
 * input's end: the input's new chain is sized to what came, as libevent's
 * read sizes it to what FIONREAD reports. Reading into room reserved in the
 * input instead would allocate 8 KiB (4 KiB and the chain's header, rounded
 * up) for every small read, and a relay moves chains whole into the peer's
 * output: a slow reader's output, up to buffer_size of bytes, would then
 * hold an 8 KiB chain per small read (a second reviewer measured 4 times
 * the memory per stalled client). Returns what recv returned; errno is
 * its, or ENOMEM.
 */
static ssize_t sockread_once(struct evbuffer *in, evutil_socket_t fd)
{
    char block[SOCKREAD_MAX];
    ssize_t n = recv(fd, block, sizeof(block), 0);
    if (n > 0) {
        /* The input's end is frozen but while the bufferevent reads. */
        evbuffer_unfreeze(in, 0);
        int added = evbuffer_add(in, block, (size_t)n);
        evbuffer_freeze(in, 0);
        if (added < 0) {
            errno = ENOMEM;
            return -1;
        }
    }
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
