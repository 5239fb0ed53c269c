/*
 * check_balancer: unit tests for proxy/balancer.c.
 *
 * The balancer is a pure state machine, so every test drives balancer_next
 * by hand and looks at the sequence of picks: a single server, equal
 * weights, nginx's documented {5, 1, 1} example, exact shares over any
 * window of sum(weights) picks, how long a heavy server may run, and the
 * treatment of weights below 1 and of too many servers; least_conn's
 * fewest-per-weight choice and its ties, which follow the weights too.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balancer.h"

/* Record n picks of b into out. */
static void picks(struct balancer *b, int *out, int n)
{
    for (int i = 0; i < n; i++) {
        out[i] = balancer_next(b);
        ck_assert_msg(out[i] >= 0 && out[i] < b->n, "pick %d is %d of %d", i,
                      out[i], b->n);
    }
}

/* Longest run of server s in seq[0..n). */
static int longest_run(const int *seq, int n, int s)
{
    int run = 0, best = 0;
    for (int i = 0; i < n; i++) {
        run = seq[i] == s ? run + 1 : 0;
        if (run > best) {
            best = run;
        }
    }
    return best;
}

/* Weight sets the general properties are tried on. */
static const int weight_sets[][6] = {
    {1, 1, 0, 0, 0, 0},   {2, 1, 0, 0, 0, 0},   {3, 1, 0, 0, 0, 0},
    {5, 1, 1, 0, 0, 0},   {4, 2, 1, 0, 0, 0},   {1, 1, 13, 0, 0, 0},
    {7, 3, 0, 0, 0, 0},   {10, 20, 30, 40, 0, 0}, {1, 2, 3, 4, 5, 6},
    {100, 1, 1, 1, 1, 1}, {9, 9, 9, 1, 0, 0},   {1000, 999, 0, 0, 0, 0},
};

/* Number of servers in weight set k (weights end at the first 0). */
static int set_size(size_t k)
{
    int n = 0;
    while (n < 6 && weight_sets[k][n] > 0) {
        n++;
    }
    return n;
}

START_TEST(test_single_server_always_zero)
{
    static const int w[] = {7};
    struct balancer b;
    balancer_init(&b, w, 1);
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(balancer_next(&b), 0);
    }
}
END_TEST

START_TEST(test_equal_weights_rotate_in_order)
{
    static const int ones[] = {1, 1, 1, 1};
    static const int twos[] = {2, 2, 2};
    struct balancer b;
    int seq[24];

    balancer_init(&b, ones, 4);
    picks(&b, seq, 24);
    for (int i = 0; i < 24; i++) {
        ck_assert_int_eq(seq[i], i % 4);
    }
    /* equal but not 1: still a plain rotation, never twice in a row */
    balancer_init(&b, twos, 3);
    picks(&b, seq, 24);
    for (int i = 0; i < 24; i++) {
        ck_assert_int_eq(seq[i], i % 3);
    }
}
END_TEST

/* nginx's example, from the commit that introduced smooth weighted
 * round-robin ("Upstream: smooth weighted round-robin balancing", 27e9498,
 * 2012): weights {5, 1, 1} give a a b a c a a, then the same again. */
START_TEST(test_weights_5_1_1_give_nginx_sequence)
{
    static const int w[] = {5, 1, 1};
    static const int expect[] = {0, 0, 1, 0, 2, 0, 0};
    struct balancer b;
    int seq[21];
    balancer_init(&b, w, 3);
    picks(&b, seq, 21);
    for (int i = 0; i < 21; i++) {
        ck_assert_msg(seq[i] == expect[i % 7], "pick %d: %d, want %d", i,
                      seq[i], expect[i % 7]);
    }
}
END_TEST

START_TEST(test_weights_5_1_1_over_700_picks_split_exactly)
{
    static const int w[] = {5, 1, 1};
    struct balancer b;
    int seq[700];
    int count[3] = {0, 0, 0};
    balancer_init(&b, w, 3);
    picks(&b, seq, 700);
    for (int i = 0; i < 700; i++) {
        count[seq[i]]++;
    }
    ck_assert_int_eq(count[0], 500);
    ck_assert_int_eq(count[1], 100);
    ck_assert_int_eq(count[2], 100);
}
END_TEST

