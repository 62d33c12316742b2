/* Integration tests of backend gloo: world sizes 1..4 as real processes over
 * 127.0.0.1. Every rank opens two communicators, one on Gloo and one on our
 * tcp ring (each with its own store), runs the same collective on both, and
 * checks both results against a serial reference and against each other.
 * dtypes f32, f16, f64, i32, i64 (Gloo has no bf16 arithmetic: a bf16
 * reduction must fail with VKT_ERR_UNSUPPORTED and leave the comm usable;
 * bf16 all-gather and broadcast only move bytes and work), ops sum, avg, max,
 * min, sizes 0, 1, 7, Gloo's segment +- 1 and a few MiB. Then: a rank killed
 * in the middle of a Gloo all-reduce gives the survivor an error naming the
 * collective and the rank, in time; vkt_comm_abort makes a Gloo collective
 * in flight fail (by comm_timeout_s: Gloo cannot be woken sooner) and the
 * comm refuse work; ranks that mix gloo and tcp both refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gloo_backend.h"
#include "harness.h"
#include "transport_int.h"

#define SEGMENT (1u << 20) /* Gloo's all-reduce segment, bytes */
#define BIG (3u << 20)     /* "a few MiB", bytes */
#define DEADLINE_S 120.0

typedef struct group {
    char gloo_store[160], tcp_store[160];
} group;

typedef struct pair {
    vkt_comm *gloo, *tcp;
    int rank, n;
    char *a, *b, *g, *t; /* inputs, and outputs of gloo and tcp */
} pair;

static const vkt_dtype gloo_types[] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_F64,
                                       VKT_DTYPE_I32, VKT_DTYPE_I64};

/* n elements of Gloo's and tcp's outputs from element off, against
 * want(base + i) and against each other. */
static int check_both(const pair *p, const char *what, size_t off, size_t base, size_t n,
                      vkt_dtype t, double (*want)(const pair *, size_t, vkt_dtype, int), int arg)
{
    for (size_t i = 0; i < n; i++) {
        double g = tv_get(p->g, off + i, t), c = tv_get(p->t, off + i, t);
        double w = want(p, base + i, t, arg);
        if (!tv_close(g, w, t) || !tv_close(c, w, t) || !tv_close(g, c, t))
            return RANK_FAIL(p->rank, "%s %s: element %zu: gloo %.17g, tcp %.17g, expected "
                             "%.17g", what, vkt_dtype_name(t), off + i, g, c, w);
    }
    return 0;
}

static double want_reduced(const pair *p, size_t j, vkt_dtype t, int op)
{
    return tv_expect(p->n, j, t, (vkt_redop)op);
}

static double want_gathered(const pair *p, size_t j, vkt_dtype t, int count)
{
    return tv_input((int)(j / (size_t)count), j % (size_t)count, t);
}

static double want_root(const pair *p, size_t j, vkt_dtype t, int root)
{
    (void)p;
    return tv_input(root, j, t);
}

static int failed(const pair *p, const char *backend, const char *what, vkt_status st)
{
    return RANK_FAIL(p->rank, "%s %s: %s (%s)", backend, what, vkt_status_str(st),
                     vkt_last_error());
}

/* ------------------------------------------------------------ the cases -- */

/* Out of place on Gloo and in place on tcp, or the other way round. */
static int allreduce_case(pair *p, size_t count, vkt_dtype t, vkt_redop op, int flip)
{
    size_t bytes = count * vkt_dtype_size(t);
    for (size_t j = 0; j < count; j++) tv_set(p->a, j, t, tv_input(p->rank, j, t));
    memcpy(flip ? p->g : p->t, p->a, bytes);
    vkt_status st = vkt_comm_allreduce(p->gloo, flip ? p->g : p->a, p->g, count, t, op);
    if (st != VKT_OK) return failed(p, "gloo", "allreduce", st);
    st = vkt_comm_allreduce(p->tcp, flip ? p->a : p->t, p->t, count, t, op);
    if (st != VKT_OK) return failed(p, "tcp", "allreduce", st);
    char what[64];
    snprintf(what, sizeof what, "allreduce(%s, count %zu)", vkt_redop_name(op), count);
    return check_both(p, what, 0, 0, count, t, want_reduced, op);
}

