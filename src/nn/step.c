/* vkt_model_step: the optimizer over the whole flat parameter buffer. The
 * update is recorded once per set of hyperparameters; the learning rate and
 * the step's bias corrections travel in a 4-float host buffer. */
#include <math.h>
#include <string.h>

#include "nn/nn_int.h"

static vkt_status check_opts(const vkt_optim_opts *o)
{
    VKT_FAIL_IF(!o || o->struct_size != sizeof *o, VKT_ERR_INVALID_ARG,
                "vkt_model_step: initialise opts with VKT_OPTIM_OPTS_INIT");
    VKT_FAIL_IF(o->type > VKT_OPTIM_ADAMW, VKT_ERR_INVALID_ARG,
                "vkt_model_step: unknown optimizer type %d", (int)o->type);
    VKT_FAIL_IF(o->type != VKT_OPTIM_SGD &&
                    (o->beta1 < 0 || o->beta1 >= 1 || o->beta2 < 0 || o->beta2 >= 1 ||
                     !(o->eps > 0)),
                VKT_ERR_INVALID_ARG,
                "vkt_model_step: Adam needs 0 <= betas < 1 and eps > 0 (got %g, %g, %g)",
                (double)o->beta1, (double)o->beta2, (double)o->eps);
    VKT_FAIL_IF(o->momentum < 0 || o->weight_decay < 0, VKT_ERR_INVALID_ARG,
                "vkt_model_step: momentum and weight_decay must be >= 0");
    VKT_FAIL_IF(o->nesterov && o->momentum == 0, VKT_ERR_INVALID_ARG,
                "vkt_model_step: Nesterov momentum needs momentum > 0");
    return VKT_OK;
}

/* Zeroed optimizer state: m (momentum or Adam's first moment) and v. Both
 * are made before either is kept, so a failure leaves none half-made. */
static vkt_status make_state(vkt_model *m, const vkt_optim_opts *o)
{
    uint64_t bytes = m->shard_len * 4;
    bool adam = o->type != VKT_OPTIM_SGD;
    if (!m->hyper) VKT_CHECK(vkt_buffer_create(m->dev, VKT_MEMORY_HOST, 16, &m->hyper));
    if (m->opt_m || (!adam && o->momentum == 0)) return VKT_OK;
    vkt_buffer *mb = NULL, *vb = NULL;
    vkt_status st = vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, bytes, &mb);
    if (st == VKT_OK && adam) st = vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, bytes, &vb);
    m->opt_recorded = false;
    if (st == VKT_OK) st = vkt_stream_begin(m->opt_stream);
    if (st == VKT_OK) st = vkt_stream_fill(m->opt_stream, mb, 0, bytes, 0);
    if (st == VKT_OK && vb) st = vkt_stream_fill(m->opt_stream, vb, 0, bytes, 0);
    if (st == VKT_OK) st = vkt_stream_end(m->opt_stream);
    if (st == VKT_OK) st = vkt_stream_run(m->opt_stream);
    if (st != VKT_OK) {
        vkt_buffer_destroy(mb);
        vkt_buffer_destroy(vb);
        return st;
    }
    m->opt_m = mb;
    m->opt_v = vb;
    return VKT_OK;
}

vkt_status vkt__nn_optim_prepare(vkt_model *m, const vkt_optim_opts *o)
{
    VKT_CHECK(check_opts(o));
    VKT_FAIL_IF(m->opt_step && m->opt.type != o->type, VKT_ERR_INVALID_USAGE,
                "model: the optimizer type changed after step %llu; its state belongs to "
                "the first type", (unsigned long long)m->opt_step);
    if (!m->opt_stream) VKT_CHECK(vkt_stream_create(m->dev, &m->opt_stream));
    VKT_CHECK(make_state(m, o));
    m->opt.type = o->type;
    return VKT_OK;
}

/* The update of flat elements [at, at+n) of piece p: at most one binding
 * window's worth, so models larger than a window work. The optimizer state
 * holds the shard packed; the other buffers hold it packed or whole. */
