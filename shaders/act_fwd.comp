#version 450
#extension GL_GOOGLE_include_directive : require
// act_fwd: out = act(in) elementwise; ACT 0 ReLU, 1 GELU (tanh form, as
// PyTorch's gelu(approximate='tanh')). out may alias in.
// Bindings: 0 out, STORE_T[n], w; 1 in, STORE_T[n], r.
// Push: ew_push (n, off0, off1). Spec: 0 workgroup size, 1 RUN, 2 ACT.
// Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "ew_push.glsl"
#include "act.glsl"

layout(set = 0, binding = 0) writeonly buffer O { STORE_T o[]; };
layout(set = 0, binding = 1) readonly buffer I { STORE_T x[]; };

void main()
{
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) o[pc.off0 + i] = from_f32(act_f(to_f32(x[pc.off1 + i])));
}
