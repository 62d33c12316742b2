/* Backend verbs under stress and faults, on the soft-RoCE devices of the VM
 * (tools/rxe_vm.sh; label verbs, fails without rxe0/rxe1):
 *   - a ring of 8 KiB (VKT_IB_RING_BYTES) with 64 KiB frames: every frame
 *     wraps the ring several times and the sender waits for credits; ranks
 *     take turns being slow receivers; results checked;
 *   - the registration cache: rings of a closed communicator serve the next
 *     one without ibv_reg_mr, and nothing stays registered after the last;
 *   - a receiver QP put into the error state (VKT_INJECT_FAULT=ib_qp_error)
 *     and a wrong rkey (ib_bad_rkey): each rank's error names its device, the
 *     peer rank and the ibv_wc_status_str text;
 *   - backend auto between two "hosts" (network namespaces, as
 *     test_two_hosts.c): verbs when the ports reach each other; a port on a
 *     dead-end fabric (rxe2 on a veth whose other end has no RDMA) makes every
 *     rank fall back to tcp with one warning; backend verbs there fails;
 *     links that connect but cannot carry data (a wrong rkey) are caught by
 *     the probe frame and fall back too; a rank whose verbs connect fails
 *     before its side channel reaches the peer (ib_connect_fail) makes the
 *     peer fall back within seconds, not after comm_timeout_s; after every
 *     fallback the direct links (a small all-reduce by recursive doubling,
 *     send/recv) work over tcp; with verbs settled, a direct verbs link whose
 *     connect fails is made over tcp for that pair. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>
#include <infiniband/verbs.h>

#include "comm_int.h"
#include "harness.h"
#include "transport_int.h"
#include "verbs_int.h"

static const char *const devices[2] = {"rxe0", "rxe1"};

typedef struct group {
    char store[160];
    char more[2][160]; /* the registration cache test's second and third comm */
    void *srv[3];      /* the parent's store handles */
    char ns[2][32]; /* two-host cases */
    const char *dev[4];
    int backend;
    int expect_tcp;
    const char *fault; /* VKT_INJECT_FAULT for the two-host ranks, or NULL */
    const char *p2p_to[2]; /* the kind of rank r's direct link to the other (NULL: the ring's) */
    double max_create_s;   /* > 0: vkt_comm_create must take no longer */
    int p2p_fails;         /* the direct links' first data fails (a wrong rkey) */
    int said_ulimit[4];
} group;

static group *group_new(int with_store)
{
    group *g = mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(g != MAP_FAILED);
    memset(g, 0, sizeof *g);
    if (with_store) {
        g->srv[0] = start_store(TEST_SECRET, g->store, sizeof g->store);
        assert_non_null(g->srv[0]);
    }
    return g;
}

static void group_free(group *g)
{
    /* Newest first: a store process forked later holds the control pipes of
     * the earlier ones, which would otherwise wait for it. */
    for (int i = 2; i >= 0; i--)
        if (g->srv[i]) stop_store(g->srv[i]);
    munmap(g, sizeof *g);
}

static void rank_env(int rank, const char *dev)
{
    char r[16];
    snprintf(r, sizeof r, "%d", rank);
    setenv("RANK", r, 1); /* VKT_INJECT_FAULT's @RANK */
    setenv("VKT_IB_DEVICE", dev, 1);
}

static vkt_status open_verbs(int rank, int n, const char *store, double timeout_s, size_t chunk,
                             vkt_comm **c)
{
    rank_env(rank, devices[rank % 2]);
    vkt_comm_opts o = test_opts(rank, n, store, timeout_s);
    o.backend = VKT_COMM_BACKEND_VERBS;
    o.chunk_bytes = chunk;
    return vkt_comm_create(&o, c);
}

static float value(int q, size_t j) { return (float)((int)((j * 5 + (size_t)q * 11) % 23) - 11); }

static int check_allreduce(int rank, int n, const float *x, size_t count, const char *what)
{
    for (size_t j = 0; j < count; j++) {
        double want = 0;
        for (int q = 0; q < n; q++) want += value(q, j);
        if (fabs(x[j] - want) > 1e-5 * fmax(1, fabs(want)))
            return RANK_FAIL(rank, "%s: element %zu of %zu is %g, expected %g", what, j, count,
                             x[j], want);
    }
    return 0;
}

/* The name of the work-completion status in msg (ibv_wc_status_str's text),
 * or NULL when the message carries none. */
