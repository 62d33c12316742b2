/* Gradient reduction of the engine: buckets over the flat gradient buffer,
 * each reduced as soon as the backward segment that finalises it is done.
 *
 * The calling thread submits every backward segment at once, then waits on
 * the timeline semaphore for each segment in turn and hands its finished
 * buckets to the transport (asynchronous collectives run on the transport's
 * progress thread, which never touches Vulkan), so the reduction of the last
 * layers overlaps the backward of the first ones. On devices whose gradient
 * buffer the host cannot map (discrete GPUs) each segment also copies the
 * buckets it finalises into a host-visible staging buffer, which the host
 * reduces as it would the mapped buffer; the result is uploaded after the
 * last bucket.
 *
 * ZeRO-2 (world > 1) goes through gradient slots instead of a whole-size
 * gradient buffer: every micro-batch's backward writes each bucket into one
 * of the model's slots; when the bucket's segment is done it is
 * reduce-scattered out of the slot (equal parts, vkt__engine_partition),
 * and "releasing" it waits for that, adds this rank's part
 * into the gradient shard on the host (copies it for the first micro-batch
 * after an update) and signals slot_tl, on which the segments that reuse
 * the slot wait. Releases go in posting order; a segment only needs
 * releases of buckets finalised at least two segments earlier, so the
 * engine thread never waits for something it has not started. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "train/engine_int.h"

/* Buckets of whole parameters (each parameter's gradient is one view into
 * one slot, and padding can go between buckets): as many consecutive
 * parameters as fit in size elements of the current layout (at least one),
 * at most w (a binding window). first[k]: bucket k's first parameter. The
 * padding the new layout adds may make a bucket a little longer; nothing
 * binds a whole bucket at once (zeroing and the optimizer go window by
 * window). */
static uint32_t param_buckets(const vkt_engine *e, uint64_t size, uint64_t w, uint32_t *first)
{
    const vkt_model *m = e->model;
    if (size > w) size = w;
    uint32_t n = 0;
    for (uint32_t p = 0; p < m->nparams;) {
        uint64_t lo = m->g.t[m->param_ids[p]].offset;
        uint32_t q = p + 1;
#define START(k) ((k) < m->nparams ? m->g.t[m->param_ids[k]].offset : m->padded)
        while (q < m->nparams && START(q + 1) - lo <= size) q++;
#undef START
        first[n++] = p;
        p = q;
    }
    return n;
}

/* The equal-count layout (DeepSpeed's idea of padding each partitioned
 * unit to a multiple of world x alignment so that every rank owns an equal
 * part; its ZeRO-1/2 use one unit per parameter group, its ZeRO-3 one per
 * parameter, vktrain one per bucket): buckets of whole parameters, each
 * padded to a multiple of world x 64 elements, rank r owning the r-th
 * 1/world of each. Every rank's shard then has the same length, every
 * reduce-scatter and all-gather equal counts, no rank is left without a
 * part, and each part starts at a multiple of 64 elements (256 bytes of
 * fp32, 128 of a 16-bit dtype). The layout must not depend on the device:
 * every rank uses the smallest binding window of all ranks, and the ranks
 * compare the result. */
