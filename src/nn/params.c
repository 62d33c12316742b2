/* Parameters: the flat layout, deterministic initialisation, and host
 * access in state_dict order. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn_int.h"

#define PARAM_ALIGN 64 /* elements: 256 bytes of fp32, a multiple of every
                        * device's storage-buffer offset alignment */

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

uint64_t vkt__nn_param_window(const vkt_model *m)
{
    uint64_t window = vkt_device_get_caps(m->dev)->max_storage_buffer_range / 4;
    return window - window % PARAM_ALIGN;
}

/* Parameter i at `at` or, where it would straddle an fp32 binding window
 * (which also keeps it inside one window of the 16-bit copy, twice as
 * long), at the next window; returns where the next one may start. */
static uint64_t place(vkt_model *m, uint32_t i, uint64_t at, uint64_t window)
{
    nn_tensor *t = &m->g.t[m->param_ids[i]];
    if (at / window != (at + t->numel - 1) / window) at = align_up(at, window);
    t->offset = at;
    return align_up(at + t->numel, PARAM_ALIGN);
}

/* The shard is the whole flat buffer (one piece). */
static vkt_status whole_shard(vkt_model *m)
{
    if (!m->pieces) {
        m->pieces = vkt_calloc(1, sizeof *m->pieces);
        VKT_FAIL_IF(!m->pieces, VKT_ERR_NOMEM, "model: out of host memory");
    }
    m->pieces[0] = (nn_piece){0, 0, m->padded};
    m->npieces = 1;
    m->shard_len = m->padded;
    return VKT_OK;
}

/* The master weights, the compute copy and the gradients for the layout. */
static vkt_status make_flat(vkt_model *m, uint64_t padded, vkt_buffer **master,
                            vkt_buffer **copy, vkt_buffer **grads)
{
    uint64_t es = vkt_dtype_size(m->dtype);
    *copy = *grads = NULL;
    VKT_CHECK(vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, padded * 4, master));
    vkt_status st = VKT_OK;
    if (m->dtype == VKT_DTYPE_F32) *copy = *master;
    else st = vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, padded * es, copy);
    if (st == VKT_OK) st = vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, padded * es, grads);
    if (st != VKT_OK) {
        if (*copy != *master) vkt_buffer_destroy(*copy);
        vkt_buffer_destroy(*master);
        *master = *copy = NULL;
    }
    return st;
}

/* Offsets in elements, each parameter aligned to PARAM_ALIGN. */
vkt_status vkt__nn_params_layout(vkt_model *m)
{
    uint64_t window = vkt__nn_param_window(m);
    uint64_t at = 0;
    m->numel = 0;
    for (uint32_t i = 0; i < m->nparams; i++) {
        nn_tensor *t = &m->g.t[m->param_ids[i]];
        VKT_FAIL_IF(t->numel > window, VKT_ERR_UNSUPPORTED,
                    "model: parameter '%s' has %llu elements, more than one binding window "
                    "of '%s' holds (%llu)", t->name, (unsigned long long)t->numel,
                    vkt_device_get_caps(m->dev)->name, (unsigned long long)window);
        at = place(m, i, at, window);
        m->numel += t->numel;
    }
    m->padded = at ? at : PARAM_ALIGN;
    VKT_CHECK(whole_shard(m));
    m->param_names = vkt_calloc(m->nparams, sizeof *m->param_names);
    VKT_FAIL_IF(!m->param_names, VKT_ERR_NOMEM, "model: out of host memory");
    for (uint32_t i = 0; i < m->nparams; i++)
        memcpy(m->param_names[i], m->g.t[m->param_ids[i]].name, sizeof m->param_names[i]);
    return make_flat(m, m->padded, &m->master, &m->copy, &m->grads);
}

/* Drop everything bound to the flat layout: the buffers (their weights
 * are on the host), the buckets cut on it, every recording. */
static void drop_flat(vkt_model *m)
{
    if (m->copy != m->master) vkt_buffer_destroy(m->copy);
    vkt_buffer_destroy(m->master);
    vkt_buffer_destroy(m->grads);
    vkt_buffer_destroy(m->grad_stage);
    m->master = m->copy = m->grads = m->grad_stage = NULL;
    vkt_free(m->bucket_ends);
    m->bucket_ends = NULL;
    m->nbuckets = 0;
    m->batch = 0;
    m->rec_denominator = 0;
    m->opt_recorded = false;
    m->sumsq_recorded = false;
    vkt_stream_destroy(m->zero);
    m->zero = NULL;
}

/* New buffers of padded elements holding the weights of dense. */
static vkt_status fill_flat(vkt_model *m, uint64_t padded, const float *dense)
{
    VKT_CHECK(make_flat(m, padded, &m->master, &m->copy, &m->grads));
    m->padded = padded;
    VKT_CHECK(whole_shard(m));
    VKT_CHECK(vkt_model_set_params(m, dense));
    return vkt_model_zero_grad(m);
}

