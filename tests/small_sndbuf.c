/*
 * small_sndbuf: an LD_PRELOAD shim for the tests. Every socket the process
 * accepts gets SO_SNDBUF set to SB_SNDBUF bytes (the kernel doubles it),
 * so that a client that stops reading fills the proxy's kernel buffer in
 * a moment instead of megabytes later; every call still goes to libc.
 * Lets check_proxy reach the proxy's own output bound quickly.
 */
#include <stdlib.h>
#include <sys/socket.h>

#include "shim.h"

typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef int (*accept_fn)(int, struct sockaddr *, socklen_t *);

static int small_sndbuf_set(int fd)
{
    const char *size = getenv("SB_SNDBUF");
    if (fd >= 0 && size != NULL) {
        int n = atoi(size);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
    }
    return fd;
}

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
    static accept4_fn real;
    if (real == NULL) {
        real = (accept4_fn)shim_next("accept4");
    }
    return small_sndbuf_set(real(fd, sa, len, flags));
}

int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
    static accept_fn real;
    if (real == NULL) {
        real = (accept_fn)shim_next("accept");
    }
    return small_sndbuf_set(real(fd, sa, len));
}
