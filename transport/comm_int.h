/* The communicator's private state, shared by comm.c (API, options, progress
 * thread), comm_link.c (ring setup), comm_auto.c (backend auto's verbs
 * trial), comm_api.c (entry points), ring.c and p2p.c (algorithms). Not
 * installed. */
#ifndef VKT_TRANSPORT_COMM_INT_H
#define VKT_TRANSPORT_COMM_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "channel.h"
#include "gloo_backend.h"
#include "transport_int.h"

#define VKT_COMM_MAGIC 0x4d4d4f43u /* "COMM" */
#define VKT_COMM_MSG_CAP 1024
#define VKT_RING_SLOTS 4       /* staging chunks a rank may receive ahead */
#define VKT_RING_MAX_SENDS 16  /* frames queued on a channel at once */
#define VKT_FLIGHT_LEN 16      /* collectives remembered for messages */

typedef enum vkt__op_kind {
    VKT_OPK_ALLREDUCE,
    VKT_OPK_REDUCE_SCATTER,
    VKT_OPK_ALLGATHER,
    VKT_OPK_BROADCAST,
    VKT_OPK_BARRIER,
    VKT_OPK_REDUCE,
    VKT_OPK_ALLGATHERV,
    VKT_OPK_REDUCE_SCATTERV,
    VKT_OPK_SEND, /* point-to-point: only this rank and root (the peer) take part */
    VKT_OPK_RECV
} vkt__op_kind;

#define VKT_TCP_MAX_SOCKETS 8

struct vkt_comm_req {
    struct vkt_comm_req *next;
    vkt_comm *c;
    vkt__op_kind kind;
    const void *sendbuf;
    void *recvbuf;
    size_t count; /* allreduce/broadcast/reduce/send/recv: total; reduce_scatter/
                   * allgather: per rank; the v forms: the sum of counts */
    /* The v forms: count of each rank (size entries; borrowed by a blocking
     * call, a copy owned by the request of an _async one). */
    const size_t *counts;
    size_t *own_counts;
    vkt_dtype dtype;
    vkt_redop op;
    int root; /* broadcast/reduce: the root; send/recv: the peer */
    int heap; /* allocated by an _async call (freed by wait) */
    uint64_t seq;
    /* Collectives only (every rank issues them): their number among this
     * comm's collectives, the same on every rank, which seq is not once
     * send/recv run between some ranks. Gloo's tag. */
    uint64_t coll_seq;
    int done; /* guarded by c->mu */
    vkt_status st;
    char msg[VKT_COMM_MSG_CAP];
};

/* One entry of the flight record: what the last collectives were and when. */
typedef struct vkt__flight {
    uint64_t seq;
    vkt__op_kind kind;
    size_t bytes;
    double t_start, t_end; /* t_end 0 while running */
    vkt_status st;
} vkt__flight;

struct vkt_comm {
    uint32_t magic;
    int rank, size;
    double timeout_s;
    size_t chunk_bytes;
    int checksum;
    vkt__auth auth;
    vkt__store *store;
    vkt__store_server *server;
    vkt_comm_backend backend;
    vkt_chan *to_next, *from_prev; /* each carries its own ops (tcp or shm) */
    /* tcp links with several sockets: frame k of a step uses socket k % n;
     * to_extra[i] / from_extra[i] are sockets 1.. (the first is to_next). */
    int nsock_cfg;            /* tcp_sockets option (every rank agrees) */
    int nto, nfrom;           /* sockets of to_next / from_prev (1 for shm) */
    vkt_chan *to_extra[VKT_TCP_MAX_SOCKETS - 1], *from_extra[VKT_TCP_MAX_SOCKETS - 1];
    int64_t latency_bytes;    /* all-reduces up to this size: recursive doubling */
    int64_t delay_us;         /* VKT_COMM_DELAY_US: added before every ring frame sent
                               * (benchmarks of overlap; 0 in real runs) */
    /* Direct links between rank pairs (send/recv, recursive doubling), made
     * on first use: p2p_to[q] carries data to rank q, p2p_from[q] from it.
     * The ring's listeners stay open for them. */
    vkt_chan **p2p_to, **p2p_from;
    vkt_chan_listener *lis_tcp, *lis_shm, *lis_verbs;
    char host_id[128];
    char verbs_dev[64];            /* this rank's verbs port ("rxe0:1"), for messages */
    char p2p_verbs_why[400];       /* why a direct verbs link from rank p2p_verbs_peer failed */
    int p2p_verbs_peer;            /* ... (-1: unknown); valid while p2p_verbs_why[0] */
    const char *link_name;         /* kind of to_next, kept after a failure */
    vkt__gloo *gloo;               /* backend gloo with 2+ ranks: runs every collective */