vkt_status vkt__nn_relayout(vkt_model *m, uint32_t nb, const uint32_t *first, uint64_t unit,
                            uint64_t window, uint64_t *ends)
{
    VKT_FAIL_IF(m->slot_mode || m->gather_mode || m->master_packed || m->opt_m || m->opt_step,
                VKT_ERR_INVALID_USAGE,
                "model: the parameter layout can only change before sharding and before the "
                "first optimizer step");
    VKT_FAIL_IF(nb == 0 || first[0] != 0 || unit == 0 || unit % PARAM_ALIGN ||
                    window % PARAM_ALIGN || window > vkt__nn_param_window(m),
                VKT_ERR_INVALID_ARG, "model: relayout needs buckets from parameter 0, a unit "
                "that is a multiple of %d (got %llu) and a window within the device's",
                PARAM_ALIGN, (unsigned long long)unit);
    for (uint32_t k = 1; k < nb; k++)
        VKT_FAIL_IF(first[k] <= first[k - 1] || first[k] >= m->nparams, VKT_ERR_INVALID_ARG,
                    "model: bucket %u starts at parameter %u, after %u and before %u", k,
                    first[k], first[k - 1], m->nparams);
    for (uint32_t i = 0; i < m->nparams; i++)
        VKT_FAIL_IF(m->g.t[m->param_ids[i]].numel > window, VKT_ERR_UNSUPPORTED,
                    "model: parameter '%s' is longer than the binding window of %llu elements "
                    "every rank's device can bind", m->g.t[m->param_ids[i]].name,
                    (unsigned long long)window);
    float *dense = vkt_malloc((m->numel + 1) * sizeof *dense);
    uint64_t *old = vkt_malloc((m->nparams + 1) * sizeof *old);
    vkt_status st = dense && old ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "model: out of host memory");
    if (st == VKT_OK) st = vkt_model_get_params(m, dense);
    if (st != VKT_OK) goto out;
    uint64_t at = 0, old_padded = m->padded;
    for (uint32_t i = 0; i < m->nparams; i++) old[i] = m->g.t[m->param_ids[i]].offset;
    for (uint32_t k = 0; k < nb; k++) {
        uint64_t lo = at;
        for (uint32_t i = first[k]; i < (k + 1 < nb ? first[k + 1] : m->nparams); i++)
            at = place(m, i, at, window);
        at = lo + align_up(at - lo, unit);
        ends[k] = at;
    }
    /* The old buffers go first (the weights are in dense), so the device
     * never holds both layouts. */
    drop_flat(m);
    st = fill_flat(m, at, dense);
    if (st == VKT_OK) goto out;
    char why[512];
    snprintf(why, sizeof why, "%s", vkt_last_error());
    drop_flat(m);
    for (uint32_t i = 0; i < m->nparams; i++) m->g.t[m->param_ids[i]].offset = old[i];
    if (fill_flat(m, old_padded, dense) == VKT_OK)
        st = VKT_ERROR(st, "model: laying the parameters out for ZeRO: %s (the model keeps "
                           "its layout and weights)", why);
    else
        st = VKT_ERROR(st, "model: laying the parameters out for ZeRO: %s; restoring the old "
                           "layout failed too, so this model has lost its weights: create it "
                           "again", why);
out:
    vkt_free(dense);
    vkt_free(old);
    return st;
}

