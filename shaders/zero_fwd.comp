#version 450
#extension GL_GOOGLE_include_directive : require
// zero_fwd: dst[i] = 0 (explicit gradient zeroing; works at any element
// offset, where vkCmdFillBuffer needs 4-byte alignment).
// Bindings: 0 dst, STORE_T[n], w.
// Push: ew_push (n, off0). Spec: 0 workgroup size, 1 RUN. Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "ew_push.glsl"

layout(set = 0, binding = 0) writeonly buffer O { STORE_T o[]; };

void main()
{
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) o[pc.off0 + i] = from_f32(0.0);
}
