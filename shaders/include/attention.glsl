// Shared by the attention kernels (attention_fwd, attention_bwd_q,
// attention_bwd_kv; launcher src/ops/attention.c).
//
// Every kernel walks one head (b, h) = (gl_WorkGroupID.z, gl_WorkGroupID.y)
// and gives each invocation one row of T (a query row t, or a key column s
// in attention_bwd_kv); gl_WorkGroupID.x picks the block of rows. The rows
// of the other operand (keys, values, queries or dout rows) are visited in
// the same order by every invocation, so their loads are uniform:
//  - CPU family (default): read straight from the buffer. Their address
//    depends only on the workgroup and loop counters, which lavapipe turns
//    into one scalar load plus a broadcast.
//  - GPU family (-DFAMILY_GPU): tiles of KT rows are staged through shared
//    memory by the whole workgroup, then read by all lanes (broadcast).
// Callers loop `for (r0 = first; r0 <= last; r0 += KT)`, call stage(), and
// read rows r in [r0, min(r0 + KT, last + 1)) with row_at().
//
// A head row of hs channels is held as HV vec4s (channels past hs repeat
// channel hs-1 in other rows and are 0 in an invocation's own row; they
// are never stored). CPU family: HV = HSP / 4 with HSP a
// -D define (16, 32, 64, 128), and FOR_V unrolls in the preprocessor:
// lavapipe leaves spec-constant loops rolled, which puts the per-invocation
// arrays in scratch memory (see shaders/matmul_cpu.comp). GPU family: HV is
// spec constant 1 and FOR_V a loop that GPU compilers unroll.
//
// Before including, a shader declares `qkv` (STORE_T[B·T·3C]) and, with
// ATT_DOUT defined, `dout` (STORE_T[B·T·C]).
#ifndef VKT_ATTENTION_GLSL
#define VKT_ATTENTION_GLSL

#ifdef FAMILY_GPU
layout(constant_id = 1) const uint HV = 16;
#define FOR_V(X) for (uint j_ = 0; j_ < HV; j_++) { X(j_) }
#else
#define REP4(X, b) X((b)) X((b) + 1u) X((b) + 2u) X((b) + 3u)
#define REP8(X, b) REP4(X, (b)) REP4(X, (b) + 4u)
#define REP16(X, b) REP8(X, (b)) REP8(X, (b) + 8u)
#define REP32(X, b) REP16(X, (b)) REP16(X, (b) + 16u)
#if HSP == 16
#define FOR_V(X) REP4(X, 0u)
#elif HSP == 32
#define FOR_V(X) REP8(X, 0u)
#elif HSP == 64
#define FOR_V(X) REP16(X, 0u)
#elif HSP == 128
#define FOR_V(X) REP32(X, 0u)
#else
#error "HSP must be 16, 32, 64 or 128"
#endif
const uint HV = HSP / 4;
#endif

// struct attn_push in src/ops/attention.c. Offsets are elements of the
// bound windows, already moved to the first batch item of this dispatch.
layout(push_constant) uniform Push {
    uint T, C, hs;
    uint off_qkv, off_out, off_att, off_dqkv, off_dout, off_datt;
} pc;

// Operand selectors: channel blocks of qkv, and dout.
const uint OP_Q = 0, OP_K = 1, OP_V = 2, OP_DOUT = 3;

uint head_b() { return gl_WorkGroupID.z; }
uint head_h() { return gl_WorkGroupID.y; }

// Element index of row r, channel 0 of operand op for this head, relative to
// the view (add pc.off_qkv / pc.off_dqkv, or pc.off_dout / pc.off_out).
uint op_row(uint op, uint r)
{
    uint row = head_b() * pc.T + r;
    if (op == OP_DOUT) return row * pc.C + head_h() * pc.hs;
    return row * 3 * pc.C + op * pc.C + head_h() * pc.hs;
}

