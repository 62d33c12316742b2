/* vktrain — communicator: collectives between processes over host memory.
 *
 * This header is the manual of libvkt_transport (also part of libvktrain). It
 * has no Vulkan in it: buffers are host pointers, so any device of any vendor
 * can join a job by staging through host memory.
 *
 * A job is world_size processes ("ranks", numbered 0..world_size-1). They meet
 * through a rendezvous store (a small key-value store: TCP, served by rank 0,
 * or a file store in a shared directory), exchange the addresses of their
 * point-to-point channels, and connect into a ring: rank r sends to r+1 over
 * shared memory when both run on one host, else over TCP (optionally several
 * sockets per link). Collectives run ring algorithms over those channels;
 * small all-reduces (latency_bytes) and send/recv use direct links between
 * rank pairs, made on first use. Asynchronous ones run on the communicator's
 * progress thread, a blocking one with nothing in flight directly on the
 * calling thread (saving two thread switches per call). Every wait sleeps in
 * poll(); nothing spins.
 *
 * Security: every store connection and every channel proves the job secret
 * (HMAC over a fresh nonce or a one-time token, never the secret itself), so a
 * stray process can neither join a job nor inject data. Data is not encrypted.
 *
 * Environment (read once per process): RANK, WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT, VKT_JOB_SECRET, VKT_JOB_SECRET_FILE, VKT_COMM_TIMEOUT_S,
 * VKT_COMM_CHUNK_BYTES, VKT_COMM_CHECKSUM, VKT_COMM_LATENCY_BYTES,
 * VKT_TCP_SOCKETS; options set in vkt_comm_opts win. For benchmarks only:
 * VKT_COMM_DELAY_US (0..10^7; other values are ignored) sleeps that long
 * before every frame a ring step sends, as a slow network would (the
 * recursive-doubling path of small all-reduces is not delayed).
 *
 * Rules common to every collective below:
 *   - Collective: every rank of the communicator must call the same sequence of
 *     collectives with the same count (counts), dtype, op and root (send and
 *     recv are not collective: see there). A mismatch is a
 *     usage error that is detected where it can be (frame lengths differ:
 *     VKT_ERR_CORRUPT) and otherwise gives wrong results.
 *   - Blocking: the synchronous form returns when this rank's part is done and
 *     its output buffer holds the result. The asynchronous form (_async)
 *     returns at once with a request; buffers are borrowed until the request's
 *     vkt_comm_wait returns and must not be touched before that.
 *   - Order: requests run one after another in the order they were issued on
 *     this rank (as in NCCL); several may be in flight.
 *   - Deadline: no wait is unbounded. When a peer makes no progress for
 *     comm_timeout_s the operation fails with VKT_ERR_TIMEOUT (peer silent or
 *     stopped) or VKT_ERR_REMOTE (peer closed or died), and the message names
 *     the peer rank, the operation and its sequence number (#0 is the barrier
 *     that ends vkt_comm_create). The failing rank then spends up to
 *     min(1 s, comm_timeout_s / 2) collecting, through the store, where every
 *     other rank stopped, and adds it to the message ("rank 2 reached
 *     allreduce #4 step 1/4; rank 1 did not report"), so the stuck rank is
 *     named on every survivor.
 *   - Sticky errors: after a collective fails, the communicator is broken;
 *     every later call returns the same status and message. Destroy it.
 *   - count 0 is valid: the call still synchronizes with the other ranks (as a
 *     barrier would) and touches no buffer memory.
 *   - world_size 1: collectives are local copies (or nothing when in place).
 *   - Thread safety: one communicator may be used from one thread at a time;
 *     different communicators are independent.
 *   - Errors: on failure vkt_last_error() on the calling thread holds a message
 *     naming the rank, the operation, the peer and what to do.
 */
#ifndef VKTRAIN_COMM_H
#define VKTRAIN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "vktrain/dtype.h"
#include "vktrain/export.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkt_comm vkt_comm;         /* opaque communicator */
typedef struct vkt_comm_req vkt_comm_req; /* opaque in-flight async collective */

/* Element types of collective buffers: vkt_dtype (vktrain/dtype.h). f16 is
 * IEEE binary16 and bf16 is bfloat16, each stored as uint16_t; their
 * reductions accumulate in f32 and round to nearest even once per reduction
 * step. */

/* Reduction operators. AVG is SUM followed by a division by world_size (for
 * integer types: C integer division, truncating towards zero). Integer SUM
 * wraps around on overflow (computed in unsigned arithmetic). MAX/MIN of
 * floating-point NaN inputs are unspecified. */
