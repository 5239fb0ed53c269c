/*
 * admin: the admin listener, a process of its own (libevhtp) that reads
 * the shared stats region and never touches client traffic.
 *
 *   /metrics  Prometheus text format (metrics declared in stats.h)
 *   /status   the same figures as JSON, per worker and per pool and server,
 *             with the oldest open sessions
 *   /healthz  200 while accepting, 503 while draining
 *   /         a live dashboard (one self-contained page polling /status)
 */
#ifndef SWITCHBOARD_ADMIN_H
#define SWITCHBOARD_ADMIN_H

#include "config.h"
#include "stats.h"

struct evbuffer;

/* Serve on the listening socket fd until SIGTERM/SIGINT; exit status. */
int admin_run(const struct config *cfg, int fd, struct stats_shm *shm);

/* Everything added up: retired counters plus every live slot. */
void admin_snapshot(const struct stats_shm *shm, struct stats_slot *out);

/* The bodies of /metrics and /status, from shm (tested on their own). */
void admin_render_metrics(const struct stats_shm *shm, struct evbuffer *out);
void admin_render_status(const struct stats_shm *shm, struct evbuffer *out);

#endif
