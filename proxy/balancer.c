/*
 * balancer: smooth weighted round-robin, least connections and weighted
 * rendezvous hashing over the usable servers of a pool.
 */
#include "balancer.h"

#include <math.h>
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
    }
}

/*
 * Each pick adds every usable server's weight to its running score, takes
 * the highest score, and subtracts the usable total from the winner.
 */
int balancer_round_robin(struct balancer *b, const unsigned char *ok)
{
    int best = -1, total = 0;
    for (int i = 0; i < b->n; i++) {
        if (ok != NULL && !ok[i]) {
            continue;
        }
        b->current[i] += b->weight[i];
        total += b->weight[i];
        if (best < 0 || b->current[i] > b->current[best]) {
            best = i;
        }
    }
    if (best >= 0) {
        b->current[best] -= total;
    }
    return best;
}

int balancer_next(struct balancer *b)
{
    if (b->n <= 1) {
        return 0;
    }
    return balancer_round_robin(b, NULL);
}

/*
 * Two passes: find the fewest active per weight among the ok servers, then
 * pick among every ok server at that same ratio by smooth weighted
 * round-robin, as nginx's least_conn does. Idle servers are all tied, so
 * sequential traffic is split by weight and interleaved, not 1:1:1.
 * The scores in current[] are the ones balancer_round_robin keeps; a pool
 * uses one balance method, so the two never share them. A tie of one
 * server leaves its score as it was.
 */
int balancer_least_conn(struct balancer *b, const unsigned char *ok,
                        const int *active)
{
    unsigned char tied[BALANCER_MAX];
    int best = -1;
    for (int i = 0; i < b->n; i++) {
        if (!ok[i]) {
            continue;
        }
        /* active[i]/weight[i] < active[best]/weight[best], in integers */
        if (best < 0 || (long long)active[i] * b->weight[best] <
                            (long long)active[best] * b->weight[i]) {
            best = i;
        }
    }
    if (best < 0) {
        return -1;
    }
    for (int i = 0; i < b->n; i++) {
        tied[i] = ok[i] && (long long)active[i] * b->weight[best] ==
                               (long long)active[best] * b->weight[i];
    }
    return balancer_round_robin(b, tied);
}

/* splitmix64's finalizer: a good 64-bit mix. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t balancer_key(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    return mix(h);
}

/*
 * Rendezvous: every server scores -weight / ln(u) with u uniform in (0, 1)
 * drawn from hash(key, server); the highest score wins. A server is chosen
 * with probability weight / sum(weights), and removing one only moves the
 * keys it had.
 */
int balancer_hash(const struct balancer *b, const unsigned char *ok,
                  uint64_t key)
{
    int best = -1;
    double best_score = 0;
    for (int i = 0; i < b->n; i++) {
        if (!ok[i]) {
            continue;
        }
        uint64_t h = mix(key ^ mix((uint64_t)i + 0x9e3779b97f4a7c15ULL));
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */
        double score = -(double)b->weight[i] / log(u);
        if (best < 0 || score > best_score) {
            best = i;
            best_score = score;
        }
    }
    return best;
}