typedef enum vkt_redop {
    VKT_REDOP_SUM = 0,
    VKT_REDOP_AVG = 1,
    VKT_REDOP_MAX = 2,
    VKT_REDOP_MIN = 3,
    VKT_REDOP_COUNT_
} vkt_redop;

/* Which implementation moves the data. */
typedef enum vkt_comm_backend {
    /* Per link: shm when the two ranks share a host (same kernel boot and
     * network namespace), else verbs when both have an active RDMA port,
     * else tcp. */
    VKT_COMM_BACKEND_AUTO = 0,
    VKT_COMM_BACKEND_TCP = 1, /* ring over TCP channels only */
    /* Shared-memory ring buffers only (Linux); every rank on one host, else
     * vkt_comm_create fails with VKT_ERR_INVALID_USAGE. */
    VKT_COMM_BACKEND_SHM = 2,
    /* Gloo's own algorithms over Gloo's TCP device (libgloo, a C++ library
     * behind a small shim), for cross-checks and as the peer of benchmarks:
     * ring all-reduce, halving-doubling reduce-scatter and reduce-scatterv
     * (with a zero count: Gloo's all-reduce of the whole buffer, as Gloo's
     * halving-doubling cannot take an empty block), ring all-gather,
     * all-gatherv, reduce, one-to-all broadcast, all-to-one barrier,
     * send/recv on Gloo's unbound buffers. Rendezvous goes through this
     * communicator's store (authenticated); Gloo's data connections are not
     * authenticated (Gloo has no such thing). dtypes: f32, f16, f64, i32, i64;
     * bf16 all-gather(v), broadcast and send/recv work (bytes only), bf16
     * all-reduce, reduce and reduce-scatter(v) return VKT_ERR_UNSUPPORTED (Gloo
     * has no bf16 arithmetic)
     * without breaking the comm. AVG is SUM then a division; integer SUM
     * overflow is undefined (Gloo adds signed integers). Reduce-scatter is
     * limited to 2 GiB in all (Gloo counts bytes in an int). Gloo writes to
     * sockets without MSG_NOSIGNAL, so creating a gloo comm sets SIGPIPE to
     * SIG_IGN if it was at its default. vkt_comm_abort closes Gloo's
     * connections but cannot wake a Gloo collective in flight: that one fails
     * by comm_timeout_s. vkt_comm_link returns "gloo". A build without
     * libgloo-dev returns VKT_ERR_UNSUPPORTED from vkt_comm_create. */
    VKT_COMM_BACKEND_GLOO = 3,
    /* RDMA verbs (libibverbs) on every link, also between ranks of one host:
     * an RC queue pair per link on VKT_IB_DEVICE or the first device with an
     * ACTIVE port (GID: VKT_IB_GID_INDEX, else the first RoCE v2 entry with an
     * IPv4 address). Backend auto uses verbs between hosts when such a port
     * exists. A build without libibverbs-dev, or a host without an active
     * RDMA port, fails vkt_comm_create with VKT_ERR_UNSUPPORTED.
     * vkt_comm_link returns "verbs". */
    VKT_COMM_BACKEND_VERBS = 4
} vkt_comm_backend;

/* "sum", "avg", "max", "min"; "invalid" for an unknown value. Static storage. */
VKT_API const char *vkt_redop_name(vkt_redop op);

/* Options of vkt_comm_create. Initialise with VKT_COMM_OPTS_INIT, then set the
 * fields you need; fields are only ever appended (struct_size tells the library
 * which ones the caller knows). All pointers are borrowed for the call. */
