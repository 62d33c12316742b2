/* ZeRO-3 on the model side: the compute copy shrinks to this rank's shard,
 * and the kernels read parameters from gather slots that the engine fills.
 *
 * The groups are the gradient buckets (whole parameters each). A pass (the
 * forward, or the backward) is cut into segments so that a segment starts
 * where a node reads a group its segment does not read yet; a group read by
 * consecutive segments stays in its slot for all of them (one nn_gather).
 * The engine gathers the groups of segment s + 1 while segment s runs, and
 * may overwrite a slot only once the segments reading it are done: so a
 * slot is given again only to a residence that starts at least two
 * segments after the last one ended (the engine has then waited for that
 * segment). Forward and backward are planned apart; the slots are shared
 * (the backward starts after the whole forward is done). */
#include <string.h>

#include "nn/nn_int.h"

uint32_t vkt__nn_node_groups(const vkt_model *m, const nn_node *n, uint32_t *out)
{
    uint32_t k = 0;
    for (int i = 0; i < VKT_NN_MAX_IO; i++) {
        uint32_t in = n->in[i];
        if (in == VKT_NN_NONE || m->g.t[in].kind != T_PARAM) continue;
        uint32_t b = vkt__nn_bucket_of(m, m->g.t[in].offset), j = 0;
        while (j < k && out[j] != b) j++;
        if (j == k) out[k++] = b;
    }
    return k;
}

/* Walk a pass in execution order (forward: node 0 first; backward: node
 * nn-1 first) and mark each node that must start a new segment because it
 * reads a group its segment does not read yet. mark: one stamp per bucket
 * (scratch). */
static void pass_cuts(const vkt_model *m, bool backward, bool *start, uint32_t *mark)
{
    uint32_t nn = m->g.nn, seg = 1, groups[VKT_NN_MAX_IO];
    bool reads = false; /* the current segment reads some group */
    memset(mark, 0, m->nbuckets * sizeof *mark);
    for (uint32_t k = 0; k < nn; k++) {
        uint32_t i = backward ? nn - 1 - k : k;
        uint32_t ng = vkt__nn_node_groups(m, &m->g.n[i], groups);
        bool fresh = false;
        for (uint32_t j = 0; j < ng; j++) fresh = fresh || mark[groups[j]] != seg;
        start[i] = fresh && reads;
        if (start[i]) seg++;
        for (uint32_t j = 0; j < ng; j++) mark[groups[j]] = seg;
        reads = reads || ng > 0;
    }
}

vkt_status vkt__nn_gather_cuts(const vkt_model *m, bool *seg_end)
{
    if (!m->gather_mode || m->g.nn == 0) return VKT_OK;
    bool *start = vkt_calloc(m->g.nn, sizeof *start);
    uint32_t *mark = vkt_calloc(m->nbuckets ? m->nbuckets : 1, sizeof *mark);
    if (start && mark) {
        pass_cuts(m, true, start, mark);
        /* starting before node i (backward order) = ending after node i+1 */
        for (uint32_t i = 0; i + 1 < m->g.nn; i++)
            if (start[i]) seg_end[i + 1] = true;
    }
    vkt_free(start);
    vkt_free(mark);
    return start && mark ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "model: out of host memory");
}

vkt_status vkt__nn_forward_cuts(const vkt_model *m, bool *start)
{
    uint32_t *mark = vkt_calloc(m->nbuckets ? m->nbuckets : 1, sizeof *mark);
    VKT_FAIL_IF(!mark, VKT_ERR_NOMEM, "model: out of host memory");
    pass_cuts(m, false, start, mark);
    vkt_free(mark);
    return VKT_OK;
}

/* The residences of one pass, given each node's segment (seg_of), in the
 * order they start; *n gets their count. out holds 4 per node. */
static uint32_t residences(const vkt_model *m, bool backward, const uint32_t *seg_of,
                           uint32_t *open, nn_gather *out)
{
    uint32_t n = 0, nn = m->g.nn, groups[VKT_NN_MAX_IO];
    for (uint32_t b = 0; b < m->nbuckets; b++) open[b] = VKT_NN_NONE;
    for (uint32_t k = 0; k < nn; k++) {
        uint32_t i = backward ? nn - 1 - k : k, s = seg_of[i];
        uint32_t ng = vkt__nn_node_groups(m, &m->g.n[i], groups);
        for (uint32_t j = 0; j < ng; j++) {
            uint32_t b = groups[j], r = open[b];
            if (r != VKT_NN_NONE && out[r].last + 1 >= s) {
                out[r].last = s;
                continue;
            }
            open[b] = n;
            out[n++] = (nn_gather){b, s, s, 0};
        }
    }
    return n;
}

/* Give each residence a slot (a slot is reused two segments after its last
 * reader); grow len[] to the longest group each slot holds. */
