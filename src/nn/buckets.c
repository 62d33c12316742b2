/* Gradient buckets and backward segments.
 *
 * The caller (the engine's DDP) splits the flat gradient buffer into
 * buckets. Backward runs the nodes in reverse; a parameter's gradient is
 * final once the last node (in backward order) that writes it has run: the
 * node of smallest forward index among its users (a tied weight such as the
 * GPT's wte has two). A bucket is final when all parameters overlapping it
 * are. Backward is cut into segments right after each node that finalises
 * at least one bucket, because a timeline semaphore can only signal at the
 * end of a submit. */
#include <string.h>

#include "nn/nn_int.h"

vkt_status vkt_model_set_grad_buckets(vkt_model *m, uint32_t n, const uint64_t *ends)
{
    VKT_FAIL_IF(!m, VKT_ERR_INVALID_ARG, "vkt_model_set_grad_buckets: model is NULL");
    VKT_FAIL_IF(n && !ends, VKT_ERR_INVALID_ARG, "vkt_model_set_grad_buckets: ends is NULL");
    for (uint32_t i = 0; i < n; i++)
        VKT_FAIL_IF((i ? ends[i] <= ends[i - 1] : ends[i] == 0) ||
                        (i == n - 1 && ends[i] != m->padded),
                    VKT_ERR_INVALID_ARG,
                    "vkt_model_set_grad_buckets: bucket ends must increase strictly and the "
                    "last must be the flat size %llu (bucket %u ends at %llu)",
                    (unsigned long long)m->padded, i, (unsigned long long)ends[i]);
    uint64_t *copy = NULL;
    if (n) {
        copy = vkt_malloc(n * sizeof *copy);
        VKT_FAIL_IF(!copy, VKT_ERR_NOMEM, "model: out of host memory");
        memcpy(copy, ends, n * sizeof *copy);
    }
    vkt_free(m->bucket_ends);
    m->bucket_ends = copy;
    m->nbuckets = n;
    m->rec_denominator = 0; /* the backward's segments change: record again */
    return VKT_OK;
}

uint64_t vkt_model_flat_size(const vkt_model *m) { return m ? m->padded : 0; }

/* For every node, whether backward must end a segment after it, and for
 * every bucket the index of the segment that finalises it. seg_end has one
 * entry per node; bucket_seg one per bucket (m->bucket_seg). */
vkt_status vkt__nn_plan_segments(vkt_model *m, bool *seg_end)
{
    const nn_graph *g = &m->g;
    memset(seg_end, 0, g->nn * sizeof *seg_end);
    vkt_free(m->bucket_seg);
    m->bucket_seg = NULL;
    m->nseg = 1;
    if (g->nn) seg_end[0] = true; /* the backward's end */
    if (m->nbuckets == 0) return VKT_OK;
    /* final[p]: the forward index of the node that finalises parameter p */
    uint32_t *final = vkt_malloc((g->nt > g->nn ? g->nt : g->nn) * sizeof *final);
    uint32_t *done_at = vkt_malloc(m->nbuckets * sizeof *done_at);
    m->bucket_seg = vkt_malloc(m->nbuckets * sizeof *m->bucket_seg);
    if (!final || !done_at || !m->bucket_seg) {
        vkt_free(final);
        vkt_free(done_at);
        return VKT_ERROR(VKT_ERR_NOMEM, "model: out of host memory");
    }
    for (uint32_t t = 0; t < g->nt; t++) final[t] = VKT_NN_NONE;
    for (uint32_t i = g->nn; i-- > 0;)
        for (int k = 0; k < VKT_NN_MAX_IO; k++) {
            uint32_t in = g->n[i].in[k];
            if (in != VKT_NN_NONE && g->t[in].kind == T_PARAM) final[in] = i;
        }
    /* A bucket is done at the smallest final index of the parameters it
     * overlaps (backward reaches that node last); one holding only padding
     * is done at once, at the end of the first segment. */
    for (uint32_t b = 0; b < m->nbuckets; b++) {
        uint64_t lo = b ? m->bucket_ends[b - 1] : 0, hi = m->bucket_ends[b];
        uint32_t at = VKT_NN_NONE;
        for (uint32_t p = 0; p < m->nparams; p++) {
            const nn_tensor *t = &g->t[m->param_ids[p]];
            if (t->offset < hi && t->offset + t->numel > lo && final[m->param_ids[p]] < at)
                at = final[m->param_ids[p]];
        }
        done_at[b] = at;
        if (at != VKT_NN_NONE) seg_end[at] = true;
    }
    /* Number the segments in backward order (node nn-1 first). */
    uint32_t *seg_of = final; /* reuse: segment index that ends after node i */
    uint32_t seg = 0;
    for (uint32_t i = g->nn; i-- > 0;) {
        seg_of[i] = seg;
        if (seg_end[i]) seg++;
    }
    m->nseg = seg;
    for (uint32_t b = 0; b < m->nbuckets; b++)
        m->bucket_seg[b] = done_at[b] == VKT_NN_NONE ? 0 : seg_of[done_at[b]];
    vkt_free(final);
    vkt_free(done_at);
    return VKT_OK;
}

uint32_t vkt_model_backward_segments(const vkt_model *m) { return m ? m->nseg : 0; }

uint32_t vkt_model_bucket_segment(const vkt_model *m, uint32_t bucket)
{
    if (!m || !m->bucket_seg || bucket >= m->nbuckets) return 0;
    return m->bucket_seg[bucket];
}
