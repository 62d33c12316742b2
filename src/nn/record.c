/* Recording a model's op list into command streams: forward in order,
 * backward in reverse (each backward accumulates; activation gradients are
 * zeroed right before their first write, since the planner reuses memory). */
#include <string.h>

#include "nn/nn_int.h"

static vkt_tref view(const vkt_model *m, uint32_t id)
{
    if (id == VKT_NN_NONE) return (vkt_tref){NULL, 0};
    const nn_tensor *t = &m->g.t[id];
    switch (t->kind) {
    case T_PARAM: {
        uint64_t es = vkt_dtype_size(t->dtype);
        if (!m->gather_mode) return (vkt_tref){m->copy, t->offset * es};
        /* ZeRO-3: the slot its group resides in during this segment */
        uint32_t b = vkt__nn_bucket_of(m, t->offset), k = m->cur_gslot[b];
        if (k == VKT_NN_NONE) return (vkt_tref){NULL, 0}; /* the op refuses it */
        return (vkt_tref){m->gslots[k], (t->offset - (b ? m->bucket_ends[b - 1] : 0)) * es};
    }
    case T_INPUT: return (vkt_tref){t->input, 0};
    default: return (vkt_tref){m->arena, t->offset};
    }
}

/* The gradient of tensor id: a GRAD in the arena, or the param's grad view. */
static vkt_tref grad_view(const vkt_model *m, uint32_t id)
{
    if (id == VKT_NN_NONE) return (vkt_tref){NULL, 0};
    const nn_tensor *t = &m->g.t[id];
    uint64_t es = vkt_dtype_size(t->dtype);
    if (t->kind == T_PARAM && m->slot_mode && !m->bucket_slot) /* a forward: unused */
        return (vkt_tref){m->grads, 0};
    if (t->kind == T_PARAM && m->slot_mode) { /* its bucket's slot */
        uint32_t b = vkt__nn_bucket_of(m, t->offset);
        uint64_t lo = b ? m->bucket_ends[b - 1] : 0;
        return (vkt_tref){m->slots[m->bucket_slot[b]], (t->offset - lo) * es};
    }
    if (t->kind == T_PARAM) return (vkt_tref){m->grads, t->offset * es}; /* whole */
    return t->grad == VKT_NN_NONE ? (vkt_tref){NULL, 0} : view(m, t->grad);
}

vkt_status vkt__nn_loss_node(vkt_model *m, uint32_t pred, uint32_t b)
{
    nn_graph *g = &m->g;
    uint32_t rows[1] = {b}, full[2] = {b, m->out_features};
    nn_node n = {.kind = m->loss == VKT_LOSS_XENT ? N_XENT : N_MSE, .rows = b,
                 .cout = m->out_features,
                 .in = {pred, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE},
                 .out = {VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE}};
    if (m->loss == VKT_LOSS_XENT) {
        m->y_id = vkt__nn_tensor(g, "labels", T_INPUT, VKT_DTYPE_I32, 1, rows);
        m->loss_id = vkt__nn_tensor(g, "losses", T_INPUT, VKT_DTYPE_F32, 1, rows);
    } else {
        uint32_t np[1] = {vkt_op_mse_partials(m->ops, (uint64_t)b * m->out_features)};
        m->y_id = vkt__nn_tensor(g, "targets", T_INPUT, m->dtype, 2, full);
        m->loss_id = vkt__nn_tensor(g, "loss_partials", T_INPUT, VKT_DTYPE_F32, 1, np);
    }
    VKT_FAIL_IF(m->y_id == VKT_NN_NONE || m->loss_id == VKT_NN_NONE, VKT_ERR_NOMEM,
                "model: out of host memory");
    n.in[1] = m->y_id;
    n.out[0] = m->loss_id;
    return vkt__nn_node(g, n);
}

static vkt_status linear_fwd(vkt_model *m, vkt_stream *s, const nn_node *n)
{
    /* y[B,out] = x[B,in] · W[out,in]ᵀ + b */
    vkt_matmul_args mm = {.c = view(m, n->out[0]), .a = view(m, n->in[0]),
                          .b = view(m, n->in[1]), .m = n->rows, .n = n->cout, .k = n->cin,
                          .layout = VKT_MATMUL_NT, .t = m->dtype};
    VKT_CHECK(vkt_op_matmul(m->ops, s, &mm));
    if (n->in[2] == VKT_NN_NONE) return VKT_OK;
    VKT_CHECK(vkt_stream_barrier(s));
    return vkt_op_bias_fwd(m->ops, s, view(m, n->out[0]), view(m, n->out[0]),
                           view(m, n->in[2]), m->dtype, n->rows, n->cout);
}