float op_load(uint op, uint i)
{
#ifdef ATT_DOUT
    if (op == OP_DOUT) return to_f32(dout[pc.off_dout + i]);
#endif
    return to_f32(qkv[pc.off_qkv + i]);
}

// Element indices of channels 4j .. 4j+3 from i, clamped to hs - 1.
uvec4 vec_idx(uint i, uint j) { return uvec4(i) + min(uvec4(4 * j) + uvec4(0, 1, 2, 3), uvec4(pc.hs - 1)); }

// Channels 4j .. 4j+3 of row r of operand op (clamped to hs - 1).
vec4 op_vec(uint op, uint r, uint j)
{
    uvec4 i = vec_idx(op_row(op, r), j);
    return vec4(op_load(op, i.x), op_load(op, i.y), op_load(op, i.z), op_load(op, i.w));
}

// The same with channels past hs set to 0: an invocation's own row, whose
// padding must not add to dot products with the other operand's rows.
vec4 op_vec0(uint op, uint r, uint j)
{
    uvec4 c = uvec4(4 * j) + uvec4(0, 1, 2, 3);
    return op_vec(op, r, j) * vec4(lessThan(c, uvec4(pc.hs)));
}

// First element of row i of this head's [T, T] matrix, relative to the
// view (add pc.off_att or pc.off_datt).
uint att_row(uint i) { return ((head_b() * gl_NumWorkGroups.y + head_h()) * pc.T + i) * pc.T; }

#ifdef FAMILY_GPU
const uint KT = 32; // rows per tile: 16 KiB of shared memory at hs = 128
shared vec4 tile[KT * HV];

// Stage rows [r0, r1) of operand op. Every invocation must call this with the
// same arguments (it holds barriers).
void stage(uint op, uint r0, uint r1)
{
    barrier(); // the previous tile is no longer read
    uint n = (r1 - r0) * HV;
    for (uint i = gl_LocalInvocationID.x; i < n; i += gl_WorkGroupSize.x)
        tile[i] = op_vec(op, r0 + i / HV, i % HV);
    barrier();
}

vec4 row_at(uint op, uint r0, uint r, uint j) { return tile[(r - r0) * HV + j]; }
#else
const uint KT = 1u << 20; // one pass over all rows: nothing is staged

void stage(uint op, uint r0, uint r1) {}

vec4 row_at(uint op, uint r0, uint r, uint j) { return op_vec(op, r, j); }
#endif

// Channels 4j .. 4j+3 of a head row as element indices from i, clamped to
// Results are stored through vec_idx too: a padded channel of an
// accumulator holds exactly the value of channel hs - 1 (its inputs were
// clamped the same way), so it writes that value again, with no branch per
// channel. Callers skip vec4s wholly past hs (4j >= hs), which would repeat
// a channel that an earlier vec4 already updated.

// dqkv[i + channels of vec4 j] += acc[j]: all four old values are read
// before any is written, so a repeated channel gets the same new value.
#define ADD_VEC(j)                                                             \
    if (4 * (j) < pc.hs) {                                                     \
        uvec4 k_ = vec_idx(pc.off_dqkv + base_, j);                            \
        vec4 n_ = acc[j] + vec4(to_f32(dqkv[k_.x]), to_f32(dqkv[k_.y]),        \
                                to_f32(dqkv[k_.z]), to_f32(dqkv[k_.w]));       \
        dqkv[k_.x] = from_f32(n_.x);                                           \
        dqkv[k_.y] = from_f32(n_.y);                                           \
        dqkv[k_.z] = from_f32(n_.z);                                           \
        dqkv[k_.w] = from_f32(n_.w);                                           \
    }

// Rows handled by this workgroup: [blk_first(), blk_last()] (clamped to T).
uint blk_first() { return gl_WorkGroupID.x * gl_WorkGroupSize.x; }
uint blk_last() { return min(blk_first() + gl_WorkGroupSize.x, pc.T) - 1; }

#endif
