/* Real compute shaders checked against C: axpy over odd sizes and run
 * lengths, a multi-pass sum reduction, push and specialization constants,
 * and the argument checks a dispatch makes before reaching the driver. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_gpu.h"

typedef struct {
    uint32_t n;
    float a;
} axpy_push;
_Static_assert(sizeof(axpy_push) <= 128, "push constants fit every device");

static void run_axpy(vkt_device *dev, uint32_t n, uint32_t wg, uint32_t run)
{
    uint32_t spec[2] = {wg, run};
    vkt_pipeline *p = tgpu_pipeline(dev, "axpy_f32", 2, sizeof(axpy_push), spec, 2);
    float *x = malloc(n * 4ull), *y = malloc(n * 4ull), *ref = malloc(n * 4ull);
    tgpu_fill_random(x, n, 11 + n);
    tgpu_fill_random(y, n, 17 + n);
    axpy_push push = {n, -1.375f};
    for (uint32_t i = 0; i < n; i++) ref[i] = push.a * x[i] + y[i];
    vkt_buffer *bx, *by;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, n * 4ull, &bx));
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, n * 4ull, &by));
    assert_vkt_ok(vkt_buffer_upload(bx, 0, x, n * 4ull));
    assert_vkt_ok(vkt_buffer_upload(by, 0, y, n * 4ull));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    vkt_binding b[2] = {{bx, 0, 0}, {by, 0, 0}};
    uint32_t per_group = wg * run;
    assert_vkt_ok(vkt_stream_begin(s));
    assert_vkt_ok(vkt_stream_dispatch(s, p, b, 2, &push, sizeof push,
                                      (n + per_group - 1) / per_group, 1, 1));
    assert_vkt_ok(vkt_stream_end(s));
    assert_vkt_ok(vkt_stream_run(s));
    assert_vkt_ok(vkt_buffer_download(by, 0, y, n * 4ull));
    double maxd = 0;
    for (uint32_t i = 0; i < n; i++) maxd = fmax(maxd, fabs((double)y[i] - ref[i]));
    print_message("axpy n=%u wg=%u run=%u: max |gpu - C| = %.3g\n", n, wg, run, maxd);
    /* a*x+y may be fused on the GPU and not in C: one rounding apart. */
    assert_true(maxd <= 1e-6);
    vkt_stream_destroy(s);
    vkt_buffer_destroy(bx);
    vkt_buffer_destroy(by);
    vkt_pipeline_destroy(p);
    free(x);
    free(y);
    free(ref);
}

static void test_axpy(void **state)
{
    vkt_device *dev = *state;
    static const uint32_t sizes[] = {1, 7, 64, 1000, 65537, 1000003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        run_axpy(dev, sizes[i], 64, 1);
        run_axpy(dev, sizes[i], 8, 16);
    }
}

/* Multi-pass reduction: each pass shrinks n by wg*items until 1 is left. */
static double gpu_sum(vkt_device *dev, const float *x, uint32_t n, uint32_t wg, uint32_t items)
{
    uint32_t spec[2] = {wg, items};
    vkt_pipeline *p = tgpu_pipeline(dev, "reduce_sum_f32", 2, 4, spec, 2);
    vkt_buffer *in, *t0, *t1;
    uint64_t partials = (n + wg * items - 1) / (wg * items) * 4ull + 4;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, n * 4ull, &in));
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, partials, &t0));
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, partials, &t1));
    assert_vkt_ok(vkt_buffer_upload(in, 0, x, n * 4ull));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    vkt_buffer *src = in, *dst = t0;
    int passes = 0;
    for (uint32_t m = n; m > 1 || passes == 0; passes++) {
        uint32_t groups = (m + wg * items - 1) / (wg * items);
        vkt_binding b[2] = {{src, 0, 0}, {dst, 0, 0}};
        assert_vkt_ok(vkt_stream_dispatch(s, p, b, 2, &m, 4, groups, 1, 1));
        assert_vkt_ok(vkt_stream_barrier(s));
        m = groups;
        src = dst;
        dst = dst == t0 ? t1 : t0;
    }
    assert_vkt_ok(vkt_stream_end(s));
    assert_vkt_ok(vkt_stream_run(s));
    float got;
    assert_vkt_ok(vkt_buffer_download(src, 0, &got, 4));
    vkt_stream_destroy(s);
    vkt_buffer_destroy(in);
    vkt_buffer_destroy(t0);
    vkt_buffer_destroy(t1);
    vkt_pipeline_destroy(p);
    return got;
}

