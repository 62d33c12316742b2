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

#include "harness.h"
#include "transport_int.h"

#define CHUNK 4096      /* small chunks: many frames per segment even at small sizes */
#define BIG (3u << 20)  /* "a few MiB" case, bytes */
#define DEADLINE_S 90.0

typedef struct group {
    char store[160];
    int serve_rank0; /* rank 0 serves the TCP store itself */
    int checksum;
    vkt_comm_backend backend;
} group;

/* Closed-form input of rank q at element j: small integers, so sums are
 * exact in every dtype (|sum| <= 8 * 8 < 256, exact even in bf16). */
static double input(int q, size_t j, vkt_dtype t)
{
    double v = (double)((int)((j * 7 + (size_t)q * 13) % 17) - 8);
    if (t == VKT_DTYPE_I64) v += (double)((int64_t)q << 33); /* exercise high bits */
    return v;
}

static double expect(int n, size_t j, vkt_dtype t, vkt_redop op)
{
    double acc = input(0, j, t);
    for (int q = 1; q < n; q++) {
        double v = input(q, j, t);
        acc = op == VKT_REDOP_MAX ? fmax(acc, v) : op == VKT_REDOP_MIN ? fmin(acc, v) : acc + v;
    }
    if (op == VKT_REDOP_AVG) {
        if (t == VKT_DTYPE_I32 || t == VKT_DTYPE_I64) return (double)((int64_t)acc / n);
        return acc / n;
    }
    return acc;
}

static int close_enough(double got, double want, vkt_dtype t)
{
    static const double tol[] = {2e-6, 2e-3, 1e-2, 1e-12, 0, 0};
    return fabs(got - want) <= tol[t] * fmax(1.0, fabs(want));
}

static size_t chunk_elems(vkt_dtype t) { return CHUNK / vkt_dtype_size(t); }

static int check(int rank, const char *what, const void *buf, size_t off, size_t n,
                 vkt_dtype t, double (*want)(size_t, void *), void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        double g = tv_get(buf, off + i, t), w = want(i, ctx);
        if (!close_enough(g, w, t))
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
    return expect(e->n, e->base + i, e->t, e->op);
}

static double want_input(size_t i, void *p)
{
    exp_ctx *e = p;
    return input(e->q, e->base + i, e->t);
}

/* ------------------------------------------------------------ the cases -- */

static int allreduce_case(vkt_comm *c, size_t count, vkt_dtype t, vkt_redop op, int inplace,
                          char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c);
    for (size_t j = 0; j < count; j++) tv_set(a, j, t, input(r, j, t));
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
    for (size_t j = 0; j < rc * (size_t)n; j++) tv_set(a, j, t, input(r, j, t));
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
    for (size_t j = 0; j < sc; j++) tv_set(mine, j, t, input(r, j, t));
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
    for (size_t j = 0; j < count; j++) tv_set(a, j, t, r == root ? input(root, j, t) : 99);
    vkt_status st = vkt_comm_broadcast(c, a, count, t, root);
    if (st != VKT_OK) return RANK_FAIL(r, "broadcast: %s", vkt_last_error());
    exp_ctx e = {n, root, 0, t, 0};
    return check(r, "broadcast", a, 0, count, t, want_input, &e);
}

/* Two collectives in flight at once (plus a third of another kind). */
static int async_case(vkt_comm *c, char *a, char *b, char *d)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c), bad = 0, done = 0;
    size_t cnt = 3 * CHUNK + 5;
    for (size_t j = 0; j < cnt; j++) {
        tv_set(a, j, VKT_DTYPE_F32, input(r, j, VKT_DTYPE_F32));
        tv_set(b, j, VKT_DTYPE_I32, input(r, j, VKT_DTYPE_I32));
    }
    for (size_t j = 0; j < 9; j++)
        tv_set(d, (size_t)r * 9 + j, VKT_DTYPE_F64, input(r, j, VKT_DTYPE_F64));
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
        for (int op = 0; op < VKT_REDOP_COUNT_; op++)
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
                bad |= allreduce_case(c, counts[k], t, op, (k + (size_t)op) % 2, a, b);
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
    bad |= allreduce_case(c, BIG / 4 + 3, VKT_DTYPE_F32, VKT_REDOP_SUM, 0, a, b);
    bad |= allreduce_case(c, BIG / 2 + 1, VKT_DTYPE_BF16, VKT_REDOP_AVG, 1, a, b);
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
    if (g->serve_rank0) o.store_server = -1;
    vkt_comm *c = NULL;
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    /* All ranks share this host: auto and shm must pick shared memory. */
    const char *want = n == 1 ? "none" : g->backend == VKT_COMM_BACKEND_TCP ? "tcp" : "shm";
    if (strcmp(vkt_comm_link(c), want) != 0)
        return RANK_FAIL(rank, "link is %s, expected %s", vkt_comm_link(c), want);
    size_t cap = BIG + (size_t)n * CHUNK * 8 + 4096;
    char *a = malloc(cap), *b = malloc(cap), *d = malloc(8 * 9 * 8);
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
