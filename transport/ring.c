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
 * collective, even of count 0, synchronizes the ranks like a barrier.
 *
 * Waits sleep in poll() on both sockets; the deadline is comm_timeout_s
 * without any byte moving, so a slow but live link never times out. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "comm_int.h"

typedef struct step_desc {
    const char *send_buf; /* what this rank sends (may be NULL when len is 0) */
    size_t send_len;
    char *recv_buf; /* where results land */
    size_t recv_len;
    const char *red_in; /* non-NULL: recv_buf = received op red_in */
    int forward;        /* broadcast: frame k is sent after frame k arrived */
    int no_send, no_recv; /* broadcast: the chain's ends */
} step_desc;

typedef struct op_ctx {
    vkt_comm *c;
    vkt_comm_req *r;
    size_t esize, chunk; /* chunk: whole elements */
} op_ctx;

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
    if (recv_pending)
        return VKT_ERROR(VKT_ERR_TIMEOUT,
                         "step %d/%d: nothing received from rank %d for %.0f s (it is stuck, "
                         "stopped, or waiting on another rank); raise comm_timeout_s or check "
                         "rank %d's log",
                         c->step + 1, c->nsteps, mod(c->rank - 1, c->size), c->timeout_s,
                         mod(c->rank - 1, c->size));
    return VKT_ERROR(VKT_ERR_TIMEOUT,
                     "step %d/%d: rank %d accepted no data for %.0f s (it is stuck or "
                     "stopped); raise comm_timeout_s or check rank %d's log",
                     c->step + 1, c->nsteps, mod(c->rank + 1, c->size), c->timeout_s,
                     mod(c->rank + 1, c->size));
}

