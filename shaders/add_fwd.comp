#version 450
#extension GL_GOOGLE_include_directive : require
// add_fwd: out = a + alpha · b elementwise. Serves the residual add
// (alpha = 1) and accumulate (dst += alpha · src: out and a both dst).
// out may alias a or b.
// Bindings: 0 out, STORE_T[n], w; 1 a, STORE_T[n], r; 2 b, STORE_T[n], r.
// Push: ew_push (n, off0..2, alpha). Spec: 0 workgroup size, 1 RUN.
// Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "ew_push.glsl"

layout(set = 0, binding = 0) writeonly buffer O { STORE_T o[]; };
layout(set = 0, binding = 1) readonly buffer A { STORE_T a[]; };
layout(set = 0, binding = 2) readonly buffer B { STORE_T b[]; };

void main()
{
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++)
        o[pc.off0 + i] = from_f32(to_f32(a[pc.off1 + i]) + pc.alpha * to_f32(b[pc.off2 + i]));
}
