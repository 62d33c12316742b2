#version 450
#extension GL_GOOGLE_include_directive : require
// xent_bwd: per row r of v logits,
//   dlogits[r,j] += (softmax(x_r)_j - [j == target_r]) * scale,
// or, with IN_PLACE, logits[r,j] = that value (the logits are overwritten
// with their gradient; the memory-saving path of llm.c). The softmax
// statistics (row max m, sum of exp(x - m)) are recomputed here with the
// same online pass as xent_fwd, then a second strided pass writes.
// Rows whose target is ignore_index get zero gradient (nothing is added;
// IN_PLACE writes zeros). A target outside [0, v) that is not ignore_index
// gives NaN gradients, matching the forward's NaN loss.
// Bindings: 0 logits, STORE_T[n*v], r (rw with IN_PLACE);
//   1 targets, int[n], r; 2 dlogits, STORE_T[n*v], rw (unused with
//   IN_PLACE: the launcher binds the logits again).
// Push: struct xent_push in src/ops/xent.c.
// Spec: 0 workgroup size (CPU 8, GPU 256), 1 IN_PLACE (bool).
// Defines: DTYPE_*; FAMILY_GPU (rowreduce.glsl).
#include "common.glsl"
#include "dtype.glsl"
#include "rowreduce.glsl"

layout(constant_id = 1) const bool IN_PLACE = false;

layout(set = 0, binding = 0) buffer X { STORE_T logits[]; };
layout(set = 0, binding = 1) readonly buffer T { int targets[]; };
layout(set = 0, binding = 2) buffer D { STORE_T dl[]; };

layout(push_constant) uniform Push {
    uint n, v, row0, off_loss, off_logits, off_tgt, off_dl;
    int ignore;
    float scale;
} pc;

void main()
{
    uint row = pc.row0 + row_index();
    if (row >= pc.n) return; // uniform per workgroup in the GPU family
    uint base = pc.off_logits + row * pc.v, dbase = pc.off_dl + row * pc.v;
    uint lane = row_lane(), step = row_step();
    int tgt = targets[pc.off_tgt + row];
    if (tgt == pc.ignore) {
        if (IN_PLACE)
            for (uint j0 = lane; j0 < pc.v; j0 += ROW_UNROLL * step)
                [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++)
                    if (j0 + k * step < pc.v) logits[base + j0 + k * step] = from_f32(0.0);
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
    // Out-of-range target: poison the row (see the header comment).
    float inv = (tgt >= 0 && uint(tgt) < pc.v) ? 1.0 / s : uintBitsToFloat(0x7fc00000u);
    for (uint j0 = lane; j0 < pc.v; j0 += ROW_UNROLL * step) {
        [[unroll]] for (uint k = 0; k < ROW_UNROLL; k++) {
            uint j = j0 + k * step;
            if (j >= pc.v) break;
            float p = exp(to_f32(logits[base + j]) - m) * inv;
            float g = (p - (j == uint(tgt) ? 1.0 : 0.0)) * pc.scale;
            if (IN_PLACE) logits[base + j] = from_f32(g);
            else dl[dbase + j] = from_f32(to_f32(dl[dbase + j]) + g);
        }
    }
}