/* Any sum(weights) consecutive picks, not only aligned ones, hold each
 * server exactly weight times. */
START_TEST(test_every_window_of_total_picks_has_exact_shares)
{
    for (size_t k = 0; k < sizeof(weight_sets) / sizeof(weight_sets[0]);
         k++) {
        int n = set_size(k);
        const int *w = weight_sets[k];
        int total = 0;
        for (int i = 0; i < n; i++) {
            total += w[i];
        }
        struct balancer b;
        balancer_init(&b, w, n);
        int len = 3 * total;
        int *seq = malloc(sizeof(int) * (size_t)len);
        ck_assert_ptr_nonnull(seq);
        picks(&b, seq, len);
        for (int start = 0; start + total <= len; start++) {
            int count[6] = {0};
            for (int i = start; i < start + total; i++) {
                count[seq[i]]++;
            }
            for (int s = 0; s < n; s++) {
                ck_assert_msg(count[s] == w[s],
                              "set %zu window at %d: server %d got %d of %d",
                              k, start, s, count[s], w[s]);
            }
        }
        free(seq);
    }
}
END_TEST

/*
 * Smoothness, the general bound: a server's running score never drops to
 * -total (it only loses total when it holds the highest score, which is at
 * least total/n > 0), so after any k picks it has had fewer than
 * k * weight / total + 1 of them: never a whole pick ahead of its share.
 */
START_TEST(test_never_a_whole_pick_ahead_of_share)
{
    for (size_t k = 0; k < sizeof(weight_sets) / sizeof(weight_sets[0]);
         k++) {
        int n = set_size(k);
        const int *w = weight_sets[k];
        long total = 0;
        for (int i = 0; i < n; i++) {
            total += w[i];
        }
        struct balancer b;
        balancer_init(&b, w, n);
        long count[6] = {0};
        for (long pick = 1; pick <= 3 * total; pick++) {
            count[balancer_next(&b)]++;
            for (int s = 0; s < n; s++) {
                ck_assert_msg(count[s] * total < pick * w[s] + total,
                              "set %zu after %ld picks: server %d has %ld",
                              k, pick, s, count[s]);
            }
        }
    }
}
END_TEST

/*
 * Bursts: a heavy server is interleaved with the others instead of taking
 * its whole weight in a row as plain weighted round-robin would (a a a a a
 * b c). The longest runs below, across cycle boundaries, were worked out by
 * hand from the algorithm: {5,1,1} is a a b a c a a | a a ..., so a runs
 * 4 at the seam; {4,2,1} is a b a c a b a | a ..., runs of 2; {1,1,13} is
 * c c c c a c c c c b c c c c c | c c c c ..., 9 at the seam.
 */
START_TEST(test_heavy_server_bursts_bounded)
{
    static const struct {
        int w[3];
        int n;
        int heavy;
        int longest;
    } cases[] = {
        {{5, 1, 1}, 3, 0, 4},
        {{4, 2, 1}, 3, 0, 2},
        {{1, 1, 13}, 3, 2, 9},
        {{3, 1, 0}, 2, 0, 3},
        {{1, 1, 1}, 3, 0, 1},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct balancer b;
        int seq[60];
        balancer_init(&b, cases[k].w, cases[k].n);
        picks(&b, seq, 60);
        ck_assert_msg(longest_run(seq, 60, cases[k].heavy) == cases[k].longest,
                      "case %zu: longest run %d, want %d", k,
                      longest_run(seq, 60, cases[k].heavy), cases[k].longest);
    }
    /* and in general no server runs longer than its weight (a run of
     * weight + 1 would break the exact share of some window), so a server
     * of weight 1 never comes twice in a row */
    for (size_t k = 0; k < sizeof(weight_sets) / sizeof(weight_sets[0]);
         k++) {
        int n = set_size(k);
        const int *w = weight_sets[k];
        int total = 0;
        for (int i = 0; i < n; i++) {
            total += w[i];
        }
        struct balancer b;
        balancer_init(&b, w, n);
        int len = 3 * total;
        int *seq = malloc(sizeof(int) * (size_t)len);
        ck_assert_ptr_nonnull(seq);
        picks(&b, seq, len);
        for (int s = 0; s < n; s++) {
            int run = longest_run(seq, len, s);
            ck_assert_msg(run <= w[s], "set %zu server %d runs %d > %d", k, s,
                          run, w[s]);
            if (w[s] == 1) {
                ck_assert_int_eq(run, 1);
            }
        }
        free(seq);
    }
}
END_TEST