static const char *wc_status_in(const char *msg)
{
    for (int s = IBV_WC_LOC_LEN_ERR; s <= IBV_WC_GENERAL_ERR; s++)
        if (strstr(msg, ibv_wc_status_str((enum ibv_wc_status)s)))
            return ibv_wc_status_str((enum ibv_wc_status)s);
    return NULL;
}

/* msg must name device dev and "rank <peer>", and a work-completion status
 * when need_status (printed when there is one). */
static int check_named(int rank, const char *msg, const char *dev, int peer, int need_status)
{
    char want[32];
    snprintf(want, sizeof want, "rank %d", peer);
    const char *wc = wc_status_in(msg);
    if (!strstr(msg, dev) || !strstr(msg, want) || (need_status && !wc))
        return RANK_FAIL(rank, "the error should name %s, %s%s: %s", dev, want,
                         need_status ? " and a verbs status" : "", msg);
    printf("rank %d: the error names %s, %s, status \"%s\"\n", rank, dev, want,
           wc ? wc : "(none)");
    return 0;
}

/* ---------------------------------------------------------------- stress -- */

#define STRESS_RING "8192"
#define STRESS_CHUNK (64u << 10) /* frames of 8 ring sizes */

static int stress_body(int rank, int n, void *arg)
{
    group *g = arg;
    setenv("VKT_IB_RING_BYTES", STRESS_RING, 1);
    vkt_comm *c = NULL;
    if (open_verbs(rank, n, g->store, 60, STRESS_CHUNK, &c) != VKT_OK)
        return RANK_FAIL(rank, "create: %s", vkt_last_error());
    const size_t counts[] = {1, 2047, 16384 + 5, 65536 * 2 + 3, 100003};
    size_t big = 65536 * 2 + 3;
    float *x = malloc(big * n * sizeof *x), *y = malloc(big * n * sizeof *y);
    int bad = !x || !y ? RANK_FAIL(rank, "malloc") : 0;
    srand(1234u + (unsigned)rank);
    for (int it = 0; it < 2 * n && !bad; it++) {
        size_t cnt = counts[it % 5];
        /* One rank at a time comes late: its senders fill the 8 KiB ring
         * and wait for credits until it starts receiving. */
        if (it % n == rank) usleep(50000 + (useconds_t)(rand() % 100000));
        for (size_t j = 0; j < cnt; j++) x[j] = value(rank, j);
        char what[64];
        snprintf(what, sizeof what, "iteration %d: allreduce of %zu floats", it, cnt);
        if (vkt_comm_allreduce(c, x, x, cnt, VKT_DTYPE_F32, VKT_REDOP_SUM) != VKT_OK)
            bad = RANK_FAIL(rank, "%s: %s", what, vkt_last_error());
        else
            bad = check_allreduce(rank, n, x, cnt, what);
        /* all-gather: pure forwarding through the small rings */
        for (size_t j = 0; j < cnt && !bad; j++) x[j] = value(rank, j);
        if (!bad && vkt_comm_allgather(c, x, y, cnt, VKT_DTYPE_F32) != VKT_OK)
            bad = RANK_FAIL(rank, "%s (allgather): %s", what, vkt_last_error());
        for (int q = 0; q < n && !bad; q++)
            for (size_t j = 0; j < cnt && !bad; j++)
                if (y[(size_t)q * cnt + j] != value(q, j))
                    bad = RANK_FAIL(rank, "%s: allgather block %d element %zu is %g", what, q,
                                    j, y[(size_t)q * cnt + j]);
    }
    free(x);
    free(y);
    vkt_comm_destroy(c);
    return bad;
}

