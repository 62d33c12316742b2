/* The replica check (vktrain.check_replicas_every).
 *
 * At ZeRO stages 0-2 every rank holds the whole compute copy of the
 * parameters, and the replicas must stay bit-identical: each rank runs its
 * forward on its own. They drift apart when ranks that apply the full
 * update themselves (stage 0) round differently (drivers, devices the
 * engine did not tell apart), or through a fault. Every N updates each rank
 * hashes each parameter tensor of its copy (XXH3, 64 bits) and the ranks
 * all-gather the hashes (8 bytes per tensor per rank); a mismatch stops the
 * job on every rank with the same error.
 *
 * Two separable pieces: this rank's hash list (vkt__engine_param_hashes,
 * which reads a flat buffer) and its comparison across ranks
 * (vkt__engine_compare_hashes, collective). ZeRO-3, whose ranks hold only
 * shards, hashes the gathered copy instead (gathered_hashes). */
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "train/engine_int.h"

/* Bytes staged per download when the host cannot map the buffer. */
#define STAGE_BYTES (16ull << 20)
/* Ranks named in the message before "and N more". */
#define NAMED_RANKS 8

/* Unmappable memory: download the flat buffer in pieces of at most piece
 * bytes and stream each tensor into the hash (the tensors lie in
 * increasing offsets, so one pass does). XXH3's streaming digest equals
 * the one-shot hash, so a rank that maps and one that stages agree. */
static vkt_status hash_staged(vkt_model *m, vkt_buffer *buf, uint64_t es, uint64_t piece,
                              uint64_t *out)
{
    uint64_t total = m->padded * es, cap = total < piece ? total : piece;
    char *stage = vkt_malloc(cap);
    XXH3_state_t *s = XXH3_createState();
    vkt_status st = stage && s ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory");
    uint64_t lo = 0, hi = 0; /* the bytes of buf now in stage */
    for (uint32_t i = 0; i < m->nparams && st == VKT_OK; i++) {
        const nn_tensor *p = &m->g.t[m->param_ids[i]];
        uint64_t at = p->offset * es, end = at + p->numel * es;
        XXH3_64bits_reset(s);
        while (at < end && st == VKT_OK) {
            if (at < lo || at >= hi) {
                lo = at;
                hi = lo + cap < total ? lo + cap : total;
                st = vkt_buffer_download(buf, lo, stage, hi - lo);
                if (st != VKT_OK) break;
            }
            uint64_t n = (end < hi ? end : hi) - at;
            XXH3_64bits_update(s, stage + (at - lo), (size_t)n);
            at += n;
        }
        out[i] = XXH3_64bits_digest(s);
    }
    XXH3_freeState(s);
    vkt_free(stage);
    return st;
}

vkt_status vkt__engine_param_hashes(vkt_engine *e, vkt_buffer *buf, vkt_dtype t,
                                    uint64_t stage_bytes, uint64_t *out)
{
    vkt_model *m = e->model;
    uint64_t es = vkt_dtype_size(t);
    const char *base = stage_bytes ? NULL : vkt_buffer_host_ptr(buf);
    if (!base) return hash_staged(m, buf, es, stage_bytes ? stage_bytes : STAGE_BYTES, out);
    for (uint32_t i = 0; i < m->nparams; i++) {
        const nn_tensor *p = &m->g.t[m->param_ids[i]];
        out[i] = XXH3_64bits(base + p->offset * es, (size_t)(p->numel * es));
    }
    return VKT_OK;
}

/* The ranks that differ from rank 0, as "rank 3" or "ranks 1, 2 and 5"
 * (up to NAMED_RANKS, then "and N more"), and the first parameter in which
 * any of them differs. The same text on every rank: all hold all hashes. */
static int differing(const vkt_engine *e, const uint64_t *all, uint32_t n, char *txt,
                     size_t cap, uint32_t *first)
{
    int bad = 0, named = 0;
    char list[NAMED_RANKS * 12] = "";
    size_t len = 0;
    *first = n;
    for (int r = 1; r < e->world; r++) {
        uint32_t i = 0;
        while (i < n && all[(size_t)r * n + i] == all[i]) i++;
        if (i == n) continue;
        bad++;
        if (i < *first) *first = i;
        if (named < NAMED_RANKS) {
            named++;
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d",
                                    named > 1 ? ", " : "", r);
        }
    }
    if (bad == 0) return 0;
    if (bad == 1) snprintf(txt, cap, "rank %s differs", list);
    else if (bad > named) snprintf(txt, cap, "ranks %s and %d more differ", list, bad - named);
    else { /* "1, 2, 5" -> "1, 2 and 5" */
        char *comma = strrchr(list, ',');
        if (comma) *comma = '\0';
        snprintf(txt, cap, "ranks %s and %s differ", list, comma ? comma + 2 : "");
    }
    return bad;
}