/* Round-robin skips servers that are not ok, keeping the others' shares. */
START_TEST(test_round_robin_skips_unusable)
{
    static const int w[] = {1, 2, 1};
    unsigned char ok[] = {1, 0, 1};
    struct balancer b;
    balancer_init(&b, w, 3);
    int count[3] = {0};
    for (int i = 0; i < 100; i++) {
        int k = balancer_round_robin(&b, ok);
        ck_assert_int_ne(k, 1);
        count[k]++;
    }
    ck_assert_int_eq(count[0], 50);
    ck_assert_int_eq(count[2], 50);
    unsigned char none[] = {0, 0, 0};
    ck_assert_int_eq(balancer_round_robin(&b, none), -1);
}
END_TEST

/* Least connections: fewest active per weight, ties taken in turn. */
START_TEST(test_least_conn_prefers_fewest_per_weight)
{
    static const int w[] = {1, 1, 2};
    unsigned char ok[] = {1, 1, 1};
    struct balancer b;
    balancer_init(&b, w, 3);
    int active[] = {3, 1, 4}; /* 3/1, 1/1, 4/2=2 */
    ck_assert_int_eq(balancer_least_conn(&b, ok, active), 1);
    int a2[] = {2, 2, 3}; /* 2, 2, 1.5 */
    ck_assert_int_eq(balancer_least_conn(&b, ok, a2), 2);
    ok[2] = 0;
    ck_assert_int_eq(balancer_least_conn(&b, ok, a2) != 2, 1);
    /* all equal: ties go by weight (1, 1, 2) */
    int zero[] = {0, 0, 0};
    unsigned char all[] = {1, 1, 1};
    int seen[3] = {0};
    for (int i = 0; i < 40; i++) {
        seen[balancer_least_conn(&b, all, zero)]++;
    }
    ck_assert_int_eq(seen[0], 10);
    ck_assert_int_eq(seen[1], 10);
    ck_assert_int_eq(seen[2], 20);
    unsigned char none[] = {0, 0, 0};
    ck_assert_int_eq(balancer_least_conn(&b, none, zero), -1);
}
END_TEST

/*
 * One least_conn pick of a request that ends before the next one starts:
 * active[] is the same for every pick.
 */
static int least_conn_sequential(struct balancer *b, const unsigned char *ok,
                                 const int *active)
{
    int k = balancer_least_conn(b, ok, active);
    ck_assert_msg(k >= 0 && k < b->n, "pick %d of %d", k, b->n);
    return k;
}

/* How many of picks sequential picks each of 4 servers of weights w got. */
static void least_conn_counts(const int *w, const unsigned char *ok,
                              const int *active, int picks, int count[4])
{
    struct balancer b;
    balancer_init(&b, w, 4);
    memset(count, 0, 4 * sizeof(count[0]));
    for (int i = 0; i < picks; i++) {
        count[least_conn_sequential(&b, ok, active)]++;
    }
}

/*
 * Sequential requests find every server idle, so every pick is a tie: the
 * weights must still hold (2:1:1, not 1:1:1), interleaved the way
 * round_robin interleaves them, and equal weights never repeat a server.
 */
