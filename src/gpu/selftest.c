/* A self-check of a device with real kernels compared against C: used by
 * `vktrain selftest`, the demo and anyone who wants to know a driver works. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu/gpu_int.h"

#define N (1u << 20)
#define WG 64u
#define RUN 16u
#define SUM_ITEMS 16u

typedef struct selftest {
    vkt_device *dev;
    vkt_buffer *x, *y, *p0, *p1;
    vkt_pipeline *axpy, *sum, *empty;
    vkt_stream *s;
} selftest;

static void free_all(selftest *t)
{
    vkt_stream_destroy(t->s);
    vkt_pipeline_destroy(t->axpy);
    vkt_pipeline_destroy(t->sum);
    vkt_pipeline_destroy(t->empty);
    vkt_buffer_destroy(t->x);
    vkt_buffer_destroy(t->y);
    vkt_buffer_destroy(t->p0);
    vkt_buffer_destroy(t->p1);
}

static vkt_status make_pipe(vkt_device *dev, const char *name, uint32_t nb, uint32_t push,
                            uint32_t spec1, vkt_pipeline **out)
{
    uint32_t spec[2] = {WG, spec1};
    vkt_pipeline_opts o = VKT_PIPELINE_OPTS_INIT;
    o.shader = name;
    o.bindings = nb;
    o.push_size = push;
    o.spec = spec;
    o.spec_count = 2;
    return vkt_pipeline_create(dev, &o, out);
}

static vkt_status run_axpy(selftest *t, const float *x, float *y, double *err)
{
    float *ref = vkt_malloc(N * sizeof *ref);
    VKT_FAIL_IF(!ref, VKT_ERR_NOMEM, "selftest: out of host memory");
    const float a = 0.75f;
    for (uint32_t i = 0; i < N; i++) ref[i] = a * x[i] + y[i];
    vkt_status st;
    VKT_CHECK_GOTO(st, vkt_buffer_upload(t->x, 0, x, N * 4ull), out);
    VKT_CHECK_GOTO(st, vkt_buffer_upload(t->y, 0, y, N * 4ull), out);
    struct { uint32_t n; float a; } push = {N, a};
    vkt_binding b[2] = {{t->x, 0, 0}, {t->y, 0, 0}};
    VKT_CHECK_GOTO(st, vkt_stream_begin(t->s), out);
    VKT_CHECK_GOTO(st, vkt_stream_dispatch(t->s, t->axpy, b, 2, &push, sizeof push,
                                           (N + WG * RUN - 1) / (WG * RUN), 1, 1), out);
    VKT_CHECK_GOTO(st, vkt_stream_end(t->s), out);
    VKT_CHECK_GOTO(st, vkt_stream_run(t->s), out);
    VKT_CHECK_GOTO(st, vkt_buffer_download(t->y, 0, y, N * 4ull), out);
    *err = 0;
    for (uint32_t i = 0; i < N; i++) *err = fmax(*err, fabs((double)y[i] - ref[i]));
out:
    vkt_free(ref);
    return st;
}

/* Reduce x to one float with repeated partial-sum passes, ping-ponging
 * between two scratch buffers. */
