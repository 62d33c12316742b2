/* Fused softmax + cross-entropy (src/ops/xent.c) for f32/f16/bf16 and both
 * kernel families against a double-precision C reference: shapes with
 * 1-sized, odd and prime dims up to a 50257-class vocabulary, every view at
 * an odd element offset, ignore_index rows (loss 0, zero gradient), a row of
 * logits around 1e4 (must stay finite), the in-place variant, an
 * out-of-range target (NaN loss), a central-difference gradient check in
 * f32, and argument errors.
 *
 * Tolerances, as max |got - ref| / max(|ref|, 1) with the reference computed
 * in double from the same dtype-rounded logits:
 *   losses (fp32 for every dtype) 2e-5: fp32 sums of up to 50257 exps;
 *   dlogits f32 2e-5, f16 1e-3 (half an output ulp, 4.9e-4, plus fp32
 *   error), bf16 8e-3 (half ulp 3.9e-3). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "test_gpu.h"

#include "norm_test_util.h"


#define IGNORE (-100)

/* int32 targets at element offset OFF. */
static vkt_buffer *targets_new(vkt_device *dev, const int32_t *tg, size_t n)
{
    vkt_buffer *b;
    int32_t *raw = calloc(n + OFF, 4);
    memcpy(raw + OFF, tg, n * 4);
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, (n + OFF) * 4, &b));
    assert_vkt_ok(vkt_buffer_upload(b, 0, raw, (n + OFF) * 4));
    free(raw);
    return b;
}

/* loss[r], and dl[r,:] += (softmax - onehot) * scale, in double. */
static void ref_xent(const float *x, const int32_t *tg, size_t n, size_t v, double scale,
                     double *loss, double *dl)
{
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * v;
        if (tg[r] == IGNORE) {
            loss[r] = 0;
            continue;
        }
        double m = -INFINITY, s = 0;
        for (size_t j = 0; j < v; j++) m = fmax(m, xr[j]);
        for (size_t j = 0; j < v; j++) s += exp(xr[j] - m);
        loss[r] = log(s) + m - xr[tg[r]];
        for (size_t j = 0; j < v; j++)
            dl[r * v + j] += (exp(xr[j] - m) / s - (j == (size_t)tg[r])) * scale;
    }
}

static void record_xent(vkt_ops *ops, vkt_stream *s, const vkt_xent_args *a, bool fwd, bool bwd)
{
    assert_vkt_ok(vkt_stream_begin(s));
    if (fwd) assert_vkt_ok(vkt_op_xent_fwd(ops, s, a));
    if (fwd && bwd) assert_vkt_ok(vkt_stream_barrier(s));
    if (bwd) assert_vkt_ok(vkt_op_xent_bwd(ops, s, a));
    assert_vkt_ok(vkt_stream_end(s));
}

/* Random logits (row 1, when there is one, around 1e4) and targets (every
 * fourth row ignored). Returns the number of non-ignored rows. */
static uint32_t make_inputs(tensor *x, int32_t *tg, uint32_t n, uint32_t v, uint32_t seed)
{
    tensor_random(x, seed, 4.0f);
    if (n > 1)
        for (uint32_t j = 0; j < v; j++) x->h[v + j] = 1e4f + 100.0f * x->h[v + j];
    tensor_upload(x);
    uint32_t live = 0, h = seed;
    for (uint32_t r = 0; r < n; r++) {
        h = h * 1664525u + 1013904223u;
        tg[r] = r % 4 == 3 ? IGNORE : (int32_t)((h >> 8) % v);
        live += tg[r] != IGNORE;
    }
    return live;
}