/* Sleep until a socket is ready or the no-progress deadline passes. */
static vkt_status wait_ready(op_ctx *x, double deadline, int recv_pending)
{
    vkt_comm *c = x->c;
    struct pollfd p[2 * VKT_CHAN_MAX_POLLFDS + 1];
    int np = c->to_next->ops->poll_fds(c->to_next, p);
    np += c->from_prev->ops->poll_fds(c->from_prev, p + np);
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
        VKT_CHECK(c->to_next->ops->isend(c->to_next, &c->sreq[s->sp % VKT_RING_MAX_SENDS],
                                         d->send_buf + (d->send_len ? off : 0), len));
        s->sp++;
    }
    vkt_chan *from = c->from_prev;
    while (s->rp < s->nr && s->rp - s->rd < VKT_RING_SLOTS) {
        size_t off = s->rp * x->chunk, slot = s->rp % VKT_RING_SLOTS;
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

static vkt_status run_step(op_ctx *x, const step_desc *d)
{
    vkt_comm *c = x->c;
    step_state s = {0};
    s.ns = d->no_send ? 0 : nframes(d->send_len, x->chunk);
    s.nr = d->no_recv ? 0 : nframes(d->recv_len, x->chunk);
    /* Checksums cover the payload, which a direct reduction never holds. */
    s.direct = d->red_in && d->recv_len && !c->checksum && c->from_prev->ops->irecv_reduce;
    double deadline = vkt__now() + c->timeout_s;
    while (s.sd < s.ns || s.rd < s.nr) {
        int moved = 0;
        VKT_FAIL_IF(atomic_load(&c->aborted), VKT_ERR_INVALID_USAGE,
                    "step %d/%d: aborted by vkt_comm_abort", c->step + 1, c->nsteps);
        VKT_CHECK(post(x, d, &s));
        if (s.sp > s.sd) VKT_CHECK(c->to_next->ops->progress(c->to_next, &moved));
        if (s.rp > s.rd) VKT_CHECK(c->from_prev->ops->progress(c->from_prev, &moved));
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

static vkt_status run_allgather_steps(op_ctx *x, char *buf, size_t count, int uniform)
{
    vkt_comm *c = x->c;
    int n = c->size;
    for (int t = 0; t < n - 1; t++) {
        int si = mod(c->rank - t, n), ri = mod(c->rank - t - 1, n);
        size_t soff, scnt, roff, rcnt;
        if (uniform) { /* allgather: every block holds count elements */
            soff = (size_t)si * count, scnt = count, roff = (size_t)ri * count, rcnt = count;
        } else {
            segment(count, n, si, &soff, &scnt);
            segment(count, n, ri, &roff, &rcnt);
        }
        step_desc d = {buf + soff * x->esize, scnt * x->esize, buf + roff * x->esize,
                       rcnt * x->esize, NULL, 0, 0, 0};
        VKT_CHECK(run_step(x, &d));
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
        VKT_CHECK(run_step(x, &d));
    }
    segment(r->count, n, c->rank, &off, &cnt);
    if (r->op == VKT_REDOP_AVG) vkt__scale_avg(out + off * es, cnt, r->dtype, n);
    return run_allgather_steps(x, out, r->count, 0);
}

static vkt_status run_reduce_scatter(op_ctx *x)
{
    vkt_comm *c = x->c;
    vkt_comm_req *r = x->r;
    int n = c->size;
    size_t L = r->count * x->esize;
    if (2 * L > c->scratch_cap) { /* partial sums ping-pong between two halves */
        char *p = vkt_realloc(c->scratch, 2 * L);
        VKT_FAIL_IF(!p, VKT_ERR_NOMEM, "out of memory for %zu bytes of scratch", 2 * L);
        c->scratch = p;
        c->scratch_cap = 2 * L;
    }
    const char *in = r->sendbuf;
    c->nsteps = n - 1;
    for (int s = 0; s < n - 1; s++) {
        int si = mod(c->rank - s - 1, n), ri = mod(c->rank - s - 2, n);
        const char *src = s == 0 ? in + (size_t)si * L : c->scratch + (size_t)((s - 1) & 1) * L;
        char *dst = s == n - 2 ? (char *)r->recvbuf : c->scratch + (size_t)(s & 1) * L;
        step_desc d = {src, L, dst, L, in + (size_t)ri * L, 0, 0, 0};
        VKT_CHECK(run_step(x, &d));
    }
    if (r->op == VKT_REDOP_AVG) vkt__scale_avg(r->recvbuf, r->count, r->dtype, n);
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
    return run_step(x, &d);
}

vkt_status vkt__ring_run(vkt_comm *c, vkt_comm_req *r)
{
    op_ctx x = {c, r, vkt_dtype_size(r->dtype), 0};
    if (!x.esize) x.esize = 1; /* barrier */
    x.chunk = c->chunk_bytes / x.esize * x.esize;
    if (!x.chunk) x.chunk = x.esize;
    c->step = 0;
    size_t es = x.esize;
    switch (r->kind) {
    case VKT_OPK_ALLREDUCE:
        if (c->size > 1) return run_allreduce(&x);
        if (r->sendbuf != r->recvbuf && r->count) memcpy(r->recvbuf, r->sendbuf, r->count * es);
        return VKT_OK;
    case VKT_OPK_REDUCE_SCATTER:
        if (c->size == 1) {
            if (r->sendbuf != r->recvbuf && r->count) memcpy(r->recvbuf, r->sendbuf, r->count * es);
            return VKT_OK;
        }
        return run_reduce_scatter(&x);
    case VKT_OPK_ALLGATHER: {
        char *mine = (char *)r->recvbuf + (size_t)c->rank * r->count * es;
        if (r->sendbuf != mine && r->count) memmove(mine, r->sendbuf, r->count * es);
        c->nsteps = c->size - 1;
        return run_allgather_steps(&x, r->recvbuf, r->count, 1);
    }
    case VKT_OPK_BROADCAST: return c->size == 1 ? VKT_OK : run_broadcast(&x);
    case VKT_OPK_BARRIER:
        c->nsteps = c->size - 1;
        return run_allgather_steps(&x, c->staging, 0, 1);
    }
    return VKT_ERROR(VKT_ERR_INTERNAL, "unknown collective %d", (int)r->kind);
}