static void test_small_ring_stress(void **state)
{
    (void)state;
    group *g = group_new(1);
    double t0 = vkt__now();
    int failed = run_ranks(3, stress_body, g, 400, NULL);
    printf("small-ring stress (ring %s B, frames %u B, 3 ranks): %.1f s\n", STRESS_RING,
           STRESS_CHUNK, vkt__now() - t0);
    group_free(g);
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------------ registration cache -- */

/* The cache by address range, on a buffer of our own: a range inside a
 * registered region is a hit on the same registration; more access than it
 * has is a new one; invalidating (before free) deregisters both, and one
 * still in use is reported. The device is the comms' (shared, refcounted). */
static int range_lookups(int rank)
{
    vb_dev *d = NULL;
    struct ibv_mr *whole = NULL, *inner = NULL, *remote = NULL;
    uint64_t r0, h0, l0, r1, h1, l1;
    size_t len = 64u << 10;
    char *buf = aligned_alloc(4096, len);
    int bad = 0;
    if (!buf || vkt__vb_dev_get(&d) != VKT_OK) return RANK_FAIL(rank, "%s", vkt_last_error());
    vkt__vb_mr_stats(&r0, &h0, &l0);
    if (vkt__vb_mr_get(d, buf, len, IBV_ACCESS_LOCAL_WRITE, &whole) != VKT_OK ||
        vkt__vb_mr_get(d, buf + 4096, 1000, IBV_ACCESS_LOCAL_WRITE, &inner) != VKT_OK ||
        vkt__vb_mr_get(d, buf + 8192, 100, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE,
                       &remote) != VKT_OK)
        bad = RANK_FAIL(rank, "mr_get: %s", vkt_last_error());
    vkt__vb_mr_stats(&r1, &h1, &l1);
    if (!bad && (inner != whole || remote == whole || r1 - r0 != 2 || h1 - h0 != 1 ||
                 l1 - l0 != 2))
        bad = RANK_FAIL(rank, "range lookups: inner %s whole, remote %s whole, %llu new "
                        "registrations, %llu hits", inner == whole ? "==" : "!=",
                        remote == whole ? "==" : "!=", (unsigned long long)(r1 - r0),
                        (unsigned long long)(h1 - h0));
    vkt__vb_mr_put(d, inner);
    vkt__vb_mr_put(d, whole);
    vkt__vb_mr_put(d, remote);
    if (!bad && vkt__vb_mr_invalidate(d, buf + 8000, 300) != VKT_OK) /* overlaps both */
        bad = RANK_FAIL(rank, "invalidate: %s", vkt_last_error());
    vkt__vb_mr_stats(&r1, &h1, &l1);
    if (!bad && l1 != l0)
        bad = RANK_FAIL(rank, "%llu regions of a freed buffer stay registered",
                        (unsigned long long)(l1 - l0));
    if (!bad && (vkt__vb_mr_get(d, buf, len, IBV_ACCESS_LOCAL_WRITE, &whole) != VKT_OK ||
                 vkt__vb_mr_invalidate(d, buf, len) != VKT_ERR_INTERNAL))
        bad = RANK_FAIL(rank, "freeing a buffer whose registration is in use went unreported");
    vkt_clear_error();
    vkt__vb_dev_put(d);
    free(buf);
    return bad;
}

static int cache_body(int rank, int n, void *arg)
{
    group *g = arg;
    uint64_t reg[4], hit[4], live[4];
    vkt_comm *a = NULL, *b = NULL, *c = NULL;
    int bad = 0;
    size_t cnt = 20000; /* > latency_bytes: the ring, not new direct links */
    float *v = malloc(cnt * sizeof *v);
    if (!v) return RANK_FAIL(rank, "malloc");
    for (size_t j = 0; j < cnt; j++) v[j] = value(rank, j);
    if (open_verbs(rank, n, g->store, 60, 16384, &a) != VKT_OK)
        return RANK_FAIL(rank, "create a: %s", vkt_last_error());
    if (open_verbs(rank, n, g->more[0], 60, 16384, &b) != VKT_OK)
        return RANK_FAIL(rank, "create b: %s", vkt_last_error());
    vkt__vb_mr_stats(&reg[0], &hit[0], &live[0]);
    vkt_comm_destroy(b); /* its two rings go to the pool, still registered */
    vkt__vb_mr_stats(&reg[1], &hit[1], &live[1]);
    if (open_verbs(rank, n, g->more[1], 60, 16384, &c) != VKT_OK)
        return RANK_FAIL(rank, "create c: %s", vkt_last_error());
    if (vkt_comm_allreduce(c, v, v, cnt, VKT_DTYPE_F32, VKT_REDOP_SUM) != VKT_OK)
        bad = RANK_FAIL(rank, "allreduce on c: %s", vkt_last_error());
    else
        bad = check_allreduce(rank, n, v, cnt, "allreduce on the third comm");
    free(v);
    vkt__vb_mr_stats(&reg[2], &hit[2], &live[2]);
    if (!bad) bad = range_lookups(rank);
    vkt_comm_destroy(c);
    vkt_comm_destroy(a);
    vkt__vb_mr_stats(&reg[3], &hit[3], &live[3]);
    printf("rank %d: registrations %llu -> %llu -> %llu, hits %llu -> %llu, live %llu -> %llu "
           "-> %llu -> %llu\n", rank, (unsigned long long)reg[0], (unsigned long long)reg[1],
           (unsigned long long)reg[2], (unsigned long long)hit[1], (unsigned long long)hit[2],
           (unsigned long long)live[0], (unsigned long long)live[1], (unsigned long long)live[2],
           (unsigned long long)live[3]);
    /* Two comms of 2 ranks: a sender and a receiver ring each. */
    if (!bad && (reg[0] != 4 || live[0] != 4))
        bad = RANK_FAIL(rank, "two comms registered %llu regions (%llu live), expected 4",
                        (unsigned long long)reg[0], (unsigned long long)live[0]);
    if (!bad && (reg[1] != reg[0] || live[1] != live[0]))
        bad = RANK_FAIL(rank, "closing a comm deregistered its pooled rings");
    if (!bad && (reg[2] != reg[1] || hit[2] < hit[1] + 2))
        bad = RANK_FAIL(rank, "the third comm registered %llu new regions and hit the cache "
                        "%llu times; expected 0 and 2", (unsigned long long)(reg[2] - reg[1]),
                        (unsigned long long)(hit[2] - hit[1]));
    if (!bad && live[3] != 0)
        bad = RANK_FAIL(rank, "%llu regions stay registered after the last comm",
                        (unsigned long long)live[3]);
    return bad;
}

static void test_registration_cache(void **state)
{
    (void)state;
    group *g = group_new(1);
    for (int i = 0; i < 2; i++) /* one store per comm: each has its own keys */
        g->srv[i + 1] = start_store(TEST_SECRET, g->more[i], sizeof g->more[i]);
    assert_true(g->srv[1] && g->srv[2]);
    int failed = run_ranks(2, cache_body, g, 120, NULL);
    group_free(g);
    assert_int_equal(failed, 0);
}

static int ring_bytes_body(int rank, int n, void *arg)
{
    group *g = arg;
    vkt_comm *c = NULL;
    setenv("VKT_IB_RING_BYTES", "5000", 1);
    vkt_status st = open_verbs(rank, n, g->store, 10, 16384, &c);
    vkt_comm_destroy(c);
    if (st != VKT_ERR_INVALID_ARG || !strstr(vkt_last_error(), "VKT_IB_RING_BYTES=5000"))
        return RANK_FAIL(rank, "VKT_IB_RING_BYTES=5000 gave %s: %s", vkt_status_name(st),
                         vkt_last_error());
    return 0;
}

static void test_ring_bytes_checked(void **state)
{
    (void)state;
    group *g = group_new(1);
    int failed = run_ranks(2, ring_bytes_body, g, 60, NULL);
    group_free(g);
    assert_int_equal(failed, 0);
}

/* Locked memory too small for a ring: root in the VM is exempt (CAP_IPC_LOCK),
 * so each rank drops that capability and sets RLIMIT_MEMLOCK to 1 MiB below
 * the 4 MiB ring; ibv_reg_mr then fails with ENOMEM and the error must point
 * at ulimit -l (at least one rank; the other may only see its peer leave). */
static int drop_ipc_lock(void)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return -1;
    d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    return (int)syscall(SYS_capset, &h, d);
}