static vkt_status linear_bwd(vkt_model *m, vkt_stream *s, const nn_node *n)
{
    vkt_tref dy = grad_view(m, n->out[0]);
    /* db[out] += Σ_B dy ; dW[out,in] += dyᵀ[out,B] · x[B,in] */
    if (n->in[2] != VKT_NN_NONE)
        VKT_CHECK(vkt_op_bias_bwd(m->ops, s, grad_view(m, n->in[2]), dy, m->dtype, n->rows,
                                  n->cout));
    vkt_matmul_args dw = {.c = grad_view(m, n->in[1]), .a = dy, .b = view(m, n->in[0]),
                          .m = n->cout, .n = n->cin, .k = n->rows, .layout = VKT_MATMUL_TN,
                          .accumulate = true, .t = m->dtype};
    VKT_CHECK(vkt_op_matmul(m->ops, s, &dw));
    if (m->g.t[n->in[0]].kind == T_INPUT) return VKT_OK; /* no gradient for the data */
    /* dx[B,in] += dy[B,out] · W[out,in] */
    vkt_matmul_args dx = {.c = grad_view(m, n->in[0]), .a = dy, .b = view(m, n->in[1]),
                          .m = n->rows, .n = n->cin, .k = n->cout, .layout = VKT_MATMUL_NN,
                          .accumulate = true, .t = m->dtype};
    return vkt_op_matmul(m->ops, s, &dx);
}

static vkt_status layernorm_fwd(vkt_model *m, vkt_stream *s, const nn_node *n)
{
    vkt_layernorm_args a = {.out = view(m, n->out[0]), .in = view(m, n->in[0]),
                            .weight = view(m, n->in[1]), .bias = view(m, n->in[2]),
                            .mean = view(m, n->out[1]), .rstd = view(m, n->out[2]),
                            .t = m->dtype, .n = n->rows, .c = n->cout, .eps = n->eps};
    return vkt_op_layernorm_fwd(m->ops, s, &a);
}

static vkt_status layernorm_bwd(vkt_model *m, vkt_stream *s, const nn_node *n)
{
    vkt_layernorm_bwd_args a = {.din = grad_view(m, n->in[0]), .dweight = grad_view(m, n->in[1]),
                                .dbias = grad_view(m, n->in[2]), .dout = grad_view(m, n->out[0]),
                                .in = view(m, n->in[0]), .weight = view(m, n->in[1]),
                                .mean = view(m, n->out[1]), .rstd = view(m, n->out[2]),
                                .t = m->dtype, .n = n->rows, .c = n->cout};
    return vkt_op_layernorm_bwd(m->ops, s, &a);
}

static vkt_embed_args embed_args(const vkt_model *m, const nn_node *n)
{
    return (vkt_embed_args){.out = view(m, n->out[0]), .tokens = view(m, n->in[0]),
                            .wte = view(m, n->in[1]), .wpe = view(m, n->in[2]),
                            .dwte = grad_view(m, n->in[1]), .dwpe = grad_view(m, n->in[2]),
                            .dout = grad_view(m, n->out[0]), .t = m->dtype, .b = n->b,
                            .t_len = n->t_len, .c = n->cout, .vocab = n->vocab};
}

static vkt_attention_args attention_args(const vkt_model *m, const nn_node *n)
{
    return (vkt_attention_args){.out = view(m, n->out[0]), .qkv = view(m, n->in[0]),
                                .att = view(m, n->out[1]), .dqkv = grad_view(m, n->in[0]),
                                .dout = grad_view(m, n->out[0]), .t = m->dtype, .b = n->b,
                                .t_len = n->t_len, .c = n->cout, .heads = n->heads,
                                .datt = view(m, n->scratch)};
}

