#version 450
#extension GL_GOOGLE_include_directive : require
// mse_bwd: dpred += alpha · (pred - target) with alpha = 2 · inv_count ·
// grad_scale (formed on the host).
// Bindings: 0 dpred, STORE_T[n], rw; 1 pred, STORE_T[n], r;
//   2 target, STORE_T[n], r.
// Push: ew_push (n, off0..2, alpha). Spec: 0 workgroup size, 1 RUN.
// Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "ew_push.glsl"

layout(set = 0, binding = 0) buffer D { STORE_T dp[]; };
layout(set = 0, binding = 1) readonly buffer X { STORE_T pred[]; };
layout(set = 0, binding = 2) readonly buffer Y { STORE_T target[]; };

void main()
{
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) {
        float d = to_f32(pred[pc.off1 + i]) - to_f32(target[pc.off2 + i]);
        dp[pc.off0 + i] = from_f32(to_f32(dp[pc.off0 + i]) + pc.alpha * d);
    }
}
