/* ZeRO-3 in the engine: each rank keeps only its shard of the parameters,
 * and every forward and backward gathers each group (gradient bucket) into
 * one of the model's gather slots just before the segment that reads it.
 *
 * A pass submits all its segments at once; segment s waits on gather_tl
 * for gbase + s + 1. The engine thread then walks the segments: it waits
 * for the gathers segment s needs and signals gather_tl (the GPU may start
 * s), posts the gathers of segment s + 1 (a prefetch that overlaps s: the
 * slot plan guarantees their slots were last read at segment s - 1 or
 * earlier, which this loop has already waited for), and waits for s. A
 * gather is an all-gather of equal parts (each rank owns 1/world of every
 * padded group), so a group lands whole in its slot. */
#include <string.h>

#include "train/engine_int.h"

vkt_status vkt__engine_gather_setup(vkt_engine *e)
{
    vkt_model *m = e->model;
    VKT_CHECK(vkt__nn_set_gather_mode(m));
    return vkt_timeline_create(m->dev, 0, &e->gather_tl);
}

/* Room for one request per residence of either pass. */
static vkt_status reserve(vkt_engine *e)
{
    const vkt_model *m = e->model;
    uint32_t n = m->nfgath > m->nbgath ? m->nfgath : m->nbgath;
    if (n <= e->cap_greqs) return VKT_OK;
    vkt_comm_req **r = vkt_calloc(n, sizeof *r);
    VKT_FAIL_IF(!r, VKT_ERR_NOMEM, "engine: out of host memory");
    vkt_free(e->greqs);
    e->greqs = r;
    e->cap_greqs = n;
    return VKT_OK;
}

vkt_status vkt__engine_gather_group(vkt_engine *e, uint32_t b, void *dst, vkt_comm_req **req)
{
    vkt_model *m = e->model;
    const char *shard = vkt_buffer_host_ptr(m->copy);
    return vkt_comm_allgather_async(e->comm, shard + m->pieces[b].local * vkt_dtype_size(m->dtype),
                                    dst, vkt__engine_part(e, b), m->dtype, req);
}

vkt_status vkt__engine_gathers_post(vkt_engine *e, const nn_gather *g, uint32_t n, uint32_t seg)
{
    vkt_model *m = e->model;
    for (uint32_t i = 0; i < n; i++)
        if (g[i].first == seg)
            VKT_CHECK(vkt__engine_gather_group(e, g[i].group,
                                               vkt_buffer_host_ptr(m->gslots[g[i].slot]),
                                               &e->greqs[i]));
    return VKT_OK;
}

vkt_status vkt__engine_gathers_finish(vkt_engine *e, const nn_gather *g, uint32_t n, uint32_t seg,
                                      uint64_t gbase)
{
    for (uint32_t i = 0; i < n; i++) {
        if (g[i].first != seg || !e->greqs[i]) continue;
        vkt_status st = vkt_comm_wait(e->greqs[i]);
        e->greqs[i] = NULL;
        if (st != VKT_OK)
            return vkt__error_context(st, "engine: gathering the parameters of bucket %u",
                                      g[i].group);
    }
    return vkt_timeline_signal(e->gather_tl, gbase + seg + 1);
}

void vkt__engine_gathers_abort(vkt_engine *e)
{
    for (uint32_t i = 0; i < e->cap_greqs; i++)
        if (e->greqs[i]) {
            (void)vkt_comm_wait(e->greqs[i]);
            e->greqs[i] = NULL;
        }
    /* Let every submitted segment run (on stale slots: its results are
     * not used), so waiting for the GPU cannot block. */
    uint64_t v = 0;
    if (e->gather_tl && vkt_timeline_value(e->gather_tl, &v) == VKT_OK) {
        e->gather_base = v + (1ull << 32);
        (void)vkt_timeline_signal(e->gather_tl, e->gather_base);
    }
}

/* The forward with each segment's groups gathered first. */
static vkt_status forward_gathered(vkt_engine *e, const vkt_batch *b, float *loss)
{
    vkt_model *m = e->model;
    VKT_CHECK(vkt__nn_forward_begin(m, b)); /* records the plan on a new shape */
    VKT_CHECK(reserve(e));
    uint32_t nseg = m->nfseg;
    uint64_t base = e->timeline_base, gbase = e->gather_base;
    e->timeline_base += nseg + 1;
    e->gather_base += nseg + 1;
    vkt_status st = vkt__engine_gathers_post(e, m->fgath, m->nfgath, 0);
    if (st == VKT_OK) st = vkt__nn_forward_submit(m, e->timeline, base, e->gather_tl, gbase);
    for (uint32_t s = 0; s < nseg && st == VKT_OK; s++) {
        st = vkt__engine_gathers_finish(e, m->fgath, m->nfgath, s, gbase);
        if (st == VKT_OK && s + 1 < nseg)
            st = vkt__engine_gathers_post(e, m->fgath, m->nfgath, s + 1);
        if (st == VKT_OK) st = vkt__engine_wait_gpu(e, base + s + 1);
        if (st != VKT_OK) st = vkt__error_context(st, "engine: forward segment %u", s);
    }
    if (st != VKT_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", vkt_last_error());
        vkt__engine_gathers_abort(e);
        (void)vkt_model_backward_wait(m);
        return VKT_ERROR(st, "%s", msg);
    }
    return vkt__nn_forward_end(m, b, loss);
}

vkt_status vkt__engine_model_forward(vkt_engine *e, const vkt_batch *b, float *loss)
{
    if (e->gather) return forward_gathered(e, b, loss);
    return vkt_model_forward(e->model, b, loss);
}
