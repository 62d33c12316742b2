/* The communicator's private state, shared by comm.c (API, setup, progress
 * thread) and ring.c (algorithms). Not installed. */
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
    VKT_OPK_BARRIER
} vkt__op_kind;

struct vkt_comm_req {
    struct vkt_comm_req *next;
    vkt_comm *c;
    vkt__op_kind kind;
    const void *sendbuf;
    void *recvbuf;
    size_t count; /* allreduce/broadcast: total; reduce_scatter/allgather: per rank */
    vkt_dtype dtype;
    vkt_redop op;
    int root;
    int heap; /* allocated by an _async call (freed by wait) */
    uint64_t seq;
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
    uint64_t next_seq;
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
