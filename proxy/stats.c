/*
 * stats: the shared region, slots, folding and histogram arithmetic.
 */
#include "stats.h"

#include <string.h>
#include <sys/mman.h>

#include "util.h"

const double stats_bucket_ms[STATS_BUCKETS - 1] = {
    1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
};

static size_t shm_size(int n_slots)
{
    return sizeof(struct stats_shm) + (size_t)n_slots * sizeof(struct stats_slot);
}

struct stats_shm *stats_map(int n_slots)
{
    struct stats_shm *shm = mmap(NULL, shm_size(n_slots),
                                 PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED) {
        return NULL;
    }
    shm->n_slots = n_slots;
    return shm;
}

void stats_unmap(struct stats_shm *shm)
{
    if (shm != NULL) {
        munmap(shm, shm_size(shm->n_slots));
    }
}

struct stats_slot *stats_claim(struct stats_shm *shm, pid_t pid, int index,
                               int generation)
{
    for (int i = 0; i < shm->n_slots; i++) {
        struct stats_slot *s = &shm->slots[i];
        if (!s->in_use) {
            memset(s, 0, sizeof(*s));
            s->in_use = 1;
            s->pid = pid;
            s->index = index;
            s->generation = generation;
            s->started_ms = util_now_ms();
            return s;
        }
    }
    return NULL;
}

unsigned stats_ask_gauges(struct stats_shm *shm)
{
    /* The number only grows (in the region, so an admin restarted by the
     * master goes on from it) and wraps harmlessly: it is compared by
     * difference. */
    unsigned ask = __atomic_add_fetch(&shm->gauges_ask, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < shm->n_slots; i++) {
        if (shm->slots[i].in_use) {
            __atomic_store_n(&shm->slots[i].gauges_asked, ask,
                             __ATOMIC_RELEASE);
        }
    }
    return ask;
}

int stats_gauges_answered(const struct stats_shm *shm, unsigned ask)
{
    for (int i = 0; i < shm->n_slots; i++) {
        const struct stats_slot *s = &shm->slots[i];
        unsigned asked = __atomic_load_n(&s->gauges_asked, __ATOMIC_ACQUIRE);
        unsigned answered =
            __atomic_load_n(&s->gauges_answered, __ATOMIC_ACQUIRE);
        /* A slot claimed since (asked went back to 0) is not ours to wait
         * for; one asked again since (by a later request) answers ours
         * too once it answers that. */
        if (s->in_use && (int)(asked - ask) >= 0 &&
            (int)(answered - ask) < 0) {
            return 0;
        }
    }
    return 1;
}

/* Does some worker in a slot in use have a pool named name (and, when
 * address is not NULL, a server at address in it)? */
static int live_has(const struct stats_shm *shm, const char *name,
                    const char *address)
{
    for (int i = 0; i < shm->n_slots; i++) {
        const struct stats_slot *w = &shm->slots[i];
        for (int p = 0; w->in_use && p < w->n_pools && p < STATS_MAX_POOLS;
             p++) {
            const struct stats_pool *sp = &w->pools[p];
            if (strcmp(sp->name, name) != 0) {
                continue;
            }
            if (address == NULL) {
                return 1;
            }
            for (int k = 0; k < sp->n_servers && k < STATS_MAX_SERVERS; k++) {
                if (strcmp(sp->servers[k].address, address) == 0) {
                    return 1;
                }
            }
        }
    }
    return 0;
}

/*
 * Forget the figures of pools and servers of retired workers that no
 * worker has any more (reloads removed or renamed them): /metrics no
 * longer shows them, and they would fill retired's room, so that the
 * figures of a pool or server added later were dropped when its workers
 * exited and its counters went back.
 */
static void prune_retired(struct stats_shm *shm)
{
    struct stats_slot *r = &shm->retired;
    int kept = 0;
    for (int p = 0; p < r->n_pools; p++) {
        struct stats_pool *sp = &r->pools[p];
        if (!live_has(shm, sp->name, NULL)) {
            continue;
        }
        int servers = 0;
        for (int k = 0; k < sp->n_servers; k++) {
            if (live_has(shm, sp->name, sp->servers[k].address)) {
                sp->servers[servers++] = sp->servers[k];
            }
        }
        sp->n_servers = servers;
        if (kept != p) {
            r->pools[kept] = *sp;
        }
        kept++;
    }
    r->n_pools = kept;
}

struct stats_slot *stats_slot_of(struct stats_shm *shm, pid_t pid)
{
    for (int i = 0; i < shm->n_slots; i++) {
        if (shm->slots[i].in_use && shm->slots[i].pid == pid) {
            return &shm->slots[i];
        }
    }
    return NULL;
}

