#version 450
#extension GL_GOOGLE_include_directive : require
// attention_bwd_q: first backward pass, one query row t per invocation
// (one head per (z, y) = (b, h)):
//   dP[t, s] = dout_t · v_s,   r_t = Σ_s P[t, s] dP[t, s],
//   dS[t, s] = P[t, s] (dP[t, s] - r_t) / sqrt(hs)   (stored in datt),
//   dq_t += Σ_s dS[t, s] k_s.
// The scores' 1/sqrt(hs) is folded into dS, so attention_bwd_kv gets
// dk_s = Σ_t dS[t, s] q_t directly. Every dq element has one writer: no
// atomics, deterministic.
// Bindings: 0 qkv, STORE_T[B·T·3C], r; 1 att, float[B·nh·T·T], r;
//   2 dout, STORE_T[B·T·C], r; 3 datt (scratch), float[B·nh·T·T], rw;
//   4 dqkv, STORE_T[B·T·3C], rw (channels [0, C) accumulated here).
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
layout(set = 0, binding = 3) buffer DATT { float datt[]; };
layout(set = 0, binding = 4) buffer DQKV { STORE_T dqkv[]; };

#define ATT_DOUT
#include "attention.glsl"

void main()
{
    // Bounds guard: rows past T take part (barriers) but match no key.
    uint t_raw = blk_first() + gl_LocalInvocationID.x;
    bool live = t_raw < pc.T;
    uint t = min(t_raw, pc.T - 1), lim = live ? t + 1 : 0, last = blk_last();
    uint arow = pc.off_att + att_row(t), drow = pc.off_datt + att_row(t);
    vec4 g[HV], acc[HV];
#define INIT(j) g[j] = op_vec0(OP_DOUT, t, j); acc[j] = vec4(0.0);
    FOR_V(INIT)

    float r = 0.0;
    for (uint s0 = 0; s0 <= last; s0 += KT) {
        uint s1 = min(s0 + KT, last + 1);
        stage(OP_V, s0, s1);
        for (uint s = s0; s < s1; s++) {
            float dp = 0.0;
#define DP(j) dp += dot(g[j], row_at(OP_V, s0, s, j));
            FOR_V(DP)
            if (s < lim) {
                datt[drow + s] = dp;
                r += att[arow + s] * dp;
            }
        }
    }

    float scale = inversesqrt(float(pc.hs));
    for (uint s0 = 0; s0 <= last; s0 += KT) {
        uint s1 = min(s0 + KT, last + 1);
        stage(OP_K, s0, s1);
        for (uint s = s0; s < s1; s++) {
            float ds = 0.0;
            if (s < lim) {
                ds = att[arow + s] * (datt[drow + s] - r) * scale;
                datt[drow + s] = ds;
            }
#define DQ(j) acc[j] = fma(vec4(ds), row_at(OP_K, s0, s, j), acc[j]);
            FOR_V(DQ)
        }
    }

    if (!live) return; // no barrier follows
    uint base_ = op_row(OP_Q, t);
    FOR_V(ADD_VEC)
}
