/* Optimizer kernels (SGD with momentum/Nesterov, Adam, AdamW) and the
 * gradient sum of squares, for f32/f16/bf16 gradients and compute copies and
 * both kernel families, against a double-precision C reference over several
 * steps. The recording is made once; only the hyper buffer changes per step,
 * as in training. Tolerances: master weights and moments are fp32 on the
 * device, so they match the double reference to a few fp32 ulps per step
 * (relative 2e-5 over 4 steps); the compute copy is the master rounded to
 * the dtype (exact equality with the host's rounding of the device master). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "test_dtype.h"
#include "test_gpu.h"

#define STEPS 4





typedef enum { OPT_SGD, OPT_SGD_NESTEROV, OPT_ADAM, OPT_ADAMW } opt_kind;
static const char *opt_names[] = {"sgd+momentum", "sgd+nesterov", "adam", "adamw"};

typedef struct ref_state {
    double *p, *m, *v;
} ref_state;

/* One reference step in double (PyTorch's formulas). */
static void ref_step(opt_kind k, ref_state *r, const float *g, size_t n, double lr, double scale,
                     uint64_t t)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01, mu = 0.9;
    for (size_t i = 0; i < n; i++) {
        double gi = g[i] * scale;
        if (k == OPT_SGD || k == OPT_SGD_NESTEROV) {
            double d = gi + wd * r->p[i];
            r->m[i] = mu * r->m[i] + d;
            d = k == OPT_SGD_NESTEROV ? d + mu * r->m[i] : r->m[i];
            r->p[i] -= lr * d;
            continue;
        }
        if (k == OPT_ADAMW) r->p[i] *= 1.0 - lr * wd;
        else gi += wd * r->p[i];
        r->m[i] = b1 * r->m[i] + (1 - b1) * gi;
        r->v[i] = b2 * r->v[i] + (1 - b2) * gi * gi;
        double mh = r->m[i] / (1 - pow(b1, (double)t)), vh = r->v[i] / (1 - pow(b2, (double)t));
        r->p[i] -= lr * mh / (sqrt(vh) + eps);
    }
}

typedef struct bufs {
    vkt_buffer *p, *g, *m, *v, *copy, *hyper;
} bufs;

/* Record the step once: views start at odd element offsets on purpose. */
static void record(vkt_ops *ops, vkt_stream *s, opt_kind k, vkt_dtype t, const bufs *b,
                   size_t n, size_t off)
{
    size_t es = vkt_dtype_size(t);
    vkt_tref copy = {t == VKT_DTYPE_F32 ? NULL : b->copy, off * es};
    assert_vkt_ok(vkt_stream_begin(s));
    if (k == OPT_ADAM || k == OPT_ADAMW) {
        vkt_adam_args a = {.params = {b->p, off * 4}, .grads = {b->g, off * es},
                           .m = {b->m, off * 4}, .v = {b->v, off * 4}, .copy = copy,
                           .hyper = {b->hyper, 4}, .dtype = t, .n = n, .beta1 = 0.9f,
                           .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                           .adamw = k == OPT_ADAMW};
        assert_vkt_ok(vkt_op_adam(ops, s, &a));
    } else {
        vkt_sgd_args a = {.params = {b->p, off * 4}, .grads = {b->g, off * es},
                          .momentum_buf = {b->m, off * 4}, .copy = copy,
                          .hyper = {b->hyper, 4}, .dtype = t, .n = n, .momentum = 0.9f,
                          .weight_decay = 0.01f, .nesterov = k == OPT_SGD_NESTEROV};
        assert_vkt_ok(vkt_op_sgd(ops, s, &a));
    }
    assert_vkt_ok(vkt_stream_end(s));
}

