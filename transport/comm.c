/* The communicator: option handling, rendezvous and ring setup, the progress
 * thread that runs queued collectives in order, and the public entry points
 * of vktrain/comm.h. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
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

/* What this rank listens on while the ring forms: one listener per kind. */
typedef struct listeners {
    vkt_chan_listener *tcp, *shm, *verbs;
    char host_id[128]; /* "" when shared memory is unavailable */
} listeners;

/* Pick the channel kind for the link to rank peer from its published
 * addresses ("tcp=...\nshm=...\nverbs=...\n"); *addr receives the chosen
 * address. Auto: shm on one host, verbs between hosts when both ranks have an
 * active RDMA port (both published verbs=), else tcp. */
vkt_status vkt__choose_kind(const vkt_comm *c, const char *host_id, char *pub, int peer,
                            const vkt_channel_ops **ops, const char **addr)
{
    char *tcp = strstr(pub, "tcp="), *shm = strstr(pub, "shm="), *verbs = strstr(pub, "verbs=");
    for (char *p = pub; (p = strchr(p, '\n'));) *p++ = '\0';
    size_t hl = strlen(host_id);
    int same_host = shm && hl && strncmp(shm + 4, host_id, hl) == 0 && shm[4 + hl] == '|';
    if (c->backend == VKT_COMM_BACKEND_SHM || (c->backend == VKT_COMM_BACKEND_AUTO && same_host)) {
        VKT_FAIL_IF(!shm, VKT_ERR_INVALID_USAGE, "rank %d offers no shared memory; every "
                    "rank must use the same backend", peer);
        *ops = &vkt__shm_channel;
        *addr = shm + 4;
        return VKT_OK;
    }
    if (c->backend == VKT_COMM_BACKEND_VERBS ||
        (c->backend == VKT_COMM_BACKEND_AUTO && verbs && c->lis_verbs)) {
        VKT_FAIL_IF(!verbs, VKT_ERR_INVALID_USAGE, "rank %d offers no verbs address; every "
                    "rank must use backend verbs", peer);
        *ops = &vkt__verbs_channel;
        *addr = verbs + 6;
        return VKT_OK;
    }
    VKT_FAIL_IF(!tcp, VKT_ERR_INVALID_USAGE, "rank %d offers no tcp address (backend shm?) "
                "but is not on this host; use the same backend on every rank", peer);
    *ops = &vkt__tcp_channel;
    *addr = tcp + 4;
    return VKT_OK;
}

/* The sockets of the ring link being set up, in both directions. */
typedef struct ring_links {
    vkt_chan *to[VKT_TCP_MAX_SOCKETS], *from[VKT_TCP_MAX_SOCKETS];
    int nto, nfrom, want_to, want_from; /* want_from 0: not known yet */
} ring_links;

/* Backend auto with verbs: what failed on this rank's verbs links. With
 * soft set, a verbs error while linking is recorded here instead of failing
 * the setup, so that every rank can vote and fall back to tcp together. */
typedef struct verbs_trial {
    int soft;
    int to_failed, from_failed;
    char why[400]; /* the first failure, with the device in it */
} verbs_trial;

static void trial_fail(verbs_trial *t, const char *what)
{
    if (!t->why[0]) snprintf(t->why, sizeof t->why, "%s", what);
    vkt_clear_error();
}

/* One accept attempt on each listener; keeps channels from prev only. The
 * first one tells the link's kind: shm has one, tcp tcp_sockets sockets. */
static vkt_status accept_prev(vkt_comm *c, const listeners *ls, ring_links *rl, verbs_trial *t)
{
    vkt_chan_listener *l[3] = {ls->tcp, ls->shm, ls->verbs};
    const vkt_channel_ops *k[3] = {&vkt__tcp_channel, &vkt__shm_channel, &vkt__verbs_channel};
    int prev = (c->rank + c->size - 1) % c->size;
    for (int i = 0; i < 3 && (!rl->want_from || rl->nfrom < rl->want_from); i++) {
        int peer = -1;
        vkt_chan *ch = NULL;
        if (!l[i]) continue;
        vkt_status st = k[i]->accept(l[i], &ch, &peer);
        if (st != VKT_OK && t->soft && k[i] == &vkt__verbs_channel) {
            trial_fail(t, vkt_last_error());
            t->from_failed = 1;
            continue;
        }
        VKT_CHECK(st);
        if (ch && (peer != prev || (rl->nfrom && ch->ops != rl->from[0]->ops))) {
            fprintf(stderr, "vktrain: rank %d: unexpected channel from rank %d (expected "
                    "%d); dropped\n", c->rank, peer, prev);
            ch->ops->close(ch);
        } else if (ch) {
            rl->from[rl->nfrom++] = ch;
            rl->want_from = ch->ops == &vkt__tcp_channel ? c->nsock_cfg : 1;
        }
    }
    return VKT_OK;
}