static void test_reduction(void **state)
{
    vkt_device *dev = *state;
    static const uint32_t sizes[] = {1, 2, 255, 256, 257, 99991, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint32_t n = sizes[i];
        float *x = malloc(n * 4ull);
        tgpu_fill_random(x, n, 5 + n);
        double ref = 0, absum = 0;
        for (uint32_t k = 0; k < n; k++) ref += x[k], absum += fabs(x[k]);
        double got = gpu_sum(dev, x, n, 64, 4);
        double got2 = gpu_sum(dev, x, n, 256, 1);
        /* fp32 tree summation: error bound ~ log2(n) * eps * sum|x| */
        double tol = 1e-6 * absum + 1e-7;
        print_message("sum n=%u: ref %.9g, gpu %.9g / %.9g, tol %.3g\n", n, ref, got, got2, tol);
        assert_true(fabs(got - ref) <= tol);
        assert_true(fabs(got2 - ref) <= tol);
        free(x);
    }
}

static void test_push_and_spec_constants(void **state)
{
    vkt_device *dev = *state;
    vkt_buffer *out;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_HOST, 6 * 4, &out));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    struct { uint32_t a, b, wg, p0, p1; } cases[] = {
        {3, 5, 32, 100, 200}, {1000, 0, 8, 7, 9}, {7, 11, 1, 0, 0xffffffffu}};
    for (int c = 0; c < 3; c++) {
        uint32_t spec[3] = {cases[c].wg, cases[c].a, cases[c].b};
        vkt_pipeline *p = tgpu_pipeline(dev, "spec_probe", 1, 8, spec, 3);
        uint32_t push[2] = {cases[c].p0, cases[c].p1};
        vkt_binding b = {out, 0, 0};
        assert_vkt_ok(vkt_stream_begin(s));
        assert_vkt_ok(vkt_stream_dispatch(s, p, &b, 1, push, 8, 1, 1, 1));
        assert_vkt_ok(vkt_stream_end(s));
        assert_vkt_ok(vkt_stream_run(s));
        uint32_t got[6];
        assert_vkt_ok(vkt_buffer_download(out, 0, got, sizeof got));
        assert_int_equal(got[0], cases[c].a);
        assert_int_equal(got[1], cases[c].b);
        assert_int_equal(got[2], cases[c].p0);
        assert_int_equal(got[3], cases[c].p1);
        assert_int_equal(got[4], cases[c].wg);
        assert_int_equal(got[5], cases[c].a * cases[c].p0 + cases[c].b);
        vkt_pipeline_destroy(p);
    }
    /* The shader's defaults apply when no spec constants are given. */
    uint32_t wg_only[1] = {4};
    vkt_pipeline *p = tgpu_pipeline(dev, "spec_probe", 1, 8, wg_only, 1);
    uint32_t push[2] = {2, 0};
    vkt_binding b = {out, 0, 0};
    assert_vkt_ok(vkt_stream_begin(s));
    assert_vkt_ok(vkt_stream_dispatch(s, p, &b, 1, push, 8, 1, 1, 1));
    assert_vkt_ok(vkt_stream_end(s));
    assert_vkt_ok(vkt_stream_run(s));
    uint32_t got[6];
    assert_vkt_ok(vkt_buffer_download(out, 0, got, sizeof got));
    assert_int_equal(got[0], 7);
    assert_int_equal(got[1], 11);
    assert_int_equal(got[5], 7 * 2 + 11);
    vkt_pipeline_destroy(p);
    vkt_stream_destroy(s);
    vkt_buffer_destroy(out);
}