static int reduce_scatter_case(pair *p, size_t rc, vkt_dtype t, vkt_redop op)
{
    for (size_t j = 0; j < rc * (size_t)p->n; j++) tv_set(p->a, j, t, tv_input(p->rank, j, t));
    vkt_status st = vkt_comm_reduce_scatter(p->gloo, p->a, p->g, rc, t, op);
    if (st != VKT_OK) return failed(p, "gloo", "reduce_scatter", st);
    st = vkt_comm_reduce_scatter(p->tcp, p->a, p->t, rc, t, op);
    if (st != VKT_OK) return failed(p, "tcp", "reduce_scatter", st);
    char what[64];
    snprintf(what, sizeof what, "reduce_scatter(%s, count %zu)", vkt_redop_name(op), rc);
    return check_both(p, what, 0, (size_t)p->rank * rc, rc, t, want_reduced, op);
}

/* In place (this rank's block already in the output) on Gloo when inplace. */
static int allgather_case(pair *p, size_t sc, vkt_dtype t, int inplace)
{
    size_t es = vkt_dtype_size(t);
    char *mine = p->g + (size_t)p->rank * sc * es;
    for (size_t j = 0; j < sc; j++) tv_set(p->a, j, t, tv_input(p->rank, j, t));
    memset(p->g, 0xee, sc * (size_t)p->n * es);
    if (inplace) memcpy(mine, p->a, sc * es);
    vkt_status st = vkt_comm_allgather(p->gloo, inplace ? mine : p->a, p->g, sc, t);
    if (st != VKT_OK) return failed(p, "gloo", "allgather", st);
    st = vkt_comm_allgather(p->tcp, p->a, p->t, sc, t);
    if (st != VKT_OK) return failed(p, "tcp", "allgather", st);
    return check_both(p, "allgather", 0, 0, sc * (size_t)p->n, t, want_gathered, (int)sc);
}

static int broadcast_case(pair *p, size_t count, vkt_dtype t, int root)
{
    for (size_t j = 0; j < count; j++) {
        tv_set(p->g, j, t, p->rank == root ? tv_input(root, j, t) : 99);
        tv_set(p->t, j, t, p->rank == root ? tv_input(root, j, t) : 98);
    }
    vkt_status st = vkt_comm_broadcast(p->gloo, p->g, count, t, root);
    if (st != VKT_OK) return failed(p, "gloo", "broadcast", st);
    st = vkt_comm_broadcast(p->tcp, p->t, count, t, root);
    if (st != VKT_OK) return failed(p, "tcp", "broadcast", st);
    return check_both(p, "broadcast", 0, 0, count, t, want_root, root);
}

/* Out of place everywhere; NULL output off the root on tcp, Gloo gets one. */
static int reduce_case(pair *p, size_t count, vkt_dtype t, vkt_redop op, int root)
{
    for (size_t j = 0; j < count; j++) tv_set(p->a, j, t, tv_input(p->rank, j, t));
    vkt_status st = vkt_comm_reduce(p->gloo, p->a, p->g, count, t, op, root);
    if (st != VKT_OK) return failed(p, "gloo", "reduce", st);
    for (size_t j = 0; j < count; j++) /* sendbuf is const: Gloo must not write it */
        if (tv_get(p->a, j, t) != tv_input(p->rank, j, t))
            return RANK_FAIL(p->rank, "gloo reduce wrote its input at %zu", j);
    st = vkt_comm_reduce(p->tcp, p->a, p->rank == root ? p->t : NULL, count, t, op, root);
    if (st != VKT_OK) return failed(p, "tcp", "reduce", st);
    if (p->rank != root) return 0;
    char what[64];
    snprintf(what, sizeof what, "reduce(%s, count %zu, root %d)", vkt_redop_name(op), count,
             root);
    return check_both(p, what, 0, 0, count, t, want_reduced, op);
}

/* Per-rank counts: 0/1/7 mixed, or a large block with a zero one. */
static size_t v_counts(const pair *p, int pattern, size_t big, size_t *counts, size_t *displ)
{
    size_t off = 0;
    for (int q = 0; q < p->n; q++) {
        counts[q] = pattern == 0 ? (size_t)(q % 3 == 0 ? 0 : q % 3 == 1 ? 1 : 7)
                                 : q == 1 ? 3 : big + (size_t)q;
        displ[q] = off;
        off += counts[q];
    }
    return off;
}

static double want_block(const pair *p, size_t j, vkt_dtype t, int q)
{
    (void)p;
    return tv_input(q, j, t);
}

