// Work split of elementwise kernels. Invocation g handles elements
// [g*RUN, g*RUN + RUN) of the n elements. The CPU family uses 8-invocation
// workgroups with long runs (contiguous per-invocation runs are 2-3x faster
// on lavapipe); the GPU family uses wide workgroups with RUN = 1 so that
// neighbouring invocations touch neighbouring elements (coalescing).
// Spec constants: 0 = workgroup size (common.glsl), 1 = RUN.
#ifndef VKT_ELEMENTWISE_GLSL
#define VKT_ELEMENTWISE_GLSL

layout(constant_id = 1) const uint RUN = 1;

uint run_begin() { return gl_GlobalInvocationID.x * RUN; }
uint run_end(uint n) { return min(run_begin() + RUN, n); }

#endif
