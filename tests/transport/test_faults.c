/* Fault tests: a killed rank, a stopped rank, a rank with the wrong secret
 * and a rank that never arrives. Each must turn into an error on the other
 * ranks, naming the peer and the operation, within comm_timeout_s (2 s
 * here), never a hang; every group runs under a hard deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "transport_int.h"

#define TIMEOUT_S 2.0
#define SLACK_S 2.0 /* scheduling noise on a loaded 2-core machine */
#define COUNT (256u << 10)

typedef struct shared {
    char store[160];
    pid_t pids[8];
    int victim;  /* rank that dies or stops */
    int signo;   /* SIGKILL or SIGSTOP */
    vkt_comm_backend backend;
} shared;

static shared *new_shared(void)
{
    shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(s != MAP_FAILED);
    memset(s, 0, sizeof *s);
    return s;
}

/* Survivors: the failing call must return an error naming a rank and the
 * collective within the deadline, and the comm must stay failed. */
static int survivor_checks(int rank, vkt_comm *c, vkt_status st, double took, shared *sh,
                           float *buf)
{
    const char *msg = vkt_last_error();
    printf("rank %d: %s after %.2f s: %s\n", rank, vkt_status_name(st), took, msg);
    if (st != VKT_ERR_REMOTE && st != VKT_ERR_TIMEOUT)
        return RANK_FAIL(rank, "unexpected status %s", vkt_status_name(st));
    if (took > TIMEOUT_S + SLACK_S) return RANK_FAIL(rank, "error took %.1f s", took);
    if (!strstr(msg, "allreduce #") || !strstr(msg, "rank "))
        return RANK_FAIL(rank, "message does not name the op and a rank: %s", msg);
    /* The neighbour downstream of the victim must name the victim. */
    char want[32];
    snprintf(want, sizeof want, "rank %d", sh->victim);
    if (rank == (sh->victim + 1) % 3 && !strstr(msg, want))
        return RANK_FAIL(rank, "message does not name %s: %s", want, msg);
    /* Every survivor's message says which rank never reported its position. */
    snprintf(want, sizeof want, "rank %d did not report", sh->victim);
    if (!strstr(msg, want)) return RANK_FAIL(rank, "message lacks '%s': %s", want, msg);
    vkt_status again = vkt_comm_allreduce(c, buf, buf, 4, VKT_DTYPE_F32, VKT_REDOP_SUM);
    if (again != st) return RANK_FAIL(rank, "error not sticky: %s", vkt_status_name(again));
    if (vkt_comm_async_error(c) != st) return RANK_FAIL(rank, "async_error disagrees");
    return 0;
}

static int victim_body(int rank, int n, void *arg)
{
    shared *sh = arg;
    sh->pids[rank] = getpid();
    vkt_comm_opts o = test_opts(rank, n, sh->store, TIMEOUT_S);
    o.backend = sh->backend;
    vkt_comm *c = NULL;
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    float *buf = calloc(COUNT, sizeof *buf);
    int bad = 0;
    for (int it = 0; it < 1000 && !bad; it++) {
        if (rank == sh->victim && it == 3) raise(sh->signo); /* dies or freezes here */
        double t0 = vkt__now();
        vkt_status st = vkt_comm_allreduce(c, buf, buf, COUNT, VKT_DTYPE_F32, VKT_REDOP_SUM);
        if (st == VKT_OK) continue;
        bad = survivor_checks(rank, c, st, vkt__now() - t0, sh, buf) ? 1 : 2;
    }
    if (bad == 0) bad = RANK_FAIL(rank, "no error although rank %d is gone", sh->victim);
    if (sh->signo == SIGSTOP && rank == (sh->victim + 1) % 3) kill(sh->pids[sh->victim], SIGKILL);
    vkt_comm_destroy(c);
    free(buf);
    return bad == 2 ? 0 : 1;
}

static void run_victim(int signo, vkt_comm_backend backend)
{
    shared *sh = new_shared();
    void *srv = start_store(TEST_SECRET, sh->store, sizeof sh->store);
    sh->victim = 1;
    sh->signo = signo;
    sh->backend = backend;
    int codes[3];
    double t0 = vkt__now();
    run_ranks(3, victim_body, sh, 30, codes);
    printf("%s group (%s) done in %.2f s\n", signo == SIGKILL ? "kill" : "stop",
           backend == VKT_COMM_BACKEND_TCP ? "tcp" : "shm", vkt__now() - t0);
    stop_store(srv);
    assert_int_equal(codes[0], 0);
    assert_int_equal(codes[2], 0);
    assert_int_equal(codes[1], -SIGKILL);
    munmap(sh, sizeof *sh);
}

