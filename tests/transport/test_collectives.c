/* Integration tests of the collectives: world sizes 1..8 as real processes
 * over 127.0.0.1, every dtype and op, sizes 0, 1, 7, chunk +- 1 and a few
 * MiB, in-place and out-of-place, sync and async, checked against a serial
 * reference computed here from closed-form inputs. One process group per
 * world size runs all of its cases, which keeps the suite fast. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm_int.h"
#include "harness.h"
#include "transport_int.h"

#define CHUNK 4096      /* small chunks: many frames per segment even at small sizes */
#define BIG (3u << 20)  /* "a few MiB" case, bytes */
#define P2P_BIG (5u << 20) /* a message larger than the 4 MiB shm ring */
#define DEADLINE_S 90.0

typedef struct group {
    char store[160];
    int serve_rank0; /* rank 0 serves the TCP store itself */
    int checksum;
    vkt_comm_backend backend;
} group;

static size_t chunk_elems(vkt_dtype t) { return CHUNK / vkt_dtype_size(t); }

static int check(int rank, const char *what, const void *buf, size_t off, size_t n,
                 vkt_dtype t, double (*want)(size_t, void *), void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        double g = tv_get(buf, off + i, t), w = want(i, ctx);
        if (!tv_close(g, w, t))
            return RANK_FAIL(rank, "%s %s: element %zu is %.17g, expected %.17g", what,
                             vkt_dtype_name(t), i, g, w);
    }
    return 0;
}

typedef struct exp_ctx {
    int n, q;
    size_t base;
    vkt_dtype t;
    vkt_redop op;
} exp_ctx;

static double want_reduced(size_t i, void *p)
{
    exp_ctx *e = p;
    return tv_expect(e->n, e->base + i, e->t, e->op);
}

static double want_input(size_t i, void *p)
{
    exp_ctx *e = p;
    return tv_input(e->q, e->base + i, e->t);
}

/* ------------------------------------------------------------ the cases -- */

static int allreduce_case(vkt_comm *c, size_t count, vkt_dtype t, vkt_redop op, int inplace,
                          char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c);
    for (size_t j = 0; j < count; j++) tv_set(a, j, t, tv_input(r, j, t));
    memset(b, 0xee, count * vkt_dtype_size(t));
    vkt_status st = vkt_comm_allreduce(c, a, inplace ? a : b, count, t, op);
    if (st != VKT_OK) return RANK_FAIL(r, "allreduce: %s", vkt_last_error());
    exp_ctx e = {n, r, 0, t, op};
    char what[64];
    snprintf(what, sizeof what, "allreduce(%s, count %zu%s)", vkt_redop_name(op), count,
             inplace ? ", in place" : "");
    return check(r, what, inplace ? a : b, 0, count, t, want_reduced, &e);
}

static int reduce_scatter_case(vkt_comm *c, size_t rc, vkt_dtype t, vkt_redop op, int inplace,
                               char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c);
    size_t es = vkt_dtype_size(t);
    for (size_t j = 0; j < rc * (size_t)n; j++) tv_set(a, j, t, tv_input(r, j, t));
    char *out = inplace ? a + (size_t)r * rc * es : b;
    vkt_status st = vkt_comm_reduce_scatter(c, a, out, rc, t, op);
    if (st != VKT_OK) return RANK_FAIL(r, "reduce_scatter: %s", vkt_last_error());
    exp_ctx e = {n, r, (size_t)r * rc, t, op};
    char what[64];
    snprintf(what, sizeof what, "reduce_scatter(%s, count %zu)", vkt_redop_name(op), rc);
    return check(r, what, out, 0, rc, t, want_reduced, &e);
}

static int allgather_case(vkt_comm *c, size_t sc, vkt_dtype t, int inplace, char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c), bad = 0;
    size_t es = vkt_dtype_size(t);
    memset(b, 0xee, sc * (size_t)n * es);
    char *mine = inplace ? b + (size_t)r * sc * es : a;
    for (size_t j = 0; j < sc; j++) tv_set(mine, j, t, tv_input(r, j, t));
    vkt_status st = vkt_comm_allgather(c, mine, b, sc, t);
    if (st != VKT_OK) return RANK_FAIL(r, "allgather: %s", vkt_last_error());
    for (int q = 0; q < n && !bad; q++) {
        exp_ctx e = {n, q, 0, t, 0};
        bad = check(r, "allgather", b, (size_t)q * sc, sc, t, want_input, &e);
    }
    return bad;
}