static int allgatherv_case(pair *p, int pattern, size_t big, vkt_dtype t)
{
    size_t counts[8], displ[8], es = vkt_dtype_size(t), total = v_counts(p, pattern, big, counts, displ);
    for (size_t j = 0; j < counts[p->rank]; j++) tv_set(p->a, j, t, tv_input(p->rank, j, t));
    memset(p->g, 0xee, total * es);
    memset(p->t, 0xdd, total * es);
    vkt_status st = vkt_comm_allgatherv(p->gloo, p->a, p->g, counts, t);
    if (st != VKT_OK) return failed(p, "gloo", "allgatherv", st);
    st = vkt_comm_allgatherv(p->tcp, p->a, p->t, counts, t);
    if (st != VKT_OK) return failed(p, "tcp", "allgatherv", st);
    int bad = 0;
    for (int q = 0; q < p->n && !bad; q++)
        bad = check_both(p, "allgatherv", displ[q], 0, counts[q], t, want_block, q);
    return bad;
}

static int reduce_scatterv_case(pair *p, int pattern, size_t big, vkt_dtype t, vkt_redop op)
{
    size_t counts[8], displ[8], total = v_counts(p, pattern, big, counts, displ);
    for (size_t j = 0; j < total; j++) tv_set(p->a, j, t, tv_input(p->rank, j, t));
    vkt_status st = vkt_comm_reduce_scatterv(p->gloo, p->a, p->g, counts, t, op);
    if (st != VKT_OK) return failed(p, "gloo", "reduce_scatterv", st);
    st = vkt_comm_reduce_scatterv(p->tcp, p->a, p->t, counts, t, op);
    if (st != VKT_OK) return failed(p, "tcp", "reduce_scatterv", st);
    char what[64];
    snprintf(what, sizeof what, "reduce_scatterv(%s, pattern %d)", vkt_redop_name(op), pattern);
    return check_both(p, what, 0, displ[p->rank], counts[p->rank], t, want_reduced, op);
}

/* Rank r sends to r+1 and receives from r-1; rank 0 receives first, so a
 * message larger than any buffer still flows (the chain unwinds from 0). */
static int sendrecv_case(pair *p, size_t count, vkt_dtype t)
{
    int to = (p->rank + 1) % p->n, from = (p->rank + p->n - 1) % p->n;
    for (size_t j = 0; j < count; j++) tv_set(p->a, j, t, tv_input(p->rank, j, t));
    vkt_comm *cs[2] = {p->gloo, p->tcp};
    char *out[2] = {p->g, p->t};
    for (int i = 0; i < 2; i++) {
        vkt_status st = VKT_OK;
        if (p->rank == 0) st = vkt_comm_recv(cs[i], out[i], count, t, from);
        if (st == VKT_OK) st = vkt_comm_send(cs[i], p->a, count, t, to);
        if (st == VKT_OK && p->rank != 0) st = vkt_comm_recv(cs[i], out[i], count, t, from);
        if (st != VKT_OK) return failed(p, i ? "tcp" : "gloo", "send/recv", st);
    }
    return check_both(p, "recv", 0, 0, count, t, want_root, from);
}

/* Gloo cannot reduce bf16: refused up front, and the comm keeps working.
 * bf16 all-gather and broadcast only move bytes. */
static int bf16_case(pair *p)
{
    vkt_status st = vkt_comm_allreduce(p->gloo, p->a, p->g, 5, VKT_DTYPE_BF16, VKT_REDOP_SUM);
    if (st != VKT_ERR_UNSUPPORTED || !strstr(vkt_last_error(), "bf16"))
        return RANK_FAIL(p->rank, "gloo bf16 allreduce gave %s (%s), expected UNSUPPORTED "
                         "naming bf16", vkt_status_str(st), vkt_last_error());
    st = vkt_comm_reduce_scatter(p->gloo, p->a, p->g, 5, VKT_DTYPE_BF16, VKT_REDOP_MAX);
    if (st != VKT_ERR_UNSUPPORTED) return failed(p, "gloo", "bf16 reduce_scatter", st);
    return allgather_case(p, 9, VKT_DTYPE_BF16, 0) | broadcast_case(p, 9, VKT_DTYPE_BF16, 0);
}

