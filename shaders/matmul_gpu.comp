#version 450
#extension GL_GOOGLE_include_directive : require
// matmul, GPU family: C[M,N] (+)= op(A) · op(B), classic shared-memory
// tiling, fp32 accumulation over f32, f16 or bf16 storage (DTYPE_*; the
// tiles hold fp32). Bindings, push constants and LAYOUT: see
// include/matmul_common.glsl.
// Spec constants: 0 = workgroup size, must be 256 (16×16 threads); 1 = LAYOUT.
// Grid: x = ceil(N / 64), y = ceil(M / 64), z = batch.
//
// A workgroup computes a 64×64 tile of C; each thread a 4×4 sub-tile at
// rows ty + 16i and columns tx + 16j (strided, so threads of one row read
// consecutive shared-memory words). Per step of BK = 16 the workgroup stages
// a 64×16 slice of op(A) and a 16×64 slice of op(B) in shared memory, each
// thread loading 4 elements of each, in the order that is contiguous in
// memory for the layout; out-of-range elements are staged as 0, so the
// inner loop needs no bounds checks.
#include "matmul_common.glsl"

layout(local_size_x_id = 0, local_size_y = 1, local_size_z = 1) in;

#define TILE 64u
#define BK 16u

// [kk][row] and [kk][col]; +1 pads the row so the NN (A) and NT (B) staging
// writes, which run down a column, hit different banks.
shared float a_tile[BK][TILE + 1u];
shared float b_tile[BK][TILE + 1u];

// Stage op(A)[m0.., k0..] and op(B)[k0.., n0..]; element e of the 1024 in
// each slice goes to thread e % 256.
void stage(uint t, uint m0, uint n0, uint k0, uint abase, uint bbase)
{
    [[unroll]] for (uint i = 0; i < 4u; i++) {
        uint e = t + 256u * i;
        // A: TN stores rows contiguously (e runs along m), NN/NT along k.
        uint ar = LAYOUT == LAYOUT_TN ? e % TILE : e / BK;
        uint ak = LAYOUT == LAYOUT_TN ? e / TILE : e % BK;
        bool a_in = m0 + ar < pc.m && k0 + ak < pc.k;
        a_tile[ak][ar] = a_in ? load_a(abase, m0 + ar, k0 + ak) : 0.0;
        // B: NT stores columns contiguously (e runs along k), NN/TN along n.
        uint bc = LAYOUT == LAYOUT_NT ? e / BK : e % TILE;
        uint bk = LAYOUT == LAYOUT_NT ? e % BK : e / TILE;
        bool b_in = n0 + bc < pc.n && k0 + bk < pc.k;
        b_tile[bk][bc] = b_in ? load_b(bbase, k0 + bk, n0 + bc) : 0.0;
    }
}

void main()
{
    uint t = gl_LocalInvocationID.x;
    uint tx = t % 16u, ty = t / 16u;
    uint batch = gl_WorkGroupID.z + pc.group_z;
    uint m0 = (gl_WorkGroupID.y + pc.group_y) * TILE;
    uint n0 = (gl_WorkGroupID.x + pc.group_x) * TILE;
    uint abase = a_base(batch), bbase = b_base(batch);

    float acc[4][4];
    [[unroll]] for (uint i = 0; i < 4u; i++)
        [[unroll]] for (uint j = 0; j < 4u; j++) acc[i][j] = 0.0;

    for (uint k0 = 0; k0 < pc.k; k0 += BK) {
        stage(t, m0, n0, k0, abase, bbase);
        barrier();
        [[unroll]] for (uint kk = 0; kk < BK; kk++) {
            float a[4], b[4];
            [[unroll]] for (uint i = 0; i < 4u; i++) a[i] = a_tile[kk][ty + 16u * i];
            [[unroll]] for (uint j = 0; j < 4u; j++) b[j] = b_tile[kk][tx + 16u * j];
            [[unroll]] for (uint i = 0; i < 4u; i++)
                [[unroll]] for (uint j = 0; j < 4u; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier(); // the next stage overwrites the tiles
    }

    uint cbase = c_base(batch);
    [[unroll]] for (uint i = 0; i < 4u; i++) {
        uint row = m0 + ty + 16u * i;
        [[unroll]] for (uint j = 0; j < 4u; j++) {
            uint col = n0 + tx + 16u * j;
            if (row < pc.m && col < pc.n) store_c(cbase, row, col, acc[i][j]);
        }
    }
}
