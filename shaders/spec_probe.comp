#version 450
#extension GL_GOOGLE_include_directive : require
// spec_probe: reports what the pipeline was built with, for tests of
// specialization and push constants.
// Bindings: 0 — out, uint[6], write.
// Push: { uint p0; uint p1; }. Spec: 0 = workgroup size, 1 = A, 2 = B.
// out = { A, B, p0, p1, workgroup size, A * p0 + B }.
#include "common.glsl"

layout(constant_id = 1) const uint A = 7;
layout(constant_id = 2) const uint B = 11;

layout(set = 0, binding = 0) writeonly buffer Out { uint dst[]; };
layout(push_constant) uniform Push { uint p0; uint p1; } pc;

void main()
{
    if (global_x() != 0) return;
    dst[0] = A;
    dst[1] = B;
    dst[2] = pc.p0;
    dst[3] = pc.p1;
    dst[4] = gl_WorkGroupSize.x;
    dst[5] = A * pc.p0 + B;
}
