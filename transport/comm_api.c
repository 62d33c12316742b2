/* Public collective entry points: argument checks, then a request for the
 * progress thread (comm.c). The synchronous forms keep their request on the
 * stack, so a blocking collective allocates nothing. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "comm_int.h"

static vkt_status check_common(const char *fn, vkt_comm *c, size_t count, size_t mult,
                               vkt_dtype t, vkt_redop op, int check_op)
{
    VKT_FAIL_IF(!c || c->magic != VKT_COMM_MAGIC, VKT_ERR_INVALID_ARG,
                "%s: comm is NULL or not a communicator", fn);
    VKT_FAIL_IF(!vkt_dtype_size(t), VKT_ERR_INVALID_ARG, "%s: unknown dtype %d", fn, (int)t);
    VKT_FAIL_IF(check_op && (unsigned)op >= VKT_REDOP_COUNT_, VKT_ERR_INVALID_ARG,
                "%s: unknown reduction op %d", fn, (int)op);
    VKT_FAIL_IF(check_op && c->backend == VKT_COMM_BACKEND_GLOO && !vkt__gloo_reduces(t),
                VKT_ERR_UNSUPPORTED, "%s: backend gloo cannot reduce %s (Gloo has no bf16 "
                "arithmetic); use f32, f16, f64, i32 or i64, or backend auto, tcp or shm", fn,
                vkt_dtype_name(t));
    VKT_FAIL_IF(count > SIZE_MAX / vkt_dtype_size(t) / mult, VKT_ERR_INVALID_ARG,
                "%s: count %zu of %s overflows the address space", fn, count, vkt_dtype_name(t));
    return VKT_OK;
}

static vkt_status fill(vkt_comm_req *r, vkt__op_kind kind, const void *sb, void *rb,
                       size_t count, vkt_dtype t, vkt_redop op, int root)
{
    memset(r, 0, offsetof(vkt_comm_req, msg));
    r->msg[0] = '\0';
    r->kind = kind;
    r->sendbuf = sb;
    r->recvbuf = rb;
    r->count = count;
    r->dtype = t;
    r->op = op;
    r->root = root;
    return VKT_OK;
}

/* Issue r: synchronously (req_out NULL, r on the caller's stack) or as a
 * heap copy handed back through *req_out. */
static vkt_status issue(vkt_comm *c, vkt_comm_req *r, vkt_comm_req **req_out)
{
    if (!req_out) {
        vkt_status st;
        if (vkt__comm_try_inline(c, r, &st)) return st;
        VKT_CHECK(vkt__comm_submit(c, r));
        return vkt__comm_finish(r);
    }
    vkt_comm_req *h = vkt_malloc(sizeof *h);
    VKT_FAIL_IF(!h, VKT_ERR_NOMEM, "%s: out of memory for a request", vkt__op_name(r->kind));
    memcpy(h, r, sizeof *h);
    h->heap = 1;
    if (r->counts) { /* the caller's array is borrowed for the call only */
        h->own_counts = vkt_malloc((size_t)c->size * sizeof *h->own_counts);
        if (!h->own_counts) {
            vkt_free(h);
            return VKT_ERROR(VKT_ERR_NOMEM, "%s: out of memory for a request",
                             vkt__op_name(r->kind));
        }
        memcpy(h->own_counts, r->counts, (size_t)c->size * sizeof *h->own_counts);
        h->counts = h->own_counts;
    }
    vkt_status st = vkt__comm_submit(c, h);
    if (st != VKT_OK) {
        vkt_free(h->own_counts);
        vkt_free(h);
        return st;
    }
    *req_out = h;
    return VKT_OK;
}

static vkt_status allreduce(vkt_comm *c, const void *sb, void *rb, size_t n, vkt_dtype t,
                            vkt_redop op, vkt_comm_req **req)
{
    vkt_comm_req r;
    VKT_CHECK(check_common("vkt_comm_allreduce", c, n, 1, t, op, 1));
    VKT_FAIL_IF(n && (!sb || !rb), VKT_ERR_INVALID_ARG, "vkt_comm_allreduce: NULL buffer");
    fill(&r, VKT_OPK_ALLREDUCE, sb, rb, n, t, op, 0);
    return issue(c, &r, req);
}

