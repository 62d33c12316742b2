#version 450
#extension GL_GOOGLE_include_directive : require
// embed_fwd: out[b,t,:] = wte[tokens[b,t], :] + wpe[t, :] over the B*T*C
// output elements, split like every elementwise kernel (elementwise.glsl:
// the families differ only in workgroup size and run length). A token
// outside [0, vocab) reads zeros from wte (tokens are checked by the loader).
// Bindings: 0 out, STORE_T[B*T*C], w; 1 tokens, int[B*T], r;
//   2 wte, STORE_T[vocab*C], r; 3 wpe, STORE_T[T*C], r.
// Push: struct embed_push in src/ops/embed.c; this dispatch covers output
//   elements [base, base + count).
// Spec: 0 workgroup size, 1 RUN.
// Defines: DTYPE_*.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"

layout(set = 0, binding = 0) writeonly buffer O { STORE_T y[]; };
layout(set = 0, binding = 1) readonly buffer K { int tokens[]; };
layout(set = 0, binding = 2) readonly buffer E { STORE_T wte[]; };
layout(set = 0, binding = 3) readonly buffer P { STORE_T wpe[]; };

layout(push_constant) uniform Push {
    uint count, base, c, t_len, vocab, off_out, off_tok, off_wte, off_wpe;
} pc;

void main()
{
    uint end = run_end(pc.count);
    for (uint i = run_begin(); i < end; i++) {
        uint e = pc.base + i, row = e / pc.c, col = e % pc.c;
        int tok = tokens[pc.off_tok + row];
        float v = to_f32(wpe[pc.off_wpe + (row % pc.t_len) * pc.c + col]);
        if (tok >= 0 && uint(tok) < pc.vocab) v += to_f32(wte[pc.off_wte + uint(tok) * pc.c + col]);
        y[pc.off_out + e] = from_f32(v);
    }
}
