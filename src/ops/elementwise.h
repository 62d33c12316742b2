/* Elementwise ops, losses and casts (see ops_int.h for the conventions).
 * Every tensor of one call has the dtype `t` (f32, f16, bf16) unless its
 * comment says fp32; arithmetic is fp32. Shapes: N rows × C channels,
 * row-major. Backward ops accumulate (+=) into their gradient outputs.
 * All calls only record into the stream (never submit); they return
 * VKT_ERR_INVALID_ARG for a bad dtype, activation, probability, a view
 * outside its buffer or more than 2^32-1 elements (split such calls), and
 * VKT_ERR_UNSUPPORTED for f16/bf16 on a device without 16-bit storage.
 * A count (or n·c) of 0 records nothing and returns VKT_OK. Outputs may
 * equal an input view exactly where a comment says so; otherwise views must
 * not overlap. */
#ifndef VKT_OPS_ELEMENTWISE_H
#define VKT_OPS_ELEMENTWISE_H

#include "ops/ops_int.h"

/* out[n,c] = in[n,c] + bias[c]            (in-place allowed: out == in) */
vkt_status vkt_op_bias_fwd(vkt_ops *ops, vkt_stream *s, vkt_tref out, vkt_tref in,
                           vkt_tref bias, vkt_dtype t, uint32_t n, uint32_t c);
/* dbias[c] += Σ_n dout[n,c]  (dinput is dout itself: callers reuse it) */
vkt_status vkt_op_bias_bwd(vkt_ops *ops, vkt_stream *s, vkt_tref dbias, vkt_tref dout,
                           vkt_dtype t, uint32_t n, uint32_t c);

/* Activations over count elements. out may equal in. */
typedef enum vkt_act { VKT_ACT_RELU = 0, VKT_ACT_GELU = 1 /* tanh form */ } vkt_act;
vkt_status vkt_op_act_fwd(vkt_ops *ops, vkt_stream *s, vkt_act act, vkt_tref out, vkt_tref in,
                          vkt_dtype t, uint64_t count);
/* din += act'(in) · dout   (in is the forward input) */
vkt_status vkt_op_act_bwd(vkt_ops *ops, vkt_stream *s, vkt_act act, vkt_tref din, vkt_tref in,
                          vkt_tref dout, vkt_dtype t, uint64_t count);

/* out = a + b (residual; out may equal a or b). Backward: da += dout and db += dout, i.e. two
 * calls of vkt_op_accumulate. */
vkt_status vkt_op_add_fwd(vkt_ops *ops, vkt_stream *s, vkt_tref out, vkt_tref a, vkt_tref b,
                          vkt_dtype t, uint64_t count);
/* dst += alpha · src   (dst must not overlap src) */
vkt_status vkt_op_accumulate(vkt_ops *ops, vkt_stream *s, vkt_tref dst, vkt_tref src,
                             float alpha, vkt_dtype t, uint64_t count);
/* dst[i] = (dst_t) src[i]: casts between f32/f16/bf16 (same dtype = copy),
 * narrowing with round-to-nearest-even. dst must not overlap src. */
vkt_status vkt_op_cast(vkt_ops *ops, vkt_stream *s, vkt_tref dst, vkt_dtype dst_t, vkt_tref src,
                       vkt_dtype src_t, uint64_t count);
/* dst[i] = 0 for count elements of dtype t (zeroing gradients). */
vkt_status vkt_op_zero(vkt_ops *ops, vkt_stream *s, vkt_tref dst, vkt_dtype t, uint64_t count);

/* ---- dropout --------------------------------------------------------------
 * Inverted dropout over N rows of C elements, row r being global sample
 * index sample0 + r. Keep decisions come from a counter-based RNG (Philox or
 * a comparable keyed hash) of (seed, step, global sample index, element
 * index within the row, site) — never of the rank — so any split of a batch
 * across ranks draws the same numbers. out = in · keep / (1 - p). Backward
 * recomputes the mask from the same key: din += dout · keep / (1 - p).
 * The exact function (Philox-4x32-10; a word per element, kept when it is
 * >= floor(p · 2^32)) is spelled out in src/ops/dropout.c. out may not
 * overlap in (use a separate buffer, or the same view exactly).
 *
 * The values that change from run to run — sample0, the per-site keys
 * derived from (seed, step, site), the threshold and the scale — are not
 * recorded: the kernel reads them from a small "state" buffer when it runs
 * (vkt_dropout_state_fill writes it), so a recorded command buffer replays
 * with a new step, a new first sample or with dropout off (p = 0 in the
 * state: a copy) after the host rewrites that buffer. `site` (recorded)
 * picks the key of one dropout layer; the state holds keys for sites
 * 0..nsites-1. */
#define VKT_DROPOUT_STATE_WORDS(nsites) (4u + 2u * (uint32_t)(nsites))
/* words[VKT_DROPOUT_STATE_WORDS(nsites)] for this run. VKT_ERR_INVALID_ARG
 * when p is outside [0, 1). */
vkt_status vkt_dropout_state_fill(uint32_t *words, uint32_t nsites, uint64_t seed, uint64_t step,
                                  uint64_t sample0, float p);
typedef struct vkt_dropout_args {
    vkt_tref out, in;
    vkt_tref state; /* 32-bit words, at least VKT_DROPOUT_STATE_WORDS(site + 1), read at run time */
    vkt_dtype t;
    uint32_t n, c;
    uint32_t site;
} vkt_dropout_args;
vkt_status vkt_op_dropout_fwd(vkt_ops *ops, vkt_stream *s, const vkt_dropout_args *a);
/* a->out is din (accumulated), a->in is dout. */
vkt_status vkt_op_dropout_bwd(vkt_ops *ops, vkt_stream *s, const vkt_dropout_args *a);
/* The keep decision the kernels make under a state filled with (seed, step,
 * sample0, p), for element `index` of global sample `sample`, on the host
 * (for tests and checks). */
int vkt_dropout_keep(uint64_t seed, uint64_t step, uint64_t sample, uint32_t index,
                     uint32_t site, float p);
/* The Philox-4x32-10 block function the decisions use, in place on ctr
 * (internal; exposed for the known-answer test). */
void vkt__philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1);

/* ---- MSE loss ------------------------------------------------------------
 * loss = Σ_i (pred_i - target_i)² · inv_count over count elements.
 * Forward writes fp32 partial sums (vkt_op_mse_partials of them, at `partials`)
 * that the host adds; backward: dpred += 2 · (pred - target) · inv_count ·
 * grad_scale (grad_scale: the fp16 loss scale, 1 otherwise). inv_count is
 * 1/(global batch elements) so that accumulation and data parallelism match
 * one big batch. The partials are laid out per kernel family (CPU: one
 * per 256 elements, GPU: one per 256-lane workgroup); count 0 has none. */
uint32_t vkt_op_mse_partials(const vkt_ops *ops, uint64_t count);
vkt_status vkt_op_mse_fwd(vkt_ops *ops, vkt_stream *s, vkt_tref partials, vkt_tref pred,
                          vkt_tref target, vkt_dtype t, uint64_t count, float inv_count);
vkt_status vkt_op_mse_bwd(vkt_ops *ops, vkt_stream *s, vkt_tref dpred, vkt_tref pred,
                          vkt_tref target, vkt_dtype t, uint64_t count, float inv_count,
                          float grad_scale);

#endif