static void run_case(vkt_device *dev, vkt_kernel_family fam, opt_kind k, vkt_dtype t, size_t n)
{
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, fam, &ops));
    size_t off = 3, es = vkt_dtype_size(t), total = n + off + 5;
    bufs b;
    vkt_buffer **all[] = {&b.p, &b.g, &b.m, &b.v, &b.copy};
    for (int i = 0; i < 5; i++) assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, total * 4, all[i]));
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_HOST, 64, &b.hyper));
    float *p0 = calloc(total, 4), *g = calloc(total, 4), *zero = calloc(total, 4);
    void *graw = calloc(total, 4), *craw = calloc(total, 4);
    ref_state r = {calloc(n, 8), calloc(n, 8), calloc(n, 8)};
    tgpu_fill_random(p0, total, 99 + (uint32_t)n);
    for (size_t i = 0; i < n; i++) r.p[i] = p0[off + i];
    assert_vkt_ok(vkt_buffer_upload(b.p, 0, p0, total * 4));
    assert_vkt_ok(vkt_buffer_upload(b.m, 0, zero, total * 4));
    assert_vkt_ok(vkt_buffer_upload(b.v, 0, zero, total * 4));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    record(ops, s, k, t, &b, n, off);
    const float lr = 1e-2f, scale = 0.5f;
    for (uint64_t step = 1; step <= STEPS; step++) {
        tgpu_fill_random(g, total, (uint32_t)(7 * step + n));
        for (size_t i = 0; i < total; i++) g[i] = tdt_store(t, graw, i, g[i] * 4.0f);
        assert_vkt_ok(vkt_buffer_upload(b.g, 0, graw, total * es));
        float h[4];
        if (k == OPT_ADAM || k == OPT_ADAMW) vkt_op_adam_hyper(h, lr, 0.9f, 0.999f, step, scale);
        else vkt_op_sgd_hyper(h, lr, scale);
        assert_vkt_ok(vkt_buffer_upload(b.hyper, 4, h, sizeof h)); /* the view starts at byte 4 */
        assert_vkt_ok(vkt_stream_run(s));
        ref_step(k, &r, g + off, n, lr, scale, step);
    }
    float *p = calloc(total, 4);
    assert_vkt_ok(vkt_buffer_download(b.p, 0, p, total * 4));
    assert_vkt_ok(vkt_buffer_download(b.copy, 0, craw, total * es));
    double maxrel = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(p[off + i] - r.p[i]) / fmax(fabs(r.p[i]), 1e-3);
        maxrel = fmax(maxrel, d);
        if (t != VKT_DTYPE_F32) {
            float want = tdt_store(t, zero, 0, p[off + i]); /* the device master, rounded */
            if (tdt_load(t, craw, off + i) != want)
                fail_msg("%s %s copy[%zu] = %g, want %g", opt_names[k], vkt_dtype_name(t), i,
                         tdt_load(t, craw, off + i), want);
        }
    }
    /* neighbours outside the view are untouched */
    assert_true(p[off - 1] == p0[off - 1] && p[off + n] == p0[off + n]);
    print_message("%-13s %-4s %s n=%zu: max rel diff vs double %.2e\n", opt_names[k],
                  vkt_dtype_name(t), vkt__kernel_family_str(fam), n, maxrel);
    assert_true(maxrel < 2e-5);
    vkt_stream_destroy(s);
    for (int i = 0; i < 5; i++) vkt_buffer_destroy(*all[i]);
    vkt_buffer_destroy(b.hyper);
    free(p0), free(g), free(zero), free(graw), free(craw), free(p);
    free(r.p), free(r.m), free(r.v);
    vkt__ops_destroy(ops);
}

static void test_optimizers(void **state)
{
    vkt_device *dev = *state;
    static const vkt_dtype types[] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++)
        for (int k = OPT_SGD; k <= OPT_ADAMW; k++)
            for (int t = 0; t < 3; t++) {
                run_case(dev, (vkt_kernel_family)fam, (opt_kind)k, types[t], 1);
                run_case(dev, (vkt_kernel_family)fam, (opt_kind)k, types[t], 1000);
            }
    run_case(dev, VKT_KERNELS_CPU, OPT_ADAMW, VKT_DTYPE_F32, 100003);
    run_case(dev, VKT_KERNELS_GPU, OPT_ADAMW, VKT_DTYPE_BF16, 100003);
}