static void run_case(vkt_device *dev, vkt_kernel_family fam, vkt_dtype t, uint32_t n, uint32_t v,
                     bool in_place)
{
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, fam, &ops));
    size_t nv = (size_t)n * v;
    tensor x = tensor_new(dev, t, nv), dl = tensor_new(dev, t, nv);
    tensor loss = tensor_new(dev, VKT_DTYPE_F32, n);
    int32_t *tg = malloc(n * 4);
    uint32_t live = make_inputs(&x, tg, n, v, n * 7 + v);
    vkt_buffer *tb = targets_new(dev, tg, n);
    float scale = 0.5f / (float)(live ? live : 1);
    double *rl = calloc(n, 8), *rd = calloc(nv, 8);
    if (!in_place) {
        tensor_random(&dl, n + v, 1.0f);
        for (size_t i = 0; i < nv; i++) rd[i] = dl.h[i];
    }
    ref_xent(x.h, tg, n, v, scale, rl, rd);
    vkt_xent_args a = {ref_of(&loss), in_place ? ref_of(&x) : ref_of(&dl), ref_of(&x),
                       {tb, OFF * 4}, t, n, v, IGNORE, scale, in_place};
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    record_xent(ops, s, &a, true, true);
    assert_vkt_ok(vkt_stream_run(s));
    float *got = malloc(n * 4);
    tensor_read(&loss, got);
    for (uint32_t r = 0; r < n; r++) {
        assert_true(isfinite(got[r]));
        if (tg[r] == IGNORE) assert_true(got[r] == 0.0f);
    }
    double e_loss = max_err(&loss, rl), e_dl = max_err(in_place ? &x : &dl, rd);
    print_message("xent %-4s %s%s n=%-3u v=%-5u max err: loss %.1e dlogits %.1e\n",
                  vkt_dtype_name(t), vkt__kernel_family_str(fam), in_place ? " in-place" : "",
                  n, v, e_loss, e_dl);
    double tol = t == VKT_DTYPE_F32 ? 2e-5 : t == VKT_DTYPE_F16 ? 1e-3 : 8e-3;
    assert_true(e_loss <= 2e-5 && e_dl <= tol);
    vkt_stream_destroy(s);
    tensor_free(&x), tensor_free(&dl), tensor_free(&loss);
    vkt_buffer_destroy(tb);
    free(tg), free(rl), free(rd), free(got);
    vkt__ops_destroy(ops);
}

static void test_xent_vs_reference(void **state)
{
    vkt_device *dev = *state;
    static const uint32_t shapes[][2] = {{1, 1},    {3, 2},     {17, 5},
                                         {9, 1031}, {4, 50257}, {2, 70001}};
    static const vkt_dtype types[] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++)
        for (int t = 0; t < 3; t++) {
            for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
                run_case(dev, (vkt_kernel_family)fam, types[t], shapes[i][0], shapes[i][1],
                         false);
            run_case(dev, (vkt_kernel_family)fam, types[t], 13, 97, true);
            run_case(dev, (vkt_kernel_family)fam, types[t], 2, 50257, true);
        }
}

/* L = scale * sum_r loss_r from the device's forward losses, in double. */
static double loss_sum(vkt_stream *s, const tensor *loss, double scale)
{
    assert_vkt_ok(vkt_stream_run(s));
    float got[16];
    tensor_read(loss, got);
    double l = 0;
    for (size_t r = 0; r < loss->n; r++) l += got[r];
    return l * scale;
}

/* f32, both families: dlogits against central differences (eps 1e-2) of
 * L = scale * sum_r loss_r, which is exactly what the backward's scale
 * means. Tolerance 1e-3: the truncation error eps^2/6 * |L'''| is below
 * 1e-4 (softmax derivatives are bounded by 1), and fp32 rounding of the
 * losses adds ~1e-6 * |L| / eps ~ 1e-4. */
