/* LayerNorm forward and backward (src/ops/layernorm.c) for f32/f16/bf16 and
 * both kernel families against a double-precision C reference, on shapes
 * with 1-sized, odd and prime dims, every view at an odd element offset.
 * Plus a central-difference gradient check in f32, a determinism check of
 * the column sums, and argument errors.
 *
 * Tolerances, as max |got - ref| / max(|ref|, 1), the reference computed in
 * double from the same dtype-rounded inputs (16-bit outputs are rounded
 * once, so the bound is half an output ulp plus fp32 arithmetic error):
 *   f32 2e-5 (fp32 sums over at most ~1000 terms), f16 1e-3 (half ulp
 *   4.9e-4), bf16 8e-3 (half ulp 3.9e-3); mean/rstd are fp32: 2e-5.
 * dweight/dbias are sums over n rows that may cancel, so their error is
 * divided by max(|ref|, sqrt(n)) (the size of such a random sum) instead. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "test_gpu.h"

#include "norm_test_util.h"

/* ---- reference ------------------------------------------------------------ */

typedef struct ln_ref {
    double *out, *mean, *rstd, *din, *dw, *db; /* gradients include the initial values */
} ln_ref;

static void ref_layernorm(const float *x, const float *w, const float *b, const float *dout,
                          size_t n, size_t c, double eps, ln_ref *r)
{
    for (size_t i = 0; i < n; i++) {
        const float *xr = x + i * c, *gr = dout + i * c;
        double mean = 0, var = 0, sg = 0, sgx = 0;
        for (size_t j = 0; j < c; j++) mean += xr[j];
        mean /= (double)c;
        for (size_t j = 0; j < c; j++) var += (xr[j] - mean) * (xr[j] - mean);
        double rstd = 1.0 / sqrt(var / (double)c + eps);
        r->mean[i] = mean;
        r->rstd[i] = rstd;
        for (size_t j = 0; j < c; j++) {
            double xh = (xr[j] - mean) * rstd, g = (double)gr[j] * w[j];
            r->out[i * c + j] = xh * w[j] + b[j];
            r->dw[j] += gr[j] * xh;
            r->db[j] += gr[j];
            sg += g;
            sgx += g * xh;
        }
        for (size_t j = 0; j < c; j++) {
            double xh = (xr[j] - mean) * rstd, g = (double)gr[j] * w[j];
            r->din[i * c + j] += rstd * (g - sg / (double)c - xh * sgx / (double)c);
        }
    }
}

/* ---- device --------------------------------------------------------------- */

typedef struct ln_bufs {
    tensor out, in, w, b, mean, rstd, din, dw, db, dout;
} ln_bufs;

static void bufs_new(vkt_device *dev, vkt_dtype t, size_t n, size_t c, ln_bufs *q)
{
    q->out = tensor_new(dev, t, n * c), q->in = tensor_new(dev, t, n * c);
    q->w = tensor_new(dev, t, c), q->b = tensor_new(dev, t, c);
    q->mean = tensor_new(dev, VKT_DTYPE_F32, n), q->rstd = tensor_new(dev, VKT_DTYPE_F32, n);
    q->din = tensor_new(dev, t, n * c), q->dout = tensor_new(dev, t, n * c);
    q->dw = tensor_new(dev, t, c), q->db = tensor_new(dev, t, c);
}

static void bufs_free(ln_bufs *q)
{
    tensor *all[] = {&q->out, &q->in, &q->w, &q->b, &q->mean, &q->rstd, &q->din, &q->dw,
                     &q->db, &q->dout};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
}

/* Record forward (and backward after a barrier when bwd). */
static void record(vkt_ops *ops, vkt_stream *s, ln_bufs *q, vkt_dtype t, uint32_t n, uint32_t c,
                   bool fwd, bool bwd)
{
    assert_vkt_ok(vkt_stream_begin(s));
    if (fwd) {
        vkt_layernorm_args a = {ref_of(&q->out), ref_of(&q->in), ref_of(&q->w), ref_of(&q->b),
                                ref_of(&q->mean), ref_of(&q->rstd), t, n, c, 1e-5f};
        assert_vkt_ok(vkt_op_layernorm_fwd(ops, s, &a));
    }
    if (fwd && bwd) assert_vkt_ok(vkt_stream_barrier(s));
    if (bwd) {
        vkt_layernorm_bwd_args g = {ref_of(&q->din),  ref_of(&q->dw),   ref_of(&q->db),
                                    ref_of(&q->dout), ref_of(&q->in),   ref_of(&q->w),
                                    ref_of(&q->mean), ref_of(&q->rstd), t, n, c};
        assert_vkt_ok(vkt_op_layernorm_bwd(ops, s, &g));
    }
    assert_vkt_ok(vkt_stream_end(s));
}

static double *dcopy(const float *v, size_t n)
{
    double *d = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = v[i];
    return d;
}

