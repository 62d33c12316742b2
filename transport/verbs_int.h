/* Private interface between the files of the RDMA verbs channel:
 *   verbs_dev.c   devices (one context + protection domain per device and
 *                 process, refcounted), GID choice, the registration cache
 *                 and the pool of registered rings;
 *   verbs_conn.c  queue pairs and connection setup (listen, connect, accept,
 *                 the swap of connection data on the tcp side channel);
 *   verbs_chan.c  the data path (rings, credits, completions) and the ops.
 * See verbs_chan.c's header comment for the protocol. */
#ifndef VKT_TRANSPORT_VERBS_INT_H
#define VKT_TRANSPORT_VERBS_INT_H

#include <infiniband/verbs.h>
#include <pthread.h>

#include "channel.h"

#define VB_INFO_MAGIC 0x42564b56u /* "VKVB" */
#define VB_INFO_VERSION 2u
#define VB_RING_DEFAULT (4u << 20)
#define VB_RING_MIN 4096u
#define VB_RING_MAX (64u << 20)
#define VB_MAX_SENDS 128   /* outstanding send work requests per QP */
#define VB_NRECV 256       /* receive work requests posted on the receiver */
#define VB_NRECV_CREDIT 64 /* ... and on the sender, for credit messages */

_Static_assert(VB_RING_MAX / 8 < (1u << 24), "credit immediates carry bytes/8 in 24 bits");

/* ---------------------------------------------------------------- device -- */

typedef struct vb_mr vb_mr; /* a cached registration (verbs_dev.c) */
typedef struct vb_ring vb_ring;

/* One opened device port, shared by every link of the process that uses it
 * (vkt__vb_dev_get / vkt__vb_dev_put). Fields are fixed once opened; the
 * registration cache and the ring pool behind it take the lock. */
typedef struct vb_dev {
    struct vb_dev *next; /* the process's list of open devices */
    int refs;            /* guarded by the list lock */
    int searched;        /* opened without VKT_IB_DEVICE (the first ACTIVE port) */
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    char name[IBV_SYSFS_NAME_MAX];
    uint8_t port;
    int gid_index, ethernet;
    enum ibv_mtu mtu;
    uint16_t lid;
    union ibv_gid gid;
    pthread_mutex_t mu; /* mrs, free rings */
    vb_mr *mrs;
    vb_ring *free_rings;
} vb_dev;

/* A ring of bytes registered with the device (from the pool when one of the
 * same size was given back). */
struct vb_ring {
    vb_ring *next; /* in the pool */
    char *mem;
    size_t bytes;
    struct ibv_mr *mr; /* the cached registration covering mem */
};

/* Open (or share) VKT_IB_DEVICE or the first device with an ACTIVE port. */
vkt_status vkt__vb_dev_get(vb_dev **out);
void vkt__vb_dev_put(vb_dev *d); /* accepts NULL; closes with the last user */

/* Registration cache, keyed by address range: a region already registered
 * with at least `access` that covers [addr, addr + len) is reused (its use
 * count goes up), else the range is registered and remembered. Registered
 * regions stay cached after put, until the memory's owner invalidates them
 * just before freeing it (or the device closes). */
vkt_status vkt__vb_mr_get(vb_dev *d, void *addr, size_t len, int access, struct ibv_mr **out);
void vkt__vb_mr_put(vb_dev *d, struct ibv_mr *mr);
/* The memory [addr, addr + len) is about to be freed: deregister every cached
 * region that overlaps it. One still in use is a bug: VKT_ERR_INTERNAL. */
vkt_status vkt__vb_mr_invalidate(vb_dev *d, void *addr, size_t len);

/* A ring of `bytes` (a multiple of 4096) registered for local and remote
 * write: a pooled one of that size, else fresh memory through the cache.
 * ring_put gives it back to the pool (it stays registered). */
vkt_status vkt__vb_ring_get(vb_dev *d, size_t bytes, vb_ring **out);
void vkt__vb_ring_put(vb_dev *d, vb_ring *r); /* accepts NULL */

/* Counters for tests: registrations made, cache hits, regions registered now
 * (all devices of the process). */
void vkt__vb_mr_stats(uint64_t *registered, uint64_t *hits, uint64_t *live);

/* VKT_IB_RING_BYTES (default 4 MiB), checked. */
vkt_status vkt__vb_ring_bytes(size_t *out);

/* ----------------------------------------------------------- connection -- */

/* The connection data each side sends on the tcp side channel. */
typedef struct vb_info {
    uint32_t magic, version;
    uint32_t qpn, psn;
    uint16_t lid;
    uint8_t mtu, pad[5];
    uint8_t gid[16];
    uint64_t ring_addr; /* receiver only */
    uint32_t rkey, ring_cap;
} vb_info;

typedef struct vb_chan {
    vkt_chan base; /* first: a vkt_chan* is a vb_chan* */
    int sender, checksum, rank;
    vb_dev *dev;
    struct ibv_comp_channel *cc;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    vb_ring *ring; /* receiver: the target ring; sender: the staging ring */
    size_t cap;    /* its size: both ends use the receiver's */
    uint64_t remote_addr;
    uint32_t rkey;
    unsigned unacked_events;
    int armed;
    /* stream state: bytes produced (head), posted to the wire, acknowledged
     * by credits (sender) / arrived and consumed (receiver) */
    uint64_t head, posted, tail, reported;
    int wr_credits, sends_out, recv_refilled;
    vkt__ring_stream fs; /* the frames through the ring (frame.c) */
    vkt_chan *tcp;        /* setup, then liveness */
    vkt_chan_req tcp_bye; /* a receive that only ends when the peer goes away */
    unsigned char bye_byte;
    int ready; /* the QP is connected (a sender finishes setup in progress) */
    vb_info mine, theirs;
    vkt_chan_req sreq, rreq; /* the swap of vb_info on tcp */
} vb_chan;

/* verbs_conn.c: the setup entries of vkt__verbs_channel, and helpers */
vkt_status vkt__vb_listen(const vkt_chan_config *cfg, const char *host, vkt_chan_listener **out,
                          char *addr, size_t cap);
vkt_status vkt__vb_connect(const vkt_chan_config *cfg, const char *addr, int peer,
                           vkt_chan_connecting **state, vkt_chan **out);
vkt_status vkt__vb_accept(vkt_chan_listener *l, vkt_chan **out, int *peer);
void vkt__vb_close_listener(vkt_chan_listener *l);
void vkt__vb_abort_connect(vkt_chan_connecting *s);
vkt_status vkt__vb_post_recvs(vb_chan *c, int n);
vkt_status vkt__vb_finish_setup(vb_chan *c);
void vkt__vb_chan_free(vb_chan *c);

#endif