    pthread_t thread;
    int thread_started, stop;
    int busy;             /* a collective is running (progress thread or inline) */
    int wake_fd;          /* eventfd: vkt_comm_abort wakes the progress thread */
    _Atomic int aborted;  /* set by vkt_comm_abort from any thread */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    vkt_comm_req *q_head, *q_tail;
    uint64_t next_seq, next_coll_seq;
    vkt_status err_st; /* sticky; guarded by mu */
    char err_msg[VKT_COMM_MSG_CAP];

    /* Owned by the progress thread while it runs a collective. */
    char *staging; /* VKT_RING_SLOTS chunks */
    char *scratch; /* reduce-scatter partial sums, grown on demand */
    size_t scratch_cap;
    vkt_chan_req sreq[VKT_RING_MAX_SENDS], rreq[VKT_RING_SLOTS];
    vkt__flight flight[VKT_FLIGHT_LEN];
    int step, nsteps; /* progress through the current collective */
};

/* ------------------------------------------- step engine (ring.c) -- */

/* One step of an algorithm: send send_len bytes to x->to while receiving
 * recv_len bytes from x->from, cut into chunk-sized frames. */
typedef struct vkt__step {
    const char *send_buf; /* what this rank sends (may be NULL when len is 0) */
    size_t send_len;
    char *recv_buf; /* where results land */
    size_t recv_len;
    const char *red_in; /* non-NULL: recv_buf = received op red_in */
    int forward;        /* chains: frame k is sent after frame k arrived */
    int no_send, no_recv; /* chains' ends, one-sided point-to-point */
} vkt__step;

typedef struct vkt__op_ctx {
    vkt_comm *c;
    vkt_comm_req *r;
    size_t esize, chunk; /* chunk: whole elements */
    /* The links of the next step: the ring's by default (all their sockets);
     * a direct link (one socket) for point-to-point and recursive doubling. */
    vkt_chan *to[VKT_TCP_MAX_SOCKETS], *from[VKT_TCP_MAX_SOCKETS];
    int nto, nfrom;
} vkt__op_ctx;

vkt_status vkt__step_run(vkt__op_ctx *x, const vkt__step *d);
/* Grow c->scratch to at least bytes. */
vkt_status vkt__scratch(vkt_comm *c, size_t bytes);

/* --------------------------------- direct links and their algorithms (p2p.c) -- */

/* The link that carries data to (sending) or from (!sending) rank peer,
 * made on first use: connect to peer's published listener, or accept from
 * ours (links from other ranks that arrive meanwhile are kept for later).
 * Bounded by comm_timeout_s. */
vkt_status vkt__p2p_link(vkt_comm *c, int peer, int sending, vkt_chan **out);
/* send/recv of r (r->root is the peer). */
vkt_status vkt__p2p_run(vkt__op_ctx *x);
/* All-reduce by recursive doubling (any rank count). */
vkt_status vkt__rd_allreduce(vkt__op_ctx *x);
void vkt__p2p_close(vkt_comm *c);

/* ------------------------- ring setup (comm_link.c) and backend auto (comm_auto.c) -- */