static void test_killed_rank_tcp(void **state)
{
    (void)state;
    run_victim(SIGKILL, VKT_COMM_BACKEND_TCP);
}

static void test_killed_rank_shm(void **state)
{
    (void)state;
    run_victim(SIGKILL, VKT_COMM_BACKEND_SHM);
}

static void test_stopped_rank_tcp(void **state)
{
    (void)state;
    run_victim(SIGSTOP, VKT_COMM_BACKEND_TCP);
}

static void test_stopped_rank_shm(void **state)
{
    (void)state;
    run_victim(SIGSTOP, VKT_COMM_BACKEND_SHM);
}

/* Rank 1 has another secret: it is refused by the store, and rank 0 gives
 * up waiting for it within the deadline, saying whom it waited for. */
static int secret_body(int rank, int n, void *arg)
{
    shared *sh = arg;
    vkt_comm_opts o = test_opts(rank, n, sh->store, TIMEOUT_S);
    if (rank == 1) o.job_secret = "not-the-job-secret";
    vkt_comm *c = NULL;
    double t0 = vkt__now();
    vkt_status st = vkt_comm_create(&o, &c);
    double took = vkt__now() - t0;
    printf("rank %d: %s after %.2f s: %s\n", rank, vkt_status_name(st), took, vkt_last_error());
    if (c || took > TIMEOUT_S + SLACK_S) return RANK_FAIL(rank, "joined, or took %.1f s", took);
    if (rank == 1 && (st != VKT_ERR_REMOTE || !strstr(vkt_last_error(), "job secret")))
        return RANK_FAIL(rank, "wrong-secret rank: %s", vkt_last_error());
    if (rank == 0 && (st != VKT_ERR_TIMEOUT || !strstr(vkt_last_error(), "rank 1")))
        return RANK_FAIL(rank, "waiting rank: %s", vkt_last_error());
    return 0;
}

static void test_wrong_secret(void **state)
{
    (void)state;
    shared *sh = new_shared();
    void *srv = start_store(TEST_SECRET, sh->store, sizeof sh->store);
    assert_int_equal(run_ranks(2, secret_body, sh, 20, NULL), 0);
    stop_store(srv);
    munmap(sh, sizeof *sh);
}

/* Ranks that disagree on chunk_bytes (frame sizes) or checksums (whether a
 * receiver may reduce in place) refuse at create time, naming the option. */
static int chunk_body(int rank, int n, void *arg)
{
    shared *sh = arg;
    vkt_comm_opts o = test_opts(rank, n, sh->store, TIMEOUT_S);
    static const char *const whats[] = {"chunk_bytes", "checksum", "latency_bytes",
                                        "tcp_sockets"};
    const char *what = whats[sh->victim]; /* victim: reused as the case number */
    if (sh->victim == 0) o.chunk_bytes = rank == 1 ? 8192 : 4096;
    if (sh->victim == 1) o.checksum = rank == 1;
    if (sh->victim == 2) o.latency_bytes = rank == 1 ? 0 : 4096;
    if (sh->victim == 3) o.tcp_sockets = rank + 1;
    vkt_comm *c = NULL;
    vkt_status st = vkt_comm_create(&o, &c);
    if (st != VKT_ERR_INVALID_USAGE || !strstr(vkt_last_error(), what))
        return RANK_FAIL(rank, "mismatch not caught (%s): %s", vkt_status_name(st),
                         vkt_last_error());
    return 0;
}

static void test_mismatched_options(void **state)
{
    (void)state;
    for (int k = 0; k < 4; k++) { /* chunk_bytes, checksum, latency_bytes, tcp_sockets */
        shared *sh = new_shared();
        void *srv = start_store(TEST_SECRET, sh->store, sizeof sh->store);
        sh->victim = k;
        assert_int_equal(run_ranks(2, chunk_body, sh, 20, NULL), 0);
        stop_store(srv);
        munmap(sh, sizeof *sh);
    }
}

/* vkt_comm_abort ends a collective that cannot finish (rank 1 is late) at
 * once; rank 1 then sees rank 0's links close instead of hanging. */
