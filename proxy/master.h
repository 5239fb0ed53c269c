/*
 * master: the process that binds the listening sockets, forks the workers
 * onto them, restarts a worker that dies and stops them all on SIGTERM or
 * SIGINT. It runs no event loop and never touches client traffic.
 */
#ifndef SWITCHBOARD_MASTER_H
#define SWITCHBOARD_MASTER_H

#include "config.h"

/* Run until told to stop; returns the process exit status. */
int master_run(const struct config *cfg);

#endif
