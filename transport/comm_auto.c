/* Backend auto's verbs trial, run once the ring's links are made (comm_link.c).
 *
 * Auto uses verbs between hosts when both ranks have an ACTIVE port, but a
 * port may sit on another fabric than its peer's (or need another GID), and
 * then RDMA fails where tcp works. So under auto every verbs link carries one
 * small probe frame before the ring is used; each rank then publishes its
 * verdict (vkt/auto/<rank>), every rank that can do verbs reads all of them,
 * and if any failed they all close their verbs links and listener and remake
 * those links over tcp: the whole communicator agrees. With backend verbs
 * set explicitly nothing is probed and a failure is an error, as before. */
#include <stdio.h>
#include <string.h>

#include "comm_int.h"

#define PROBE_TIMEOUT_S 10.0

static int is_verbs(const vkt_chan *ch) { return ch && ch->ops == &vkt__verbs_channel; }

void vkt__comm_trial_fail(vkt__verbs_trial *t, const char *what)
{
    if (!t->why[0]) snprintf(t->why, sizeof t->why, "%s", what);
    vkt_clear_error();
}

#define ASK_EVERY_S 0.1

/* 1 when rank q has published a verbs failure (its verdict is neither "ok"
 * nor "none"; none at all yet: 0); why receives it. After a store error it
 * asks no more: a tcp store has closed its connection by then, so every
 * later look would fail the same way, and the vote reports the error. */
static int heard_failure(vkt_comm *c, vkt__verbs_trial *t, int q, char *why, size_t cap)
{
    char key[64];
    size_t len = 0;
    int found = 0;
    if (t->store_broken) return 0;
    snprintf(key, sizeof key, "vkt/auto/%d", q);
    if (c->store->ops->try_get(c->store, key, why, cap - 1, &len, &found) != VKT_OK) {
        vkt_clear_error();
        t->store_broken = 1;
        return 0;
    }
    why[found ? len : 0] = '\0';
    return found && strcmp(why, "ok") != 0 && strcmp(why, "none") != 0;
}

void vkt__comm_trial_exchange(vkt_comm *c, vkt__verbs_trial *t, int wait_to, int wait_from)
{
    char key[64], theirs[sizeof t->why], why[sizeof t->why + 100];
    if (!t->soft) return;
    if (t->why[0] && !t->told) {
        snprintf(key, sizeof key, "vkt/auto/%d", c->rank);
        if (vkt__store_set(c->store, key, t->why, strlen(t->why)) != VKT_OK)
            vkt_clear_error(); /* the vote publishes it again, and reports */
        t->told = 1;
    }
    if ((!wait_to && !wait_from) || vkt__now() < t->next_ask) return;
    t->next_ask = vkt__now() + ASK_EVERY_S;
    int next = (c->rank + 1) % c->size, prev = (c->rank + c->size - 1) % c->size;
    for (int side = 0; side < 2; side++) {
        int q = side ? prev : next;
        if (!(side ? wait_from : wait_to) || !heard_failure(c, t, q, theirs, sizeof theirs))
            continue;
        /* Its link will be remade over tcp: waiting on for it is pointless. */
        snprintf(why, sizeof why, "rank %d's verbs failed before its link %s this rank was "
                 "made: %s", q, side ? "to" : "from", theirs);
        vkt__comm_trial_fail(t, why);
        *(side ? &t->from_failed : &t->to_failed) = 1;
    }
}

/* The probe's deadline ran out on one side: say which, naming the device. */
static void probe_late(vkt__verbs_trial *t, const vkt_comm *c, const char *dev, int to,
                       double s)
{
    char why[200];
    int peer = (c->rank + (to ? 1 : c->size - 1)) % c->size;
    snprintf(why, sizeof why, "verbs link %s rank %d on %s: the probe frame was not %s within "
             "%.0f s", to ? "to" : "from", peer, dev, to ? "acknowledged" : "received", s);
    vkt__comm_trial_fail(t, why);
    *(to ? &t->to_failed : &t->from_failed) = 1;
}

/* One frame each way over this rank's verbs links (to next: sent and
 * acknowledged; from prev: arrived), within min(timeout, PROBE_TIMEOUT_S). */
static void probe_verbs(vkt_comm *c, const char *dev, vkt__verbs_trial *t)
{
    vkt_chan *to = is_verbs(c->to_next) && !t->to_failed ? c->to_next : NULL;
    vkt_chan *from = is_verbs(c->from_prev) && !t->from_failed ? c->from_prev : NULL;
    uint64_t out = 0x70726f6265ull, in = 0; /* "probe" */
    vkt_chan_req sr, rr;
    int sdone = !to, rdone = !from, d = 0;
    double limit = c->timeout_s < PROBE_TIMEOUT_S ? c->timeout_s : PROBE_TIMEOUT_S;
    double deadline = vkt__now() + limit;
    if (to && to->ops->isend(to, &sr, &out, sizeof out) != VKT_OK) {
        vkt__comm_trial_fail(t, vkt_last_error());
        sdone = t->to_failed = 1;
    }
    if (from && from->ops->irecv(from, &rr, &in, sizeof in) != VKT_OK) {
        vkt__comm_trial_fail(t, vkt_last_error());
        rdone = t->from_failed = 1;
    }
    while (!sdone || !rdone) {
        if (!sdone && to->ops->test(to, &sr, &d) != VKT_OK) {
            vkt__comm_trial_fail(t, vkt_last_error());
            sdone = t->to_failed = 1;
        } else if (!sdone) {
            sdone = d && vkt__verbs_sent(to);
        }
        if (!rdone && from->ops->test(from, &rr, &d) != VKT_OK) {
            vkt__comm_trial_fail(t, vkt_last_error());
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
static vkt_status vote_verbs(vkt_comm *c, int can_verbs, const vkt__verbs_trial *t,
                             int *fallback, int *who, char *why, size_t cap)
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
vkt_status vkt__comm_settle_auto(vkt_comm *c, const vkt_chan_config *cfg, vkt__listeners *ls,
                                 const char *my_pub, char *next_pub, vkt__verbs_trial *t)
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
    vkt__verbs_trial hard = {0};
    vkt_status st = vkt__comm_connect_ring(c, cfg, ls, next_pub, redo_to, redo_from, &hard);
    if (st != VKT_OK)
        return vkt__error_context(st, "backend auto: remaking the verbs links over tcp after "
                                  "rank %d's verbs failed (%s)", who, why);
    return VKT_OK;
}
