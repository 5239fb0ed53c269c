/*
 * fail_realloc: an LD_PRELOAD shim for the tests. A realloc to exactly
 * SB_FAIL_REALLOC_SIZE bytes fails as it would out of memory; every other
 * call goes to the C library (or to the sanitizer or valgrind behind it).
 * With max_header_size set to an odd size, the last growth of a stored
 * head asks for exactly that many bytes, and nothing else in the proxy
 * does: lets check_hardening drive http1.c's out-of-memory return.
 */
#include <errno.h>
#include <stdlib.h>

#include "shim.h"

typedef void *(*realloc_fn)(void *, size_t);

void *realloc(void *ptr, size_t size)
{
    static realloc_fn real;
    if (real == NULL) {
        real = (realloc_fn)shim_next("realloc");
    }
    const char *fail = getenv("SB_FAIL_REALLOC_SIZE");
    if (fail != NULL && size == (size_t)atol(fail)) {
        errno = ENOMEM;
        return NULL;
    }
    return real(ptr, size);
}
