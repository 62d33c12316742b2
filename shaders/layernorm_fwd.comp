#version 450
#extension GL_GOOGLE_include_directive : require
// layernorm_fwd: out[r,:] = (in[r,:] - mean_r) * rstd_r * weight + bias over
// rows r of c elements, rstd_r = 1/sqrt(var_r + eps) (biased variance). Also
// saves mean[r] and rstd[r] (fp32) for backward. Two passes over the row
// (mean, then the centred variance) avoid E[x^2] - E[x]^2 cancellation.
// Bindings: 0 out, STORE_T[n*c], w; 1 in, STORE_T[n*c], r;
//   2 weight, STORE_T[c], r; 3 bias, STORE_T[c], r;
//   4 mean, float[n], w; 5 rstd, float[n], w.
// Push: struct ln_fwd_push in src/ops/layernorm.c (rows of this dispatch
//   start at row0; off_* are element offsets of the views).
// Spec: 0 workgroup size (CPU 8, GPU 256).
// Defines: DTYPE_F32 / DTYPE_F16 / DTYPE_BF16; FAMILY_GPU (rowreduce.glsl).
#include "common.glsl"
#include "dtype.glsl"
#include "rowreduce.glsl"

layout(set = 0, binding = 0) writeonly buffer O { STORE_T y[]; };
layout(set = 0, binding = 1) readonly buffer I { STORE_T x[]; };
layout(set = 0, binding = 2) readonly buffer W { STORE_T w[]; };
layout(set = 0, binding = 3) readonly buffer B { STORE_T b[]; };
layout(set = 0, binding = 4) writeonly buffer M { float mean_out[]; };
layout(set = 0, binding = 5) writeonly buffer R { float rstd_out[]; };

layout(push_constant) uniform Push {
    uint n, c, row0, off_out, off_in, off_w, off_b, off_mean, off_rstd;
    float eps;
} pc;

void main()
{
    uint row = pc.row0 + row_index();
    if (row >= pc.n) return; // uniform per workgroup in the GPU family
    uint base = row * pc.c, lane = row_lane(), step = row_step();
    float s = 0.0;
    // ROW_UNROLL elements per iteration: llvmpipe's loop budget, rowreduce.glsl
    for (uint j0 = lane; j0 < pc.c; j0 += ROW_UNROLL * step) {
        [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
            uint j = j0 + k * step;
            if (j >= pc.c) break;
            s += to_f32(x[pc.off_in + base + j]);
        }
    }
    float mean = row_sum(s) / float(pc.c);
    float v = 0.0;
    for (uint j0 = lane; j0 < pc.c; j0 += ROW_UNROLL * step) {
        [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
            uint j = j0 + k * step;
            if (j >= pc.c) break;
            float d = to_f32(x[pc.off_in + base + j]) - mean;
            v += d * d;
        }
    }
    float rstd = inversesqrt(row_sum(v) / float(pc.c) + pc.eps);
    for (uint j0 = lane; j0 < pc.c; j0 += ROW_UNROLL * step) {
        [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
            uint j = j0 + k * step;
            if (j >= pc.c) break;
            float xh = (to_f32(x[pc.off_in + base + j]) - mean) * rstd;
            float o = xh * to_f32(w[pc.off_w + j]) + to_f32(b[pc.off_b + j]);
            y[pc.off_out + base + j] = from_f32(o);
        }
    }
    if (lane == 0) {
        mean_out[pc.off_mean + row] = mean;
        rstd_out[pc.off_rstd + row] = rstd;
    }
}
