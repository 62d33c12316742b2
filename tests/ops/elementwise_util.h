/* Helpers shared by test_elementwise.c and test_dropout.c: dtype rounding on
 * the host, device tensors at an odd element offset with guard elements
 * around them, and running one recorded op. */
#ifndef VKT_TEST_ELEMENTWISE_UTIL_H
#define VKT_TEST_ELEMENTWISE_UTIL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "test_dtype.h"
#include "test_gpu.h"

#define EW_OFF 5      /* element offset of every view: odd on purpose */
#define EW_GUARD 7    /* elements after the view that must stay untouched */
#define EW_SENTINEL 3.25f

static const vkt_dtype ew_types[3] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};

static inline float ew_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}





/* A device tensor of n elements of dtype t at element offset EW_OFF, with
 * sentinels before and after; h holds the host values (dtype-rounded). */
typedef struct ew_tensor {
    vkt_buffer *buf;
    vkt_dtype t;
    size_t n;
    float *h;
} ew_tensor;

static inline size_t ew_total(size_t n) { return EW_OFF + n + EW_GUARD; }

static inline vkt_tref ew_ref(const ew_tensor *x)
{
    return (vkt_tref){x->buf, EW_OFF * vkt_dtype_size(x->t)};
}

/* Upload x->h (rounding it to the dtype in place) plus the sentinels. */
static inline void ew_upload(ew_tensor *x)
{
    size_t tot = ew_total(x->n);
    void *raw = calloc(tot, 4);
    for (size_t i = 0; i < tot; i++) {
        bool in = i >= EW_OFF && i < EW_OFF + x->n;
        float v = tdt_store(x->t, raw, i, in ? x->h[i - EW_OFF] : EW_SENTINEL);
        if (in) x->h[i - EW_OFF] = v;
    }
    assert_vkt_ok(vkt_buffer_upload(x->buf, 0, raw, tot * vkt_dtype_size(x->t)));
    free(raw);
}

/* A tensor with values scale · U[-1, 1) from seed, uploaded. */
static inline ew_tensor ew_new(vkt_device *dev, vkt_dtype t, size_t n, uint32_t seed, float scale)
{
    ew_tensor x = {NULL, t, n, calloc(n ? n : 1, sizeof(float))};
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, ew_total(n) * 4, &x.buf));
    tgpu_fill_random(x.h, n, seed);
    for (size_t i = 0; i < n; i++) x.h[i] *= scale;
    ew_upload(&x);
    return x;
}

/* Download the view into out[n]; fail if a sentinel around it changed. */
static inline void ew_download(const ew_tensor *x, float *out)
{
    size_t tot = ew_total(x->n);
    void *raw = calloc(tot, 4);
    assert_vkt_ok(vkt_buffer_download(x->buf, 0, raw, tot * vkt_dtype_size(x->t)));
    for (size_t i = 0; i < tot; i++) {
        float v = tdt_load(x->t, raw, i);
        if (i >= EW_OFF && i < EW_OFF + x->n) out[i - EW_OFF] = v;
        else if (v != EW_SENTINEL) fail_msg("element %zu outside the view was overwritten", i);
    }
    free(raw);
}

static inline void ew_free(ew_tensor *x)
{
    vkt_buffer_destroy(x->buf);
    free(x->h);
    x->buf = NULL;
    x->h = NULL;
}

/* A device, an op context per family and a stream. */
typedef struct ew_ctx {
    vkt_device *dev;
    vkt_ops *ops[2];
    vkt_stream *s;
} ew_ctx;

static inline ew_ctx *ew_open(void)
{
    ew_ctx *c = calloc(1, sizeof *c);
    c->dev = tgpu_open();
    for (int f = 0; f < 2; f++)
        assert_vkt_ok(vkt__ops_create(c->dev, (vkt_kernel_family)f, &c->ops[f]));
    assert_vkt_ok(vkt_stream_create(c->dev, &c->s));
    return c;
}

static inline int ew_close(ew_ctx *c)
{
    vkt_stream_destroy(c->s);
    for (int f = 0; f < 2; f++) vkt__ops_destroy(c->ops[f]);
    uint64_t n = vkt_device_validation_messages(c->dev);
    vkt_device_destroy(c->dev);
    free(c);
    return n ? -1 : 0;
}

static inline void ew_begin(ew_ctx *c) { assert_vkt_ok(vkt_stream_begin(c->s)); }

static inline void ew_finish(ew_ctx *c)
{
    assert_vkt_ok(vkt_stream_end(c->s));
    assert_vkt_ok(vkt_stream_run(c->s));
}

/* Tolerance per dtype on |got - ref| / max(|ref|, 1), the reference in
 * double from the same dtype-rounded inputs: f32 1e-5 (fp32 arithmetic:
 * exp-based tanh, sums of up to ~100 terms); f16 1e-3 and bf16 8e-3 (one
 * rounding of the output, half an ulp = 4.9e-4 / 3.9e-3, plus margin). */
static inline double ew_tol(vkt_dtype t)
{
    return t == VKT_DTYPE_F32 ? 1e-5 : t == VKT_DTYPE_F16 ? 1e-3 : 8e-3;
}

/* max_i |got_i - ref_i| / max(|ref_i|, 1), failing above tol. */
static inline double ew_check(const char *what, const float *got, const double *ref, size_t n,
                              double tol)
{
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - ref[i]) / fmax(fabs(ref[i]), 1.0);
        if (!(d <= worst)) worst = d, wi = i; /* NaN counts as worst */
    }
    if (!(worst <= tol))
        fail_msg("%s: element %zu = %.8g, want %.8g (diff %.3g > tol %.3g)", what, wi,
                 (double)got[wi], ref[wi], worst, tol);
    return worst;
}

#endif