/* Mistakes are caught with a message before any Vulkan call sees them. */
static void test_dispatch_checks(void **state)
{
    vkt_device *dev = *state;
    uint32_t spec[2] = {64, 1};
    vkt_pipeline *p = tgpu_pipeline(dev, "axpy_f32", 2, 8, spec, 2);
    vkt_buffer *a, *b;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 4096, &a));
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 4096, &b));
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    axpy_push push = {16, 1.0f};
    vkt_binding good[2] = {{a, 0, 0}, {b, 0, 0}};
    /* not recording */
    assert_int_equal(vkt_stream_dispatch(s, p, good, 2, &push, 8, 1, 1, 1), VKT_ERR_INVALID_USAGE);
    assert_int_equal(vkt_stream_submit(s, NULL), VKT_ERR_INVALID_USAGE);
    assert_vkt_ok(vkt_stream_begin(s));
    assert_int_equal(vkt_stream_begin(s), VKT_ERR_INVALID_USAGE);
    assert_int_equal(vkt_stream_dispatch(s, p, good, 1, &push, 8, 1, 1, 1), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "1 bindings given, the pipeline has 2"));
    assert_int_equal(vkt_stream_dispatch(s, p, good, 2, &push, 4, 1, 1, 1), VKT_ERR_INVALID_ARG);
    vkt_binding misaligned[2] = {{a, 4, 64}, {b, 0, 0}};
    uint64_t align = vkt_device_get_caps(dev)->min_storage_buffer_alignment;
    if (align > 4) {
        assert_int_equal(vkt_stream_dispatch(s, p, misaligned, 2, &push, 8, 1, 1, 1),
                         VKT_ERR_INVALID_ARG);
        assert_non_null(strstr(vkt_last_error(), "alignment"));
    }
    vkt_binding outside[2] = {{a, 0, 8192}, {b, 0, 0}};
    assert_int_equal(vkt_stream_dispatch(s, p, outside, 2, &push, 8, 1, 1, 1), VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_stream_dispatch(s, p, good, 2, &push, 8, 0, 1, 1), VKT_ERR_INVALID_ARG);
    assert_vkt_ok(vkt_stream_dispatch(s, p, good, 2, &push, 8, 1, 1, 1));
    assert_vkt_ok(vkt_stream_end(s));
    assert_vkt_ok(vkt_stream_run(s));
    /* unknown shader, bad push size */
    vkt_pipeline_opts o = VKT_PIPELINE_OPTS_INIT;
    vkt_pipeline *q = (vkt_pipeline *)0x1;
    o.shader = "no_such_shader";
    assert_int_equal(vkt_pipeline_create(dev, &o, &q), VKT_ERR_INVALID_ARG);
    assert_null(q);
    assert_non_null(strstr(vkt_last_error(), "no_such_shader"));
    o.shader = "axpy_f32";
    o.push_size = 6;
    assert_int_equal(vkt_pipeline_create(dev, &o, &q), VKT_ERR_INVALID_ARG);
    vkt_stream_destroy(s);
    vkt_buffer_destroy(a);
    vkt_buffer_destroy(b);
    vkt_pipeline_destroy(p);
}

static void test_shader_table(void **state)
{
    (void)state;
    assert_true(vkt_shader_count() >= 5);
    int found = 0;
    for (uint32_t i = 0; i < vkt_shader_count(); i++)
        found += strcmp(vkt_shader_name(i), "axpy_f32") == 0;
    assert_int_equal(found, 1);
    assert_null(vkt_shader_name(vkt_shader_count()));
}



int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shader_table),
        cmocka_unit_test(test_axpy),
        cmocka_unit_test(test_reduction),
        cmocka_unit_test(test_push_and_spec_constants),
        cmocka_unit_test(test_dispatch_checks),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
