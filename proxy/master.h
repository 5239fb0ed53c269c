/*
 * master: the process that binds the listening sockets, forks the workers
 * onto them and the admin process onto the admin socket, and restarts any
 * of them that dies. Signals: SIGTERM and SIGINT stop them all, SIGQUIT
 * drains them, SIGHUP reloads the conf into a new generation, SIGUSR1
 * reopens the logs (its own, passed on to them). It runs no event loop and
 * never touches client traffic.
 */
#ifndef SWITCHBOARD_MASTER_H
#define SWITCHBOARD_MASTER_H

#include <stddef.h>

#include "config.h"

/*
 * What config_load cannot check, checked as nginx does at start, at -t and
 * before a reload replaces anything: the access log file opens for
 * appending (it is created if missing), and with the system resolver every
 * upstream server's host resolves (with a `resolver` set, names are looked
 * up later). 0, or -1 with "FILE:LINE: message" in err.
 */
int master_check_outside(const struct config *cfg, char *err, size_t errlen);

/* What a valid conf asks for that works otherwise than one may think (a
 * setting with no effect, an upstream no route uses, servers /metrics
 * cannot show): each as one "FILE:LINE: ..." message to say, at start, at
 * a reload and by -t. */
void master_warnings(const struct config *cfg, void (*say)(const char *msg));

/* Run until told to stop; returns the process exit status. */
int master_run(const struct config *cfg);

#endif
