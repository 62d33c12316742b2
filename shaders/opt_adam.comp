#version 450
#extension GL_GOOGLE_include_directive : require
// opt_adam: one Adam / AdamW step over n parameters (PyTorch semantics).
//   g  = grad * grad_scale (+ wd * p for Adam; AdamW decays p instead)
//   m  = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
//   p -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
// with step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t).
// What changes every step (lr, step_size, inv_sqrt_bc2, grad_scale) is read
// from a small host-written buffer, so the recording is replayed unchanged.
// Bindings: 0 master params, float[n], rw; 1 grads, STORE_T[n], r;
//   2 m, float[n], rw; 3 v, float[n], rw; 4 compute copy, STORE_T[n], w
//   (written when WRITE_COPY; bind anything otherwise); 5 hyper, float[4], r:
//   {lr, step_size, inv_sqrt_bc2, grad_scale}.
// Push: struct adam_push in src/ops/optim.c (element offsets per binding).
// Spec: 0 workgroup size, 1 RUN, 2 ADAMW (bool), 3 WRITE_COPY (bool).
// Defines: DTYPE_F32 / DTYPE_F16 / DTYPE_BF16 (grads and the copy).
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"

layout(constant_id = 2) const bool ADAMW = false;
layout(constant_id = 3) const bool WRITE_COPY = false;

layout(set = 0, binding = 0) buffer P { float p[]; };
layout(set = 0, binding = 1) readonly buffer G { STORE_T g[]; };
layout(set = 0, binding = 2) buffer M { float m[]; };
layout(set = 0, binding = 3) buffer V { float v[]; };
layout(set = 0, binding = 4) writeonly buffer O { STORE_T o[]; };
layout(set = 0, binding = 5) readonly buffer H { float h[]; };

layout(push_constant) uniform Push {
    uint n, off_p, off_g, off_m, off_v, off_o, off_h;
    float b1, b2, eps, wd;
} pc;

void main()
{
    float lr = h[pc.off_h], step_size = h[pc.off_h + 1];
    float inv_sqrt_bc2 = h[pc.off_h + 2], grad_scale = h[pc.off_h + 3];
    float decay = 1.0 - lr * pc.wd;
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) {
        float w = p[pc.off_p + i];
        float grad = to_f32(g[pc.off_g + i]) * grad_scale;
        if (ADAMW) w *= decay;
        else grad += pc.wd * w;
        float mi = pc.b1 * m[pc.off_m + i] + (1.0 - pc.b1) * grad;
        float vi = pc.b2 * v[pc.off_v + i] + (1.0 - pc.b2) * grad * grad;
        w -= step_size * mi / (sqrt(vi) * inv_sqrt_bc2 + pc.eps);
        m[pc.off_m + i] = mi;
        v[pc.off_v + i] = vi;
        p[pc.off_p + i] = w;
        if (WRITE_COPY) o[pc.off_o + i] = from_f32(w);
    }
}