static vkt_status reduce_scatter(vkt_comm *c, const void *sb, void *rb, size_t n,
                                 vkt_dtype t, vkt_redop op, vkt_comm_req **req)
{
    vkt_comm_req r;
    VKT_CHECK(check_common("vkt_comm_reduce_scatter", c, n, (size_t)c->size, t, op, 1));
    VKT_FAIL_IF(n && (!sb || !rb), VKT_ERR_INVALID_ARG, "vkt_comm_reduce_scatter: NULL buffer");
    fill(&r, VKT_OPK_REDUCE_SCATTER, sb, rb, n, t, op, 0);
    return issue(c, &r, req);
}

static vkt_status allgather(vkt_comm *c, const void *sb, void *rb, size_t n, vkt_dtype t,
                            vkt_comm_req **req)
{
    vkt_comm_req r;
    VKT_CHECK(check_common("vkt_comm_allgather", c, n, (size_t)c->size, t, 0, 0));
    VKT_FAIL_IF(n && (!sb || !rb), VKT_ERR_INVALID_ARG, "vkt_comm_allgather: NULL buffer");
    fill(&r, VKT_OPK_ALLGATHER, sb, rb, n, t, 0, 0);
    return issue(c, &r, req);
}

static vkt_status broadcast(vkt_comm *c, void *buf, size_t n, vkt_dtype t, int root,
                            vkt_comm_req **req)
{
    vkt_comm_req r;
    VKT_CHECK(check_common("vkt_comm_broadcast", c, n, 1, t, 0, 0));
    VKT_FAIL_IF(n && !buf, VKT_ERR_INVALID_ARG, "vkt_comm_broadcast: NULL buffer");
    VKT_FAIL_IF(root < 0 || root >= c->size, VKT_ERR_INVALID_ARG,
                "vkt_comm_broadcast: root %d is not a rank of this %d-rank job", root, c->size);
    fill(&r, VKT_OPK_BROADCAST, buf, buf, n, t, 0, root);
    return issue(c, &r, req);
}

