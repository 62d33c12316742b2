/* RDMA verbs channel (libibverbs): one reliable-connected queue pair per link.
 *
 * Like shm, data flows from the connecting side (the sender) to the
 * accepting side (the receiver), and the bytes form a stream of frames
 * (frame.c) padded to 8 bytes in a ring buffer:
 *   - the receiver registers a ring (RING_BYTES) for remote write; the sender
 *     copies frames into a registered staging ring of the same size at the
 *     same offsets and RDMA-WRITEs-with-immediate each new stretch to the
 *     peer (immediate = its length), so the receiver learns from its receive
 *     completions, in order, how far the stream has come;
 *   - credits: the receiver returns freed ring bytes and the receive work
 *     requests it re-posted in a zero-length SEND with immediate (bits 0..23:
 *     bytes/8, bits 24..31: work requests), so a slow receiver is never
 *     overrun and a write never meets an empty receive queue;
 *   - user buffers are copied through the registered rings (one copy on each
 *     side), so nothing is registered per call; there is no registration
 *     cache (see transport/README.md, "Backend verbs");
 *   - completions: progress polls the CQ; with nothing there it busy-polls a
 *     bounded time, then arms the CQ's completion channel, whose fd poll_fds
 *     hands to the waiting thread, so it sleeps in poll().
 * Setup and liveness go over a tcp channel (tcp_chan.c, with its HMAC hello):
 * the two sides swap {QPN, PSN, LID, GID, MTU, ring address, rkey} on it and
 * keep it open, so a dead peer shows up at once as EOF instead of after the
 * queue pair's retry timeout.
 *
 * Device: VKT_IB_DEVICE, else the first device with an ACTIVE port. GID
 * index: VKT_IB_GID_INDEX, else on RoCE the first RoCE v2 entry holding an
 * IPv4-mapped address (routable; soft-RoCE puts it at index 1), else the
 * first RoCE v2 entry, else 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "channel.h"

#define INFO_MAGIC 0x42564b56u /* "VKVB" */
#define INFO_VERSION 1u
#define RING_BYTES (4u << 20)
#define MAX_SENDS 128  /* outstanding send work requests per QP */
#define NRECV 256      /* receive work requests posted on the receiver */
#define NRECV_CREDIT 64 /* ... and on the sender, for credit messages */
#define CREDIT_WR_BATCH 32
#define SPIN_POLLS 200 /* bounded busy-poll before sleeping on the channel fd */
#define MAX_PENDING 64
#define SETUP_TIMEOUT_S 30.0

_Static_assert(RING_BYTES / 8 < (1u << 24), "credit immediates carry bytes/8 in 24 bits");

/* The connection data each side sends on the tcp channel. */
typedef struct conn_info {
    uint32_t magic, version;
    uint32_t qpn, psn;
    uint16_t lid;
    uint8_t mtu, pad[5];
    uint8_t gid[16];
    uint64_t ring_addr; /* receiver only */
    uint32_t rkey, ring_cap;
} conn_info;

/* One opened device: context, protection domain, the chosen port. */
typedef struct vdev {
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    char name[IBV_SYSFS_NAME_MAX];
    uint8_t port;
    int gid_index, ethernet;
    enum ibv_mtu mtu;
    uint16_t lid;
    union ibv_gid gid;
} vdev;

typedef struct vb_chan {
    vkt_chan base; /* first: a vkt_chan* is a vb_chan* */
    int sender, checksum, rank;
    vdev dev;
    struct ibv_comp_channel *cc;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    struct ibv_mr *mr;
    char *ring; /* receiver: the target ring; sender: the staging ring */
    uint64_t remote_addr;
    uint32_t rkey;
    unsigned unacked_events;
    int armed;
    /* stream state: bytes produced (head), posted to the wire, acknowledged
     * by credits (sender) / arrived and consumed (receiver) */
    uint64_t head, posted, tail, reported;
    int wr_credits, sends_out, recv_refilled;
    uint64_t send_seq, recv_seq;
    vkt_chan_req *sq, *sq_tail, *rq, *rq_tail;
    size_t tx_pad, rx_skip;
    vkt_chan *tcp;        /* setup, then liveness */
    vkt_chan_req tcp_bye; /* a receive that only ends when the peer goes away */
    unsigned char bye_byte;
    int ready; /* the QP is connected (a sender finishes setup in progress) */
    conn_info mine, theirs;
    vkt_chan_req sreq, rreq; /* the swap of conn_info on tcp */
} vb_chan;

/* A link being accepted: the tcp channel, then the swap of conn_info. */
typedef struct setup {
    vkt_chan *tcp;
    vb_chan *vc;
    int sent, peer;
    double t0;
} setup;

struct vkt_chan_listener {
    vkt_chan_listener *tcp;
    vkt_chan_config cfg;
    setup pend[MAX_PENDING];
    int npend;
};

struct vkt_chan_connecting {
    vkt_chan_connecting *tcp_state;
};

/* ---------------------------------------------------------------- device -- */

static int ipv4_mapped(const union ibv_gid *g)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(g->raw, prefix, sizeof prefix) == 0;
}