vkt_status vkt__engine_partition(vkt_engine *e)
{
    vkt_model *m = e->model;
    e->partitioned = e->stage >= 1 && e->comm && e->world > 1;
    if (!e->partitioned) return VKT_OK;
    int64_t w = (int64_t)vkt__nn_param_window(m);
    VKT_CHECK(vkt_comm_allreduce(e->comm, &w, &w, 1, VKT_DTYPE_I64, VKT_REDOP_MIN));
    uint64_t size = e->cfg->zero.reduce_bucket_size < 64 ? 64 : e->cfg->zero.reduce_bucket_size;
    uint32_t *first = vkt_malloc(m->nparams * sizeof *first);
    nn_piece *pieces = vkt_malloc(m->nparams * sizeof *pieces);
    e->bucket_ends = vkt_malloc(m->nparams * sizeof *e->bucket_ends);
    vkt_status st = first && pieces && e->bucket_ends
                        ? VKT_OK
                        : VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory");
    uint32_t n = st == VKT_OK ? param_buckets(e, size, (uint64_t)w, first) : 0;
    if (st == VKT_OK && n > VKT_ENGINE_MAX_BUCKETS)
        st = VKT_ERROR(VKT_ERR_INVALID_ARG,
                       "zero_optimization.reduce_bucket_size = %llu makes %u buckets, more "
                       "than the engine's %u; use a larger bucket size",
                       (unsigned long long)e->cfg->zero.reduce_bucket_size, n,
                       VKT_ENGINE_MAX_BUCKETS);
    if (st == VKT_OK)
        st = vkt__nn_relayout(m, n, first, (uint64_t)e->world * 64, (uint64_t)w,
                              e->bucket_ends);
    if (st == VKT_OK) {
        e->nbuckets = n;
        for (uint32_t b = 0; b < n; b++) {
            uint64_t part = vkt__engine_part(e, b);
            pieces[b] = (nn_piece){vkt__engine_bucket_lo(e, b) + (uint64_t)e->rank * part, 0,
                                   part};
        }
        st = vkt__nn_set_shard(m, n, pieces, true);
    }
    vkt_free(first);
    vkt_free(pieces);
    VKT_CHECK(st);
    /* the same cut on every rank, or the collectives would pair unrelated data
     * (the last bucket end is the padded size) */
    bool same;
    VKT_CHECK(vkt__engine_ranks_agree(e, e->bucket_ends, n * sizeof *e->bucket_ends, &same));
    VKT_FAIL_IF(!same, VKT_ERR_INTERNAL,
                "engine: the ranks laid the parameters out differently for ZeRO (%u buckets, "
                "%llu elements on rank %d); every rank must build the same model",
                n, (unsigned long long)m->padded, e->rank);
    return VKT_OK;
}

uint64_t vkt__engine_bucket_lo(const vkt_engine *e, uint32_t b)
{
    return b ? e->bucket_ends[b - 1] : 0;
}

uint64_t vkt__engine_part(const vkt_engine *e, uint32_t b)
{
    return (e->bucket_ends[b] - vkt__engine_bucket_lo(e, b)) / (uint64_t)e->world;
}

/* Buckets of reduce_bucket_size elements cut on the flat buffer (DDP), or
 * the partition's (ZeRO at world > 1), whose reductions are
 * reduce-scatters with slots at stage 2 and 3. */
vkt_status vkt__engine_buckets(vkt_engine *e)
{
    vkt_model *m = e->model;
    uint64_t size = e->cfg->zero.reduce_bucket_size;
    if (size < 64) size = 64;
    e->slots = e->stage >= 2 && e->partitioned;
    e->gather = e->stage == 3 && e->slots;
    uint64_t cap = e->partitioned ? e->nbuckets : m->padded / size + 2;
    VKT_FAIL_IF(e->partitioned && m->npieces != e->nbuckets, VKT_ERR_INTERNAL,
                "engine: %u shard pieces for %u buckets", m->npieces, e->nbuckets);
    VKT_FAIL_IF(cap > VKT_ENGINE_MAX_BUCKETS, VKT_ERR_INVALID_ARG,
                "zero_optimization.reduce_bucket_size = %llu makes more than %u buckets for "
                "%llu parameters; use a larger bucket size",
                (unsigned long long)e->cfg->zero.reduce_bucket_size, VKT_ENGINE_MAX_BUCKETS,
                (unsigned long long)m->numel);
    if (!e->partitioned) e->bucket_ends = vkt_malloc(cap * sizeof *e->bucket_ends);
    e->reqs = vkt_calloc(cap, sizeof *e->reqs);
    VKT_FAIL_IF(!e->bucket_ends || !e->reqs, VKT_ERR_NOMEM, "engine: out of host memory");
    uint32_t n = e->partitioned ? e->nbuckets : 0;
    for (uint64_t at = e->partitioned ? m->padded : 0; at < m->padded;) {
        uint64_t end = at + size < m->padded ? at + size : m->padded;
        e->bucket_ends[n++] = end;
        at = end;
    }
    e->nbuckets = n;
    VKT_CHECK(vkt_model_set_grad_buckets(m, n, e->bucket_ends));
    e->timing = e->cfg->wall_clock_breakdown || vkt__env_int("VKT_ENGINE_TIMELINE", 0);
    if (e->timing) {
        e->timings = vkt_calloc(n, sizeof *e->timings);
        VKT_FAIL_IF(!e->timings, VKT_ERR_NOMEM, "engine: out of host memory");
        for (uint32_t b = 0; b < n; b++) {
            e->timings[b].first = b ? e->bucket_ends[b - 1] : 0;
            e->timings[b].count = e->bucket_ends[b] - e->timings[b].first;
        }
    }
    if (e->slots) {
        VKT_CHECK(vkt__nn_set_grad_slots(m));
        e->post_order = vkt_malloc(n * sizeof *e->post_order);
        VKT_FAIL_IF(!e->post_order, VKT_ERR_NOMEM, "engine: out of host memory");
        VKT_CHECK(vkt_timeline_create(m->dev, 0, &e->slot_tl));
        e->acc_fresh = true;
    }
    e->grads_host = vkt_buffer_host_ptr(m->grads);
    if (!e->grads_host && !e->slots && e->comm && e->world > 1) {
        VKT_CHECK(vkt__nn_set_grad_staging(m));
        e->grads_host = vkt_buffer_host_ptr(m->grad_stage);
        e->staged = true;
    }
    if (!e->grads_host) {
        e->grads_stage = vkt_malloc(vkt__nn_len(m, m->grads_packed) * vkt_dtype_size(m->dtype));
        VKT_FAIL_IF(!e->grads_stage, VKT_ERR_NOMEM, "engine: out of host memory");
    }
    return vkt_timeline_create(m->dev, 0, &e->timeline);
}

