/* Direct links between rank pairs, and what runs over them: send/recv and
 * the latency-oriented all-reduce (recursive doubling).
 *
 * The ring links are made at create; a direct link to any other rank is made
 * the first time an operation needs it and kept until destroy, so a job that
 * never uses send/recv or small all-reduces opens nothing more. A sender
 * connects to the receiver's listener (kept open after the ring formed; its
 * address is still in the store), exactly as the ring does, so the link kind
 * (shm on one host, else tcp) and the authentication are the ring's. A
 * receiver accepts until the link from its peer arrives, keeping links from
 * other ranks that arrive meanwhile. Neither side waits for the other to
 * finish setting up: a connect completes in the kernel's backlog, and data
 * then queues in the socket or shm ring until the receiver reads it.
 *
 * Under backend auto the ring's verbs links were probed and voted on
 * (comm_auto.c): when any rank's verbs failed, every rank closed its verbs
 * listener, so choose_kind gives tcp for direct links too. When verbs
 * passed, a direct verbs link is not probed; one whose connect fails is made
 * over tcp for that pair instead: the receiver takes the link from whichever
 * listener it arrives on, so no agreement is needed beyond the sender's
 * choice (a verbs link that fails on the receiver's side of its setup, or
 * later, is an error that names the device and backend tcp).
 *
 * A direct link carries frames in order, like every channel: the k-th send
 * from rank a to rank b matches the k-th recv of rank b from rank a, and
 * recursive doubling uses the same links (ranks issue collectives in the
 * same order, so its frames never interleave with a matched send/recv). */
#include <stdio.h>
#include <string.h>

#include "comm_int.h"

static vkt_status tables(vkt_comm *c)
{
    if (c->p2p_to) return VKT_OK;
    c->p2p_to = vkt_calloc((size_t)c->size, sizeof *c->p2p_to);
    c->p2p_from = vkt_calloc((size_t)c->size, sizeof *c->p2p_from);
    if (c->p2p_to && c->p2p_from) return VKT_OK;
    vkt_free(c->p2p_to); /* both or neither, so close never sees half a pair */
    vkt_free(c->p2p_from);
    c->p2p_to = c->p2p_from = NULL;
    return VKT_ERROR(VKT_ERR_NOMEM, "out of memory for the table of direct links");
}

static vkt_status gone(vkt_comm *c, int peer, int sending)
{
    /* Only a failure of this peer's own verbs link explains its absence. */
    if (!sending && c->p2p_verbs_why[0] && c->p2p_verbs_peer == peer)
        return VKT_ERROR(VKT_ERR_TIMEOUT, "rank %d: no direct link from rank %d within %.0f s; "
                         "a direct verbs link on %s failed meanwhile (%s): if verbs cannot "
                         "reach between these ranks, set backend = tcp", c->rank, peer,
                         c->timeout_s, c->verbs_dev, c->p2p_verbs_why);
    return VKT_ERROR(VKT_ERR_TIMEOUT, "rank %d: no direct link %s rank %d within %.0f s (it "
                     "has not reached the matching %s, is stuck, or cannot reach this host); "
                     "raise comm_timeout_s or check rank %d's log", c->rank,
                     sending ? "to" : "from", peer, c->timeout_s, sending ? "recv" : "send",
                     peer);
}

/* Backend auto: the connect of a direct verbs link to peer failed (the last
 * error says why): warn, and point *ops / *addr at peer's tcp listener
 * (pub: its published text of len bytes, cut into lines by choose_kind). */
static vkt_status verbs_to_tcp(vkt_comm *c, int peer, const char *pub, size_t len,
                               const vkt_channel_ops **ops, const char **addr)
{
    const char *tcp = NULL;
    for (const char *p = pub; p < pub + len; p += strlen(p) + 1)
        if (strncmp(p, "tcp=", 4) == 0) tcp = p + 4;
    VKT_FAIL_IF(!tcp, VKT_ERR_REMOTE, "rank %d: direct verbs link to rank %d on %s: %s; it "
                "offers no tcp address to fall back to: set backend = tcp", c->rank, peer,
                c->verbs_dev, vkt_last_error());
    fprintf(stderr, "vktrain: rank %d: warning: backend auto: direct verbs link to rank %d on "
            "%s failed: %s; using tcp for this pair (backend tcp skips the try)\n", c->rank,
            peer, c->verbs_dev, vkt_last_error());
    vkt_clear_error();
    *ops = &vkt__tcp_channel;
    *addr = tcp;
    return VKT_OK;
}

