/* Test helpers shared by the row-op tests (LayerNorm, cross-entropy,
 * embeddings): dtype rounding on the host, device tensors with every view at
 * element offset OFF, and the error measure. Include once per test binary. */
#ifndef VKT_NORM_TEST_UTIL_H
#define VKT_NORM_TEST_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "test_dtype.h"
#include "test_gpu.h"

#define OFF 3 /* element offset of every view */




/* A device tensor of n elements at element offset OFF, and its host values
 * (rounded to the dtype). */
typedef struct tensor {
    vkt_buffer *buf;
    vkt_dtype t;
    size_t n;
    float *h;
} tensor;

static tensor tensor_new(vkt_device *dev, vkt_dtype t, size_t n)
{
    tensor x = {NULL, t, n, calloc(n, sizeof(float))};
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, (n + OFF + 4) * 4, &x.buf));
    return x;
}

static void tensor_upload(tensor *x)
{
    size_t es = vkt_dtype_size(x->t);
    char *raw = calloc(x->n + OFF + 4, 4);
    for (size_t i = 0; i < x->n; i++) x->h[i] = tdt_store(x->t, raw, OFF + i, x->h[i]);
    assert_vkt_ok(vkt_buffer_upload(x->buf, 0, raw, (x->n + OFF + 4) * es));
    free(raw);
}

static void tensor_random(tensor *x, uint32_t seed, float scale)
{
    tgpu_fill_random(x->h, x->n, seed);
    for (size_t i = 0; i < x->n; i++) x->h[i] *= scale;
    tensor_upload(x);
}

/* Device values into out[0..n). */
static void tensor_read(const tensor *x, float *out)
{
    size_t es = vkt_dtype_size(x->t);
    char *raw = calloc(x->n + OFF + 4, 4);
    assert_vkt_ok(vkt_buffer_download(x->buf, 0, raw, (x->n + OFF + 4) * es));
    for (size_t i = 0; i < x->n; i++) out[i] = tdt_load(x->t, raw, OFF + i);
    free(raw);
}

static void tensor_free(tensor *x)
{
    vkt_buffer_destroy(x->buf);
    free(x->h);
}

static vkt_tref ref_of(const tensor *x) { return (vkt_tref){x->buf, OFF * vkt_dtype_size(x->t)}; }

/* max |got - want| / max(|want|, floor) */
static double max_err_floor(const tensor *x, const double *want, double floor)
{
    float *got = malloc(x->n * sizeof(float));
    tensor_read(x, got);
    double m = 0;
    for (size_t i = 0; i < x->n; i++) {
        double e = fabs(got[i] - want[i]) / fmax(fabs(want[i]), floor);
        m = isnan(got[i]) ? INFINITY : fmax(m, e);
    }
    free(got);
    return m;
}

static double max_err(const tensor *x, const double *want) { return max_err_floor(x, want, 1.0); }

#endif
