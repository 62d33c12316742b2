/* Backend verbs for real: the ring collectives over RDMA queue pairs on the
 * soft-RoCE devices rxe0 and rxe1 (ranks placed alternately, VKT_IB_DEVICE
 * per rank), world sizes 2..4, checked against a serial reference; the
 * devices' port counters must grow by at least the payload (the bytes went
 * through verbs, not some TCP fallback); and a rank killed mid-all-reduce
 * must become a named error on the others before the deadline.
 *
 * Needs the rxe devices: run it inside the VM (tools/rxe_vm.sh run --
 * build/tests/transport/test_transport_verbs). Without them it fails. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "transport_int.h"

#define CHUNK (16u << 10)
#define BIG (3u << 20) /* bytes */
#define DEADLINE_S 240.0
#define FAULT_TIMEOUT_S 5.0
#define SLACK_S 3.0

static const char *const devices[2] = {"rxe0", "rxe1"};

typedef struct group {
    char store[160];
    double fault_took[4];
    int victim;
} group;

/* ------------------------------------------------------------ counters -- */

static int read_u64(const char *path, uint64_t *v)
{
    FILE *f = fopen(path, "re");
    unsigned long long x = 0;
    int ok = f && fscanf(f, "%llu", &x) == 1;
    if (f) fclose(f);
    *v = x;
    return ok;
}

/* Bytes a device has sent, as a lower bound that a TCP fallback would leave
 * at zero: the IB counter port_xmit_data (4-byte words) when the driver fills
 * it, else rxe's hw_counters/sent_pkts times 4096 (no RoCE packet carries
 * more payload than the largest MTU, so packets * 4096 >= payload bytes). */
static uint64_t sent_bytes(const char *dev)
{
    char p[160];
    uint64_t v = 0;
    snprintf(p, sizeof p, "/sys/class/infiniband/%s/ports/1/counters/port_xmit_data", dev);
    if (read_u64(p, &v) && v) return v * 4;
    snprintf(p, sizeof p, "/sys/class/infiniband/%s/ports/1/hw_counters/sent_pkts", dev);
    if (!read_u64(p, &v))
        fail_msg("no port counters for %s (%s): run this test in the rxe VM "
                 "(tools/rxe_vm.sh run -- build/tests/transport/test_transport_verbs)", dev, p);
    return v * 4096;
}

static uint64_t sent_all(void) { return sent_bytes(devices[0]) + sent_bytes(devices[1]); }

/* ----------------------------------------------------------- reference -- */

static int check(int rank, const char *what, const void *buf, size_t off, size_t n,
                 vkt_dtype t, int nr, int q, vkt_redop op, int reduced, size_t base)
{
    for (size_t i = 0; i < n; i++) {
        double g = tv_get(buf, off + i, t);
        double w = reduced ? tv_expect(nr, base + i, t, op) : tv_input(q, base + i, t);
        if (!tv_close(g, w, t))
            return RANK_FAIL(rank, "%s %s count %zu: element %zu is %.17g, expected %.17g",
                             what, vkt_dtype_name(t), n, i, g, w);
    }
    return 0;
}

/* ------------------------------------------------------------ the cases -- */

typedef struct dcase {
    vkt_dtype t;
    vkt_redop op;
} dcase;

static const dcase cases[] = {
    {VKT_DTYPE_F32, VKT_REDOP_SUM},
    {VKT_DTYPE_F16, VKT_REDOP_AVG},
    {VKT_DTYPE_I64, VKT_REDOP_MAX},
};

