/* Point-to-point channels: the one interface the ring algorithms run over.
 *
 * A channel is one ordered, reliable, unidirectional-in-practice connection
 * between two ranks that carries framed messages. Every kind (tcp today; shm
 * and verbs later) fills one versioned vkt_channel_ops table. Rules:
 *   - listen, connect and accept never block: connect and accept return VKT_OK
 *     with *out == NULL for "not yet, call again" (as NCCL's net v6 does), so
 *     one thread can set up many channels at once under one deadline;
 *   - isend/irecv only queue a request (caller-owned memory, no allocation);
 *     progress moves bytes without blocking; a request is finished when
 *     req->done is set (or req->status is an error);
 *   - messages are matched in posting order; a receiver posts the exact
 *     length it expects and a different length is VKT_ERR_CORRUPT;
 *   - poll_fd gives the descriptor and events to sleep on in poll(), so waits
 *     sleep instead of spinning (8 ranks on 2 cores must still progress). */
#ifndef VKT_TRANSPORT_CHANNEL_H
#define VKT_TRANSPORT_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "transport_int.h"

struct pollfd;
struct iovec;


#define VKT_CHANNEL_OPS_VERSION 1u
#define VKT_CHAN_ADDR_MAX 128u
#define VKT_CHAN_HDR_BYTES 32u

typedef struct vkt_chan vkt_chan;
typedef struct vkt_chan_listener vkt_chan_listener;
typedef struct vkt_chan_connecting vkt_chan_connecting;
typedef struct vkt_channel_ops vkt_channel_ops;

/* The part every channel kind starts with, so callers can reach the ops of
 * a channel whatever its kind (one ring may mix shm and tcp links). */
struct vkt_chan {
    const vkt_channel_ops *ops;
    int peer; /* the rank at the other end */
};

/* One send or receive. Owned by the caller and untouched by it until done. */
typedef struct vkt_chan_req {
    struct vkt_chan_req *next; /* queue link, channel-private */
    char *buf;
    size_t len;
    size_t off; /* bytes moved so far, header included */
    int done;
    unsigned char hdr[VKT_CHAN_HDR_BYTES]; /* frame header (sent or received) */
    /* irecv_reduce only: buf[i] = received[i] op red_in[i] */
    const char *red_in;
    vkt_dtype red_dtype;
    vkt_redop red_op;
} vkt_chan_req;

/* What every channel of a communicator shares. */
typedef struct vkt_chan_config {
    int rank;          /* this rank, for messages */
    int checksum;      /* 1: XXH3-64 of every payload, checked on receipt */
    const vkt__auth *auth;
} vkt_chan_config;

struct vkt_channel_ops {
    uint32_t version; /* VKT_CHANNEL_OPS_VERSION */
    const char *name; /* "tcp" */
    /* Start listening on host (port chosen by the system); addr receives the
     * text a peer passes to connect (it includes a one-time access token). */
    vkt_status (*listen)(const vkt_chan_config *cfg, const char *host, vkt_chan_listener **out,
                         char *addr, size_t cap);
    /* Start or continue connecting to addr as this rank. *state is NULL on
     * the first call and carried between calls; *out is set when done. */
    vkt_status (*connect)(const vkt_chan_config *cfg, const char *addr, int peer,
                          vkt_chan_connecting **state, vkt_chan **out);
    /* A connection from a peer that proved the token, or *out NULL. */
    vkt_status (*accept)(vkt_chan_listener *l, vkt_chan **out, int *peer);
    vkt_status (*isend)(vkt_chan *c, vkt_chan_req *r, const void *buf, size_t len);
    vkt_status (*irecv)(vkt_chan *c, vkt_chan_req *r, void *buf, size_t len);
    /* Optional (NULL when the kind cannot): receive a frame of len bytes and
     * reduce it straight into buf (buf = received op in, buf may alias in),
     * saving the copy through a staging buffer. Frames received this way
     * must not carry checksums (they would be computed over buf). */
    vkt_status (*irecv_reduce)(vkt_chan *c, vkt_chan_req *r, void *buf, const void *in,
                               size_t len, vkt_dtype t, vkt_redop op);
    /* Move bytes for queued requests; *moved = 1 when any byte moved. */
    vkt_status (*progress)(vkt_chan *c, int *moved);
    /* progress, then *done = r->done: the one-request convenience form. */
    vkt_status (*test)(vkt_chan *c, vkt_chan_req *r, int *done);
    /* Fill up to VKT_CHAN_MAX_POLLFDS descriptors to sleep on in poll()
     * (events 0: nothing pending); returns how many were filled. */
    int (*poll_fds)(const vkt_chan *c, struct pollfd *pfds);
    void (*close)(vkt_chan *c);                       /* accepts NULL */
    void (*close_listener)(vkt_chan_listener *l);     /* accepts NULL */
    void (*abort_connect)(vkt_chan_connecting *s);    /* accepts NULL */
};

#define VKT_CHAN_MAX_POLLFDS 2

extern const vkt_channel_ops vkt__tcp_channel;
/* Shared memory: a ring buffer in a memfd plus eventfd wake-ups, handed over
 * a unix socket that also tells each side when the other dies. Data flows
 * from the connecting side to the accepting side only. Linux. */
extern const vkt_channel_ops vkt__shm_channel;
/* RDMA verbs (verbs_chan.c; verbs_stub.c without libibverbs-dev): an RC queue
 * pair per link, RDMA writes with immediate into the receiver's registered
 * ring, credits back; set up and watched over a tcp channel. Data flows from
 * the connecting side to the accepting side only. Address "<dev>:<port>|<tcp>". */