/* The GID index to use on dev's port (see the header comment). */
static vkt_status pick_gid(vdev *d, const struct ibv_port_attr *pa)
{
    const char *env = getenv("VKT_IB_GID_INDEX");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        VKT_FAIL_IF(*end || v < 0 || v >= pa->gid_tbl_len, VKT_ERR_INVALID_ARG,
                    "VKT_IB_GID_INDEX=%s: %s port %u has GID indices 0..%d", env, d->name,
                    d->port, pa->gid_tbl_len - 1);
        d->gid_index = (int)v;
        return VKT_OK;
    }
    d->gid_index = 0;
    if (!d->ethernet) return VKT_OK;
    int first_v2 = -1;
    for (int i = 0; i < pa->gid_tbl_len; i++) {
        struct ibv_gid_entry e;
        if (ibv_query_gid_ex(d->ctx, d->port, (uint32_t)i, &e, 0) != 0) continue;
        if (e.gid_type != IBV_GID_TYPE_ROCE_V2) continue;
        if (ipv4_mapped(&e.gid)) {
            d->gid_index = i;
            return VKT_OK;
        }
        if (first_v2 < 0) first_v2 = i;
    }
    if (first_v2 >= 0) d->gid_index = first_v2;
    return VKT_OK;
}

/* First ACTIVE port of an open context, or 0. */
static uint8_t active_port(struct ibv_context *ctx, struct ibv_port_attr *pa)
{
    struct ibv_device_attr da;
    if (ibv_query_device(ctx, &da) != 0) return 0;
    for (uint8_t p = 1; p <= da.phys_port_cnt; p++)
        if (ibv_query_port(ctx, p, pa) == 0 && pa->state == IBV_PORT_ACTIVE) return p;
    return 0;
}

static void dev_close(vdev *d)
{
    if (d->pd) ibv_dealloc_pd(d->pd);
    if (d->ctx) ibv_close_device(d->ctx);
    d->pd = NULL;
    d->ctx = NULL;
}

/* Open VKT_IB_DEVICE or the first device with an ACTIVE port. */
static vkt_status dev_open(vdev *d)
{
    const char *want = getenv("VKT_IB_DEVICE");
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    struct ibv_port_attr pa;
    memset(d, 0, sizeof *d);
    VKT_FAIL_IF(!list, VKT_ERR_UNSUPPORTED, "verbs: %s%s%scannot list RDMA devices: %s (no "
                "RDMA support in this kernel, or rdma-core's drivers are missing)",
                want && *want ? "no device " : "", want && *want ? want : "",
                want && *want ? " (VKT_IB_DEVICE): " : "", strerror(errno));
    char seen[256] = "";
    size_t sl = 0;
    for (int i = 0; i < n && !d->ctx; i++) {
        const char *name = ibv_get_device_name(list[i]);
        sl += (size_t)snprintf(seen + sl, sl < sizeof seen ? sizeof seen - sl : 0, "%s%s",
                               i ? ", " : "", name);
        if (sl >= sizeof seen) sl = sizeof seen - 1;
        if (want && *want && strcmp(want, name) != 0) continue;
        struct ibv_context *ctx = ibv_open_device(list[i]);
        if (!ctx) continue;
        uint8_t port = active_port(ctx, &pa);
        if (!port) {
            ibv_close_device(ctx);
            if (want && *want) {
                ibv_free_device_list(list);
                return VKT_ERROR(VKT_ERR_UNSUPPORTED, "verbs: device %s (VKT_IB_DEVICE) has "
                                 "no ACTIVE port; check its link (ibv_devinfo)", want);
            }
            continue;
        }
        d->ctx = ctx;
        d->port = port;
        snprintf(d->name, sizeof d->name, "%s", name);
    }
    ibv_free_device_list(list);
    VKT_FAIL_IF(!d->ctx && want && *want, VKT_ERR_UNSUPPORTED,
                "verbs: no RDMA device named %s (VKT_IB_DEVICE); devices here: %s", want,
                n ? seen : "none");
    VKT_FAIL_IF(!d->ctx, VKT_ERR_UNSUPPORTED, "verbs: no RDMA device with an ACTIVE port "
                "(devices: %s); use backend tcp, or bring a port up", n ? seen : "none");
    d->ethernet = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
    d->mtu = pa.active_mtu;
    d->lid = pa.lid;
    vkt_status st = pick_gid(d, &pa);
    if (st == VKT_OK && ibv_query_gid(d->ctx, d->port, d->gid_index, &d->gid) != 0)
        st = VKT_ERROR(VKT_ERR_SYSTEM, "verbs: %s port %u: cannot read GID %d", d->name,
                       d->port, d->gid_index);
    if (st == VKT_OK && !(d->pd = ibv_alloc_pd(d->ctx)))
        st = VKT_ERROR(VKT_ERR_SYSTEM, "verbs: %s: cannot allocate a protection domain",
                       d->name);
    if (st != VKT_OK) dev_close(d);
    return st;
}

int vkt__verbs_usable(void)
{
    vdev d;
    vkt_status st = dev_open(&d);
    if (st != VKT_OK) {
        vkt_clear_error();
        return 0;
    }
    dev_close(&d);
    return 1;
}

