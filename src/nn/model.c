/* The model API of vktrain/nn.h: forward with loss, backward, zero_grad,
 * optimizer step, memory report. */
#include <math.h>
#include <string.h>

#include "nn/nn_int.h"

void vkt_model_destroy(vkt_model *m)
{
    if (!m) return;
    vkt_stream_destroy(m->fwd);
    for (uint32_t i = 0; i < m->cap_seg; i++) vkt_stream_destroy(m->bwd[i]);
    vkt_free(m->bwd);
    vkt_free(m->bucket_ends);
    vkt_free(m->bucket_seg);
    vkt_free(m->bucket_first_seg);
    vkt_free(m->bucket_slot);
    vkt_free(m->seg_wait);
    for (uint32_t k = 0; k < m->cap_slots; k++) vkt_buffer_destroy(m->slots[k]);
    vkt_free(m->slots);
    for (uint32_t k = 0; k < m->cap_gslots; k++) vkt_buffer_destroy(m->gslots[k]);
    vkt_free(m->gslots);
    for (uint32_t i = 0; i < m->cap_fseg; i++) vkt_stream_destroy(m->fseg[i]);
    vkt_free(m->fseg);
    vkt_free(m->fgath);
    vkt_free(m->bgath);
    vkt_free(m->cur_gslot);
    vkt_stream_destroy(m->zero);
    vkt_stream_destroy(m->opt_stream);
    vkt_stream_destroy(m->sumsq_stream);
    vkt_buffer_destroy(m->sumsq_partials);
    vkt_buffer_destroy(m->drop_state);
    vkt__nn_graph_free(&m->g);
    vkt_buffer_destroy(m->arena);
    if (m->copy != m->master) vkt_buffer_destroy(m->copy);
    vkt_buffer_destroy(m->master);
    vkt_buffer_destroy(m->grads);
    vkt_buffer_destroy(m->grad_stage);
    vkt_buffer_destroy(m->opt_m);
    vkt_buffer_destroy(m->opt_v);
    vkt_buffer_destroy(m->hyper);
    vkt__ops_destroy(m->ops);
    vkt_free(m->param_ids);
    vkt_free(m->param_names);
    vkt_free(m->pieces);
    vkt_free(m);
}

static vkt_status check_gpt_batch(const vkt_model *m, const vkt_batch *b)
{
    VKT_FAIL_IF(!b->tokens || !b->labels || b->seq_len == 0 || b->seq_len > m->context,
                VKT_ERR_INVALID_ARG,
                "vkt_model_forward: a GPT batch needs tokens, labels and seq_len 1..%u (got "
                "%u)", m->context, b->seq_len);
    uint64_t n = (uint64_t)b->size * b->seq_len;
    /* Shapes are 32-bit inside the kernels: rows, and the attention scores. */
    VKT_FAIL_IF(n > UINT32_MAX / m->channels / 4 ||
                    (uint64_t)b->size * m->heads * b->seq_len * b->seq_len > UINT32_MAX,
                VKT_ERR_INVALID_ARG,
                "vkt_model_forward: a batch of %u sequences of %u tokens is too large; split "
                "it into micro-batches", b->size, b->seq_len);
    for (uint64_t i = 0; i < n; i++) {
        VKT_FAIL_IF(b->tokens[i] < 0 || b->tokens[i] >= (int32_t)m->vocab, VKT_ERR_INVALID_ARG,
                    "vkt_model_forward: token %d at position %llu is outside the vocabulary "
                    "0..%u; check the tokenizer matches the model", b->tokens[i],
                    (unsigned long long)i, m->vocab - 1);
        VKT_FAIL_IF(b->labels[i] < -1 || b->labels[i] >= (int32_t)m->vocab, VKT_ERR_INVALID_ARG,
                    "vkt_model_forward: label %d at position %llu is outside 0..%u (or -1)",
                    b->labels[i], (unsigned long long)i, m->vocab - 1);
    }
    return VKT_OK;
}