typedef struct vkt_comm_opts {
    uint32_t struct_size; /* sizeof(vkt_comm_opts), set by VKT_COMM_OPTS_INIT */
    /* This process's rank and the number of ranks. -1: from the environment
     * its launcher left, see vkt_dist_env_detect (torchrun-style RANK and
     * WORLD_SIZE, SLURM's srun, or Open MPI's mpirun). */
    int rank;
    int world_size;
    /* Rendezvous store:
     *   "HOST:PORT" or "tcp://HOST:PORT": TCP store; rank 0 serves it (binds
     *       HOST:PORT) unless store_server is 0, the other ranks connect,
     *       retrying with backoff until comm_timeout_s has passed;
     *   "file:/shared/dir": a directory every rank can read and write; it must
     *       be empty (or new) for each job;
     *   NULL: "tcp://MASTER:PORT" with the master host and port that
     *       vkt_dist_env_detect finds ($MASTER_ADDR and $MASTER_PORT first).
     * Keys are not namespaced yet: use one store (or directory) per
     * communicator; a store served by rank 0 is new for each one. */
    const char *store_addr;
    /* -1 (default): rank 0 serves the TCP store. 0: someone else serves it
     * (this rank only connects). 1: this rank serves it. */
    int store_server;
    /* Job secret that every store and channel connection proves (HMAC of a
     * random nonce; the secret itself never crosses the network). Any bytes,
     * NUL-terminated. NULL: $VKT_JOB_SECRET, else the first line of the file
     * named by $VKT_JOB_SECRET_FILE (which must not be readable or writable
     * by group or others, i.e. mode 0600 or 0400). */
    const char *job_secret;
    /* With no secret from anywhere, create fails unless this is nonzero; it
     * then runs unauthenticated and prints a warning on stderr. */
    int allow_unauthenticated;
    /* Longest time any wait may make no progress, in seconds, during create
     * (rendezvous, connecting) and during every collective. 0:
     * $VKT_COMM_TIMEOUT_S (whole seconds), else 300. */
    double comm_timeout_s;
    vkt_comm_backend backend;
    /* Pipeline chunk of the ring algorithms in bytes (rounded down to whole
     * elements, at least one). 0: $VKT_COMM_CHUNK_BYTES, else 512 KiB. Must be
     * the same on every rank (checked by vkt_comm_create). */
    size_t chunk_bytes;
    /* Nonzero: every frame carries an XXH3-64 checksum of its payload that the
     * receiver verifies (VKT_ERR_CORRUPT on mismatch). -1: $VKT_COMM_CHECKSUM,
     * else off. Must be the same on every rank (checked). Frames always carry
     * sequence numbers. Costs speed: shm receivers then reduce through a
     * staging copy instead of straight from shared memory. */
    int checksum;
    /* IP address this rank's channels listen on and publish. NULL: the local
     * address this rank uses to reach a TCP store (so peers can route to it);
     * with a file store, the first non-loopback IPv4 address of this host's
     * name, else 127.0.0.1. */
    const char *listen_addr;
    /* All-reduces of at most this many bytes use a latency-oriented algorithm
     * (recursive doubling over direct links between rank pairs: ceil(log2 n)
     * exchanges, plus one before and one after for ranks beyond the largest
     * power of two, instead of the ring's 2(n-1) steps). 0: never. -1:
     * $VKT_COMM_LATENCY_BYTES, else 32 KiB. Must be the same on every rank
     * (checked). Ignored by backend gloo. */
    int64_t latency_bytes;
    /* TCP sockets per ring link; each chunk of a ring step is split across
     * them (1..8). 0: $VKT_TCP_SOCKETS, else 1. Must be the same on every
     * rank (checked). Shared-memory links and backend gloo ignore it. */
    int tcp_sockets;
} vkt_comm_opts;

#define VKT_COMM_OPTS_INIT                                                          \
    {                                                                               \
        sizeof(vkt_comm_opts), -1, -1, NULL, -1, NULL, 0, 0.0,                      \
            VKT_COMM_BACKEND_AUTO, 0, -1, NULL, -1, 0                               \
    }

/* Where this process sits in a job, as its launcher told it through the
 * environment. vkt_comm_create uses it for the fields left at -1/NULL, so a
 * program runs unchanged under any of these (first match wins):
 *   "torchrun": RANK or WORLD_SIZE set (vktrain launch, torchrun, by hand):
 *       RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT;
 *   "mpirun": OMPI_COMM_WORLD_RANK set (Open MPI): OMPI_COMM_WORLD_RANK,
 *       _SIZE, _LOCAL_RANK, _LOCAL_SIZE; master 127.0.0.1 when every rank is
 *       on one host, else none (export MASTER_ADDR=<rank 0's host>; mpirun -x
 *       MASTER_ADDR passes it); port 20000 + a hash of the job's PMIx
 *       namespace % 20000. Before "slurm": mpirun in a SLURM batch script
 *       hands every rank the script's SLURM_PROCID=0 too;
 *   "slurm": SLURM_PROCID set (a task of srun): rank SLURM_PROCID, world
 *       SLURM_NTASKS, local rank SLURM_LOCALID, local world this node's
 *       entry of SLURM_STEP_TASKS_PER_NODE (else SLURM_NTASKS_PER_NODE);
 *       master: the first host of SLURM_STEP_NODELIST (else
 *       SLURM_JOB_NODELIST, SLURM_NODELIST), port 20000 + SLURM_JOB_ID %
 *       20000 (rank 0 must run on that first host, as srun's block and cyclic
 *       distributions place it). Without SLURM_STEP_ID (the batch script
 *       itself, not a task of srun) a world above 1 is an error;
 *   "none": nothing of the above; rank 0 of 1.
 * Under slurm and mpirun, MASTER_ADDR and MASTER_PORT, when set, override the
 * derived master (set MASTER_PORT when two job steps run at once, as they
 * would derive the same port). The job secret is never derived: export VKT_JOB_SECRET (or
 * VKT_JOB_SECRET_FILE) before srun or mpirun -x VKT_JOB_SECRET.
 * Reads the environment on every call (not cached). Thread-safe as getenv. */