vkt_status vkt__verbs_describe(char *out, size_t cap)
{
    int n = 0;
    size_t used = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    out[0] = '\0';
    VKT_FAIL_IF(!list, VKT_ERR_UNSUPPORTED, "cannot list RDMA devices: %s", strerror(errno));
    for (int i = 0; i < n && used < cap; i++) {
        struct ibv_context *ctx = ibv_open_device(list[i]);
        struct ibv_device_attr da;
        if (!ctx || ibv_query_device(ctx, &da) != 0) {
            used += (size_t)snprintf(out + used, cap - used, "%s: cannot open\n",
                                     ibv_get_device_name(list[i]));
            if (ctx) ibv_close_device(ctx);
            continue;
        }
        for (uint8_t p = 1; p <= da.phys_port_cnt && used < cap; p++) {
            struct ibv_port_attr pa;
            if (ibv_query_port(ctx, p, &pa) != 0) continue;
            used += (size_t)snprintf(out + used, cap - used, "%s port %u: %s, %s, mtu %d\n",
                                     ibv_get_device_name(list[i]), p,
                                     ibv_port_state_str(pa.state),
                                     pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE"
                                                                              : "InfiniBand",
                                     128 << pa.active_mtu);
        }
        ibv_close_device(ctx);
    }
    ibv_free_device_list(list);
    return VKT_OK;
}

/* ------------------------------------------------------------ queue pair -- */

static vkt_status post_recvs(vb_chan *c, int n)
{
    for (int i = 0; i < n; i++) {
        struct ibv_recv_wr wr = {0}, *bad = NULL;
        int rc = ibv_post_recv(c->qp, &wr, &bad);
        VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel with rank %d (%s port %u): cannot post "
                    "a receive: %s", c->base.peer, c->dev.name, c->dev.port, strerror(rc));
    }
    return VKT_OK;
}

static void chan_free(vb_chan *c)
{
    if (!c) return;
    if (c->qp) ibv_destroy_qp(c->qp);
    if (c->mr) ibv_dereg_mr(c->mr);
    if (c->cq) {
        if (c->unacked_events) ibv_ack_cq_events(c->cq, c->unacked_events);
        ibv_destroy_cq(c->cq);
    }
    if (c->cc) ibv_destroy_comp_channel(c->cc);
    if (c->ring) munmap(c->ring, RING_BYTES);
    dev_close(&c->dev);
    if (c->tcp) c->tcp->ops->close(c->tcp);
    vkt_free(c);
}

/* Open the device and make the CQ, the QP (in INIT) and the ring. */
static vkt_status chan_new(const vkt_chan_config *cfg, int sender, vb_chan **out)
{
    vb_chan *c = vkt_calloc(1, sizeof *c);
    VKT_FAIL_IF(!c, VKT_ERR_NOMEM, "verbs channel: out of memory");
    c->base.ops = &vkt__verbs_channel;
    c->base.peer = -1;
    c->sender = sender;
    c->checksum = cfg->checksum;
    c->rank = cfg->rank;
    vkt_status st = dev_open(&c->dev);
    if (st != VKT_OK) {
        vkt_free(c);
        return st;
    }
    const char *what = NULL;
    int cqe = MAX_SENDS + NRECV + 16;
    void *ring = mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    c->ring = ring == MAP_FAILED ? NULL : ring;
    if (!c->ring)
        what = "allocate the ring";
    else if (!(c->mr = ibv_reg_mr(c->dev.pd, c->ring, RING_BYTES,
                                  IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE)))
        what = "register the ring (check ulimit -l)";
    else if (!(c->cc = ibv_create_comp_channel(c->dev.ctx)))
        what = "create a completion channel";
    else if (fcntl(c->cc->fd, F_SETFL, fcntl(c->cc->fd, F_GETFL) | O_NONBLOCK) != 0)
        what = "make the completion channel non-blocking";
    else if (!(c->cq = ibv_create_cq(c->dev.ctx, cqe, NULL, c->cc, 0)))
        what = "create a completion queue";
    if (!what) {
        struct ibv_qp_init_attr qa = {0};
        qa.send_cq = c->cq;
        qa.recv_cq = c->cq;
        qa.qp_type = IBV_QPT_RC;
        qa.cap.max_send_wr = MAX_SENDS;
        qa.cap.max_recv_wr = NRECV;
        qa.cap.max_send_sge = 1;
        qa.cap.max_recv_sge = 1;
        if (!(c->qp = ibv_create_qp(c->dev.pd, &qa))) what = "create a queue pair";
    }
    if (!what) {
        struct ibv_qp_attr a = {0};
        a.qp_state = IBV_QPS_INIT;
        a.pkey_index = 0;
        a.port_num = c->dev.port;
        a.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
        if (ibv_modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
                                         IBV_QP_ACCESS_FLAGS) != 0)
            what = "move the queue pair to INIT";
    }
    if (what) {
        st = VKT_ERROR(VKT_ERR_SYSTEM, "verbs: %s port %u: cannot %s: %s", c->dev.name,
                       c->dev.port, what, strerror(errno));
        chan_free(c);
        return st;
    }
    *out = c;
    return VKT_OK;
}

