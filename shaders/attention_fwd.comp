#version 450
#extension GL_GOOGLE_include_directive : require
// attention_fwd: causal self-attention forward for one head per (z, y) =
// (b, h) and one query row t per invocation:
//   att[t, s] = softmax_s(q_t · k_s / sqrt(hs)) over s <= t,  out_t = Σ_s att[t, s] v_s.
// Three sweeps over the keys: scores (kept in att) and their max; exp and
// the sum with the value accumulation; normalisation. Keys and values are
// read uniformly (see attention.glsl), so a sweep costs hs FMAs per key per
// invocation plus one non-uniform att access.
// Bindings: 0 qkv, STORE_T[B·T·3C], r; 1 out, STORE_T[B·T·C], w;
//   2 att, float[B·nh·T·T], rw (row t written for s <= t only).
// Push: struct attn_push in src/ops/attention.c (dout/datt/dqkv unused).
// Spec: 0 workgroup size (CPU family 8, GPU family 64); GPU family: 1 HV.
// Defines: DTYPE_F32 / DTYPE_F16 / DTYPE_BF16; FAMILY_GPU (shared tiles)
//   or HSP (CPU family: padded head size 16, 32, 64, 128).
// Dispatch: x = ceil(T / workgroup), y = nh, z = batch items.
#include "common.glsl"
#include "dtype.glsl"

layout(set = 0, binding = 0) readonly buffer QKV { STORE_T qkv[]; };
layout(set = 0, binding = 1) writeonly buffer OUT { STORE_T outp[]; };
layout(set = 0, binding = 2) buffer ATT { float att[]; };

#include "attention.glsl"

void main()
{
    // Bounds guard: rows past T take part (the GPU family's barriers need
    // every invocation) but match no key (lim = 0) and store nothing.
    uint t_raw = blk_first() + gl_LocalInvocationID.x;
    bool live = t_raw < pc.T;
    uint t = min(t_raw, pc.T - 1), lim = live ? t + 1 : 0, last = blk_last();
    uint arow = pc.off_att + att_row(t);
    float scale = inversesqrt(float(pc.hs));
    vec4 q[HV], o[HV];
#define INIT(j) q[j] = op_vec0(OP_Q, t, j) * scale; o[j] = vec4(0.0);
    FOR_V(INIT)

    float m = -1.0 / 0.0;
    for (uint s0 = 0; s0 <= last; s0 += KT) {
        uint s1 = min(s0 + KT, last + 1);
        stage(OP_K, s0, s1);
        for (uint s = s0; s < s1; s++) {
            float sc = 0.0;
#define SCORE(j) sc += dot(q[j], row_at(OP_K, s0, s, j));
            FOR_V(SCORE)
            if (s < lim) {
                att[arow + s] = sc;
                m = max(m, sc);
            }
        }
    }

    float l = 0.0;
    for (uint s0 = 0; s0 <= last; s0 += KT) {
        uint s1 = min(s0 + KT, last + 1);
        stage(OP_V, s0, s1);
        for (uint s = s0; s < s1; s++) {
            float p = 0.0;
            if (s < lim) {
                p = exp(att[arow + s] - m);
                att[arow + s] = p;
            }
            l += p;
#define ACC(j) o[j] = fma(vec4(p), row_at(OP_V, s0, s, j), o[j]);
            FOR_V(ACC)
        }
    }

    if (!live) return; // no barrier follows
    float inv = 1.0 / l; // l >= 1: the max term is exp(0)
    for (uint s = 0; s <= t; s++) att[arow + s] *= inv;
    uint orow = pc.off_out + op_row(OP_DOUT, t);
#define STORE(j)                                                               \
    if (4 * (j) < pc.hs) {                                                     \
        uvec4 k_ = vec_idx(orow, j);                                           \
        vec4 v_ = o[j] * inv;                                                  \
        outp[k_.x] = from_f32(v_.x);                                           \
        outp[k_.y] = from_f32(v_.y);                                           \
        outp[k_.z] = from_f32(v_.z);                                           \
        outp[k_.w] = from_f32(v_.w);                                           \
    }
    FOR_V(STORE)
}