/* DROPOUT: forward (out = in ⊙ mask) or backward (d in += d out ⊙ mask). */
static vkt_status dropout(vkt_model *m, vkt_stream *s, const nn_node *n, bool bwd)
{
    vkt_dropout_args a = {.out = bwd ? grad_view(m, n->in[0]) : view(m, n->out[0]),
                          .in = bwd ? grad_view(m, n->out[0]) : view(m, n->in[0]),
                          .state = {m->drop_state, 0}, .t = m->dtype, .n = n->rows,
                          .c = n->cout, .site = n->site};
    return bwd ? vkt_op_dropout_bwd(m->ops, s, &a) : vkt_op_dropout_fwd(m->ops, s, &a);
}

static vkt_status node_fwd(vkt_model *m, vkt_stream *s, const nn_node *n)
{
    uint64_t count = (uint64_t)n->rows * n->cout;
    switch (n->kind) {
    case N_LINEAR: return linear_fwd(m, s, n);
    case N_ADD:
        return vkt_op_add_fwd(m->ops, s, view(m, n->out[0]), view(m, n->in[0]),
                              view(m, n->in[1]), m->dtype, count);
    case N_LAYERNORM: return layernorm_fwd(m, s, n);
    case N_EMBED: {
        vkt_embed_args a = embed_args(m, n);
        return vkt_op_embed_fwd(m->ops, s, &a);
    }
    case N_ATTENTION: {
        vkt_attention_args a = attention_args(m, n);
        return vkt_op_attention_fwd(m->ops, s, &a);
    }
    case N_ACT:
        return vkt_op_act_fwd(m->ops, s, n->act, view(m, n->out[0]), view(m, n->in[0]),
                              m->dtype, count);
    case N_XENT: {
        vkt_xent_args x = {.losses = view(m, n->out[0]), .logits = view(m, n->in[0]),
                           .targets = view(m, n->in[1]), .t = m->dtype, .n = n->rows,
                           .v = n->cout, .ignore_index = -1, .scale = 1.0f};
        return vkt_op_xent_fwd(m->ops, s, &x);
    }
    case N_MSE:
        return vkt_op_mse_fwd(m->ops, s, view(m, n->out[0]), view(m, n->in[0]),
                              view(m, n->in[1]), m->dtype, count, 1.0f);
    case N_DROPOUT: return dropout(m, s, n, false);
    }
    return VKT_ERROR(VKT_ERR_INTERNAL, "model: unknown node kind %d", (int)n->kind);
}

static vkt_status node_bwd(vkt_model *m, vkt_stream *s, const nn_node *n, float scale)
{
    uint64_t count = (uint64_t)n->rows * n->cout;
    switch (n->kind) {
    case N_LINEAR: return linear_bwd(m, s, n);
    case N_ADD:
        VKT_CHECK(vkt_op_accumulate(m->ops, s, grad_view(m, n->in[0]), grad_view(m, n->out[0]),
                                    1.0f, m->dtype, count));
        return vkt_op_accumulate(m->ops, s, grad_view(m, n->in[1]), grad_view(m, n->out[0]),
                                 1.0f, m->dtype, count);
    case N_LAYERNORM: return layernorm_bwd(m, s, n);
    case N_EMBED: {
        vkt_embed_args a = embed_args(m, n);
        return vkt_op_embed_bwd(m->ops, s, &a);
    }
    case N_ATTENTION: {
        vkt_attention_args a = attention_args(m, n);
        return vkt_op_attention_bwd(m->ops, s, &a);
    }
    case N_ACT:
        return vkt_op_act_bwd(m->ops, s, n->act, grad_view(m, n->in[0]), view(m, n->in[0]),
                              grad_view(m, n->out[0]), m->dtype, count);
    case N_XENT: {
        vkt_xent_args x = {.dlogits = grad_view(m, n->in[0]), .logits = view(m, n->in[0]),
                           .targets = view(m, n->in[1]), .t = m->dtype, .n = n->rows,
                           .v = n->cout, .ignore_index = -1, .scale = scale};
        return vkt_op_xent_bwd(m->ops, s, &x);
    }
    case N_MSE:
        return vkt_op_mse_bwd(m->ops, s, grad_view(m, n->in[0]), view(m, n->in[0]),
                              view(m, n->in[1]), m->dtype, count, scale, 1.0f);
    case N_DROPOUT: return dropout(m, s, n, true);
    }
    return VKT_ERROR(VKT_ERR_INTERNAL, "model: unknown node kind %d", (int)n->kind);
}

