/*
 * session: one client connection and everything it causes — the exchanges
 * on it, the upstream connection it borrows for each, its timers — relayed
 * with bounded memory. See session.c for the data flow.
 */
#ifndef SWITCHBOARD_SESSION_H
#define SWITCHBOARD_SESSION_H

#include <sys/socket.h>

#include <event2/util.h>

struct worker;
struct session;

/*
 * Start a session on an accepted client socket. The session owns fd from
 * here on, registers itself with the worker, and frees itself when it ends.
 * Returns 0, or -1 (fd closed) when it cannot be set up.
 */
int session_start(struct worker *w, evutil_socket_t fd,
                  const struct sockaddr *sa, int socklen);

/*
 * End a session from outside its callbacks (worker shutdown): logs any
 * exchange in progress with reason and frees everything.
 */
void session_abort(struct session *s, const char *reason);

/* What /status shows of a session (on_tick in worker.c). */
struct session_info {
    double started_ms;   /* its connection was accepted */
    const char *phase;   /* "reading_head", "upstream_wait", ... */
    const char *peer;
    uint64_t bytes_in, bytes_out; /* of the exchange in progress */
    size_t buffered;     /* bytes held in its buffers, both sides */
    int paused;          /* a side is paused by backpressure */
    int upstream_waiting; /* forwarded, waiting for the response head */
};

/*
 * Close the session idle longest between two requests (w->idle), to make
 * room for a new client at max_connections. Returns 1, or 0 if none is.
 */
int session_close_idle(struct worker *w);

/* The session after s in its worker's list (oldest first), or NULL. */
struct session *session_next(struct session *s);

/* Fill info with what /status shows of s (pointers into s: valid until
 * its next callback). */
void session_describe(const struct session *s, struct session_info *info);

/*
 * The worker is draining: an idle session gets a short grace for one last
 * request, and every exchange from now on ends with the connection.
 */
void session_drain(struct session *s);

#endif
