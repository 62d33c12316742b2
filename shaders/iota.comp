#version 450
#extension GL_GOOGLE_include_directive : require
// iota: out[i] = base + i for i < n. Fills a window of a large buffer with
// its global element index, to prove windowed bindings address the right
// bytes. Bindings: 0 — out, uint[n], write. Push: { uint n; uint base; }.
// Spec: 0 = workgroup size, 1 = RUN consecutive elements per invocation.
#include "common.glsl"

layout(constant_id = 1) const uint RUN = 1;

layout(set = 0, binding = 0) writeonly buffer Out { uint dst[]; };
layout(push_constant) uniform Push { uint n; uint base; } pc;

void main()
{
    uint first = global_x() * RUN;
    if (first >= pc.n) return;
    uint end = min(first + RUN, pc.n);
    for (uint i = first; i < end; i++) dst[i] = pc.base + i;
}
