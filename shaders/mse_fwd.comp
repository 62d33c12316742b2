#version 450
#extension GL_GOOGLE_include_directive : require
// mse_fwd: fp32 partial sums of inv_count · (pred - target)² for the MSE
// loss; the host adds the partials (vkt_op_mse_partials of them).
// Each invocation sums a contiguous run of RUN elements. TREE = false (CPU
// family): every invocation writes its own partial, no shared memory;
// TREE = true (GPU family): a shared-memory tree sums the workgroup and
// lane 0 writes one partial per workgroup.
// Bindings: 0 partials, float[], w; 1 pred, STORE_T[n], r;
//   2 target, STORE_T[n], r.
// Push: ew_push: n, off0 (partials, shifted per dispatch), off1, off2,
//   alpha = inv_count.
// Spec: 0 workgroup size W (power of two <= 256), 1 RUN, 2 TREE.
// Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "ew_push.glsl"

layout(constant_id = 2) const bool TREE = false;

layout(set = 0, binding = 0) writeonly buffer P { float partial[]; };
layout(set = 0, binding = 1) readonly buffer X { STORE_T pred[]; };
layout(set = 0, binding = 2) readonly buffer Y { STORE_T target[]; };

shared float acc[256];

void main()
{
    // No early return: every lane writes (or feeds) a partial, even past n.
    float s = 0.0;
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) {
        float d = to_f32(pred[pc.off1 + i]) - to_f32(target[pc.off2 + i]);
        s += d * d;
    }
    s *= pc.alpha;
    if (!TREE) {
        partial[pc.off0 + gl_GlobalInvocationID.x] = s;
        return;
    }
    uint lid = gl_LocalInvocationID.x;
    acc[lid] = s;
    barrier();
    for (uint h = gl_WorkGroupSize.x / 2u; h > 0u; h >>= 1) {
        if (lid < h) acc[lid] += acc[lid + h];
        barrier();
    }
    if (lid == 0u) partial[pc.off0 + gl_WorkGroupID.x] = acc[0];
}