static int memlock_body(int rank, int n, void *arg)
{
    group *g = arg;
    struct rlimit rl = {1u << 20, 1u << 20};
    if (drop_ipc_lock() != 0 || setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return RANK_FAIL(rank, "cannot drop CAP_IPC_LOCK / set RLIMIT_MEMLOCK");
    vkt_comm *c = NULL;
    vkt_status st = open_verbs(rank, n, g->store, 10, 16384, &c);
    vkt_comm_destroy(c);
    if (st == VKT_OK) return RANK_FAIL(rank, "4 MiB rings registered under a 1 MiB memlock");
    printf("rank %d: %s: %s\n", rank, vkt_status_name(st), vkt_last_error());
    g->said_ulimit[rank] = strstr(vkt_last_error(), "ulimit -l") != NULL;
    return 0;
}

static void test_memlock_named(void **state)
{
    (void)state;
    group *g = group_new(1);
    int failed = run_ranks(2, memlock_body, g, 60, NULL);
    int said = g->said_ulimit[0] + g->said_ulimit[1];
    group_free(g);
    assert_int_equal(failed, 0);
    assert_true(said >= 1);
}

/* ---------------------------------------------------------- fault cases -- */

/* Rank 1's receiving QP goes to the error state at its 40th arrived write:
 * rank 1 sees its receives flushed (the status named); rank 0's writes go
 * unanswered, but rank 1's failed collective closes its links at once, so
 * rank 0 usually learns it from the side channel first (device and peer
 * named, a status only if the retries ran out before). */
static int qp_error_body(int rank, int n, void *arg)
{
    group *g = arg;
    setenv("VKT_INJECT_FAULT", "ib_qp_error:40@1", 1);
    vkt_comm *c = NULL;
    if (open_verbs(rank, n, g->store, 30, 16384, &c) != VKT_OK)
        return RANK_FAIL(rank, "create: %s", vkt_last_error());
    size_t count = 256u << 10;
    float *x = calloc(count, sizeof *x);
    int bad = 1;
    double t0 = vkt__now();
    for (int it = 0; it < 50 && bad == 1; it++) {
        vkt_status st = vkt_comm_allreduce(c, x, x, count, VKT_DTYPE_F32, VKT_REDOP_SUM);
        if (st == VKT_OK) continue;
        printf("rank %d: %s after %.1f s: %s\n", rank, vkt_status_name(st), vkt__now() - t0,
               vkt_last_error());
        bad = check_named(rank, vkt_last_error(), devices[rank % 2], 1 - rank, rank == 1);
    }
    if (bad == 1 && !x) bad = RANK_FAIL(rank, "calloc");
    else if (bad == 1) bad = RANK_FAIL(rank, "no error although rank 1's QP is in error");
    vkt_comm_destroy(c);
    free(x);
    return bad;
}

static void test_qp_error_named(void **state)
{
    (void)state;
    group *g = group_new(1);
    int failed = run_ranks(2, qp_error_body, g, 150, NULL);
    group_free(g);
    assert_int_equal(failed, 0);
}

/* Rank 1 advertises a wrong rkey for its ring: rank 0's first write (the
 * barrier inside create) is refused with a remote access error, which both
 * ends see as a failed work completion: rank 1 at once (its barrier fails),
 * rank 0 at its next progress (the barrier's send was only staged, so create
 * may return first; the completion is then the next call's error, ahead of
 * the side channel's EOF, as completions are polled first). */
static int bad_rkey_body(int rank, int n, void *arg)
{
    group *g = arg;
    setenv("VKT_INJECT_FAULT", "ib_bad_rkey:1@1", 1);
    vkt_comm *c = NULL;
    size_t cnt = 20000; /* > latency_bytes: over the ring link, not a new direct link */
    float *x = calloc(cnt, sizeof *x);
    double t0 = vkt__now();
    vkt_status st = open_verbs(rank, n, g->store, 15, 16384, &c);
    if (st == VKT_OK && x) st = vkt_comm_allreduce(c, x, x, cnt, VKT_DTYPE_F32, VKT_REDOP_SUM);
    vkt_comm_destroy(c);
    free(x);
    if (st == VKT_OK) return RANK_FAIL(rank, "no error with a wrong rkey");
    printf("rank %d: %s after %.1f s: %s\n", rank, vkt_status_name(st), vkt__now() - t0,
           vkt_last_error());
    int bad = check_named(rank, vkt_last_error(), devices[rank], 1 - rank, 1);
    if (!bad && !strstr(vkt_last_error(), ibv_wc_status_str(IBV_WC_REM_ACCESS_ERR)))
        bad = RANK_FAIL(rank, "expected \"%s\"", ibv_wc_status_str(IBV_WC_REM_ACCESS_ERR));
    return bad;
}

static void test_bad_rkey_named(void **state)
{
    (void)state;
    group *g = group_new(1);
    int failed = run_ranks(2, bad_rkey_body, g, 90, NULL);
    group_free(g);
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------- auto between two hosts -- */

#define PORT 29531

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "verbs two-hosts: '%s' failed (status %d)\n", cmd, rc);
    return rc;
}