START_TEST(test_least_conn_idle_ties_follow_weights)
{
    static const int w[] = {2, 1, 1};
    unsigned char ok[] = {1, 1, 1};
    int active[] = {0, 0, 0};
    struct balancer b, rr;
    int seq[40];
    int count[3] = {0};

    balancer_init(&b, w, 3);
    balancer_init(&rr, w, 3);
    for (int i = 0; i < 40; i++) {
        seq[i] = least_conn_sequential(&b, ok, active);
        ck_assert_int_eq(seq[i], balancer_round_robin(&rr, ok));
        count[seq[i]]++;
    }
    ck_assert_int_eq(count[0], 20);
    ck_assert_int_eq(count[1], 10);
    ck_assert_int_eq(count[2], 10);
    /* every 4 consecutive picks: exactly 2, 1, 1 */
    for (int start = 0; start + 4 <= 40; start++) {
        int c[3] = {0};
        for (int i = start; i < start + 4; i++) {
            c[seq[i]]++;
        }
        ck_assert_msg(c[0] == 2 && c[1] == 1 && c[2] == 1,
                      "window at %d: %d %d %d", start, c[0], c[1], c[2]);
    }
    ck_assert_int_le(longest_run(seq, 40, 0), 2);
    ck_assert_int_eq(longest_run(seq, 40, 1), 1);
    ck_assert_int_eq(longest_run(seq, 40, 2), 1);

    /* equal weights: a plain rotation, never twice in a row */
    static const int threes[] = {3, 3, 3};
    int zero[] = {0, 0, 0};
    balancer_init(&b, threes, 3);
    for (int i = 0; i < 30; i++) {
        ck_assert_int_eq(least_conn_sequential(&b, ok, zero), i % 3);
    }
}
END_TEST

/*
 * Only the servers tied at the fewest active per weight take part, and
 * among them the weights hold; a tie of equal ratios with different counts
 * ({4/4, 2/2}) is a tie. Servers that are not ok stay out as before.
 */
START_TEST(test_least_conn_ties_among_subset_follow_weights)
{
    struct balancer b;
    int count[4];

    /* server 3 is busier: 0, 1 and 2 share 2:1:1 */
    static const int w1[] = {2, 1, 1, 4};
    unsigned char ok[] = {1, 1, 1, 1};
    int a1[] = {0, 0, 0, 5};
    least_conn_counts(w1, ok, a1, 40, count);
    ck_assert_int_eq(count[0], 20);
    ck_assert_int_eq(count[1], 10);
    ck_assert_int_eq(count[2], 10);
    ck_assert_int_eq(count[3], 0);

    /* ratios 1, 1, 3, 3: 0 and 1 are tied, and share 4:2 */
    static const int w2[] = {4, 2, 1, 1};
    int a2[] = {4, 2, 3, 3};
    balancer_init(&b, w2, 4);
    memset(count, 0, sizeof(count));
    int seq[30];
    for (int i = 0; i < 30; i++) {
        seq[i] = least_conn_sequential(&b, ok, a2);
        count[seq[i]]++;
    }
    ck_assert_int_eq(count[0], 20);
    ck_assert_int_eq(count[1], 10);
    ck_assert_int_eq(count[2] + count[3], 0);
    ck_assert_int_le(longest_run(seq, 30, 0), 2); /* interleaved: 0 1 0 */
    ck_assert_int_eq(longest_run(seq, 30, 1), 1);

    /* server 0 not ok: 1 and 2, still tied, share 1:1 */
    ok[0] = 0;
    least_conn_counts(w1, ok, a1, 20, count);
    ck_assert_int_eq(count[0], 0);
    ck_assert_int_eq(count[1], 10);
    ck_assert_int_eq(count[2], 10);
    ck_assert_int_eq(count[3], 0);

    /* requests that stay in progress: active follows weight exactly */
    static const int w3[] = {2, 1, 1};
    unsigned char all[] = {1, 1, 1};
    int held[] = {0, 0, 0};
    balancer_init(&b, w3, 3);
    for (int i = 1; i <= 40; i++) {
        held[balancer_least_conn(&b, all, held)]++;
        if (i % 4 == 0) {
            ck_assert_int_eq(held[0], i / 2);
            ck_assert_int_eq(held[1], i / 4);
            ck_assert_int_eq(held[2], i / 4);
        }
    }
}
END_TEST

/* Hash: a key keeps its server; shares follow weights; removing a server
 * moves only its keys. */
