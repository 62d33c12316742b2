#version 450
#extension GL_GOOGLE_include_directive : require
// bias_fwd: out[r, c] = in[r, c] + bias[c] over N rows × C channels
// (flattened: element e has column e % C). out may alias in.
// Bindings: 0 out, STORE_T[N*C], w; 1 in, STORE_T[N*C], r;
//   2 bias, STORE_T[C], r.
// Push: ew_push (include/ew_push.glsl): n elements, off0..2, c = C,
//   col0 = column of this dispatch's element 0.
// Spec: 0 workgroup size, 1 RUN. Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "ew_push.glsl"

layout(set = 0, binding = 0) writeonly buffer O { STORE_T o[]; };
layout(set = 0, binding = 1) readonly buffer I { STORE_T x[]; };
layout(set = 0, binding = 2) readonly buffer B { STORE_T bias[]; };

void main()
{
    uint b = run_begin(), end = run_end(pc.n);
    if (b >= end) return;
    uint col = (pc.col0 + b) % pc.c; // one division per run, then a wrap
    for (uint i = b; i < end; i++) {
        o[pc.off0 + i] = from_f32(to_f32(x[pc.off1 + i]) + to_f32(bias[pc.off2 + col]));
        if (++col == pc.c) col = 0u;
    }
}