static vkt_status check_batch(const vkt_model *m, const vkt_batch *b)
{
    VKT_FAIL_IF(!b || b->size == 0, VKT_ERR_INVALID_ARG,
                "vkt_model_forward: the batch needs size >= 1");
    if (m->gpt) return check_gpt_batch(m, b);
    VKT_FAIL_IF(!b->inputs, VKT_ERR_INVALID_ARG, "vkt_model_forward: the batch needs inputs");
    VKT_FAIL_IF(m->loss == VKT_LOSS_XENT && !b->labels, VKT_ERR_INVALID_ARG,
                "vkt_model_forward: a cross-entropy model needs batch.labels");
    VKT_FAIL_IF(m->loss == VKT_LOSS_MSE && !b->targets_f, VKT_ERR_INVALID_ARG,
                "vkt_model_forward: an MSE model needs batch.targets_f");
    if (m->loss == VKT_LOSS_XENT)
        for (uint32_t i = 0; i < b->size; i++)
            VKT_FAIL_IF(b->labels[i] < -1 || b->labels[i] >= (int32_t)m->out_features,
                        VKT_ERR_INVALID_ARG,
                        "vkt_model_forward: label %d of sample %u is outside 0..%u (or -1 to "
                        "ignore); check the data set's label range", b->labels[i], i,
                        m->out_features - 1);
    return VKT_OK;
}

/* The loss denominator of this batch: samples (XENT: non-ignored labels)
 * or, for MSE, elements; loss_denominator overrides the sample count. */
static uint64_t denominator(const vkt_model *m, const vkt_batch *b)
{
    uint64_t den = b->loss_denominator, rows = (uint64_t)b->size * (m->gpt ? b->seq_len : 1);
    if (!den && m->loss == VKT_LOSS_XENT)
        for (uint64_t i = 0; i < rows; i++) den += b->labels[i] != -1;
    if (!den) den = rows;
    return m->loss == VKT_LOSS_MSE ? den * m->out_features : den;
}

static vkt_status prepare(vkt_model *m, uint32_t batch, uint32_t seq)
{
    if (m->batch == batch && m->seq == seq) return VKT_OK;
    m->rec_denominator = 0;
    vkt_status st = vkt__nn_build(m, batch, seq);
    if (st == VKT_OK) st = vkt__nn_record_forward(m);
    if (st != VKT_OK) m->batch = 0; /* never replay a half-built graph */
    return st;
}

/* Upload n floats into an input buffer of dtype t (converted for f16/bf16). */
static vkt_status upload_as(vkt_buffer *buf, vkt_dtype t, const float *src, uint64_t n)
{
    if (t == VKT_DTYPE_F32) return vkt_buffer_upload(buf, 0, src, n * 4);
    void *tmp = vkt_malloc(n * vkt_dtype_size(t) + 1);
    VKT_FAIL_IF(!tmp, VKT_ERR_NOMEM, "model: out of host memory for the batch");
    vkt__dtype_from_f32(t, tmp, src, n);
    vkt_status st = vkt_buffer_upload(buf, 0, tmp, n * vkt_dtype_size(t));
    vkt_free(tmp);
    return st;
}

vkt_status vkt_model_set_dropout(vkt_model *m, bool training, uint64_t step)
{
    VKT_FAIL_IF(!m, VKT_ERR_INVALID_ARG, "vkt_model_set_dropout: model is NULL");
    m->drop_training = training;
    m->drop_step = step;
    m->drop_step_set = true;
    return VKT_OK;
}

/* The dropout state of this forward: keys for (seed, step), the batch's
 * first sample, p (0 when evaluating: the kernels copy). Written while no
 * submitted work reads it (the last backward was waited for; a forward is
 * always waited for before its call returns). */
static vkt_status write_dropout_state(vkt_model *m, const vkt_batch *b)
{
    if (!m->drop_state) return VKT_OK;
    uint64_t step = m->drop_step_set ? m->drop_step : m->opt_step;
    return vkt_dropout_state_fill(vkt_buffer_host_ptr(m->drop_state), m->drop_sites, m->seed,
                                  step, b->first_sample, m->drop_training ? m->dropout : 0.0f);
}