static int broadcast_case(vkt_comm *c, size_t count, vkt_dtype t, int root, char *a)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c);
    for (size_t j = 0; j < count; j++) tv_set(a, j, t, r == root ? tv_input(root, j, t) : 99);
    vkt_status st = vkt_comm_broadcast(c, a, count, t, root);
    if (st != VKT_OK) return RANK_FAIL(r, "broadcast: %s", vkt_last_error());
    exp_ctx e = {n, root, 0, t, 0};
    return check(r, "broadcast", a, 0, count, t, want_input, &e);
}

static int reduce_case(vkt_comm *c, size_t count, vkt_dtype t, vkt_redop op, int root,
                       int inplace, char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c);
    for (size_t j = 0; j < count; j++) tv_set(a, j, t, tv_input(r, j, t));
    memset(b, 0xee, count * vkt_dtype_size(t));
    /* Off the root the output is unused: pass NULL there when out of place. */
    char *out = inplace ? a : r == root ? b : NULL;
    vkt_status st = vkt_comm_reduce(c, a, out, count, t, op, root);
    if (st != VKT_OK) return RANK_FAIL(r, "reduce: %s", vkt_last_error());
    char what[80];
    snprintf(what, sizeof what, "reduce(%s, count %zu, root %d%s)", vkt_redop_name(op), count,
             root, inplace ? ", in place" : "");
    exp_ctx e = {n, r, 0, t, op};
    if (r == root) return check(r, what, out, 0, count, t, want_reduced, &e);
    if (!inplace) return check(r, what, a, 0, count, t, want_input, &e); /* input untouched */
    return 0;
}

/* Per-rank counts of the v forms: pattern 0 all zero, 1 mixes 0/1/7, 2
 * chunk +- 1 with the last rank 0, 3 only the last rank (a few chunks), 4 a
 * few MiB in all (f32). */
static void v_counts(int pattern, int n, size_t ce, size_t *counts, size_t *displ)
{
    size_t off = 0;
    for (int q = 0; q < n; q++) {
        size_t k = 0;
        if (pattern == 1) k = q % 3 == 0 ? 0 : q % 3 == 1 ? 1 : 7;
        if (pattern == 2) k = q == n - 1 && n > 1 ? 0 : q % 2 ? ce + 1 : ce - 1;
        if (pattern == 3) k = q == n - 1 ? 3 * ce + 5 : 0;
        if (pattern == 4) k = BIG / 4 / (size_t)n + (size_t)q; /* a few MiB in all (f32) */
        counts[q] = k;
        displ[q] = off;
        off += k;
    }
}

static int allgatherv_case(vkt_comm *c, int pattern, vkt_dtype t, int inplace, char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c), bad = 0;
    size_t es = vkt_dtype_size(t), counts[8], displ[8];
    v_counts(pattern, n, chunk_elems(t), counts, displ);
    size_t total = displ[n - 1] + counts[n - 1];
    memset(b, 0xee, total * es);
    char *mine = inplace ? b + displ[r] * es : a;
    for (size_t j = 0; j < counts[r]; j++) tv_set(mine, j, t, tv_input(r, j, t));
    vkt_status st = vkt_comm_allgatherv(c, mine, b, counts, t);
    if (st != VKT_OK) return RANK_FAIL(r, "allgatherv: %s", vkt_last_error());
    for (int q = 0; q < n && !bad; q++) {
        exp_ctx e = {n, q, 0, t, 0};
        char what[64];
        snprintf(what, sizeof what, "allgatherv(pattern %d, block %d)", pattern, q);
        bad = check(r, what, b, displ[q], counts[q], t, want_input, &e);
    }
    return bad;
}

