// Row reductions shared by the row-wise ops (layernorm, xent). A shader that
// includes this file is built once per kernel family:
//   CPU family (no define): one invocation per row in 8-lane workgroups; the
//     lane walks its row alone, so no shared memory and no barriers
//     (lavapipe scalarizes shared-memory access; see the shared notes).
//   GPU family (-DFAMILY_GPU): one workgroup per row, the lanes stride over
//     the row (coalesced), then a shared-memory tree combines their partials.
//     The workgroup size (spec constant 0) must be a power of two <= 256.
// Both give a fixed summation order for a given family and shape, so results
// are reproducible run to run.
#ifndef VKT_ROWREDUCE_GLSL
#define VKT_ROWREDUCE_GLSL

// llvmpipe (Mesa 22.3) ends a shader invocation after 65535 loop
// iterations in total, summed over all its loops (a guard against endless
// loops; measured: a 70000-element row loop silently stops early, and a
// second loop after a 50000-iteration one runs only 15535 times). So a
// per-lane loop over a long row takes ROW_UNROLL elements per iteration in
// an inner loop of constant trip count, which the compiler unrolls and
// which therefore does not count: a lane may then touch up to ~500k
// elements, summed over all of its passes.
#define ROW_UNROLL 8u

// A finite "minus infinity": exp(NEG_BIG - x) is 0 for any finite x, and
// two empty partials combine to (NEG_BIG, 0) instead of NaN.
#define NEG_BIG (-3.0e38)

#ifdef FAMILY_GPU
shared float red_a[256];
shared float red_b[256];

uint row_index() { return gl_WorkGroupID.x; }
uint row_lane() { return gl_LocalInvocationID.x; }
uint row_step() { return gl_WorkGroupSize.x; }

// Sum of v over the workgroup, returned to every lane.
float row_sum(float v)
{
    uint l = gl_LocalInvocationID.x;
    barrier(); // an earlier call's readers are done with red_a
    red_a[l] = v;
    barrier();
    for (uint h = gl_WorkGroupSize.x / 2; h > 0; h >>= 1) {
        if (l < h) red_a[l] += red_a[l + h];
        barrier();
    }
    return red_a[0];
}

// Combine online-softmax partials (running max m, sum s of exp(x - m)).
void row_maxsum(inout float m, inout float s)
{
    uint l = gl_LocalInvocationID.x;
    barrier();
    red_a[l] = m;
    red_b[l] = s;
    barrier();
    for (uint h = gl_WorkGroupSize.x / 2; h > 0; h >>= 1) {
        if (l < h) {
            float m1 = red_a[l], m2 = red_a[l + h], mm = max(m1, m2);
            red_b[l] = red_b[l] * exp(m1 - mm) + red_b[l + h] * exp(m2 - mm);
            red_a[l] = mm;
        }
        barrier();
    }
    m = red_a[0];
    s = red_b[0];
}
#else
uint row_index() { return gl_GlobalInvocationID.x; }
uint row_lane() { return 0u; }
uint row_step() { return 1u; }
float row_sum(float v) { return v; }
void row_maxsum(inout float m, inout float s) {}
#endif

#endif