static void info_fill(const vb_chan *c, conn_info *i)
{
    memset(i, 0, sizeof *i);
    i->magic = INFO_MAGIC;
    i->version = INFO_VERSION;
    i->qpn = c->qp->qp_num;
    vkt__random(&i->psn, sizeof i->psn);
    i->psn &= 0xffffff;
    i->lid = c->dev.lid;
    i->mtu = (uint8_t)c->dev.mtu;
    memcpy(i->gid, c->dev.gid.raw, 16);
    if (!c->sender) {
        i->ring_addr = (uint64_t)(uintptr_t)c->ring;
        i->rkey = c->mr->rkey;
        i->ring_cap = RING_BYTES;
    }
}

/* INIT -> RTR -> RTS against the peer's data; posts the receives first. */
static vkt_status qp_connect(vb_chan *c, const conn_info *mine, const conn_info *peer)
{
    VKT_FAIL_IF(peer->magic != INFO_MAGIC || peer->version != INFO_VERSION, VKT_ERR_CORRUPT,
                "verbs channel with rank %d: not a vktrain verbs setup message (different "
                "versions?)", c->base.peer);
    VKT_FAIL_IF(c->sender && (peer->ring_cap != RING_BYTES || !peer->rkey), VKT_ERR_CORRUPT,
                "verbs channel to rank %d: its ring is %u bytes, expected %u", c->base.peer,
                peer->ring_cap, RING_BYTES);
    VKT_CHECK(post_recvs(c, c->sender ? NRECV_CREDIT : NRECV));
    struct ibv_qp_attr a = {0};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = peer->mtu < (uint8_t)c->dev.mtu ? (enum ibv_mtu)peer->mtu : c->dev.mtu;
    a.dest_qp_num = peer->qpn;
    a.rq_psn = peer->psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 12;
    a.ah_attr.dlid = peer->lid;
    a.ah_attr.port_num = c->dev.port;
    if (c->dev.ethernet || !peer->lid) {
        a.ah_attr.is_global = 1;
        memcpy(a.ah_attr.grh.dgid.raw, peer->gid, 16);
        a.ah_attr.grh.sgid_index = (uint8_t)c->dev.gid_index;
        a.ah_attr.grh.hop_limit = 64;
    }
    int rc = ibv_modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
                                          IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                          IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel with rank %d: %s port %u GID index %d: "
                "cannot move the queue pair to RTR: %s (wrong VKT_IB_GID_INDEX, or the peer's "
                "GID is unreachable?)", c->base.peer, c->dev.name, c->dev.port,
                c->dev.gid_index, strerror(rc));
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    /* 4.096 us * 2^17 = 0.5 s per try: generous, as a dead peer shows up on
     * the tcp link at once, and emulated RoCE under load is slow to ack. */
    a.timeout = 17;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.sq_psn = mine->psn;
    a.max_rd_atomic = 1;
    rc = ibv_modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                      IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
    VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel with rank %d: %s port %u: cannot move the "
                "queue pair to RTS: %s", c->base.peer, c->dev.name, c->dev.port, strerror(rc));
    c->remote_addr = peer->ring_addr;
    c->rkey = peer->rkey;
    c->wr_credits = NRECV;
    return VKT_OK;
}

/* ----------------------------------------------------------------- setup -- */

static vkt_status verbs_listen(const vkt_chan_config *cfg, const char *host,
                               vkt_chan_listener **out, char *addr, size_t cap)
{
    vdev d;
    char taddr[VKT_CHAN_ADDR_MAX];
    *out = NULL;
    VKT_CHECK(dev_open(&d)); /* fail here, with the device named, not at first use */
    vkt_chan_listener *l = vkt_calloc(1, sizeof *l);
    if (!l) {
        dev_close(&d);
        return VKT_ERROR(VKT_ERR_NOMEM, "verbs channel: out of memory");
    }
    l->cfg = *cfg;
    vkt_status st = vkt__tcp_channel.listen(cfg, host, &l->tcp, taddr, sizeof taddr);
    if (st == VKT_OK) snprintf(addr, cap, "%s:%u|%s", d.name, d.port, taddr);
    dev_close(&d);
    if (st != VKT_OK) vkt_free(l);
    else *out = l;
    return st;
}

/* The end of setup on either side: connect the QP to the peer's data, and
 * keep a receive posted on tcp that only ends when the peer goes away. */
static vkt_status finish_setup(vb_chan *c)
{
    VKT_CHECK(qp_connect(c, &c->mine, &c->theirs));
    VKT_CHECK(c->tcp->ops->irecv(c->tcp, &c->tcp_bye, &c->bye_byte, 1));
    c->ready = 1;
    return VKT_OK;
}

/* Accepting side: take the sender's conn_info, connect (RTR before the
 * sender can write), answer with ours; *ready = 1 when the answer is out. */
static vkt_status setup_step(const vkt_chan_config *cfg, setup *s, int *ready)
{
    int done = 0;
    *ready = 0;
    if (!s->vc) {
        VKT_CHECK(chan_new(cfg, 0, &s->vc));
        s->vc->base.peer = s->peer;
        s->vc->tcp = s->tcp;
        s->tcp = NULL;
        info_fill(s->vc, &s->vc->mine);
        VKT_CHECK(s->vc->tcp->ops->irecv(s->vc->tcp, &s->vc->rreq, &s->vc->theirs,
                                         sizeof s->vc->theirs));
    }
    vb_chan *c = s->vc;
    if (!s->sent) {
        VKT_CHECK(c->tcp->ops->test(c->tcp, &c->rreq, &done));
        if (!done) return VKT_OK;
        VKT_CHECK(finish_setup(c));
        VKT_CHECK(c->tcp->ops->isend(c->tcp, &c->sreq, &c->mine, sizeof c->mine));
        s->sent = 1;
    }
    VKT_CHECK(c->tcp->ops->test(c->tcp, &c->sreq, &done));
    *ready = done;
    return VKT_OK;
}

