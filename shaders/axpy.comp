#version 450
#extension GL_GOOGLE_include_directive : require
// axpy: y[i] = a * x[i] + y[i] for i < n.
// Bindings: 0 — x, float[n], read; 1 — y, float[n], read-write.
// Push: { uint n; float a; }. Spec: 0 = workgroup size, 1 = RUN, the number of
// consecutive elements per invocation (contiguous runs are 2–3× faster on
// lavapipe, see shared notes; 1 suits GPUs).
#include "common.glsl"

layout(constant_id = 1) const uint RUN = 1;

layout(set = 0, binding = 0) readonly buffer X { float x[]; };
layout(set = 0, binding = 1) buffer Y { float y[]; };
layout(push_constant) uniform Push { uint n; float a; } pc;

void main()
{
    uint base = global_x() * RUN;
    if (base >= pc.n) return;
    uint end = min(base + RUN, pc.n);
    for (uint i = base; i < end; i++) y[i] = pc.a * x[i] + y[i];
}
