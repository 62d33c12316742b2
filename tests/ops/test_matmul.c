/* vkt_op_matmul against a double-precision C reference: every dtype (f32,
 * f16, bf16) × layout × accumulate × kernel family on shapes with 1-sized,
 * odd and prime dimensions, batches with a broadcast (stride 0) operand and
 * views at unaligned element offsets, grids larger than
 * maxComputeWorkGroupCount, and the argument checks.
 *
 * The reference is computed in double from the inputs as stored (rounded to
 * the dtype on the host exactly as the device stores them), so it measures
 * only the kernel's own error: fp32 accumulation, then one rounding of C to
 * the dtype.
 *
 * Tolerance per output element:
 *   accumulation: each output is a k-term fp32 dot product (plus C when
 *     accumulating). Its rounding error is at most about k·eps·Σ|a||b| and
 *     in practice ~√k·eps·max|a||b|; we allow 1e-6·k·max|a|·max|b| +
 *     1e-6·max|C0|, with eps = 6e-8 an 8× margin on the worst case for
 *     inputs in [-1, 1). The same term for every dtype: all accumulate in
 *     fp32.
 *   storing C: f32 nothing more; f16 one ulp, 2^-10·|ref| + 2^-24 (the
 *     subnormal spacing), bf16 one ulp, 2^-7·|ref|. Correct rounding needs
 *     half an ulp; the other half covers a sum that lands next to a
 *     rounding boundary after the accumulation error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/ops.h"
#include "test_dtype.h"
#include "test_gpu.h"

typedef struct mm_case {
    uint32_t m, n, k, batch;
    uint64_t stride_a, stride_b, stride_c; /* 0 with batch 1: dense */
    uint32_t off_a, off_b, off_c;          /* view offsets in elements */
} mm_case;

typedef struct fixture {
    vkt_device *dev;
    vkt_ops *ops[2]; /* indexed by vkt_kernel_family: CPU, GPU */
} fixture;

static const char *const family_name[2] = {"cpu", "gpu"};
static const vkt_dtype all_dtypes[3] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};
static const char *const layout_name[3] = {"NN", "TN", "NT"};

static uint64_t span(const mm_case *c, uint64_t stride, uint64_t matrix)
{
    return (uint64_t)(c->batch - 1) * stride + matrix;
}

/* op(A)[i,l] and op(B)[l,j] of batch entry z, from host copies. */
static double a_at(const float *a, const mm_case *c, vkt_matmul_layout lay, uint32_t z,
                   uint32_t i, uint32_t l)
{
    const float *m = a + c->off_a + z * c->stride_a;
    return lay == VKT_MATMUL_TN ? m[(size_t)l * c->m + i] : m[(size_t)i * c->k + l];
}

static double b_at(const float *b, const mm_case *c, vkt_matmul_layout lay, uint32_t z,
                   uint32_t l, uint32_t j)
{
    const float *m = b + c->off_b + z * c->stride_b;
    return lay == VKT_MATMUL_NT ? m[(size_t)j * c->k + l] : m[(size_t)l * c->n + j];
}

static float max_abs(const float *v, size_t n)
{
    float r = 0;
    for (size_t i = 0; i < n; i++) r = fmaxf(r, fabsf(v[i]));
    return r;
}

/* Round v[0..n) to dtype t in place and upload the stored form. */
static vkt_buffer *upload_new(vkt_device *dev, vkt_dtype t, float *v, uint64_t n)
{
    size_t es = vkt_dtype_size(t);
    void *raw = malloc(n * es);
    for (uint64_t i = 0; i < n; i++) v[i] = tdt_store(t, raw, i, v[i]);
    vkt_buffer *b = NULL;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, n * es, &b));
    assert_vkt_ok(vkt_buffer_upload(b, 0, raw, n * es));
    free(raw);
    return b;
}

/* One ulp of dtype t relative to the value, and the absolute floor. */
static double store_ulp(vkt_dtype t)
{
    return t == VKT_DTYPE_F16 ? 0x1p-10 : t == VKT_DTYPE_BF16 ? 0x1p-7 : 0;
}
static double store_floor(vkt_dtype t) { return t == VKT_DTYPE_F16 ? 0x1p-24 : 0; }

/* Whether element i of C's buffer belongs to one of the batch's matrices. */
static bool in_c_view(const mm_case *c, uint64_t i)
{
    uint64_t mn = (uint64_t)c->m * c->n;
    if (i < c->off_c) return false;
    uint64_t d = i - c->off_c;
    if (c->batch == 1) return d < mn;
    return d / c->stride_c < c->batch && d % c->stride_c < mn;
}