static void setup_drop(setup *s)
{
    chan_free(s->vc);
    if (s->tcp) s->tcp->ops->close(s->tcp);
    memset(s, 0, sizeof *s);
}

static vkt_status verbs_accept(vkt_chan_listener *l, vkt_chan **out, int *peer)
{
    *out = NULL;
    while (l->npend < MAX_PENDING) {
        vkt_chan *t = NULL;
        int q = -1;
        VKT_CHECK(vkt__tcp_channel.accept(l->tcp, &t, &q));
        if (!t) break;
        l->pend[l->npend++] = (setup){.tcp = t, .peer = q, .t0 = vkt__now()};
    }
    for (int i = 0; i < l->npend; i++) {
        setup *s = &l->pend[i];
        int ready = 0;
        vkt_status st = setup_step(&l->cfg, s, &ready);
        if (st == VKT_OK && !ready && vkt__now() - s->t0 < SETUP_TIMEOUT_S) continue;
        if (st != VKT_OK || !ready) {
            fprintf(stderr, "vktrain: rank %d: dropped a verbs connection from rank %d: %s\n",
                    l->cfg.rank, s->peer, st != VKT_OK ? vkt_last_error() : "setup timed out");
            setup_drop(s);
            l->pend[i--] = l->pend[--l->npend];
            continue;
        }
        *out = &s->vc->base;
        *peer = s->peer;
        l->pend[i] = l->pend[--l->npend];
        return VKT_OK;
    }
    return VKT_OK;
}

/* Connecting side: once the tcp channel is up, send our conn_info and hand
 * out the channel at once; its progress connects the QP when the answer
 * comes. Waiting for the answer here would deadlock two ranks that connect
 * to each other before either accepts (the direct links of recursive
 * doubling do exactly that). */
static vkt_status verbs_connect(const vkt_chan_config *cfg, const char *addr, int peer,
                                vkt_chan_connecting **state, vkt_chan **out)
{
    *out = NULL;
    const char *bar = strchr(addr, '|');
    VKT_FAIL_IF(!bar, VKT_ERR_CORRUPT, "rank %d published a malformed verbs address '%s'",
                peer, addr);
    if (!*state) {
        *state = vkt_calloc(1, sizeof **state);
        VKT_FAIL_IF(!*state, VKT_ERR_NOMEM, "verbs channel: out of memory");
    }
    vkt_chan *tcp = NULL;
    VKT_CHECK(vkt__tcp_channel.connect(cfg, bar + 1, peer, &(*state)->tcp_state, &tcp));
    if (!tcp) return VKT_OK;
    vkt_free(*state);
    *state = NULL;
    vb_chan *c = NULL;
    vkt_status st = chan_new(cfg, 1, &c);
    if (st != VKT_OK) {
        tcp->ops->close(tcp);
        return st;
    }
    c->base.peer = peer;
    c->tcp = tcp;
    info_fill(c, &c->mine);
    st = tcp->ops->irecv(tcp, &c->rreq, &c->theirs, sizeof c->theirs);
    if (st == VKT_OK) st = tcp->ops->isend(tcp, &c->sreq, &c->mine, sizeof c->mine);
    /* Push it out now: the acceptor needs it to finish its accept, and our
     * progress may not run before that (the ring accepts before it sends). */
    int sent = 0;
    if (st == VKT_OK) st = tcp->ops->test(tcp, &c->sreq, &sent);
    if (st != VKT_OK) {
        chan_free(c);
        return st;
    }
    *out = &c->base;
    return VKT_OK;
}

static void verbs_abort_connect(vkt_chan_connecting *s)
{
    if (!s) return;
    vkt__tcp_channel.abort_connect(s->tcp_state);
    vkt_free(s);
}

static void verbs_close_listener(vkt_chan_listener *l)
{
    if (!l) return;
    for (int i = 0; i < l->npend; i++) setup_drop(&l->pend[i]);
    vkt__tcp_channel.close_listener(l->tcp);
    vkt_free(l);
}

/* ------------------------------------------------------------- data path -- */

static vkt_status wc_error(const vb_chan *c, const struct ibv_wc *wc)
{
    const char *hint = "";
    if (wc->status == IBV_WC_RETRY_EXC_ERR || wc->status == IBV_WC_RNR_RETRY_EXC_ERR)
        hint = " (the peer died, or its port or the network is down)";
    else if (wc->status == IBV_WC_REM_ACCESS_ERR)
        hint = " (the peer refused the write: its ring key or address is stale)";
    else if (wc->status == IBV_WC_WR_FLUSH_ERR)
        hint = " (the queue pair is in error state after an earlier failure)";
    return VKT_ERROR(VKT_ERR_REMOTE, "verbs channel %s rank %d (%s port %u): work completion "
                     "failed: %s (vendor error 0x%x)%s", c->sender ? "to" : "from", c->base.peer,
                     c->dev.name, c->dev.port, ibv_wc_status_str(wc->status), wc->vendor_err,
                     hint);
}

