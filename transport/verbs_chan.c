/* RDMA verbs channel (libibverbs): one reliable-connected queue pair per link.
 * This file is the data path; verbs_dev.c holds devices, the registration
 * cache and the ring pool, verbs_conn.c the connection setup.
 *
 * Like shm, data flows from the connecting side (the sender) to the
 * accepting side (the receiver), and the bytes form a stream of frames
 * (frame.c) padded to 8 bytes in a ring buffer:
 *   - the receiver registers a ring (VKT_IB_RING_BYTES, default 4 MiB) for
 *     remote write; the sender copies frames into a registered staging ring
 *     of the same size at the same offsets and RDMA-WRITEs-with-immediate
 *     each new stretch to the peer (immediate = its length), so the receiver
 *     learns from its receive completions, in order, how far the stream has
 *     come; a frame may be larger than the ring (it goes through in parts);
 *   - credits: the receiver returns freed ring bytes and the receive work
 *     requests it re-posted in a zero-length SEND with immediate (bits 0..23:
 *     bytes/8, bits 24..31: work requests), so a slow receiver is never
 *     overrun and a write never meets an empty receive queue;
 *   - user buffers are copied through the registered rings (one copy on each
 *     side), so nothing is registered per call; the rings come from the
 *     device's pool and registration cache (verbs_dev.c);
 *   - completions: progress polls the CQ; with nothing there it busy-polls a
 *     bounded time, then arms the CQ's completion channel, whose fd poll_fds
 *     hands to the waiting thread, so it sleeps in poll().
 * Setup and liveness go over a tcp channel (verbs_conn.c): a dead peer shows
 * up at once as EOF instead of after the queue pair's retry timeout. */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "verbs_int.h"

#define CREDIT_WR_BATCH 32
#define SPIN_POLLS 200 /* bounded busy-poll before sleeping on the channel fd */

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
                     c->dev->name, c->dev->port, ibv_wc_status_str(wc->status), wc->vendor_err,
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

/* TEST-ONLY (VKT_INJECT_FAULT=ib_qp_error:N): the receiver's QP goes to the
 * error state at its N-th arrived write, as when a peer destroys its QP or
 * the device fails: the sender's writes then go unanswered. */
static void qp_to_error(vb_chan *c)
{
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_ERR};
    if (ibv_modify_qp(c->qp, &a, IBV_QP_STATE) != 0)
        fprintf(stderr, "vktrain: VKT_INJECT_FAULT: cannot move the QP to ERR\n");
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
                if (vkt__fault_hit("ib_qp_error")) qp_to_error(c);
            }
            VKT_CHECK(vkt__vb_post_recvs(c, 1));
        }
    }
    VKT_FAIL_IF(n < 0, VKT_ERR_REMOTE, "verbs channel with rank %d (%s port %u): polling the "
                "completion queue failed", c->base.peer, c->dev->name, c->dev->port);
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
static size_t stage(void *ch, const struct iovec *iov, int niov)
{
    vb_chan *c = ch;
    size_t done = vkt__ring_write(c->ring->mem, c->cap, c->head,
                                  (size_t)(c->cap - (c->head - c->tail)), iov, niov);
    c->head += done;
    return done;
}

