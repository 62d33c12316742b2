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
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

static vkt_status check_whole_params(const vkt_model *m);

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
    VKT_FAIL_IF(m->slot_mode && n == 0, VKT_ERR_INVALID_USAGE,
                "vkt_model_set_grad_buckets: this model's gradients go through slots (ZeRO-2), "
                "which need buckets");
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
    return m->slot_mode ? check_whole_params(m) : VKT_OK;
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
    VKT_CHECK(vkt__nn_gather_cuts(m, seg_end)); /* ZeRO-3: where new groups are read */
    /* final[p]: the forward index of the node that finalises parameter p;
     * first[p]: of the node that writes its gradient first (its last user) */
    uint32_t nmax = g->nt > g->nn ? g->nt : g->nn;
    uint32_t *final = vkt_malloc(nmax * sizeof *final), *first = vkt_malloc(nmax * sizeof *first);
    uint32_t *done_at = vkt_malloc(m->nbuckets * sizeof *done_at);
    uint32_t *start_at = vkt_malloc(m->nbuckets * sizeof *start_at);
    m->bucket_seg = vkt_malloc(m->nbuckets * sizeof *m->bucket_seg);
    vkt_free(m->bucket_first_seg);
    m->bucket_first_seg = vkt_malloc(m->nbuckets * sizeof *m->bucket_first_seg);
    if (!final || !first || !done_at || !start_at || !m->bucket_seg || !m->bucket_first_seg) {
        vkt_free(final);
        vkt_free(first);
        vkt_free(done_at);
        vkt_free(start_at);
        return VKT_ERROR(VKT_ERR_NOMEM, "model: out of host memory");
    }
    for (uint32_t t = 0; t < g->nt; t++) final[t] = first[t] = VKT_NN_NONE;
    for (uint32_t i = g->nn; i-- > 0;)
        for (int k = 0; k < VKT_NN_MAX_IO; k++) {
            uint32_t in = g->n[i].in[k];
            if (in == VKT_NN_NONE || g->t[in].kind != T_PARAM) continue;
            final[in] = i;
            if (first[in] == VKT_NN_NONE) first[in] = i;
        }
    /* A bucket is done at the smallest final index of the parameters it
     * overlaps (backward reaches that node last); one holding only padding
     * is done at once, at the end of the first segment. It is first written
     * at the largest first-write index. */
    for (uint32_t b = 0; b < m->nbuckets; b++) {
        uint64_t lo = b ? m->bucket_ends[b - 1] : 0, hi = m->bucket_ends[b];
        uint32_t at = VKT_NN_NONE, from = VKT_NN_NONE;
        for (uint32_t p = 0; p < m->nparams; p++) {
            const nn_tensor *t = &g->t[m->param_ids[p]];
            if (t->offset >= hi || t->offset + t->numel <= lo) continue;
            if (final[m->param_ids[p]] < at) at = final[m->param_ids[p]];
            uint32_t f = first[m->param_ids[p]];
            if (f != VKT_NN_NONE && (from == VKT_NN_NONE || f > from)) from = f;
        }
        done_at[b] = at;
        start_at[b] = from;
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
    for (uint32_t b = 0; b < m->nbuckets; b++) {
        m->bucket_seg[b] = done_at[b] == VKT_NN_NONE ? 0 : seg_of[done_at[b]];
        m->bucket_first_seg[b] = start_at[b] == VKT_NN_NONE ? 0 : seg_of[start_at[b]];
    }
    vkt_free(final);
    vkt_free(first);
    vkt_free(done_at);
    vkt_free(start_at);
    return VKT_OK;
}

uint32_t vkt__nn_bucket_of(const vkt_model *m, uint64_t at)
{
    uint32_t lo = 0, hi = m->nbuckets; /* the first bucket ending after at */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->bucket_ends[mid] > at) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* Every parameter inside one bucket (its gradient is one view into one
 * slot), and every bucket holding a parameter (no slot for padding). */
