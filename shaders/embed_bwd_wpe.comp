#version 450
#extension GL_GOOGLE_include_directive : require
// embed_bwd_wpe: dwpe[t,c] += sum_b dout[b,t,c], elementwise over the T*C
// entries of dwpe; each entry sums b = 0..B-1 in order (deterministic, no
// atomics). The b loop takes ROW_UNROLL batch rows per iteration to stay
// within llvmpipe's loop-iteration budget (see rowreduce.glsl).
// Bindings: 0 dwpe, STORE_T[T*C], rw; 1 dout, STORE_T[B*T*C], r.
// Push: struct wpe_push in src/ops/embed.c; this dispatch covers dwpe
//   entries [base, base + count).
// Spec: 0 workgroup size, 1 RUN.
// Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "rowreduce.glsl"

layout(set = 0, binding = 0) buffer DP { STORE_T dwpe[]; };
layout(set = 0, binding = 1) readonly buffer DO { STORE_T dout[]; };

layout(push_constant) uniform Push { uint count, base, b, tc, off_dwpe, off_dout; } pc;

void main()
{
    uint end = run_end(pc.count);
    for (uint i = run_begin(); i < end; i++) {
        uint e = pc.base + i;
        float s = 0.0;
        for (uint b0 = 0; b0 < pc.b; b0 += ROW_UNROLL) {
            [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
                if (b0 + k >= pc.b) break;
                s += to_f32(dout[pc.off_dout + (b0 + k) * pc.tc + e]);
            }
        }
        dwpe[pc.off_dwpe + e] = from_f32(to_f32(dwpe[pc.off_dwpe + e]) + s);
    }
}
