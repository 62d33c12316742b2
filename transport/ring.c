/* Ring collectives over channels, run on the communicator's progress thread.
 *
 * Every rank r sends to r+1 (to_next) and receives from r-1 (from_prev). The
 * buffer is cut into world_size segments (the first count % n one element
 * longer), and each step of a collective sends one segment and receives
 * another, cut into chunk-sized frames so that receiving, reducing and
 * sending overlap. With segments numbered so that step s sends seg(r-s-1) and
 * receives seg(r-s-2):
 *   reduce-scatter = steps 0..n-2, reducing what arrives into the local data:
 *                    after them rank r owns the full reduction of seg(r);
 *   all-gather     = steps n-1..2n-3, storing what arrives;
 *   all-reduce     = both, 2(n-1) steps, sending 2(n-1)/n of the buffer.
 * A step with nothing to move still sends one empty frame, so every
 * collective, even of count 0, synchronizes the ranks like a barrier. The v
 * forms use the same steps over per-rank blocks of any size (layout below);
 * reduce and broadcast are one pipelined chain step each.
 *
 * The step engine (vkt__step_run) also serves p2p.c: a step sends over x->to
 * and receives over x->from, which are the ring's links by default. A tcp
 * link with several sockets carries frame k of a step on socket k % n.
 *
 * Waits sleep in poll() on every socket; the deadline is comm_timeout_s
 * without any byte moving, so a slow but live link never times out. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "comm_int.h"

typedef vkt__step step_desc;
typedef vkt__op_ctx op_ctx;

static size_t nframes(size_t len, size_t chunk) { return len ? (len + chunk - 1) / chunk : 1; }

static size_t frame_len(size_t len, size_t chunk, size_t k)
{
    size_t off = k * chunk;
    return len - off < chunk ? len - off : chunk;
}

static int mod(int a, int n) { return ((a % n) + n) % n; }

/* Segment i of count elements over n ranks: [*off, *off + *cnt). */
static void segment(size_t count, int n, int i, size_t *off, size_t *cnt)
{
    size_t base = count / (size_t)n, rem = count % (size_t)n, ui = (size_t)i;
    *cnt = base + (ui < rem);
    *off = ui * base + (ui < rem ? ui : rem);
}

static vkt_status stall_error(op_ctx *x, int recv_pending)
{
    vkt_comm *c = x->c;
    int peer = recv_pending ? x->from[0]->peer : x->to[0]->peer;
    if (recv_pending)
        return VKT_ERROR(VKT_ERR_TIMEOUT,
                         "step %d/%d: nothing received from rank %d for %.0f s (it is stuck, "
                         "stopped, or waiting on another rank); raise comm_timeout_s or check "
                         "rank %d's log",
                         c->step + 1, c->nsteps, peer, c->timeout_s, peer);
    return VKT_ERROR(VKT_ERR_TIMEOUT,
                     "step %d/%d: rank %d accepted no data for %.0f s (it is stuck or "
                     "stopped); raise comm_timeout_s or check rank %d's log",
                     c->step + 1, c->nsteps, peer, c->timeout_s, peer);
}

/* Sleep until a socket is ready or the no-progress deadline passes. */
static vkt_status wait_ready(op_ctx *x, double deadline, int recv_pending)
{
    vkt_comm *c = x->c;
    struct pollfd p[2 * VKT_TCP_MAX_SOCKETS * VKT_CHAN_MAX_POLLFDS + 1];
    int np = 0;
    for (int i = 0; i < x->nto; i++) np += x->to[i]->ops->poll_fds(x->to[i], p + np);
    for (int i = 0; i < x->nfrom; i++) np += x->from[i]->ops->poll_fds(x->from[i], p + np);
    /* poll() reports POLLHUP/POLLERR even for events 0, so a link with
     * nothing pending whose peer has already left would wake us in a loop:
     * leave such descriptors out (negative fds are ignored). */
    for (int i = 0; i < np; i++)
        if (!p[i].events) p[i].fd = -1;
    p[np++] = (struct pollfd){c->wake_fd, POLLIN, 0}; /* vkt_comm_abort */
    int ms = vkt__ms_left(deadline);
    if (ms == 0) return stall_error(x, recv_pending);
    int rc = poll(p, (nfds_t)np, ms);
    VKT_FAIL_IF(rc < 0 && errno != EINTR, VKT_ERR_SYSTEM, "poll: %s", strerror(errno));
    return VKT_OK;
}

typedef struct step_state {
    size_t ns, nr, sp, sd, rp, rd; /* frames: to send/recv, posted, done */
    int direct;                    /* reduce inside the channel (irecv_reduce) */
} step_state;