static void run_case(vkt_device *dev, vkt_kernel_family fam, vkt_dtype t, uint32_t n, uint32_t c)
{
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, fam, &ops));
    ln_bufs q;
    bufs_new(dev, t, n, c, &q);
    uint32_t seed = n * 131 + c;
    /* A non-zero mean, and alternating +-1.5 per column so that no row of
     * c >= 2 is nearly constant: such a row is ill-conditioned (rstd large
     * amplifies fp32 rounding of the mean), which tests the data, not us. */
    tensor_random(&q.in, seed, 1.0f);
    for (size_t i = 0; i < q.in.n; i++) q.in.h[i] += 0.5f + (i % c % 2 ? 1.5f : -1.5f);
    tensor_upload(&q.in);
    tensor_random(&q.w, seed + 1, 1.5f), tensor_random(&q.b, seed + 2, 1.0f);
    tensor_random(&q.dout, seed + 3, 1.0f), tensor_random(&q.din, seed + 4, 1.0f);
    tensor_random(&q.dw, seed + 5, 1.0f), tensor_random(&q.db, seed + 6, 1.0f);
    ln_ref r = {calloc(q.out.n, 8), calloc(n, 8), calloc(n, 8), dcopy(q.din.h, q.din.n),
                dcopy(q.dw.h, c), dcopy(q.db.h, c)};
    ref_layernorm(q.in.h, q.w.h, q.b.h, q.dout.h, n, c, 1e-5, &r);
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    record(ops, s, &q, t, n, c, true, true);
    assert_vkt_ok(vkt_stream_run(s));
    double tol = t == VKT_DTYPE_F32 ? 2e-5 : t == VKT_DTYPE_F16 ? 1e-3 : 8e-3;
    double e_out = max_err(&q.out, r.out), e_mean = max_err(&q.mean, r.mean);
    double e_rstd = max_err(&q.rstd, r.rstd), e_din = max_err(&q.din, r.din);
    /* Column sums of n random terms are ~sqrt(n) in size but may cancel to
     * near 0, so their error is measured against sqrt(n). */
    double e_dw = max_err_floor(&q.dw, r.dw, sqrt(n)), e_db = max_err_floor(&q.db, r.db, sqrt(n));
    print_message("layernorm %-4s %s n=%-3u c=%-4u max err: out %.1e mean %.1e rstd %.1e | "
                  "din %.1e dw %.1e db %.1e\n", vkt_dtype_name(t), vkt__kernel_family_str(fam),
                  n, c, e_out, e_mean, e_rstd, e_din, e_dw, e_db);
    assert_true(e_out <= tol && e_din <= tol && e_dw <= tol && e_db <= tol);
    assert_true(e_mean <= 2e-5 && e_rstd <= 2e-5);
    vkt_stream_destroy(s);
    bufs_free(&q);
    free(r.out), free(r.mean), free(r.rstd), free(r.din), free(r.dw), free(r.db);
    vkt__ops_destroy(ops);
}

static void test_layernorm_vs_reference(void **state)
{
    vkt_device *dev = *state;
    static const uint32_t shapes[][2] = {{1, 1}, {2, 3}, {17, 1}, {13, 97}, {31, 1031}, {9, 256}};
    static const vkt_dtype types[] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++)
        for (int t = 0; t < 3; t++)
            for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
                run_case(dev, (vkt_kernel_family)fam, types[t], shapes[i][0], shapes[i][1]);
    /* More rows than llvmpipe's 65535 loop iterations per invocation: the
     * CPU family's column sums loop over all rows. (The GPU family's lanes
     * see n/64 iterations; a 256-lane workgroup per row is slow on lavapipe,
     * so it is not run at this n.) */
    run_case(dev, VKT_KERNELS_CPU, VKT_DTYPE_F32, 70001, 3);
    run_case(dev, VKT_KERNELS_CPU, VKT_DTYPE_BF16, 70001, 3);
}

/* L = sum_k wl[k] * out[k] on the device's forward output, in double. */
static double loss_of(vkt_stream *s, ln_bufs *q, const float *wl)
{
    assert_vkt_ok(vkt_stream_run(s));
    float *out = malloc(q->out.n * sizeof(float));
    tensor_read(&q->out, out);
    double l = 0;
    for (size_t k = 0; k < q->out.n; k++) l += (double)wl[k] * out[k];
    free(out);
    return l;
}

/* Central differences of L along every element of x, against analytic. */
static double fd_max_err(vkt_stream *s, ln_bufs *q, tensor *x, const float *wl,
                         const float *analytic)
{
    const float eps = 1e-2f;
    double m = 0;
    for (size_t i = 0; i < x->n; i++) {
        float x0 = x->h[i];
        x->h[i] = x0 + eps, tensor_upload(x);
        double lp = loss_of(s, q, wl);
        x->h[i] = x0 - eps, tensor_upload(x);
        double lm = loss_of(s, q, wl);
        x->h[i] = x0, tensor_upload(x);
        double fd = (lp - lm) / (2.0 * eps);
        m = fmax(m, fabs(fd - analytic[i]) / fmax(fabs(analytic[i]), 1.0));
    }
    return m;
}

/* f32, both families: din, dweight, dbias against central differences
 * (eps 1e-2). Tolerance 5e-3: the truncation error eps^2/6 * |L'''| is
 * ~1e-4 for these O(1) inputs, and the fp32 rounding of L contributes
 * ~1e-7 * |L| / eps ~ 1e-5. */