static vkt_status connect_to(vkt_comm *c, int peer, vkt_chan **out)
{
    char key[48], pub[2 * VKT_CHAN_ADDR_MAX + 300];
    size_t len = 0;
    snprintf(key, sizeof key, "vkt/chan/%d", peer);
    vkt_status st = vkt__store_get(c->store, key, pub, sizeof pub - 1, &len);
    if (st != VKT_OK) return vkt__error_context(st, "reading rank %d's address", peer);
    pub[len] = '\0';
    const vkt_channel_ops *ops = NULL;
    const char *addr = NULL;
    VKT_CHECK(vkt__choose_kind(c, c->host_id, pub, peer, &ops, &addr));
    vkt_chan_config cfg = {c->rank, c->checksum, &c->auth};
    vkt_chan_connecting *cs = NULL;
    double deadline = vkt__now() + c->timeout_s;
    int backoff = 1;
    for (;;) {
        st = ops->connect(&cfg, addr, peer, &cs, out);
        if (st != VKT_OK && ops == &vkt__verbs_channel && c->backend == VKT_COMM_BACKEND_AUTO) {
            ops->abort_connect(cs);
            cs = NULL;
            st = verbs_to_tcp(c, peer, pub, len, &ops, &addr);
            if (st == VKT_OK) continue;
        }
        if (st != VKT_OK || *out) break;
        if (atomic_load(&c->aborted)) {
            st = VKT_ERROR(VKT_ERR_INVALID_USAGE, "aborted by vkt_comm_abort");
            break;
        }
        if (vkt__now() >= deadline) {
            st = gone(c, peer, 1);
            break;
        }
        vkt__sleep_ms(backoff); /* once per pair: a short sleep beats spinning */
        backoff = backoff * 2 > 20 ? 20 : backoff * 2;
    }
    ops->abort_connect(cs);
    return st;
}

/* Accept on both listeners until the link from peer is here. */
static vkt_status accept_from(vkt_comm *c, int peer)
{
    vkt_chan_listener *l[3] = {c->lis_tcp, c->lis_shm, c->lis_verbs};
    const vkt_channel_ops *k[3] = {&vkt__tcp_channel, &vkt__shm_channel, &vkt__verbs_channel};
    double deadline = vkt__now() + c->timeout_s;
    int backoff = 1;
    while (!c->p2p_from[peer]) {
        int got = 0;
        for (int i = 0; i < 3; i++) {
            vkt_chan *ch = NULL;
            int q = -1;
            if (!l[i]) continue;
            vkt_status st = k[i]->accept(l[i], &ch, &q);
            if (st != VKT_OK && k[i] == &vkt__verbs_channel &&
                c->backend == VKT_COMM_BACKEND_AUTO) {
                /* Its sender may come back over tcp (verbs_to_tcp). */
                fprintf(stderr, "vktrain: rank %d: warning: backend auto: a direct verbs link "
                        "on %s failed: %s; waiting for it over tcp\n", c->rank, c->verbs_dev,
                        vkt_last_error());
                snprintf(c->p2p_verbs_why, sizeof c->p2p_verbs_why, "%s", vkt_last_error());
                c->p2p_verbs_peer = q; /* -1 when it failed before naming its rank */
                vkt_clear_error();
                continue;
            }
            VKT_CHECK(st);
            if (!ch) continue;
            got = 1;
            if (q < 0 || q >= c->size || q == c->rank || c->p2p_from[q]) {
                fprintf(stderr, "vktrain: rank %d: unexpected direct link from rank %d; "
                        "dropped\n", c->rank, q);
                ch->ops->close(ch);
                continue;
            }
            c->p2p_from[q] = ch;
            if (c->p2p_verbs_why[0] && c->p2p_verbs_peer == q)
                c->p2p_verbs_why[0] = '\0'; /* it came after all (over tcp) */
        }
        if (got) continue;
        VKT_FAIL_IF(atomic_load(&c->aborted), VKT_ERR_INVALID_USAGE,
                    "aborted by vkt_comm_abort");
        if (vkt__now() >= deadline) return gone(c, peer, 0);
        vkt__sleep_ms(backoff);
        backoff = backoff * 2 > 20 ? 20 : backoff * 2;
    }
    return VKT_OK;
}

vkt_status vkt__p2p_link(vkt_comm *c, int peer, int sending, vkt_chan **out)
{
    VKT_CHECK(tables(c));
    VKT_FAIL_IF(!c->lis_tcp && !c->lis_shm && !c->lis_verbs, VKT_ERR_INTERNAL, "no listener for direct links");
    if (sending && !c->p2p_to[peer]) VKT_CHECK(connect_to(c, peer, &c->p2p_to[peer]));
    if (!sending && !c->p2p_from[peer]) VKT_CHECK(accept_from(c, peer));
    *out = sending ? c->p2p_to[peer] : c->p2p_from[peer];
    return VKT_OK;
}

void vkt__p2p_close(vkt_comm *c)
{
    for (int q = 0; c->p2p_to && c->p2p_from && q < c->size; q++) {
        if (c->p2p_to[q]) c->p2p_to[q]->ops->close(c->p2p_to[q]);
        if (c->p2p_from[q]) c->p2p_from[q]->ops->close(c->p2p_from[q]);
        c->p2p_to[q] = c->p2p_from[q] = NULL;
    }
}

/* A step over a direct verbs link failed under backend auto: that link was
 * never probed (only the ring's are), so say how to do without verbs. Only
 * for a remote failure the verbs channel itself reports (its messages say
 * "verbs channel ... (<device> port N)"): an abort, a length mismatch, a
 * corrupt frame or a failure on a tcp or shm link are no verbs trouble, and
 * tcp would not help. x holds this step's links only (each call sets them). */