START_TEST(test_hash_is_stable_weighted_and_minimal)
{
    static const int w[] = {1, 1, 2};
    unsigned char ok[] = {1, 1, 1};
    struct balancer b;
    balancer_init(&b, w, 3);
    enum { N = 40000 };
    static int where[N];
    int count[3] = {0};
    for (int i = 0; i < N; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
        uint64_t k = balancer_key(key, (size_t)n);
        where[i] = balancer_hash(&b, ok, k);
        ck_assert_int_eq(balancer_hash(&b, ok, k), where[i]);
        count[where[i]]++;
    }
    /* shares 1/4, 1/4, 1/2 within 3% */
    ck_assert_msg(abs(count[0] - N / 4) < N * 3 / 100, "%d", count[0]);
    ck_assert_msg(abs(count[1] - N / 4) < N * 3 / 100, "%d", count[1]);
    ck_assert_msg(abs(count[2] - N / 2) < N * 3 / 100, "%d", count[2]);
    ok[1] = 0;
    for (int i = 0; i < N; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
        int now = balancer_hash(&b, ok, balancer_key(key, (size_t)n));
        ck_assert_int_ne(now, 1);
        if (where[i] != 1) {
            ck_assert_int_eq(now, where[i]);
        }
    }
    unsigned char none[] = {0, 0, 0};
    ck_assert_int_eq(balancer_hash(&b, none, 1), -1);
}
END_TEST

START_TEST(test_weight_below_one_treated_as_one)
{
    static const int w[] = {0, -3, 1};
    static const int same[] = {1, 1, 1};
    struct balancer b, ref;
    balancer_init(&b, w, 3);
    balancer_init(&ref, same, 3);
    ck_assert_int_eq(b.weight[0] + b.weight[1] + b.weight[2], 3);
    for (int i = 0; i < 30; i++) {
        int got = balancer_next(&b);
        ck_assert_int_eq(got, balancer_next(&ref));
        ck_assert_int_eq(got, i % 3);
    }

    /* {0, 2} behaves as {1, 2} */
    static const int w2[] = {0, 2};
    static const int expect[] = {1, 0, 1};
    balancer_init(&b, w2, 2);
    for (int i = 0; i < 30; i++) {
        ck_assert_int_eq(balancer_next(&b), expect[i % 3]);
    }
}
END_TEST

START_TEST(test_more_than_max_servers_clamped)
{
    int w[BALANCER_MAX + 6];
    for (int i = 0; i < BALANCER_MAX + 6; i++) {
        w[i] = 1;
    }
    struct balancer b;
    balancer_init(&b, w, BALANCER_MAX + 6);
    ck_assert_int_eq(b.n, BALANCER_MAX);
    for (int i = 0; i < 3 * BALANCER_MAX; i++) {
        ck_assert_int_eq(balancer_next(&b), i % BALANCER_MAX);
    }
}
END_TEST

START_TEST(test_init_again_starts_afresh)
{
    static const int w[] = {5, 1, 1};
    struct balancer b;
    balancer_init(&b, w, 3);
    balancer_next(&b);
    balancer_next(&b);
    balancer_next(&b); /* mid-cycle: scores are not zero */
    balancer_init(&b, w, 3);
    ck_assert_int_eq(balancer_next(&b), 0);
    ck_assert_int_eq(balancer_next(&b), 0);
    ck_assert_int_eq(balancer_next(&b), 1);
}
END_TEST

static Suite *balancer_suite(void)
{
    Suite *s = suite_create("balancer");
    TCase *t;

    t = tcase_create("sequence");
    tcase_add_test(t, test_single_server_always_zero);
    tcase_add_test(t, test_equal_weights_rotate_in_order);
    tcase_add_test(t, test_weights_5_1_1_give_nginx_sequence);
    tcase_add_test(t, test_init_again_starts_afresh);
    suite_add_tcase(s, t);

    t = tcase_create("shares");
    tcase_add_test(t, test_weights_5_1_1_over_700_picks_split_exactly);
    tcase_add_test(t, test_every_window_of_total_picks_has_exact_shares);
    tcase_add_test(t, test_never_a_whole_pick_ahead_of_share);
    tcase_add_test(t, test_heavy_server_bursts_bounded);
    suite_add_tcase(s, t);

    t = tcase_create("weights");
    tcase_add_test(t, test_weight_below_one_treated_as_one);
    tcase_add_test(t, test_more_than_max_servers_clamped);
    tcase_add_test(t, test_round_robin_skips_unusable);
    tcase_add_test(t, test_least_conn_prefers_fewest_per_weight);
    tcase_add_test(t, test_least_conn_idle_ties_follow_weights);
    tcase_add_test(t, test_least_conn_ties_among_subset_follow_weights);
    tcase_add_test(t, test_hash_is_stable_weighted_and_minimal);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(balancer_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
