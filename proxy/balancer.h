/*
 * balancer: which server of a pool gets the next request.
 *
 * Smooth weighted round-robin (the interleaving nginx uses): over any window
 * of sum(weights) picks each server is chosen exactly weight times, and
 * heavy servers are spread out rather than picked in bursts. Pure state
 * machine: no I/O, no clock, so it is tested on its own.
 */
#ifndef SWITCHBOARD_BALANCER_H
#define SWITCHBOARD_BALANCER_H

#define BALANCER_MAX 64

/* Per-pool balancer state, embedded in the pool. */
struct balancer {
    int n;
    int total;
    int weight[BALANCER_MAX];
    int current[BALANCER_MAX];
};

/* Set up for n servers (1..BALANCER_MAX) with the given weights (>= 1). */
void balancer_init(struct balancer *b, const int *weights, int n);

/* Index of the next server; always 0..n-1. */
int balancer_next(struct balancer *b);

#endif