vkt_status vkt__nn_forward_begin(vkt_model *m, const vkt_batch *b)
{
    VKT_CHECK(vkt_model_backward_wait(m)); /* it reads the inputs we overwrite */
    m->have_forward = false;
    VKT_CHECK(check_batch(m, b));
    uint32_t seq = m->gpt ? b->seq_len : 1;
    VKT_CHECK(prepare(m, b->size, m->gpt ? seq : 0));
    VKT_CHECK(write_dropout_state(m, b));
    const nn_graph *g = &m->g;
    uint64_t rows = (uint64_t)b->size * seq;
    if (m->gpt) VKT_CHECK(vkt_buffer_upload(g->t[m->x_id].input, 0, b->tokens, rows * 4));
    else VKT_CHECK(upload_as(g->t[m->x_id].input, m->dtype, b->inputs, rows * m->in_features));
    if (m->loss == VKT_LOSS_XENT)
        return vkt_buffer_upload(g->t[m->y_id].input, 0, b->labels, rows * 4);
    return upload_as(g->t[m->y_id].input, m->dtype, b->targets_f, rows * m->out_features);
}

vkt_status vkt__nn_forward_submit(vkt_model *m, vkt_timeline *tl, uint64_t base,
                                  vkt_timeline *gather_tl, uint64_t gbase)
{
    for (uint32_t i = 0; i < m->nfseg; i++) {
        vkt_sync_point sig = {tl, base + i + 1}, wait = {gather_tl, gbase + i + 1};
        vkt_submit_opts o = VKT_SUBMIT_OPTS_INIT;
        o.signals = &sig;
        o.signal_count = tl ? 1 : 0;
        o.waits = &wait;
        o.wait_count = gather_tl ? 1 : 0;
        VKT_CHECK(vkt_stream_submit(m->fseg[i], &o));
    }
    return VKT_OK;
}

vkt_status vkt__nn_forward_end(vkt_model *m, const vkt_batch *b, float *loss)
{
    for (uint32_t i = 0; m->gather_mode && i < m->nfseg; i++)
        VKT_CHECK(vkt_stream_wait(m->fseg[i], UINT64_MAX));
    m->cur_denominator = denominator(m, b);
    m->have_forward = true;
    if (!loss) return VKT_OK;
    const nn_tensor *lt = &m->g.t[m->loss_id];
    const float *parts = vkt_buffer_host_ptr(lt->input);
    double sum = 0;
    for (uint64_t i = 0; i < lt->numel; i++) sum += parts[i];
    *loss = (float)(sum / (double)m->cur_denominator);
    return VKT_OK;
}

vkt_status vkt_model_forward(vkt_model *m, const vkt_batch *b, float *loss)
{
    VKT_FAIL_IF(!m, VKT_ERR_INVALID_ARG, "vkt_model_forward: model is NULL");
    VKT_FAIL_IF(m->gather_mode, VKT_ERR_INVALID_USAGE,
                "vkt_model_forward: this model's parameters are partitioned across ranks "
                "(ZeRO-3); run it through its engine (vkt_engine_forward, vkt_engine_eval)");
    VKT_CHECK(vkt__nn_forward_begin(m, b));
    VKT_CHECK(vkt_stream_run(m->fwd));
    return vkt__nn_forward_end(m, b, loss);
}

vkt_status vkt_model_set_loss_scale(vkt_model *m, float scale)
{
    VKT_FAIL_IF(!m, VKT_ERR_INVALID_ARG, "vkt_model_set_loss_scale: model is NULL");
    VKT_FAIL_IF(!(scale > 0) || isinf(scale), VKT_ERR_INVALID_ARG,
                "vkt_model_set_loss_scale: the scale must be positive and finite (got %g)",
                (double)scale);
    m->loss_scale = scale;
    return VKT_OK;
}