typedef struct host_data {
    const float *a, *b, *c0, *got; /* values as stored, widened to float */
    uint64_t na, nb, nc;
    vkt_dtype t;
} host_data;

/* Compare C with the reference; elements around and between the views must
 * be untouched. Returns the worst |d| / tolerance. */
static double compare(const host_data *h, const mm_case *c, vkt_matmul_layout lay, bool acc,
                      double *max_abs_d, double *max_rel_d)
{
    double tol_acc = 1e-6 * c->k * max_abs(h->a, h->na) * max_abs(h->b, h->nb) +
                     (acc ? 1e-6 * max_abs(h->c0, h->nc) : 0) + 1e-30;
    double worst = 0;
    *max_abs_d = *max_rel_d = 0;
    for (uint32_t z = 0; z < c->batch; z++)
        for (uint32_t i = 0; i < c->m; i++)
            for (uint32_t j = 0; j < c->n; j++) {
                size_t at = c->off_c + z * c->stride_c + (size_t)i * c->n + j;
                double ref = acc ? h->c0[at] : 0;
                for (uint32_t l = 0; l < c->k; l++)
                    ref += a_at(h->a, c, lay, z, i, l) * b_at(h->b, c, lay, z, l, j);
                double d = fabs(h->got[at] - ref);
                double tol = tol_acc + store_ulp(h->t) * fabs(ref) + store_floor(h->t);
                *max_abs_d = fmax(*max_abs_d, d);
                *max_rel_d = fmax(*max_rel_d, d / fmax(fabs(ref), 1e-3));
                worst = fmax(worst, d / tol);
            }
    for (uint64_t i = 0; i < h->nc; i++)
        if (!in_c_view(c, i) && h->got[i] != h->c0[i]) {
            print_error("C[%llu] outside the view was overwritten\n", (unsigned long long)i);
            worst = INFINITY;
        }
    return worst;
}

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void run_case(fixture *f, vkt_kernel_family fam, vkt_dtype t, const mm_case *c0in,
                     vkt_matmul_layout lay, bool acc)
{
    mm_case c = *c0in;
    if (!c.batch) c.batch = 1;
    uint64_t na = c.off_a + span(&c, c.stride_a, (uint64_t)c.m * c.k);
    uint64_t nb = c.off_b + span(&c, c.stride_b, (uint64_t)c.k * c.n);
    uint64_t nc = c.off_c + span(&c, c.stride_c, (uint64_t)c.m * c.n);
    float *a = malloc(na * 4), *b = malloc(nb * 4), *cin = malloc(nc * 4), *got = malloc(nc * 4);
    tgpu_fill_random(a, na, 3 + c.m * 7 + c.k);
    tgpu_fill_random(b, nb, 5 + c.n * 11 + c.k);
    tgpu_fill_random(cin, nc, 9 + c.m + c.n);
    vkt_buffer *ba = upload_new(f->dev, t, a, na), *bb = upload_new(f->dev, t, b, nb);
    vkt_buffer *bc = upload_new(f->dev, t, cin, nc);
    size_t es = vkt_dtype_size(t);

    vkt_matmul_args args = {.c = {bc, c.off_c * es}, .a = {ba, c.off_a * es},
                            .b = {bb, c.off_b * es}, .m = c.m, .n = c.n, .k = c.k,
                            .layout = lay, .accumulate = acc, .batch = c.batch,
                            .stride_a = c.stride_a, .stride_b = c.stride_b,
                            .stride_c = c.stride_c, .t = t};
    vkt_stream *s = NULL;
    double t0 = seconds();
    assert_vkt_ok(vkt_stream_create(f->dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    assert_vkt_ok(vkt_op_matmul(f->ops[fam], s, &args));
    assert_vkt_ok(vkt_stream_end(s));
    assert_vkt_ok(vkt_stream_run(s));
    void *raw = malloc(nc * es);
    assert_vkt_ok(vkt_buffer_download(bc, 0, raw, nc * es));
    double t1 = seconds();
    for (uint64_t i = 0; i < nc; i++) got[i] = tdt_load(t, raw, i);
    free(raw);

    double dabs, drel;
    host_data h = {a, b, cin, got, na, nb, nc, t};
    double worst = compare(&h, &c, lay, acc, &dabs, &drel);
    print_message("%s %-4s %s%s %4ux%4ux%4u batch %u: max |d| %.3g, max rel %.3g, %.2f of tol "
                  "(%.2f s incl. pipeline creation)\n",
                  family_name[fam], vkt_dtype_name(t), layout_name[lay], acc ? "+=" : " =",
                  c.m, c.n, c.k, c.batch, dabs, drel, worst, t1 - t0);
    assert_true(worst <= 1.0);
    vkt_stream_destroy(s);
    vkt_buffer_destroy(ba);
    vkt_buffer_destroy(bb);
    vkt_buffer_destroy(bc);
    free(a), free(b), free(cin), free(got);
}

/* Every CPU-family shader variant (dtype × tile × layout × vector loads)
 * costs seconds to compile on lavapipe, so with a cold shader cache the
 * full sweep of the 16-bit dtypes takes minutes. They share all indexing
 * with f32 and differ only in loads, conversions and stores, so by default
 * they run the picks below, which reach each of those once; VKT_TEST_SLOW=1
 * (ctest label slow) runs them through everything f32 runs. */
static bool slow_tests(void)
{
    const char *e = getenv("VKT_TEST_SLOW");
    return e && strcmp(e, "0") != 0;
}

static const mm_case shapes[] = {
    {.m = 1, .n = 1, .k = 1},      {.m = 7, .n = 13, .k = 5},
    {.m = 31, .n = 1, .k = 17},    {.m = 1, .n = 33, .k = 4},
    {.m = 65, .n = 67, .k = 129},  {.m = 130, .n = 64, .k = 36},
    {.m = 128, .n = 96, .k = 256}, {.m = 67, .n = 131, .k = 21},
};

/* Every layout × accumulate for one family and dtype over shapes with
 * 1-sized, odd, prime and aligned dimensions. For the CPU kernels:
 * dimensions ≡ 0 mod 4 take the vector loads, K mod 4 != 0 the k tail, 130
 * rows a partial 16-row tile, and 67 × 131 ragged tiles in m and n; the
 * big tile (64 × 128) takes 130×64×36 in NN and NT (a partial row tile)
 * and 128×96×256 in every layout (partial columns). */
static void sweep_family(fixture *f, vkt_kernel_family fam, vkt_dtype t)
{
    if (t != VKT_DTYPE_F32 && !slow_tests()) {
        /* 16-bit picks (shape, layout, accumulate); the CPU variant each
         * reaches: r16c4 scalar loads + K tail + element stores; r16c4 TN
         * scalar A groups + vector B; big NT (vector stores, accumulate,
         * partial rows); big NN (partial columns). test_batched adds r16c4
         * vector loads and big TN. */
        static const struct {
            int shape;
            vkt_matmul_layout lay;
            bool acc;
        } picks[] = {{1, VKT_MATMUL_NN, true},
                     {5, VKT_MATMUL_TN, false},
                     {5, VKT_MATMUL_NT, true},
                     {6, VKT_MATMUL_NN, false}};
        for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++)
            run_case(f, fam, t, &shapes[picks[i].shape], picks[i].lay, picks[i].acc);
        return;
    }
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int lay = 0; lay < 3; lay++)
            for (int acc = 0; acc < 2; acc++)
                run_case(f, fam, t, &shapes[i], (vkt_matmul_layout)lay, acc);
}