static int run_sizes(vkt_comm *c, const dcase *dc, char *a, char *b)
{
    int r = vkt_comm_rank(c), n = vkt_comm_size(c), bad = 0;
    vkt_dtype t = dc->t;
    size_t es = vkt_dtype_size(t), ce = CHUNK / es;
    size_t sizes[] = {0, 1, 7, ce - 1, ce + 1, BIG / es};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0] && !bad; k++) {
        size_t cnt = sizes[k];
        if (cnt == BIG / es && t != VKT_DTYPE_F32) continue; /* the big one once */
        /* all-reduce, out of place then in place */
        for (int inplace = 0; inplace < 2 && !bad; inplace++) {
            for (size_t j = 0; j < cnt; j++) tv_set(a, j, t, tv_input(r, j, t));
            memset(b, 0xee, cnt * es);
            if (vkt_comm_allreduce(c, a, inplace ? a : b, cnt, t, dc->op) != VKT_OK)
                return RANK_FAIL(r, "allreduce: %s", vkt_last_error());
            bad = check(r, "allreduce", inplace ? a : b, 0, cnt, t, n, r, dc->op, 1, 0);
        }
        /* reduce-scatter: cnt elements per rank */
        size_t rc = cnt / (size_t)n ? cnt / (size_t)n : cnt;
        for (size_t j = 0; j < rc * (size_t)n && !bad; j++) tv_set(a, j, t, tv_input(r, j, t));
        if (!bad && vkt_comm_reduce_scatter(c, a, b, rc, t, dc->op) != VKT_OK)
            return RANK_FAIL(r, "reduce_scatter: %s", vkt_last_error());
        if (!bad) bad = check(r, "reduce_scatter", b, 0, rc, t, n, r, dc->op, 1, (size_t)r * rc);
        /* all-gather: rc elements from each rank */
        for (size_t j = 0; j < rc && !bad; j++) tv_set(a, j, t, tv_input(r, j, t));
        if (!bad && vkt_comm_allgather(c, a, b, rc, t) != VKT_OK)
            return RANK_FAIL(r, "allgather: %s", vkt_last_error());
        for (int q = 0; q < n && !bad; q++)
            bad = check(r, "allgather", b, (size_t)q * rc, rc, t, n, q, dc->op, 0, 0);
        /* broadcast from the last rank */
        int root = n - 1;
        for (size_t j = 0; j < cnt && !bad; j++)
            tv_set(a, j, t, r == root ? tv_input(root, j, t) : 99);
        if (!bad && vkt_comm_broadcast(c, a, cnt, t, root) != VKT_OK)
            return RANK_FAIL(r, "broadcast: %s", vkt_last_error());
        if (!bad) bad = check(r, "broadcast", a, 0, cnt, t, n, root, dc->op, 0, 0);
    }
    return bad;
}

static vkt_status open_comm(int rank, int n, const char *store, double timeout_s, vkt_comm **c)
{
    setenv("VKT_IB_DEVICE", devices[rank % 2], 1);
    vkt_comm_opts o = test_opts(rank, n, store, timeout_s);
    o.backend = VKT_COMM_BACKEND_VERBS;
    o.chunk_bytes = CHUNK;
    return vkt_comm_create(&o, c);
}

static int group_body(int rank, int n, void *arg)
{
    group *g = arg;
    vkt_comm *c = NULL;
    if (open_comm(rank, n, g->store, 60, &c) != VKT_OK)
        return RANK_FAIL(rank, "create (verbs on %s): %s", devices[rank % 2], vkt_last_error());
    int bad = strcmp(vkt_comm_link(c), "verbs") != 0
                  ? RANK_FAIL(rank, "link is %s, expected verbs", vkt_comm_link(c))
                  : 0;
    char *a = malloc(2 * BIG + 64), *b = malloc(2 * BIG * 4 + 64);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0] && !bad; k++)
        bad = run_sizes(c, &cases[k], a, b);
    free(a);
    free(b);
    vkt_comm_destroy(c);
    return bad;
}

static void run_world(int n)
{
    group *g = mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g != MAP_FAILED);
    memset(g, 0, sizeof *g);
    void *srv = start_store(TEST_SECRET, g->store, sizeof g->store);
    assert_non_null(srv);
    uint64_t before = sent_all();
    double t0 = vkt__now();
    int failed = run_ranks(n, group_body, g, DEADLINE_S, NULL);
    uint64_t moved = sent_all() - before;
    /* The big f32 all-reduce alone sends 2(n-1)/n of BIG from each rank. */
    uint64_t payload = 2u * (uint64_t)(n - 1) * BIG;
    printf("world %d over verbs: %.2f s, rxe0+rxe1 sent %llu bytes (payload >= %llu)\n", n,
           vkt__now() - t0, (unsigned long long)moved, (unsigned long long)payload);
    stop_store(srv);
    munmap(g, sizeof *g);
    assert_int_equal(failed, 0);
    assert_true(moved >= payload);
}

static void test_world2(void **state)
{
    (void)state;
    run_world(2);
}

static void test_world3(void **state)
{
    (void)state;
    run_world(3);
}

static void test_world4(void **state)
{
    (void)state;
    run_world(4);
}

/* ---------------------------------------------------------- killed rank -- */