static void hosts_down(group *g)
{
    for (int i = 0; i < 2; i++)
        if (g->ns[i][0]) sh("ip netns del %s 2>/dev/null", g->ns[i]);
}

/* Two namespaces joined by a veth pair with 10.232.0.1/2 (tcp, the store). */
static int hosts_up(group *g)
{
    int pid = (int)getpid();
    snprintf(g->ns[0], sizeof g->ns[0], "vktvb-a-%d", pid);
    snprintf(g->ns[1], sizeof g->ns[1], "vktvb-b-%d", pid);
    snprintf(g->store, sizeof g->store, "tcp://10.232.0.1:%d", PORT);
    if (sh("ip netns add %s", g->ns[0]) || sh("ip netns add %s", g->ns[1]) ||
        sh("ip link add vbta%d netns %s type veth peer name vbtb%d netns %s", pid % 100000,
           g->ns[0], pid % 100000, g->ns[1]))
        return -1;
    for (int i = 0; i < 2; i++)
        if (sh("ip -n %s addr add 10.232.0.%d/24 dev vbt%c%d", g->ns[i], i + 1, "ab"[i],
               pid % 100000) ||
            sh("ip -n %s link set vbt%c%d up", g->ns[i], "ab"[i], pid % 100000) ||
            sh("ip -n %s link set lo up", g->ns[i]))
            return -1;
    return 0;
}