/* Make room for n segment streams in *streams (*cap of them). */
static vkt_status segment_streams(vkt_model *m, vkt_stream ***streams, uint32_t *cap, uint32_t n)
{
    if (n > *cap) {
        vkt_stream **s = vkt_realloc(*streams, n * sizeof *s);
        VKT_FAIL_IF(!s, VKT_ERR_NOMEM, "model: out of host memory");
        memset(s + *cap, 0, (n - *cap) * sizeof *s);
        *streams = s;
        *cap = n;
    }
    for (uint32_t i = 0; i < n; i++)
        if (!(*streams)[i]) VKT_CHECK(vkt_stream_create(m->dev, &(*streams)[i]));
    return VKT_OK;
}

/* ZeRO-3: the forward in segments, each reading its groups from the
 * gather slots the plan gives them. */
static vkt_status record_forward_segments(vkt_model *m)
{
    VKT_CHECK(vkt__nn_plan_gathers(m));
    VKT_CHECK(segment_streams(m, &m->fseg, &m->cap_fseg, m->nfseg));
    bool *start = vkt_calloc(m->g.nn ? m->g.nn : 1, sizeof *start);
    VKT_FAIL_IF(!start, VKT_ERR_NOMEM, "model: out of host memory");
    vkt_status st = vkt__nn_forward_cuts(m, start);
    uint32_t seg = 0;
    vkt__nn_gather_enter(m, m->fgath, m->nfgath, 0);
    if (st == VKT_OK) st = vkt_stream_begin(m->fseg[0]);
    for (uint32_t i = 0; i < m->g.nn && st == VKT_OK; i++) {
        if (start[i]) {
            st = vkt_stream_end(m->fseg[seg]);
            if (st == VKT_OK) st = vkt_stream_begin(m->fseg[++seg]);
            vkt__nn_gather_enter(m, m->fgath, m->nfgath, seg);
        }
        if (st == VKT_OK) st = node_fwd(m, m->fseg[seg], &m->g.n[i]);
        if (st == VKT_OK) st = vkt_stream_barrier(m->fseg[seg]);
    }
    vkt_free(start);
    if (st == VKT_OK && seg + 1 != m->nfseg)
        st = VKT_ERROR(VKT_ERR_INTERNAL, "model: the forward has %u segments, its plan %u",
                       seg + 1, m->nfseg);
    return st == VKT_OK ? vkt_stream_end(m->fseg[seg]) : st;
}

vkt_status vkt__nn_record_forward(vkt_model *m)
{
    if (m->gather_mode) return record_forward_segments(m);
    if (!m->fwd) VKT_CHECK(vkt_stream_create(m->dev, &m->fwd));
    VKT_CHECK(vkt_stream_begin(m->fwd));
    for (uint32_t i = 0; i < m->g.nn; i++) {
        VKT_CHECK(node_fwd(m, m->fwd, &m->g.n[i]));
        VKT_CHECK(vkt_stream_barrier(m->fwd));
    }
    return vkt_stream_end(m->fwd);
}

/* Zero the activation gradients this node writes first (in backward order,
 * the first writer of d(x) is the last forward consumer of x). */
static vkt_status zero_first_writes(vkt_model *m, vkt_stream *s, const nn_node *n, bool *zeroed)
{
    for (int k = 0; k < VKT_NN_MAX_IO; k++) {
        uint32_t in = n->in[k];
        if (in == VKT_NN_NONE || m->g.t[in].kind != T_ACT || m->g.t[in].grad == VKT_NN_NONE ||
            zeroed[in])
            continue;
        const nn_tensor *d = &m->g.t[m->g.t[in].grad];
        VKT_CHECK(vkt_op_zero(m->ops, s, view(m, m->g.t[in].grad), d->dtype, d->numel));
        zeroed[in] = true;
    }
    return vkt_stream_barrier(s);
}

/* Zero n elements at element `at` of buf, window by window. */
static vkt_status zero_range(vkt_model *m, vkt_stream *s, vkt_buffer *buf, uint64_t at,
                             uint64_t n)
{
    uint64_t w = vkt__nn_param_window(m), es = vkt_dtype_size(m->dtype);
    for (uint64_t k = 0; k < n; k += w)
        VKT_CHECK(vkt_op_zero(m->ops, s, (vkt_tref){buf, (at + k) * es}, m->dtype,
                              n - k < w ? n - k : w));
    return VKT_OK;
}

/* Slot mode: at the start of segment seg, zero the slots of the buckets it
 * writes first (backward accumulates into them). */
