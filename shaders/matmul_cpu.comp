#version 450
#extension GL_GOOGLE_include_directive : require
#ifdef BIG
#extension GL_KHR_shader_subgroup_ballot : require
#endif
// matmul, CPU-device family (lavapipe): C[M,N] (+)= op(A) · op(B), fp32
// accumulation over f32, f16 or bf16 storage (DTYPE_*).
// Bindings, push constants and LAYOUT: see include/matmul_common.glsl;
// bindings 1 and 2 are also read as 4-element vectors when AVEC4 / BVEC4
// are set (vec4, f16vec4 or u16vec4 by DTYPE_*).
// Spec constants: 0 = W, invocations per workgroup (8 = one SIMD vector of
//   lavapipe); 1 = LAYOUT; 2 = AVEC4, 3 = BVEC4: 1 when the 4 values of A
//   (of B) that one vec4 load reads are one aligned vec4 (the launcher checks
//   the run length and the view's first element and batch stride mod 4),
//   else 0: four scalar loads, correct for any shape and offset.
// Defines: DTYPE_F32 / DTYPE_F16 / DTYPE_BF16; R, rows per workgroup (8,
//   16, 32, 64 or 128); CV, vec4 column groups per invocation (1, 2, 4, 8 or
//   16); BIG (R >= 32), the variant for aligned products described below.
//   One table row per (dtype, R, CV, BIG); src/ops/matmul.c says which
//   tiles are used and why.
// Grid: x = ceil(N / (4·CV·W)), y = ceil(M / R), z = batch.
//
// Why this shape (shared/notes/lavapipe-performance.md, and measured here on
// Mesa 22.3): every storage-buffer load inside the k loop costs a loop over
// the 8 lanes, whatever its address (lavapipe's uniform fast path needs an
// address from constants and push constants only), while loading 4 floats in
// that loop costs little more than 1. So the kernel maximises FMAs per vec4
// load: each invocation keeps an R × 4·CV register tile, and per 4 values of
// k loads R vec4 of A and 4·CV vec4 of B for 16·R·CV FMAs. All invocations
// of a workgroup share the R rows; each owns 4·CV adjacent columns. The
// loops over the tile are unrolled by the preprocessor (lavapipe keeps an
// array indexed by loop counters in scratch memory). No shared memory.
//
// BIG requires AVEC4 = BVEC4 = 1, K % 4 == 0, N % 4 == 0 and C's view and
// batch stride at multiples of 4 elements, a subgroup of at least W = 8
// lanes, and R >= 32 (the launcher checks). Then:
//  - lane l loads rows 8j + l of A (TN: 4-row groups 8j + l) and every lane
//    takes row r from lane r % 8 with subgroupBroadcast (a constant lane is
//    a register extract on lavapipe): R / 8 loads of A instead of R;
//  - no K tail;
//  - C is stored as whole 4-vectors from a rolled loop over groups of 8
//    rows, shifting the accumulators up after each group. Unrolled stores
//    of all R·CV vectors, each a loop over the lanes with its guard and
//    accumulate load, made LLVM take minutes on the big tiles; the rolled
//    loop holds 8·CV of them and costs seconds.
#include "matmul_common.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;
layout(constant_id = 2) const uint AVEC4 = 0;
layout(constant_id = 3) const uint BVEC4 = 0;

// 4 stored elements, their fp32 values, and back (rounding as dtype.glsl).
#if defined(DTYPE_F32)
#define STORE4_T vec4
vec4 to_f32v(vec4 x) { return x; }
#elif defined(DTYPE_F16)
#define STORE4_T f16vec4
vec4 to_f32v(f16vec4 x) { return vec4(x); }
#else
#define STORE4_T u16vec4
vec4 to_f32v(u16vec4 x) { return uintBitsToFloat(uvec4(x) << 16u); }
#endif

#if defined(DTYPE_F32)
vec4 from_f32v(vec4 x) { return x; }
#elif defined(DTYPE_F16)
f16vec4 from_f32v(vec4 x) { return f16vec4(x); }
#else
u16vec4 from_f32v(vec4 x)
{
    return u16vec4(from_f32(x.x), from_f32(x.y), from_f32(x.z), from_f32(x.w));
}
#endif