static void test_layernorm_gradcheck(void **state)
{
    vkt_device *dev = *state;
    const uint32_t n = 3, c = 7;
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++) {
        vkt_ops *ops;
        assert_vkt_ok(vkt__ops_create(dev, (vkt_kernel_family)fam, &ops));
        ln_bufs q;
        bufs_new(dev, VKT_DTYPE_F32, n, c, &q);
        tensor_random(&q.in, 5, 2.0f), tensor_random(&q.w, 6, 1.5f);
        tensor_random(&q.b, 7, 1.0f), tensor_random(&q.dout, 8, 1.0f);
        memset(q.din.h, 0, n * c * 4), memset(q.dw.h, 0, c * 4), memset(q.db.h, 0, c * 4);
        tensor_upload(&q.din), tensor_upload(&q.dw), tensor_upload(&q.db);
        vkt_stream *s;
        assert_vkt_ok(vkt_stream_create(dev, &s));
        record(ops, s, &q, VKT_DTYPE_F32, n, c, true, true); /* dout = wl */
        assert_vkt_ok(vkt_stream_run(s));
        float din[21], dw[7], db[7];
        tensor_read(&q.din, din), tensor_read(&q.dw, dw), tensor_read(&q.db, db);
        record(ops, s, &q, VKT_DTYPE_F32, n, c, true, false);
        double e_in = fd_max_err(s, &q, &q.in, q.dout.h, din);
        double e_w = fd_max_err(s, &q, &q.w, q.dout.h, dw);
        double e_b = fd_max_err(s, &q, &q.b, q.dout.h, db);
        print_message("layernorm gradcheck %s: max err din %.1e dweight %.1e dbias %.1e\n",
                      vkt__kernel_family_str((vkt_kernel_family)fam), e_in, e_w, e_b);
        assert_true(e_in < 5e-3 && e_w < 5e-3 && e_b < 5e-3);
        vkt_stream_destroy(s);
        bufs_free(&q);
        vkt__ops_destroy(ops);
    }
}

/* The same backward twice from the same state gives bit-identical dweight
 * and dbias (fixed summation order, no atomics). */
static void test_layernorm_deterministic(void **state)
{
    vkt_device *dev = *state;
    const uint32_t n = 257, c = 65;
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++) {
        vkt_ops *ops;
        assert_vkt_ok(vkt__ops_create(dev, (vkt_kernel_family)fam, &ops));
        ln_bufs q;
        bufs_new(dev, VKT_DTYPE_F32, n, c, &q);
        tensor_random(&q.in, 11, 1.0f), tensor_random(&q.w, 12, 1.0f);
        tensor_random(&q.b, 13, 1.0f), tensor_random(&q.dout, 14, 1.0f);
        vkt_stream *s;
        assert_vkt_ok(vkt_stream_create(dev, &s));
        record(ops, s, &q, VKT_DTYPE_F32, n, c, true, true);
        float got[2][2][65];
        for (int k = 0; k < 2; k++) {
            tensor_random(&q.dw, 15, 1.0f), tensor_random(&q.db, 16, 1.0f);
            assert_vkt_ok(vkt_stream_run(s));
            tensor_read(&q.dw, got[k][0]), tensor_read(&q.db, got[k][1]);
        }
        assert_memory_equal(got[0], got[1], sizeof got[0]);
        vkt_stream_destroy(s);
        bufs_free(&q);
        vkt__ops_destroy(ops);
    }
}

static void test_layernorm_argument_errors(void **state)
{
    vkt_device *dev = *state;
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, VKT_KERNELS_AUTO, &ops));
    vkt_buffer *b;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 4096, &b));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    vkt_tref v = {b, 0};
    vkt_layernorm_args a = {v, v, v, v, v, v, VKT_DTYPE_I32, 4, 8, 1e-5f};
    assert_int_equal(vkt_op_layernorm_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "not a training dtype"));
    a.t = VKT_DTYPE_F32, a.n = 0;
    assert_int_equal(vkt_op_layernorm_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "at least 1"));
    a.n = 4, a.eps = 0;
    assert_int_equal(vkt_op_layernorm_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "eps"));
    a.eps = 1e-5f, a.n = 1000; /* 32000 bytes in a 4096-byte buffer */
    assert_int_equal(vkt_op_layernorm_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "layernorm_fwd: out"));
    vkt_layernorm_bwd_args g = {v, v, {NULL, 0}, v, v, v, v, v, VKT_DTYPE_F32, 4, 8};
    assert_int_equal(vkt_op_layernorm_bwd(ops, s, &g), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "dbias"));
    assert_vkt_ok(vkt_stream_end(s));
    vkt_stream_destroy(s);
    vkt_buffer_destroy(b);
    vkt__ops_destroy(ops);
}



int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_vs_reference),
        cmocka_unit_test(test_layernorm_gradcheck),
        cmocka_unit_test(test_layernorm_deterministic),
        cmocka_unit_test(test_layernorm_argument_errors),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