static int async_case(pair *p)
{
    size_t cnt = SEGMENT / 4 + 3;
    vkt_comm_req *q1 = NULL, *q2 = NULL;
    for (size_t j = 0; j < cnt; j++) tv_set(p->g, j, VKT_DTYPE_F32, tv_input(p->rank, j, 0));
    for (size_t j = 0; j < 9; j++) tv_set(p->t, j, VKT_DTYPE_I64, tv_input(p->rank, j, 5));
    if (vkt_comm_allreduce_async(p->gloo, p->g, p->g, cnt, VKT_DTYPE_F32, VKT_REDOP_SUM, &q1) ||
        vkt_comm_allreduce_async(p->gloo, p->t, p->t, 9, VKT_DTYPE_I64, VKT_REDOP_MIN, &q2) ||
        vkt_comm_wait(q2) || vkt_comm_wait(q1))
        return RANK_FAIL(p->rank, "gloo async: %s", vkt_last_error());
    for (size_t j = 0; j < cnt; j++)
        if (!tv_close(tv_get(p->g, j, 0), tv_expect(p->n, j, 0, VKT_REDOP_SUM), 0))
            return RANK_FAIL(p->rank, "gloo async allreduce 1: element %zu wrong", j);
    for (size_t j = 0; j < 9; j++)
        if (tv_get(p->t, j, 5) != tv_expect(p->n, j, 5, VKT_REDOP_MIN))
            return RANK_FAIL(p->rank, "gloo async allreduce 2: element %zu wrong", j);
    return 0;
}

static int run_all_cases(pair *p)
{
    int bad = 0;
    for (size_t k = 0; k < sizeof gloo_types / sizeof gloo_types[0] && !bad; k++) {
        vkt_dtype t = gloo_types[k];
        size_t seg = SEGMENT / vkt_dtype_size(t);
        const size_t counts[] = {0, 1, 7, seg - 1, seg + 1};
        for (int op = 0; op < VKT_REDOP_COUNT_; op++)
            for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
                bad |= allreduce_case(p, counts[c], t, op, (int)(c + (size_t)op) % 2);
        const size_t rcs[] = {0, 1, 7, 1000, seg / 4 + 1};
        for (int op = 0; op < VKT_REDOP_COUNT_; op++)
            for (size_t c = 0; c < sizeof rcs / sizeof rcs[0]; c++)
                bad |= reduce_scatter_case(p, rcs[c], t, op);
        for (size_t c = 0; c < sizeof rcs / sizeof rcs[0]; c++)
            bad |= allgather_case(p, rcs[c], t, (int)c % 2);
        const size_t bcs[] = {0, 1, 7, seg + 1};
        for (size_t c = 0; c < sizeof bcs / sizeof bcs[0]; c++)
            bad |= broadcast_case(p, bcs[c], t, (int)c % p->n);
        for (int op = 0; op < VKT_REDOP_COUNT_; op++)
            for (size_t c = 0; c < sizeof bcs / sizeof bcs[0]; c++)
                bad |= reduce_case(p, bcs[c], t, op, (int)(c + (size_t)op) % p->n);
        for (int pat = 0; pat < 2; pat++) {
            bad |= allgatherv_case(p, pat, seg / 4, t);
            for (int op = 0; op < VKT_REDOP_COUNT_; op++)
                bad |= reduce_scatterv_case(p, pat, seg / 4, t, op);
        }
        if (p->n > 1) {
            const size_t scs[] = {0, 1, 7, seg + 1};
            for (size_t c = 0; c < sizeof scs / sizeof scs[0]; c++)
                bad |= sendrecv_case(p, scs[c], t);
        }
    }
    if (bad) return bad;
    bad |= bf16_case(p) | async_case(p);
    bad |= allreduce_case(p, BIG / 4 + 3, VKT_DTYPE_F32, VKT_REDOP_SUM, 0);
    bad |= allreduce_case(p, BIG / 8 + 1, VKT_DTYPE_F64, VKT_REDOP_AVG, 1);
    bad |= reduce_case(p, BIG / 4 + 3, VKT_DTYPE_F32, VKT_REDOP_SUM, p->n - 1);
    bad |= allgatherv_case(p, 1, BIG / 4 / (size_t)p->n, VKT_DTYPE_F32);
    bad |= reduce_scatterv_case(p, 1, BIG / 4 / (size_t)p->n, VKT_DTYPE_F32, VKT_REDOP_SUM);
    if (p->n > 1) bad |= sendrecv_case(p, (5u << 20) / 4 + 1, VKT_DTYPE_F32);
    for (int i = 0; i < 3 && !bad; i++)
        if (vkt_comm_barrier(p->gloo) != VKT_OK) bad |= failed(p, "gloo", "barrier", VKT_ERR_IO);
    return bad;
}