static uint32_t colour(const vkt_model *m, nn_gather *g, uint32_t n, uint32_t *occupant,
                       uint64_t *len)
{
    uint32_t used = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = 0;
        while (k < used && g[occupant[k]].last + 2 > g[i].first) k++;
        if (k == used) used++;
        occupant[k] = i;
        g[i].slot = k;
        uint32_t b = g[i].group;
        uint64_t blen = m->bucket_ends[b] - (b ? m->bucket_ends[b - 1] : 0);
        if (blen > len[k]) len[k] = blen; /* len is zeroed by the caller */
    }
    return used;
}

/* seg_of[i] for a pass whose segment starts (forward) or ends (backward)
 * are given; returns the number of segments. */
static uint32_t number_segments(uint32_t nn, bool backward, const bool *cut, uint32_t *seg_of)
{
    uint32_t seg = 0;
    for (uint32_t k = 0; k < nn; k++) {
        uint32_t i = backward ? nn - 1 - k : k;
        if (!backward && k > 0 && cut[i]) seg++;
        seg_of[i] = seg;
        if (backward && cut[i]) seg++;
    }
    return backward ? seg : seg + 1;
}

vkt_status vkt__nn_plan_gathers(vkt_model *m)
{
    uint32_t nn = m->g.nn ? m->g.nn : 1, nb = m->nbuckets ? m->nbuckets : 1;
    bool *cut = vkt_calloc(nn, sizeof *cut);
    uint32_t *seg_of = vkt_calloc(nn, sizeof *seg_of), *scratch = vkt_calloc(nb, sizeof *scratch);
    uint32_t *occupant = vkt_calloc(4 * (size_t)nn, sizeof *occupant);
    uint64_t *len = vkt_calloc(4 * (size_t)nn, sizeof *len);
    nn_gather *f = vkt_calloc(4 * (size_t)nn, sizeof *f), *b = vkt_calloc(4 * (size_t)nn, sizeof *b);
    uint32_t *cur = vkt_malloc(nb * sizeof *cur);
    vkt_status st = cut && seg_of && scratch && occupant && len && f && b && cur
                        ? VKT_OK
                        : VKT_ERROR(VKT_ERR_NOMEM, "model: out of host memory");
    uint32_t nf = 0, nbk = 0, nslots = 0;
    if (st == VKT_OK) {
        pass_cuts(m, false, cut, scratch);
        m->nfseg = number_segments(m->g.nn, false, cut, seg_of);
        nf = residences(m, false, seg_of, scratch, f);
        nslots = colour(m, f, nf, occupant, len);
        st = vkt__nn_plan_segments(m, cut); /* the backward's ends, gather cuts included */
    }
    if (st == VKT_OK) {
        number_segments(m->g.nn, true, cut, seg_of);
        nbk = residences(m, true, seg_of, scratch, b);
        uint32_t used = colour(m, b, nbk, occupant, len);
        if (used > nslots) nslots = used;
        st = vkt__nn_make_slots(m, &m->gslots, &m->cap_gslots, nslots, len, &m->gslot_len);
    }
    vkt_free(cut);
    vkt_free(seg_of);
    vkt_free(scratch);
    vkt_free(occupant);
    vkt_free(len);
    if (st != VKT_OK) {
        vkt_free(f);
        vkt_free(b);
        vkt_free(cur);
        return st;
    }
    vkt_free(m->fgath);
    vkt_free(m->bgath);
    vkt_free(m->cur_gslot);
    m->fgath = f;
    m->nfgath = nf;
    m->bgath = b;
    m->nbgath = nbk;
    m->cur_gslot = cur;
    m->ngslots = nslots;
    return VKT_OK;
}

void vkt__nn_gather_enter(vkt_model *m, const nn_gather *g, uint32_t n, uint32_t seg)
{
    if (seg == 0)
        for (uint32_t b = 0; b < m->nbuckets; b++) m->cur_gslot[b] = VKT_NN_NONE;
    for (uint32_t i = 0; i < n; i++)
        if (g[i].first == seg) m->cur_gslot[g[i].group] = g[i].slot;
}

vkt_status vkt__nn_set_gather_mode(vkt_model *m)
{
    VKT_FAIL_IF(!m->slot_mode, VKT_ERR_INVALID_USAGE,
                "model: partitioned parameters (ZeRO-3) need gradient slots first");
    VKT_FAIL_IF(m->copy_packed, VKT_ERR_INVALID_USAGE,
                "model: the parameters are partitioned already");
    VKT_CHECK(vkt_model_backward_wait(m));
    bool f32 = m->copy == m->master;
    /* The engine sends from the shard: host-visible memory, as the slots. */
    vkt_buffer *c = NULL;
    VKT_CHECK(vkt__nn_pack(m, m->copy, f32 ? 4 : vkt_dtype_size(m->dtype), true, &c));
    if (f32) {
        vkt_buffer_destroy(m->master);
        m->master = c;
        m->master_packed = true;
    } else {
        vkt_buffer_destroy(m->copy);
    }
    m->copy = c;
    m->copy_packed = true;
    m->gather_mode = true;
    /* every recording that binds parameters is made again */
    m->batch = 0;
    m->rec_denominator = 0;
    m->opt_recorded = false;
    return VKT_OK;
}
