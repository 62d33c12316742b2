#version 450
#extension GL_GOOGLE_include_directive : require
// act_bwd: din += act'(in) · dout elementwise (in: the forward input);
// ACT 0 ReLU (derivative 0 at 0, as PyTorch), 1 GELU tanh form.
// Bindings: 0 din, STORE_T[n], rw; 1 in, STORE_T[n], r; 2 dout, STORE_T[n], r.
// Push: ew_push (n, off0..2). Spec: 0 workgroup size, 1 RUN, 2 ACT.
// Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "ew_push.glsl"
#include "act.glsl"

layout(set = 0, binding = 0) buffer D { STORE_T din[]; };
layout(set = 0, binding = 1) readonly buffer I { STORE_T x[]; };
layout(set = 0, binding = 2) readonly buffer G { STORE_T dout[]; };

void main()
{
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) {
        float g = act_df(to_f32(x[pc.off1 + i])) * to_f32(dout[pc.off2 + i]);
        din[pc.off0 + i] = from_f32(to_f32(din[pc.off0 + i]) + g);
    }
}