/* Several sockets per link: the accepting side cannot tell them apart, so
 * each carries its index as a first frame, and the receiver orders them. */
static vkt_status order_sockets(vkt_comm *c, ring_links *rl, double deadline)
{
    uint32_t out_idx[VKT_TCP_MAX_SOCKETS], in_idx[VKT_TCP_MAX_SOCKETS];
    vkt_chan_req sr[VKT_TCP_MAX_SOCKETS], rr[VKT_TCP_MAX_SOCKETS];
    for (int i = 0; i < rl->nto && rl->nto > 1; i++) {
        out_idx[i] = (uint32_t)i;
        VKT_CHECK(rl->to[i]->ops->isend(rl->to[i], &sr[i], &out_idx[i], sizeof out_idx[i]));
    }
    for (int i = 0; i < rl->nfrom && rl->nfrom > 1; i++)
        VKT_CHECK(rl->from[i]->ops->irecv(rl->from[i], &rr[i], &in_idx[i], sizeof in_idx[i]));
    for (;;) {
        int pending = 0, done;
        for (int i = 0; i < rl->nto && rl->nto > 1; i++) {
            VKT_CHECK(rl->to[i]->ops->test(rl->to[i], &sr[i], &done));
            pending |= !done;
        }
        for (int i = 0; i < rl->nfrom && rl->nfrom > 1; i++) {
            VKT_CHECK(rl->from[i]->ops->test(rl->from[i], &rr[i], &done));
            pending |= !done;
        }
        if (!pending) break;
        VKT_FAIL_IF(vkt__now() >= deadline, VKT_ERR_TIMEOUT, "rank %d: ring setup: the "
                    "sockets of a tcp link did not say their index within %.0f s", c->rank,
                    c->timeout_s);
        vkt__sleep_ms(1);
    }
    vkt_chan *sorted[VKT_TCP_MAX_SOCKETS] = {NULL};
    for (int i = 0; i < rl->nfrom && rl->nfrom > 1; i++) {
        VKT_FAIL_IF(in_idx[i] >= (uint32_t)rl->nfrom || sorted[in_idx[i]], VKT_ERR_CORRUPT,
                    "rank %d: ring setup: bad socket index %u from rank %d", c->rank,
                    in_idx[i], rl->from[i]->peer);
        sorted[in_idx[i]] = rl->from[i];
    }
    for (int i = 0; i < rl->nfrom && rl->nfrom > 1; i++) rl->from[i] = sorted[i];
    return VKT_OK;
}

/* Hand the finished links to the comm (or close them on failure); a side
 * that was not being made keeps what the comm has. */
static void keep_links(vkt_comm *c, ring_links *rl, int do_to, int do_from, vkt_status st)
{
    for (int i = 0; i < rl->nto; i++) {
        if (st != VKT_OK) rl->to[i]->ops->close(rl->to[i]);
        else if (i == 0) c->to_next = rl->to[0];
        else c->to_extra[i - 1] = rl->to[i];
    }
    for (int i = 0; i < rl->nfrom; i++) {
        if (st != VKT_OK) rl->from[i]->ops->close(rl->from[i]);
        else if (i == 0) c->from_prev = rl->from[0];
        else c->from_extra[i - 1] = rl->from[i];
    }
    if (do_to) c->nto = st == VKT_OK ? rl->nto : 0;
    if (do_from) c->nfrom = st == VKT_OK ? rl->nfrom : 0;
}

/* Connect to the next rank and accept the previous one, both at once.
 * do_to / do_from: which of the two links to make (a tcp fallback remakes
 * only the verbs ones). With t->soft, verbs failures go to t instead. */