static vkt_status post(op_ctx *x, const step_desc *d, step_state *s)
{
    vkt_comm *c = x->c;
    while (s->sp < s->ns && s->sp - s->sd < VKT_RING_MAX_SENDS && (!d->forward || s->sp < s->rd)) {
        size_t off = s->sp * x->chunk;
        size_t len = d->send_len ? frame_len(d->send_len, x->chunk, s->sp) : 0;
        vkt_chan *to = x->to[s->sp % (size_t)x->nto]; /* frame k: socket k % n */
        if (c->delay_us) /* a slow network, for the overlap benchmark */
            nanosleep(&(struct timespec){c->delay_us / 1000000, (c->delay_us % 1000000) * 1000},
                      NULL);
        VKT_CHECK(to->ops->isend(to, &c->sreq[s->sp % VKT_RING_MAX_SENDS],
                                 d->send_buf + (d->send_len ? off : 0), len));
        s->sp++;
    }
    while (s->rp < s->nr && s->rp - s->rd < VKT_RING_SLOTS) {
        size_t off = s->rp * x->chunk, slot = s->rp % VKT_RING_SLOTS;
        vkt_chan *from = x->from[s->rp % (size_t)x->nfrom];
        size_t len = d->recv_len ? frame_len(d->recv_len, x->chunk, s->rp) : 0;
        if (s->direct) /* the channel reduces as it receives: no staging copy */
            VKT_CHECK(from->ops->irecv_reduce(from, &c->rreq[slot], d->recv_buf + off,
                                              d->red_in + off, len, x->r->dtype, x->r->op));
        else if (d->red_in)
            VKT_CHECK(from->ops->irecv(from, &c->rreq[slot], c->staging + slot * x->chunk, len));
        else
            VKT_CHECK(from->ops->irecv(from, &c->rreq[slot],
                                       d->recv_len ? d->recv_buf + off : c->staging, len));
        s->rp++;
    }
    return VKT_OK;
}

/* Retire finished frames in order; reduce received ones. */
static int complete(op_ctx *x, const step_desc *d, step_state *s)
{
    vkt_comm *c = x->c;
    int any = 0;
    while (s->sd < s->sp && c->sreq[s->sd % VKT_RING_MAX_SENDS].done) s->sd++, any = 1;
    while (s->rd < s->rp && c->rreq[s->rd % VKT_RING_SLOTS].done) {
        if (d->red_in && d->recv_len && !s->direct) {
            size_t off = s->rd * x->chunk, len = frame_len(d->recv_len, x->chunk, s->rd);
            vkt__reduce(d->recv_buf + off, c->staging + (s->rd % VKT_RING_SLOTS) * x->chunk,
                        d->red_in + off, len / x->esize, x->r->dtype, x->r->op);
        }
        s->rd++;
        any = 1;
    }
    return any;
}

vkt_status vkt__step_run(op_ctx *x, const step_desc *d)
{
    vkt_comm *c = x->c;
    step_state s = {0};
    s.ns = d->no_send ? 0 : nframes(d->send_len, x->chunk);
    s.nr = d->no_recv ? 0 : nframes(d->recv_len, x->chunk);
    /* Checksums cover the payload, which a direct reduction never holds. */
    s.direct = d->red_in && d->recv_len && !c->checksum && x->nfrom > 0 &&
               x->from[0]->ops->irecv_reduce;
    double deadline = vkt__now() + c->timeout_s;
    while (s.sd < s.ns || s.rd < s.nr) {
        int moved = 0;
        VKT_FAIL_IF(atomic_load(&c->aborted), VKT_ERR_INVALID_USAGE,
                    "step %d/%d: aborted by vkt_comm_abort", c->step + 1, c->nsteps);
        VKT_CHECK(post(x, d, &s));
        for (int i = 0; s.sp > s.sd && i < x->nto; i++)
            VKT_CHECK(x->to[i]->ops->progress(x->to[i], &moved));
        for (int i = 0; s.rp > s.rd && i < x->nfrom; i++)
            VKT_CHECK(x->from[i]->ops->progress(x->from[i], &moved));
        moved |= complete(x, d, &s);
        if (moved) {
            deadline = vkt__now() + c->timeout_s;
            continue;
        }
        VKT_CHECK(wait_ready(x, deadline, s.rd < s.nr));
    }
    c->step++;
    return VKT_OK;
}

/* ------------------------------------------------------------- collectives -- */

/* How a buffer is cut into one block per rank. */
typedef struct layout {
    enum { EVEN, UNIFORM, COUNTS } kind;
    size_t count;         /* EVEN: the total; UNIFORM: each block */
    const size_t *counts; /* COUNTS: each rank's block, packed in rank order */
} layout;

