#version 450
#extension GL_GOOGLE_include_directive : require
// layernorm_colsum: the parameter gradients of LayerNorm, accumulated:
//   dweight[j] += sum_r dout[r,j] * xh[r,j],  dbias[j] += sum_r dout[r,j],
// with xh = (x - mean_r) * rstd_r. No float atomics: every column is summed
// in a fixed order, so replicas that see the same data stay bit-identical.
//   CPU family: one invocation per column, rows in order 0..n-1 (the
//     mean/rstd loads are uniform across the 8 lanes).
//   GPU family (-DFAMILY_GPU): a 256-lane workgroup covers 32 columns x 8
//     row slices; slice k sums rows k, k+8, ...; a fixed shared-memory tree
//     then adds the 8 slices.
// Bindings: 0 dweight, STORE_T[c], rw; 1 dbias, STORE_T[c], rw;
//   2 dout, STORE_T[n*c], r; 3 in, STORE_T[n*c], r;
//   4 mean, float[n], r; 5 rstd, float[n], r.
// Push: struct ln_colsum_push in src/ops/layernorm.c (col0: first column of
//   this dispatch).
// Spec: 0 workgroup size (CPU 8, GPU 256 = 32 x 8).
// Defines: DTYPE_*; FAMILY_GPU.
#include "common.glsl"
#include "dtype.glsl"
#include "rowreduce.glsl" // ROW_UNROLL; red_a, red_b (GPU family)

layout(set = 0, binding = 0) buffer DW { STORE_T dw[]; };
layout(set = 0, binding = 1) buffer DB { STORE_T db[]; };
layout(set = 0, binding = 2) readonly buffer DO { STORE_T dout[]; };
layout(set = 0, binding = 3) readonly buffer I { STORE_T x[]; };
layout(set = 0, binding = 4) readonly buffer M { float mean_in[]; };
layout(set = 0, binding = 5) readonly buffer R { float rstd_in[]; };

layout(push_constant) uniform Push {
    uint n, c, col0, off_dw, off_db, off_dout, off_in, off_mean, off_rstd;
} pc;

#ifdef FAMILY_GPU
#define SLICES 8u
#endif

void main()
{
#ifdef FAMILY_GPU
    uint l = gl_LocalInvocationID.x, col_in = l % 32u, slice = l / 32u;
    uint col = pc.col0 + gl_WorkGroupID.x * 32u + col_in;
    uint r0 = slice, rstep = SLICES;
#else
    uint col = pc.col0 + gl_GlobalInvocationID.x;
    if (col >= pc.c) return;
    uint r0 = 0u, rstep = 1u;
#endif
    float sw = 0.0, sb = 0.0;
    if (col < pc.c) {
        // ROW_UNROLL rows per iteration: n = B*T easily exceeds llvmpipe's
        // 65535-iteration budget (rowreduce.glsl); this allows 524k rows.
        for (uint q = r0; q < pc.n; q += ROW_UNROLL * rstep) {
            [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
                uint r = q + k * rstep;
                if (r >= pc.n) break;
                float g = to_f32(dout[pc.off_dout + r * pc.c + col]);
                float xh = (to_f32(x[pc.off_in + r * pc.c + col]) - mean_in[pc.off_mean + r]) *
                           rstd_in[pc.off_rstd + r];
                sw += g * xh;
                sb += g;
            }
        }
    }
#ifdef FAMILY_GPU
    red_a[l] = sw;
    red_b[l] = sb;
    barrier();
    for (uint h = SLICES / 2u; h > 0u; h >>= 1) {
        if (slice < h) {
            red_a[l] += red_a[l + h * 32u];
            red_b[l] += red_b[l + h * 32u];
        }
        barrier();
    }
    if (slice != 0u || col >= pc.c) return;
    sw = red_a[l];
    sb = red_b[l];
#endif
    dw[pc.off_dw + col] = from_f32(to_f32(dw[pc.off_dw + col]) + sw);
    db[pc.off_db + col] = from_f32(to_f32(db[pc.off_db + col]) + sb);
}
