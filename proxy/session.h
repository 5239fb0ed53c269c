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

#endif