static vkt_status check_whole_params(const vkt_model *m)
{
    VKT_FAIL_IF(m->nbuckets == 0, VKT_ERR_INVALID_USAGE,
                "model: gradient slots need gradient buckets (vkt_model_set_grad_buckets)");
    uint32_t *used = vkt_calloc(m->nbuckets, sizeof *used);
    VKT_FAIL_IF(!used, VKT_ERR_NOMEM, "model: out of host memory");
    vkt_status st = VKT_OK;
    for (uint32_t p = 0; p < m->nparams && st == VKT_OK; p++) {
        const nn_tensor *t = &m->g.t[m->param_ids[p]];
        uint32_t b = vkt__nn_bucket_of(m, t->offset);
        if (b >= m->nbuckets || vkt__nn_bucket_of(m, t->offset + t->numel - 1) != b)
            st = VKT_ERROR(VKT_ERR_INVALID_ARG,
                           "model: parameter '%s' crosses a gradient bucket boundary; with "
                           "gradient slots buckets must hold whole parameters", t->name);
        else used[b] = 1;
    }
    for (uint32_t b = 0; b < m->nbuckets && st == VKT_OK; b++)
        if (!used[b])
            st = VKT_ERROR(VKT_ERR_INVALID_ARG,
                           "model: gradient bucket %u holds no parameter; with gradient "
                           "slots every bucket must start at a parameter", b);
    vkt_free(used);
    return st;
}

vkt_status vkt__nn_set_grad_slots(vkt_model *m)
{
    VKT_CHECK(check_whole_params(m));
    VKT_CHECK(vkt_model_backward_wait(m));
    vkt_buffer *g = NULL;
    VKT_CHECK(vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, m->shard_len * vkt_dtype_size(m->dtype),
                                &g));
    vkt_buffer_destroy(m->grads);
    m->grads = g;
    m->grads_packed = true;
    m->slot_mode = true;
    /* everything that binds the gradient buffer is recorded again */
    m->rec_denominator = 0;
    m->opt_recorded = false;
    m->sumsq_recorded = false;
    vkt_stream_destroy(m->zero);
    m->zero = NULL;
    return VKT_OK;
}

vkt_status vkt__nn_set_grad_staging(vkt_model *m)
{
    VKT_FAIL_IF(m->slot_mode || m->nbuckets == 0, VKT_ERR_INVALID_USAGE,
                "model: gradient staging needs buckets and no gradient slots");
    VKT_CHECK(vkt_model_backward_wait(m));
    vkt_buffer *s = NULL;
    VKT_CHECK(vkt__nn_host_visible(m, m->padded * vkt_dtype_size(m->dtype), &s));
    vkt_buffer_destroy(m->grad_stage);
    m->grad_stage = s;
    m->rec_denominator = 0; /* the backward's segments gain the copies */
    return VKT_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

vkt_status vkt__nn_host_visible(vkt_model *m, uint64_t bytes, vkt_buffer **out)
{
    VKT_CHECK(vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, bytes, out));
    if (vkt_buffer_host_ptr(*out)) return VKT_OK;
    vkt_buffer_destroy(*out);
    *out = NULL;
    return vkt_buffer_create(m->dev, VKT_MEMORY_HOST, bytes, out);
}

/* Slot buffers: n, slot k of len[k] elements (kept when large enough),
 * host visible: the engine reduces out of them or gathers into them. */
