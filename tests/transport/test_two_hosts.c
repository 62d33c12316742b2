/* Two hosts for real: two network namespaces joined by a veth pair
 * (10.231.0.1/24 and 10.231.0.2/24, addresses that exist only inside these
 * namespaces), two ranks in each. With backend auto the ring 0 -> 1 -> 2 ->
 * 3 -> 0 must use shared memory inside a namespace (0 -> 1, 2 -> 3) and TCP
 * across the veth (1 -> 2, 3 -> 0), and all-reduce must be right. Rank 0
 * serves the store at 10.231.0.1. Direct links follow the same rule: rank 3
 * receives from rank 2 over shm and from rank 0 over tcp. Needs root (CAP_SYS_ADMIN) and iproute2:
 * without them the test FAILS, saying so; it never skips. The namespaces are
 * removed on every path, and leftovers of killed runs (dead pid in the name)
 * are removed at start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "comm_int.h"
#include "harness.h"
#include "transport_int.h"

#define PREFIX "vkt2h-"
#define PORT 29517

typedef struct hosts {
    char ns[2][32];
    char store[64];
} hosts;

/* Run a shell command built from fmt; returns its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "two-hosts: '%s' failed (status %d)\n", cmd, rc);
    return rc;
}

/* Remove namespaces of earlier runs whose process is gone. */
static void remove_stale(void)
{
    DIR *d = opendir("/var/run/netns");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, PREFIX, strlen(PREFIX)) != 0) continue;
        long pid = strtol(e->d_name + strlen(PREFIX) + 2, NULL, 10); /* "vkt2h-a-<pid>" */
        if (pid > 0 && kill((pid_t)pid, 0) != 0) sh("ip netns del %s", e->d_name);
    }
    if (d) closedir(d);
}

static void teardown(const hosts *h)
{
    for (int i = 0; i < 2; i++) /* deleting a namespace deletes its veth end too */
        if (h->ns[i][0]) sh("ip netns del %s 2>/dev/null", h->ns[i]);
}

static int setup(hosts *h)
{
    int pid = (int)getpid();
    char va[16], vb[16];
    snprintf(h->ns[0], sizeof h->ns[0], PREFIX "a-%d", pid);
    snprintf(h->ns[1], sizeof h->ns[1], PREFIX "b-%d", pid);
    snprintf(va, sizeof va, "vkta%d", pid % 10000000);
    snprintf(vb, sizeof vb, "vktb%d", pid % 10000000);
    snprintf(h->store, sizeof h->store, "tcp://10.231.0.1:%d", PORT);
    if (sh("ip netns add %s", h->ns[0]) || sh("ip netns add %s", h->ns[1])) return -1;
    if (sh("ip link add %s netns %s type veth peer name %s netns %s", va, h->ns[0], vb,
           h->ns[1]))
        return -1;
    for (int i = 0; i < 2; i++)
        if (sh("ip -n %s addr add 10.231.0.%d/24 dev %s", h->ns[i], i + 1, i ? vb : va) ||
            sh("ip -n %s link set %s up", h->ns[i], i ? vb : va) ||
            sh("ip -n %s link set lo up", h->ns[i]))
            return -1;
    return 0;
}

