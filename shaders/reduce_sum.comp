#version 450
#extension GL_GOOGLE_include_directive : require
// reduce_sum: partial sums. Workgroup g writes sum(in[g*W*ITEMS .. (g+1)*W*ITEMS))
// to out[g], W = workgroup size. Run again on out until one value is left.
// Bindings: 0 — in, float[n], read; 1 — out, float[groups], write.
// Push: { uint n; }. Spec: 0 = workgroup size W (power of two, ≤ 256),
// 1 = ITEMS per invocation.
// Each invocation sums a strided slice, then a shared-memory tree reduces
// the workgroup (portable: no subgroup operations required).
#include "common.glsl"

layout(constant_id = 1) const uint ITEMS = 4;

layout(set = 0, binding = 0) readonly buffer In { float src[]; };
layout(set = 0, binding = 1) writeonly buffer Out { float dst[]; };
layout(push_constant) uniform Push { uint n; } pc;

shared float partial[256];

void main()
{
    uint W = gl_WorkGroupSize.x;
    uint lid = gl_LocalInvocationID.x;
    uint base = gl_WorkGroupID.x * W * ITEMS + lid;
    float acc = 0.0;
    for (uint k = 0; k < ITEMS; k++) {
        uint i = base + k * W;
        if (i < pc.n) acc += src[i];
    }
    partial[lid] = acc;
    barrier();
    for (uint s = W / 2; s > 0; s >>= 1) {
        if (lid < s) partial[lid] += partial[lid + s];
        barrier();
    }
    if (lid == 0) dst[gl_WorkGroupID.x] = partial[0];
}