static vkt_status run_sum(selftest *t, const float *x, double *rel)
{
    double ref = 0;
    for (uint32_t i = 0; i < N; i++) ref += x[i];
    VKT_CHECK(vkt_buffer_upload(t->x, 0, x, N * 4ull));
    VKT_CHECK(vkt_stream_begin(t->s));
    vkt_buffer *src = t->x, *dst = t->p0;
    uint32_t n = N;
    while (n > 1) {
        uint32_t groups = (n + WG * SUM_ITEMS - 1) / (WG * SUM_ITEMS);
        vkt_binding b[2] = {{src, 0, 0}, {dst, 0, 0}};
        VKT_CHECK(vkt_stream_dispatch(t->s, t->sum, b, 2, &n, sizeof n, groups, 1, 1));
        VKT_CHECK(vkt_stream_barrier(t->s));
        n = groups;
        src = dst;
        dst = dst == t->p0 ? t->p1 : t->p0;
    }
    VKT_CHECK(vkt_stream_end(t->s));
    VKT_CHECK(vkt_stream_run(t->s));
    float got;
    VKT_CHECK(vkt_buffer_download(src, 0, &got, sizeof got));
    *rel = fabs((double)got - ref) / fmax(fabs(ref), 1e-30);
    return VKT_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static vkt_status time_empty(selftest *t, double *us)
{
    enum { REPS = 51 };
    double ts[REPS];
    vkt_binding b = {t->p0, 0, 0};
    VKT_CHECK(vkt_stream_begin(t->s));
    VKT_CHECK(vkt_stream_dispatch(t->s, t->empty, &b, 1, NULL, 0, 1, 1, 1));
    VKT_CHECK(vkt_stream_end(t->s));
    for (int i = 0; i < REPS; i++) {
        struct timespec a, z;
        clock_gettime(CLOCK_MONOTONIC, &a);
        VKT_CHECK(vkt_stream_run(t->s));
        clock_gettime(CLOCK_MONOTONIC, &z);
        ts[i] = (double)(z.tv_sec - a.tv_sec) * 1e6 + (double)(z.tv_nsec - a.tv_nsec) * 1e-3;
    }
    qsort(ts, REPS, sizeof ts[0], cmp_double);
    *us = ts[REPS / 2];
    return VKT_OK;
}

static vkt_status setup(selftest *t)
{
    vkt_device *d = t->dev;
    VKT_CHECK(vkt_buffer_create(d, VKT_MEMORY_DEVICE, N * 4ull, &t->x));
    VKT_CHECK(vkt_buffer_create(d, VKT_MEMORY_DEVICE, N * 4ull, &t->y));
    VKT_CHECK(vkt_buffer_create(d, VKT_MEMORY_DEVICE, N * 4ull / (WG * SUM_ITEMS) + 64, &t->p0));
    VKT_CHECK(vkt_buffer_create(d, VKT_MEMORY_DEVICE, N * 4ull / (WG * SUM_ITEMS) + 64, &t->p1));
    VKT_CHECK(make_pipe(d, "axpy_f32", 2, 8, RUN, &t->axpy));
    VKT_CHECK(make_pipe(d, "reduce_sum_f32", 2, 4, SUM_ITEMS, &t->sum));
    VKT_CHECK(make_pipe(d, "empty", 1, 0, 1, &t->empty));
    return vkt_stream_create(d, &t->s);
}

vkt_status vkt_device_selftest(vkt_device *dev, vkt_selftest_result *r)
{
    VKT_FAIL_IF(!dev || dev->magic != VKT_DEVICE_MAGIC || !r, VKT_ERR_INVALID_ARG,
                "vkt_device_selftest: NULL device or result");
    memset(r, 0, sizeof *r);
    selftest t = {.dev = dev};
    uint64_t messages_before = vkt_device_validation_messages(dev);
    float *x = vkt_malloc(N * sizeof *x), *y = vkt_malloc(N * sizeof *y);
    vkt_status st = VKT_OK;
    if (!x || !y) {
        st = VKT_ERROR(VKT_ERR_NOMEM, "selftest: out of host memory");
        goto out;
    }
    for (uint32_t i = 0; i < N; i++) { /* values of both signs, exactly representable */
        x[i] = (float)((int)(i % 1999) - 999) / 64.0f;
        y[i] = (float)((int)(i % 127) - 63) / 8.0f;
    }
    VKT_CHECK_GOTO(st, setup(&t), out);
    VKT_CHECK_GOTO(st, run_axpy(&t, x, y, &r->axpy_max_abs_err), out);
    VKT_CHECK_GOTO(st, run_sum(&t, x, &r->sum_rel_err), out);
    VKT_CHECK_GOTO(st, time_empty(&t, &r->dispatch_us), out);
    r->validation_messages = vkt_device_validation_messages(dev) - messages_before;
    r->completed = true;
    if (r->axpy_max_abs_err > 1e-5 || r->sum_rel_err > 1e-5 || r->validation_messages)
        st = VKT_ERROR(VKT_ERR_VULKAN,
                       "selftest on '%s' failed: axpy max error %.3g (limit 1e-5), sum relative "
                       "error %.3g (limit 1e-5), %llu validation messages; the driver computes "
                       "wrong results, update it or choose another device",
                       dev->caps.name, r->axpy_max_abs_err, r->sum_rel_err,
                       (unsigned long long)r->validation_messages);
out:
    free_all(&t);
    vkt_free(x);
    vkt_free(y);
    return st;
}