static int reduce_scatterv_case(vkt_comm *c, int pattern, vkt_dtype t, vkt_redop op,
                                int inplace, char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c);
    size_t es = vkt_dtype_size(t), counts[8], displ[8];
    v_counts(pattern, n, chunk_elems(t), counts, displ);
    size_t total = displ[n - 1] + counts[n - 1];
    for (size_t j = 0; j < total; j++) tv_set(a, j, t, tv_input(r, j, t));
    char *out = inplace ? a + displ[r] * es : b;
    vkt_status st = vkt_comm_reduce_scatterv(c, a, out, counts, t, op);
    if (st != VKT_OK) return RANK_FAIL(r, "reduce_scatterv: %s", vkt_last_error());
    exp_ctx e = {n, r, displ[r], t, op};
    char what[80];
    snprintf(what, sizeof what, "reduce_scatterv(%s, pattern %d%s)", vkt_redop_name(op),
             pattern, inplace ? ", in place" : "");
    return check(r, what, out, 0, counts[r], t, want_reduced, &e);
}

/* Every rank sends to rank + k and receives from rank - k, for every shift
 * k. The ranks below gcd(n, k) (one per cycle of the shift) receive first, so
 * a blocking send of a message larger than the link's buffer never waits in
 * a circle. Async on odd k. */
static int sendrecv_case(vkt_comm *c, size_t count, vkt_dtype t, char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c), bad = 0;
    for (int k = 1; k < n && !bad; k++) {
        int to = (r + k) % n, from = (r - k + n) % n, g = n, h = k;
        while (h) { int tmp = g % h; g = h; h = tmp; } /* g = gcd(n, k) */
        for (size_t j = 0; j < count; j++) tv_set(a, j, t, tv_input(r * 8 + k, j, t));
        memset(b, 0xee, count * vkt_dtype_size(t));
        vkt_status st;
        if (k % 2) {
            vkt_comm_req *q1 = NULL, *q2 = NULL;
            st = r < g ? vkt_comm_recv_async(c, b, count, t, from, &q1)
                       : vkt_comm_send_async(c, a, count, t, to, &q1);
            if (st == VKT_OK)
                st = r < g ? vkt_comm_send_async(c, a, count, t, to, &q2)
                           : vkt_comm_recv_async(c, b, count, t, from, &q2);
            vkt_status s1 = q1 ? vkt_comm_wait(q1) : st, s2 = q2 ? vkt_comm_wait(q2) : st;
            st = s1 != VKT_OK ? s1 : s2;
        } else if (r < g) {
            st = vkt_comm_recv(c, b, count, t, from);
            if (st == VKT_OK) st = vkt_comm_send(c, a, count, t, to);
        } else {
            st = vkt_comm_send(c, a, count, t, to);
            if (st == VKT_OK) st = vkt_comm_recv(c, b, count, t, from);
        }
        if (st != VKT_OK) return RANK_FAIL(r, "send/recv shift %d: %s", k, vkt_last_error());
        exp_ctx e = {n, from * 8 + k, 0, t, 0};
        char what[64];
        snprintf(what, sizeof what, "recv(count %zu, shift %d)", count, k);
        bad = check(r, what, b, 0, count, t, want_input, &e);
    }
    return bad;
}

/* The new collectives in flight at once: reduce, all-gatherv and
 * reduce-scatterv issued together; the counts array is clobbered right after
 * the issue (the _async forms must have copied it). */