static vkt_status record_window(vkt_model *m, const vkt_optim_opts *o, const nn_piece *p,
                                uint64_t at, uint64_t n)
{
    uint64_t es = vkt_dtype_size(m->dtype), st = vkt__nn_at(p, true, at) * 4;
    uint64_t pa = vkt__nn_at(p, m->master_packed, at) * 4;
    uint64_t ga = vkt__nn_at(p, m->grads_packed, at) * es;
    vkt_tref copy = {m->copy != m->master ? m->copy : NULL,
                     vkt__nn_at(p, m->copy_packed, at) * es};
    if (o->type == VKT_OPTIM_SGD) {
        vkt_sgd_args a = {.params = {m->master, pa}, .grads = {m->grads, ga},
                          .momentum_buf = {m->opt_m, st}, .copy = copy,
                          .hyper = {m->hyper, 0}, .dtype = m->dtype, .n = n,
                          .momentum = o->momentum, .weight_decay = o->weight_decay,
                          .nesterov = o->nesterov};
        return vkt_op_sgd(m->ops, m->opt_stream, &a);
    }
    vkt_adam_args a = {.params = {m->master, pa}, .grads = {m->grads, ga},
                       .m = {m->opt_m, st}, .v = {m->opt_v, st}, .copy = copy,
                       .hyper = {m->hyper, 0}, .dtype = m->dtype, .n = n, .beta1 = o->beta1,
                       .beta2 = o->beta2, .eps = o->eps, .weight_decay = o->weight_decay,
                       .adamw = o->type == VKT_OPTIM_ADAMW};
    return vkt_op_adam(m->ops, m->opt_stream, &a);
}

static vkt_status record(vkt_model *m, const vkt_optim_opts *o)
{
    m->opt_recorded = false;
    VKT_CHECK(vkt_stream_begin(m->opt_stream));
    uint64_t w = vkt__nn_param_window(m);
    for (uint32_t k = 0; k < m->npieces; k++) {
        const nn_piece *p = &m->pieces[k];
        for (uint64_t at = p->flat; at < p->flat + p->count; at += w)
            VKT_CHECK(record_window(m, o, p, at,
                                    p->flat + p->count - at < w ? p->flat + p->count - at : w));
    }
    VKT_CHECK(vkt_stream_end(m->opt_stream));
    m->opt = *o;
    m->opt_recorded = true;
    return VKT_OK;
}

static bool same_recording(const vkt_optim_opts *a, const vkt_optim_opts *b)
{
    return a->type == b->type && a->beta1 == b->beta1 && a->beta2 == b->beta2 &&
           a->eps == b->eps && a->weight_decay == b->weight_decay &&
           a->momentum == b->momentum && a->nesterov == b->nesterov;
}

vkt_status vkt_model_step_scaled(vkt_model *m, const vkt_optim_opts *o, float lr,
                                 float grad_scale)
{
    VKT_FAIL_IF(!m, VKT_ERR_INVALID_ARG, "vkt_model_step: model is NULL");
    VKT_CHECK(vkt_model_backward_wait(m));
    VKT_CHECK(check_opts(o));
    VKT_FAIL_IF(!isfinite(grad_scale) || grad_scale < 0, VKT_ERR_INVALID_ARG,
                "vkt_model_step: grad_scale must be finite and >= 0 (got %g)",
                (double)grad_scale);
    VKT_CHECK(vkt__nn_optim_prepare(m, o));
    if (!m->opt_recorded || !same_recording(&m->opt, o)) VKT_CHECK(record(m, o));
    float h[4];
    m->opt_step++;
    if (o->type == VKT_OPTIM_SGD) vkt_op_sgd_hyper(h, lr, grad_scale);
    else vkt_op_adam_hyper(h, lr, o->beta1, o->beta2, m->opt_step, grad_scale);
    VKT_CHECK(vkt_buffer_upload(m->hyper, 0, h, sizeof h));
    return vkt_stream_run(m->opt_stream);
}

vkt_status vkt_model_step(vkt_model *m, const vkt_optim_opts *o, float lr)
{
    return vkt_model_step_scaled(m, o, lr, 1.0f);
}

/* Σ g² over the shard's gradients, piece by piece and window by window,
 * partial sums on the device and the total in double on the host. Each
 * window has its slot of `per` partials; unused ones stay zero. */
static vkt_status record_sumsq(vkt_model *m, uint64_t w, uint32_t per, uint32_t windows)
{
    uint64_t es = vkt_dtype_size(m->dtype);
    if (!m->sumsq_stream) VKT_CHECK(vkt_stream_create(m->dev, &m->sumsq_stream));
    vkt_buffer_destroy(m->sumsq_partials);
    uint64_t bytes = (uint64_t)per * windows * 4;
    VKT_CHECK(vkt_buffer_create(m->dev, VKT_MEMORY_HOST, bytes, &m->sumsq_partials));
    memset(vkt_buffer_host_ptr(m->sumsq_partials), 0, bytes);
    VKT_CHECK(vkt_stream_begin(m->sumsq_stream));
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->npieces; i++) {
        const nn_piece *p = &m->pieces[i];
        for (uint64_t at = p->flat; at < p->flat + p->count; at += w, k++)
            VKT_CHECK(vkt_op_grad_sumsq(
                m->ops, m->sumsq_stream, (vkt_tref){m->sumsq_partials, (uint64_t)k * per * 4},
                (vkt_tref){m->grads, vkt__nn_at(p, m->grads_packed, at) * es}, m->dtype,
                p->flat + p->count - at < w ? p->flat + p->count - at : w, 1.0f));
    }
    VKT_CHECK(vkt_stream_end(m->sumsq_stream));
    m->sumsq_recorded = true;
    return VKT_OK;
}