static vkt_status connect_ring(vkt_comm *c, const vkt_chan_config *cfg, const listeners *ls,
                               char *next_pub, int do_to, int do_from, verbs_trial *t)
{
    int next = (c->rank + 1) % c->size, prev = (c->rank + c->size - 1) % c->size;
    const vkt_channel_ops *ops = &vkt__tcp_channel;
    const char *addr = "";
    vkt_chan_connecting *cs = NULL;
    double deadline = vkt__now() + c->timeout_s;
    int backoff = 1;
    ring_links rl = {{NULL}, {NULL}, 0, 0, do_to, 0};
    VKT_CHECK(vkt__choose_kind(c, ls->host_id, next_pub, next, &ops, &addr));
    if (do_to && ops == &vkt__tcp_channel) rl.want_to = c->nsock_cfg;
    vkt_status st = VKT_OK;
    for (;;) {
        while (rl.nto < rl.want_to && !t->to_failed) {
            st = ops->connect(cfg, addr, next, &cs, &rl.to[rl.nto]);
            if (st != VKT_OK && t->soft && ops == &vkt__verbs_channel) {
                trial_fail(t, vkt_last_error());
                t->to_failed = 1;
                st = VKT_OK;
                break;
            }
            if (st != VKT_OK) goto out;
            if (!rl.to[rl.nto]) break;
            rl.nto++;
        }
        if (do_from && !t->from_failed) VKT_CHECK_GOTO(st, accept_prev(c, ls, &rl, t), out);
        int to_done = rl.nto == rl.want_to || t->to_failed;
        int from_done = !do_from || t->from_failed || (rl.want_from && rl.nfrom == rl.want_from);
        if (to_done && from_done) break;
        if (vkt__now() >= deadline) {
            st = VKT_ERROR(VKT_ERR_TIMEOUT, "rank %d: ring setup: %s within %.0f s; check that "
                           "rank %d runs and can reach this host", c->rank,
                           !to_done ? "could not connect to the next rank"
                                    : "the previous rank did not connect",
                           c->timeout_s, !to_done ? next : prev);
            goto out;
        }
        vkt__sleep_ms(backoff); /* setup is one-time: a short sleep beats spinning */
        backoff = backoff * 2 > 20 ? 20 : backoff * 2;
    }
    st = order_sockets(c, &rl, deadline);
out:
    ops->abort_connect(cs);
    keep_links(c, &rl, do_to, do_from, st);
    return st;
}

static vkt_status open_listeners(vkt_comm *c, const vkt_chan_config *cfg, const char *host,
                                 listeners *ls, char *pub, size_t cap)
{
    char addr[VKT_CHAN_ADDR_MAX];
    size_t n = 0;
    pub[0] = '\0';
    if (c->backend == VKT_COMM_BACKEND_VERBS ||
        (c->backend == VKT_COMM_BACKEND_AUTO && vkt__verbs_usable())) {
        vkt_status st = vkt__verbs_channel.listen(cfg, host, &ls->verbs, addr, sizeof addr);
        VKT_FAIL_IF(st != VKT_OK && c->backend == VKT_COMM_BACKEND_VERBS, st, "backend verbs: "
                    "%s", vkt_last_error());
        if (st == VKT_OK)
            n += (size_t)snprintf(pub + n, cap - n, "verbs=%s\n", addr);
        else
            vkt_clear_error(); /* auto: tcp between hosts then */
    }
    if (c->backend != VKT_COMM_BACKEND_TCP && c->backend != VKT_COMM_BACKEND_VERBS &&
        vkt__shm_host_id(ls->host_id, sizeof ls->host_id) == VKT_OK &&
        vkt__shm_channel.listen(cfg, host, &ls->shm, addr, sizeof addr) == VKT_OK) {
        n += (size_t)snprintf(pub + n, cap - n, "shm=%s\n", addr);
    } else {
        ls->host_id[0] = '\0';
        VKT_FAIL_IF(c->backend == VKT_COMM_BACKEND_SHM, VKT_ERR_UNSUPPORTED,
                    "backend shm: %s", vkt_last_error());
    }
    if (c->backend != VKT_COMM_BACKEND_SHM && c->backend != VKT_COMM_BACKEND_VERBS) {
        VKT_CHECK(vkt__tcp_channel.listen(cfg, host, &ls->tcp, addr, sizeof addr));
        n += (size_t)snprintf(pub + n, cap - n, "tcp=%s\n", addr);
    }
    /* Frame sizes follow from chunk_bytes and receivers reduce in place
     * only without checksums, so ranks must agree on both. */
    snprintf(pub + n, cap - n, "cfg=%zu,%d,%lld,%d\n", c->chunk_bytes, c->checksum,
             (long long)c->latency_bytes, c->nsock_cfg);
    return VKT_OK;
}

