#version 450
#extension GL_GOOGLE_include_directive : require
// grad_sumsq: partial sums of (g * scale)^2 for the global gradient norm and
// the overflow check (a NaN or Inf anywhere makes the total non-finite).
// Workgroup k writes the sum over its RUN * W elements to out[off_out + k].
// Bindings: 0 grads, STORE_T[n], r; 1 partial sums, float[groups], w.
// Push: { uint n, off_g, off_out; float scale; }.
// Spec: 0 workgroup size W (power of two, <= 256), 1 RUN.
// Each invocation sums a contiguous run; a shared-memory tree then reduces
// the workgroup. Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"

layout(set = 0, binding = 0) readonly buffer G { STORE_T g[]; };
layout(set = 0, binding = 1) writeonly buffer O { float partial[]; };
layout(push_constant) uniform Push { uint n, off_g, off_out; float scale; } pc;

shared float acc[256];

void main()
{
    float s = 0.0;
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) {
        float x = to_f32(g[pc.off_g + i]) * pc.scale;
        s += x * x;
    }
    uint lid = gl_LocalInvocationID.x;
    acc[lid] = s;
    barrier();
    for (uint h = gl_WorkGroupSize.x / 2; h > 0; h >>= 1) {
        if (lid < h) acc[lid] += acc[lid + h];
        barrier();
    }
    if (lid == 0) partial[pc.off_out + gl_WorkGroupID.x] = acc[0];
}
