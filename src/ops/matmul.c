/* matmul: C[M,N] (+)= op(A) · op(B) over f32, f16 or bf16 storage with fp32
 * accumulation, for the layouts NN, TN and NT, batched with element strides
 * (see ops.h).
 *
 * Two kernel families (shaders/matmul_cpu.comp, shaders/matmul_gpu.comp);
 * the launcher checks the arguments, binds the three views, picks the
 * family's pipeline and tile shape, and records one or more dispatches. */
#include <stdio.h>

#include "ops/ops.h"

/* Mirrors the push-constant block of shaders/include/matmul_common.glsl. */
typedef struct matmul_push {
    uint32_t m, n, k;
    uint32_t a_first, b_first, c_first; /* view starts in their windows, elements */
    uint32_t stride_a, stride_b, stride_c;
    uint32_t accumulate;
    uint32_t group_x, group_y, group_z; /* first workgroup of this dispatch */
} matmul_push;
_Static_assert(sizeof(matmul_push) <= 128, "push constants fit every device");

/* CPU family: W invocations per workgroup (one 8-wide SIMD vector of
 * lavapipe), each keeping an R × 4·CV register tile; a workgroup computes
 * R × 4·CV·W of C. On lavapipe (Mesa 22.3) every storage-buffer access is a
 * loop over the 8 lanes, so speed follows FMAs per such access.
 *
 * Two tiles. "r16c4" takes any shape, offset and K (scalar loads where a
 * 4-vector would be unaligned, a K mod 4 tail, per-element stores).
 * "big_r64c4" takes products whose loads and C rows are whole aligned
 * 4-vectors and K % 4 == 0 (the launcher checks), and shares the loads of A
 * through the subgroup (8 rows per load instead of 1): per 4 values of k it
 * makes 8 + 16 accesses for 1024 vec4 FMAs, where r16c4 makes 32 for 256.
 *
 * Compile time decides how big a tile can be. lavapipe compiles a shader at
 * its first dispatch (the Mesa disk cache hides that on later runs: why
 * earlier measurements of the big tiles ranged from 2 s to 90 s), and
 * LLVM's time grows faster than linearly with the number of lane loops
 * times the accumulators live across them. Most of it was the epilogue:
 * one guarded store loop per accumulator element. big_* stores from a
 * rolled loop instead (see matmul_cpu.comp). Measured on an AVX2 host
 * (AMD EPYC, Mesa 22.3.6), cold compile of one pipeline / 1024^3 NN GFLOP/s,
 * at load ~1: r16c4 2.3-3.3 s / 3.5 (0.04x OpenBLAS-1t); big_r64c4
 * 4.6-5.7 s / 13.4; big_r64c8 12.7 s / 12.3; big_r128c4 11.2 s / 13.6.
 * At load ~4 big_r32c8 and big_r32c16 were slower than big_r64c4 and
 * compiled in 6 s and 25 s. big_r64c4 is as fast as the bigger tiles at
 * half their compile time; `vktrain bench ops` puts it at 0.11-0.15x. */
#define CPU_W 8u
#define CPU_TILE "r16c4"
#define CPU_ROWS 16u
#define CPU_COLS (4u * 4u * CPU_W)
#define BIG_TILE "big_r64c4"
#define BIG_ROWS 64u
#define BIG_COLS (4u * 4u * CPU_W)
/* GPU family: 256 threads, a 64 × 64 tile (fixed in the shader). */
#define GPU_THREADS 256u
#define GPU_TILE 64u

typedef struct grid {
    uint32_t x, y, z;
} grid;

static const char *layout_str(vkt_matmul_layout l)
{
    return l == VKT_MATMUL_NN ? "NN" : l == VKT_MATMUL_TN ? "TN" : "NT";
}

/* Elements one operand's view spans: batch-1 strides plus one matrix. */
static uint64_t view_elems(uint32_t batch, uint64_t stride, uint64_t rows, uint64_t cols)
{
    return (uint64_t)(batch - 1) * stride + rows * cols;
}

static bool views_overlap(vkt_tref x, uint64_t xbytes, vkt_tref y, uint64_t ybytes)
{
    return x.buf == y.buf && x.offset < y.offset + ybytes && y.offset < x.offset + xbytes;
}

/* Shape, layout, stride and aliasing checks that need no device; es is the
 * element size in bytes. */
