#version 450
#extension GL_GOOGLE_include_directive : require
// dropout_bwd: din += dout · keep / (1 - p), the mask recomputed from the
// same key as the forward (include/dropout.glsl).
// Bindings: 0 din, STORE_T[N*C], rw; 1 dout, STORE_T[N*C], r; 2 state, uint[], r
// (include/dropout.glsl).
// Push: struct dropout_push in src/ops/dropout.c. Spec: 0 workgroup size,
// 1 RUN. Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "dropout.glsl"

layout(set = 0, binding = 0) buffer O { STORE_T din[]; };
layout(set = 0, binding = 1) readonly buffer I { STORE_T dout[]; };

void main()
{
    uint b = run_begin(), end = run_end(pc.n);
    if (b >= end) return;
    drop_walk w = drop_start(b);
    for (uint i = b; i < end; i++) {
        float g = to_f32(dout[pc.off_in + i]) * drop_next(w);
        din[pc.off_out + i] = from_f32(to_f32(din[pc.off_out + i]) + g);
    }
}