static vkt_status hint_tcp(const vkt__op_ctx *x, vkt_status st)
{
    const vkt_comm *c = x->c;
    char msg[VKT_COMM_MSG_CAP];
    int verbs = 0;
    if (st != VKT_ERR_REMOTE || c->backend != VKT_COMM_BACKEND_AUTO) return st;
    for (int i = 0; i < x->nto; i++) verbs |= x->to[i]->ops == &vkt__verbs_channel;
    for (int i = 0; i < x->nfrom; i++) verbs |= x->from[i]->ops == &vkt__verbs_channel;
    const char *e = vkt_last_error();
    if (!verbs || !strstr(e, "verbs channel")) return st;
    snprintf(msg, sizeof msg, "%s", vkt_last_error());
    return VKT_ERROR(st, "%s (a direct verbs link on %s, which backend auto does not probe: if "
                     "verbs cannot reach between these ranks, set backend = tcp)", msg,
                     c->verbs_dev);
}

/* ------------------------------------------------------------ send / recv -- */

vkt_status vkt__p2p_run(vkt__op_ctx *x)
{
    vkt_comm *c = x->c;
    vkt_comm_req *r = x->r;
    int sending = r->kind == VKT_OPK_SEND;
    vkt_chan *ch = NULL;
    size_t len = r->count * x->esize;
    VKT_CHECK(vkt__p2p_link(c, r->root, sending, &ch));
    x->nto = x->nfrom = 1;
    x->to[0] = ch;
    x->from[0] = ch;
    /* Frames of chunk_bytes, as in the ring, so that large messages stream
     * through bounded socket and shm buffers. */
    vkt__step d = {r->sendbuf, len, r->recvbuf, len, NULL, 0, !sending, sending};
    return hint_tcp(x, vkt__step_run(x, &d));
}

/* ----------------------------------------------------- recursive doubling -- */

/* Exchange the current partial result with rank peer: send cur, receive the
 * peer's into dst reduced with cur. dst and cur differ, so no frame is
 * overwritten while it is still being sent. */
static vkt_status exchange(vkt__op_ctx *x, int peer, const char *cur, char *dst, size_t len,
                           int do_send, int do_recv)
{
    vkt_comm *c = x->c;
    x->nto = x->nfrom = 0;
    if (do_send) VKT_CHECK(vkt__p2p_link(c, peer, 1, &x->to[x->nto++]));
    if (do_recv) VKT_CHECK(vkt__p2p_link(c, peer, 0, &x->from[x->nfrom++]));
    vkt__step d = {cur, len, dst, len, do_send && do_recv ? cur : NULL, 0, !do_send, !do_recv};
    return hint_tcp(x, vkt__step_run(x, &d));
}

/* With p the largest power of two <= n: ranks p..n-1 first hand their input
 * to rank r-p and later get the result back from it; ranks 0..p-1 run
 * log2(p) rounds, exchanging with rank ^ 2^k in round k. Every pair reduces
 * the same two operands (a op b == b op a for the supported ops), so every
 * rank ends with the same bits. Partial results ping-pong between recvbuf
 * and scratch (never the buffer being sent). */
vkt_status vkt__rd_allreduce(vkt__op_ctx *x)
{
    vkt_comm *c = x->c;
    vkt_comm_req *r = x->r;
    int n = c->size, me = c->rank, p = 1, rounds = 0;
    while (p * 2 <= n) p *= 2, rounds++;
    size_t len = r->count * x->esize;
    VKT_CHECK(vkt__scratch(c, len ? len : 1));
    char *out = r->recvbuf, *buf[2] = {c->scratch, out};
    const char *cur = r->sendbuf;
    int which = 0; /* the next destination: scratch first (cur may be out) */
    c->nsteps = rounds + (n > p ? 2 : 0);
    if (me >= p) { /* an extra rank: hand over, then wait for the result */
        VKT_CHECK(exchange(x, me - p, cur, NULL, len, 1, 0));
        VKT_CHECK(exchange(x, me - p, NULL, out, len, 0, 1));
        return VKT_OK; /* the result arrives already averaged */
    }
    if (me < n - p) { /* absorb the extra rank's input first */
        x->nto = 0;
        x->nfrom = 1;
        VKT_CHECK(vkt__p2p_link(c, me + p, 0, &x->from[0]));
        vkt__step d = {NULL, len, buf[which], len, cur, 0, 1, 0};
        VKT_CHECK(hint_tcp(x, vkt__step_run(x, &d)));
        cur = buf[which];
        which ^= 1;
    }
    for (int k = 0; k < rounds; k++) {
        VKT_CHECK(exchange(x, me ^ (1 << k), cur, buf[which], len, 1, 1));
        cur = buf[which];
        which ^= 1;
    }
    if (cur != out && len) memcpy(out, cur, len);
    if (r->op == VKT_REDOP_AVG) vkt__scale_avg(out, r->count, r->dtype, n);
    if (me < n - p) VKT_CHECK(exchange(x, me + p, out, NULL, len, 1, 0));
    return VKT_OK;
}