/* Post RDMA writes for the staged bytes not yet on the wire. */
static vkt_status post_writes(vb_chan *c)
{
    while (c->posted < c->head && c->wr_credits > 0 && c->sends_out < VB_MAX_SENDS) {
        size_t at = (size_t)(c->posted % c->cap), n = (size_t)(c->head - c->posted);
        if (n > c->cap - at) n = c->cap - at;
        struct ibv_sge sge = {(uint64_t)(uintptr_t)(c->ring->mem + at), (uint32_t)n,
                              c->ring->mr->lkey};
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
                    "RDMA write failed: %s", c->base.peer, c->dev->name, c->dev->port,
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
    if (c->wr_credits < 2 || c->sends_out > VB_MAX_SENDS - 2) return 0;
    return vkt__ring_send_some(&c->fs, stage, c);
}

/* Copy up to the arrived bytes from the ring into iov. */
static size_t take(void *ch, const struct iovec *iov, int niov)
{
    vb_chan *c = ch;
    size_t done = vkt__ring_read(c->ring->mem, c->cap, c->tail, (size_t)(c->head - c->tail),
                                 iov, niov);
    c->tail += done;
    return done;
}

/* Reduce the whole arrived elements straight from the ring into r->buf. */
static size_t reduce_from_ring(void *ch, vkt_chan_req *r)
{
    vb_chan *c = ch;
    size_t n = vkt__chan_req_reduce(r, c->ring->mem, c->cap, c->tail,
                                    (size_t)(c->head - c->tail));
    c->tail += n;
    return n;
}

/* Tell the sender about freed ring space and refilled receives. */
static vkt_status send_credits(vb_chan *c)
{
    uint64_t freed = (c->tail - c->reported) & ~(uint64_t)7;
    /* Batched, so the credit messages in flight stay few (at most a ring's
     * worth of bytes, an eighth of it each, plus VB_NRECV / CREDIT_WR_BATCH) and
     * never outrun the sender's VB_NRECV_CREDIT receives. A sender is never
     * stuck for want of a report: with all arrived bytes consumed it still
     * has 7/8 of the ring, and it has at least VB_NRECV - 31 writes. */
    while ((freed >= c->cap / 8 || c->recv_refilled >= CREDIT_WR_BATCH) &&
           c->sends_out < VB_MAX_SENDS) {
        uint32_t wrs = c->recv_refilled > 255 ? 255u : (uint32_t)c->recv_refilled;
        struct ibv_send_wr wr = {0}, *bad = NULL;
        wr.opcode = IBV_WR_SEND_WITH_IMM;
        wr.send_flags = IBV_SEND_SIGNALED;
        wr.imm_data = htonl((uint32_t)(freed / 8) | wrs << 24);
        int rc = ibv_post_send(c->qp, &wr, &bad);
        VKT_FAIL_IF(rc, VKT_ERR_REMOTE, "verbs channel from rank %d (%s port %u): posting "
                    "credits failed: %s", c->base.peer, c->dev->name, c->dev->port, strerror(rc));
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
        VKT_CHECK(vkt__ring_recv_some(&c->fs, take, reduce_from_ring, c, c->base.peer, &got));
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
                "%s", c->base.peer, c->dev->name, c->dev->port, vkt_last_error());
    if (!c->rreq.done) return VKT_OK;
    VKT_CHECK(vkt__vb_finish_setup(c));
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
    for (int i = 0; !any && (c->fs.sq || c->fs.rq) && i < SPIN_POLLS; i++)
        VKT_CHECK(move(c, &any));
    if (!any && !c->armed) {
        /* Arm, then look once more: a completion that came in between would
         * otherwise raise no event and we would sleep past it. */
        VKT_FAIL_IF(ibv_req_notify_cq(c->cq, 0) != 0, VKT_ERR_SYSTEM, "verbs channel with "
                    "rank %d (%s): cannot arm the completion queue", c->base.peer, c->dev->name);
        c->armed = 1;
        VKT_CHECK(move(c, &any));
    }
    if (!any && (c->fs.sq || c->fs.rq)) { /* the peer may be gone: the tcp link says so */
        int m = 0;
        vkt_status st = c->tcp->ops->progress(c->tcp, &m);
        VKT_FAIL_IF(st != VKT_OK || c->tcp_bye.done, VKT_ERR_REMOTE, "verbs channel %s rank %d "
                    "(%s port %u): rank %d closed its connection (it exited or failed; check "
                    "its log)", c->sender ? "to" : "from", c->base.peer, c->dev->name,
                    c->dev->port, c->base.peer);
    }
    *moved |= any;
    return VKT_OK;
}

static vkt_status verbs_isend(vkt_chan *ch, vkt_chan_req *r, const void *buf, size_t len)
{
    vb_chan *c = (vb_chan *)ch;
    VKT_FAIL_IF(!c->sender, VKT_ERR_INTERNAL, "verbs channels only send from the connecting "
                "side");
    vkt__frame_prepare_send(r, c->fs.send_seq++, c->checksum, buf, len);
    vkt__req_push(&c->fs.sq, &c->fs.sq_tail, r);
    return VKT_OK;
}

static vkt_status verbs_irecv(vkt_chan *ch, vkt_chan_req *r, void *buf, size_t len)
{
    vb_chan *c = (vb_chan *)ch;
    VKT_FAIL_IF(c->sender, VKT_ERR_INTERNAL, "verbs channels only receive on the accepting "
                "side");
    vkt__frame_prepare_recv(r, buf, len);
    vkt__req_push(&c->fs.rq, &c->fs.rq_tail, r);
    return VKT_OK;
}

static int verbs_poll_fds(const vkt_chan *ch, struct pollfd *p)
{
    const vb_chan *c = (const vb_chan *)ch;
    short ev = (short)(c->fs.sq || c->fs.rq ? POLLIN : 0);
    p[0] = (struct pollfd){c->cc->fd, c->ready ? ev : 0, 0}; /* before: the answer on tcp */
    c->tcp->ops->poll_fds(c->tcp, p + 1);
    p[1].events |= ev; /* keep the tcp channel's own (POLLOUT for a partial send) */
    return 2;
}

int vkt__verbs_sent(const vkt_chan *ch)
{
    const vb_chan *c = (const vb_chan *)ch;
    return !c->sender || (c->ready && !c->fs.sq && !c->fs.tx_pad && c->posted == c->head &&
                          c->sends_out == 0);
}

static void verbs_close(vkt_chan *ch) { vkt__vb_chan_free((vb_chan *)ch); }

const vkt_channel_ops vkt__verbs_channel = {
    .version = VKT_CHANNEL_OPS_VERSION,
    .name = "verbs",
    .listen = vkt__vb_listen,
    .connect = vkt__vb_connect,
    .accept = vkt__vb_accept,
    .isend = verbs_isend,
    .irecv = verbs_irecv,
    .irecv_reduce = vkt__chan_irecv_reduce,
    .progress = verbs_progress,
    .test = vkt__chan_test,
    .poll_fds = verbs_poll_fds,
    .close = verbs_close,
    .close_listener = vkt__vb_close_listener,
    .abort_connect = vkt__vb_abort_connect,
};