static vkt_status check_peer_cfg(const vkt_comm *c, const char *pub, int peer)
{
    VKT_FAIL_IF(strncmp(pub, "gloo=", 5) == 0, VKT_ERR_INVALID_USAGE,
                "rank %d uses backend gloo but this rank does not; use the same backend on "
                "every rank", peer);
    const char *p = strstr(pub, "cfg=");
    char *end = NULL;
    unsigned long long chunk = p ? strtoull(p + 4, &end, 10) : 0;
    int checksum = end && *end == ',' ? (int)strtol(end + 1, &end, 10) : -1;
    long long lat = end && *end == ',' ? strtoll(end + 1, &end, 10) : -1;
    int nsock = end && *end == ',' ? atoi(end + 1) : -1;
    VKT_FAIL_IF(chunk != c->chunk_bytes, VKT_ERR_INVALID_USAGE,
                "rank %d uses chunk_bytes %llu but this rank %zu; give every rank the same "
                "chunk_bytes (or VKT_COMM_CHUNK_BYTES)", peer, chunk, c->chunk_bytes);
    VKT_FAIL_IF(checksum != c->checksum, VKT_ERR_INVALID_USAGE,
                "rank %d has checksums %s but this rank %s; give every rank the same "
                "checksum option (or VKT_COMM_CHECKSUM)", peer, checksum == 1 ? "on" : "off",
                c->checksum ? "on" : "off");
    VKT_FAIL_IF(lat != c->latency_bytes, VKT_ERR_INVALID_USAGE,
                "rank %d uses latency_bytes %lld but this rank %lld; give every rank the same "
                "latency_bytes (or VKT_COMM_LATENCY_BYTES)", peer, lat,
                (long long)c->latency_bytes);
    VKT_FAIL_IF(nsock != c->nsock_cfg, VKT_ERR_INVALID_USAGE,
                "rank %d uses %d tcp sockets per link but this rank %d; give every rank the "
                "same tcp_sockets (or VKT_TCP_SOCKETS)", peer, nsock, c->nsock_cfg);
    return VKT_OK;
}

/* ------------------------------------------------- backend auto and verbs --
 * Auto uses verbs between hosts when both ranks have an ACTIVE port, but a
 * port may sit on another fabric than its peer's (or need another GID), and
 * then RDMA fails where tcp works. So under auto every verbs link carries one
 * small probe frame before the ring is used; each rank then publishes its
 * verdict (vkt/auto/<rank>), every rank that can do verbs reads all of them,
 * and if any failed they all close their verbs links and listener and remake
 * those links over tcp: the whole communicator agrees. With backend verbs
 * set explicitly nothing is probed and a failure is an error, as before. */
#define PROBE_TIMEOUT_S 10.0

static int is_verbs(const vkt_chan *ch) { return ch && ch->ops == &vkt__verbs_channel; }

/* The probe's deadline ran out on one side: say which, naming the device. */
static void probe_late(verbs_trial *t, const vkt_comm *c, const char *dev, int to, double s)
{
    char why[200];
    int peer = (c->rank + (to ? 1 : c->size - 1)) % c->size;
    snprintf(why, sizeof why, "verbs link %s rank %d on %s: the probe frame was not %s within "
             "%.0f s", to ? "to" : "from", peer, dev, to ? "acknowledged" : "received", s);
    trial_fail(t, why);
    *(to ? &t->to_failed : &t->from_failed) = 1;
}

/* One frame each way over this rank's verbs links (to next: sent and
 * acknowledged; from prev: arrived), within min(timeout, PROBE_TIMEOUT_S). */