typedef struct vkt_dist_env {
    int rank, world_size;
    int local_rank, local_world_size; /* -1 when the launcher does not say */
    char master_addr[256];            /* "" when unknown */
    int master_port;                  /* 0 when unknown */
    const char *source; /* "torchrun", "slurm", "mpirun" or "none"; static */
} vkt_dist_env;

/* Fill *out from the environment (see vkt_dist_env). Never blocks.
 *   out  out; unchanged on failure.
 * Returns VKT_OK; VKT_ERR_INVALID_ARG for NULL out, a value that is not a
 * non-negative integer, a rank not below the world size, a local rank not
 * below the local world size, a MASTER_PORT outside 1..65535, a malformed
 * SLURM hostlist or task layout, RANK without WORLD_SIZE or the reverse,
 * SLURM_PROCID with SLURM_NTASKS > 1 outside an srun step; the message names
 * the variable and its value. */
VKT_API vkt_status vkt_dist_env_detect(vkt_dist_env *out);

/* Join a job: rendezvous through the store, connect the ring, and start this
 * communicator's progress thread. Collective over all world_size ranks; blocks
 * until every rank has joined (it ends with a barrier), or fails after
 * comm_timeout_s without progress. world_size 1 needs no store.
 *   opts  in, borrowed.   out  out: the communicator, NULL on failure.
 * Returns VKT_OK;
 *   VKT_ERR_INVALID_ARG: NULL pointers, bad rank/world size or backend,
 *     unparsable store address, struct_size too small;
 *   VKT_ERR_INVALID_USAGE: no job secret and allow_unauthenticated not set; a
 *     secret file that group/others can access; ranks that disagree on
 *     chunk_bytes or backend; backend shm with a rank on another host;
 *   VKT_ERR_UNSUPPORTED: backend gloo in a build without libgloo-dev, or shm where
 *     /proc cannot identify the host;
 *   VKT_ERR_TIMEOUT: a rank did not arrive in time (the message names it);
 *   VKT_ERR_REMOTE: the store or a peer refused our secret, or closed;
 *   VKT_ERR_SYSTEM / VKT_ERR_IO: sockets, files, port already in use;
 *   VKT_ERR_NOMEM.
 * Nothing leaks on failure. Not thread-safe with respect to the same opts. */
VKT_API vkt_status vkt_comm_create(const vkt_comm_opts *opts, vkt_comm **out);

/* Stop the progress thread, close channels and (on the serving rank) the store.
 * Accepts NULL. Not collective: vkt_comm_create ends with a barrier, so no
 * rank needs the store afterwards (except to report a failure). Every request
 * must have been passed to vkt_comm_wait first; destroy waits for a request
 * that is still running (bounded by comm_timeout_s) and using a request after
 * destroy is undefined. */
VKT_API void vkt_comm_destroy(vkt_comm *c);

/* This rank, and the number of ranks; -1 for NULL. Thread-safe. */
VKT_API int vkt_comm_rank(const vkt_comm *c);
VKT_API int vkt_comm_size(const vkt_comm *c);

/* Which channel kind carries this rank's data to the next rank: "tcp" or
 * "shm"; "gloo" for backend gloo; "none" for a 1-rank communicator; "invalid" for NULL or a broken
 * communicator. Static storage; thread-safe; for diagnostics and tests (e.g.
 * to see that backend auto chose shared memory on one host). */
VKT_API const char *vkt_comm_link(const vkt_comm *c);