/* Block i of l over n ranks: [*off, *off + *cnt) elements. */
static void block(const layout *l, int n, int i, size_t *off, size_t *cnt)
{
    if (l->kind == EVEN) {
        segment(l->count, n, i, off, cnt);
    } else if (l->kind == UNIFORM) {
        *off = (size_t)i * l->count;
        *cnt = l->count;
    } else {
        size_t o = 0;
        for (int q = 0; q < i; q++) o += l->counts[q];
        *off = o;
        *cnt = l->counts[i];
    }
}

vkt_status vkt__scratch(vkt_comm *c, size_t bytes)
{
    if (bytes <= c->scratch_cap) return VKT_OK;
    char *p = vkt_realloc(c->scratch, bytes);
    VKT_FAIL_IF(!p, VKT_ERR_NOMEM, "out of memory for %zu bytes of scratch", bytes);
    c->scratch = p;
    c->scratch_cap = bytes;
    return VKT_OK;
}

/* Steps n-1..2n-3 of the ring: each rank's block travels once around. */
static vkt_status run_allgather_steps(op_ctx *x, char *buf, const layout *l)
{
    vkt_comm *c = x->c;
    int n = c->size;
    for (int t = 0; t < n - 1; t++) {
        int si = mod(c->rank - t, n), ri = mod(c->rank - t - 1, n);
        size_t soff, scnt, roff, rcnt;
        block(l, n, si, &soff, &scnt);
        block(l, n, ri, &roff, &rcnt);
        step_desc d = {buf + soff * x->esize, scnt * x->esize, buf + roff * x->esize,
                       rcnt * x->esize, NULL, 0, 0, 0};
        VKT_CHECK(vkt__step_run(x, &d));
    }
    return VKT_OK;
}

static vkt_status run_allreduce(op_ctx *x)
{
    vkt_comm *c = x->c;
    vkt_comm_req *r = x->r;
    int n = c->size;
    const char *in = r->sendbuf;
    char *out = r->recvbuf;
    size_t es = x->esize, off, cnt;
    c->nsteps = 2 * (n - 1);
    for (int s = 0; s < n - 1; s++) {
        int si = mod(c->rank - s - 1, n), ri = mod(c->rank - s - 2, n);
        size_t soff, scnt;
        segment(r->count, n, si, &soff, &scnt);
        segment(r->count, n, ri, &off, &cnt);
        /* Step 0 sends our own input; later steps what the last one reduced. */
        step_desc d = {(s == 0 ? in : out) + soff * es, scnt * es, out + off * es, cnt * es,
                       in + off * es, 0, 0, 0};
        VKT_CHECK(vkt__step_run(x, &d));
    }
    segment(r->count, n, c->rank, &off, &cnt);
    if (r->op == VKT_REDOP_AVG) vkt__scale_avg(out + off * es, cnt, r->dtype, n);
    layout l = {EVEN, r->count, NULL};
    return run_allgather_steps(x, out, &l);
}

/* Reduce-scatter over blocks of l: the partial sums of the block in transit
 * ping-pong between two halves of scratch (sendbuf is const and recvbuf
 * holds only this rank's block). */
static vkt_status run_reduce_scatter(op_ctx *x, const layout *l)
{
    vkt_comm *c = x->c;
    vkt_comm_req *r = x->r;
    int n = c->size;
    size_t es = x->esize, half = 0, off, cnt;
    for (int q = 0; q < n; q++) {
        block(l, n, q, &off, &cnt);
        half = cnt * es > half ? cnt * es : half;
    }
    VKT_CHECK(vkt__scratch(c, 2 * half));
    const char *in = r->sendbuf;
    c->nsteps = n - 1;
    for (int s = 0; s < n - 1; s++) {
        int si = mod(c->rank - s - 1, n), ri = mod(c->rank - s - 2, n);
        size_t soff, scnt;
        block(l, n, si, &soff, &scnt);
        block(l, n, ri, &off, &cnt);
        const char *src = s == 0 ? in + soff * es : c->scratch + (size_t)((s - 1) & 1) * half;
        char *dst = s == n - 2 ? (char *)r->recvbuf : c->scratch + (size_t)(s & 1) * half;
        step_desc d = {src, scnt * es, dst, cnt * es, in + off * es, 0, 0, 0};
        VKT_CHECK(vkt__step_run(x, &d));
    }
    block(l, n, c->rank, &off, &cnt);
    if (r->op == VKT_REDOP_AVG) vkt__scale_avg(r->recvbuf, cnt, r->dtype, n);
    return VKT_OK;
}

static vkt_status run_broadcast(op_ctx *x)
{
    vkt_comm *c = x->c;
    vkt_comm_req *r = x->r;
    int n = c->size, pos = mod(c->rank - r->root, n);
    size_t len = r->count * x->esize;
    /* A chain from the root: each rank forwards every frame as it arrives. */
    step_desc d = {r->recvbuf, len, r->recvbuf, len, NULL, pos > 0, pos == n - 1, pos == 0};
    c->nsteps = 1;
    return vkt__step_run(x, &d);
}

