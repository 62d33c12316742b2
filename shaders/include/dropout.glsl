// Shared by dropout_fwd.comp and dropout_bwd.comp: bindings, push constants
// and the keep factor of one element.
//
// Element (row, col) of the call belongs to global sample
// s = sample0 + row0 + row (64-bit, carried here) and draws word col % 4 of
//     philox4x32_10(ctr = (col / 4, s_lo, s_hi, 0), key[site])
// where key[site] = Philox(seed, step, site) is derived on the host once per
// run (src/ops/dropout.c, vkt_dropout_state_fill), so the per-element work is
// one Philox block per 4 elements. The element is kept when the word is
// >= thr, with thr = floor(p · 2^32): P(keep) = 1 - thr / 2^32 ≈ 1 - p.
// sample0, the keys, thr and scale come from the state buffer (binding 2),
// which the host rewrites between replays of a recorded command buffer;
// thr = 0 and scale = 1 make the op a copy (evaluation).
//
// Bindings: 0 out (fwd: w; bwd: din, rw), STORE_T[N*C]; 1 in (fwd: input;
//   bwd: dout), STORE_T[N*C], r; 2 state, uint[4 + 2·sites], r:
//   {sample0_lo, sample0_hi, thr, float bits of scale, key0[0], key1[0], ...}.
// Push: struct dropout_push in src/ops/dropout.c.
#ifndef VKT_DROPOUT_GLSL
#define VKT_DROPOUT_GLSL

#include "rng.glsl"

layout(push_constant) uniform Push {
    uint n;                      // elements this dispatch
    uint off_out, off_in;        // element offsets in the windows
    uint off_state;              // word offset of the state in its window
    uint c;                      // elements per row
    uint col0;                   // column of this dispatch's element 0
    uint row0;                   // row of this dispatch's element 0 within the call
    uint site;                   // which key of the state
} pc;

layout(set = 0, binding = 2) readonly buffer State { uint st[]; };

// Walks the elements of one invocation's run in order, drawing a Philox
// block for the first element and whenever a 4-column group starts.
struct drop_walk {
    uint row, col;   // row within the call (row0 included)
    bool fresh;      // no block drawn yet
    uvec4 bits;
    uint s_lo, s_hi; // the state's first sample
    uvec2 key;
    uint thr;
    float scale;
};

uvec4 drop_block(drop_walk w)
{
    uint lo = w.s_lo + w.row;
    uint hi = w.s_hi + (lo < w.row ? 1u : 0u); // 64-bit sample index
    return philox4x32_10(uvec4(w.col >> 2, lo, hi, 0u), w.key);
}

drop_walk drop_start(uint first)
{
    uint t = pc.col0 + first;
    uint o = pc.off_state;
    drop_walk w;
    w.row = pc.row0 + t / pc.c;
    w.col = t % pc.c;
    w.fresh = true;
    w.bits = uvec4(0u);
    w.s_lo = st[o];
    w.s_hi = st[o + 1u];
    w.thr = st[o + 2u];
    w.scale = uintBitsToFloat(st[o + 3u]);
    w.key = uvec2(st[o + 4u + 2u * pc.site], st[o + 5u + 2u * pc.site]);
    return w;
}

// Keep factor (0 or 1/(1-p)) of the current element, then step to the next.
float drop_next(inout drop_walk w)
{
    if (w.thr == 0u) return w.scale; // p = 0 (evaluation): no draws, a copy
    if (w.fresh || (w.col & 3u) == 0u) {
        w.bits = drop_block(w);
        w.fresh = false;
    }
    float f = w.bits[w.col & 3u] >= w.thr ? w.scale : 0.0;
    if (++w.col == pc.c) {
        w.col = 0u;
        w.row++;
    }
    return f;
}

#endif
