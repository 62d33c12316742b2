/* Causal multi-head self-attention (conventions in ops_int.h).
 * qkv [B, T, 3C] holds q, k, v for every position (as GPT-2's c_attn output:
 * channels [0,C) are q, [C,2C) k, [2C,3C) v; head h uses channels
 * [h·hs, (h+1)·hs) of each, hs = C / nh). out [B, T, C] (heads concatenated).
 * att [B, nh, T, T] fp32 holds the softmax probabilities saved for backward
 * (entries above the diagonal are unused). Scores are scaled by 1/sqrt(hs);
 * position t attends to positions 0..t. Activations are of dtype `t`,
 * arithmetic fp32. Backward accumulates into dqkv.
 *
 * Limits (checked; VKT_ERR_INVALID_ARG names the argument): heads >= 1 divides
 * c; hs = c / heads in 1..128; c <= 1024; t_len in 1..1024; b >= 1. One batch
 * item's att (heads·T²·4 bytes) must fit in the device's
 * maxStorageBufferRange (128 MiB on lavapipe: e.g. 16 heads at T = 1024);
 * larger batches are split across dispatches. Views may start at any element.
 * f16/bf16 need caps.storage_16bit (VKT_ERR_UNSUPPORTED otherwise).
 *
 * Kernels are fused and need no matmul: forward is one dispatch; backward is
 * two (dq, with the softmax backward into datt; then dk and dv), separated
 * by a vkt_stream_barrier. Every gradient element has one writer, so results
 * are deterministic (no atomics). Like every op, these only record: the
 * caller orders them after the ops that produce their inputs.
 *
 * Head rows live in registers, unrolled for hs padded to 16/32/64/128 in the
 * CPU family: the first call with a new bucket compiles its pipelines
 * (about 15 s on lavapipe for the 128 bucket, ~1-3 s for the others). */
#ifndef VKT_OPS_ATTENTION_H
#define VKT_OPS_ATTENTION_H

#include "ops/ops_int.h"

typedef struct vkt_attention_args {
    vkt_tref out, qkv, att;
    vkt_tref dqkv, dout; /* backward */
    vkt_dtype t;
    uint32_t b, t_len, c, heads;
    /* backward: fp32 scratch [B, nh, T, T] (same size as att), overwritten
     * with the scores' gradient; must not overlap the other views, and may
     * be any temporary that is dead during the backward call. */
    vkt_tref datt;
} vkt_attention_args;

/* Writes out and att from qkv (out/att must not overlap qkv). */
vkt_status vkt_op_attention_fwd(vkt_ops *ops, vkt_stream *s, const vkt_attention_args *a);
/* dqkv += d(out)/d(qkv)ᵀ · dout, from qkv, att (as written by the forward)
 * and dout; uses datt as scratch. out is not read. */
vkt_status vkt_op_attention_bwd(vkt_ops *ops, vkt_stream *s, const vkt_attention_args *a);

#endif