layout(set = 0, binding = 0) buffer C4buf { STORE4_T c4_data[]; };
layout(set = 0, binding = 1) readonly buffer A4buf { STORE4_T a4_data[]; };
layout(set = 0, binding = 2) readonly buffer B4buf { STORE4_T b4_data[]; };

#ifndef R
#define R 16
#endif
#ifndef CV
#define CV 4
#endif
#define X4(X, b) X((b)) X((b) + 1u) X((b) + 2u) X((b) + 3u)
#define X8(X, b) X4(X, (b)) X4(X, (b) + 4u)
#define X16(X, b) X8(X, (b)) X8(X, (b) + 8u)
#define X32(X, b) X16(X, (b)) X16(X, (b) + 16u)
#define X64(X, b) X32(X, (b)) X32(X, (b) + 32u)
#if R == 8
#define FOR_ROWS(X) X8(X, 0u)
#elif R == 16
#define FOR_ROWS(X) X16(X, 0u)
#elif R == 32
#define FOR_ROWS(X) X32(X, 0u)
#elif R == 64
#define FOR_ROWS(X) X64(X, 0u)
#elif R == 128
#define FOR_ROWS(X) X64(X, 0u) X64(X, 64u)
#else
#error "R must be 8, 16, 32, 64 or 128"
#endif
#define FOR_CV4_(X, r, b) X(r, (b)) X(r, (b) + 1u) X(r, (b) + 2u) X(r, (b) + 3u)
#if CV == 1
#define FOR_CV(X, r) X(r, 0u)
#elif CV == 2
#define FOR_CV(X, r) X(r, 0u) X(r, 1u)
#elif CV == 4
#define FOR_CV(X, r) X(r, 0u) X(r, 1u) X(r, 2u) X(r, 3u)
#elif CV == 8
#define FOR_CV(X, r) FOR_CV4_(X, r, 0u) FOR_CV4_(X, r, 4u)
#elif CV == 16
#define FOR_CV(X, r) FOR_CV4_(X, r, 0u) FOR_CV4_(X, r, 4u) FOR_CV4_(X, r, 8u) FOR_CV4_(X, r, 12u)
#else
#error "CV must be 1, 2, 4, 8 or 16"
#endif

// 4 consecutive floats of a binding from element i (aligned when *VEC4).
vec4 a_run(uint i)
{
    if (AVEC4 != 0u) return to_f32v(a4_data[i >> 2]);
    return vec4(to_f32(a_data[i]), to_f32(a_data[i + 1u]), to_f32(a_data[i + 2u]),
                to_f32(a_data[i + 3u]));
}
vec4 b_run(uint i)
{
    if (BVEC4 != 0u) return to_f32v(b4_data[i >> 2]);
    return vec4(to_f32(b_data[i]), to_f32(b_data[i + 1u]), to_f32(b_data[i + 2u]),
                to_f32(b_data[i + 3u]));
}

// op(A)[m0 + r, k0 .. k0+3] as a vec4 along k (k0 + 3 < K). Rows past M
// are clamped. TN keeps A as [K,M]: 4 loads along m serve 4 rows, so the
// caller asks for groups of 4 rows through a_tn_group instead.
vec4 a_k4(uint base, uint m0, uint r, uint k0)
{
    uint row = min(m0 + r, pc.m - 1u);
    return a_run(base + row * pc.k + k0);
}

// TN: rows m0+4g .. m0+4g+3 at k, a vec4 along m. Without AVEC4 (M mod 4
// != 0 allowed) each row is clamped on its own.
vec4 a_tn_group(uint base, uint m0, uint g, uint kk)
{
    uint row = m0 + 4u * g;
    if (AVEC4 != 0u) return to_f32v(a4_data[(base + kk * pc.m + min(row, pc.m - 4u)) >> 2]);
    uvec4 rows = min(uvec4(row) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.m - 1u));
    return vec4(to_f32(a_data[base + kk * pc.m + rows.x]),
                to_f32(a_data[base + kk * pc.m + rows.y]),
                to_f32(a_data[base + kk * pc.m + rows.z]),
                to_f32(a_data[base + kk * pc.m + rows.w]));
}