static void test_cpu_f32(void **state) { sweep_family(*state, VKT_KERNELS_CPU, VKT_DTYPE_F32); }
static void test_gpu_f32(void **state) { sweep_family(*state, VKT_KERNELS_GPU, VKT_DTYPE_F32); }
static void test_cpu_f16(void **state) { sweep_family(*state, VKT_KERNELS_CPU, VKT_DTYPE_F16); }
static void test_gpu_f16(void **state) { sweep_family(*state, VKT_KERNELS_GPU, VKT_DTYPE_F16); }
static void test_cpu_bf16(void **state) { sweep_family(*state, VKT_KERNELS_CPU, VKT_DTYPE_BF16); }
static void test_gpu_bf16(void **state) { sweep_family(*state, VKT_KERNELS_GPU, VKT_DTYPE_BF16); }

/* Batches: A broadcast (stride 0) with unaligned offsets and gaps between
 * entries; B broadcast on an aligned shape (the CPU kernel's vec4 path);
 * B broadcast on a shape the CPU family's big tile takes, with gaps and
 * aligned offsets. */
static void test_batched(void **state)
{
    fixture *f = *state;
    const mm_case cases[] = {
        {9, 20, 12, 3, 0, 12 * 20 + 3, 9 * 20 + 1, 1, 5, 3},
        {17, 32, 8, 4, 17 * 8, 0, 17 * 32, 0, 4, 0},
        {40, 72, 12, 3, 40 * 12 + 4, 0, 40 * 72 + 8, 4, 8, 4},
    };
    /* 16-bit picks unless VKT_TEST_SLOW: per case, the one layout whose
     * CPU variant the sweep's picks do not reach (NN: r16c4 scalar, r16c4
     * vector loads; TN: big). */
    static const vkt_matmul_layout pick16[3] = {VKT_MATMUL_NN, VKT_MATMUL_NN, VKT_MATMUL_TN};
    for (int dt = 0; dt < 3; dt++)
        for (int fam = 0; fam < 2; fam++)
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                for (int lay = 0; lay < 3; lay++)
                    if (all_dtypes[dt] == VKT_DTYPE_F32 || slow_tests() ||
                        lay == (int)pick16[i])
                        run_case(f, (vkt_kernel_family)fam, all_dtypes[dt], &cases[i],
                                 (vkt_matmul_layout)lay, lay == VKT_MATMUL_TN);
}