void stats_release(struct stats_shm *shm, pid_t pid)
{
    struct stats_slot *s = stats_slot_of(shm, pid);
    if (s != NULL) {
        __atomic_add_fetch(&shm->fold_seq, 1, __ATOMIC_SEQ_CST);
        prune_retired(shm);
        stats_fold(&shm->retired, s, 0, 0);
        s->in_use = 0;
        __atomic_add_fetch(&shm->fold_seq, 1, __ATOMIC_SEQ_CST);
    }
}

static void hist_add(struct stats_histogram *d, const struct stats_histogram *s)
{
    for (int b = 0; b < STATS_BUCKETS; b++) {
        d->bucket[b] += s->bucket[b];
    }
    d->count += s->count;
    d->sum_us += s->sum_us;
}

/* dst's pool named like src's, added if missing; NULL when full. */
static struct stats_pool *pool_for(struct stats_slot *dst,
                                   const struct stats_pool *src, int known_only)
{
    for (int i = 0; i < dst->n_pools; i++) {
        if (strcmp(dst->pools[i].name, src->name) == 0) {
            return &dst->pools[i];
        }
    }
    if (known_only || dst->n_pools >= STATS_MAX_POOLS) {
        return NULL;
    }
    struct stats_pool *p = &dst->pools[dst->n_pools++];
    memset(p, 0, sizeof(*p));
    util_strlcpy(p->name, src->name, sizeof(p->name));
    p->balance = src->balance;
    return p;
}

static struct stats_server *server_for(struct stats_pool *dst,
                                       const struct stats_server *src,
                                       int known_only)
{
    for (int i = 0; i < dst->n_servers; i++) {
        if (strcmp(dst->servers[i].address, src->address) == 0) {
            return &dst->servers[i];
        }
    }
    if (known_only || dst->n_servers >= STATS_MAX_SERVERS) {
        return NULL;
    }
    struct stats_server *s = &dst->servers[dst->n_servers++];
    memset(s, 0, sizeof(*s));
    util_strlcpy(s->address, src->address, sizeof(s->address));
    s->weight = src->weight;
    s->up = -1; /* not seen by a live worker yet */
    return s;
}

void stats_fold(struct stats_slot *dst, const struct stats_slot *src,
                int with_gauges, int known_only)
{
    for (int c = 0; c < STATS_N_COUNTERS; c++) {
        dst->counter[c] += src->counter[c];
    }
    if (with_gauges) {
        for (int g = 0; g < STATS_N_GAUGES; g++) {
            dst->gauge[g] += src->gauge[g];
        }
    }
    for (int i = 0; i < src->n_pools && i < STATS_MAX_POOLS; i++) {
        const struct stats_pool *sp = &src->pools[i];
        struct stats_pool *dp = pool_for(dst, sp, known_only);
        if (dp == NULL) {
            continue;
        }
        dp->requests += sp->requests;
        for (int h = 0; h < STATS_N_HISTOGRAMS; h++) {
            hist_add(&dp->hist[h], &sp->hist[h]);
        }
        if (with_gauges) {
            dp->idle += sp->idle;
            dp->balance = sp->balance;
        }
        for (int k = 0; k < sp->n_servers && k < STATS_MAX_SERVERS; k++) {
            const struct stats_server *ss = &sp->servers[k];
            struct stats_server *ds = server_for(dp, ss, known_only);
            if (ds == NULL) {
                continue;
            }
            ds->requests += ss->requests;
            ds->failures += ss->failures;
            if (with_gauges) {
                ds->active += ss->active;
                ds->weight = ss->weight;
                /* Up only if every worker has it in service. */
                ds->up = ds->up < 0 ? ss->up : (ds->up && ss->up);
            }
        }
    }
}

void stats_observe(struct stats_histogram *h, double ms)
{
    int b = 0;
    if (ms < 0) {
        ms = 0;
    }
    while (b < STATS_BUCKETS - 1 && ms > stats_bucket_ms[b]) {
        b++;
    }
    h->bucket[b]++;
    h->count++;
    h->sum_us += (uint64_t)(ms * 1000.0);
}

double stats_quantile(const struct stats_histogram *h, double q)
{
    if (h->count == 0) {
        return -1;
    }
    double rank = q * (double)h->count;
    uint64_t seen = 0;
    for (int b = 0; b < STATS_BUCKETS; b++) {
        if (h->bucket[b] == 0) {
            continue;
        }
        if ((double)(seen + h->bucket[b]) >= rank) {
            double lo = b == 0 ? 0 : stats_bucket_ms[b - 1];
            if (b == STATS_BUCKETS - 1) {
                return lo; /* +Inf: the last finite bound is all we know */
            }
            double hi = stats_bucket_ms[b];
            double within = (rank - (double)seen) / (double)h->bucket[b];
            return lo + (hi - lo) * within;
        }
        seen += h->bucket[b];
    }
    return stats_bucket_ms[STATS_BUCKETS - 2];
}
