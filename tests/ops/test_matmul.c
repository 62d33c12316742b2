/* vkt_op_matmul against a double-precision C reference: every layout ×
 * accumulate × kernel family on shapes with 1-sized, odd and prime
 * dimensions, batches with a broadcast (stride 0) operand and views at
 * unaligned element offsets, grids larger than maxComputeWorkGroupCount,
 * and the argument checks.
 *
 * Tolerance: each output is a k-term fp32 dot product (plus C when
 * accumulating). Its rounding error is at most about k·eps·Σ|a||b| and in
 * practice ~√k·eps·max|a||b|; we allow |got - ref| ≤ 1e-6·k·max|a|·max|b|
 * + 1e-6·max|C0|, with eps = 6e-8 an 8× margin on the worst case for
 * inputs in [-1, 1). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/ops.h"
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

static vkt_buffer *upload_new(vkt_device *dev, const float *v, uint64_t n)
{
    vkt_buffer *b = NULL;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, n * 4, &b));
    assert_vkt_ok(vkt_buffer_upload(b, 0, v, n * 4));
    return b;
}

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
    const float *a, *b, *c0, *got;
    uint64_t na, nb, nc;
} host_data;

/* Compare C with the reference; elements around and between the views must
 * be untouched. Returns the worst |d| / tolerance. */
static double compare(const host_data *h, const mm_case *c, vkt_matmul_layout lay, bool acc,
                      double *max_abs_d, double *max_rel_d)
{
    double tol = 1e-6 * c->k * max_abs(h->a, h->na) * max_abs(h->b, h->nb) +
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

static void run_case(fixture *f, vkt_kernel_family fam, const mm_case *c0in,
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
    vkt_buffer *ba = upload_new(f->dev, a, na), *bb = upload_new(f->dev, b, nb);
    vkt_buffer *bc = upload_new(f->dev, cin, nc);

    vkt_matmul_args args = {.c = {bc, c.off_c * 4ull}, .a = {ba, c.off_a * 4ull},
                            .b = {bb, c.off_b * 4ull}, .m = c.m, .n = c.n, .k = c.k,
                            .layout = lay, .accumulate = acc, .batch = c.batch,
                            .stride_a = c.stride_a, .stride_b = c.stride_b,
                            .stride_c = c.stride_c};
    vkt_stream *s = NULL;
    double t0 = seconds();
    assert_vkt_ok(vkt_stream_create(f->dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    assert_vkt_ok(vkt_op_matmul(f->ops[fam], s, &args));
    assert_vkt_ok(vkt_stream_end(s));
    assert_vkt_ok(vkt_stream_run(s));
    assert_vkt_ok(vkt_buffer_download(bc, 0, got, nc * 4));
    double t1 = seconds();

    double dabs, drel;
    host_data h = {a, b, cin, got, na, nb, nc};
    double worst = compare(&h, &c, lay, acc, &dabs, &drel);
    print_message("%s %s%s %4ux%4ux%4u batch %u: max |d| %.3g, max rel %.3g, %.2f of tol "
                  "(%.2f s incl. pipeline creation)\n",
                  family_name[fam], layout_name[lay], acc ? "+=" : " =", c.m, c.n, c.k,
                  c.batch, dabs, drel, worst, t1 - t0);
    assert_true(worst <= 1.0);
    vkt_stream_destroy(s);
    vkt_buffer_destroy(ba);
    vkt_buffer_destroy(bb);
    vkt_buffer_destroy(bc);
    free(a), free(b), free(cin), free(got);
}

/* Every layout × accumulate for one family over shapes with 1-sized, odd,
 * prime and aligned dimensions. For the CPU kernels: dimensions ≡ 0 mod 4
 * take the vec4 loads, K mod 4 != 0 the k tail, 130 rows a partial 16-row
 * tile, and 67 × 131 ragged tiles in m and n. */
static void sweep_family(fixture *f, vkt_kernel_family fam)
{
    static const mm_case shapes[] = {
        {.m = 1, .n = 1, .k = 1},      {.m = 7, .n = 13, .k = 5},
        {.m = 31, .n = 1, .k = 17},    {.m = 1, .n = 33, .k = 4},
        {.m = 65, .n = 67, .k = 129},  {.m = 130, .n = 64, .k = 36},
        {.m = 128, .n = 96, .k = 256}, {.m = 67, .n = 131, .k = 21},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int lay = 0; lay < 3; lay++)
            for (int acc = 0; acc < 2; acc++)
                run_case(f, fam, &shapes[i], (vkt_matmul_layout)lay, acc);
}

static void test_cpu_family(void **state) { sweep_family(*state, VKT_KERNELS_CPU); }
static void test_gpu_family(void **state) { sweep_family(*state, VKT_KERNELS_GPU); }

/* Batches: A broadcast (stride 0) with unaligned offsets and gaps between
 * entries; B broadcast on an aligned shape (the CPU kernel's vec4 path). */
static void test_batched(void **state)
{
    fixture *f = *state;
    const mm_case cases[] = {
        {9, 20, 12, 3, 0, 12 * 20 + 3, 9 * 20 + 1, 1, 5, 3},
        {17, 32, 8, 4, 17 * 8, 0, 17 * 32, 0, 4, 0},
    };
    for (int fam = 0; fam < 2; fam++)
        for (size_t i = 0; i < 2; i++)
            for (int lay = 0; lay < 3; lay++)
                run_case(f, (vkt_kernel_family)fam, &cases[i], (vkt_matmul_layout)lay,
                         lay == VKT_MATMUL_TN);
}

/* 70000 batch entries need two dispatches on a 65535-group device. The
 * CPU family only: 70000 GPU-family workgroups of 256 threads take minutes
 * on lavapipe, and the splitting code is shared. */
static void test_grid_split(void **state)
{
    fixture *f = *state;
    const mm_case c = {2, 3, 2, 70000, 4, 6, 6, 0, 0, 0};
    run_case(f, VKT_KERNELS_CPU, &c, VKT_MATMUL_NN, false);
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
        cmocka_unit_test(test_cpu_family), cmocka_unit_test(test_gpu_family),
        cmocka_unit_test(test_batched),    cmocka_unit_test(test_grid_split),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
