#version 450
#extension GL_GOOGLE_include_directive : require
// layernorm_bwd: the input gradient of one row r (c elements), accumulated:
//   xh = (x - mean_r) * rstd_r,  g = dout * weight,
//   din += rstd_r * (g - mean_j(g) - xh * mean_j(g * xh)).
// dweight and dbias are column sums over rows: layernorm_colsum.comp.
// Bindings: 0 din, STORE_T[n*c], rw; 1 dout, STORE_T[n*c], r;
//   2 in, STORE_T[n*c], r; 3 weight, STORE_T[c], r;
//   4 mean, float[n], r; 5 rstd, float[n], r.
// Push: struct ln_bwd_push in src/ops/layernorm.c.
// Spec: 0 workgroup size (CPU 8, GPU 256).
// Defines: DTYPE_*; FAMILY_GPU (rowreduce.glsl).
#include "common.glsl"
#include "dtype.glsl"
#include "rowreduce.glsl"

layout(set = 0, binding = 0) buffer DI { STORE_T din[]; };
layout(set = 0, binding = 1) readonly buffer DO { STORE_T dout[]; };
layout(set = 0, binding = 2) readonly buffer I { STORE_T x[]; };
layout(set = 0, binding = 3) readonly buffer W { STORE_T w[]; };
layout(set = 0, binding = 4) readonly buffer M { float mean_in[]; };
layout(set = 0, binding = 5) readonly buffer R { float rstd_in[]; };

layout(push_constant) uniform Push {
    uint n, c, row0, off_din, off_dout, off_in, off_w, off_mean, off_rstd;
} pc;

void main()
{
    uint row = pc.row0 + row_index();
    if (row >= pc.n) return; // uniform per workgroup in the GPU family
    uint base = row * pc.c, lane = row_lane(), step = row_step();
    float mean = mean_in[pc.off_mean + row], rstd = rstd_in[pc.off_rstd + row];
    float sg = 0.0, sgx = 0.0;
    for (uint j0 = lane; j0 < pc.c; j0 += ROW_UNROLL * step) {
        [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
            uint j = j0 + k * step;
            if (j >= pc.c) break;
            float g = to_f32(dout[pc.off_dout + base + j]) * to_f32(w[pc.off_w + j]);
            float xh = (to_f32(x[pc.off_in + base + j]) - mean) * rstd;
            sg += g;
            sgx += g * xh;
        }
    }
    float mg = row_sum(sg) / float(pc.c);
    float mgx = row_sum(sgx) / float(pc.c);
    for (uint j0 = lane; j0 < pc.c; j0 += ROW_UNROLL * step) {
        [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
            uint j = j0 + k * step;
            if (j >= pc.c) break;
            float g = to_f32(dout[pc.off_dout + base + j]) * to_f32(w[pc.off_w + j]);
            float xh = (to_f32(x[pc.off_in + base + j]) - mean) * rstd;
            uint at = pc.off_din + base + j;
            din[at] = from_f32(to_f32(din[at]) + rstd * (g - mg - xh * mgx));
        }
    }
}