static int async_v_case(vkt_comm *c, char *a, char *b, char *d)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c), bad = 0;
    vkt_dtype t = VKT_DTYPE_F32;
    size_t counts[8], displ[8], cnt = 2 * chunk_elems(t) + 3;
    v_counts(2, n, chunk_elems(t), counts, displ);
    size_t total = displ[n - 1] + counts[n - 1];
    char *ag_out = b + total * 4, *red_in = d, *red_out = d + cnt * 4;
    for (size_t j = 0; j < total; j++) tv_set(a, j, t, tv_input(r, j, t));
    for (size_t j = 0; j < cnt; j++) tv_set(red_in, j, t, tv_input(r, j, t));
    vkt_comm_req *q1 = NULL, *q2 = NULL, *q3 = NULL;
    if (vkt_comm_reduce_async(c, red_in, red_out, cnt, t, VKT_REDOP_MAX, n - 1, &q1) ||
        vkt_comm_allgatherv_async(c, a, ag_out, counts, t, &q2) ||
        vkt_comm_reduce_scatterv_async(c, a, b, counts, t, VKT_REDOP_SUM, &q3))
        return RANK_FAIL(r, "async issue: %s", vkt_last_error());
    size_t keep[8];
    memcpy(keep, counts, sizeof keep);
    memset(counts, 0xff, sizeof counts);
    if (vkt_comm_wait(q3) || vkt_comm_wait(q1) || vkt_comm_wait(q2))
        return RANK_FAIL(r, "async wait: %s", vkt_last_error());
    exp_ctx e1 = {n, r, 0, t, VKT_REDOP_MAX}, e3 = {n, r, displ[r], t, VKT_REDOP_SUM};
    if (r == n - 1) bad |= check(r, "async reduce", red_out, 0, cnt, t, want_reduced, &e1);
    bad |= check(r, "async reduce_scatterv", b, 0, keep[r], t, want_reduced, &e3);
    for (int q = 0; q < n && !bad; q++) { /* every rank sent its own prefix of a */
        exp_ctx e2 = {n, q, 0, t, 0};
        bad |= check(r, "async allgatherv", ag_out, displ[q], keep[q], t, want_input, &e2);
    }
    return bad;
}

/* White box: the all-reduce algorithm is picked by size against the comm's
 * latency threshold; every rank sets it at the same point. */
static void set_latency(vkt_comm *c, int64_t bytes) { c->latency_bytes = bytes; }

/* Two collectives in flight at once (plus a third of another kind). */
static int async_case(vkt_comm *c, char *a, char *b, char *d)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c), bad = 0, done = 0;
    size_t cnt = 3 * CHUNK + 5;
    for (size_t j = 0; j < cnt; j++) {
        tv_set(a, j, VKT_DTYPE_F32, tv_input(r, j, VKT_DTYPE_F32));
        tv_set(b, j, VKT_DTYPE_I32, tv_input(r, j, VKT_DTYPE_I32));
    }
    for (size_t j = 0; j < 9; j++)
        tv_set(d, (size_t)r * 9 + j, VKT_DTYPE_F64, tv_input(r, j, VKT_DTYPE_F64));
    vkt_comm_req *q1 = NULL, *q2 = NULL, *q3 = NULL;
    if (vkt_comm_allreduce_async(c, a, a, cnt, VKT_DTYPE_F32, VKT_REDOP_SUM, &q1) ||
        vkt_comm_allreduce_async(c, b, b, cnt, VKT_DTYPE_I32, VKT_REDOP_MAX, &q2) ||
        vkt_comm_allgather_async(c, d + (size_t)r * 9 * 8, d, 9, VKT_DTYPE_F64, &q3))
        return RANK_FAIL(r, "async issue: %s", vkt_last_error());
    if (vkt_comm_test(q2, &done) != VKT_OK) return RANK_FAIL(r, "test");
    if (vkt_comm_wait(q2) || vkt_comm_wait(q1) || vkt_comm_wait(q3)) /* any order */
        return RANK_FAIL(r, "async wait: %s", vkt_last_error());
    exp_ctx e1 = {n, r, 0, VKT_DTYPE_F32, VKT_REDOP_SUM};
    exp_ctx e2 = {n, r, 0, VKT_DTYPE_I32, VKT_REDOP_MAX};
    bad |= check(r, "async allreduce 1", a, 0, cnt, VKT_DTYPE_F32, want_reduced, &e1);
    bad |= check(r, "async allreduce 2", b, 0, cnt, VKT_DTYPE_I32, want_reduced, &e2);
    for (int q = 0; q < n; q++) {
        exp_ctx e3 = {n, q, 0, VKT_DTYPE_F64, 0};
        bad |= check(r, "async allgather", d, (size_t)q * 9, 9, VKT_DTYPE_F64, want_input, &e3);
    }
    return bad;
}