// op(B)[k, c .. c+3] for NN/TN (B is [K,N]); columns past N are clamped.
vec4 b_cols(uint base, uint kk, uint c)
{
    if (BVEC4 != 0u) return to_f32v(b4_data[(base + kk * pc.n + min(c, pc.n - 4u)) >> 2]);
    uvec4 cols = min(uvec4(c) + uvec4(0u, 1u, 2u, 3u), uvec4(pc.n - 1u));
    return vec4(to_f32(b_data[base + kk * pc.n + cols.x]),
                to_f32(b_data[base + kk * pc.n + cols.y]),
                to_f32(b_data[base + kk * pc.n + cols.z]),
                to_f32(b_data[base + kk * pc.n + cols.w]));
}

// NT (B is [N,K]): column c's values at k0 .. k0+3, a vec4 along k.
vec4 b_nt_k4(uint base, uint c, uint k0)
{
    return b_run(base + min(c, pc.n - 1u) * pc.k + k0);
}

// Columns c .. c+ncols-1 of one row of C.
void store_row(uint cbase, uint row, uint c, vec4 v)
{
    if (c >= pc.n) return;
    uint ncols = min(4u, pc.n - c);
    for (uint j = 0; j < ncols; j++) store_c(cbase, row, c + j, v[j]);
}

#if R == 8
#define FOR_GROUPS(X) X(0u) X(1u)
#elif R == 16
#define FOR_GROUPS(X) X4(X, 0u)
#elif R == 32
#define FOR_GROUPS(X) X8(X, 0u)
#elif R == 64
#define FOR_GROUPS(X) X16(X, 0u)
#else
#define FOR_GROUPS(X) X32(X, 0u)
#endif

// BIG: loads of A shared through the subgroup (see the header).
#if R == 32
#define FOR_A8(X) X4(X, 0u)
#define FOR_TN32(X) X(0u)
#elif R == 64
#define FOR_A8(X) X8(X, 0u)
#define FOR_TN32(X) X(0u) X(1u)
#elif R == 128
#define FOR_A8(X) X16(X, 0u)
#define FOR_TN32(X) X4(X, 0u)
#elif defined(BIG)
#error "BIG needs R = 32, 64 or 128"
#endif

