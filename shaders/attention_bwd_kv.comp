#version 450
#extension GL_GOOGLE_include_directive : require
// attention_bwd_kv: second backward pass, one key column s per invocation
// (one head per (z, y) = (b, h)), over the query rows t >= s:
//   dk_s += Σ_t dS[t, s] q_t   (dS from attention_bwd_q, 1/sqrt(hs) folded in),
//   dv_s += Σ_t P[t, s] dout_t.
// Each dk/dv element has one writer: no atomics, deterministic. The two sums
// run one after the other so only one accumulator row is live.
// Bindings: 0 qkv, STORE_T[B·T·3C], r; 1 att, float[B·nh·T·T], r;
//   2 dout, STORE_T[B·T·C], r; 3 datt (dS), float[B·nh·T·T], r;
//   4 dqkv, STORE_T[B·T·3C], rw (channels [C, 3C) accumulated here).
// Push: struct attn_push in src/ops/attention.c (off_out unused).
// Spec: 0 workgroup size (CPU family 8, GPU family 64); GPU family: 1 HV.
// Defines: DTYPE_F32 / DTYPE_F16 / DTYPE_BF16; FAMILY_GPU (shared tiles)
//   or HSP (CPU family: padded head size 16, 32, 64, 128).
// Dispatch: x = ceil(T / workgroup), y = nh, z = batch items.
#include "common.glsl"
#include "dtype.glsl"

layout(set = 0, binding = 0) readonly buffer QKV { STORE_T qkv[]; };
layout(set = 0, binding = 1) readonly buffer ATT { float att[]; };
layout(set = 0, binding = 2) readonly buffer DOUT { STORE_T dout[]; };
layout(set = 0, binding = 3) readonly buffer DATT { float datt[]; };
layout(set = 0, binding = 4) buffer DQKV { STORE_T dqkv[]; };

#define ATT_DOUT
#include "attention.glsl"

// acc = Σ_{t >= s} w[t, s] x_t over the query rows from the block's first
// column on, with (w, x) = (datt, q) for dk or (att, dout) for dv.
void column_sum(uint op, uint s, bool live, out vec4 acc[HV])
{
    bool dk = op == OP_Q;
    uint lim = live ? s : pc.T; // rows t >= lim count
    uint base = dk ? pc.off_datt : pc.off_att;
#define ZERO(j) acc[j] = vec4(0.0);
    FOR_V(ZERO)
    for (uint t0 = blk_first(); t0 < pc.T; t0 += KT) {
        uint t1 = min(t0 + KT, pc.T);
        stage(op, t0, t1);
        for (uint t = t0; t < t1; t++) {
            float w = 0.0;
            if (t >= lim) w = dk ? datt[base + att_row(t) + s] : att[base + att_row(t) + s];
#define SUM(j) acc[j] = fma(vec4(w), row_at(op, t0, t, j), acc[j]);
            FOR_V(SUM)
        }
    }
}

void main()
{
    // Bounds guard: columns past T take part (barriers) but match no row.
    uint s_raw = blk_first() + gl_LocalInvocationID.x;
    bool live = s_raw < pc.T;
    uint s = min(s_raw, pc.T - 1);
    vec4 acc[HV];

    column_sum(OP_Q, s, live, acc);
    uint base_ = op_row(OP_K, s);
    if (live) { FOR_V(ADD_VEC) }

    column_sum(OP_DOUT, s, live, acc);
    base_ = op_row(OP_V, s);
    if (live) { FOR_V(ADD_VEC) }
}
