/*
 * linger: the lingering close of connections a server has answered and
 * refused to go on with (RFC 9112 9.6; nginx's lingering close).
 *
 * Closed at once with the client's bytes unread, a socket is reset, and a
 * reset can destroy the answer before the client reads it. So the answer
 * is followed by a FIN (the write side shut down), and what the client
 * still sends is read and dropped until it closes, sends nothing for
 * idle_ms, or max_ms pass in all.
 *
 * For servers built on libevhtp (the admin port and the slow origin),
 * which close their own descriptor: linger_start() keeps a duplicate.
 * The proxy's port has its own, inside its sessions (session.c). One set
 * per event loop; not thread-safe.
 */
#ifndef SWITCHBOARD_LINGER_H
#define SWITCHBOARD_LINGER_H

#include <sys/queue.h>

#include <event2/event.h>

struct linger_conn;

/* The lingering connections of one event loop. */
struct linger_set {
    struct event_base *base;
    int idle_ms; /* close after this long without a byte; 0: never linger */
    int max_ms;  /* and after this long in all */
    LIST_HEAD(, linger_conn) all;
};

/* Start an empty set on base, with its two limits in milliseconds. */
void linger_init(struct linger_set *set, struct event_base *base, int idle_ms,
                 int max_ms);

/* Start the lingering close of fd, just before its owner closes it. If
 * anything fails (or idle_ms is 0), the socket just closes with fd. */
void linger_start(struct linger_set *set, evutil_socket_t fd);

/* Close every lingering connection (at shutdown). */
void linger_close_all(struct linger_set *set);

#endif
