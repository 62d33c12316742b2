/* Test helpers shared by the row-op tests (LayerNorm, cross-entropy,
 * embeddings): dtype rounding on the host, device tensors with every view at
 * element offset OFF, and the error measure. Include once per test binary. */
#ifndef VKT_NORM_TEST_UTIL_H
#define VKT_NORM_TEST_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "test_gpu.h"

#define OFF 3 /* element offset of every view */

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Store x as dtype t at raw[i]; return the stored value. */
static float store(vkt_dtype t, void *raw, size_t i, float x)
{
    if (t == VKT_DTYPE_F32) return ((float *)raw)[i] = x;
    if (t == VKT_DTYPE_F16) {
        _Float16 h = (_Float16)x;
        memcpy((char *)raw + 2 * i, &h, 2);
        return (float)h;
    }
    uint16_t b = to_bf16(x);
    memcpy((char *)raw + 2 * i, &b, 2);
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static float load(vkt_dtype t, const void *raw, size_t i)
{
    if (t == VKT_DTYPE_F32) return ((const float *)raw)[i];
    uint16_t h;
    memcpy(&h, (const char *)raw + 2 * i, 2);
    if (t == VKT_DTYPE_F16) {
        _Float16 f;
        memcpy(&f, &h, 2);
        return (float)f;
    }
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

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
    for (size_t i = 0; i < x->n; i++) x->h[i] = store(x->t, raw, OFF + i, x->h[i]);
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
    for (size_t i = 0; i < x->n; i++) out[i] = load(x->t, raw, OFF + i);
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
