/*
 * fail_reserve: an LD_PRELOAD shim for the tests. The Nth call (N from
 * SB_FAIL_RESERVE_AT) of evbuffer_reserve_space for one vector, the call
 * with which http1.c writes every head, fails in each process as it would
 * out of memory; every other call goes to libevent. Lets check_hardening
 * drive session.c's out-of-memory paths in the real binary.
 */
#include <stdlib.h>

#include <event2/buffer.h>

#include "shim.h"

typedef int (*reserve_fn)(struct evbuffer *, ev_ssize_t,
                          struct evbuffer_iovec *, int);

int evbuffer_reserve_space(struct evbuffer *buf, ev_ssize_t size,
                           struct evbuffer_iovec *vec, int n_vec)
{
    static reserve_fn real;
    static long calls;
    if (real == NULL) {
        real = (reserve_fn)shim_next("evbuffer_reserve_space");
    }
    const char *at = getenv("SB_FAIL_RESERVE_AT");
    if (n_vec == 1 && at != NULL && ++calls == atol(at)) {
        return -1;
    }
    return real(buf, size, vec, n_vec);
}
