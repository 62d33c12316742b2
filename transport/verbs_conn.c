/* Verbs connection setup: queue pairs, and the swap of connection data over
 * a tcp side channel (tcp_chan.c, with its HMAC hello and token).
 *
 * The connecting side (the sender) sends {QPN, PSN, LID, GID, MTU}; the
 * accepting side (the receiver) moves its QP to RTR with receives posted,
 * then answers with the same plus its ring's address, size and rkey. The
 * sender allocates its staging ring at the receiver's size when the answer
 * comes (VKT_IB_RING_BYTES only has to be set where data arrives). The tcp
 * channel stays open with a 1-byte receive posted that ends only when the
 * peer goes away: a dead rank is seen at once, not after the QP's retries. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verbs_int.h"

#define SETUP_TIMEOUT_S 30.0
#define MAX_PENDING 64

/* A link being accepted: the tcp channel, then the swap of vb_info. */
typedef struct setup {
    vkt_chan *tcp;
    vb_chan *vc;
    int sent, peer;
    double t0;
} setup;

struct vkt_chan_listener {
    vkt_chan_listener *tcp;
    vkt_chan_config cfg;
    vb_dev *dev; /* held while listening, so links share it (and its ring pool) */
    setup pend[MAX_PENDING];
    int npend;
};

struct vkt_chan_connecting {
    vkt_chan_connecting *tcp_state;
};

/* ------------------------------------------------------------ queue pair -- */

vkt_status vkt__vb_post_recvs(vb_chan *c, int n)
{
    for (int i = 0; i < n; i++) {
        struct ibv_recv_wr wr = {0}, *bad = NULL;
        int rc = ibv_post_recv(c->qp, &wr, &bad);
        VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel with rank %d (%s port %u): cannot post "
                    "a receive: %s", c->base.peer, c->dev->name, c->dev->port, strerror(rc));
    }
    return VKT_OK;
}

void vkt__vb_chan_free(vb_chan *c)
{
    if (!c) return;
    if (c->qp) ibv_destroy_qp(c->qp);
    if (c->cq) {
        if (c->unacked_events) ibv_ack_cq_events(c->cq, c->unacked_events);
        ibv_destroy_cq(c->cq);
    }
    if (c->cc) ibv_destroy_comp_channel(c->cc);
    if (c->dev) vkt__vb_ring_put(c->dev, c->ring); /* after the QP: nothing targets it */
    vkt__vb_dev_put(c->dev);
    if (c->tcp) c->tcp->ops->close(c->tcp);
    vkt_free(c);
}

/* The CQ with its completion channel, and the QP in INIT. */
static vkt_status make_qp(vb_chan *c)
{
    const char *what = NULL;
    int cqe = VB_MAX_SENDS + VB_NRECV + 16;
    if (!(c->cc = ibv_create_comp_channel(c->dev->ctx)))
        what = "create a completion channel";
    else if (fcntl(c->cc->fd, F_SETFL, fcntl(c->cc->fd, F_GETFL) | O_NONBLOCK) != 0)
        what = "make the completion channel non-blocking";
    else if (!(c->cq = ibv_create_cq(c->dev->ctx, cqe, NULL, c->cc, 0)))
        what = "create a completion queue";
    if (!what) {
        struct ibv_qp_init_attr qa = {0};
        qa.send_cq = c->cq;
        qa.recv_cq = c->cq;
        qa.qp_type = IBV_QPT_RC;
        qa.cap.max_send_wr = VB_MAX_SENDS;
        qa.cap.max_recv_wr = VB_NRECV;
        qa.cap.max_send_sge = 1;
        qa.cap.max_recv_sge = 1;
        if (!(c->qp = ibv_create_qp(c->dev->pd, &qa))) what = "create a queue pair";
    }
    if (!what) {
        struct ibv_qp_attr a = {0};
        a.qp_state = IBV_QPS_INIT;
        a.pkey_index = 0;
        a.port_num = c->dev->port;
        a.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
        if (ibv_modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
                                         IBV_QP_ACCESS_FLAGS) != 0)
            what = "move the queue pair to INIT";
    }
    VKT_FAIL_IF(what, VKT_ERR_SYSTEM, "verbs: %s port %u: cannot %s: %s", c->dev->name,
                c->dev->port, what, strerror(errno));
    return VKT_OK;
}

/* Share the device, make the CQ and the QP (in INIT); a receiver also gets
 * its ring now (its address goes into the answer). */
static vkt_status chan_new(const vkt_chan_config *cfg, int sender, vb_chan **out)
{
    vb_chan *c = vkt_calloc(1, sizeof *c);
    VKT_FAIL_IF(!c, VKT_ERR_NOMEM, "verbs channel: out of memory");
    c->base.ops = &vkt__verbs_channel;
    c->base.peer = -1;
    c->sender = sender;
    c->checksum = cfg->checksum;
    c->rank = cfg->rank;
    vkt_status st = vkt__vb_dev_get(&c->dev);
    if (st == VKT_OK) st = make_qp(c);
    if (st == VKT_OK && !sender) st = vkt__vb_ring_bytes(&c->cap);
    if (st == VKT_OK && !sender) st = vkt__vb_ring_get(c->dev, c->cap, &c->ring);
    if (st != VKT_OK) {
        vkt__vb_chan_free(c);
        return st;
    }
    *out = c;
    return VKT_OK;
}