/* A failed completion: once the QP is in error every other request flushes,
 * and the flushes may be queued before the one that failed, so report the
 * first non-flush error among those still queued, if any. */
static vkt_status first_error(vb_chan *c, const struct ibv_wc *failed)
{
    struct ibv_wc wc[16];
    int n;
    if (failed->status != IBV_WC_WR_FLUSH_ERR) return wc_error(c, failed);
    for (int round = 0; round < 64 && (n = ibv_poll_cq(c->cq, 16, wc)) > 0; round++)
        for (int i = 0; i < n; i++)
            if (wc[i].status != IBV_WC_SUCCESS && wc[i].status != IBV_WC_WR_FLUSH_ERR)
                return wc_error(c, &wc[i]);
    return wc_error(c, failed);
}

/* Handle every completion queued; *any = 1 when there was one. */
static vkt_status poll_cq(vb_chan *c, int *any)
{
    struct ibv_wc wc[16];
    int n;
    while ((n = ibv_poll_cq(c->cq, 16, wc)) > 0) {
        *any = 1;
        for (int i = 0; i < n; i++)
            if (wc[i].status != IBV_WC_SUCCESS && wc[i].status != IBV_WC_WR_FLUSH_ERR)
                return wc_error(c, &wc[i]);
        for (int i = 0; i < n; i++) {
            if (wc[i].status != IBV_WC_SUCCESS) return first_error(c, &wc[i]);
            if (!(wc[i].opcode & IBV_WC_RECV)) { /* our write or credit went out */
                c->sends_out--;
                continue;
            }
            uint32_t imm = ntohl(wc[i].imm_data);
            if (c->sender) { /* credits */
                c->tail += (uint64_t)(imm & 0xffffffu) * 8;
                c->wr_credits += (int)(imm >> 24);
            } else {
                c->head += imm;
                c->recv_refilled++;
            }
            VKT_CHECK(post_recvs(c, 1));
        }
    }
    VKT_FAIL_IF(n < 0, VKT_ERR_REMOTE, "verbs channel with rank %d (%s port %u): polling the "
                "completion queue failed", c->base.peer, c->dev.name, c->dev.port);
    return VKT_OK;
}

/* Consume the completion channel's events so the fd stops being readable. */
static void drain_events(vb_chan *c)
{
    struct ibv_cq *cq;
    void *ctx;
    while (ibv_get_cq_event(c->cc, &cq, &ctx) == 0) {
        c->unacked_events++;
        c->armed = 0;
    }
    if (c->unacked_events >= 64) {
        ibv_ack_cq_events(c->cq, c->unacked_events);
        c->unacked_events = 0;
    }
}

/* Copy up to the free ring space from iov into the staging ring. */
static size_t stage(vb_chan *c, const struct iovec *iov, int niov)
{
    size_t room = (size_t)(RING_BYTES - (c->head - c->tail)), done = 0;
    for (int i = 0; i < niov && room > done; i++) {
        size_t n = iov[i].iov_len < room - done ? iov[i].iov_len : room - done;
        size_t at = (size_t)((c->head + done) % RING_BYTES);
        size_t first = RING_BYTES - at < n ? RING_BYTES - at : n;
        memcpy(c->ring + at, iov[i].iov_base, first);
        memcpy(c->ring, (char *)iov[i].iov_base + first, n - first);
        done += n;
    }
    c->head += done;
    return done;
}

static size_t pad_of(size_t len) { return (8 - (len & 7)) & 7; }

static const char zeros[8];

/* Post RDMA writes for the staged bytes not yet on the wire. */
static vkt_status post_writes(vb_chan *c)
{
    while (c->posted < c->head && c->wr_credits > 0 && c->sends_out < MAX_SENDS) {
        size_t at = (size_t)(c->posted % RING_BYTES), n = (size_t)(c->head - c->posted);
        if (n > RING_BYTES - at) n = RING_BYTES - at;
        struct ibv_sge sge = {(uint64_t)(uintptr_t)(c->ring + at), (uint32_t)n, c->mr->lkey};
        struct ibv_send_wr wr = {0}, *bad = NULL;
        wr.sg_list = &sge;
        wr.num_sge = 1;
        wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
        wr.send_flags = IBV_SEND_SIGNALED;
        wr.imm_data = htonl((uint32_t)n);
        wr.wr.rdma.remote_addr = c->remote_addr + at;
        wr.wr.rdma.rkey = c->rkey;
        int rc = ibv_post_send(c->qp, &wr, &bad);
        VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel to rank %d (%s port %u): posting an "
                    "RDMA write failed: %s", c->base.peer, c->dev.name, c->dev.port,
                    strerror(rc));
        c->posted += n;
        c->sends_out++;
        c->wr_credits--;
    }
    return VKT_OK;
}

/* Stage queued frames (and the padding after each). Only while the staged
 * bytes can be posted at once (the stretch wraps at most once: two writes),
 * so a request marked done never leaves bytes behind that no later progress
 * call would post (the ring stops calling progress once its sends are done). */