/* Reduce to root: a pipelined chain root+1 -> root+2 -> ... -> root. Each
 * rank adds its input to every frame as it passes and forwards it, so every
 * link carries the buffer once and the root finishes one chain latency after
 * the last frame left root+1 (a ring reduce-scatter + gather would move the
 * same bytes in more steps). */
static vkt_status run_reduce(op_ctx *x)
{
    vkt_comm *c = x->c;
    vkt_comm_req *r = x->r;
    int n = c->size, pos = mod(c->rank - r->root - 1, n);
    size_t len = r->count * x->esize;
    const char *in = r->sendbuf;
    char *acc = r->recvbuf; /* the root's result */
    if (pos < n - 1) {      /* partial sums in transit: scratch */
        VKT_CHECK(vkt__scratch(c, len));
        acc = c->scratch;
    }
    step_desc d = {pos == 0 ? in : acc, len, acc, len, in, pos > 0, pos == n - 1, pos == 0};
    c->nsteps = 1;
    VKT_CHECK(vkt__step_run(x, &d));
    if (pos == n - 1 && r->op == VKT_REDOP_AVG) vkt__scale_avg(acc, r->count, r->dtype, n);
    return VKT_OK;
}

/* One rank: every collective is a copy (or nothing in place). */
static vkt_status run_single(op_ctx *x)
{
    vkt_comm_req *r = x->r;
    size_t bytes = r->count * x->esize;
    switch (r->kind) {
    case VKT_OPK_BROADCAST:
    case VKT_OPK_BARRIER:
        return VKT_OK;
    case VKT_OPK_SEND:
    case VKT_OPK_RECV:
        return VKT_ERROR(VKT_ERR_INTERNAL, "send/recv on a 1-rank comm");
    default: /* the one block is the whole buffer, at offset 0 */
        if (r->sendbuf != r->recvbuf && bytes) memcpy(r->recvbuf, r->sendbuf, bytes);
        return VKT_OK;
    }
}

vkt_status vkt__ring_run(vkt_comm *c, vkt_comm_req *r)
{
    op_ctx x = {c, r, vkt_dtype_size(r->dtype), 0, {c->to_next}, {c->from_prev}, c->nto,
                c->nfrom};
    for (int i = 1; i < c->nto; i++) x.to[i] = c->to_extra[i - 1];
    for (int i = 1; i < c->nfrom; i++) x.from[i] = c->from_extra[i - 1];
    if (!x.esize) x.esize = 1; /* barrier */
    x.chunk = c->chunk_bytes / x.esize * x.esize;
    if (!x.chunk) x.chunk = x.esize;
    c->step = 0;
    c->nsteps = 1;
    size_t es = x.esize;
    if (c->size == 1) return run_single(&x);
    switch (r->kind) {
    case VKT_OPK_ALLREDUCE:
        if (c->latency_bytes > 0 && r->count * es <= (uint64_t)c->latency_bytes)
            return vkt__rd_allreduce(&x);
        return run_allreduce(&x);
    case VKT_OPK_REDUCE_SCATTER: {
        layout l = {UNIFORM, r->count, NULL};
        return run_reduce_scatter(&x, &l);
    }
    case VKT_OPK_REDUCE_SCATTERV: {
        layout l = {COUNTS, 0, r->counts};
        return run_reduce_scatter(&x, &l);
    }
    case VKT_OPK_ALLGATHER:
    case VKT_OPK_ALLGATHERV: {
        layout l = {r->kind == VKT_OPK_ALLGATHER ? UNIFORM : COUNTS, r->count, r->counts};
        size_t off, cnt;
        block(&l, c->size, c->rank, &off, &cnt);
        char *mine = (char *)r->recvbuf + off * es;
        if (r->sendbuf != mine && cnt) memmove(mine, r->sendbuf, cnt * es);
        c->nsteps = c->size - 1;
        return run_allgather_steps(&x, r->recvbuf, &l);
    }
    case VKT_OPK_BROADCAST: return run_broadcast(&x);
    case VKT_OPK_REDUCE: return run_reduce(&x);
    case VKT_OPK_SEND:
    case VKT_OPK_RECV: return vkt__p2p_run(&x);
    case VKT_OPK_BARRIER: {
        layout l = {UNIFORM, 0, NULL};
        c->nsteps = c->size - 1;
        return run_allgather_steps(&x, c->staging, &l);
    }
    }
    return VKT_ERROR(VKT_ERR_INTERNAL, "unknown collective %d", (int)r->kind);
}