/* splitmix64: a small, well-mixed generator for reproducible init. */
static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s, float bound)
{
    return (float)((double)(next(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * bound;
}

/* A standard normal from two uniforms (Box-Muller). */
static float normal(uint64_t *s)
{
    double u1 = ((double)(next(s) >> 11) + 1.0) * 0x1.0p-53, u2 = (double)(next(s) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Upload padded flat array w (elements of es bytes) into buf, whole or
 * the shard's pieces packed. */
static vkt_status upload_flat(vkt_model *m, vkt_buffer *buf, const void *w, uint64_t es,
                              bool packed)
{
    if (!packed) return vkt_buffer_upload(buf, 0, w, m->padded * es);
    for (uint32_t k = 0; k < m->npieces; k++) {
        const nn_piece *p = &m->pieces[k];
        VKT_CHECK(vkt_buffer_upload(buf, p->local * es, (const char *)w + p->flat * es,
                                    p->count * es));
    }
    return VKT_OK;
}

/* Upload the padded fp32 array w (destroyed) as the master weights and, for
 * f16/bf16 models, as the compute copy rounded to that dtype. */
vkt_status vkt__nn_set_master_flat(vkt_model *m, float *w)
{
    VKT_CHECK(upload_flat(m, m->master, w, 4, m->master_packed));
    if (m->copy == m->master) return VKT_OK;
    vkt__dtype_from_f32(m->dtype, w, w, m->padded);
    return upload_flat(m, m->copy, w, vkt_dtype_size(m->dtype), m->copy_packed);
}

/* Each tensor by its rule (uniform ±bound, normal with a deviation, zeros,
 * ones), drawn in parameter order from one seeded generator. The numbers
 * differ from PyTorch's generator; the distributions are PyTorch's. */
vkt_status vkt__nn_params_init(vkt_model *m)
{
    float *w = vkt_calloc(m->padded, sizeof *w);
    VKT_FAIL_IF(!w, VKT_ERR_NOMEM, "model: out of host memory for initial weights");
    uint64_t s = m->seed;
    for (uint32_t i = 0; i < m->nparams; i++) {
        const nn_tensor *t = &m->g.t[m->param_ids[i]];
        float *x = w + t->offset;
        for (uint64_t k = 0; k < t->numel; k++) {
            switch ((init_rule)t->init) {
            case INIT_UNIFORM: x[k] = uniform(&s, t->init_scale); break;
            case INIT_NORMAL: x[k] = normal(&s) * t->init_scale; break;
            case INIT_ZEROS: x[k] = 0.0f; break;
            case INIT_ONES: x[k] = 1.0f; break;
            }
        }
    }
    vkt_status st = vkt__nn_set_master_flat(m, w);
    vkt_free(w);
    if (st == VKT_OK) st = vkt_model_zero_grad(m);
    return st;
}

uint32_t vkt_model_param_count(const vkt_model *m) { return m ? m->nparams : 0; }

uint64_t vkt_model_num_params(const vkt_model *m) { return m ? m->numel : 0; }

vkt_status vkt_model_param_info(const vkt_model *m, uint32_t i, vkt_param_info *out)
{
    VKT_FAIL_IF(!m || !out || i >= m->nparams, VKT_ERR_INVALID_ARG,
                "vkt_model_param_info: index %u of %u", i, m ? m->nparams : 0);
    const nn_tensor *t = &m->g.t[m->param_ids[i]];
    /* The graph's tensor array moves when a batch adds tensors; the name
     * handed out must not, so it comes from the copy made at creation. */
    *out = (vkt_param_info){m->param_names[i], t->ndim, {0}, t->numel, t->offset};
    memcpy(out->shape, t->shape, sizeof out->shape);
    return VKT_OK;
}

void vkt__nn_dense_padded(const vkt_model *m, float *dense, float *pad, bool to_dense)
{
    uint64_t at = 0;
    for (uint32_t i = 0; i < m->nparams; i++) {
        const nn_tensor *p = &m->g.t[m->param_ids[i]];
        if (to_dense) memcpy(dense + at, pad + p->offset, p->numel * 4);
        else memcpy(pad + p->offset, dense + at, p->numel * 4);
        at += p->numel;
    }
}

/* Copy between a dense fp32 host array and a padded buffer: the master
 * weights (fp32; writing them refreshes the compute copy) or the gradients
 * (in the compute dtype, converted). */
static vkt_status transfer(vkt_model *m, vkt_buffer *buf, float *host, bool to_host)
{
    VKT_CHECK(vkt_model_backward_wait(m));
    VKT_FAIL_IF(to_host && buf == m->master && m->master_packed,
                VKT_ERR_INVALID_USAGE,
                "model: this rank holds only its shard of the fp32 master weights (ZeRO); "
                "use vkt_engine_get_params");
    VKT_FAIL_IF(buf == m->grads && m->slot_mode, VKT_ERR_INVALID_USAGE,
                "model: this rank holds only its shard of the gradients (ZeRO-2); read them "
                "before the engine shards them");
    float *pad = vkt_calloc(m->padded, sizeof *pad);
    VKT_FAIL_IF(!pad, VKT_ERR_NOMEM, "model: out of host memory");
    vkt_dtype t = buf == m->grads ? m->dtype : VKT_DTYPE_F32;
    vkt_status st = VKT_OK;
    if (to_host) st = vkt_buffer_download(buf, 0, pad, m->padded * vkt_dtype_size(t));
    if (to_host && st == VKT_OK) vkt__dtype_to_f32(t, pad, pad, m->padded);
    if (st == VKT_OK) vkt__nn_dense_padded(m, host, pad, to_host);
    if (!to_host && st == VKT_OK) st = vkt__nn_set_master_flat(m, pad);
    vkt_free(pad);
    return st;
}

vkt_status vkt_model_get_params(vkt_model *m, float *out)
{
    VKT_FAIL_IF(!m || !out, VKT_ERR_INVALID_ARG, "vkt_model_get_params: NULL argument");
    return transfer(m, m->master, out, true);
}

vkt_status vkt_model_set_params(vkt_model *m, const float *in)
{
    VKT_FAIL_IF(!m || !in, VKT_ERR_INVALID_ARG, "vkt_model_set_params: NULL argument");
    return transfer(m, m->master, (float *)in, false);
}

vkt_status vkt_model_get_grads(vkt_model *m, float *out)
{
    VKT_FAIL_IF(!m || !out, VKT_ERR_INVALID_ARG, "vkt_model_get_grads: NULL argument");
    return transfer(m, m->grads, out, true);
}
