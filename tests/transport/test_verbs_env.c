/* The verbs test environment itself, before any vktrain code: inside the
 * soft-RoCE VM (tools/rxe_vm.sh) the devices rxe0 and rxe1 exist with an
 * ACTIVE port, and a reliable-connected RDMA WRITE of 1 MiB from a queue
 * pair on rxe0 to one on rxe1 arrives byte-exact. The connection data (QPN,
 * GID, PSN, address and rkey) is exchanged in memory, as one process owns
 * both ends. The bytes must be seen crossing the wire: rxe1's received
 * packet counter and veth0's transmitted bytes grow by at least the payload,
 * so a loopback shortcut would fail the test. Label verbs: runs only in the
 * VM (tests/transport/run_verbs_tests.sh); on a host without rxe it fails,
 * naming the missing device. GID index: VKT_IB_GID_INDEX, default 0 (the
 * veth's link-local IPv6 address; both devices share one network namespace,
 * where IPv4 traffic between two local addresses would take the loopback
 * device instead of the veth pair). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <infiniband/verbs.h>

#define PAYLOAD (1u << 20)
#define PORT 1

typedef struct end {
    const char *name;
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    struct ibv_mr *mr;
    uint8_t *buf;
    struct ibv_port_attr port;
    union ibv_gid gid;
    uint32_t psn;
} end;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One integer from a sysfs file; -1 when the file is missing. */
static long long read_counter(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long read_counter(const char *fmt, ...)
{
    char path[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long v = -1;
    if (fscanf(f, "%lld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

/* rxe keeps packet counters per port (hw_counters); older kernels put them
 * on the device. */
static long long rxe_counter(const char *dev, const char *name)
{
    long long v = read_counter("/sys/class/infiniband/%s/ports/%d/hw_counters/%s", dev, PORT, name);
    if (v < 0) v = read_counter("/sys/class/infiniband/%s/hw_counters/%s", dev, name);
    return v;
}

static int gid_index(void)
{
    const char *s = getenv("VKT_IB_GID_INDEX");
    return s && *s ? atoi(s) : 0;
}

static void open_end(struct ibv_device **list, const char *name, end *e)
{
    memset(e, 0, sizeof *e);
    e->name = name;
    for (int i = 0; list[i]; i++)
        if (strcmp(ibv_get_device_name(list[i]), name) == 0) e->ctx = ibv_open_device(list[i]);
    if (!e->ctx) fail_msg("verbs device %s not found or not openable: run inside tools/rxe_vm.sh", name);
    assert_int_equal(ibv_query_port(e->ctx, PORT, &e->port), 0);
    if (e->port.state != IBV_PORT_ACTIVE)
        fail_msg("%s port %d is %s, not ACTIVE", name, PORT, ibv_port_state_str(e->port.state));
    int gi = gid_index();
    if (ibv_query_gid(e->ctx, PORT, gi, &e->gid) != 0)
        fail_msg("%s: no GID at index %d (VKT_IB_GID_INDEX)", name, gi);
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, e->gid.raw, text, sizeof text);
    print_message("%s: port %d ACTIVE, mtu %d, gid[%d] %s\n", name, PORT,
                  128 << e->port.active_mtu, gi, text);

    e->pd = ibv_alloc_pd(e->ctx);
    assert_non_null(e->pd);
    e->cq = ibv_create_cq(e->ctx, 16, NULL, NULL, 0);
    assert_non_null(e->cq);
    struct ibv_qp_init_attr qa = {
        .send_cq = e->cq,
        .recv_cq = e->cq,
        .cap = {.max_send_wr = 8, .max_recv_wr = 8, .max_send_sge = 1, .max_recv_sge = 1},
        .qp_type = IBV_QPT_RC,
    };
    e->qp = ibv_create_qp(e->pd, &qa);
    if (!e->qp) fail_msg("%s: ibv_create_qp(RC) failed", name);
    e->buf = aligned_alloc(4096, PAYLOAD);
    assert_non_null(e->buf);
    e->mr = ibv_reg_mr(e->pd, e->buf, PAYLOAD,
                       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (!e->mr) fail_msg("%s: ibv_reg_mr of %u bytes failed", name, PAYLOAD);
    e->psn = (uint32_t)(name[3] == '0' ? 0x1234 : 0x5678);
}

static void close_end(end *e)
{
    if (e->mr) ibv_dereg_mr(e->mr);
    if (e->qp) ibv_destroy_qp(e->qp);
    if (e->cq) ibv_destroy_cq(e->cq);
    if (e->pd) ibv_dealloc_pd(e->pd);
    if (e->ctx) ibv_close_device(e->ctx);
    free(e->buf);
}

/* RESET -> INIT -> RTR -> RTS against the remote end's QPN, GID and PSN. */
static void connect_qp(end *e, const end *remote)
{
    struct ibv_qp_attr a = {
        .qp_state = IBV_QPS_INIT,
        .pkey_index = 0,
        .port_num = PORT,
        .qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE,
    };
    int rc = ibv_modify_qp(e->qp, &a,
                           IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc) fail_msg("%s: QP to INIT: %s", e->name, strerror(rc));

    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = e->port.active_mtu;
    a.dest_qp_num = remote->qp->qp_num;
    a.rq_psn = remote->psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 12;
    a.ah_attr.is_global = 1; /* RoCE: addressed by GID, no LID */
    a.ah_attr.grh.dgid = remote->gid;
    a.ah_attr.grh.sgid_index = (uint8_t)gid_index();
    a.ah_attr.grh.hop_limit = 64;
    a.ah_attr.port_num = PORT;
    rc = ibv_modify_qp(e->qp, &a,
                       IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                           IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (rc) fail_msg("%s: QP to RTR: %s", e->name, strerror(rc));

    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    a.timeout = 14;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.sq_psn = e->psn;
    a.max_rd_atomic = 1;
    rc = ibv_modify_qp(e->qp, &a,
                       IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                           IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
    if (rc) fail_msg("%s: QP to RTS: %s", e->name, strerror(rc));
}

static void test_devices_active(void **state)
{
    (void)state;
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list || n == 0)
        fail_msg("no verbs devices (is rdma_rxe loaded? run inside tools/rxe_vm.sh)");
    end e0, e1;
    open_end(list, "rxe0", &e0);
    open_end(list, "rxe1", &e1);
    close_end(&e1);
    close_end(&e0);
    ibv_free_device_list(list);
}

static void test_rc_write_1mib(void **state)
{
    (void)state;
    struct ibv_device **list = ibv_get_device_list(NULL);
    assert_non_null(list);
    end a, b;
    open_end(list, "rxe0", &a);
    open_end(list, "rxe1", &b);
    for (uint32_t i = 0; i < PAYLOAD; i++) a.buf[i] = (uint8_t)(i * 7u + (i >> 12));
    memset(b.buf, 0, PAYLOAD);
    connect_qp(&a, &b);
    connect_qp(&b, &a);

    long long sent0 = rxe_counter("rxe0", "sent_pkts");
    long long rcvd0 = rxe_counter("rxe1", "rcvd_pkts");
    long long tx0 = read_counter("/sys/class/net/veth0/statistics/tx_bytes");
    if (sent0 < 0 || rcvd0 < 0 || tx0 < 0)
        fail_msg("rxe/veth counters missing (rxe0 sent_pkts %lld, rxe1 rcvd_pkts %lld, "
                 "veth0 tx_bytes %lld)", sent0, rcvd0, tx0);

    struct ibv_sge sge = {.addr = (uintptr_t)a.buf, .length = PAYLOAD, .lkey = a.mr->lkey};
    struct ibv_send_wr wr = {
        .wr_id = 42,
        .sg_list = &sge,
        .num_sge = 1,
        .opcode = IBV_WR_RDMA_WRITE,
        .send_flags = IBV_SEND_SIGNALED,
        .wr.rdma = {.remote_addr = (uintptr_t)b.buf, .rkey = b.mr->rkey},
    };
    struct ibv_send_wr *bad = NULL;
    double t0 = now_s();
    int rc = ibv_post_send(a.qp, &wr, &bad);
    if (rc) fail_msg("rxe0: ibv_post_send RDMA WRITE: %s", strerror(rc));

    /* The requester's completion means the responder acknowledged every
     * packet, so the data is in b.buf. */
    struct ibv_wc wc;
    int got = 0;
    while (got == 0 && now_s() - t0 < 60.0) {
        got = ibv_poll_cq(a.cq, 1, &wc);
        assert_true(got >= 0);
    }
    double dt = now_s() - t0;
    if (got == 0) fail_msg("rxe0 -> rxe1: RDMA WRITE of %u bytes did not complete in 60 s", PAYLOAD);
    if (wc.status != IBV_WC_SUCCESS)
        fail_msg("rxe0 -> rxe1: RDMA WRITE completed with %s (vendor_err %u)",
                 ibv_wc_status_str(wc.status), wc.vendor_err);
    assert_int_equal(wc.wr_id, 42);
    assert_int_equal(wc.opcode, IBV_WC_RDMA_WRITE);

    size_t bad_at = PAYLOAD;
    for (size_t i = 0; i < PAYLOAD && bad_at == PAYLOAD; i++)
        if (b.buf[i] != a.buf[i]) bad_at = i;
    if (bad_at != PAYLOAD)
        fail_msg("rxe1 buffer differs at byte %zu: got %u, want %u", bad_at, b.buf[bad_at],
                 a.buf[bad_at]);

    /* Every payload packet carries at most one MTU of data. */
    long long mtu = 128 << a.port.active_mtu;
    long long min_pkts = (PAYLOAD + mtu - 1) / mtu;
    long long sent = rxe_counter("rxe0", "sent_pkts") - sent0;
    long long rcvd = rxe_counter("rxe1", "rcvd_pkts") - rcvd0;
    long long tx = read_counter("/sys/class/net/veth0/statistics/tx_bytes") - tx0;
    print_message("RDMA WRITE %u bytes in %.1f ms (%.1f MB/s); rxe0 sent_pkts +%lld, rxe1 "
                  "rcvd_pkts +%lld (>= %lld at mtu %lld), veth0 tx_bytes +%lld\n",
                  PAYLOAD, dt * 1e3, PAYLOAD / dt / 1e6, sent, rcvd, min_pkts, mtu, tx);
    if (sent < min_pkts || rcvd < min_pkts)
        fail_msg("rxe packet counters grew too little (sent %lld, rcvd %lld, need %lld): the "
                 "bytes did not go through rxe0/rxe1", sent, rcvd, min_pkts);
    if (tx < (long long)PAYLOAD)
        fail_msg("veth0 sent only %lld bytes for a %u-byte RDMA WRITE: the bytes did not cross "
                 "the veth pair", tx, PAYLOAD);

    close_end(&b);
    close_end(&a);
    ibv_free_device_list(list);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devices_active),
        cmocka_unit_test(test_rc_write_1mib),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
