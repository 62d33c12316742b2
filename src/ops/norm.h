/* Row-wise ops: LayerNorm, fused softmax + cross-entropy, embeddings
 * (conventions in ops_int.h). Activations, weights and their gradients are
 * of dtype `t` (f32, f16, bf16); statistics and losses are fp32; arithmetic
 * is fp32. Backward ops accumulate (+=). */
#ifndef VKT_OPS_NORM_H
#define VKT_OPS_NORM_H

#include "ops/ops_int.h"

/* ---- LayerNorm over the last dimension --------------------------------------
 * out[n,:] = (in[n,:] - mean_n) · rstd_n · weight + bias, with
 * rstd_n = 1/sqrt(var_n + eps) (biased variance, as PyTorch). Forward also
 * saves mean[n] and rstd[n] (fp32) for backward. weight and bias are
 * required (eps > 0). One dispatch per 65535 row blocks.
 * Errors: VKT_ERR_INVALID_ARG (dims 0, a view outside its buffer, n·c ≥ 2^31,
 * or, in the CPU family, c > 174k or n > 524k: llvmpipe's per-invocation
 * loop budget), VKT_ERR_UNSUPPORTED (16-bit dtype without 16-bit storage). */
typedef struct vkt_layernorm_args {
    vkt_tref out, in, weight, bias;
    vkt_tref mean, rstd; /* fp32 [n] */
    vkt_dtype t;
    uint32_t n, c;
    float eps;
} vkt_layernorm_args;
vkt_status vkt_op_layernorm_fwd(vkt_ops *ops, vkt_stream *s, const vkt_layernorm_args *a);

/* din += ∂L/∂in, dweight += Σ_n dout·x̂, dbias += Σ_n dout (all three
 * required). Records two independent dispatches (input gradient; column
 * sums in a fixed order, no atomics, so the result is bit-reproducible). */
typedef struct vkt_layernorm_bwd_args {
    vkt_tref din, dweight, dbias;
    vkt_tref dout, in, weight, mean, rstd;
    vkt_dtype t;
    uint32_t n, c;
} vkt_layernorm_bwd_args;
vkt_status vkt_op_layernorm_bwd(vkt_ops *ops, vkt_stream *s, const vkt_layernorm_bwd_args *a);

/* ---- softmax + cross-entropy, fused ---------------------------------------
 * logits [n, v]; targets int32 [n], a target equal to ignore_index
 * contributes nothing. Forward: losses[r] (fp32 [n]) = -log softmax(logits
 * [r])[target r], 0 for ignored rows. Backward: dlogits[r,:] +=
 * (softmax(logits[r]) - onehot(target r)) · scale, where the caller passes
 * scale = grad_scale / (number of non-ignored targets in the global batch),
 * so that accumulation and data parallelism equal one big batch. dlogits may
 * be the logits buffer itself (overwritten, not accumulated) when
 * in_place is true — the memory-saving path of llm.c.
 * Details: forward reads only losses, logits, targets (dlogits, scale and
 * in_place are ignored). in_place needs dlogits to be the logits view
 * itself or {NULL}; record the forward (and a barrier) before an in-place
 * backward, which destroys the logits; ignored rows are then zeroed.
 * Without in_place, dlogits must not overlap logits. A target outside
 * [0, v) that is not ignore_index gives a NaN loss and NaN gradients for its
 * row (bad data is loud). The softmax is max-subtracted (logits of 1e4 are
 * fine) and v is looped over, so any v works, up to 262k classes in the CPU
 * family (llvmpipe's loop budget; the GPU family has no such bound).
 * Errors: VKT_ERR_INVALID_ARG, VKT_ERR_UNSUPPORTED as for LayerNorm. */
typedef struct vkt_xent_args {
    vkt_tref losses, dlogits, logits, targets;
    vkt_dtype t;
    uint32_t n, v;
    int32_t ignore_index;
    float scale;
    bool in_place;
} vkt_xent_args;
vkt_status vkt_op_xent_fwd(vkt_ops *ops, vkt_stream *s, const vkt_xent_args *a);
vkt_status vkt_op_xent_bwd(vkt_ops *ops, vkt_stream *s, const vkt_xent_args *a);

/* ---- token + position embedding --------------------------------------------
 * out[b,t,:] = wte[tokens[b,t], :] + wpe[t, :]   (tokens int32 [b·t], values
 * checked on the host side of the loader, not here; an out-of-range token
 * reads zeros). Backward accumulates dwte and dwpe deterministically (no
 * float atomics: the sum order is fixed, so replicas stay bit-identical).
 * wte is [vocab, c], wpe at least [t_len, c]; forward uses out, tokens,
 * wte, wpe; backward uses dwte, dwpe, dout, tokens (all required). An
 * out-of-range token adds nothing to dwte. The dwte pass costs
 * O(vocab · b·t) compares plus O(b·t·c) reads (see src/ops/embed.c); on a
 * CPU device (llvmpipe's loop budget) b·t ≤ 58253 per call.
 * Errors: VKT_ERR_INVALID_ARG, VKT_ERR_UNSUPPORTED as for LayerNorm. */
typedef struct vkt_embed_args {
    vkt_tref out, tokens, wte, wpe;
    vkt_tref dwte, dwpe, dout; /* backward */
    vkt_dtype t;
    uint32_t b, t_len, c, vocab;
} vkt_embed_args;
vkt_status vkt_op_embed_fwd(vkt_ops *ops, vkt_stream *s, const vkt_embed_args *a);
vkt_status vkt_op_embed_bwd(vkt_ops *ops, vkt_stream *s, const vkt_embed_args *a);

#endif