/* What this rank listens on while the ring forms: one listener per kind. */
typedef struct vkt__listeners {
    vkt_chan_listener *tcp, *shm, *verbs;
    char host_id[128]; /* "" when shared memory is unavailable */
} vkt__listeners;

/* Backend auto with verbs: what failed on this rank's verbs links. With
 * soft set, a verbs error while linking is recorded here instead of failing
 * the setup, so that every rank can vote and fall back to tcp together. */
typedef struct vkt__verbs_trial {
    int soft;
    int to_failed, from_failed;
    int told;          /* the failure is in the store already (vkt__comm_trial_exchange) */
    int store_broken;  /* a look failed: ask no more, the vote reports the store's error */
    double next_ask;   /* when to look for the neighbours' failures next */
    char why[400]; /* the first failure, with the device in it */
} vkt__verbs_trial;

/* The channel kind and address to reach rank peer from its published
 * "tcp=...\nshm=...\n" (pub is cut into lines in place). */
vkt_status vkt__choose_kind(const vkt_comm *c, const char *host_id, char *pub, int peer,
                            const vkt_channel_ops **ops, const char **addr);
/* Backend tcp/shm/verbs/auto with 2+ ranks: open the listeners, publish
 * vkt/chan/<rank>, and link to both ring neighbours. The listeners stay
 * open in c for direct links. */
vkt_status vkt__comm_setup_ring(vkt_comm *c, const char *listen_host);
/* Backend gloo with 2+ ranks: check that the next rank uses Gloo too, then
 * let Gloo connect its mesh through c->store. */
vkt_status vkt__comm_setup_gloo(vkt_comm *c, const char *listen_host);
/* Make the link to the next rank (do_to) and/or from the previous one
 * (do_from) within comm_timeout_s; next_pub is the next rank's published
 * text (cut into lines). With t->soft, verbs failures go to t instead of
 * failing. */
vkt_status vkt__comm_connect_ring(vkt_comm *c, const vkt_chan_config *cfg,
                                  const vkt__listeners *ls, char *next_pub, int do_to,
                                  int do_from, vkt__verbs_trial *t);
/* Record what (the first failure wins) and clear the last error. */
void vkt__comm_trial_fail(vkt__verbs_trial *t, const char *what);
/* While the ring's links are made under auto: publish this rank's first
 * verbs failure at once (its verdict, vkt/auto/<rank>), and look (every
 * 100 ms, until the first store error) for one from a neighbour whose link
 * this rank still waits for; one heard fails that side here too. A rank whose connect failed before
 * its side channel reached the peer would otherwise leave that peer
 * waiting for the accept until comm_timeout_s. */
void vkt__comm_trial_exchange(vkt_comm *c, vkt__verbs_trial *t, int wait_to, int wait_from);
/* Backend auto, after the ring's links are made: probe the verbs links,
 * vote through the store, and remake them over tcp on every rank when any
 * rank's verbs failed. my_pub: what this rank published. */
vkt_status vkt__comm_settle_auto(vkt_comm *c, const vkt_chan_config *cfg, vkt__listeners *ls,
                                 const char *my_pub, char *next_pub, vkt__verbs_trial *t);

/* ---------------------------------- the request queue (comm.c), the ring (ring.c) -- */

const char *vkt__op_name(vkt__op_kind k);
/* Queue a filled request for the progress thread (fails with the sticky
 * error of a broken comm), and wait for it to finish (comm.c). */
vkt_status vkt__comm_submit(vkt_comm *c, vkt_comm_req *r);
vkt_status vkt__comm_finish(vkt_comm_req *r);
/* Run a blocking collective on the calling thread when nothing is queued or
 * running; returns 1 with *st set if it did, 0 if r must be submitted. */
int vkt__comm_try_inline(vkt_comm *c, vkt_comm_req *r, vkt_status *st);
/* Run one collective on the progress thread. */
vkt_status vkt__ring_run(vkt_comm *c, vkt_comm_req *r);

#endif