vkt_status vkt__nn_make_slots(vkt_model *m, vkt_buffer ***bufs, uint32_t *cap, uint32_t n,
                              const uint64_t *len, uint64_t *total)
{
    *total = 0;
    if (n > *cap) {
        vkt_buffer **s = vkt_realloc(*bufs, n * sizeof *s);
        VKT_FAIL_IF(!s, VKT_ERR_NOMEM, "model: out of host memory");
        memset(s + *cap, 0, (n - *cap) * sizeof *s);
        *bufs = s;
        *cap = n;
    }
    vkt_buffer **b = *bufs;
    for (uint32_t k = 0; k < *cap; k++) {
        uint64_t bytes = k < n ? len[k] * vkt_dtype_size(m->dtype) : 0;
        if (k < n) *total += len[k];
        if (b[k] && (k >= n || vkt_buffer_size(b[k]) != bytes)) {
            vkt_buffer_destroy(b[k]);
            b[k] = NULL;
        }
        if (k < n && !b[k]) VKT_CHECK(vkt__nn_host_visible(m, bytes, &b[k]));
    }
    return VKT_OK;
}

vkt_status vkt__nn_assign_slots(vkt_model *m)
{
    uint32_t n = m->nbuckets;
    uint64_t *order = vkt_malloc(n * sizeof *order);
    uint32_t *prev = vkt_malloc(n * sizeof *prev), *pos = vkt_malloc(n * sizeof *pos);
    uint32_t *occupant = vkt_malloc(n * sizeof *occupant);
    uint64_t *len = vkt_malloc(n * sizeof *len);
    vkt_free(m->bucket_slot);
    vkt_free(m->seg_wait);
    m->bucket_slot = vkt_malloc(n * sizeof *m->bucket_slot);
    m->seg_wait = vkt_calloc(m->nseg, sizeof *m->seg_wait);
    vkt_status st = order && prev && pos && occupant && len && m->bucket_slot && m->seg_wait
                        ? VKT_OK
                        : VKT_ERROR(VKT_ERR_NOMEM, "model: out of host memory");
    uint32_t nslots = 0;
    if (st == VKT_OK) {
        /* Interval colouring in order of first use: a slot is free for a
         * bucket once its last occupant was finalised two segments before. */
        for (uint32_t b = 0; b < n; b++) order[b] = (uint64_t)m->bucket_first_seg[b] << 32 | b;
        qsort(order, n, sizeof *order, cmp_u64);
        for (uint32_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)order[i], k = 0;
            while (k < nslots && m->bucket_seg[occupant[k]] + 1 >= m->bucket_first_seg[b]) k++;
            prev[b] = k < nslots ? occupant[k] : VKT_NN_NONE;
            if (k == nslots) len[nslots++] = 64;
            occupant[k] = b;
            m->bucket_slot[b] = k;
            uint64_t blen = m->bucket_ends[b] - (b ? m->bucket_ends[b - 1] : 0);
            if (blen > len[k]) len[k] = blen;
        }
        /* Releases go in the order the engine reduces: by finalising
         * segment, then bucket. */
        for (uint32_t b = 0; b < n; b++) order[b] = (uint64_t)m->bucket_seg[b] << 32 | b;
        qsort(order, n, sizeof *order, cmp_u64);
        for (uint32_t i = 0; i < n; i++) pos[(uint32_t)order[i]] = i;
        for (uint32_t b = 0; b < n; b++) {
            if (prev[b] == VKT_NN_NONE) continue;
            uint32_t s = m->bucket_first_seg[b], need = pos[prev[b]] + 1;
            if (need > m->seg_wait[s]) m->seg_wait[s] = need;
        }
        st = vkt__nn_make_slots(m, &m->slots, &m->cap_slots, nslots, len, &m->slot_len);
        if (st == VKT_OK) m->nslots = nslots;
    }
    vkt_free(order);
    vkt_free(prev);
    vkt_free(pos);
    vkt_free(occupant);
    vkt_free(len);
    return st;
}

uint32_t vkt_model_backward_segments(const vkt_model *m) { return m ? m->nseg : 0; }

uint32_t vkt_model_bucket_segment(const vkt_model *m, uint32_t bucket)
{
    if (!m || !m->bucket_seg || bucket >= m->nbuckets) return 0;
    return m->bucket_seg[bucket];
}
