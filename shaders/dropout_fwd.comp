#version 450
#extension GL_GOOGLE_include_directive : require
// dropout_fwd: out = in · keep / (1 - p) over N rows × C columns (inverted
// dropout; keep decisions in include/dropout.glsl).
// Bindings: 0 out, STORE_T[N*C], w; 1 in, STORE_T[N*C], r; 2 state, uint[], r
// (include/dropout.glsl).
// Push: struct dropout_push in src/ops/dropout.c. Spec: 0 workgroup size,
// 1 RUN. Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "dropout.glsl"

layout(set = 0, binding = 0) writeonly buffer O { STORE_T o[]; };
layout(set = 0, binding = 1) readonly buffer I { STORE_T x[]; };

void main()
{
    uint b = run_begin(), end = run_end(pc.n);
    if (b >= end) return;
    drop_walk w = drop_start(b);
    for (uint i = b; i < end; i++)
        o[pc.off_out + i] = from_f32(to_f32(x[pc.off_in + i]) * drop_next(w));
}
