/* The communicator: option handling, the progress thread that runs queued
 * collectives in order, failure diagnosis, and the public lifecycle entry
 * points of vktrain/comm.h (create, destroy, abort). The ring's links are
 * made in comm_link.c (and, for backend auto, settled in comm_auto.c); the
 * collective entry points are comm_api.c. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "comm_int.h"

#define DEFAULT_TIMEOUT_S 300.0
#define DEFAULT_CHUNK (512u << 10)
#define MIN_STAGING_CHUNK 8u /* one element of the widest type */
#define DEFAULT_LATENCY_BYTES (32 << 10)
#define DEFAULT_TCP_SOCKETS 1

static const char *const redop_names[] = {"sum", "avg", "max", "min"};

const char *vkt_redop_name(vkt_redop op)
{
    return (unsigned)op < VKT_REDOP_COUNT_ ? redop_names[op] : "invalid";
}

const char *vkt__op_name(vkt__op_kind k)
{
    static const char *const names[] = {"allreduce", "reduce_scatter", "allgather",
                                        "broadcast", "barrier", "reduce", "allgatherv",
                                        "reduce_scatterv", "send", "recv"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* ------------------------------------------------------- progress thread -- */

static void close_channels(vkt_comm *c)
{
    vkt__gloo_close(c->gloo);
    if (c->to_next) c->to_next->ops->close(c->to_next);
    if (c->from_prev) c->from_prev->ops->close(c->from_prev);
    c->to_next = c->from_prev = NULL;
    for (int i = 0; i < VKT_TCP_MAX_SOCKETS - 1; i++) {
        if (c->to_extra[i]) c->to_extra[i]->ops->close(c->to_extra[i]);
        if (c->from_extra[i]) c->from_extra[i]->ops->close(c->from_extra[i]);
        c->to_extra[i] = c->from_extra[i] = NULL;
    }
    c->nto = c->nfrom = 0;
    vkt__p2p_close(c);
}

static void record_flight(vkt_comm *c, vkt_comm_req *r, int end, vkt_status st)
{
    vkt__flight *f = &c->flight[r->seq % VKT_FLIGHT_LEN];
    if (!end) {
        size_t es = vkt_dtype_size(r->dtype);
        *f = (vkt__flight){r->seq, r->kind, r->count * es, vkt__now(), 0, VKT_OK};
    } else {
        f->t_end = vkt__now();
        f->st = st;
    }
}

/* After a failure: publish where this rank stopped and collect the other
 * ranks' reports for a short window, so the message says who is stuck and
 * where (a timeout that names nobody is the classic distributed-training
 * complaint). A rank that never reports is dead or frozen. Bounded: every
 * store call uses the window as its deadline. */
static void diagnose(vkt_comm *c, vkt_comm_req *r, char *out, size_t cap)
{
    char key[48], pos[160], got[160];
    size_t n = 0, len;
    int found;
    if (!c->store || c->size < 2 || c->size > 1024) return;
    double window = c->timeout_s * 0.5 < 1.0 ? c->timeout_s * 0.5 : 1.0;
    double end = vkt__now() + window;
    c->store->timeout_s = window;
    snprintf(key, sizeof key, "vkt/pos/%d", c->rank);
    len = (size_t)snprintf(pos, sizeof pos, "%s #%llu step %d/%d", vkt__op_name(r->kind),
                           (unsigned long long)r->seq, c->step + 1, c->nsteps);
    /* From the flight record: the last collective this rank finished. */
    const vkt__flight *f = &c->flight[(r->seq + VKT_FLIGHT_LEN - 1) % VKT_FLIGHT_LEN];
    if (r->seq > 0 && f->seq == r->seq - 1 && f->t_end > 0 && len < sizeof pos) {
        char b[32];
        len += (size_t)snprintf(pos + len, sizeof pos - len, " (#%llu %s of %s took %.3f s)",
                                (unsigned long long)f->seq, vkt__op_name(f->kind),
                                vkt__fmt_bytes(b, sizeof b, f->bytes), f->t_end - f->t_start);
    }
    if (len >= sizeof pos) len = sizeof pos - 1;
    if (vkt__store_set(c->store, key, pos, len) != VKT_OK) return;
    unsigned char seen[1024] = {0};
    int left = c->size - 1;
    seen[c->rank] = 1;
    while (left > 0 && n < cap) { /* poll every silent rank each round */
        for (int q = 0; q < c->size && n < cap; q++) {
            if (seen[q]) continue;
            snprintf(key, sizeof key, "vkt/pos/%d", q);
            if (c->store->ops->try_get(c->store, key, got, sizeof got - 1, &len, &found))
                return;
            if (!found) continue;
            got[len] = '\0';
            seen[q] = 1;
            left--;
            n += (size_t)snprintf(out + n, cap - n, "; rank %d reached %s", q, got);
        }
        if (left == 0 || vkt__now() >= end) break;
        vkt__sleep_ms(20);
    }
    for (int q = 0; q < c->size && n < cap; q++)
        if (!seen[q])
            n += (size_t)snprintf(out + n, cap - n, "; rank %d did not report (stuck, stopped "
                                  "or dead: check its log)", q);
}

/* Backend gloo: Gloo runs the whole collective (one "step" for messages). */
static vkt_status run_gloo(vkt_comm *c, vkt_comm_req *r)
{
    static const vkt__gloo_kind kinds[] = {
        VKT_GLOO_ALLREDUCE, VKT_GLOO_REDUCE_SCATTER, VKT_GLOO_ALLGATHER,
        VKT_GLOO_BROADCAST, VKT_GLOO_BARRIER,   VKT_GLOO_REDUCE,
        VKT_GLOO_ALLGATHERV, VKT_GLOO_REDUCE_SCATTERV, VKT_GLOO_SEND,
        VKT_GLOO_RECV};
    vkt__gloo_op op = {kinds[r->kind], r->sendbuf, r->recvbuf, r->count, r->dtype, r->op,
                       r->root, r->coll_seq, r->counts};
    c->step = 0;
    c->nsteps = 1;
    return vkt__gloo_run(c->gloo, &op);
}

/* Run one request and fill in its status and message. */
static void execute(vkt_comm *c, vkt_comm_req *r)
{
    pthread_mutex_lock(&c->mu);
    vkt_status sticky = c->err_st;
    if (sticky != VKT_OK) snprintf(r->msg, sizeof r->msg, "%s", c->err_msg);
    pthread_mutex_unlock(&c->mu);
    if (sticky != VKT_OK) {
        r->st = sticky;
        return;
    }
    record_flight(c, r, 0, VKT_OK);
    vkt_status st = c->gloo ? run_gloo(c, r) : vkt__ring_run(c, r);
    record_flight(c, r, 1, st);
    r->st = st;
    if (st == VKT_OK) return;
    snprintf(r->msg, sizeof r->msg, "rank %d: %s #%llu (%zu elements of %s): %s", c->rank,
             vkt__op_name(r->kind), (unsigned long long)r->seq, r->count,
             vkt_dtype_name(r->dtype), vkt_last_error());
    /* Close our channels at once so that neighbours fail fast instead of
     * waiting out their own deadline: the error travels around the ring. */
    close_channels(c);
    size_t used = strlen(r->msg);
    if (st == VKT_ERR_TIMEOUT || st == VKT_ERR_REMOTE)
        diagnose(c, r, r->msg + used, sizeof r->msg - used);
    pthread_mutex_lock(&c->mu);
    if (c->err_st == VKT_OK) { /* the first failure wins (abort may have come first) */
        c->err_st = st;
        snprintf(c->err_msg, sizeof c->err_msg, "%s", r->msg);
    }
    pthread_mutex_unlock(&c->mu);
}

static void *progress_main(void *arg)
{
    vkt_comm *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        while ((!c->q_head || c->busy) && !c->stop) pthread_cond_wait(&c->cv_work, &c->mu);
        vkt_comm_req *r = c->busy ? NULL : c->q_head;
        if (!r) { /* stop requested and nothing queued */
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
        c->q_head = r->next;
        if (!c->q_head) c->q_tail = NULL;
        c->busy = 1;
        pthread_mutex_unlock(&c->mu);
        execute(c, r);
        pthread_mutex_lock(&c->mu);
        r->done = 1;
        c->busy = 0;
        pthread_cond_broadcast(&c->cv_done);
        pthread_mutex_unlock(&c->mu);
    }
}

/* A blocking collective with nothing queued ahead of it runs on the calling
 * thread: handing it to the progress thread and back costs two context
 * switches per collective, which dominates small messages when several ranks
 * share few cores. Returns 0 (and does nothing) when it must be queued. */
int vkt__comm_try_inline(vkt_comm *c, vkt_comm_req *r, vkt_status *st)
{
    pthread_mutex_lock(&c->mu);
    if (c->q_head || c->busy || c->err_st != VKT_OK) {
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    c->busy = 1;
    r->c = c;
    r->seq = c->next_seq++;
    if (r->kind != VKT_OPK_SEND && r->kind != VKT_OPK_RECV) r->coll_seq = c->next_coll_seq++;
    pthread_mutex_unlock(&c->mu);
    execute(c, r);
    pthread_mutex_lock(&c->mu);
    c->busy = 0;
    r->done = 1;
    pthread_cond_broadcast(&c->cv_work); /* work queued meanwhile by another thread */
    pthread_mutex_unlock(&c->mu);
    *st = r->st == VKT_OK ? VKT_OK : VKT_ERROR(r->st, "%s", r->msg);
    return 1;
}

/* Queue r (filled by the caller) for the progress thread. */
vkt_status vkt__comm_submit(vkt_comm *c, vkt_comm_req *r)
{
    pthread_mutex_lock(&c->mu);
    vkt_status st = c->err_st;
    if (st != VKT_OK) {
        pthread_mutex_unlock(&c->mu);
        return VKT_ERROR(st, "%s", c->err_msg);
    }
    r->c = c;
    r->next = NULL;
    r->done = 0;
    r->seq = c->next_seq++;
    if (r->kind != VKT_OPK_SEND && r->kind != VKT_OPK_RECV) r->coll_seq = c->next_coll_seq++;
    if (c->q_tail)
        c->q_tail->next = r;
    else
        c->q_head = r;
    c->q_tail = r;
    pthread_cond_signal(&c->cv_work);
    pthread_mutex_unlock(&c->mu);
    return VKT_OK;
}

/* Wait for r to finish; the progress thread bounds every collective by its
 * no-progress deadline, so this wait ends too. */
vkt_status vkt__comm_finish(vkt_comm_req *r)
{
    vkt_comm *c = r->c;
    pthread_mutex_lock(&c->mu);
    while (!r->done) pthread_cond_wait(&c->cv_done, &c->mu);
    pthread_mutex_unlock(&c->mu);
    if (r->st != VKT_OK) return VKT_ERROR(r->st, "%s", r->msg);
    return VKT_OK;
}

/* ----------------------------------------------------------------- setup -- */

typedef struct resolved {
    int rank, size, serve;
    double timeout_s;
    char store_addr[300];
} resolved;

/* The store address from the environment's master, with the fix in the
 * message when the launcher named none. */
static vkt_status env_store_addr(const vkt_dist_env *e, resolved *v)
{
    VKT_FAIL_IF(!e->master_addr[0] && strcmp(e->source, "mpirun") == 0, VKT_ERR_INVALID_ARG,
                "vkt_comm_create: this mpirun job spans hosts (%d of its %d ranks on this one) "
                "and Open MPI names no master: export MASTER_ADDR=<rank 0's host> and pass it "
                "with mpirun -x MASTER_ADDR, or set opts.store_addr", e->local_world_size,
                e->world_size);
    VKT_FAIL_IF(!e->master_addr[0] || !e->master_port, VKT_ERR_INVALID_ARG,
                "vkt_comm_create: no store address (environment: %s, master '%s', port %d); "
                "set opts.store_addr, or MASTER_ADDR and MASTER_PORT", e->source,
                e->master_addr, e->master_port);
    /* An IPv6 literal needs brackets (unless it came with them). */
    int v6 = strchr(e->master_addr, ':') != NULL && e->master_addr[0] != '[';
    snprintf(v->store_addr, sizeof v->store_addr, "%s%s%s:%d", v6 ? "[" : "", e->master_addr,
             v6 ? "]" : "", e->master_port);
    return VKT_OK;
}

static vkt_status resolve_opts(const vkt_comm_opts *o, resolved *v)
{
    VKT_FAIL_IF(o->struct_size < offsetof(vkt_comm_opts, latency_bytes) ||
                    o->struct_size > sizeof(vkt_comm_opts),
                VKT_ERR_INVALID_ARG, "vkt_comm_create: opts.struct_size is %u, expected %zu; "
                "initialise opts with VKT_COMM_OPTS_INIT", o->struct_size,
                sizeof(vkt_comm_opts));
    /* The launcher's environment (torchrun-style, srun, mpirun) fills what
     * opts leave open; it is read only when something is left open. */
    vkt_dist_env e = {.source = NULL};
    if (o->rank < 0 || o->world_size < 0) {
        VKT_CHECK(vkt_dist_env_detect(&e));
        VKT_FAIL_IF(strcmp(e.source, "none") == 0, VKT_ERR_INVALID_ARG,
                    "vkt_comm_create: no rank given; set opts.rank and opts.world_size, or "
                    "start the program with vktrain launch, srun or mpirun, or set RANK and "
                    "WORLD_SIZE");
    }
    v->rank = o->rank >= 0 ? o->rank : e.rank;
    v->size = o->world_size >= 0 ? o->world_size : e.world_size;
    VKT_FAIL_IF(v->size < 1 || v->rank < 0 || v->rank >= v->size, VKT_ERR_INVALID_ARG,
                "vkt_comm_create: rank %d of world size %d is invalid; set opts.rank and "
                "opts.world_size (or RANK and WORLD_SIZE) with 0 <= rank < world_size",
                v->rank, v->size);
    VKT_FAIL_IF((unsigned)o->backend > VKT_COMM_BACKEND_VERBS, VKT_ERR_INVALID_ARG,
                "vkt_comm_create: unknown backend %d", (int)o->backend);
    if (o->backend == VKT_COMM_BACKEND_GLOO && !vkt__gloo_built()) {
        vkt__gloo *none = NULL; /* the stub's message says how to get Gloo */
        return vkt__gloo_create(NULL, 0, 0, NULL, 0, &none);
    }
    v->timeout_s = o->comm_timeout_s > 0 ? o->comm_timeout_s
                                         : (double)vkt__env_int("VKT_COMM_TIMEOUT_S", 0);
    if (v->timeout_s <= 0) v->timeout_s = DEFAULT_TIMEOUT_S;
    v->serve = o->store_server >= 0 ? o->store_server : v->rank == 0;
    if (o->store_addr) {
        snprintf(v->store_addr, sizeof v->store_addr, "%s", o->store_addr);
    } else if (v->size > 1) {
        if (!e.source) VKT_CHECK(vkt_dist_env_detect(&e));
        VKT_CHECK(env_store_addr(&e, v));
    } else {
        v->store_addr[0] = '\0'; /* one rank needs no store */
    }
    return VKT_OK;
}

static vkt_status start_thread(vkt_comm *c)
{
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    VKT_FAIL_IF(c->wake_fd < 0, VKT_ERR_SYSTEM, "eventfd: %s", strerror(errno));
    size_t chunk = c->chunk_bytes > MIN_STAGING_CHUNK ? c->chunk_bytes : MIN_STAGING_CHUNK;
    c->staging = vkt_malloc(chunk * VKT_RING_SLOTS);
    VKT_FAIL_IF(!c->staging, VKT_ERR_NOMEM, "out of memory for %zu bytes of staging",
                chunk * VKT_RING_SLOTS);
    VKT_FAIL_IF(pthread_create(&c->thread, NULL, progress_main, c) != 0, VKT_ERR_SYSTEM,
                "cannot start the progress thread");
    c->thread_started = 1;
    return VKT_OK;
}

static vkt_status init_comm(vkt_comm *c, const vkt_comm_opts *o, const resolved *v)
{
    int64_t chunk = (int64_t)o->chunk_bytes;
    if (!chunk) chunk = vkt__env_int("VKT_COMM_CHUNK_BYTES", DEFAULT_CHUNK);
    c->chunk_bytes = chunk > 0 ? (size_t)chunk : DEFAULT_CHUNK;
    c->checksum = o->checksum >= 0 ? o->checksum != 0 : vkt__env_int("VKT_COMM_CHECKSUM", 0) != 0;
    c->latency_bytes = o->latency_bytes >= 0
                           ? o->latency_bytes
                           : vkt__env_int("VKT_COMM_LATENCY_BYTES", DEFAULT_LATENCY_BYTES);
    if (c->latency_bytes < 0) c->latency_bytes = DEFAULT_LATENCY_BYTES;
    c->delay_us = vkt__env_int("VKT_COMM_DELAY_US", 0);
    if (c->delay_us < 0 || c->delay_us > 10000000) c->delay_us = 0;
    c->nsock_cfg = o->tcp_sockets > 0 ? o->tcp_sockets
                                      : (int)vkt__env_int("VKT_TCP_SOCKETS", DEFAULT_TCP_SOCKETS);
    VKT_FAIL_IF(c->nsock_cfg < 1 || c->nsock_cfg > VKT_TCP_MAX_SOCKETS, VKT_ERR_INVALID_ARG,
                "vkt_comm_create: tcp_sockets (or VKT_TCP_SOCKETS) is %d; use 1..%d",
                c->nsock_cfg, VKT_TCP_MAX_SOCKETS);
    VKT_CHECK(vkt__auth_init(&c->auth, o->job_secret, o->allow_unauthenticated));
    if (v->size > 1) {
        VKT_CHECK(vkt__store_open(v->store_addr, v->serve, &c->auth, v->timeout_s, &c->server,
                                  &c->store));
        /* Listen where peers can reach us: the address our store connection
         * uses (it routes to rank 0), or for a file store this host's name. */
        char ip[64];
        const char *host = o->listen_addr;
        if (!host && vkt__store_local_ip(c->store)[0]) host = vkt__store_local_ip(c->store);
        if (!host && vkt__net_default_ip(ip, sizeof ip) == VKT_OK) host = ip;
        if (c->backend == VKT_COMM_BACKEND_GLOO)
            VKT_CHECK(vkt__comm_setup_gloo(c, host));
        else
            VKT_CHECK(vkt__comm_setup_ring(c, host));
    }
    VKT_CHECK(start_thread(c));
    /* Prove the ring carries data before anyone uses it. This barrier is
     * collective #0 (a 1-rank comm just skips the number). */
    if (v->size == 1) c->next_seq = 1;
    return v->size > 1 ? vkt_comm_barrier(c) : VKT_OK;
}

vkt_status vkt_comm_create(const vkt_comm_opts *opts, vkt_comm **out)
{
    resolved v;
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_comm_create: out is NULL");
    *out = NULL;
    VKT_FAIL_IF(!opts, VKT_ERR_INVALID_ARG, "vkt_comm_create: opts is NULL");
    VKT_CHECK(resolve_opts(opts, &v));
    /* A caller built against an older header passes a shorter struct: the
     * fields it does not know keep their defaults. */
    vkt_comm_opts full = VKT_COMM_OPTS_INIT;
    memcpy(&full, opts, opts->struct_size);
    full.struct_size = sizeof full;
    opts = &full;
    vkt_comm *c = vkt_calloc(1, sizeof *c);
    VKT_FAIL_IF(!c, VKT_ERR_NOMEM, "vkt_comm_create: out of memory");
    c->magic = VKT_COMM_MAGIC;
    c->wake_fd = -1;
    c->link_name = v.size == 1 ? "none" : NULL;
    c->rank = v.rank;
    c->size = v.size;
    c->timeout_s = v.timeout_s;
    c->backend = opts->backend;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv_work, NULL);
    pthread_cond_init(&c->cv_done, NULL);
    vkt_status st = init_comm(c, opts, &v);
    if (st != VKT_OK) {
        vkt__error_context(st, "rank %d of %d: joining the job via %s", v.rank, v.size,
                           v.size > 1 ? v.store_addr : "(no store)");
        vkt_comm_destroy(c);
        return st;
    }
    *out = c;
    return VKT_OK;
}

void vkt_comm_destroy(vkt_comm *c)
{
    if (!c || c->magic != VKT_COMM_MAGIC) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv_work);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    close_channels(c);
    vkt__tcp_channel.close_listener(c->lis_tcp);
    vkt__shm_channel.close_listener(c->lis_shm);
    vkt__verbs_channel.close_listener(c->lis_verbs);
    vkt_free(c->p2p_to);
    vkt_free(c->p2p_from);
    vkt__gloo_destroy(c->gloo);
    vkt__store_close(c->store);
    vkt__store_tcp_stop(c->server);
    pthread_cond_destroy(&c->cv_done);
    pthread_cond_destroy(&c->cv_work);
    pthread_mutex_destroy(&c->mu);
    vkt_free(c->staging);
    vkt_free(c->scratch);
    vkt__close(c->wake_fd);
    c->magic = 0;
    vkt_free(c);
}

const char *vkt_comm_link(const vkt_comm *c)
{
    if (!c || c->magic != VKT_COMM_MAGIC) return "invalid";
    return c->link_name ? c->link_name : "invalid";
}

int vkt_comm_rank(const vkt_comm *c) { return c && c->magic == VKT_COMM_MAGIC ? c->rank : -1; }

int vkt_comm_size(const vkt_comm *c) { return c && c->magic == VKT_COMM_MAGIC ? c->size : -1; }

vkt_status vkt_comm_abort(vkt_comm *c)
{
    VKT_FAIL_IF(!c || c->magic != VKT_COMM_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_comm_abort: not a communicator");
    atomic_store(&c->aborted, 1);
    pthread_mutex_lock(&c->mu);
    if (c->err_st == VKT_OK) {
        c->err_st = VKT_ERR_INVALID_USAGE;
        snprintf(c->err_msg, sizeof c->err_msg, "rank %d: the communicator was aborted by "
                 "vkt_comm_abort; destroy it", c->rank);
    }
    pthread_mutex_unlock(&c->mu);
    vkt__gloo_close(c->gloo); /* peers notice; one in flight ends by its timeout */
    uint64_t one = 1;
    while (c->wake_fd >= 0 && write(c->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    return VKT_OK;
}

vkt_status vkt_comm_async_error(vkt_comm *c)
{
    VKT_FAIL_IF(!c || c->magic != VKT_COMM_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_comm_async_error: not a communicator");
    pthread_mutex_lock(&c->mu);
    vkt_status st = c->err_st;
    if (st != VKT_OK) VKT_ERROR(st, "%s", c->err_msg);
    pthread_mutex_unlock(&c->mu);
    return st;
}
