/*
 * balancer: which server of a pool gets the next request.
 *
 * Three ways, chosen per pool with `balance`, each honouring weights and
 * skipping the servers the caller marks unusable (down, or already tried
 * by this request):
 *   - smooth weighted round-robin (the interleaving nginx uses): over any
 *     window of sum(weights) picks each server is chosen exactly weight
 *     times, and heavy servers are spread out rather than picked in bursts;
 *   - least connections: the fewest active exchanges per unit of weight,
 *     ties broken by smooth weighted round-robin among the tied servers
 *     (so idle servers share sequential requests by weight);
 *   - hash: weighted rendezvous hashing of a key, so a key keeps its server
 *     while that server is usable, and only the keys of a server that goes
 *     out move (spread over the others by weight).
 * Pure functions of their inputs: no I/O, no clock, tested on their own.
 */
#ifndef SWITCHBOARD_BALANCER_H
#define SWITCHBOARD_BALANCER_H

#include <stddef.h>
#include <stdint.h>

#define BALANCER_MAX 64

/* Per-pool balancer state, embedded in the pool. */
struct balancer {
    int n;
    int weight[BALANCER_MAX];
    int current[BALANCER_MAX]; /* smooth round-robin scores (also used to
                                  break least_conn ties) */
};

/* Set up for n servers (1..BALANCER_MAX) with the given weights (>= 1). */
void balancer_init(struct balancer *b, const int *weights, int n);

/* Round-robin over every server; always 0..n-1. */
int balancer_next(struct balancer *b);

/*
 * The next server by smooth weighted round-robin among those with ok[i]
 * set; -1 when none is.
 */
int balancer_round_robin(struct balancer *b, const unsigned char *ok);

/*
 * Fewest active[i] / weight[i] among ok servers, ties broken by smooth
 * weighted round-robin among the tied ones; -1 when none is ok.
 */
int balancer_least_conn(struct balancer *b, const unsigned char *ok,
                        const int *active);

/* The ok server key hashes to (weighted rendezvous); -1 when none. */
int balancer_hash(const struct balancer *b, const unsigned char *ok,
                  uint64_t key);

/* A 64-bit hash of bytes (FNV-1a, then mixed), for balancer_hash keys. */
uint64_t balancer_key(const void *data, size_t len);

#endif