/* Start bucket b's reduction on the host copy at base. */
static vkt_status post_bucket(vkt_engine *e, char *base, uint32_t b)
{
    vkt_model *m = e->model;
    uint64_t lo = b ? e->bucket_ends[b - 1] : 0, hi = e->bucket_ends[b];
    size_t es = vkt_dtype_size(m->dtype);
    char *p = e->slots ? vkt_buffer_host_ptr(m->slots[m->bucket_slot[b]]) : base + lo * es;
    if (e->stage < 2)
        return vkt_comm_allreduce_async(e->comm, p, p, hi - lo, m->dtype, VKT_REDOP_SUM,
                                        &e->reqs[b]);
    /* ZeRO-2: each rank receives the sum of its part of the bucket, in
     * place in the slot. */
    uint64_t part = vkt__engine_part(e, b);
    return vkt_comm_reduce_scatter_async(e->comm, p, p + (uint64_t)e->rank * part * es, part,
                                         m->dtype, VKT_REDOP_SUM, &e->reqs[b]);
}

double vkt__engine_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Timing only: note the reductions that have finished by now. */
static void poll_done(vkt_engine *e)
{
    double now = vkt__engine_now() - e->t0;
    for (uint32_t b = 0; b < e->nbuckets; b++) {
        int done = 0;
        if (e->reqs[b] && e->timings[b].end_s == 0 && vkt_comm_test(e->reqs[b], &done) == VKT_OK &&
            done)
            e->timings[b].end_s = now;
    }
}

/* The engine's own deadline for its GPU work (vktrain.gpu_timeout_s). */
static double gpu_timeout_s(const vkt_engine *e)
{
    return e->cfg->gpu_timeout_s > 0 ? e->cfg->gpu_timeout_s : 300;
}

/* A segment that did not finish in time: say whose deadline it was. */
static vkt_status segment_late(const vkt_engine *e, vkt_status st)
{
    if (st != VKT_ERR_TIMEOUT) return st;
    return vkt__error_context(st, "the GPU did not finish it within vktrain.gpu_timeout_s (%g "
                              "s); raise it for a slow device (the first steps also compile "
                              "shaders)", gpu_timeout_s(e));
}