static int open_comm(int rank, int n, const char *store, vkt_comm_backend be, vkt_comm **c)
{
    vkt_comm_opts o = test_opts(rank, n, store, 20.0);
    o.backend = be;
    if (vkt_comm_create(&o, c) != VKT_OK)
        return RANK_FAIL(rank, "create (%s): %s", be == VKT_COMM_BACKEND_GLOO ? "gloo" : "tcp",
                         vkt_last_error());
    const char *want = n == 1 ? "none" : be == VKT_COMM_BACKEND_GLOO ? "gloo" : "tcp";
    if (strcmp(vkt_comm_link(*c), want) != 0)
        return RANK_FAIL(rank, "link is %s, expected %s", vkt_comm_link(*c), want);
    return 0;
}

static int world_body(int rank, int n, void *arg)
{
    group *gr = arg;
    pair p = {NULL, NULL, rank, n, NULL, NULL, NULL, NULL};
    int bad = open_comm(rank, n, gr->gloo_store, VKT_COMM_BACKEND_GLOO, &p.gloo);
    if (!bad) bad = open_comm(rank, n, gr->tcp_store, VKT_COMM_BACKEND_TCP, &p.tcp);
    size_t cap = (5u << 20) + (size_t)n * SEGMENT + 4096;
    p.a = malloc(cap);
    p.b = malloc(cap);
    p.g = malloc(cap);
    p.t = malloc(cap);
    if (!bad && (!p.a || !p.b || !p.g || !p.t)) bad = RANK_FAIL(rank, "malloc");
    if (!bad) bad = run_all_cases(&p);
    free(p.a);
    free(p.b);
    free(p.g);
    free(p.t);
    vkt_comm_destroy(p.gloo);
    vkt_comm_destroy(p.tcp);
    return bad;
}

static void run_world(int n)
{
    group g;
    void *s1 = start_store(TEST_SECRET, g.gloo_store, sizeof g.gloo_store);
    void *s2 = start_store(TEST_SECRET, g.tcp_store, sizeof g.tcp_store);
    assert_non_null(s1);
    assert_non_null(s2);
    double t0 = vkt__now();
    int bad = run_ranks(n, world_body, &g, DEADLINE_S, NULL);
    printf("world %d (gloo vs tcp): %.2f s\n", n, vkt__now() - t0);
    stop_store(s2); /* s2's process holds s1's control pipe (forked later): stop it first */
    stop_store(s1);
    assert_int_equal(bad, 0);
}

#define WORLD_TEST(N)                                                                  \
    static void test_world_##N(void **state)                                           \
    {                                                                                  \
        (void)state;                                                                   \
        run_world(N);                                                                  \
    }
WORLD_TEST(1)
WORLD_TEST(2)
WORLD_TEST(3)
WORLD_TEST(4)

/* ------------------------------------------------------------ a dead peer -- */

static int dying_body(int rank, int n, void *arg)
{
    group *gr = arg;
    vkt_comm *c = NULL;
    vkt_comm_opts o = test_opts(rank, n, gr->gloo_store, 3.0);
    o.backend = VKT_COMM_BACKEND_GLOO;
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    if (rank == 1) _exit(0); /* dies without a word, mid-job */
    size_t cnt = 4u << 20;
    float *buf = calloc(cnt, sizeof *buf);
    double t0 = vkt__now();
    vkt_status st = buf ? vkt_comm_allreduce(c, buf, buf, cnt, VKT_DTYPE_F32, VKT_REDOP_SUM)
                        : VKT_ERR_NOMEM;
    double took = vkt__now() - t0;
    char msg[1200];
    snprintf(msg, sizeof msg, "%s", vkt_last_error());
    int bad = 0;
    if (st != VKT_ERR_REMOTE && st != VKT_ERR_TIMEOUT)
        bad = RANK_FAIL(rank, "allreduce with a dead peer gave %s: %s", vkt_status_str(st), msg);
    else if (!strstr(msg, "allreduce") || !strstr(msg, "rank 1"))
        bad = RANK_FAIL(rank, "message does not name the op and rank 1: %s", msg);
    else if (took > 10.0)
        bad = RANK_FAIL(rank, "took %.1f s to notice (timeout 3 s)", took);
    else if (vkt_comm_barrier(c) != st) /* sticky */
        bad = RANK_FAIL(rank, "the error is not sticky");
    printf("rank %d saw (%.2f s): %s\n", rank, took, msg);
    free(buf);
    vkt_comm_destroy(c);
    return bad;
}