vkt_status vkt__engine_compare_hashes(vkt_engine *e, const uint64_t *mine, uint32_t n)
{
    if (!e->comm || e->world == 1 || n == 0) return VKT_OK;
    vkt_model *m = e->model;
    VKT_ASSERT(n == m->nparams);
    uint64_t *all = vkt_malloc((size_t)e->world * n * sizeof *all);
    VKT_FAIL_IF(!all, VKT_ERR_NOMEM, "engine: out of host memory");
    /* I64 moves the bits unchanged: an all-gather does no arithmetic */
    vkt_status st = vkt_comm_allgather(e->comm, mine, all, n, VKT_DTYPE_I64);
    if (st != VKT_OK) {
        vkt_free(all);
        return vkt__error_context(st, "engine: replica check");
    }
    char who[160];
    uint32_t first;
    int bad = differing(e, all, n, who, sizeof who, &first);
    vkt_free(all);
    VKT_FAIL_IF(bad, VKT_ERR_NUMERIC,
                "engine: replica check after update %llu: %s from rank 0 in the parameters, "
                "first in '%s' (parameter %u of %u); the ranks no longer train the same "
                "model. Ranks whose devices or drivers round differently need the sharded "
                "update: set zero_optimization.stage to 1 or 2 (its all-gather keeps the "
                "replicas identical). With identical devices this is a bug: report it with "
                "the config and each rank's `vktrain info`",
                (unsigned long long)e->global_steps, who, m->param_names[first], first + 1, n);
    return VKT_OK;
}

/* ZeRO-3: no rank holds a replica; each all-gathers the compute copy's
 * shards group by group (what the segments' gathers assemble, at most one
 * group on the host at a time) and hashes that, so the comparison catches
 * ranks that assemble different weights (a transport or memory fault), not
 * rounding drift, which the sharded update rules out. */
static vkt_status gathered_hashes(vkt_engine *e, uint64_t *out)
{
    vkt_model *m = e->model;
    size_t es = vkt_dtype_size(m->dtype);
    uint64_t longest = 0;
    for (uint32_t b = 0; b < m->nbuckets; b++) {
        uint64_t len = m->bucket_ends[b] - (b ? m->bucket_ends[b - 1] : 0);
        if (len > longest) longest = len;
    }
    char *group = vkt_malloc(longest * es + 1);
    vkt_status st = group ? VKT_OK
                          : VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory for the "
                                                     "replica check");
    for (uint32_t b = 0; b < m->nbuckets && st == VKT_OK; b++) {
        uint64_t lo = b ? m->bucket_ends[b - 1] : 0, hi = m->bucket_ends[b];
        vkt_comm_req *req = NULL;
        st = vkt__engine_gather_group(e, b, group, &req);
        if (st == VKT_OK) st = vkt_comm_wait(req);
        for (uint32_t i = 0; i < m->nparams && st == VKT_OK; i++) {
            const nn_tensor *p = &m->g.t[m->param_ids[i]];
            if (p->offset >= lo && p->offset < hi) /* buckets hold whole parameters */
                out[i] = XXH3_64bits(group + (p->offset - lo) * es, (size_t)(p->numel * es));
        }
    }
    vkt_free(group);
    return st;
}

vkt_status vkt__engine_replica_check(vkt_engine *e)
{
    if (!e->comm || e->world == 1) return VKT_OK;
    vkt_model *m = e->model;
    uint64_t *h = vkt_malloc((size_t)m->nparams * sizeof *h + 8);
    VKT_FAIL_IF(!h, VKT_ERR_NOMEM, "engine: out of host memory");
    /* Stages 0-2: the compute copy is whole on every rank. */
    vkt_status st = e->gather ? gathered_hashes(e, h)
                              : vkt__engine_param_hashes(e, m->copy, m->dtype, 0, h);
    if (st == VKT_OK) st = vkt__engine_compare_hashes(e, h, m->nparams);
    vkt_free(h);
    return st;
}

vkt_status vkt__engine_check_replicas(vkt_engine *e)
{
    uint64_t every = e->cfg->check_replicas_every;
    if (!every || e->global_steps % every || !e->comm || e->world == 1) return VKT_OK;
    return vkt__engine_replica_check(e);
}