static void info_fill(const vb_chan *c, vb_info *i)
{
    memset(i, 0, sizeof *i);
    i->magic = VB_INFO_MAGIC;
    i->version = VB_INFO_VERSION;
    i->qpn = c->qp->qp_num;
    vkt__random(&i->psn, sizeof i->psn);
    i->psn &= 0xffffff;
    i->lid = c->dev->lid;
    i->mtu = (uint8_t)c->dev->mtu;
    memcpy(i->gid, c->dev->gid.raw, 16);
    if (!c->sender) {
        i->ring_addr = (uint64_t)(uintptr_t)c->ring->mem;
        i->rkey = c->ring->mr->rkey;
        i->ring_cap = (uint32_t)c->cap;
        /* TEST-ONLY (VKT_INJECT_FAULT=ib_bad_rkey:N): a key the peer's
         * writes will be refused with, as after a stale registration. */
        if (vkt__fault_hit("ib_bad_rkey")) i->rkey ^= 0x5a5a00u;
    }
}

/* INIT -> RTR with the peer's address (receives posted first). */
static vkt_status qp_rtr(vb_chan *c, const vb_info *peer)
{
    VKT_CHECK(vkt__vb_post_recvs(c, c->sender ? VB_NRECV_CREDIT : VB_NRECV));
    struct ibv_qp_attr a = {0};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = peer->mtu < (uint8_t)c->dev->mtu ? (enum ibv_mtu)peer->mtu : c->dev->mtu;
    a.dest_qp_num = peer->qpn;
    a.rq_psn = peer->psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 12;
    a.ah_attr.dlid = peer->lid;
    a.ah_attr.port_num = c->dev->port;
    if (c->dev->ethernet || !peer->lid) {
        a.ah_attr.is_global = 1;
        memcpy(a.ah_attr.grh.dgid.raw, peer->gid, 16);
        a.ah_attr.grh.sgid_index = (uint8_t)c->dev->gid_index;
        a.ah_attr.grh.hop_limit = 64;
    }
    int rc = ibv_modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
                                          IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                          IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel with rank %d: %s port %u GID index %d: "
                "cannot move the queue pair to RTR: %s (wrong VKT_IB_GID_INDEX, or the peer's "
                "GID is unreachable?)", c->base.peer, c->dev->name, c->dev->port,
                c->dev->gid_index, strerror(rc));
    return VKT_OK;
}

/* INIT -> RTR -> RTS against the peer's data; a sender also gets its
 * staging ring, at the receiver's ring size. */
static vkt_status qp_connect(vb_chan *c, const vb_info *mine, const vb_info *peer)
{
    VKT_FAIL_IF(peer->magic != VB_INFO_MAGIC || peer->version != VB_INFO_VERSION,
                VKT_ERR_CORRUPT, "verbs channel with rank %d: not a vktrain verbs setup "
                "message of this version (mixed vktrain versions?)", c->base.peer);
    if (c->sender) {
        VKT_FAIL_IF(peer->ring_cap < VB_RING_MIN || peer->ring_cap > VB_RING_MAX ||
                    peer->ring_cap % 4096 || !peer->rkey, VKT_ERR_CORRUPT,
                    "verbs channel to rank %d: it offers a ring of %u bytes", c->base.peer,
                    peer->ring_cap);
        c->cap = peer->ring_cap;
        VKT_CHECK(vkt__vb_ring_get(c->dev, c->cap, &c->ring));
    }
    VKT_CHECK(qp_rtr(c, peer));
    struct ibv_qp_attr a = {0};
    a.qp_state = IBV_QPS_RTS;
    /* 4.096 us * 2^17 = 0.5 s per try: generous, as a dead peer shows up on
     * the tcp link at once, and emulated RoCE under load is slow to ack. */
    a.timeout = 17;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.sq_psn = mine->psn;
    a.max_rd_atomic = 1;
    int rc = ibv_modify_qp(c->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
                                          IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                          IBV_QP_MAX_QP_RD_ATOMIC);
    VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel with rank %d: %s port %u: cannot move the "
                "queue pair to RTS: %s", c->base.peer, c->dev->name, c->dev->port,
                strerror(rc));
    c->remote_addr = peer->ring_addr;
    c->rkey = peer->rkey;
    c->wr_credits = VB_NRECV;
    return VKT_OK;
}

/* The end of setup on either side: connect the QP to the peer's data, and
 * keep a receive posted on tcp that only ends when the peer goes away. */
vkt_status vkt__vb_finish_setup(vb_chan *c)
{
    VKT_CHECK(qp_connect(c, &c->mine, &c->theirs));
    VKT_CHECK(c->tcp->ops->irecv(c->tcp, &c->tcp_bye, &c->bye_byte, 1));
    c->ready = 1;
    return VKT_OK;
}

