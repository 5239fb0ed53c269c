/*
 * fail_fork: an LD_PRELOAD shim for the tests. fork() fails with EAGAIN, as
 * it does at the process limit, while the file named in SB_FAIL_FORK_FILE
 * exists; every other call goes to libc. Lets check_ops drive the master's
 * handling of a worker that cannot be started in the real binary.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "shim.h"

typedef pid_t (*fork_fn)(void);

pid_t fork(void)
{
    static fork_fn real;
    if (real == NULL) {
        real = (fork_fn)shim_next("fork");
    }
    const char *path = getenv("SB_FAIL_FORK_FILE");
    if (path != NULL && access(path, F_OK) == 0) {
        errno = EAGAIN;
        return -1;
    }
    return real();
}