static int run_all_cases(vkt_comm *c, char *a, char *b, char *d)
{
    int n = vkt_comm_size(c), bad = 0;
    for (int t = 0; t < VKT_DTYPE_COUNT_; t++) {
        size_t ce = chunk_elems(t);
        const size_t counts[] = {0, 1, 7, ce - 1, ce + 1, (size_t)n * ce - 1, (size_t)n * ce + 1};
        /* Both all-reduce algorithms at every size: the ring, then recursive
         * doubling; then the default threshold (a mix). */
        for (int alg = 0; alg < 2; alg++) {
            set_latency(c, alg == 0 ? 0 : INT64_MAX);
            for (int op = 0; op < VKT_REDOP_COUNT_; op++)
                for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
                    bad |= allreduce_case(c, counts[k], t, op, (k + (size_t)op + alg) % 2, a, b);
        }
        set_latency(c, 16 << 10);
        for (int op = 0; op < VKT_REDOP_COUNT_; op++)
            for (size_t k = 0; k < 5; k++)
                bad |= reduce_case(c, counts[k], t, op, (int)(k + (size_t)op) % n,
                                   (k + (size_t)op) % 2, a, b);
        for (int pat = 0; pat < 4; pat++) {
            bad |= allgatherv_case(c, pat, t, pat % 2, a, b);
            for (int op = 0; op < VKT_REDOP_COUNT_; op++)
                bad |= reduce_scatterv_case(c, pat, t, op, (pat + op) % 2, a, b);
        }
        if (n > 1) {
            bad |= sendrecv_case(c, t == VKT_DTYPE_F32 ? 0 : 1, t, a, b);
            bad |= sendrecv_case(c, t == VKT_DTYPE_F32 ? 7 : 3 * ce + 1, t, a, b);
        }
        const size_t rcs[] = {0, 1, 7, ce + 1};
        for (int op = 0; op < VKT_REDOP_COUNT_; op++)
            for (size_t k = 0; k < 4; k++)
                bad |= reduce_scatter_case(c, rcs[k], t, op, (k + (size_t)op) % 2, a, b);
        for (size_t k = 0; k < 4; k++) bad |= allgather_case(c, rcs[k], t, (int)k % 2, a, b);
        const size_t bcs[] = {0, 1, ce + 1, 3 * ce};
        for (size_t k = 0; k < 4; k++) bad |= broadcast_case(c, bcs[k], t, (int)k % n, a);
        if (bad) return bad; /* one failing dtype says enough */
    }
    bad |= broadcast_case(c, 5, VKT_DTYPE_F32, n - 1, a);
    bad |= async_case(c, a, b, d);
    bad |= async_v_case(c, a, b, d);
    bad |= allreduce_case(c, BIG / 4 + 3, VKT_DTYPE_F32, VKT_REDOP_SUM, 0, a, b);
    bad |= allreduce_case(c, BIG / 2 + 1, VKT_DTYPE_BF16, VKT_REDOP_AVG, 1, a, b);
    bad |= reduce_case(c, BIG / 4 + 3, VKT_DTYPE_F32, VKT_REDOP_SUM, n - 1, 0, a, b);
    bad |= allgatherv_case(c, 4, VKT_DTYPE_F32, 1, a, b);
    bad |= reduce_scatterv_case(c, 4, VKT_DTYPE_F32, VKT_REDOP_AVG, 0, a, b);
    set_latency(c, INT64_MAX); /* recursive doubling of a few MiB */
    bad |= allreduce_case(c, BIG / 8 + 1, VKT_DTYPE_F64, VKT_REDOP_MAX, 1, a, b);
    set_latency(c, 16 << 10);
    /* More than the shm ring (4 MiB) holds: a send that waits for its recv. */
    if (n > 1 && n <= 4) bad |= sendrecv_case(c, P2P_BIG / 4 + 5, VKT_DTYPE_F32, a, b);
    for (int i = 0; i < 3; i++)
        if (vkt_comm_barrier(c) != VKT_OK)
            bad |= RANK_FAIL(vkt_comm_rank(c), "barrier: %s", vkt_last_error());
    return bad;
}

