#version 450
#extension GL_GOOGLE_include_directive : require
// xent_fwd: per row r of v logits, losses[r] = log(sum_j exp(x_j - m)) + m -
// x[target_r] with m the row max (so exp never overflows, whatever the
// logits' size). One pass with an online max/sum: when a larger x arrives,
// the running sum is rescaled by exp(m_old - m_new). The row is walked in a
// strided loop, so any v works (nothing of the row is kept on chip).
// A target equal to ignore_index gives loss 0; a target outside [0, v)
// that is not ignore_index gives NaN, so a bad batch is loud, not silent.
// Bindings: 0 losses, float[n], w; 1 logits, STORE_T[n*v], r;
//   2 targets, int[n], r.
// Push: struct xent_push in src/ops/xent.c (fwd uses n, v, row0, off_loss,
//   off_logits, off_tgt, ignore).
// Spec: 0 workgroup size (CPU 8, GPU 256).
// Defines: DTYPE_*; FAMILY_GPU (rowreduce.glsl).
#include "common.glsl"
#include "dtype.glsl"
#include "rowreduce.glsl"

layout(set = 0, binding = 0) writeonly buffer L { float losses[]; };
layout(set = 0, binding = 1) readonly buffer X { STORE_T logits[]; };
layout(set = 0, binding = 2) readonly buffer T { int targets[]; };

layout(push_constant) uniform Push {
    uint n, v, row0, off_loss, off_logits, off_tgt, off_dl;
    int ignore;
    float scale;
} pc;

void main()
{
    uint row = pc.row0 + row_index();
    if (row >= pc.n) return; // uniform per workgroup in the GPU family
    uint base = pc.off_logits + row * pc.v, lane = row_lane(), step = row_step();
    int tgt = targets[pc.off_tgt + row];
    if (tgt == pc.ignore) {
        if (lane == 0) losses[pc.off_loss + row] = 0.0;
        return;
    }
    float m = NEG_BIG, s = 0.0;
    for (uint j0 = lane; j0 < pc.v; j0 += ROW_UNROLL * step) { // see rowreduce.glsl
        [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
            uint j = j0 + k * step;
            if (j >= pc.v) break;
            float x = to_f32(logits[base + j]);
            if (x > m) {
                s = s * exp(m - x) + 1.0;
                m = x;
            } else {
                s += exp(x - m);
            }
        }
    }
    row_maxsum(m, s);
    if (lane != 0) return;
    float loss = uintBitsToFloat(0x7fc00000u); // NaN: target out of range
    // m - x[target] first: both may be ~1e4, and their difference is exact.
    if (tgt >= 0 && uint(tgt) < pc.v) loss = log(s) + (m - to_f32(logits[base + uint(tgt)]));
    losses[pc.off_loss + row] = loss;
}