static int victim_body(int rank, int n, void *arg)
{
    group *g = arg;
    vkt_comm *c = NULL;
    if (open_comm(rank, n, g->store, FAULT_TIMEOUT_S, &c) != VKT_OK)
        return RANK_FAIL(rank, "create: %s", vkt_last_error());
    size_t count = BIG / 4;
    float *buf = calloc(count, sizeof *buf);
    int bad = 0;
    for (int it = 0; it < 200 && !bad; it++) {
        if (rank == g->victim && it == 3) {
            /* Die in the middle of the collective: the others are already in it. */
            vkt_comm_req *rq = NULL;
            if (vkt_comm_allreduce_async(c, buf, buf, count, VKT_DTYPE_F32, VKT_REDOP_SUM,
                                         &rq) == VKT_OK)
                usleep(20000);
            raise(SIGKILL);
        }
        double t0 = vkt__now();
        vkt_status st = vkt_comm_allreduce(c, buf, buf, count, VKT_DTYPE_F32, VKT_REDOP_SUM);
        if (st == VKT_OK) continue;
        double took = vkt__now() - t0;
        const char *msg = vkt_last_error();
        char want[32];
        snprintf(want, sizeof want, "rank %d", g->victim);
        printf("rank %d: %s after %.2f s: %s\n", rank, vkt_status_name(st), took, msg);
        g->fault_took[rank] = took;
        if (st != VKT_ERR_REMOTE && st != VKT_ERR_TIMEOUT)
            bad = RANK_FAIL(rank, "unexpected status %s", vkt_status_name(st));
        else if (took > FAULT_TIMEOUT_S + SLACK_S)
            bad = RANK_FAIL(rank, "the error took %.1f s", took);
        else if (!strstr(msg, "allreduce #") || !strstr(msg, want))
            bad = RANK_FAIL(rank, "message does not name the op and %s: %s", want, msg);
        else
            bad = 2;
    }
    if (!bad) bad = RANK_FAIL(rank, "no error although rank %d is gone", g->victim);
    vkt_comm_destroy(c);
    free(buf);
    return bad == 2 ? 0 : 1;
}

static void test_killed_rank(void **state)
{
    (void)state;
    group *g = mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g != MAP_FAILED);
    memset(g, 0, sizeof *g);
    void *srv = start_store(TEST_SECRET, g->store, sizeof g->store);
    assert_non_null(srv);
    g->victim = 1;
    int codes[3];
    run_ranks(3, victim_body, g, 60, codes);
    stop_store(srv);
    munmap(g, sizeof *g);
    assert_int_equal(codes[0], 0);
    assert_int_equal(codes[2], 0);
    assert_int_equal(codes[1], -SIGKILL);
}

/* Backend auto with active RDMA ports: ranks on one host still take shm
 * (verbs is for links between hosts), and the verbs listener that auto
 * opens next to it must not get in the way. */
static int auto_body(int rank, int n, void *arg)
{
    group *g = arg;
    vkt_comm *c = NULL;
    vkt_comm_opts o = test_opts(rank, n, g->store, 30);
    float v[4] = {1, 2, 3, (float)rank};
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    int bad = strcmp(vkt_comm_link(c), "shm") != 0
                  ? RANK_FAIL(rank, "auto on one host chose %s, expected shm", vkt_comm_link(c))
                  : 0;
    if (!bad && vkt_comm_allreduce(c, v, v, 4, VKT_DTYPE_F32, VKT_REDOP_SUM) != VKT_OK)
        bad = RANK_FAIL(rank, "allreduce: %s", vkt_last_error());
    if (!bad && (v[0] != 2 || v[3] != 1)) bad = RANK_FAIL(rank, "wrong sum %g %g", v[0], v[3]);
    vkt_comm_destroy(c);
    return bad;
}

static void test_auto_same_host(void **state)
{
    (void)state;
    group *g = mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g != MAP_FAILED);
    memset(g, 0, sizeof *g);
    void *srv = start_store(TEST_SECRET, g->store, sizeof g->store);
    assert_non_null(srv);
    int failed = run_ranks(2, auto_body, g, 60, NULL);
    stop_store(srv);
    munmap(g, sizeof *g);
    assert_int_equal(failed, 0);
}

/* A device that is not there: a named error, not a crash or a tcp link. */
static void test_missing_device(void **state)
{
    (void)state;
    char store[160];
    void *srv = start_store(TEST_SECRET, store, sizeof store);
    assert_non_null(srv);
    setenv("VKT_IB_DEVICE", "mlx5_nope", 1);
    vkt_comm_opts o = test_opts(0, 2, store, 5);
    o.backend = VKT_COMM_BACKEND_VERBS;
    vkt_comm *c = NULL;
    vkt_status st = vkt_comm_create(&o, &c);
    stop_store(srv);
    unsetenv("VKT_IB_DEVICE");
    printf("missing device: %s: %s\n", vkt_status_name(st), vkt_last_error());
    assert_int_equal(st, VKT_ERR_UNSUPPORTED);
    assert_non_null(strstr(vkt_last_error(), "mlx5_nope"));
    assert_null(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_device),
        cmocka_unit_test(test_auto_same_host),
        cmocka_unit_test(test_world2),
        cmocka_unit_test(test_world3),
        cmocka_unit_test(test_world4),
        cmocka_unit_test(test_killed_rank),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
