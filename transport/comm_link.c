/* Ring setup: every rank opens one listener per channel kind it can offer,
 * publishes their addresses and the settings ranks must agree on in the store
 * (vkt/chan/<rank>), reads the next rank's, then connects to the next rank
 * while accepting the previous one. Also the channel-kind choice that direct
 * links (p2p.c) reuse, and backend gloo's rendezvous check. Backend auto's
 * verbs probe and vote, which may remake links made here, is comm_auto.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_int.h"

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

/* One accept attempt on each listener; keeps channels from prev only. The
 * first one tells the link's kind: shm has one, tcp tcp_sockets sockets. */
static vkt_status accept_prev(vkt_comm *c, const vkt__listeners *ls, ring_links *rl,
                              vkt__verbs_trial *t)
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
            vkt__comm_trial_fail(t, vkt_last_error());
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
vkt_status vkt__comm_connect_ring(vkt_comm *c, const vkt_chan_config *cfg,
                                  const vkt__listeners *ls, char *next_pub, int do_to,
                                  int do_from, vkt__verbs_trial *t)
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
                vkt__comm_trial_fail(t, vkt_last_error());
                t->to_failed = 1;
                st = VKT_OK;
                break;
            }
            if (st != VKT_OK) goto out;
            if (!rl.to[rl.nto]) break;
            rl.nto++;
        }
        if (do_from && !t->from_failed) VKT_CHECK_GOTO(st, accept_prev(c, ls, &rl, t), out);
        vkt__comm_trial_exchange(c, t, rl.nto < rl.want_to && !t->to_failed,
                                 do_from && !t->from_failed &&
                                     !(rl.want_from && rl.nfrom == rl.want_from));
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
                                 vkt__listeners *ls, char *pub, size_t cap)
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

/* Listen, publish, read the next rank's addresses, check that it agrees on the
 * settings, and make both ring links (then, under auto, settle verbs). */
vkt_status vkt__comm_setup_ring(vkt_comm *c, const char *listen_host)
{
    vkt_chan_config cfg = {c->rank, c->checksum, &c->auth};
    char pub[2 * VKT_CHAN_ADDR_MAX + 300], next_pub[sizeof pub], next_copy[sizeof pub], key[64];
    size_t len = 0;
    int next = (c->rank + 1) % c->size;
    vkt__listeners ls = {NULL, NULL, NULL, ""};
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
    vkt__verbs_trial t = {.soft = c->backend == VKT_COMM_BACKEND_AUTO && ls.verbs};
    st = vkt__comm_connect_ring(c, &cfg, &ls, next_pub, 1, 1, &t);
    if (st == VKT_OK && c->backend == VKT_COMM_BACKEND_AUTO)
        st = vkt__comm_settle_auto(c, &cfg, &ls, pub, next_copy, &t);
    if (st == VKT_OK) c->link_name = c->to_next->ops->name; /* fixed from now on */
out:
    /* The listeners stay open for direct links (send/recv, recursive
     * doubling), which are made on first use; destroy closes them. */
    c->lis_tcp = ls.tcp;
    c->lis_shm = ls.shm;
    c->lis_verbs = ls.verbs;
    snprintf(c->host_id, sizeof c->host_id, "%s", ls.host_id);
    const char *v = ls.verbs ? strstr(pub, "verbs=") : NULL;
    if (v) snprintf(c->verbs_dev, sizeof c->verbs_dev, "%.*s", (int)strcspn(v + 6, "|\n"), v + 6);
    return st;
}

/* Backend gloo: check that the next rank uses Gloo too (a mix would wait out
 * the deadline in two different rendezvous), then let Gloo connect its mesh
 * through our store. */
vkt_status vkt__comm_setup_gloo(vkt_comm *c, const char *listen_host)
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