/* ---------------------------------------------------------------- listen -- */

vkt_status vkt__vb_listen(const vkt_chan_config *cfg, const char *host,
                          vkt_chan_listener **out, char *addr, size_t cap)
{
    char taddr[VKT_CHAN_ADDR_MAX];
    size_t ring;
    *out = NULL;
    VKT_CHECK(vkt__vb_ring_bytes(&ring)); /* a bad value fails here, not at first use */
    vkt_chan_listener *l = vkt_calloc(1, sizeof *l);
    VKT_FAIL_IF(!l, VKT_ERR_NOMEM, "verbs channel: out of memory");
    l->cfg = *cfg;
    /* Fail here, with the device named, not at first use. */
    vkt_status st = vkt__vb_dev_get(&l->dev);
    if (st == VKT_OK) st = vkt__tcp_channel.listen(cfg, host, &l->tcp, taddr, sizeof taddr);
    if (st != VKT_OK) {
        vkt__vb_dev_put(l->dev);
        vkt_free(l);
        return st;
    }
    snprintf(addr, cap, "%s:%u|%s", l->dev->name, l->dev->port, taddr);
    *out = l;
    return VKT_OK;
}

static void setup_drop(setup *s)
{
    vkt__vb_chan_free(s->vc);
    if (s->tcp) s->tcp->ops->close(s->tcp);
    memset(s, 0, sizeof *s);
}

void vkt__vb_close_listener(vkt_chan_listener *l)
{
    if (!l) return;
    for (int i = 0; i < l->npend; i++) setup_drop(&l->pend[i]);
    vkt__tcp_channel.close_listener(l->tcp);
    vkt__vb_dev_put(l->dev);
    vkt_free(l);
}

/* ---------------------------------------------------------------- accept -- */

/* Accepting side: take the sender's vb_info, connect (RTR before the sender
 * can write), answer with ours; *ready = 1 when the answer is out. */
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
        VKT_CHECK(vkt__vb_finish_setup(c));
        VKT_CHECK(c->tcp->ops->isend(c->tcp, &c->sreq, &c->mine, sizeof c->mine));
        s->sent = 1;
    }
    VKT_CHECK(c->tcp->ops->test(c->tcp, &c->sreq, &done));
    *ready = done;
    return VKT_OK;
}

/* A link whose setup failed is an error of accept: the peer proved the job
 * key on the tcp hello, so it is a rank of this job and the failure is real
 * (an unreachable GID, a refused transition); waiting on would only turn it
 * into a timeout without the cause. */
vkt_status vkt__vb_accept(vkt_chan_listener *l, vkt_chan **out, int *peer)
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
            int q = s->peer;
            if (st == VKT_OK)
                st = VKT_ERROR(VKT_ERR_TIMEOUT, "verbs channel from rank %d: setup did not "
                               "finish within %.0f s", q, SETUP_TIMEOUT_S);
            setup_drop(s);
            l->pend[i] = l->pend[--l->npend];
            *peer = q; /* which rank's link failed, for backend auto's messages */
            return vkt__error_context(st, "rank %d: accepting a verbs link from rank %d",
                                      l->cfg.rank, q);
        }
        *out = &s->vc->base;
        *peer = s->peer;
        l->pend[i] = l->pend[--l->npend];
        return VKT_OK;
    }
    return VKT_OK;
}

/* --------------------------------------------------------------- connect -- */

/* Connecting side: once the tcp channel is up, send our vb_info and hand
 * out the channel at once; its progress connects the QP when the answer
 * comes. Waiting for the answer here would deadlock two ranks that connect
 * to each other before either accepts (the direct links of recursive
 * doubling do exactly that). */
vkt_status vkt__vb_connect(const vkt_chan_config *cfg, const char *addr, int peer,
                           vkt_chan_connecting **state, vkt_chan **out)
{
    *out = NULL;
    const char *bar = strchr(addr, '|');
    VKT_FAIL_IF(!bar, VKT_ERR_CORRUPT, "rank %d published a malformed verbs address '%s'",
                peer, addr);
    /* TEST-ONLY (VKT_INJECT_FAULT=ib_connect_fail:N): the process's N-th verbs
     * connect fails before its side channel reaches the peer, as when a
     * firewall refuses the side channel's port. */
    VKT_FAIL_IF(!*state && vkt__fault_hit("ib_connect_fail"), VKT_ERR_REMOTE,
                "rank %d: connect to rank %d's verbs side channel at %.*s: Connection "
                "refused (injected)", cfg->rank, peer, (int)strcspn(bar + 1, "/"), bar + 1);
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
        vkt__vb_chan_free(c);
        return st;
    }
    *out = &c->base;
    return VKT_OK;
}

void vkt__vb_abort_connect(vkt_chan_connecting *s)
{
    if (!s) return;
    vkt__tcp_channel.abort_connect(s->tcp_state);
    vkt_free(s);
}
