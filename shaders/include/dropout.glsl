// Shared by dropout_fwd.comp and dropout_bwd.comp: bindings, push constants
// and the keep factor of one element.
//
// Element (row, col) of the call belongs to global sample s = sample + row
// (64-bit, carried here) and draws word col % 4 of
//     philox4x32_10(ctr = (col / 4, s_lo, s_hi, 0), key)
// where key = Philox(seed, step, site) is derived once per call on the host
// (src/ops/dropout.c, derive_key), so the per-element work is one Philox
// block per 4 elements. The element is kept when the word is >= thr, with
// thr = floor(p · 2^32): P(keep) = 1 - thr / 2^32 ≈ 1 - p.
//
// Bindings: 0 out (fwd: w; bwd: din, rw), STORE_T[N*C]; 1 in (fwd: input;
//   bwd: dout), STORE_T[N*C], r.
// Push: struct dropout_push in src/ops/dropout.c.
#ifndef VKT_DROPOUT_GLSL
#define VKT_DROPOUT_GLSL

#include "rng.glsl"

layout(push_constant) uniform Push {
    uint n;                      // elements this dispatch
    uint off_out, off_in;        // element offsets in the windows
    uint c;                      // elements per row
    uint col0;                   // column of this dispatch's element 0
    uint sample_lo, sample_hi;   // global sample of this dispatch's row 0
    uint key0, key1;             // derived Philox key
    uint thr;                    // keep when word >= thr
    float scale;                 // 1 / (1 - p)
} pc;

// Walks the elements of one invocation's run in order, drawing a Philox
// block for the first element and whenever a 4-column group starts.
struct drop_walk {
    uint row, col;
    bool fresh; // no block drawn yet
    uvec4 bits;
};

uvec4 drop_block(uint row, uint col)
{
    uint lo = pc.sample_lo + row;
    uint hi = pc.sample_hi + (lo < row ? 1u : 0u); // 64-bit sample index
    return philox4x32_10(uvec4(col >> 2, lo, hi, 0u), uvec2(pc.key0, pc.key1));
}

drop_walk drop_start(uint first)
{
    uint t = pc.col0 + first;
    drop_walk w;
    w.row = t / pc.c;
    w.col = t % pc.c;
    w.fresh = true;
    w.bits = uvec4(0u);
    return w;
}

// Keep factor (0 or 1/(1-p)) of the current element, then step to the next.
float drop_next(inout drop_walk w)
{
    if (w.fresh || (w.col & 3u) == 0u) {
        w.bits = drop_block(w.row, w.col);
        w.fresh = false;
    }
    float f = w.bits[w.col & 3u] >= pc.thr ? pc.scale : 0.0;
    if (++w.col == pc.c) {
        w.col = 0u;
        w.row++;
    }
    return f;
}

#endif