static vkt_status barrier(vkt_comm *c, vkt_comm_req **req)
{
    vkt_comm_req r;
    VKT_FAIL_IF(!c || c->magic != VKT_COMM_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_comm_barrier: comm is NULL or not a communicator");
    fill(&r, VKT_OPK_BARRIER, NULL, NULL, 0, VKT_DTYPE_I32, 0, 0);
    return issue(c, &r, req);
}

static vkt_status reduce(vkt_comm *c, const void *sb, void *rb, size_t n, vkt_dtype t,
                         vkt_redop op, int root, vkt_comm_req **req)
{
    vkt_comm_req r;
    VKT_CHECK(check_common("vkt_comm_reduce", c, n, 1, t, op, 1));
    VKT_FAIL_IF(root < 0 || root >= c->size, VKT_ERR_INVALID_ARG,
                "vkt_comm_reduce: root %d is not a rank of this %d-rank job", root, c->size);
    VKT_FAIL_IF(n && (!sb || (c->rank == root && !rb)), VKT_ERR_INVALID_ARG,
                "vkt_comm_reduce: NULL buffer");
    fill(&r, VKT_OPK_REDUCE, sb, rb, n, t, op, root);
    return issue(c, &r, req);
}

static vkt_status p2p(vkt_comm *c, vkt__op_kind kind, const void *sb, void *rb, size_t n,
                      vkt_dtype t, int peer, vkt_comm_req **req)
{
    const char *fn = kind == VKT_OPK_SEND ? "vkt_comm_send" : "vkt_comm_recv";
    vkt_comm_req r;
    VKT_CHECK(check_common(fn, c, n, 1, t, 0, 0));
    VKT_FAIL_IF(peer < 0 || peer >= c->size || peer == c->rank, VKT_ERR_INVALID_ARG,
                "%s: peer %d is not another rank of this %d-rank job (this is rank %d)", fn,
                peer, c->size, c->rank);
    VKT_FAIL_IF(n && (kind == VKT_OPK_SEND ? !sb : !rb), VKT_ERR_INVALID_ARG,
                "%s: NULL buffer", fn);
    fill(&r, kind, sb, rb, n, t, 0, peer);
    return issue(c, &r, req);
}

/* Checks of the v forms; *total = the sum of counts. */
static vkt_status check_counts(const char *fn, vkt_comm *c, const size_t *counts,
                               vkt_dtype t, size_t *total)
{
    VKT_FAIL_IF(!c || c->magic != VKT_COMM_MAGIC, VKT_ERR_INVALID_ARG,
                "%s: comm is NULL or not a communicator", fn);
    VKT_FAIL_IF(!counts, VKT_ERR_INVALID_ARG, "%s: counts is NULL", fn);
    size_t sum = 0;
    for (int q = 0; q < c->size; q++) {
        VKT_FAIL_IF(counts[q] > SIZE_MAX - sum, VKT_ERR_INVALID_ARG,
                    "%s: the counts overflow size_t", fn);
        sum += counts[q];
    }
    *total = sum;
    return check_common(fn, c, sum, 1, t, 0, 0);
}

static vkt_status allgatherv(vkt_comm *c, const void *sb, void *rb, const size_t *counts,
                             vkt_dtype t, vkt_comm_req **req)
{
    vkt_comm_req r;
    size_t total = 0;
    VKT_CHECK(check_counts("vkt_comm_allgatherv", c, counts, t, &total));
    VKT_FAIL_IF(total && (!rb || (counts[c->rank] && !sb)), VKT_ERR_INVALID_ARG,
                "vkt_comm_allgatherv: NULL buffer");
    fill(&r, VKT_OPK_ALLGATHERV, sb, rb, total, t, 0, 0);
    r.counts = counts;
    return issue(c, &r, req);
}

static vkt_status reduce_scatterv(vkt_comm *c, const void *sb, void *rb, const size_t *counts,
                                  vkt_dtype t, vkt_redop op, vkt_comm_req **req)
{
    vkt_comm_req r;
    size_t total = 0;
    VKT_CHECK(check_counts("vkt_comm_reduce_scatterv", c, counts, t, &total));
    VKT_CHECK(check_common("vkt_comm_reduce_scatterv", c, total, 1, t, op, 1));
    VKT_FAIL_IF(total && (!sb || (counts[c->rank] && !rb)), VKT_ERR_INVALID_ARG,
                "vkt_comm_reduce_scatterv: NULL buffer");
    fill(&r, VKT_OPK_REDUCE_SCATTERV, sb, rb, total, t, op, 0);
    r.counts = counts;
    return issue(c, &r, req);
}

/* --------------------------------------------------------- public wrappers -- */

vkt_status vkt_comm_reduce(vkt_comm *c, const void *sb, void *rb, size_t n, vkt_dtype t,
                           vkt_redop op, int root)
{
    return reduce(c, sb, rb, n, t, op, root, NULL);
}

vkt_status vkt_comm_send(vkt_comm *c, const void *buf, size_t n, vkt_dtype t, int peer)
{
    return p2p(c, VKT_OPK_SEND, buf, NULL, n, t, peer, NULL);
}

vkt_status vkt_comm_recv(vkt_comm *c, void *buf, size_t n, vkt_dtype t, int peer)
{
    return p2p(c, VKT_OPK_RECV, NULL, buf, n, t, peer, NULL);
}

vkt_status vkt_comm_allgatherv(vkt_comm *c, const void *sb, void *rb, const size_t *counts,
                               vkt_dtype t)
{
    return allgatherv(c, sb, rb, counts, t, NULL);
}

vkt_status vkt_comm_reduce_scatterv(vkt_comm *c, const void *sb, void *rb,
                                    const size_t *counts, vkt_dtype t, vkt_redop op)
{
    return reduce_scatterv(c, sb, rb, counts, t, op, NULL);
}


vkt_status vkt_comm_allreduce(vkt_comm *c, const void *sb, void *rb, size_t n, vkt_dtype t,
                              vkt_redop op)
{
    return allreduce(c, sb, rb, n, t, op, NULL);
}

vkt_status vkt_comm_reduce_scatter(vkt_comm *c, const void *sb, void *rb, size_t n,
                                   vkt_dtype t, vkt_redop op)
{
    return reduce_scatter(c, sb, rb, n, t, op, NULL);
}

vkt_status vkt_comm_allgather(vkt_comm *c, const void *sb, void *rb, size_t n, vkt_dtype t)
{
    return allgather(c, sb, rb, n, t, NULL);
}

vkt_status vkt_comm_broadcast(vkt_comm *c, void *buf, size_t n, vkt_dtype t, int root)
{
    return broadcast(c, buf, n, t, root, NULL);
}

vkt_status vkt_comm_barrier(vkt_comm *c) { return barrier(c, NULL); }

#define ASYNC_GUARD(req)                                                                   \
    do {                                                                                   \
        VKT_FAIL_IF(!(req), VKT_ERR_INVALID_ARG, "%s: req is NULL", __func__);             \
        *(req) = NULL;                                                                     \
    } while (0)

vkt_status vkt_comm_allreduce_async(vkt_comm *c, const void *sb, void *rb, size_t n,
                                    vkt_dtype t, vkt_redop op, vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return allreduce(c, sb, rb, n, t, op, req);
}

vkt_status vkt_comm_reduce_scatter_async(vkt_comm *c, const void *sb, void *rb, size_t n,
                                         vkt_dtype t, vkt_redop op, vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return reduce_scatter(c, sb, rb, n, t, op, req);
}

vkt_status vkt_comm_allgather_async(vkt_comm *c, const void *sb, void *rb, size_t n,
                                    vkt_dtype t, vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return allgather(c, sb, rb, n, t, req);
}

vkt_status vkt_comm_broadcast_async(vkt_comm *c, void *buf, size_t n, vkt_dtype t, int root,
                                    vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return broadcast(c, buf, n, t, root, req);
}

vkt_status vkt_comm_barrier_async(vkt_comm *c, vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return barrier(c, req);
}

vkt_status vkt_comm_reduce_async(vkt_comm *c, const void *sb, void *rb, size_t n, vkt_dtype t,
                                 vkt_redop op, int root, vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return reduce(c, sb, rb, n, t, op, root, req);
}

vkt_status vkt_comm_send_async(vkt_comm *c, const void *buf, size_t n, vkt_dtype t, int peer,
                               vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return p2p(c, VKT_OPK_SEND, buf, NULL, n, t, peer, req);
}

vkt_status vkt_comm_recv_async(vkt_comm *c, void *buf, size_t n, vkt_dtype t, int peer,
                               vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return p2p(c, VKT_OPK_RECV, NULL, buf, n, t, peer, req);
}

vkt_status vkt_comm_allgatherv_async(vkt_comm *c, const void *sb, void *rb,
                                     const size_t *counts, vkt_dtype t, vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return allgatherv(c, sb, rb, counts, t, req);
}

vkt_status vkt_comm_reduce_scatterv_async(vkt_comm *c, const void *sb, void *rb,
                                          const size_t *counts, vkt_dtype t, vkt_redop op,
                                          vkt_comm_req **req)
{
    ASYNC_GUARD(req);
    return reduce_scatterv(c, sb, rb, counts, t, op, req);
}

vkt_status vkt_comm_wait(vkt_comm_req *req)
{
    VKT_FAIL_IF(!req || !req->heap, VKT_ERR_INVALID_ARG,
                "vkt_comm_wait: req is NULL or not from an _async call");
    vkt_status st = vkt__comm_finish(req);
    vkt_free(req->own_counts);
    vkt_free(req);
    return st;
}

vkt_status vkt_comm_test(vkt_comm_req *req, int *done)
{
    VKT_FAIL_IF(!req || !done, VKT_ERR_INVALID_ARG, "vkt_comm_test: NULL argument");
    pthread_mutex_lock(&req->c->mu);
    *done = req->done;
    pthread_mutex_unlock(&req->c->mu);
    return VKT_OK;
}
