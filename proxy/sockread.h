/*
 * sockread: the read half of the proxy's socket bufferevents.
 *
 * libevent 2.1's socket bufferevent reads with evbuffer_read(), which asks
 * the kernel how much is readable (ioctl FIONREAD) before every readv():
 * two system calls per read, and the readv() goes through the kernel's
 * vector path. sockread_attach() gives a bufferevent a read callback of
 * its own that does one recv() and adds what came to the input buffer,
 * then behaves as libevent's would: the read callback (watermarks
 * honoured), or the event callback with BEV_EVENT_READING and EOF, ERROR
 * or TIMEOUT, reads then off. Everything else stays libevent's: the
 * output, write callbacks, enabling and disabling, timeouts, freeing.
 */
#ifndef SWITCHBOARD_SOCKREAD_H
#define SWITCHBOARD_SOCKREAD_H

#include <event2/bufferevent.h>

/* What one read takes at most: libevent 2.1's own cap per read (its
 * EVBUFFER_MAX_READ). */
#define SOCKREAD_MAX 4096

/*
 * Take over the read event of bev, a socket bufferevent with its socket
 * set (bufferevent_socket_new with an fd, or after
 * bufferevent_socket_connect, which assigns libevent's own again). Keeps
 * whether reading is enabled and its timeout. Returns 0, or -1 (bev has
 * no socket) with bev unchanged.
 */
int sockread_attach(struct bufferevent *bev);

#endif
