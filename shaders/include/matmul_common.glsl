// Shared by the matmul kernels (matmul_cpu.comp, matmul_gpu.comp).
//
// C[M,N] (+)= op(A) · op(B), row-major, batched (see src/ops/ops.h):
//   LAYOUT 0 NN: A[M,K], B[K,N]     LAYOUT 1 TN: A[K,M], B[K,N]
//   LAYOUT 2 NT: A[M,K], B[N,K]
// A, B and C are all of one storage type, chosen by DTYPE_F32, DTYPE_F16 or
// DTYPE_BF16 (include/dtype.glsl); the kernels load, multiply and
// accumulate in fp32 and round once when storing C.
// Bindings (set 0): 0 — C STORE_T[], read-write (read only when accumulating);
//                   1 — A STORE_T[], read;  2 — B STORE_T[], read.
// Each binding is an aligned window of its buffer; *_first is where the view
// starts inside the window, in elements, so views need no alignment.
// Push constants: mirrored by matmul_push in src/ops/matmul.c.
// Spec constant 1: LAYOUT. The rest belong to each kernel.
#ifndef VKT_MATMUL_COMMON_GLSL
#define VKT_MATMUL_COMMON_GLSL

#extension GL_EXT_control_flow_attributes : enable

#include "dtype.glsl"

#define LAYOUT_NN 0u
#define LAYOUT_TN 1u
#define LAYOUT_NT 2u

layout(constant_id = 1) const uint LAYOUT = LAYOUT_NN;

layout(set = 0, binding = 0) buffer Cbuf { STORE_T c_data[]; };
layout(set = 0, binding = 1) readonly buffer Abuf { STORE_T a_data[]; };
layout(set = 0, binding = 2) readonly buffer Bbuf { STORE_T b_data[]; };

layout(push_constant) uniform Push {
    uint m, n, k;
    uint a_first, b_first, c_first; // view starts in their windows (elements)
    uint stride_a, stride_b, stride_c; // elements between batch entries (0 = broadcast)
    uint accumulate;                   // 1: C += A·B, 0: C = A·B
    // First workgroup of this dispatch: grids larger than
    // maxComputeWorkGroupCount are split into several dispatches.
    uint group_x, group_y, group_z;
} pc;

// First element of batch entry `batch` of each operand.
uint a_base(uint batch) { return pc.a_first + batch * pc.stride_a; }
uint b_base(uint batch) { return pc.b_first + batch * pc.stride_b; }
uint c_base(uint batch) { return pc.c_first + batch * pc.stride_c; }

// op(A)[row, kk]: A stored [M,K] for NN/NT, [K,M] for TN.
float load_a(uint base, uint row, uint kk)
{
    return to_f32(LAYOUT == LAYOUT_TN ? a_data[base + kk * pc.m + row]
                                      : a_data[base + row * pc.k + kk]);
}

// op(B)[kk, col]: B stored [K,N] for NN/TN, [N,K] for NT.
float load_b(uint base, uint kk, uint col)
{
    return to_f32(LAYOUT == LAYOUT_NT ? b_data[base + col * pc.k + kk]
                                      : b_data[base + kk * pc.n + col]);
}

// Write one result, adding the old value (in fp32) when accumulating. The
// caller checks row < M and col < N.
void store_c(uint base, uint row, uint col, float v)
{
    uint i = base + row * pc.n + col;
    c_data[i] = from_f32(pc.accumulate != 0u ? to_f32(c_data[i]) + v : v);
}

#endif