extern const vkt_channel_ops vkt__verbs_channel;
/* 1 when verbs is built in and a device (VKT_IB_DEVICE, or any) has an
 * ACTIVE port: backend auto then uses verbs between hosts. */
int vkt__verbs_usable(void);
/* 1 when a verbs channel has no bytes in flight: everything sent was written
 * to the peer and acknowledged (always 1 for a receiving channel). */
int vkt__verbs_sent(const vkt_chan *c);
/* One line per RDMA device port ("rxe0 port 1: PORT_ACTIVE, RoCE, mtu 1024"). */
vkt_status vkt__verbs_describe(char *out, size_t cap);
/* Text that is equal for two processes exactly when they can reach each
 * other's shm listeners (same kernel boot and network namespace). */
vkt_status vkt__shm_host_id(char *buf, size_t cap);

/* Framing shared by the stream channels (frame.c). A frame is a 32-byte
 * header {u32 magic, u32 flags, u64 seq, u64 len, u64 xxh3} + payload. */
void vkt__frame_prepare_send(vkt_chan_req *r, uint64_t seq, int checksum, const void *buf,
                             size_t len);
void vkt__frame_prepare_recv(vkt_chan_req *r, void *buf, size_t len);
/* The rest of r's frame as up to 2 iovecs (header remainder, payload rest). */
int vkt__frame_iov(vkt_chan_req *r, struct iovec *iov);
/* Account n more bytes of a receive; checks the header once it is complete
 * and the checksum at the end. *finished = 1 when the frame is whole. */
vkt_status vkt__frame_recv_advance(vkt_chan_req *r, size_t n, int peer, uint64_t *seq,
                                   int *finished);
/* The generic test: progress c, then report whether r has finished. */
vkt_status vkt__chan_test(vkt_chan *c, vkt_chan_req *r, int *done);
/* Request queues (FIFO). */
void vkt__req_push(vkt_chan_req **head, vkt_chan_req **tail, vkt_chan_req *r);
void vkt__req_pop(vkt_chan_req **head, vkt_chan_req **tail);

/* Frames in a byte ring (frame.c), for the ring channels (shm, verbs). A ring
 * is data[cap] addressed by 64-bit stream positions (position % cap), with
 * head/tail counters that each channel keeps its own way. Every frame is
 * padded to a multiple of 8 bytes in the ring, so each header and payload
 * starts 8-aligned: elements of any dtype are then aligned and never
 * straddle the end of the ring, which lets a receiver reduce straight from
 * ring memory. */
/* Copy iov into the ring from position pos on, at most room bytes (the free
 * space); returns the bytes copied. */
size_t vkt__ring_write(char *data, size_t cap, uint64_t pos, size_t room,
                       const struct iovec *iov, int niov);
/* Copy from position pos on into iov, at most avail bytes (those arrived);
 * returns the bytes copied. */
size_t vkt__ring_read(const char *data, size_t cap, uint64_t pos, size_t avail,
                      const struct iovec *iov, int niov);
/* Reduce-on-receive for r (an irecv_reduce past its header): reduce the
 * whole elements among the avail bytes at position pos into r->buf
 * (buf = received op red_in), up to the rest of r's payload. Returns the
 * bytes consumed; the caller moves its tail and the frame on by that. */
size_t vkt__chan_req_reduce(vkt_chan_req *r, const char *data, size_t cap, uint64_t pos,
                            size_t avail);
/* irecv_reduce of the ring channels: c's irecv, then r marked to reduce. */
vkt_status vkt__chan_irecv_reduce(vkt_chan *c, vkt_chan_req *r, void *buf, const void *in,
                                  size_t len, vkt_dtype t, vkt_redop op);

/* The frame stream of a ring channel: its queued sends and receives, the
 * padding still to write / to skip, and the sequence numbers. */
typedef struct vkt__ring_stream {
    vkt_chan_req *sq, *sq_tail, *rq, *rq_tail;
    size_t tx_pad, rx_skip;
    uint64_t send_seq, recv_seq;
} vkt__ring_stream;
/* A ring channel's own byte movers, which keep its counters (and their
 * memory ordering) its own way; ch is the channel. Copy into the ring up to
 * its free space / out of it up to the arrived bytes; returns the bytes. */
typedef size_t (*vkt__ring_copy_fn)(void *ch, const struct iovec *iov, int niov);
/* vkt__chan_req_reduce at the ring's tail, consuming what it reduced. */
typedef size_t (*vkt__ring_reduce_fn)(void *ch, vkt_chan_req *r);
/* Write s's queued frames, each followed by its padding, with put until the
 * ring is full or nothing is queued; a send is done once all of it is in
 * the ring. Returns 1 when any byte moved. */
int vkt__ring_send_some(vkt__ring_stream *s, vkt__ring_copy_fn put, void *ch);
/* Read frames into s's posted receives with get (reduce for the payload of
 * an irecv_reduce), skipping the padding, until the ring is empty or
 * nothing is posted. *any = 1 when any byte was consumed. Errors: a bad
 * frame from rank peer (vkt__frame_recv_advance). */
vkt_status vkt__ring_recv_some(vkt__ring_stream *s, vkt__ring_copy_fn get,
                               vkt__ring_reduce_fn reduce, void *ch, int peer, int *any);

#endif