static int enter_ns(int rank, const char *ns)
{
    char path[96];
    snprintf(path, sizeof path, "/var/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0)
        return RANK_FAIL(rank, "cannot enter network namespace %s (needs root)", ns);
    close(fd);
    return 0;
}

static int check_sum(int rank, int n, const float *x, size_t count, const char *what)
{
    for (size_t j = 0; j < count; j++) {
        double want = 0;
        for (int q = 0; q < n; q++) want += (double)((j * 3 + (size_t)q * 5) % 11);
        if (fabs(x[j] - want) > 1e-6 * fmax(1, want))
            return RANK_FAIL(rank, "%s: element %zu is %g, expected %g", what, j, x[j], want);
    }
    return 0;
}

static int rank_body(int rank, int n, void *arg)
{
    hosts *h = arg;
    if (enter_ns(rank, h->ns[rank / 2])) return 1;
    vkt_comm_opts o = test_opts(rank, n, h->store, 20.0);
    o.store_server = -1; /* rank 0 serves it, inside namespace a */
    vkt_comm *c = NULL;
    if (vkt_comm_create(&o, &c) != VKT_OK) return RANK_FAIL(rank, "create: %s", vkt_last_error());
    const char *want = rank % 2 == 0 ? "shm" : "tcp"; /* 0->1, 2->3 inside; 1->2, 3->0 across */
    int bad = strcmp(vkt_comm_link(c), want) != 0
                  ? RANK_FAIL(rank, "link to rank %d is %s, expected %s", (rank + 1) % n,
                              vkt_comm_link(c), want)
                  : 0;
    const size_t counts[] = {0, 1, 7, 4097, (1u << 20) / 4 + 3, (5u << 20) / 4};
    float *x = malloc(counts[5] * sizeof *x);
    for (size_t k = 0; k < 6 && !bad && x; k++) {
        for (size_t j = 0; j < counts[k]; j++) x[j] = (float)((j * 3 + (size_t)rank * 5) % 11);
        char what[48];
        snprintf(what, sizeof what, "allreduce of %zu floats", counts[k]);
        if (vkt_comm_allreduce(c, x, x, counts[k], VKT_DTYPE_F32, VKT_REDOP_SUM) != VKT_OK)
            bad = RANK_FAIL(rank, "%s: %s", what, vkt_last_error());
        else
            bad = check_sum(rank, n, x, counts[k], what);
    }
    /* Direct links (the small all-reduces above already ran recursive
     * doubling over them): rank 3 receives from rank 2 (same namespace: shm)
     * and from rank 0 (across the veth: tcp), 1 MiB each. */
    size_t pc = (1u << 20) / 4;
    for (int from = 2; from >= 0 && !bad && x; from -= 2) {
        vkt_status st;
        if (rank != 3 && rank != from) continue;
        if (rank == from) {
            for (size_t j = 0; j < pc; j++) x[j] = (float)(j % 1000) + (float)from;
            st = vkt_comm_send(c, x, pc, VKT_DTYPE_F32, 3);
        } else {
            st = vkt_comm_recv(c, x, pc, VKT_DTYPE_F32, from);
            for (size_t j = 0; j < pc && st == VKT_OK && !bad; j++)
                if (x[j] != (float)(j % 1000) + (float)from)
                    bad = RANK_FAIL(rank, "recv from rank %d: element %zu is %g", from, j, x[j]);
        }
        if (st != VKT_OK) bad = RANK_FAIL(rank, "send/recv with rank %d: %s", from,
                                          vkt_last_error());
    }
    if (!bad && rank == 3 && /* white box: the kinds of the direct links */
        (strcmp(c->p2p_from[2]->ops->name, "shm") || strcmp(c->p2p_from[0]->ops->name, "tcp")))
        bad = RANK_FAIL(rank, "direct links from ranks 2/0 are %s/%s, expected shm/tcp",
                        c->p2p_from[2]->ops->name, c->p2p_from[0]->ops->name);
    if (!bad && vkt_comm_barrier(c) != VKT_OK)
        bad = RANK_FAIL(rank, "barrier: %s", vkt_last_error());
    if (!x) bad = RANK_FAIL(rank, "malloc");
    if (!bad) printf("rank %d (namespace %c): link %s, all-reduce right\n", rank,
                     "ab"[rank / 2], vkt_comm_link(c));
    free(x);
    vkt_comm_destroy(c);
    return bad;
}

static void test_two_hosts(void **state)
{
    (void)state;
    hosts h;
    memset(&h, 0, sizeof h);
    remove_stale();
    if (setup(&h) != 0) {
        teardown(&h);
        fail_msg("two-hosts: could not create two network namespaces joined by a veth pair; "
                 "this test needs root (CAP_SYS_ADMIN) and iproute2 (tools/setup.sh --test "
                 "installs it); it does not skip");
    }
    int failed = run_ranks(4, rank_body, &h, 60.0, NULL);
    teardown(&h);
    assert_int_equal(failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_two_hosts)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