vkt_status vkt__engine_wait_gpu(vkt_engine *e, uint64_t v)
{
    uint64_t ns = (uint64_t)(gpu_timeout_s(e) * 1e9);
    if (!e->timing) return segment_late(e, vkt_timeline_wait(e->timeline, v, ns));
    double end = vkt__engine_now() + gpu_timeout_s(e);
    for (;;) {
        vkt_status st = vkt_timeline_wait(e->timeline, v, 100000);
        poll_done(e);
        if (st != VKT_ERR_TIMEOUT || vkt__engine_now() > end) return segment_late(e, st);
    }
}

/* dst[i] (+)= src[i] for n elements of dtype t, host side. */
static void accumulate(vkt_dtype t, void *dst, const void *src, uint64_t n, bool copy)
{
    size_t es = vkt_dtype_size(t);
    if (copy) {
        memcpy(dst, src, n * es);
        return;
    }
    if (t == VKT_DTYPE_F32) {
        float *d = dst;
        const float *s = src;
        for (uint64_t i = 0; i < n; i++) d[i] += s[i];
        return;
    }
    float a[256], b[256];
    for (uint64_t i = 0; i < n; i += 256) {
        size_t k = n - i < 256 ? (size_t)(n - i) : 256;
        vkt__dtype_to_f32(t, a, (char *)dst + i * es, k);
        vkt__dtype_to_f32(t, b, (const char *)src + i * es, k);
        for (size_t j = 0; j < k; j++) a[j] += b[j];
        vkt__dtype_from_f32(t, (char *)dst + i * es, a, k);
    }
}

/* Slot mode: wait for the next reduction in posting order, add this
 * rank's part into the gradient shard and let the slot go. */
static vkt_status release_next(vkt_engine *e)
{
    vkt_model *m = e->model;
    VKT_FAIL_IF(e->released >= e->posted, VKT_ERR_INTERNAL,
                "engine: slot release %u before its bucket's reduction started", e->released);
    uint32_t b = e->post_order[e->released];
    vkt_status st = vkt_comm_wait(e->reqs[b]);
    e->reqs[b] = NULL;
    if (e->timing && e->timings[b].end_s == 0) e->timings[b].end_s = vkt__engine_now() - e->t0;
    if (st != VKT_OK) return vkt__error_context(st, "gradient reduce-scatter");
    size_t es = vkt_dtype_size(m->dtype);
    uint64_t part = vkt__engine_part(e, b);
    char *acc = e->grads_host ? e->grads_host : e->grads_stage;
    const char *slot = vkt_buffer_host_ptr(m->slots[m->bucket_slot[b]]);
    accumulate(m->dtype, acc + m->pieces[b].local * es, slot + (uint64_t)e->rank * part * es,
               part, e->acc_fresh);
    e->released++;
    return vkt_timeline_signal(e->slot_tl, e->slot_base + e->released);
}

/* Slot mode: submit every segment (those reusing a slot wait on slot_tl),
 * then per segment: release the slots it needs, wait for it, start the
 * reduce-scatter of the buckets it finalised. */
static vkt_status finish_slots(vkt_engine *e);

/* An error inside the slot backward (a peer died, a wait timed out): end
 * this reduction as finish_slots does after an error — every posted bucket
 * waited for, slot_tl raised past every value a submitted segment waits on —
 * then let the GPU finish, so no later call blocks on a segment that nobody
 * would release. Returns st with its message. */
static vkt_status slots_abort(vkt_engine *e, vkt_status st)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", vkt_last_error());
    if (e->sync_started) {
        e->sync_started = false;
        (void)finish_slots(e);
    }
    if (e->gather) vkt__engine_gathers_abort(e);
    (void)vkt_model_backward_wait(e->model);
    return VKT_ERROR(st, "%s", msg);
}