static void test_dead_peer(void **state)
{
    (void)state;
    group g;
    void *s1 = start_store(TEST_SECRET, g.gloo_store, sizeof g.gloo_store);
    assert_non_null(s1);
    int codes[2];
    run_ranks(2, dying_body, &g, 30.0, codes);
    stop_store(s1);
    assert_int_equal(codes[0], 0);
}

/* ---------------------------------------------------------------- abort -- */

/* Rank 0's all-reduce waits for rank 1, which is busy elsewhere, and rank 0
 * aborts. Gloo offers no way to wake a collective that waits on its own
 * internal buffers, so the all-reduce ends at comm_timeout_s (4 s here), not
 * at once as on our ring; it must end with an error, and the comm must then
 * refuse work at once. */
static int abort_body(int rank, int n, void *arg)
{
    group *gr = arg;
    vkt_comm *c = NULL;
    vkt_comm_opts o = test_opts(rank, n, gr->gloo_store, 4.0);
    o.backend = VKT_COMM_BACKEND_GLOO;
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    int bad = 0;
    if (rank == 1) {
        vkt__sleep_ms(6000); /* never joins the all-reduce */
    } else {
        size_t cnt = 1u << 20;
        float *buf = calloc(cnt, sizeof *buf);
        vkt_comm_req *req = NULL;
        if (!buf || vkt_comm_allreduce_async(c, buf, buf, cnt, VKT_DTYPE_F32, VKT_REDOP_SUM, &req))
            return RANK_FAIL(rank, "issue: %s", vkt_last_error());
        vkt__sleep_ms(300);
        double t0 = vkt__now();
        vkt_comm_abort(c);
        vkt_status st = vkt_comm_wait(req);
        double took = vkt__now() - t0;
        if (st == VKT_OK || took > 4.0 + 3.0)
            bad = RANK_FAIL(rank, "after abort the all-reduce gave %s after %.1f s",
                            vkt_status_str(st), took);
        t0 = vkt__now();
        if (vkt_comm_barrier(c) != VKT_ERR_INVALID_USAGE || vkt__now() - t0 > 0.5)
            bad = RANK_FAIL(rank, "an aborted comm must refuse at once: %s", vkt_last_error());
        printf("rank 0: abort ended the Gloo all-reduce after %.1f s (%s)\n", took,
               vkt_status_str(st));
        free(buf);
    }
    vkt_comm_destroy(c);
    return bad;
}

static void test_abort(void **state)
{
    (void)state;
    group g;
    void *s1 = start_store(TEST_SECRET, g.gloo_store, sizeof g.gloo_store);
    assert_non_null(s1);
    int bad = run_ranks(2, abort_body, &g, 30.0, NULL);
    stop_store(s1);
    assert_int_equal(bad, 0);
}

/* ------------------------------------------------------- mixed backends -- */

/* Rank 0 asks for gloo, rank 1 for tcp: both must refuse at once. */
static int mixed_body(int rank, int n, void *arg)
{
    group *gr = arg;
    vkt_comm *c = NULL;
    vkt_comm_opts o = test_opts(rank, n, gr->gloo_store, 10.0);
    o.backend = rank == 0 ? VKT_COMM_BACKEND_GLOO : VKT_COMM_BACKEND_TCP;
    double t0 = vkt__now();
    vkt_status st = vkt_comm_create(&o, &c);
    double took = vkt__now() - t0;
    vkt_comm_destroy(c);
    if (st != VKT_ERR_INVALID_USAGE || !strstr(vkt_last_error(), "backend") || took > 5.0)
        return RANK_FAIL(rank, "mixed backends gave %s after %.1f s: %s", vkt_status_str(st),
                         took, vkt_last_error());
    return 0;
}

static void test_mixed_backends(void **state)
{
    (void)state;
    group g;
    void *s1 = start_store(TEST_SECRET, g.gloo_store, sizeof g.gloo_store);
    assert_non_null(s1);
    int bad = run_ranks(2, mixed_body, &g, 30.0, NULL);
    stop_store(s1);
    assert_int_equal(bad, 0);
}

int main(void)
{
    if (!vkt__gloo_built()) {
        printf("SKIP test_gloo: this build has no Gloo backend (libgloo-dev was missing "
               "when cmake ran, or VKT_WITH_GLOO=OFF)\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_1), cmocka_unit_test(test_world_2),
        cmocka_unit_test(test_world_3), cmocka_unit_test(test_world_4),
        cmocka_unit_test(test_dead_peer), cmocka_unit_test(test_abort),
        cmocka_unit_test(test_mixed_backends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