static void probe_verbs(vkt_comm *c, const char *dev, verbs_trial *t)
{
    vkt_chan *to = is_verbs(c->to_next) && !t->to_failed ? c->to_next : NULL;
    vkt_chan *from = is_verbs(c->from_prev) && !t->from_failed ? c->from_prev : NULL;
    uint64_t out = 0x70726f6265ull, in = 0; /* "probe" */
    vkt_chan_req sr, rr;
    int sdone = !to, rdone = !from, d = 0;
    double limit = c->timeout_s < PROBE_TIMEOUT_S ? c->timeout_s : PROBE_TIMEOUT_S;
    double deadline = vkt__now() + limit;
    if (to && to->ops->isend(to, &sr, &out, sizeof out) != VKT_OK) {
        trial_fail(t, vkt_last_error());
        sdone = t->to_failed = 1;
    }
    if (from && from->ops->irecv(from, &rr, &in, sizeof in) != VKT_OK) {
        trial_fail(t, vkt_last_error());
        rdone = t->from_failed = 1;
    }
    while (!sdone || !rdone) {
        if (!sdone && to->ops->test(to, &sr, &d) != VKT_OK) {
            trial_fail(t, vkt_last_error());
            sdone = t->to_failed = 1;
        } else if (!sdone) {
            sdone = d && vkt__verbs_sent(to);
        }
        if (!rdone && from->ops->test(from, &rr, &d) != VKT_OK) {
            trial_fail(t, vkt_last_error());
            rdone = t->from_failed = 1;
        } else if (!rdone) {
            rdone = d;
        }
        if ((!sdone || !rdone) && vkt__now() >= deadline) {
            if (!sdone) probe_late(t, c, dev, 1, limit);
            if (!rdone) probe_late(t, c, dev, 0, limit);
            break;
        }
        vkt__sleep_ms(1);
    }
}

/* Publish this rank's verdict; a rank that can do verbs reads everyone's
 * and sets *fallback when any rank's verbs failed (*who: the first). */
static vkt_status vote_verbs(vkt_comm *c, int can_verbs, const verbs_trial *t, int *fallback,
                             int *who, char *why, size_t cap)
{
    char key[64], val[sizeof t->why];
    size_t len = 0;
    const char *mine = !can_verbs ? "none" : t->why[0] ? t->why : "ok";
    snprintf(key, sizeof key, "vkt/auto/%d", c->rank);
    VKT_CHECK(vkt__store_set(c->store, key, mine, strlen(mine)));
    *fallback = 0;
    for (int q = 0; q < c->size && can_verbs; q++) {
        snprintf(key, sizeof key, "vkt/auto/%d", q);
        vkt_status st = vkt__store_get(c->store, key, val, sizeof val - 1, &len);
        if (st != VKT_OK)
            return vkt__error_context(st, "backend auto: waiting for rank %d's verbs verdict", q);
        val[len] = '\0';
        if (strcmp(val, "ok") == 0 || strcmp(val, "none") == 0) continue;
        if (!*fallback) {
            *who = q;
            snprintf(why, cap, "%s", val);
        }
        *fallback = 1;
    }
    return VKT_OK;
}

/* Backend auto after the ring's links are made: probe, vote, and remake the
 * verbs links over tcp when any rank's verbs failed. */
static vkt_status settle_auto(vkt_comm *c, const vkt_chan_config *cfg, listeners *ls,
                              const char *my_pub, char *next_pub, verbs_trial *t)
{
    char dev[64] = "?", why[sizeof t->why];
    const char *v = strstr(my_pub, "verbs=");
    int fallback = 0, who = -1;
    if (v) snprintf(dev, sizeof dev, "%.*s", (int)strcspn(v + 6, "|\n"), v + 6);
    if (ls->verbs) probe_verbs(c, dev, t);
    VKT_CHECK(vote_verbs(c, ls->verbs != NULL, t, &fallback, &who, why, sizeof why));
    if (!fallback) return VKT_OK;
    if (t->why[0])
        fprintf(stderr, "vktrain: rank %d: warning: backend auto: verbs on %s failed: %s; "
                "using tcp instead for this communicator (backend tcp skips the try)\n",
                c->rank, dev, t->why);
    int redo_to = is_verbs(c->to_next) || t->to_failed;
    int redo_from = is_verbs(c->from_prev) || t->from_failed;
    if (is_verbs(c->to_next)) c->to_next->ops->close(c->to_next);
    if (is_verbs(c->from_prev)) c->from_prev->ops->close(c->from_prev);
    if (redo_to) c->to_next = NULL;
    if (redo_from) c->from_prev = NULL;
    vkt__verbs_channel.close_listener(ls->verbs); /* later direct links take tcp too */
    ls->verbs = c->lis_verbs = NULL;
    verbs_trial hard = {0};
    vkt_status st = connect_ring(c, cfg, ls, next_pub, redo_to, redo_from, &hard);
    if (st != VKT_OK)
        return vkt__error_context(st, "backend auto: remaking the verbs links over tcp after "
                                  "rank %d's verbs failed (%s)", who, why);
    return VKT_OK;
}