static double sumsq(vkt_device *dev, vkt_kernel_family fam, vkt_dtype t, const float *x, size_t n,
                    float scale)
{
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, fam, &ops));
    size_t es = vkt_dtype_size(t), off = 5;
    uint32_t np = vkt_op_grad_sumsq_partials(ops, n);
    vkt_buffer *g, *part;
    void *raw = calloc(n + off, 4);
    for (size_t i = 0; i < n; i++) tdt_store(t, raw, off + i, x[i]);
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, (n + off) * es, &g));
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_HOST, (np + 1) * 4ull, &part));
    assert_vkt_ok(vkt_buffer_upload(g, 0, raw, (n + off) * es));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    assert_vkt_ok(vkt_op_grad_sumsq(ops, s, (vkt_tref){part, 4}, (vkt_tref){g, off * es}, t, n,
                                    scale));
    assert_vkt_ok(vkt_stream_end(s));
    assert_vkt_ok(vkt_stream_run(s));
    float *pp = calloc(np + 1, 4);
    assert_vkt_ok(vkt_buffer_download(part, 0, pp, (np + 1) * 4ull));
    double total = 0;
    for (uint32_t i = 0; i < np; i++) total += pp[1 + i];
    vkt_stream_destroy(s);
    vkt_buffer_destroy(g);
    vkt_buffer_destroy(part);
    free(raw), free(pp);
    vkt__ops_destroy(ops);
    return total;
}

static void test_grad_sumsq(void **state)
{
    vkt_device *dev = *state;
    static const size_t sizes[] = {1, 7, 2049, 300001};
    static const vkt_dtype types[] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};
    float *x = malloc(300001 * 4), *q = malloc(300001 * 4);
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++)
        for (int t = 0; t < 3; t++)
            for (int si = 0; si < 4; si++) {
                size_t n = sizes[si];
                tgpu_fill_random(x, n, 3 + (uint32_t)n);
                double ref = 0;
                for (size_t i = 0; i < n; i++) {
                    float v = tdt_store(types[t], q, i, x[i]) * 0.25f;
                    ref += (double)v * v;
                }
                double got = sumsq(dev, (vkt_kernel_family)fam, types[t], x, n, 0.25f);
                assert_true(fabs(got - ref) <= 1e-5 * ref + 1e-12);
                x[n / 2] = NAN; /* the overflow check: one NaN poisons the total */
                assert_true(isnan(sumsq(dev, (vkt_kernel_family)fam, types[t], x, n, 0.25f)));
                x[n / 2] = INFINITY;
                assert_false(isfinite(sumsq(dev, (vkt_kernel_family)fam, types[t], x, n, 1.0f)));
            }
    free(x);
    free(q);
}

static void test_argument_errors(void **state)
{
    vkt_device *dev = *state;
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, VKT_KERNELS_AUTO, &ops));
    vkt_buffer *b;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 4096, &b));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    vkt_adam_args a = {.params = {b, 0}, .grads = {b, 0}, .m = {b, 0}, .v = {b, 0},
                       .hyper = {b, 0}, .dtype = VKT_DTYPE_I32, .n = 16};
    assert_int_equal(vkt_op_adam(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "not a training dtype"));
    a.dtype = VKT_DTYPE_F32;
    a.n = 2000; /* 8000 bytes in a 4096-byte buffer */
    assert_int_equal(vkt_op_adam(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "past the end"));
    a.n = 0;
    assert_int_equal(vkt_op_adam(ops, s, &a), VKT_ERR_INVALID_ARG);
    vkt_sgd_args sa = {.params = {b, 0}, .grads = {b, 0}, .hyper = {b, 0},
                       .dtype = VKT_DTYPE_F32, .n = 8, .momentum = 0.9f};
    assert_int_equal(vkt_op_sgd(ops, s, &sa), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "momentum buffer"));
    assert_vkt_ok(vkt_stream_end(s));
    vkt_stream_destroy(s);
    vkt_buffer_destroy(b);
    vkt__ops_destroy(ops);
}



int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_grad_sumsq),
        cmocka_unit_test(test_argument_errors),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