static vkt_status check_args(const vkt_matmul_args *a, uint32_t batch, uint64_t ea,
                             uint64_t eb, uint64_t ec, uint64_t es)
{
    VKT_FAIL_IF(a->m == 0 || a->n == 0 || a->k == 0, VKT_ERR_INVALID_ARG,
                "matmul: m=%u n=%u k=%u; every dimension must be at least 1", a->m, a->n,
                a->k);
    VKT_FAIL_IF(a->layout != VKT_MATMUL_NN && a->layout != VKT_MATMUL_TN &&
                    a->layout != VKT_MATMUL_NT,
                VKT_ERR_INVALID_ARG, "matmul: layout %d is not NN (0), TN (1) or NT (2)",
                (int)a->layout);
    VKT_FAIL_IF(batch > 1 && a->stride_c < (uint64_t)a->m * a->n, VKT_ERR_INVALID_ARG,
                "matmul: stride_c %llu is smaller than one C matrix (%u x %u), so batch "
                "entries would overwrite each other; use stride_c >= m*n",
                (unsigned long long)a->stride_c, a->m, a->n);
    /* The shaders index in 32 bits; each view lies in one window anyway. */
    VKT_FAIL_IF(ea > UINT32_MAX / 2 || eb > UINT32_MAX / 2 || ec > UINT32_MAX / 2,
                VKT_ERR_INVALID_ARG,
                "matmul: a view spans more than 2^31 elements (A %llu, B %llu, C %llu); "
                "split the batch", (unsigned long long)ea, (unsigned long long)eb,
                (unsigned long long)ec);
    VKT_FAIL_IF(views_overlap(a->c, ec * es, a->a, ea * es) ||
                    views_overlap(a->c, ec * es, a->b, eb * es),
                VKT_ERR_INVALID_ARG,
                "matmul: C (offset %llu) overlaps %s in the same buffer; C must not alias "
                "A or B, write to a separate buffer",
                (unsigned long long)a->c.offset,
                views_overlap(a->c, ec * es, a->a, ea * es) ? "A" : "B");
    return VKT_OK;
}

/* Whether 4 elements of a view starting at element i·run + j (j ≡ 0 mod 4)
 * form one aligned 4-vector in every batch entry: the run length, the
 * view's first element and the batch stride must all be multiples of 4. */
static uint32_t vec4_ok(uint32_t run, uint32_t first, uint32_t stride, uint32_t batch)
{
    return run % 4 == 0 && first % 4 == 0 && (batch == 1 || stride % 4 == 0);
}

/* Record the grid, split where it exceeds the device's workgroup counts. */
static vkt_status dispatch_grid(vkt_ops *ops, vkt_stream *s, const vkt_pipeline *pipe,
                                const vkt_binding b[3], matmul_push push, grid g)
{
    const uint32_t *max = vkt_device_get_caps(vkt__ops_device(ops))->max_workgroup_count;
    for (uint32_t z = 0; z < g.z; z += max[2])
        for (uint32_t y = 0; y < g.y; y += max[1])
            for (uint32_t x = 0; x < g.x; x += max[0]) {
                push.group_x = x, push.group_y = y, push.group_z = z;
                uint32_t nx = g.x - x < max[0] ? g.x - x : max[0];
                uint32_t ny = g.y - y < max[1] ? g.y - y : max[1];
                uint32_t nz = g.z - z < max[2] ? g.z - z : max[2];
                VKT_CHECK(vkt_stream_dispatch(s, pipe, b, 3, &push, sizeof push, nx, ny, nz));
            }
    return VKT_OK;
}

static uint32_t div_up(uint32_t a, uint32_t b) { return a / b + (a % b != 0); }