static vkt_status zero_slots(vkt_model *m, vkt_stream *s, uint32_t seg)
{
    if (!m->slot_mode) return VKT_OK;
    for (uint32_t b = 0; b < m->nbuckets; b++) {
        if (m->bucket_first_seg[b] != seg) continue;
        uint64_t lo = b ? m->bucket_ends[b - 1] : 0;
        VKT_CHECK(zero_range(m, s, m->slots[m->bucket_slot[b]], 0, m->bucket_ends[b] - lo));
    }
    return vkt_stream_barrier(s);
}

/* Staging: at the end of segment seg, copy the buckets it finalises into
 * grad_stage (the stream's end makes the copies visible to the host). */
static vkt_status stage_buckets(vkt_model *m, vkt_stream *s, uint32_t seg)
{
    uint64_t es = vkt_dtype_size(m->dtype);
    for (uint32_t b = 0; m->grad_stage && b < m->nbuckets; b++) {
        if (m->bucket_seg[b] != seg) continue;
        uint64_t lo = b ? m->bucket_ends[b - 1] : 0;
        VKT_CHECK(vkt_stream_copy(s, m->grads, lo * es, m->grad_stage, lo * es,
                                  (m->bucket_ends[b] - lo) * es));
    }
    return VKT_OK;
}

/* Backward in reverse node order, one stream per segment (buckets.c says
 * where segments end). The loss gradient is scale = loss_scale / den. */
vkt_status vkt__nn_record_backward(vkt_model *m, uint64_t den)
{
    m->rec_denominator = 0; /* until this recording is complete */
    bool *zeroed = vkt_calloc(m->g.nt, sizeof *zeroed);
    bool *seg_end = vkt_calloc(m->g.nn ? m->g.nn : 1, sizeof *seg_end);
    vkt_status st = zeroed && seg_end ? VKT_OK
                                      : VKT_ERROR(VKT_ERR_NOMEM, "model: out of host memory");
    if (st == VKT_OK) st = vkt__nn_plan_segments(m, seg_end);
    if (st == VKT_OK && m->slot_mode) st = vkt__nn_assign_slots(m);
    if (st == VKT_OK) st = segment_streams(m, &m->bwd, &m->cap_seg, m->nseg);
    if (st == VKT_OK && m->gather_mode && !m->bgath) st = vkt__nn_plan_gathers(m);
    float scale = (float)((double)m->loss_scale / (double)den);
    uint32_t seg = 0;
    if (st == VKT_OK && m->gather_mode) vkt__nn_gather_enter(m, m->bgath, m->nbgath, 0);
    if (st == VKT_OK) st = vkt_stream_begin(m->bwd[0]);
    if (st == VKT_OK) st = zero_slots(m, m->bwd[0], 0);
    for (uint32_t i = m->g.nn; i-- > 0 && st == VKT_OK;) {
        vkt_stream *s = m->bwd[seg];
        st = zero_first_writes(m, s, &m->g.n[i], zeroed);
        if (st == VKT_OK) st = node_bwd(m, s, &m->g.n[i], scale);
        if (st == VKT_OK) st = vkt_stream_barrier(s);
        if (st == VKT_OK && seg_end[i]) {
            st = stage_buckets(m, s, seg);
            if (st == VKT_OK) st = vkt_stream_end(s);
            if (st == VKT_OK && ++seg < m->nseg) st = vkt_stream_begin(m->bwd[seg]);
            if (st == VKT_OK && seg < m->nseg && m->gather_mode)
                vkt__nn_gather_enter(m, m->bgath, m->nbgath, seg);
            if (st == VKT_OK && seg < m->nseg) st = zero_slots(m, m->bwd[seg], seg);
        }
    }
    vkt_free(zeroed);
    vkt_free(seg_end);
    if (st == VKT_OK) {
        m->rec_denominator = den;
        m->rec_loss_scale = m->loss_scale;
    }
    return st;
}

vkt_status vkt__nn_record_zero(vkt_model *m)
{
    if (!m->zero) VKT_CHECK(vkt_stream_create(m->dev, &m->zero));
    VKT_CHECK(vkt_stream_begin(m->zero));
    VKT_CHECK(zero_range(m, m->zero, m->grads, 0, vkt__nn_len(m, m->grads_packed)));
    return vkt_stream_end(m->zero);
}