/* The status of the first failure of this communicator, VKT_OK while healthy.
 * Never blocks; callable from any thread. When it is not VKT_OK, the calling
 * thread's vkt_last_error() is set to that failure's message. */
VKT_API vkt_status vkt_comm_async_error(vkt_comm *c);

/* Break the communicator from any thread, without talking to peers: a
 * collective in flight on this rank fails at once, and every later call
 * returns VKT_ERR_INVALID_USAGE ("aborted"). Peers notice when this rank's
 * links close, at vkt_comm_destroy (or when the process exits). Use it to bail
 * out of a job that failed elsewhere, then destroy. Returns VKT_OK, or
 * VKT_ERR_INVALID_ARG for NULL. Never blocks. */
VKT_API vkt_status vkt_comm_abort(vkt_comm *c);

/* ---------------------------------------------------------------------------
 * Collectives. c is in and borrowed. The buffers are host memory of count
 * elements of dtype unless stated otherwise. Each returns VKT_OK;
 * VKT_ERR_INVALID_ARG (NULL comm, NULL buffer with count > 0, bad dtype/op/
 * root, count too large for size_t bytes); VKT_ERR_TIMEOUT / VKT_ERR_REMOTE /
 * VKT_ERR_CORRUPT (peer stalled, died, or sent a bad frame; the comm is then
 * broken); VKT_ERR_NOMEM; VKT_ERR_UNSUPPORTED (backend gloo: a bf16
 * reduction, not sticky); or the sticky status of an earlier failure. */

/* All-reduce: recvbuf[i] = op over ranks of sendbuf[i], on every rank.
 * sendbuf == recvbuf is the in-place form; other overlap is undefined. Any
 * count, including 0 and counts not divisible by world_size. Up to
 * latency_bytes (opts) it runs recursive doubling over direct links (the
 * first such call opens them: one more connection per rank pair it uses),
 * above that the ring (reduce-scatter, then all-gather); every rank gets the
 * same bits either way. */
VKT_API vkt_status vkt_comm_allreduce(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                      size_t count, vkt_dtype dtype, vkt_redop op);

/* Reduce-scatter: sendbuf holds world_size * recvcount elements; rank r
 * receives recvbuf[i] = op over ranks of sendbuf[r*recvcount + i].
 * In place: recvbuf == sendbuf + rank*recvcount elements. sendbuf is not
 * modified. */
VKT_API vkt_status vkt_comm_reduce_scatter(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                           size_t recvcount, vkt_dtype dtype, vkt_redop op);

/* All-gather: every rank contributes sendcount elements; recvbuf (world_size *
 * sendcount elements) receives rank q's block at q*sendcount on every rank.
 * In place: sendbuf == recvbuf + rank*sendcount elements. */
VKT_API vkt_status vkt_comm_allgather(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                      size_t sendcount, vkt_dtype dtype);

/* Broadcast: buf of rank root is copied into buf of every other rank (in place
 * everywhere). 0 <= root < world_size, the same on every rank. */
VKT_API vkt_status vkt_comm_broadcast(vkt_comm *c, void *buf, size_t count, vkt_dtype dtype,
                                      int root);

/* Barrier: returns on a rank only after every rank has entered it. */
VKT_API vkt_status vkt_comm_barrier(vkt_comm *c);

/* Reduce: recvbuf[i] = op over ranks of sendbuf[i], on rank root only.
 * recvbuf is only used on root (NULL elsewhere is fine). In place on root:
 * sendbuf == recvbuf. Runs as a pipelined chain root+1 -> ... -> root (every
 * link carries the buffer once); backend gloo runs gloo::reduce. */
VKT_API vkt_status vkt_comm_reduce(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                   size_t count, vkt_dtype dtype, vkt_redop op, int root);

/* All-gather with a count per rank: counts[q] (world_size entries) elements
 * come from rank q; recvbuf holds them packed in rank order (rank q's block
 * at counts[0] + ... + counts[q-1]) on every rank. sendbuf holds
 * counts[rank] elements. counts must be the same on every rank; any entry
 * may be 0. counts is borrowed for the call (the _async form copies it). In
 * place: sendbuf == recvbuf + (offset of this rank's block). */
VKT_API vkt_status vkt_comm_allgatherv(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                       const size_t *counts, vkt_dtype dtype);

/* Reduce-scatter with a count per rank: sendbuf holds counts[0] + ... +
 * counts[world_size-1] elements, packed in rank order; rank r receives in
 * recvbuf (counts[r] elements) the reduction over ranks of block r. counts as
 * for all-gatherv. sendbuf is not modified; in place: recvbuf == sendbuf +
 * (offset of this rank's block). */