vkt_status vkt_model_grad_sumsq(vkt_model *m, double *out)
{
    VKT_FAIL_IF(!m || !out, VKT_ERR_INVALID_ARG, "vkt_model_grad_sumsq: NULL argument");
    VKT_CHECK(vkt_model_backward_wait(m));
    uint64_t w = vkt__nn_param_window(m);
    uint32_t per = vkt_op_grad_sumsq_partials(m->ops, w), windows = 0;
    for (uint32_t i = 0; i < m->npieces; i++) windows += (uint32_t)((m->pieces[i].count + w - 1) / w);
    if (!m->sumsq_recorded) VKT_CHECK(record_sumsq(m, w, per, windows));
    VKT_CHECK(vkt_stream_run(m->sumsq_stream));
    const float *p = vkt_buffer_host_ptr(m->sumsq_partials);
    double sum = 0;
    for (uint64_t i = 0; i < (uint64_t)per * windows; i++) sum += p[i];
    *out = sum;
    return VKT_OK;
}

vkt_status vkt__nn_pack(vkt_model *m, vkt_buffer *whole, uint64_t es, bool host_visible,
                        vkt_buffer **out)
{
    uint64_t bytes = m->shard_len * es;
    char *tmp = vkt_malloc(bytes);
    VKT_FAIL_IF(!tmp, VKT_ERR_NOMEM, "model: out of host memory");
    vkt_status st = host_visible ? vkt__nn_host_visible(m, bytes, out)
                                 : vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, bytes, out);
    for (uint32_t k = 0; k < m->npieces && st == VKT_OK; k++) {
        const nn_piece *p = &m->pieces[k];
        st = vkt_buffer_download(whole, p->flat * es, tmp + p->local * es, p->count * es);
    }
    if (st == VKT_OK) st = vkt_buffer_upload(*out, 0, tmp, bytes);
    vkt_free(tmp);
    if (st != VKT_OK) {
        vkt_buffer_destroy(*out);
        *out = NULL;
    }
    return st;
}

vkt_status vkt__nn_set_shard(vkt_model *m, uint32_t n, const nn_piece *pieces,
                             bool shard_master)
{
    VKT_FAIL_IF(m->opt_m || m->opt_step || m->master_packed || m->grads_packed ||
                    m->copy_packed,
                VKT_ERR_INVALID_USAGE,
                "model: the shard is set once, before the optimizer has state");
    VKT_FAIL_IF(n == 0, VKT_ERR_INVALID_ARG, "model: a shard needs at least one piece");
    nn_piece *mine = vkt_malloc(n * sizeof *mine);
    VKT_FAIL_IF(!mine, VKT_ERR_NOMEM, "model: out of host memory");
    uint64_t local = 0, end = 0;
    for (uint32_t k = 0; k < n; k++) {
        const nn_piece *p = &pieces[k];
        if (p->count == 0 || p->flat < end || p->flat + p->count > m->padded) {
            vkt_free(mine);
            return VKT_ERROR(VKT_ERR_INVALID_ARG,
                             "model: shard piece %u [%llu, +%llu) is empty, out of order or "
                             "outside the flat buffer of %llu", k, (unsigned long long)p->flat,
                             (unsigned long long)p->count, (unsigned long long)m->padded);
        }
        mine[k] = (nn_piece){p->flat, local, p->count};
        local += p->count;
        end = p->flat + p->count;
    }
    nn_piece *was = m->pieces;
    uint32_t was_n = m->npieces;
    uint64_t was_len = m->shard_len;
    m->pieces = mine;
    m->npieces = n;
    m->shard_len = local;
    m->opt_recorded = false;
    m->sumsq_recorded = false;
    vkt_buffer *b = NULL;
    vkt_status st = shard_master && m->copy != m->master ? vkt__nn_pack(m, m->master, 4, false, &b)
                                                         : VKT_OK;
    if (st != VKT_OK) { /* the shard stays as it was */
        m->pieces = was;
        m->npieces = was_n;
        m->shard_len = was_len;
        vkt_free(mine);
        return st;
    }
    vkt_free(was);
    if (!b) return VKT_OK;
    vkt_buffer_destroy(m->master);
    m->master = b;
    m->master_packed = true;
    return VKT_OK;
}
