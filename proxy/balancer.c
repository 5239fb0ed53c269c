/*
 * balancer: smooth weighted round-robin. Each pick adds every server's
 * weight to its running score, takes the highest score, and subtracts the
 * total from the winner.
 */
#include "balancer.h"

#include <string.h>

void balancer_init(struct balancer *b, const int *weights, int n)
{
    memset(b, 0, sizeof(*b));
    if (n > BALANCER_MAX) {
        n = BALANCER_MAX;
    }
    b->n = n;
    for (int i = 0; i < n; i++) {
        b->weight[i] = weights[i] > 0 ? weights[i] : 1;
        b->total += b->weight[i];
    }
}

int balancer_next(struct balancer *b)
{
    if (b->n <= 1) {
        return 0;
    }
    int best = 0;
    for (int i = 0; i < b->n; i++) {
        b->current[i] += b->weight[i];
        if (b->current[i] > b->current[best]) {
            best = i;
        }
    }
    b->current[best] -= b->total;
    return best;
}