static vkt_status backward_slots(vkt_engine *e)
{
    vkt_model *m = e->model;
    uint64_t base = e->timeline_base;
    e->timeline_base += e->nbuckets + (uint64_t)m->g.nn + 1; /* > segments (gather cuts too) */
    e->released = e->posted = 0;
    uint64_t gbase = e->gather_base;
    e->sync_started = true;
    vkt_status st = VKT_OK;
    if (e->gather) { /* the backward's plan was made with the forward's recording */
        e->gather_base += e->nbuckets + (uint64_t)m->g.nn + 1;
        st = vkt__engine_gathers_post(e, m->bgath, m->nbgath, 0);
    }
    if (st == VKT_OK)
        st = vkt__nn_backward_submit(m, e->timeline, base, e->slot_tl, e->slot_base, e->gather_tl,
                                     gbase);
    if (st != VKT_OK) return slots_abort(e, st);
    uint32_t nseg = vkt_model_backward_segments(m);
    for (uint32_t s = 0; s < nseg; s++) {
        if (e->gather) {
            st = vkt__engine_gathers_finish(e, m->bgath, m->nbgath, s, gbase);
            if (st == VKT_OK && s + 1 < nseg)
                st = vkt__engine_gathers_post(e, m->bgath, m->nbgath, s + 1);
            if (st != VKT_OK) return slots_abort(e, st);
        }
        while (st == VKT_OK && e->released < m->seg_wait[s]) st = release_next(e);
        if (st == VKT_OK) st = vkt__engine_wait_gpu(e, base + s + 1);
        if (st != VKT_OK)
            return slots_abort(e, vkt__error_context(st, "engine: backward segment %u", s));
        double now = vkt__engine_now() - e->t0;
        for (uint32_t b = 0; b < e->nbuckets; b++) {
            if (m->bucket_seg[b] != s) continue;
            if (e->timing) e->timings[b].ready_s = now;
            st = post_bucket(e, NULL, b);
            if (st != VKT_OK) return slots_abort(e, st);
            e->post_order[e->posted++] = b;
        }
    }
    e->backward_s = vkt__engine_now() - e->t0;
    return vkt_model_backward_wait(m);
}

vkt_status vkt__engine_backward_local(vkt_engine *e)
{
    if (!e->slots) return vkt_model_backward(e->model); /* no_sync */
    VKT_CHECK(vkt__engine_backward_sync(e));
    return vkt__engine_finish_sync(e);
}

vkt_status vkt__engine_backward_sync(vkt_engine *e)
{
    vkt_model *m = e->model;
    if (!e->comm || e->world == 1) return vkt_model_backward(m);
    if (e->slots) {
        e->t0 = vkt__engine_now();
        if (e->timing)
            for (uint32_t b = 0; b < e->nbuckets; b++) e->timings[b].ready_s = e->timings[b].end_s = 0;
        return backward_slots(e);
    }
    e->t0 = vkt__engine_now();
    if (e->timing)
        for (uint32_t b = 0; b < e->nbuckets; b++) e->timings[b].ready_s = e->timings[b].end_s = 0;
    /* Values are never reused, even after a failed submit: move the base
     * past every segment the model may signal first. */
    uint64_t base = e->timeline_base;
    e->timeline_base += e->nbuckets + 1;
    VKT_CHECK(vkt_model_backward_submit(m, e->timeline, base));
    uint32_t nseg = vkt_model_backward_segments(m);
    e->sync_started = true;
    for (uint32_t s = 0; s < nseg; s++) {
        vkt_status st = vkt__engine_wait_gpu(e, base + s + 1);
        if (st != VKT_OK) return vkt__error_context(st, "engine: backward segment %u", s);
        double now = vkt__engine_now() - e->t0;
        for (uint32_t b = 0; b < e->nbuckets; b++) {
            if (vkt_model_bucket_segment(m, b) != s) continue;
            if (e->timing) e->timings[b].ready_s = now;
            VKT_CHECK(post_bucket(e, e->grads_host, b));
        }
    }
    e->backward_s = vkt__engine_now() - e->t0;
    return vkt_model_backward_wait(m);
}

/* Slot mode: release the rest, keep slot_tl's count in step (also after
 * an error, so the next backward's waits stay meaningful) and upload the
 * shard where it is not mapped. */