/* rxe2 on a veth whose other end carries no RDMA: a port that is ACTIVE but
 * reaches no peer, like a port on another fabric. */
static int deadend_up(void)
{
    if (sh("ip link add vktdead0 type veth peer name vktdead1") ||
        sh("ip link set vktdead0 up && ip link set vktdead1 up") ||
        sh("rdma link add rxe2 type rxe netdev vktdead0"))
        return -1;
    for (int i = 0; i < 100; i++) {
        if (sh("grep -q ACTIVE /sys/class/infiniband/rxe2/ports/1/state") == 0) return 0;
        usleep(100000);
    }
    return -1;
}

static void deadend_down(void)
{
    sh("rdma link delete rxe2 2>/dev/null");
    sh("ip link del vktdead0 2>/dev/null");
}

/* After auto settled: a small all-reduce (recursive doubling, below
 * latency_bytes, over direct links) and a send/recv each way must work, and
 * the direct links must be of the expected kinds. */
static int direct_links(int rank, group *g, vkt_comm *c)
{
    enum { SMALL = 64, MSG = 5000 };
    float x[SMALL], m[MSG];
    int peer = 1 - rank, bad = 0;
    for (size_t j = 0; j < SMALL; j++) x[j] = value(rank, j);
    if (vkt_comm_allreduce(c, x, x, SMALL, VKT_DTYPE_F32, VKT_REDOP_SUM) != VKT_OK)
        return RANK_FAIL(rank, "small allreduce: %s", vkt_last_error());
    bad = check_allreduce(rank, 2, x, SMALL, "small allreduce (recursive doubling)");
    for (int turn = 0; turn < 2 && !bad; turn++) {
        vkt_status st;
        if (turn == rank) {
            for (size_t j = 0; j < MSG; j++) m[j] = value(rank, j);
            st = vkt_comm_send(c, m, MSG, VKT_DTYPE_F32, peer);
        } else {
            memset(m, 0, sizeof m);
            st = vkt_comm_recv(c, m, MSG, VKT_DTYPE_F32, peer);
            for (size_t j = 0; j < MSG && st == VKT_OK && !bad; j++)
                if (m[j] != value(peer, j))
                    bad = RANK_FAIL(rank, "recv from rank %d: element %zu is %g", peer, j, m[j]);
        }
        if (st != VKT_OK) bad = RANK_FAIL(rank, "%s rank %d: %s", turn == rank ? "send to" :
                                          "recv from", peer, vkt_last_error());
    }
    if (bad) return bad;
    const char *to = c->p2p_to[peer] ? c->p2p_to[peer]->ops->name : "none";
    const char *from = c->p2p_from[peer] ? c->p2p_from[peer]->ops->name : "none";
    const char *want_to = g->p2p_to[rank] ? g->p2p_to[rank] : vkt_comm_link(c);
    const char *want_from = g->p2p_to[peer] ? g->p2p_to[peer] : vkt_comm_link(c);
    printf("rank %d: direct links to / from rank %d: %s / %s\n", rank, peer, to, from);
    if (strcmp(to, want_to) != 0 || strcmp(from, want_from) != 0)
        return RANK_FAIL(rank, "direct links to / from rank %d are %s / %s, expected %s / %s",
                         peer, to, from, want_to, want_from);
    return 0;
}

/* Verbs settled but a direct verbs link cannot carry data: each rank's
 * error names its device and peer and says to set backend tcp. The sender
 * may finish its first all-reduce with its write only staged (as in
 * bad_rkey_body); the refused write is then its next call's error. */