static int abort_body(int rank, int n, void *arg)
{
    shared *sh = arg;
    vkt_comm_opts o = test_opts(rank, n, sh->store, TIMEOUT_S);
    vkt_comm *c = NULL;
    float buf[64] = {0};
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    if (rank == 1) {
        vkt__sleep_ms(500); /* rank 0 aborts and destroys meanwhile */
        vkt_status st = vkt_comm_allreduce(c, buf, buf, 64, VKT_DTYPE_F32, VKT_REDOP_SUM);
        vkt_comm_destroy(c);
        if (st != VKT_ERR_REMOTE || !strstr(vkt_last_error(), "rank 0"))
            return RANK_FAIL(rank, "after the abort: %s: %s", vkt_status_name(st),
                             vkt_last_error());
        return 0;
    }
    vkt_comm_req *req = NULL;
    if (vkt_comm_allreduce_async(c, buf, buf, 64, VKT_DTYPE_F32, VKT_REDOP_SUM, &req) != VKT_OK)
        return RANK_FAIL(rank, "issue: %s", vkt_last_error());
    vkt__sleep_ms(100);
    double t0 = vkt__now();
    if (vkt_comm_abort(c) != VKT_OK) return RANK_FAIL(rank, "abort failed");
    vkt_status st = vkt_comm_wait(req);
    double took = vkt__now() - t0;
    if (st != VKT_ERR_INVALID_USAGE || took > 0.5 || !strstr(vkt_last_error(), "abort"))
        return RANK_FAIL(rank, "wait after abort: %s after %.2f s: %s", vkt_status_name(st), took,
                         vkt_last_error());
    if (vkt_comm_barrier(c) != VKT_ERR_INVALID_USAGE) return RANK_FAIL(rank, "not sticky");
    vkt_comm_destroy(c);
    return 0;
}

static void test_abort(void **state)
{
    (void)state;
    shared *sh = new_shared();
    void *srv = start_store(TEST_SECRET, sh->store, sizeof sh->store);
    assert_int_equal(run_ranks(2, abort_body, sh, 20, NULL), 0);
    stop_store(srv);
    munmap(sh, sizeof *sh);
}

/* send/recv are deadline-bounded: rank 1's second recv from rank 0 (which
 * sends once, then nothing) and rank 2's recv from rank 0 (which never
 * connects to it) fail with VKT_ERR_TIMEOUT naming rank 0 and the recv
 * within comm_timeout_s, while rank 0 stays alive but silent. */
static int p2p_body(int rank, int n, void *arg)
{
    shared *sh = arg;
    vkt_comm_opts o = test_opts(rank, n, sh->store, TIMEOUT_S);
    vkt_comm *c = NULL;
    float v = 1.0f;
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    int bad = 0;
    if (rank == 0) {
        if (vkt_comm_send(c, &v, 1, VKT_DTYPE_F32, 1) != VKT_OK)
            bad = RANK_FAIL(rank, "send: %s", vkt_last_error());
        vkt__sleep_ms((int)((TIMEOUT_S + SLACK_S + 1.0) * 1000)); /* silent, not dead */
    } else {
        if (rank == 1 && vkt_comm_recv(c, &v, 1, VKT_DTYPE_F32, 0) != VKT_OK)
            bad = RANK_FAIL(rank, "first recv: %s", vkt_last_error());
        double t0 = vkt__now();
        vkt_status st = vkt_comm_recv(c, &v, 1, VKT_DTYPE_F32, 0);
        double took = vkt__now() - t0;
        const char *msg = vkt_last_error();
        printf("rank %d: %s after %.2f s: %s\n", rank, vkt_status_name(st), took, msg);
        if (st != VKT_ERR_TIMEOUT || took > TIMEOUT_S + SLACK_S || !strstr(msg, "recv #") ||
            !strstr(msg, "rank 0"))
            bad = RANK_FAIL(rank, "recv from a silent rank: %s after %.2f s: %s",
                            vkt_status_name(st), took, msg);
    }
    vkt_comm_destroy(c);
    return bad;
}

static void test_p2p_deadline(void **state)
{
    (void)state;
    shared *sh = new_shared();
    void *srv = start_store(TEST_SECRET, sh->store, sizeof sh->store);
    assert_int_equal(run_ranks(3, p2p_body, sh, 30, NULL), 0);
    stop_store(srv);
    munmap(sh, sizeof *sh);
}

/* Only rank 0 of 3 starts: create fails in time instead of waiting forever. */
static void test_missing_rank(void **state)
{
    (void)state;
    char addr[64];
    void *srv = start_store(TEST_SECRET, addr, sizeof addr);
    vkt_comm_opts o = test_opts(0, 3, addr, TIMEOUT_S);
    vkt_comm *c = (vkt_comm *)1;
    double t0 = vkt__now();
    assert_int_equal(vkt_comm_create(&o, &c), VKT_ERR_TIMEOUT);
    assert_null(c);
    assert_true(vkt__now() - t0 < TIMEOUT_S + SLACK_S);
    printf("%s\n", vkt_last_error());
    assert_non_null(strstr(vkt_last_error(), "rank 1"));
    stop_store(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed_rank_tcp),
        cmocka_unit_test(test_killed_rank_shm),
        cmocka_unit_test(test_stopped_rank_tcp),
        cmocka_unit_test(test_stopped_rank_shm),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_mismatched_options),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_missing_rank),
        cmocka_unit_test(test_p2p_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