vkt_status vkt__nn_backward_submit(vkt_model *m, vkt_timeline *tl, uint64_t base,
                                   vkt_timeline *slot_tl, uint64_t slot_base,
                                   vkt_timeline *gather_tl, uint64_t gbase)
{
    VKT_FAIL_IF(!m, VKT_ERR_INVALID_ARG, "vkt_model_backward: model is NULL");
    VKT_FAIL_IF(!m->have_forward, VKT_ERR_INVALID_USAGE,
                "vkt_model_backward: no forward pass to go back through; call "
                "vkt_model_forward first");
    VKT_FAIL_IF((m->slot_mode && !slot_tl) || (m->gather_mode && !gather_tl),
                VKT_ERR_INVALID_USAGE,
                "vkt_model_backward: this model's gradients go through the engine's slots "
                "(ZeRO-2); train it with vkt_engine_backward");
    if (m->rec_denominator != m->cur_denominator || m->rec_loss_scale != m->loss_scale)
        VKT_CHECK(vkt__nn_record_backward(m, m->cur_denominator));
    m->have_forward = false;
    for (uint32_t i = 0; i < m->nseg; i++) {
        vkt_sync_point sig = {tl, base + i + 1}, waits[2];
        vkt_submit_opts o = VKT_SUBMIT_OPTS_INIT;
        o.signals = &sig;
        o.signal_count = tl ? 1 : 0;
        o.waits = waits;
        if (m->slot_mode && m->seg_wait[i])
            waits[o.wait_count++] = (vkt_sync_point){slot_tl, slot_base + m->seg_wait[i]};
        if (m->gather_mode) waits[o.wait_count++] = (vkt_sync_point){gather_tl, gbase + i + 1};
        VKT_CHECK(vkt_stream_submit(m->bwd[i], &o));
    }
    return VKT_OK;
}

vkt_status vkt_model_backward_submit(vkt_model *m, vkt_timeline *tl, uint64_t base)
{
    return vkt__nn_backward_submit(m, tl, base, NULL, 0, NULL, 0);
}

vkt_status vkt_model_backward_wait(vkt_model *m)
{
    VKT_FAIL_IF(!m, VKT_ERR_INVALID_ARG, "vkt_model_backward_wait: model is NULL");
    for (uint32_t i = 0; i < m->nseg; i++) VKT_CHECK(vkt_stream_wait(m->bwd[i], UINT64_MAX));
    for (uint32_t i = 0; m->gather_mode && i < m->nfseg; i++)
        VKT_CHECK(vkt_stream_wait(m->fseg[i], UINT64_MAX));
    return VKT_OK;
}

vkt_status vkt_model_backward(vkt_model *m)
{
    VKT_CHECK(vkt_model_backward_submit(m, NULL, 0));
    return vkt_model_backward_wait(m);
}

vkt_status vkt_model_zero_grad(vkt_model *m)
{
    VKT_FAIL_IF(!m, VKT_ERR_INVALID_ARG, "vkt_model_zero_grad: model is NULL");
    VKT_CHECK(vkt_model_backward_wait(m));
    if (!m->zero) VKT_CHECK(vkt__nn_record_zero(m));
    return vkt_stream_run(m->zero);
}

void vkt_model_memory_report(const vkt_model *m, vkt_model_memory *out)
{
    if (!out) return;
    if (!m) {
        *out = (vkt_model_memory){0, 0, 0, 0, 0};
        return;
    }
    uint64_t es = vkt_dtype_size(m->dtype);
    *out = (vkt_model_memory){
        .params = vkt__nn_len(m, m->master_packed) * 4 +
                  (m->copy != m->master ? vkt__nn_len(m, m->copy_packed) * es : 0) +
                  m->gslot_len * es,
        .grads = (vkt__nn_len(m, m->grads_packed) + m->slot_len) * es,
        .optimizer = ((m->opt_m ? 1 : 0) + (m->opt_v ? 1 : 0)) * m->shard_len * 4,
        .activations_planned = m->arena_bytes,
        .activations_naive = m->arena_naive,
    };
}
