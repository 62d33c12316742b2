#version 450
#extension GL_GOOGLE_include_directive : require
// embed_bwd_wte: dwte[v,c] += sum over positions i with tokens[i] == v of
// dout[i,c], i = 0..B*T-1 in order: every entry of dwte is summed in a fixed
// order by one invocation, so the result is deterministic (no atomics).
// Each invocation scans all B*T tokens, ROW_UNROLL per iteration, into a
// bitmask of matches without branching, then visits only the matches.
// lavapipe runs both sides of every `if` under a lane mask, so a guarded
// dout read per token would cost a full gather per position (measured: 70 s
// for V = 30000, B*T = 1024, C = 768); a loop, though, stops when no lane is
// active, and since a workgroup serves one vocab row v, all its lanes see
// the same matches. Only matching positions read dout.
//   CPU family: 8 lanes, each a contiguous run of CH = 16 channels held in
//     registers; GPU family (-DFAMILY_GPU): 256 lanes, one channel each
//     (coalesced dout reads). Workgroup x: channel block, y: vocab row.
// Loop iterations per invocation: B*T/8 + matches (llvmpipe's budget of
// 65535, rowreduce.glsl, is checked by the launcher).
// Bindings: 0 dwte, STORE_T[vocab*C], rw; 1 tokens, int[B*T], r;
//   2 dout, STORE_T[B*T*C], r.
// Push: struct wte_push in src/ops/embed.c (v0: first vocab row of this
//   dispatch).
// Spec: 0 workgroup size (CPU 8, GPU 256).
// Defines: DTYPE_*; FAMILY_GPU.
#include "common.glsl"
#include "dtype.glsl"
#include "rowreduce.glsl"

layout(set = 0, binding = 0) buffer DE { STORE_T dwte[]; };
layout(set = 0, binding = 1) readonly buffer K { int tokens[]; };
layout(set = 0, binding = 2) readonly buffer DO { STORE_T dout[]; };

layout(push_constant) uniform Push { uint bt, c, vocab, v0, off_dwte, off_tok, off_dout; } pc;

#ifdef FAMILY_GPU
#define CH 1u
#else
#define CH 16u
#endif

void main()
{
    uint v = pc.v0 + gl_WorkGroupID.y, c0 = gl_GlobalInvocationID.x * CH;
    if (v >= pc.vocab || c0 >= pc.c) return;
    float acc[CH];
    [[unroll]] for (uint k = 0; k < CH; k++) acc[k] = 0.0;
    bool hit = false;
    for (uint i0 = 0; i0 < pc.bt; i0 += ROW_UNROLL) {
        uint m = 0u;
        [[unroll]] for (uint u = 0; u < ROW_UNROLL; u++) {
            uint i = min(i0 + u, pc.bt - 1u);
            uint eq = uint(tokens[pc.off_tok + i] == int(v)) & uint(i0 + u < pc.bt);
            m |= eq << u;
        }
        while (m != 0u) { // uniform: v is the same for the whole workgroup
            uint i = i0 + uint(findLSB(m));
            m &= m - 1u;
            hit = true;
            [[unroll]] for (uint k = 0; k < CH; k++)
                if (c0 + k < pc.c) acc[k] += to_f32(dout[pc.off_dout + i * pc.c + c0 + k]);
        }
    }
    if (!hit) return; // nothing to add: leave dwte untouched
    [[unroll]] for (uint k = 0; k < CH; k++) {
        if (c0 + k >= pc.c) break;
        uint at = pc.off_dwte + v * pc.c + c0 + k;
        dwte[at] = from_f32(to_f32(dwte[at]) + acc[k]);
    }
}
