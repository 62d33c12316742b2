#version 450
#extension GL_GOOGLE_include_directive : require
// opt_sgd: one SGD step over n parameters (PyTorch semantics, dampening 0).
//   d = grad * grad_scale + wd * p
//   with momentum mu > 0:  buf = mu * buf + d;  d = NESTEROV ? d + mu * buf : buf
//   p -= lr * d
// (buf starts at zero, so the first step's buf equals d, as in PyTorch.)
// Bindings: 0 master params, float[n], rw; 1 grads, STORE_T[n], r;
//   2 momentum buffer, float[n], rw (unused when mu == 0); 3 compute copy,
//   STORE_T[n], w (when WRITE_COPY); 4 hyper, float[4], r: {lr, -, -,
//   grad_scale} (host-written each step, so the recording is replayed).
// Push: struct sgd_push in src/ops/optim.c.
// Spec: 0 workgroup size, 1 RUN, 2 NESTEROV (bool), 3 WRITE_COPY (bool).
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"

layout(constant_id = 2) const bool NESTEROV = false;
layout(constant_id = 3) const bool WRITE_COPY = false;

layout(set = 0, binding = 0) buffer P { float p[]; };
layout(set = 0, binding = 1) readonly buffer G { STORE_T g[]; };
layout(set = 0, binding = 2) buffer B { float buf[]; };
layout(set = 0, binding = 3) writeonly buffer O { STORE_T o[]; };
layout(set = 0, binding = 4) readonly buffer H { float h[]; };

layout(push_constant) uniform Push {
    uint n, off_p, off_g, off_b, off_o, off_h;
    float momentum, wd;
} pc;

void main()
{
    float lr = h[pc.off_h], grad_scale = h[pc.off_h + 3];
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) {
        float w = p[pc.off_p + i];
        float d = to_f32(g[pc.off_g + i]) * grad_scale + pc.wd * w;
        if (pc.momentum != 0.0) {
            float b = pc.momentum * buf[pc.off_b + i] + d;
            buf[pc.off_b + i] = b;
            d = NESTEROV ? d + pc.momentum * b : b;
        }
        w -= lr * d;
        p[pc.off_p + i] = w;
        if (WRITE_COPY) o[pc.off_o + i] = from_f32(w);
    }
}