void main()
{
    uint batch = gl_WorkGroupID.z + pc.group_z;
    uint m0 = (gl_WorkGroupID.y + pc.group_y) * R;
    uint c0 = ((gl_WorkGroupID.x + pc.group_x) * gl_WorkGroupSize.x + gl_LocalInvocationID.x) *
              (4u * CV);
    uint abase = a_base(batch), bbase = b_base(batch);
#ifdef BIG
    uint lane = gl_SubgroupInvocationID;
#endif

    vec4 acc[R * CV]; // acc[r*CV + v] = C[m0 + r, c0 + 4v .. +3]
#define INIT_V(r, v) acc[(r) * CV + (v)] = vec4(0.0);
#define INIT_ROW(r) FOR_CV(INIT_V, r)
    FOR_ROWS(INIT_ROW)

    // acc[r, v] += Σ_kk a[kk] · b[4v + kk], a = op(A)[m0 + r, k0 .. k0+3].
#define FMA_V(r, v)                                                            \
    acc[(r) * CV + (v)] = fma(vec4(a.x), b[(v) * 4u],                          \
        fma(vec4(a.y), b[(v) * 4u + 1u], fma(vec4(a.z), b[(v) * 4u + 2u],      \
        fma(vec4(a.w), b[(v) * 4u + 3u], acc[(r) * CV + (v)]))));
#define ROW_K4(r) { vec4 a = a_k4(abase, m0, (r), k0); FOR_CV(FMA_V, (r)) }
#define GROUP_K4(g)                                                            \
    {                                                                          \
        vec4 t0 = a_tn_group(abase, m0, (g), k0);                              \
        vec4 t1 = a_tn_group(abase, m0, (g), k0 + 1u);                         \
        vec4 t2 = a_tn_group(abase, m0, (g), k0 + 2u);                         \
        vec4 t3 = a_tn_group(abase, m0, (g), k0 + 3u);                         \
        { vec4 a = vec4(t0.x, t1.x, t2.x, t3.x); FOR_CV(FMA_V, (g) * 4u) }     \
        { vec4 a = vec4(t0.y, t1.y, t2.y, t3.y); FOR_CV(FMA_V, (g) * 4u + 1u) } \
        { vec4 a = vec4(t0.z, t1.z, t2.z, t3.z); FOR_CV(FMA_V, (g) * 4u + 2u) } \
        { vec4 a = vec4(t0.w, t1.w, t2.w, t3.w); FOR_CV(FMA_V, (g) * 4u + 3u) } \
    }
    // b[4v + kk] = op(B)[k0 + kk, c0 + 4v .. +3]
#define LOAD_B_KN(r_, v)                                                       \
    b[(v) * 4u] = b_cols(bbase, k0, c0 + 4u * (v));                            \
    b[(v) * 4u + 1u] = b_cols(bbase, k0 + 1u, c0 + 4u * (v));                  \
    b[(v) * 4u + 2u] = b_cols(bbase, k0 + 2u, c0 + 4u * (v));                  \
    b[(v) * 4u + 3u] = b_cols(bbase, k0 + 3u, c0 + 4u * (v));
#define LOAD_B_NT(r_, v)                                                       \
    {                                                                          \
        vec4 t0 = b_nt_k4(bbase, c0 + 4u * (v), k0);                           \
        vec4 t1 = b_nt_k4(bbase, c0 + 4u * (v) + 1u, k0);                      \
        vec4 t2 = b_nt_k4(bbase, c0 + 4u * (v) + 2u, k0);                      \
        vec4 t3 = b_nt_k4(bbase, c0 + 4u * (v) + 3u, k0);                      \
        b[(v) * 4u] = vec4(t0.x, t1.x, t2.x, t3.x);                            \
        b[(v) * 4u + 1u] = vec4(t0.y, t1.y, t2.y, t3.y);                       \
        b[(v) * 4u + 2u] = vec4(t0.z, t1.z, t2.z, t3.z);                       \
        b[(v) * 4u + 3u] = vec4(t0.w, t1.w, t2.w, t3.w);                       \
    }
    uint k4 = pc.k & ~3u;
    for (uint k0 = 0; k0 < k4; k0 += 4u) {
        vec4 b[4 * CV];
        if (LAYOUT == LAYOUT_NT) { FOR_CV(LOAD_B_NT, 0u) }
        else { FOR_CV(LOAD_B_KN, 0u) }
#ifdef BIG
        if (LAYOUT == LAYOUT_TN) {
            // lane l loads the 4-row groups 8j + l at k0 .. k0+3
            vec4 ta0[R / 32], ta1[R / 32], ta2[R / 32], ta3[R / 32];
#define LOAD_TN(j)                                                             \
            ta0[j] = a_tn_group(abase, m0, 8u * (j) + lane, k0);               \
            ta1[j] = a_tn_group(abase, m0, 8u * (j) + lane, k0 + 1u);          \
            ta2[j] = a_tn_group(abase, m0, 8u * (j) + lane, k0 + 2u);          \
            ta3[j] = a_tn_group(abase, m0, 8u * (j) + lane, k0 + 3u);
#define GROUP_BC(g)                                                            \
            {                                                                  \
                vec4 t0 = subgroupBroadcast(ta0[(g) / 8u], (g) % 8u);          \
                vec4 t1 = subgroupBroadcast(ta1[(g) / 8u], (g) % 8u);          \
                vec4 t2 = subgroupBroadcast(ta2[(g) / 8u], (g) % 8u);          \
                vec4 t3 = subgroupBroadcast(ta3[(g) / 8u], (g) % 8u);          \
                { vec4 a = vec4(t0.x, t1.x, t2.x, t3.x); FOR_CV(FMA_V, (g) * 4u) }     \
                { vec4 a = vec4(t0.y, t1.y, t2.y, t3.y); FOR_CV(FMA_V, (g) * 4u + 1u) } \
                { vec4 a = vec4(t0.z, t1.z, t2.z, t3.z); FOR_CV(FMA_V, (g) * 4u + 2u) } \
                { vec4 a = vec4(t0.w, t1.w, t2.w, t3.w); FOR_CV(FMA_V, (g) * 4u + 3u) } \
            }
            FOR_TN32(LOAD_TN)
            FOR_GROUPS(GROUP_BC)
        } else {
            // lane l loads rows 8j + l; row r comes from lane r % 8
            vec4 al[R / 8];
#define LOAD_A8(j) al[j] = a_k4(abase, m0, 8u * (j) + lane, k0);
#define ROW_BC(r) { vec4 a = subgroupBroadcast(al[(r) / 8u], (r) % 8u); FOR_CV(FMA_V, (r)) }
            FOR_A8(LOAD_A8)
            FOR_ROWS(ROW_BC)
        }
#else
        if (LAYOUT == LAYOUT_TN) { FOR_GROUPS(GROUP_K4) }
        else { FOR_ROWS(ROW_K4) }
#endif
    }

#ifndef BIG
    // K mod 4 tail, one k at a time with plain loads.
#define LOAD_B1(r_, v)                                                         \
    b[v] = LAYOUT == LAYOUT_NT                                                 \
        ? vec4(load_b(bbase, kk, min(c0 + 4u * (v), pc.n - 1u)),               \
               load_b(bbase, kk, min(c0 + 4u * (v) + 1u, pc.n - 1u)),          \
               load_b(bbase, kk, min(c0 + 4u * (v) + 2u, pc.n - 1u)),          \
               load_b(bbase, kk, min(c0 + 4u * (v) + 3u, pc.n - 1u)))          \
        : b_cols(bbase, kk, c0 + 4u * (v));
#define FMA1_V(r, v) acc[(r) * CV + (v)] = fma(vec4(a), b[v], acc[(r) * CV + (v)]);
#define ROW_K1(r) { float a = load_a(abase, min(m0 + (r), pc.m - 1u), kk); FOR_CV(FMA1_V, (r)) }
    for (uint kk = k4; kk < pc.k; kk++) {
        vec4 b[CV];
        FOR_CV(LOAD_B1, 0u)
        FOR_ROWS(ROW_K1)
    }
#endif

    uint cbase = c_base(batch);
#ifdef BIG
    // Rows leave 8 at a time from the first 8·CV accumulators, then every
    // row moves up 8 slots: a loop whose body stores 8·CV vectors, where
    // unrolled stores of all R·CV (each a loop over the lanes) made the
    // shader take minutes to compile. C's rows are whole 4-vectors here.
#define STORE_VB(r, v)                                                         \
    {                                                                          \
        uint c_ = c0 + 4u * (v);                                               \
        if (c_ < pc.n) {                                                       \
            uint i_ = (cbase + row_ * pc.n + c_) >> 2;                         \
            vec4 o_ = acc[(r) * CV + (v)];                                     \
            if (pc.accumulate != 0u) o_ += to_f32v(c4_data[i_]);               \
            c4_data[i_] = from_f32v(o_);                                       \
        }                                                                      \
    }
#define STORE_ROWB(r) { uint row_ = m0 + rg * 8u + (r); if (row_ < pc.m) { FOR_CV(STORE_VB, (r)) } }
#define SHIFT_V(r, v) acc[(r) * CV + (v)] = acc[min((r) + 8u, uint(R) - 1u) * CV + (v)];
#define SHIFT_ROW(r) FOR_CV(SHIFT_V, (r))
    [[dont_unroll]] for (uint rg = 0u; rg < uint(R) / 8u; rg++) {
        X8(STORE_ROWB, 0u)
        FOR_ROWS(SHIFT_ROW)
    }
#else
#define STORE_V(r, v) store_row(cbase, m0 + (r), c0 + 4u * (v), acc[(r) * CV + (v)]);
#define STORE_ROW(r) if (m0 + (r) < pc.m) { FOR_CV(STORE_V, (r)) }
    FOR_ROWS(STORE_ROW)
#endif
}