static int direct_fails(int rank, vkt_comm *c)
{
    float x[64] = {0};
    double t0 = vkt__now();
    vkt_status st = VKT_OK;
    for (int i = 0; i < 3 && st == VKT_OK; i++)
        st = vkt_comm_allreduce(c, x, x, 64, VKT_DTYPE_F32, VKT_REDOP_SUM);
    if (st == VKT_OK) return RANK_FAIL(rank, "a direct link with a wrong rkey worked");
    printf("rank %d: %s after %.1f s: %s\n", rank, vkt_status_name(st), vkt__now() - t0,
           vkt_last_error());
    int bad = check_named(rank, vkt_last_error(), devices[rank], 1 - rank, 0);
    if (!bad && !strstr(vkt_last_error(), "set backend = tcp"))
        bad = RANK_FAIL(rank, "the error should say to set backend = tcp");
    return bad;
}

static int auto_body(int rank, int n, void *arg)
{
    group *g = arg;
    char path[96];
    snprintf(path, sizeof path, "/var/run/netns/%s", g->ns[rank]);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0)
        return RANK_FAIL(rank, "cannot enter network namespace %s", g->ns[rank]);
    close(fd);
    rank_env(rank, g->dev[rank]);
    if (g->fault) setenv("VKT_INJECT_FAULT", g->fault, 1);
    vkt_comm_opts o = test_opts(rank, n, g->store, 40);
    o.store_server = -1;
    o.backend = (vkt_comm_backend)g->backend;
    vkt_comm *c = NULL;
    double t0 = vkt__now();
    vkt_status st = vkt_comm_create(&o, &c);
    double took = vkt__now() - t0;
    if (st == VKT_OK && g->max_create_s > 0 && took > g->max_create_s) {
        vkt_comm_destroy(c);
        return RANK_FAIL(rank, "create took %.1f s, expected at most %.0f", took,
                         g->max_create_s);
    }
    if (g->backend == VKT_COMM_BACKEND_VERBS) { /* the dead-end port, explicitly */
        vkt_comm_destroy(c);
        if (st == VKT_OK) return RANK_FAIL(rank, "backend verbs over a dead-end port worked");
        printf("rank %d: backend verbs on %s: %s after %.1f s: %s\n", rank, g->dev[rank],
               vkt_status_name(st), took, vkt_last_error());
        return rank == 0 ? check_named(rank, vkt_last_error(), "rxe2", 1, 0) : 0;
    }
    if (st != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    const char *want = g->expect_tcp ? "tcp" : "verbs";
    printf("rank %d on %s: backend auto chose %s in %.1f s\n", rank, g->dev[rank],
           vkt_comm_link(c), took);
    int bad = strcmp(vkt_comm_link(c), want) != 0
                  ? RANK_FAIL(rank, "auto chose %s, expected %s", vkt_comm_link(c), want)
                  : 0;
    if (!bad && g->p2p_fails) {
        bad = direct_fails(rank, c);
        vkt_comm_destroy(c);
        return bad;
    }
    const size_t counts[] = {1, 4099, 300001};
    float *x = malloc(counts[2] * sizeof *x);
    for (size_t k = 0; k < 3 && !bad && x; k++) {
        for (size_t j = 0; j < counts[k]; j++) x[j] = value(rank, j);
        if (vkt_comm_allreduce(c, x, x, counts[k], VKT_DTYPE_F32, VKT_REDOP_SUM) != VKT_OK)
            bad = RANK_FAIL(rank, "allreduce: %s", vkt_last_error());
        else
            bad = check_allreduce(rank, n, x, counts[k], "auto allreduce");
    }
    free(x);
    if (!bad) bad = direct_links(rank, g, c);
    vkt_comm_destroy(c);
    return bad;
}

static int run_two_hosts_with(const char *dev0, const char *dev1, int backend, int expect_tcp,
                              const char *fault, const char *const p2p_to[2],
                              double max_create_s)
{
    group *g = group_new(0);
    g->fault = fault;
    g->p2p_to[0] = p2p_to ? p2p_to[0] : NULL;
    g->p2p_to[1] = p2p_to ? p2p_to[1] : NULL;
    g->max_create_s = max_create_s;
    g->dev[0] = dev0;
    g->dev[1] = dev1;
    g->backend = backend;
    g->expect_tcp = expect_tcp;
    int failed = -1;
    if (hosts_up(g) == 0)
        failed = run_ranks(2, auto_body, g, 120, NULL);
    else
        fprintf(stderr, "could not create two network namespaces (needs root and iproute2: "
                "run in tools/rxe_vm.sh)\n");
    hosts_down(g);
    group_free(g);
    return failed;
}

