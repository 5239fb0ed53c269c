/*
 * shim.h: for the tests' LD_PRELOAD shims (tests/fail_*.c). shim_next
 * gives the next definition of a function the shim replaces (libc's,
 * libevent's), or aborts: a shim without it cannot do its job.
 */
#ifndef SWITCHBOARD_TESTS_SHIM_H
#define SWITCHBOARD_TESTS_SHIM_H

#include <dlfcn.h> /* RTLD_NEXT: _GNU_SOURCE comes from configure */
#include <stdlib.h>

static inline void *shim_next(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        abort();
    }
    return f;
}

#endif