static int world_body(int rank, int n, void *arg)
{
    group *g = arg;
    vkt_comm_opts o = test_opts(rank, n, g->store, 20.0);
    o.chunk_bytes = CHUNK;
    o.checksum = g->checksum;
    o.backend = g->backend;
    /* Several sockets per tcp link at 2 and 5 ranks (ignored by shm at 4). */
    o.tcp_sockets = n == 2 ? 2 : n == 5 ? 3 : n == 4 ? 2 : 1;
    if (g->serve_rank0) o.store_server = -1;
    vkt_comm *c = NULL;
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    /* All ranks share this host: auto and shm must pick shared memory. */
    const char *want = n == 1 ? "none" : g->backend == VKT_COMM_BACKEND_TCP ? "tcp" : "shm";
    if (strcmp(vkt_comm_link(c), want) != 0)
        return RANK_FAIL(rank, "link is %s, expected %s", vkt_comm_link(c), want);
    int socks = n > 1 && g->backend == VKT_COMM_BACKEND_TCP ? o.tcp_sockets : n > 1;
    if (c->nto != socks || c->nfrom != socks) /* white box: the sockets of each link */
        return RANK_FAIL(rank, "%d/%d sockets to next/from prev, expected %d", c->nto,
                         c->nfrom, socks);
    size_t cap = P2P_BIG + (size_t)n * CHUNK * 8 + 4096;
    char *a = malloc(cap), *b = malloc(cap), *d = malloc(4 * CHUNK + 64);
    int bad = !a || !b || !d ? RANK_FAIL(rank, "malloc") : run_all_cases(c, a, b, d);
    free(a);
    free(b);
    free(d);
    vkt_comm_destroy(c);
    return bad;
}

/* A port that is free now (bind 0, read it back, close): only for the case
 * where rank 0 must bind a fixed port itself. */
static int free_port(void)
{
    int fd = -1, port = 0;
    if (vkt__net_listen("127.0.0.1", 0, &fd, &port) != VKT_OK) return 0;
    vkt__close(fd);
    return port;
}

static void run_world(int n)
{
    /* tcp for 2, 5 and 7 ranks, shm for 3 and 8, auto (= shm here) otherwise. */
    vkt_comm_backend be = n == 2 || n == 5 || n == 7 ? VKT_COMM_BACKEND_TCP
                          : n == 3 || n == 8         ? VKT_COMM_BACKEND_SHM
                                                     : VKT_COMM_BACKEND_AUTO;
    group g = {{0}, 0, n == 2 || n == 5 || n == 6, be};
    void *srv = NULL;
    char dir[] = "/tmp/vkt-coll-XXXXXX";
    if (n == 3 || n == 7) { /* file store (with shm at 3 ranks, tcp at 7) */
        assert_non_null(mkdtemp(dir));
        snprintf(g.store, sizeof g.store, "file:%s", dir);
    } else if (n == 4) { /* rank 0 serves the store */
        g.serve_rank0 = 1;
        snprintf(g.store, sizeof g.store, "tcp://127.0.0.1:%d", free_port());
    } else {
        srv = start_store(TEST_SECRET, g.store, sizeof g.store);
        assert_non_null(srv);
    }
    double t0 = vkt__now();
    int failed = run_ranks(n, world_body, &g, DEADLINE_S, NULL);
    static const char *const names[] = {"auto", "tcp", "shm"};
    printf("world %d (%s, %s%s): %.2f s\n", n, names[be], g.store,
           g.checksum ? ", checksums" : "", vkt__now() - t0);
    stop_store(srv);
    if (n == 3 || n == 7) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        (void)!system(cmd);
    }
    assert_int_equal(failed, 0);
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
WORLD_TEST(5)
WORLD_TEST(6)
WORLD_TEST(7)
WORLD_TEST(8)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_1), cmocka_unit_test(test_world_2),
        cmocka_unit_test(test_world_3), cmocka_unit_test(test_world_4),
        cmocka_unit_test(test_world_5), cmocka_unit_test(test_world_6),
        cmocka_unit_test(test_world_7), cmocka_unit_test(test_world_8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