static vkt_status setup_ring(vkt_comm *c, const char *listen_host)
{
    vkt_chan_config cfg = {c->rank, c->checksum, &c->auth};
    char pub[2 * VKT_CHAN_ADDR_MAX + 300], next_pub[sizeof pub], next_copy[sizeof pub], key[64];
    size_t len = 0;
    int next = (c->rank + 1) % c->size;
    listeners ls = {NULL, NULL, NULL, ""};
    vkt_status st;
    VKT_CHECK_GOTO(st, open_listeners(c, &cfg, listen_host, &ls, pub, sizeof pub), out);
    c->lis_verbs = ls.verbs; /* choose_kind asks whether this rank can do verbs */
    snprintf(key, sizeof key, "vkt/chan/%d", c->rank);
    VKT_CHECK_GOTO(st, vkt__store_set(c->store, key, pub, strlen(pub)), out);
    snprintf(key, sizeof key, "vkt/chan/%d", next);
    st = vkt__store_get(c->store, key, next_pub, sizeof next_pub - 1, &len);
    if (st != VKT_OK) {
        vkt__error_context(st, "waiting for rank %d to publish its address", next);
        goto out;
    }
    next_pub[len] = '\0';
    memcpy(next_copy, next_pub, len + 1); /* choose_kind cuts its copy into lines */
    VKT_CHECK_GOTO(st, check_peer_cfg(c, next_pub, next), out);
    verbs_trial t = {.soft = c->backend == VKT_COMM_BACKEND_AUTO && ls.verbs};
    st = connect_ring(c, &cfg, &ls, next_pub, 1, 1, &t);
    if (st == VKT_OK && c->backend == VKT_COMM_BACKEND_AUTO)
        st = settle_auto(c, &cfg, &ls, pub, next_copy, &t);
    if (st == VKT_OK) c->link_name = c->to_next->ops->name; /* fixed from now on */
out:
    /* The listeners stay open for direct links (send/recv, recursive
     * doubling), which are made on first use; destroy closes them. */
    c->lis_tcp = ls.tcp;
    c->lis_shm = ls.shm;
    c->lis_verbs = ls.verbs;
    snprintf(c->host_id, sizeof c->host_id, "%s", ls.host_id);
    return st;
}

/* Backend gloo: check that the next rank uses Gloo too (a mix would wait out
 * the deadline in two different rendezvous), then let Gloo connect its mesh
 * through our store. */
static vkt_status setup_gloo(vkt_comm *c, const char *listen_host)
{
    char key[64], next_pub[2 * VKT_CHAN_ADDR_MAX + 300];
    size_t len = 0;
    int next = (c->rank + 1) % c->size;
    snprintf(key, sizeof key, "vkt/chan/%d", c->rank);
    VKT_CHECK(vkt__store_set(c->store, key, "gloo=1\n", 7));
    snprintf(key, sizeof key, "vkt/chan/%d", next);
    vkt_status st = vkt__store_get(c->store, key, next_pub, sizeof next_pub - 1, &len);
    if (st != VKT_OK)
        return vkt__error_context(st, "waiting for rank %d to publish its address", next);
    VKT_FAIL_IF(len < 7 || memcmp(next_pub, "gloo=1\n", 7) != 0, VKT_ERR_INVALID_USAGE,
                "rank %d does not use backend gloo but this rank does; use the same backend "
                "on every rank", next);
    VKT_CHECK(vkt__gloo_create(c->store, c->rank, c->size, listen_host, c->timeout_s,
                               &c->gloo));
    c->link_name = "gloo";
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
            VKT_CHECK(setup_gloo(c, host));
        else
            VKT_CHECK(setup_ring(c, host));
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