VKT_API vkt_status vkt_comm_reduce_scatterv(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                            const size_t *counts, vkt_dtype dtype,
                                            vkt_redop op);

/* Point-to-point: send count elements of buf to rank peer, or receive them
 * from it. Only the two ranks take part (not collective), peer != this rank.
 * Ordered, not tagged: the k-th send from a to b matches the k-th recv on b
 * from a, and the counts (in bytes) must agree (else VKT_ERR_CORRUPT). The
 * link between the pair is made on first use (shm on one host, else tcp;
 * authenticated like the ring) and kept until destroy.
 *   Blocking: send returns once its data sits in the link's buffer (the
 * socket or the 4 MiB shm ring) or has been received; a larger message waits
 * for the receiver. Both are bounded by comm_timeout_s without progress
 * (VKT_ERR_TIMEOUT naming the peer, e.g. one that never posts the recv).
 *   Order: like every request they run in issue order on this rank, async
 * ones too; so two ranks that both send a large message before receiving
 * wait for each other until the deadline (as in MPI): let one side receive
 * first. A program that interleaves send/recv with collectives differently on
 * the two ranks is erroneous. Backend gloo: Gloo's unbound buffers. */
VKT_API vkt_status vkt_comm_send(vkt_comm *c, const void *buf, size_t count, vkt_dtype dtype,
                                 int peer);
VKT_API vkt_status vkt_comm_recv(vkt_comm *c, void *buf, size_t count, vkt_dtype dtype,
                                 int peer);

/* Asynchronous forms: same arguments and rules as above; *req receives a
 * request (NULL on failure) that must be passed to vkt_comm_wait exactly once.
 * Argument errors are returned here; transfer errors by vkt_comm_wait. */
VKT_API vkt_status vkt_comm_allreduce_async(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                            size_t count, vkt_dtype dtype, vkt_redop op,
                                            vkt_comm_req **req);
VKT_API vkt_status vkt_comm_reduce_scatter_async(vkt_comm *c, const void *sendbuf,
                                                 void *recvbuf, size_t recvcount,
                                                 vkt_dtype dtype, vkt_redop op,
                                                 vkt_comm_req **req);
VKT_API vkt_status vkt_comm_allgather_async(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                            size_t sendcount, vkt_dtype dtype,
                                            vkt_comm_req **req);
VKT_API vkt_status vkt_comm_broadcast_async(vkt_comm *c, void *buf, size_t count,
                                            vkt_dtype dtype, int root, vkt_comm_req **req);
VKT_API vkt_status vkt_comm_barrier_async(vkt_comm *c, vkt_comm_req **req);
VKT_API vkt_status vkt_comm_reduce_async(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                         size_t count, vkt_dtype dtype, vkt_redop op, int root,
                                         vkt_comm_req **req);
VKT_API vkt_status vkt_comm_allgatherv_async(vkt_comm *c, const void *sendbuf, void *recvbuf,
                                             const size_t *counts, vkt_dtype dtype,
                                             vkt_comm_req **req);
VKT_API vkt_status vkt_comm_reduce_scatterv_async(vkt_comm *c, const void *sendbuf,
                                                  void *recvbuf, const size_t *counts,
                                                  vkt_dtype dtype, vkt_redop op,
                                                  vkt_comm_req **req);
VKT_API vkt_status vkt_comm_send_async(vkt_comm *c, const void *buf, size_t count,
                                       vkt_dtype dtype, int peer, vkt_comm_req **req);
VKT_API vkt_status vkt_comm_recv_async(vkt_comm *c, void *buf, size_t count, vkt_dtype dtype,
                                       int peer, vkt_comm_req **req);

/* Block until req has finished, return its status, and free it. Bounded: a
 * request finishes (possibly with VKT_ERR_TIMEOUT) within comm_timeout_s of
 * its last progress. req NULL: VKT_ERR_INVALID_ARG. */
VKT_API vkt_status vkt_comm_wait(vkt_comm_req *req);

/* Never blocks: *done = 1 when req has finished (then vkt_comm_wait returns
 * at once), else 0. Does not free req. Returns VKT_ERR_INVALID_ARG for NULL
 * arguments, otherwise VKT_OK. */
VKT_API vkt_status vkt_comm_test(vkt_comm_req *req, int *done);

#ifdef __cplusplus
}
#endif
#endif