static vkt_status finish_slots(vkt_engine *e)
{
    vkt_model *m = e->model;
    vkt_status first = VKT_OK;
    if (e->timing) poll_done(e);
    while (e->released < e->posted) {
        vkt_status st = release_next(e);
        if (st != VKT_OK) {
            if (first == VKT_OK) first = st;
            uint32_t b = e->post_order[e->released];
            if (e->reqs[b]) vkt_comm_wait(e->reqs[b]);
            e->reqs[b] = NULL;
            e->released++;
        }
        if (e->timing) poll_done(e);
    }
    uint64_t target = e->slot_base + e->nbuckets, now = 0;
    e->slot_base = target;
    if (vkt_timeline_value(e->slot_tl, &now) == VKT_OK && now < target)
        vkt_timeline_signal(e->slot_tl, target);
    VKT_CHECK(first);
    VKT_FAIL_IF(e->posted != e->nbuckets, VKT_ERR_INTERNAL,
                "engine: %u of %u gradient buckets were reduced", e->posted, e->nbuckets);
    e->acc_fresh = false;
    if (!e->grads_host)
        VKT_CHECK(vkt_buffer_upload(m->grads, 0, e->grads_stage,
                                    m->shard_len * vkt_dtype_size(m->dtype)));
    return VKT_OK;
}

vkt_status vkt__engine_finish_sync(vkt_engine *e)
{
    if (!e->sync_started) return VKT_OK;
    e->sync_started = false;
    vkt_status first = VKT_OK;
    if (e->slots) return finish_slots(e);
    if (e->timing) { /* when did the rest finish? poll until all have */
        bool all;
        do {
            poll_done(e);
            all = true;
            for (uint32_t b = 0; b < e->nbuckets; b++)
                all = all && (!e->reqs[b] || e->timings[b].end_s > 0);
            if (!all) nanosleep(&(struct timespec){0, 50000}, NULL);
        } while (!all && vkt_comm_async_error(e->comm) == VKT_OK);
    }
    for (uint32_t b = 0; b < e->nbuckets; b++) {
        if (!e->reqs[b]) continue;
        vkt_status st = vkt_comm_wait(e->reqs[b]);
        e->reqs[b] = NULL;
        if (first == VKT_OK && st != VKT_OK) first = st;
    }
    if (first != VKT_OK) return vkt__error_context(first, "engine: gradient reduction");
    vkt_model *m = e->model;
    if (e->staged)
        VKT_CHECK(vkt_buffer_upload(m->grads, 0, e->grads_host,
                                    m->padded * vkt_dtype_size(m->dtype)));
    return VKT_OK;
}

vkt_status vkt__engine_gather_host(vkt_engine *e, void *p, vkt_dtype t)
{
    size_t es = vkt_dtype_size(t);
    vkt_status st = VKT_OK;
    for (uint32_t b = 0; b < e->nbuckets && st == VKT_OK; b++) {
        char *lo = (char *)p + vkt__engine_bucket_lo(e, b) * es;
        uint64_t part = vkt__engine_part(e, b);
        st = vkt_comm_allgather_async(e->comm, lo + (uint64_t)e->rank * part * es, lo, part, t,
                                      &e->reqs[b]);
    }
    for (uint32_t b = 0; b < e->nbuckets; b++) {
        if (!e->reqs[b]) continue;
        vkt_status w = vkt_comm_wait(e->reqs[b]);
        e->reqs[b] = NULL;
        if (st == VKT_OK) st = w;
    }
    return st;
}

vkt_status vkt__engine_gather(vkt_engine *e, vkt_buffer *buf, vkt_dtype t)
{
    if (!e->partitioned) return VKT_OK;
    vkt_model *m = e->model;
    size_t es = vkt_dtype_size(t), bytes = m->padded * es;
    char *p = vkt_buffer_host_ptr(buf), *stage = NULL;
    if (!p) {
        stage = vkt_malloc(bytes);
        VKT_FAIL_IF(!stage, VKT_ERR_NOMEM, "engine: out of host memory");
        vkt_status st = vkt_buffer_download(buf, 0, stage, bytes);
        if (st != VKT_OK) {
            vkt_free(stage);
            return st;
        }
        p = stage;
    }
    vkt_status st = vkt__engine_gather_host(e, p, t);
    if (st == VKT_OK && stage) st = vkt_buffer_upload(buf, 0, stage, bytes);
    vkt_free(stage);
    return st == VKT_OK ? VKT_OK : vkt__error_context(st, "engine: parameter all-gather");
}
