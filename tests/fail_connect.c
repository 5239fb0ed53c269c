/*
 * fail_connect: an LD_PRELOAD shim for the tests. connect() to the TCP port
 * in SB_FAIL_CONNECT_PORT fails at once with ENETUNREACH, as a connect to
 * an unreachable network does, without anything leaving 127.0.0.0/8, or
 * with the errno number in SB_FAIL_CONNECT_ERRNO (EMFILE, as socket()
 * fails short of descriptors); every other call goes to libc. Lets
 * check_ops drive session.c's synchronous connect failures in the real
 * binary.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "shim.h"

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    static connect_fn real;
    if (real == NULL) {
        real = (connect_fn)shim_next("connect");
    }
    const char *port = getenv("SB_FAIL_CONNECT_PORT");
    if (port != NULL && sa != NULL && sa->sa_family == AF_INET &&
        len >= (socklen_t)sizeof(struct sockaddr_in) &&
        ntohs(((const struct sockaddr_in *)sa)->sin_port) == atoi(port)) {
        const char *err = getenv("SB_FAIL_CONNECT_ERRNO");
        errno = err != NULL ? atoi(err) : ENETUNREACH;
        return -1;
    }
    return real(fd, sa, len);
}
