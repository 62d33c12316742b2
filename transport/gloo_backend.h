/* The Gloo collective backend (gloo_backend.cc, or gloo_stub.c in builds
 * without libgloo-dev): a small C interface to a C++ shim that runs Gloo's
 * own algorithms (ring all-reduce, halving-doubling reduce-scatter and
 * reduce-scatterv, ring all-gather, all-gatherv, one-to-all broadcast, reduce,
 * all-to-one barrier, send/recv on unbound buffers) over Gloo's TCP
 * device. comm.c owns the queue, the sticky error and the flight record; this
 * backend only replaces vkt__ring_run. Not installed.
 *
 * Rendezvous goes through the communicator's own store (an adapter that
 * implements gloo::rendezvous::Store over vkt__store, keys prefixed "gloo/"),
 * so the address exchange is authenticated with the job secret like the rest
 * of the job. Gloo's own TCP pairs carry no authentication (Gloo has none
 * without its TLS build, which Debian does not ship). */
#ifndef VKT_TRANSPORT_GLOO_BACKEND_H
#define VKT_TRANSPORT_GLOO_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "vktrain/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vkt__store; /* transport_int.h */
typedef struct vkt__gloo vkt__gloo;

typedef enum vkt__gloo_kind {
    VKT_GLOO_ALLREDUCE,
    VKT_GLOO_REDUCE_SCATTER,
    VKT_GLOO_ALLGATHER,
    VKT_GLOO_BROADCAST,
    VKT_GLOO_BARRIER,
    VKT_GLOO_REDUCE,
    VKT_GLOO_ALLGATHERV,
    VKT_GLOO_REDUCE_SCATTERV,
    VKT_GLOO_SEND,
    VKT_GLOO_RECV
} vkt__gloo_kind;

/* One collective, with the meaning of the vkt_comm_* arguments: count is the
 * total for allreduce/broadcast and the per-rank block otherwise. */
typedef struct vkt__gloo_op {
    vkt__gloo_kind kind;
    const void *sendbuf;
    void *recvbuf;
    size_t count;
    vkt_dtype dtype;
    vkt_redop op;
    int root;     /* broadcast/reduce: the root; send/recv: the peer */
    uint64_t seq; /* the comm's collective number: Gloo's tag, and for messages */
    const size_t *counts; /* the v forms: each rank's count (count is their sum) */
} vkt__gloo_op;

/* 1 when this build has the Gloo backend, else 0. */
int vkt__gloo_built(void);

/* Whether Gloo can reduce dtype (f32, f16, f64, i32, i64; not bf16). */
int vkt__gloo_reduces(vkt_dtype t);

/* Create Gloo's TCP device on host (an IP address of this machine that the
 * peers can reach), connect a full mesh through store (collective; bounded by
 * timeout_s) and learn every rank's Gloo address, so that a failure can name
 * the peer. size >= 2. Errors: VKT_ERR_UNSUPPORTED (no Gloo in this build),
 * VKT_ERR_TIMEOUT / VKT_ERR_REMOTE / VKT_ERR_IO (rendezvous or connect),
 * VKT_ERR_NOMEM. *out is NULL on failure. */
vkt_status vkt__gloo_create(struct vkt__store *store, int rank, int size, const char *host,
                            double timeout_s, vkt__gloo **out);

/* Run one collective on the calling thread; blocks until it is done or Gloo's
 * timeout passes. Never throws: every C++ exception becomes a status whose
 * message names the collective and, where Gloo's text allows, the peer rank.
 * bf16 reductions: VKT_ERR_UNSUPPORTED (checked by comm_api.c first). */
vkt_status vkt__gloo_run(vkt__gloo *g, const vkt__gloo_op *op);

/* Close every Gloo connection so that peers notice at once (vkt_comm_abort,
 * and after a failure). A collective in flight on another thread is not woken
 * (Gloo waits on buffers of its own that we cannot reach): it fails by its
 * timeout. Callable from any thread; the context stays valid until destroy. */
void vkt__gloo_close(vkt__gloo *g);

/* Free the context and the device. Accepts NULL. */
void vkt__gloo_destroy(vkt__gloo *g);

#ifdef __cplusplus
}
#endif
#endif