/* Pipeline and grid of the chosen family for this product. */
static vkt_status choose_kernel(vkt_ops *ops, const matmul_push *p, vkt_matmul_layout layout,
                                vkt_dtype t, uint32_t batch, const vkt_pipeline **pipe,
                                grid *g)
{
    char name[48];
    if (vkt__ops_family(ops) == VKT_KERNELS_GPU) {
        uint32_t spec[2] = {GPU_THREADS, (uint32_t)layout};
        *g = (grid){div_up(p->n, GPU_TILE), div_up(p->m, GPU_TILE), batch};
        snprintf(name, sizeof name, "matmul_gpu_%s", vkt_dtype_name(t));
        return vkt__ops_pipeline(ops, name, 3, sizeof *p, spec, 2, pipe);
    }
    /* The vec4 loads run along k for A in NN/NT and B in NT, else along
     * m (A in TN) or n (B in NN/TN). */
    uint32_t arun = layout == VKT_MATMUL_TN ? p->m : p->k;
    uint32_t brun = layout == VKT_MATMUL_NT ? p->k : p->n;
    uint32_t spec[4] = {CPU_W, (uint32_t)layout, vec4_ok(arun, p->a_first, p->stride_a, batch),
                        vec4_ok(brun, p->b_first, p->stride_b, batch)};
    /* The big tile: whole aligned 4-vectors everywhere, and at least half a
     * tile each way (smaller products waste most of its work). It shares A
     * rows with subgroupBroadcast from lanes 0..W-1, which names exactly the
     * workgroup's W invocations only when every subgroup is W lanes wide
     * (a wider one may place them elsewhere): so only then, with ballot
     * operations in compute shaders. lavapipe: 8 lanes at 256 bits. */
    const vkt_device_caps *caps = vkt_device_get_caps(vkt__ops_device(ops));
    bool lanes_ok = caps->subgroup_ballot && caps->subgroup_min_size == CPU_W &&
                    caps->subgroup_max_size == CPU_W;
    bool big = spec[2] && spec[3] && p->k % 4 == 0 &&
               vec4_ok(p->n, p->c_first, p->stride_c, batch) && lanes_ok &&
               p->m >= BIG_ROWS / 2 && p->n >= BIG_COLS / 2;
    *g = big ? (grid){div_up(p->n, BIG_COLS), div_up(p->m, BIG_ROWS), batch}
             : (grid){div_up(p->n, CPU_COLS), div_up(p->m, CPU_ROWS), batch};
    snprintf(name, sizeof name, "matmul_cpu_%s_%s", vkt_dtype_name(t), big ? BIG_TILE : CPU_TILE);
    return vkt__ops_pipeline(ops, name, 3, sizeof *p, spec, 4, pipe);
}

vkt_status vkt_op_matmul(vkt_ops *ops, vkt_stream *s, const vkt_matmul_args *args)
{
    VKT_FAIL_IF(!ops || !s || !args, VKT_ERR_INVALID_ARG,
                "matmul: NULL ops, stream or args");
    const vkt_matmul_args *a = args;
    VKT_CHECK(vkt__ops_check_dtype(ops, a->t, "matmul"));
    uint32_t es = (uint32_t)vkt_dtype_size(a->t);
    uint32_t batch = a->batch ? a->batch : 1;
    VKT_FAIL_IF(batch > 1 && (a->stride_a > UINT32_MAX || a->stride_b > UINT32_MAX ||
                              a->stride_c > UINT32_MAX),
                VKT_ERR_INVALID_ARG,
                "matmul: a batch stride exceeds 2^32 elements (A %llu, B %llu, C %llu); "
                "the shaders index in 32 bits, split the batch",
                (unsigned long long)a->stride_a, (unsigned long long)a->stride_b,
                (unsigned long long)a->stride_c);
    bool ta = a->layout == VKT_MATMUL_TN, tb = a->layout == VKT_MATMUL_NT;
    uint64_t ea = view_elems(batch, a->stride_a, ta ? a->k : a->m, ta ? a->m : a->k);
    uint64_t eb = view_elems(batch, a->stride_b, tb ? a->n : a->k, tb ? a->k : a->n);
    uint64_t ec = view_elems(batch, a->stride_c, a->m, a->n);
    VKT_CHECK(check_args(a, batch, ea, eb, ec, es));

    matmul_push p = {.m = a->m, .n = a->n, .k = a->k, .accumulate = a->accumulate};
    p.stride_a = (uint32_t)a->stride_a, p.stride_b = (uint32_t)a->stride_b;
    p.stride_c = (uint32_t)a->stride_c;
    vkt_binding b[3];
    char what[3][48];
    const char *ln = layout_str(a->layout), *tn = vkt_dtype_name(a->t);
    snprintf(what[0], sizeof what[0], "matmul %s %s: C", ln, tn);
    snprintf(what[1], sizeof what[1], "matmul %s %s: A", ln, tn);
    snprintf(what[2], sizeof what[2], "matmul %s %s: B", ln, tn);
    VKT_CHECK(vkt__ops_bind(ops, a->c, ec * es, es, what[0], &b[0], &p.c_first));
    VKT_CHECK(vkt__ops_bind(ops, a->a, ea * es, es, what[1], &b[1], &p.a_first));
    VKT_CHECK(vkt__ops_bind(ops, a->b, eb * es, es, what[2], &b[2], &p.b_first));

    const vkt_pipeline *pipe = NULL;
    grid g;
    VKT_CHECK(choose_kernel(ops, &p, a->layout, a->t, batch, &pipe, &g));
    return dispatch_grid(ops, s, pipe, b, p, g);
}