static int run_two_hosts(const char *dev0, const char *dev1, int backend, int expect_tcp,
                         const char *fault)
{
    return run_two_hosts_with(dev0, dev1, backend, expect_tcp, fault, NULL, 0);
}

static void test_auto_two_hosts_verbs(void **state)
{
    (void)state;
    assert_int_equal(run_two_hosts("rxe0", "rxe1", VKT_COMM_BACKEND_AUTO, 0, NULL), 0);
}

/* The links are made but data cannot flow (rank 1's ring announces a wrong
 * rkey): only the probe frame finds it, and both ranks fall back to tcp. */
static void test_auto_probe_falls_back(void **state)
{
    (void)state;
    int failed = run_two_hosts("rxe0", "rxe1", VKT_COMM_BACKEND_AUTO, 1, "ib_bad_rkey:1@1");
    assert_int_equal(failed, 0);
}

static void test_auto_deadend_falls_back(void **state)
{
    (void)state;
    if (deadend_up() != 0) {
        deadend_down();
        fail_msg("could not add rxe2 on a veth (rdma link add): run in tools/rxe_vm.sh");
    }
    int fell_back = run_two_hosts("rxe2", "rxe1", VKT_COMM_BACKEND_AUTO, 1, NULL);
    int explicit = run_two_hosts("rxe2", "rxe1", VKT_COMM_BACKEND_VERBS, 0, NULL);
    deadend_down();
    assert_int_equal(fell_back, 0);
    assert_int_equal(explicit, 0);
}

/* Rank 0's verbs connect to rank 1 fails before its side channel reaches
 * rank 1 (a refused port): rank 0 publishes its failure at once, rank 1
 * stops waiting for the accept, and both fall back within seconds (before,
 * rank 1 waited out comm_timeout_s, 40 s here, and create failed). */
static void test_auto_early_failure_falls_back(void **state)
{
    (void)state;
    int failed = run_two_hosts_with("rxe0", "rxe1", VKT_COMM_BACKEND_AUTO, 1,
                                    "ib_connect_fail:1@0", NULL, 10.0);
    assert_int_equal(failed, 0);
}

/* Verbs settles (the ring's links pass their probe), then rank 0's first
 * direct verbs connect (its 2nd verbs connect) fails: that pair's link from
 * rank 0 is made over tcp, the one from rank 1 stays verbs. */
static void test_auto_direct_link_falls_back(void **state)
{
    (void)state;
    static const char *const p2p[2] = {"tcp", "verbs"};
    int failed = run_two_hosts_with("rxe0", "rxe1", VKT_COMM_BACKEND_AUTO, 0,
                                    "ib_connect_fail:2@0", p2p, 0);
    assert_int_equal(failed, 0);
}

/* Verbs settles, then rank 1's first direct receiving link (its 2nd
 * receiving link) announces a wrong rkey: that unprobed link fails, and
 * both errors say what to do. */
static void test_auto_direct_link_error_named(void **state)
{
    (void)state;
    group *g = group_new(0);
    g->fault = "ib_bad_rkey:2@1";
    g->dev[0] = "rxe0";
    g->dev[1] = "rxe1";
    g->backend = VKT_COMM_BACKEND_AUTO;
    g->p2p_fails = 1;
    int failed = -1;
    if (hosts_up(g) == 0) failed = run_ranks(2, auto_body, g, 120, NULL);
    hosts_down(g);
    group_free(g);
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_bytes_checked),
        cmocka_unit_test(test_registration_cache),
        cmocka_unit_test(test_memlock_named),
        cmocka_unit_test(test_small_ring_stress),
        cmocka_unit_test(test_bad_rkey_named),
        cmocka_unit_test(test_qp_error_named),
        cmocka_unit_test(test_auto_two_hosts_verbs),
        cmocka_unit_test(test_auto_probe_falls_back),
        cmocka_unit_test(test_auto_deadend_falls_back),
        cmocka_unit_test(test_auto_early_failure_falls_back),
        cmocka_unit_test(test_auto_direct_link_falls_back),
        cmocka_unit_test(test_auto_direct_link_error_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
