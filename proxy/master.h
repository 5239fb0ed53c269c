/*
 * master: the process that binds the listening sockets, forks the workers
 * onto them, restarts a worker that dies and stops them all on SIGTERM or
 * SIGINT. It runs no event loop and never touches client traffic.
 */
#ifndef SWITCHBOARD_MASTER_H
#define SWITCHBOARD_MASTER_H

#include <stddef.h>

#include "config.h"

/*
 * With the system resolver, every upstream server's host must resolve now
 * (as nginx checks at start): 0, or -1 with "FILE:LINE: message" in err.
 * With a `resolver` set, names are looked up later and not checked here.
 */
int master_check_names(const struct config *cfg, char *err, size_t errlen);

/* Run until told to stop; returns the process exit status. */
int master_run(const struct config *cfg);

#endif