static void test_xent_gradcheck(void **state)
{
    vkt_device *dev = *state;
    const uint32_t n = 5, v = 7; /* row 3 is ignored */
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++) {
        vkt_ops *ops;
        assert_vkt_ok(vkt__ops_create(dev, (vkt_kernel_family)fam, &ops));
        tensor x = tensor_new(dev, VKT_DTYPE_F32, n * v);
        tensor dl = tensor_new(dev, VKT_DTYPE_F32, n * v);
        tensor loss = tensor_new(dev, VKT_DTYPE_F32, n);
        tensor_random(&x, 21, 3.0f);
        tensor_upload(&dl); /* zeros */
        int32_t tg[5] = {0, 6, 3, IGNORE, 2};
        vkt_buffer *tb = targets_new(dev, tg, n);
        const float scale = 0.25f;
        vkt_xent_args a = {ref_of(&loss), ref_of(&dl), ref_of(&x), {tb, OFF * 4},
                           VKT_DTYPE_F32, n, v, IGNORE, scale, false};
        vkt_stream *s;
        assert_vkt_ok(vkt_stream_create(dev, &s));
        record_xent(ops, s, &a, false, true);
        assert_vkt_ok(vkt_stream_run(s));
        float g[35];
        tensor_read(&dl, g);
        record_xent(ops, s, &a, true, false);
        const float eps = 1e-2f;
        double m = 0;
        for (size_t i = 0; i < x.n; i++) {
            float x0 = x.h[i];
            x.h[i] = x0 + eps, tensor_upload(&x);
            double lp = loss_sum(s, &loss, scale);
            x.h[i] = x0 - eps, tensor_upload(&x);
            double lm = loss_sum(s, &loss, scale);
            x.h[i] = x0, tensor_upload(&x);
            m = fmax(m, fabs((lp - lm) / (2.0 * eps) - g[i]));
        }
        print_message("xent gradcheck %s: max abs err dlogits %.1e\n",
                      vkt__kernel_family_str((vkt_kernel_family)fam), m);
        assert_true(m < 1e-3);
        for (uint32_t j = 0; j < v; j++) assert_true(g[3 * v + j] == 0.0f); /* ignored row */
        vkt_stream_destroy(s);
        tensor_free(&x), tensor_free(&dl), tensor_free(&loss);
        vkt_buffer_destroy(tb);
        vkt__ops_destroy(ops);
    }
}

/* A target outside [0, v) that is not ignore_index gives a NaN loss. */
static void test_xent_bad_target(void **state)
{
    vkt_device *dev = *state;
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++) {
        vkt_ops *ops;
        assert_vkt_ok(vkt__ops_create(dev, (vkt_kernel_family)fam, &ops));
        tensor x = tensor_new(dev, VKT_DTYPE_F32, 10), loss = tensor_new(dev, VKT_DTYPE_F32, 2);
        tensor_random(&x, 5, 1.0f);
        int32_t tg[2] = {5, 1};
        vkt_buffer *tb = targets_new(dev, tg, 2);
        vkt_xent_args a = {ref_of(&loss), {NULL, 0}, ref_of(&x), {tb, OFF * 4},
                           VKT_DTYPE_F32, 2, 5, IGNORE, 1.0f, false};
        vkt_stream *s;
        assert_vkt_ok(vkt_stream_create(dev, &s));
        record_xent(ops, s, &a, true, false);
        assert_vkt_ok(vkt_stream_run(s));
        float got[2];
        tensor_read(&loss, got);
        assert_true(isnan(got[0]) && isfinite(got[1]));
        vkt_stream_destroy(s);
        tensor_free(&x), tensor_free(&loss);
        vkt_buffer_destroy(tb);
        vkt__ops_destroy(ops);
    }
}

static void test_xent_argument_errors(void **state)
{
    vkt_device *dev = *state;
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, VKT_KERNELS_AUTO, &ops));
    vkt_buffer *b, *c;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 4096, &b));
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 4096, &c));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    vkt_xent_args a = {{c, 0}, {c, 1024}, {b, 0}, {c, 2048}, VKT_DTYPE_I64, 4, 8, -100, 1, false};
    assert_int_equal(vkt_op_xent_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "not a training dtype"));
    a.t = VKT_DTYPE_F32, a.v = 0;
    assert_int_equal(vkt_op_xent_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "at least 1"));
    a.v = 8, a.n = 1000; /* 32000 bytes of logits in a 4096-byte buffer */
    assert_int_equal(vkt_op_xent_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "xent_fwd: logits"));
    a.n = 4, a.dlogits = (vkt_tref){b, 64}; /* overlaps the logits */
    assert_int_equal(vkt_op_xent_bwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "in_place"));
    a.in_place = true; /* in place, but not the same view */
    assert_int_equal(vkt_op_xent_bwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "logits view itself"));
    a.dlogits = (vkt_tref){b, 0};
    assert_vkt_ok(vkt_op_xent_bwd(ops, s, &a));
    assert_vkt_ok(vkt_stream_end(s));
    vkt_stream_destroy(s);
    vkt_buffer_destroy(b), vkt_buffer_destroy(c);
    vkt__ops_destroy(ops);
}



int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xent_vs_reference),
        cmocka_unit_test(test_xent_gradcheck),
        cmocka_unit_test(test_xent_bad_target),
        cmocka_unit_test(test_xent_argument_errors),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