static int send_some(vb_chan *c)
{
    int any = 0;
    if (c->wr_credits < 2 || c->sends_out > MAX_SENDS - 2) return 0;
    for (;;) {
        if (c->tx_pad) {
            struct iovec z = {(void *)zeros, c->tx_pad};
            size_t n = stage(c, &z, 1);
            if (!n) return any;
            c->tx_pad -= n;
            any = 1;
            continue;
        }
        if (!c->sq) return any;
        struct iovec iov[2];
        size_t n = stage(c, iov, vkt__frame_iov(c->sq, iov));
        if (!n) return any;
        any = 1;
        c->sq->off += n;
        if (c->sq->off == VKT_CHAN_HDR_BYTES + c->sq->len) {
            c->tx_pad = pad_of(c->sq->len);
            c->sq->done = 1;
            vkt__req_pop(&c->sq, &c->sq_tail);
        }
    }
}

/* Copy up to the arrived bytes from the ring into iov. */
static size_t take(vb_chan *c, const struct iovec *iov, int niov)
{
    size_t avail = (size_t)(c->head - c->tail), done = 0;
    for (int i = 0; i < niov && avail > done; i++) {
        size_t n = iov[i].iov_len < avail - done ? iov[i].iov_len : avail - done;
        size_t at = (size_t)((c->tail + done) % RING_BYTES);
        size_t first = RING_BYTES - at < n ? RING_BYTES - at : n;
        memcpy(iov[i].iov_base, c->ring + at, first);
        memcpy((char *)iov[i].iov_base + first, c->ring, n - first);
        done += n;
    }
    c->tail += done;
    return done;
}

/* Reduce the whole arrived elements straight from the ring into r->buf. */
static size_t reduce_from_ring(vb_chan *c, vkt_chan_req *r)
{
    size_t es = vkt_dtype_size(r->red_dtype), poff = r->off - VKT_CHAN_HDR_BYTES;
    size_t n = (size_t)(c->head - c->tail);
    if (n > r->len - poff) n = r->len - poff;
    n -= n % es;
    if (!n) return 0;
    size_t at = (size_t)(c->tail % RING_BYTES), first = RING_BYTES - at < n ? RING_BYTES - at : n;
    vkt__reduce(r->buf + poff, c->ring + at, r->red_in + poff, first / es, r->red_dtype,
                r->red_op);
    if (n > first)
        vkt__reduce(r->buf + poff + first, c->ring, r->red_in + poff + first, (n - first) / es,
                    r->red_dtype, r->red_op);
    c->tail += n;
    return n;
}

static vkt_status recv_some(vb_chan *c, int *any)
{
    for (;;) {
        if (c->rx_skip) {
            char sink[8];
            struct iovec z = {sink, c->rx_skip};
            size_t n = take(c, &z, 1);
            if (!n) return VKT_OK;
            c->rx_skip -= n;
            *any = 1;
            continue;
        }
        vkt_chan_req *r = c->rq;
        if (!r) return VKT_OK;
        struct iovec iov[2];
        size_t n;
        int niov = vkt__frame_iov(r, iov), fin;
        if (r->red_in && r->off >= VKT_CHAN_HDR_BYTES)
            n = reduce_from_ring(c, r);
        else
            n = take(c, iov, r->red_in ? 1 : niov);
        if (!n) return VKT_OK;
        *any = 1;
        VKT_CHECK(vkt__frame_recv_advance(r, n, c->base.peer, &c->recv_seq, &fin));
        if (fin) {
            c->rx_skip = pad_of(r->len);
            vkt__req_pop(&c->rq, &c->rq_tail);
        }
    }
}

/* Tell the sender about freed ring space and refilled receives. */
static vkt_status send_credits(vb_chan *c)
{
    uint64_t freed = (c->tail - c->reported) & ~(uint64_t)7;
    /* Batched, so the credit messages in flight stay few (at most a ring's
     * worth of bytes, RING_BYTES / 8 each, plus NRECV / CREDIT_WR_BATCH) and
     * never outrun the sender's NRECV_CREDIT receives. A sender is never
     * stuck for want of a report: with all arrived bytes consumed it still
     * has 7/8 of the ring, and it has at least NRECV - 31 writes. */
    while ((freed >= RING_BYTES / 8 || c->recv_refilled >= CREDIT_WR_BATCH) &&
           c->sends_out < MAX_SENDS) {
        uint32_t wrs = c->recv_refilled > 255 ? 255u : (uint32_t)c->recv_refilled;
        struct ibv_send_wr wr = {0}, *bad = NULL;
        wr.opcode = IBV_WR_SEND_WITH_IMM;
        wr.send_flags = IBV_SEND_SIGNALED;
        wr.imm_data = htonl((uint32_t)(freed / 8) | wrs << 24);
        int rc = ibv_post_send(c->qp, &wr, &bad);
        VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel from rank %d (%s port %u): posting "
                    "credits failed: %s", c->base.peer, c->dev.name, c->dev.port, strerror(rc));
        c->sends_out++;
        c->reported += freed;
        c->recv_refilled -= (int)wrs;
        freed = (c->tail - c->reported) & ~(uint64_t)7;
    }
    return VKT_OK;
}