/* 70000 batch entries need two dispatches on a 65535-group device. The
 * CPU family only: 70000 GPU-family workgroups of 256 threads take minutes
 * on lavapipe, and the splitting code is shared. */
static void test_grid_split(void **state)
{
    fixture *f = *state;
    const mm_case c = {2, 3, 2, 70000, 4, 6, 6, 0, 0, 0};
    run_case(f, VKT_KERNELS_CPU, VKT_DTYPE_F32, &c, VKT_MATMUL_NN, false);
}

static void expect_invalid(fixture *f, const vkt_matmul_args *args, const char *why)
{
    vkt_stream *s = NULL;
    assert_vkt_ok(vkt_stream_create(f->dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    vkt_status st = vkt_op_matmul(f->ops[0], s, args);
    print_message("%s -> %s: %s\n", why, vkt_status_name(st), vkt_last_error());
    assert_int_equal(st, VKT_ERR_INVALID_ARG);
    assert_vkt_ok(vkt_stream_end(s));
    vkt_stream_destroy(s);
}

static void test_bad_args(void **state)
{
    fixture *f = *state;
    vkt_buffer *x = NULL, *y = NULL;
    assert_vkt_ok(vkt_buffer_create(f->dev, VKT_MEMORY_DEVICE, 4096, &x));
    assert_vkt_ok(vkt_buffer_create(f->dev, VKT_MEMORY_DEVICE, 4096, &y));
    vkt_matmul_args ok = {.c = {y, 0}, .a = {x, 0}, .b = {x, 2048}, .m = 8, .n = 8, .k = 8};
    vkt_matmul_args a = ok;
    a.k = 0;
    expect_invalid(f, &a, "k = 0");
    a = ok, a.layout = (vkt_matmul_layout)7;
    expect_invalid(f, &a, "layout 7");
    a = ok, a.c = (vkt_tref){x, 128};
    expect_invalid(f, &a, "C aliases A");
    a = ok, a.m = 200;
    expect_invalid(f, &a, "A past the end");
    a = ok, a.batch = 2, a.stride_c = 10;
    expect_invalid(f, &a, "overlapping C entries");
    a = ok, a.b.offset = 2;
    expect_invalid(f, &a, "misaligned B offset");
    a = ok, a.t = VKT_DTYPE_F16, a.b.offset = 1;
    expect_invalid(f, &a, "misaligned f16 B offset");
    a = ok, a.t = VKT_DTYPE_BF16, a.c = (vkt_tref){x, 64};
    expect_invalid(f, &a, "bf16 C aliases A");
    a = ok, a.t = VKT_DTYPE_F64;
    expect_invalid(f, &a, "f64");
    a = ok, a.t = (vkt_dtype)42;
    expect_invalid(f, &a, "dtype 42");
    vkt_buffer_destroy(x);
    vkt_buffer_destroy(y);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dev = tgpu_open();
    assert_vkt_ok(vkt__ops_create(f->dev, VKT_KERNELS_CPU, &f->ops[0]));
    assert_vkt_ok(vkt__ops_create(f->dev, VKT_KERNELS_GPU, &f->ops[1]));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    vkt__ops_destroy(f->ops[0]);
    vkt__ops_destroy(f->ops[1]);
    tgpu_close(f->dev);
    free(f);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_f32),  cmocka_unit_test(test_gpu_f32),
        cmocka_unit_test(test_cpu_f16),  cmocka_unit_test(test_gpu_f16),
        cmocka_unit_test(test_cpu_bf16), cmocka_unit_test(test_gpu_bf16),
        cmocka_unit_test(test_batched),  cmocka_unit_test(test_grid_split),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
