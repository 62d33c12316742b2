#version 450
#extension GL_GOOGLE_include_directive : require
// bias_bwd: dbias[c] += Σ_r dout[r, c], a column sum over N rows of C,
// in a fixed order (deterministic run to run).
// Workgroup k owns columns [col0 + k*COLS, col0 + (k+1)*COLS); its W lanes
// form COLS columns × ROWS = W / COLS row lanes. Row lane j sums rows j,
// j + ROWS, ... in order; with ROWS > 1 a shared-memory tree then adds the
// row lanes (GPU family: W = 256, COLS = 32). The CPU family uses ROWS = 1
// (W = COLS = 8): one lane per column, no shared memory, no barrier.
// Bindings: 0 dbias, STORE_T[C], rw; 1 dout, STORE_T[N*C], r.
// Push: ew_push: n = N rows, off0 (dbias), off1 (dout), c = C,
//   col0 = first column of this dispatch.
// Spec: 0 workgroup size W (power of two <= 256), 1 COLS (divides W).
// Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "ew_push.glsl"

layout(constant_id = 1) const uint COLS = 8;
const uint ROWS = gl_WorkGroupSize.x / COLS;

layout(set = 0, binding = 0) buffer D { STORE_T db[]; };
layout(set = 0, binding = 1) readonly buffer G { STORE_T dout[]; };

shared float red[256];

void main()
{
    uint lid = gl_LocalInvocationID.x;
    uint rl = lid / COLS;
    uint col = pc.col0 + gl_WorkGroupID.x * COLS + lid % COLS;
    bool live = col < pc.c; // no early return: the tree below has barriers
    float s = 0.0;
    if (live)
        for (uint r = rl; r < pc.n; r += ROWS) s += to_f32(dout[pc.off1 + r * pc.c + col]);
    if (ROWS > 1u) {
        red[lid] = s;
        barrier();
        for (uint h = ROWS / 2u; h > 0u; h >>= 1) {
            if (rl < h) red[lid] += red[lid + h * COLS];
            barrier();
        }
        s = red[lid];
    }
    if (live && rl == 0u) db[pc.off0 + col] = from_f32(to_f32(db[pc.off0 + col]) + s);
}