/* Move data both ways once; *any = 1 when anything happened. */
static vkt_status move(vb_chan *c, int *any)
{
    VKT_CHECK(poll_cq(c, any));
    if (c->sender) {
        *any |= send_some(c);
        VKT_CHECK(post_writes(c));
    } else {
        int got = 0;
        VKT_CHECK(recv_some(c, &got));
        *any |= got;
        VKT_CHECK(send_credits(c));
    }
    return VKT_OK;
}

/* A sender whose peer has not answered yet: wait on tcp for the answer. */
static vkt_status progress_setup(vb_chan *c, int *moved)
{
    int m = 0;
    vkt_status st = c->tcp->ops->progress(c->tcp, &m);
    VKT_FAIL_IF(st != VKT_OK, VKT_ERR_REMOTE, "verbs channel to rank %d (%s port %u): setup: "
                "%s", c->base.peer, c->dev.name, c->dev.port, vkt_last_error());
    if (!c->rreq.done) return VKT_OK;
    VKT_CHECK(finish_setup(c));
    *moved = 1;
    return VKT_OK;
}

static vkt_status verbs_progress(vkt_chan *ch, int *moved)
{
    vb_chan *c = (vb_chan *)ch;
    int any = 0;
    if (!c->ready) {
        VKT_CHECK(progress_setup(c, moved));
        if (!c->ready) return VKT_OK;
    }
    drain_events(c);
    VKT_CHECK(move(c, &any));
    /* Bounded busy-poll: an RDMA completion is usually microseconds away,
     * far less than a sleep in poll() and a wake-up would cost. */
    for (int i = 0; !any && (c->sq || c->rq) && i < SPIN_POLLS; i++) VKT_CHECK(move(c, &any));
    if (!any && !c->armed) {
        /* Arm, then look once more: a completion that came in between would
         * otherwise raise no event and we would sleep past it. */
        VKT_FAIL_IF(ibv_req_notify_cq(c->cq, 0) != 0, VKT_ERR_SYSTEM, "verbs channel with "
                    "rank %d (%s): cannot arm the completion queue", c->base.peer, c->dev.name);
        c->armed = 1;
        VKT_CHECK(move(c, &any));
    }
    if (!any && (c->sq || c->rq)) { /* the peer may be gone: the tcp link says so */
        int m = 0;
        vkt_status st = c->tcp->ops->progress(c->tcp, &m);
        VKT_FAIL_IF(st != VKT_OK || c->tcp_bye.done, VKT_ERR_REMOTE, "verbs channel %s rank %d "
                    "(%s port %u): rank %d closed its connection (it exited or failed; check "
                    "its log)", c->sender ? "to" : "from", c->base.peer, c->dev.name,
                    c->dev.port, c->base.peer);
    }
    *moved |= any;
    return VKT_OK;
}

static vkt_status verbs_isend(vkt_chan *ch, vkt_chan_req *r, const void *buf, size_t len)
{
    vb_chan *c = (vb_chan *)ch;
    VKT_FAIL_IF(!c->sender, VKT_ERR_INTERNAL, "verbs channels only send from the connecting "
                "side");
    vkt__frame_prepare_send(r, c->send_seq++, c->checksum, buf, len);
    vkt__req_push(&c->sq, &c->sq_tail, r);
    return VKT_OK;
}

static vkt_status verbs_irecv(vkt_chan *ch, vkt_chan_req *r, void *buf, size_t len)
{
    vb_chan *c = (vb_chan *)ch;
    VKT_FAIL_IF(c->sender, VKT_ERR_INTERNAL, "verbs channels only receive on the accepting "
                "side");
    vkt__frame_prepare_recv(r, buf, len);
    vkt__req_push(&c->rq, &c->rq_tail, r);
    return VKT_OK;
}

static vkt_status verbs_irecv_reduce(vkt_chan *ch, vkt_chan_req *r, void *buf, const void *in,
                                     size_t len, vkt_dtype t, vkt_redop op)
{
    VKT_CHECK(verbs_irecv(ch, r, buf, len));
    r->red_in = in;
    r->red_dtype = t;
    r->red_op = op;
    return VKT_OK;
}

static int verbs_poll_fds(const vkt_chan *ch, struct pollfd *p)
{
    const vb_chan *c = (const vb_chan *)ch;
    short ev = (short)(c->sq || c->rq ? POLLIN : 0);
    p[0] = (struct pollfd){c->cc->fd, c->ready ? ev : 0, 0}; /* before: the answer on tcp */
    c->tcp->ops->poll_fds(c->tcp, p + 1);
    p[1].events |= ev; /* keep the tcp channel's own (POLLOUT for a partial send) */
    return 2;
}

static void verbs_close(vkt_chan *ch) { chan_free((vb_chan *)ch); }

const vkt_channel_ops vkt__verbs_channel = {
    .version = VKT_CHANNEL_OPS_VERSION,
    .name = "verbs",
    .listen = verbs_listen,
    .connect = verbs_connect,
    .accept = verbs_accept,
    .isend = verbs_isend,
    .irecv = verbs_irecv,
    .irecv_reduce = verbs_irecv_reduce,
    .progress = verbs_progress,
    .test = vkt__chan_test,
    .poll_fds = verbs_poll_fds,
    .close = verbs_close,
    .close_listener = verbs_close_listener,
    .abort_connect = verbs_abort_connect,
};
