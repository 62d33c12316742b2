/* Causal self-attention forward and backward against a double-precision C
 * reference, for f32/f16/bf16 and both kernel families, on shapes with
 * T = 1, odd and prime T, one to four heads and head sizes 1..128, views at
 * odd element offsets, plus a finite-difference check and argument errors.
 *
 * The reference runs on the inputs as rounded to the dtype, so only the
 * device's fp32 arithmetic and the rounding of its outputs differ.
 * Tolerances, on |got - ref| / max(|ref|, 1) (values here are O(1)):
 *   f32 2e-5 (fp32 sums of <= 128 terms of O(1) products);
 *   f16 1e-3 (outputs rounded to f16: 2^-11 relative, plus fp32 error);
 *   bf16 8e-3 (outputs rounded to bf16: 2^-9 relative, plus fp32 error).
 * att is fp32 for every dtype: 1e-5 absolute (probabilities are <= 1). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/attention.h"
#include "test_dtype.h"
#include "test_gpu.h"

#define OFF 3 /* element offset of every view: not aligned on purpose */





typedef struct shape {
    uint32_t b, t, nh, hs;
} shape;

/* ---- double reference ---------------------------------------------------- */

/* Index of channel d of head h of operand w (0 q, 1 k, 2 v) at (b, t). */
static size_t qi(const shape *s, uint32_t b, uint32_t t, uint32_t w, uint32_t h, uint32_t d)
{
    size_t c = (size_t)s->nh * s->hs;
    return ((size_t)b * s->t + t) * 3 * c + w * c + (size_t)h * s->hs + d;
}

static size_t oi(const shape *s, uint32_t b, uint32_t t, uint32_t h, uint32_t d)
{
    return ((size_t)b * s->t + t) * s->nh * s->hs + (size_t)h * s->hs + d;
}

static size_t ai(const shape *s, uint32_t b, uint32_t h, uint32_t t, uint32_t u)
{
    return (((size_t)b * s->nh + h) * s->t + t) * s->t + u;
}

static double dot(const shape *s, const double *qkv, uint32_t b, uint32_t h, uint32_t t,
                  uint32_t wt, uint32_t u, uint32_t wu)
{
    double acc = 0;
    for (uint32_t d = 0; d < s->hs; d++) acc += qkv[qi(s, b, t, wt, h, d)] * qkv[qi(s, b, u, wu, h, d)];
    return acc;
}

/* out [B, T, C], att [B, nh, T, T] <- qkv [B, T, 3C] */
static void ref_fwd(const shape *s, const double *qkv, double *out, double *att)
{
    double scale = 1.0 / sqrt(s->hs);
    for (uint32_t b = 0; b < s->b; b++)
        for (uint32_t h = 0; h < s->nh; h++)
            for (uint32_t t = 0; t < s->t; t++) {
                double *p = att + ai(s, b, h, t, 0), m = -INFINITY, l = 0;
                for (uint32_t u = 0; u <= t; u++) {
                    p[u] = dot(s, qkv, b, h, t, 0, u, 1) * scale;
                    m = fmax(m, p[u]);
                }
                for (uint32_t u = 0; u <= t; u++) l += p[u] = exp(p[u] - m);
                for (uint32_t u = 0; u <= t; u++) p[u] /= l;
                for (uint32_t d = 0; d < s->hs; d++) {
                    double o = 0;
                    for (uint32_t u = 0; u <= t; u++) o += p[u] * qkv[qi(s, b, u, 2, h, d)];
                    out[oi(s, b, t, h, d)] = o;
                }
            }
}

/* dqkv [B, T, 3C] += backward of ref_fwd for dout [B, T, C] */
static void ref_bwd(const shape *s, const double *qkv, const double *att, const double *dout,
                    double *dqkv)
{
    double scale = 1.0 / sqrt(s->hs), *dp = malloc(s->t * sizeof *dp);
    for (uint32_t b = 0; b < s->b; b++)
        for (uint32_t h = 0; h < s->nh; h++)
            for (uint32_t t = 0; t < s->t; t++) {
                const double *p = att + ai(s, b, h, t, 0);
                double r = 0;
                for (uint32_t u = 0; u <= t; u++) {
                    dp[u] = 0;
                    for (uint32_t d = 0; d < s->hs; d++) {
                        dp[u] += dout[oi(s, b, t, h, d)] * qkv[qi(s, b, u, 2, h, d)];
                        dqkv[qi(s, b, u, 2, h, d)] += p[u] * dout[oi(s, b, t, h, d)];
                    }
                    r += p[u] * dp[u];
                }
                for (uint32_t u = 0; u <= t; u++) {
                    double ds = p[u] * (dp[u] - r) * scale;
                    for (uint32_t d = 0; d < s->hs; d++) {
                        dqkv[qi(s, b, t, 0, h, d)] += ds * qkv[qi(s, b, u, 1, h, d)];
                        dqkv[qi(s, b, u, 1, h, d)] += ds * qkv[qi(s, b, t, 0, h, d)];
                    }
                }
            }
    free(dp);
}

/* ---- device side --------------------------------------------------------- */

enum { B_QKV, B_OUT, B_ATT, B_DQKV, B_DOUT, B_DATT, NBUF };

/* Each buffer's host image (OFF leading elements, then the view) lies this
 * many bytes into the device buffer, so the views' offsets all differ. */
static const uint64_t SHIFT[NBUF] = {0, 8, 4, 20, 12, 16};

typedef struct dev_bufs {
    vkt_buffer *b[NBUF];
    size_t n[NBUF]; /* elements of each view */
} dev_bufs;

static void bufs_create(vkt_device *dev, const shape *s, dev_bufs *d)
{
    size_t c = (size_t)s->nh * s->hs, bt = (size_t)s->b * s->t;
    size_t n[NBUF] = {bt * 3 * c, bt * c, (size_t)s->b * s->nh * s->t * s->t, bt * 3 * c, bt * c,
                      (size_t)s->b * s->nh * s->t * s->t};
    for (int i = 0; i < NBUF; i++) {
        d->n[i] = n[i];
        assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, (n[i] + OFF + 5) * 4 + SHIFT[i],
                                        &d->b[i]));
    }
}

static void put(const dev_bufs *d, int k, uint64_t off, const void *src, uint64_t bytes)
{
    assert_vkt_ok(vkt_buffer_upload(d->b[k], SHIFT[k] + off, src, bytes));
}

static void get(const dev_bufs *d, int k, uint64_t off, void *dst, uint64_t bytes)
{
    assert_vkt_ok(vkt_buffer_download(d->b[k], SHIFT[k] + off, dst, bytes));
}

static void bufs_destroy(dev_bufs *d)
{
    for (int i = 0; i < NBUF; i++) vkt_buffer_destroy(d->b[i]);
}

static vkt_attention_args make_args(const dev_bufs *d, const shape *s, vkt_dtype t)
{
    uint64_t e = vkt_dtype_size(t);
#define VIEW(k, es) {d->b[k], OFF * (es) + SHIFT[k]}
    return (vkt_attention_args){.qkv = VIEW(B_QKV, e), .out = VIEW(B_OUT, e),
                                .att = VIEW(B_ATT, 4), .dqkv = VIEW(B_DQKV, e),
                                .dout = VIEW(B_DOUT, e), .datt = VIEW(B_DATT, 4),
                                .t = t, .b = s->b, .t_len = s->t, .c = s->nh * s->hs,
                                .heads = s->nh};
#undef VIEW
}

/* Record forward (and backward when bwd) of a into a fresh recording. */
static void record(vkt_ops *ops, vkt_stream *st, const vkt_attention_args *a, bool bwd)
{
    assert_vkt_ok(vkt_stream_begin(st));
    assert_vkt_ok(vkt_op_attention_fwd(ops, st, a));
    if (bwd) {
        assert_vkt_ok(vkt_stream_barrier(st));
        assert_vkt_ok(vkt_op_attention_bwd(ops, st, a));
    }
    assert_vkt_ok(vkt_stream_end(st));
}

/* Fill raw (OFF + n + 5 elements of dtype t) with random values scaled by
 * amp; return the stored values of the view's n elements as doubles. */
static double *random_tensor(vkt_dtype t, void *raw, size_t n, float amp, uint32_t seed)
{
    size_t total = n + OFF + 5;
    float *f = malloc(total * 4);
    double *v = malloc(n * sizeof *v);
    tgpu_fill_random(f, total, seed);
    for (size_t i = 0; i < total; i++) {
        double x = tdt_store(t, raw, i, f[i] * amp);
        if (i >= OFF && i < OFF + n) v[i - OFF] = x;
    }
    free(f);
    return v;
}

/* max over i of |got_i - ref_i| / max(|ref_i|, 1) */
static double max_err(vkt_dtype t, const void *raw, const double *ref, size_t n)
{
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double g = tdt_load(t, raw, OFF + i);
        double d = fabs(g - ref[i]) / fmax(fabs(ref[i]), 1.0);
        e = isnan(d) ? INFINITY : fmax(e, d);
    }
    return e;
}

/* max |att - ref| over the causal entries (s <= t) */
static double att_err(const shape *s, const float *att, const double *ref)
{
    double e = 0;
    for (uint32_t b = 0; b < s->b; b++)
        for (uint32_t h = 0; h < s->nh; h++)
            for (uint32_t t = 0; t < s->t; t++)
                for (uint32_t u = 0; u <= t; u++) {
                    size_t i = ai(s, b, h, t, u);
                    double d = fabs(att[OFF + i] - ref[i]);
                    e = isnan(d) ? INFINITY : fmax(e, d);
                }
    return e;
}

static double tolerance(vkt_dtype t)
{
    return t == VKT_DTYPE_F32 ? 2e-5 : t == VKT_DTYPE_F16 ? 1e-3 : 8e-3;
}

/* Host data of one case: raw dtype images (with OFF leading elements) and
 * the rounded values as doubles. */
typedef struct host_case {
    void *qkv_raw, *dout_raw, *dqkv_raw, *nan_raw;
    double *qkv, *dout, *dqkv;
} host_case;

static void host_create(const shape *s, const dev_bufs *d, vkt_dtype t, uint32_t seed,
                        host_case *h)
{
    size_t big = d->n[B_ATT] > d->n[B_QKV] ? d->n[B_ATT] : d->n[B_QKV];
    h->qkv_raw = calloc(d->n[B_QKV] + OFF + 5, 4);
    h->dout_raw = calloc(d->n[B_DOUT] + OFF + 5, 4);
    h->dqkv_raw = calloc(d->n[B_DQKV] + OFF + 5, 4);
    h->nan_raw = malloc((big + OFF + 5) * 4);
    memset(h->nan_raw, 0xff, (big + OFF + 5) * 4); /* NaN in every dtype */
    h->qkv = random_tensor(t, h->qkv_raw, d->n[B_QKV], 2.0f, seed);
    h->dout = random_tensor(t, h->dout_raw, d->n[B_DOUT], 1.0f, seed + 1);
    h->dqkv = random_tensor(t, h->dqkv_raw, d->n[B_DQKV], 1.0f, seed + 2);
    (void)s;
}

static void host_destroy(host_case *h)
{
    free(h->qkv_raw), free(h->dout_raw), free(h->dqkv_raw), free(h->nan_raw);
    free(h->qkv), free(h->dout), free(h->dqkv);
}

static void upload_case(const dev_bufs *d, const host_case *h, vkt_dtype t)
{
    size_t e = vkt_dtype_size(t);
    put(d, B_QKV, 0, h->qkv_raw, (d->n[B_QKV] + OFF + 5) * e);
    put(d, B_DOUT, 0, h->dout_raw, (d->n[B_DOUT] + OFF + 5) * e);
    put(d, B_DQKV, 0, h->dqkv_raw, (d->n[B_DQKV] + OFF + 5) * e);
    /* out, att and datt start as NaN: a kernel that reads what it did not
     * write (e.g. att above the diagonal) shows up as NaN in the results. */
    static const int nan_bufs[] = {B_OUT, B_ATT, B_DATT};
    for (int i = 0; i < 3; i++) {
        int k = nan_bufs[i];
        put(d, k, 0, h->nan_raw, (d->n[k] + OFF + 5) * 4);
    }
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_case(vkt_device *dev, vkt_ops *ops, vkt_dtype t, shape s)
{
    double c0 = cpu_s();
    dev_bufs d;
    host_case h;
    bufs_create(dev, &s, &d);
    host_create(&s, &d, t, 11 + s.b * 7 + s.t * 13 + s.hs, &h);
    upload_case(&d, &h, t);
    vkt_stream *st;
    assert_vkt_ok(vkt_stream_create(dev, &st));
    vkt_attention_args a = make_args(&d, &s, t);
    record(ops, st, &a, true);
    assert_vkt_ok(vkt_stream_run(st));

    size_t e = vkt_dtype_size(t);
    void *out = malloc((d.n[B_OUT] + OFF + 5) * e), *dq = malloc((d.n[B_DQKV] + OFF + 5) * e);
    float *att = malloc((d.n[B_ATT] + OFF + 5) * 4);
    get(&d, B_OUT, 0, out, (d.n[B_OUT] + OFF + 5) * e);
    get(&d, B_ATT, 0, att, (d.n[B_ATT] + OFF + 5) * 4);
    get(&d, B_DQKV, 0, dq, (d.n[B_DQKV] + OFF + 5) * e);

    double *rout = calloc(d.n[B_OUT], 8), *ratt = calloc(d.n[B_ATT], 8);
    ref_fwd(&s, h.qkv, rout, ratt);
    ref_bwd(&s, h.qkv, ratt, h.dout, h.dqkv); /* h.dqkv held the initial values */
    double eo = max_err(t, out, rout, d.n[B_OUT]), ea = att_err(&s, att, ratt);
    double eg = max_err(t, dq, h.dqkv, d.n[B_DQKV]);
    print_message("attention %-4s %s B=%u T=%-3u nh=%u hs=%-3u: max err out %.1e att %.1e "
                  "dqkv %.1e (%.2f cpu-s)\n", vkt_dtype_name(t),
                  vkt__kernel_family_str(vkt__ops_family(ops)), s.b, s.t, s.nh, s.hs, eo, ea, eg,
                  cpu_s() - c0);
    assert_true(eo <= tolerance(t) && eg <= tolerance(t) && ea <= 1e-5);
    /* neighbours of the views are untouched */
    assert_memory_equal(out, h.nan_raw, OFF * e);
    assert_memory_equal((char *)out + (OFF + d.n[B_OUT]) * e, h.nan_raw, 5 * e);
    assert_memory_equal(dq, h.dqkv_raw, OFF * e);
    assert_memory_equal((char *)dq + (OFF + d.n[B_DQKV]) * e,
                        (char *)h.dqkv_raw + (OFF + d.n[B_DQKV]) * e, 5 * e);
    vkt_stream_destroy(st);
    free(out), free(dq), free(att), free(rout), free(ratt);
    host_destroy(&h);
    bufs_destroy(&d);
}

/* Cases that mostly cost pipeline compile time (hs = 128) and the timing
 * run are left out unless VKT_TEST_SLOW=1, to keep this binary near 30 s on
 * lavapipe with a cold shader cache. */
static bool slow_tests(void)
{
    const char *e = getenv("VKT_TEST_SLOW");
    return e && strcmp(e, "0") != 0;
}

static void test_against_reference(void **state)
{
    if (!slow_tests())
        print_message("attention: hs = 128 cases skipped (slow compile); set VKT_TEST_SLOW=1\n");
    vkt_device *dev = *state;
    static const vkt_dtype types[] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};
    static const shape all[] = {{1, 1, 1, 1}, {2, 7, 3, 8}, {3, 64, 4, 32}, {1, 64, 2, 1}};
    static const shape f32_only[] = {{2, 67, 1, 32}, {1, 7, 4, 8}, {3, 1, 4, 8}, {1, 131, 2, 8},
                                     {1, 5, 2, 6}};
    /* hs = 128 (the largest head) costs ~15 s of lavapipe compile per family */
    static const shape f32_slow[] = {{1, 33, 1, 128}, {2, 9, 2, 100}};
    bool slow = slow_tests();
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++) {
        vkt_ops *ops;
        assert_vkt_ok(vkt__ops_create(dev, (vkt_kernel_family)fam, &ops));
        for (int t = 0; t < 3; t++)
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                run_case(dev, ops, types[t], all[i]);
        for (size_t i = 0; i < sizeof f32_only / sizeof f32_only[0]; i++)
            run_case(dev, ops, VKT_DTYPE_F32, f32_only[i]);
        for (size_t i = 0; slow && i < sizeof f32_slow / sizeof f32_slow[0]; i++)
            run_case(dev, ops, VKT_DTYPE_F32, f32_slow[i]);
        vkt__ops_destroy(ops);
    }
}

/* ---- finite differences -------------------------------------------------- */

/* L = Σ w·out for the qkv now in d (forward recording fwd). */
static double loss(const dev_bufs *d, vkt_stream *fwd, const float *w, float *out)
{
    assert_vkt_ok(vkt_stream_run(fwd));
    get(d, B_OUT, 0, out, (d->n[B_OUT] + OFF) * 4);
    double l = 0;
    for (size_t i = 0; i < d->n[B_OUT]; i++) l += (double)w[i] * out[OFF + i];
    return l;
}

/* Central differences of L = Σ w·out over every qkv element, in f32, vs the
 * analytic dL/dqkv (backward with dout = w from dqkv = 0). eps = 1e-2:
 * the truncation error eps²/6·|L'''| is ~2e-5 for these O(1) functions, and
 * the fp32 rounding of L (~20 terms, ~1e-6) divided by 2·eps adds ~5e-5, so
 * 5e-4·max(1, |g|) is a safe bound that still catches any wrong term (>= 1e-2). */
static void fd_case(vkt_device *dev, vkt_kernel_family fam, shape s)
{
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, fam, &ops));
    dev_bufs d;
    bufs_create(dev, &s, &d);
    size_t nq = d.n[B_QKV], no = d.n[B_OUT];
    float *x = calloc(nq + OFF, 4), *w = malloc(no * 4), *dout = calloc(no + OFF, 4);
    float *g = calloc(nq + OFF, 4), *out = calloc(no + OFF, 4);
    tgpu_fill_random(x + OFF, nq, 5);
    tgpu_fill_random(w, no, 6);
    memcpy(dout + OFF, w, no * 4);
    put(&d, B_QKV, 0, x, (nq + OFF) * 4);
    put(&d, B_DOUT, 0, dout, (no + OFF) * 4);
    put(&d, B_DQKV, 0, g, (nq + OFF) * 4); /* zeros */
    vkt_attention_args a = make_args(&d, &s, VKT_DTYPE_F32);
    vkt_stream *all, *fwd;
    assert_vkt_ok(vkt_stream_create(dev, &all));
    assert_vkt_ok(vkt_stream_create(dev, &fwd));
    record(ops, all, &a, true);
    record(ops, fwd, &a, false);
    assert_vkt_ok(vkt_stream_run(all));
    get(&d, B_DQKV, 0, g, (nq + OFF) * 4);
    const float eps = 1e-2f;
    double worst = 0;
    for (size_t i = 0; i < nq; i++) {
        float x0 = x[OFF + i];
        x[OFF + i] = x0 + eps;
        put(&d, B_QKV, (OFF + i) * 4, &x[OFF + i], 4);
        double lp = loss(&d, fwd, w, out);
        x[OFF + i] = x0 - eps;
        put(&d, B_QKV, (OFF + i) * 4, &x[OFF + i], 4);
        double lm = loss(&d, fwd, w, out);
        x[OFF + i] = x0;
        put(&d, B_QKV, (OFF + i) * 4, &x[OFF + i], 4);
        double num = (lp - lm) / (2.0 * (double)eps), ana = g[OFF + i];
        worst = fmax(worst, fabs(num - ana) / fmax(1.0, fabs(ana)));
    }
    print_message("attention fd %s B=%u T=%u nh=%u hs=%u: max |numeric - analytic| %.1e\n",
                  vkt__kernel_family_str(fam), s.b, s.t, s.nh, s.hs, worst);
    assert_true(worst < 5e-4);
    vkt_stream_destroy(all);
    vkt_stream_destroy(fwd);
    free(x), free(w), free(dout), free(g), free(out);
    bufs_destroy(&d);
    vkt__ops_destroy(ops);
}

static void test_finite_differences(void **state)
{
    fd_case(*state, VKT_KERNELS_CPU, (shape){2, 5, 2, 3});
    fd_case(*state, VKT_KERNELS_GPU, (shape){1, 6, 2, 3});
}

/* ---- timing and argument errors ------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median wall and process-CPU seconds of 5 replays of st (after a warm-up). */
static void time_replays(vkt_stream *st, double *wall, double *cpu)
{
    double w[5], c[5];
    assert_vkt_ok(vkt_stream_run(st));
    for (int i = 0; i < 5; i++) {
        double w0 = now_s(), c0 = cpu_s();
        assert_vkt_ok(vkt_stream_run(st));
        w[i] = now_s() - w0, c[i] = cpu_s() - c0;
    }
    qsort(w, 5, sizeof w[0], cmp_double);
    qsort(c, 5, sizeof c[0], cmp_double);
    *wall = w[2], *cpu = c[2];
}

/* Forward, and forward + backward, at GPT-ish size B=4, T=128, C=256, nh=4.
 * The CPU seconds (lavapipe's workers included) are printed too because
 * wall time on a shared machine depends on the other load. */
static void test_timing(void **state)
{
    vkt_device *dev = *state;
    if (!slow_tests()) {
        print_message("attention timing skipped (compile ~15 s); set VKT_TEST_SLOW=1\n");
        return;
    }
    shape s = {4, 128, 4, 64};
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++) {
        vkt_ops *ops;
        assert_vkt_ok(vkt__ops_create(dev, (vkt_kernel_family)fam, &ops));
        dev_bufs d;
        host_case h;
        bufs_create(dev, &s, &d);
        host_create(&s, &d, VKT_DTYPE_F32, 3, &h);
        upload_case(&d, &h, VKT_DTYPE_F32);
        vkt_stream *st;
        assert_vkt_ok(vkt_stream_create(dev, &st));
        vkt_attention_args a = make_args(&d, &s, VKT_DTYPE_F32);
        double wf, cf, wb, cb;
        record(ops, st, &a, false);
        time_replays(st, &wf, &cf);
        record(ops, st, &a, true);
        time_replays(st, &wb, &cb);
        print_message("attention f32 %s B=4 T=128 C=256 nh=4 (median of 5): fwd %.1f ms wall "
                      "(%.1f ms cpu), fwd+bwd %.1f ms wall (%.1f ms cpu)\n",
                      vkt__kernel_family_str((vkt_kernel_family)fam), wf * 1e3, cf * 1e3,
                      wb * 1e3, cb * 1e3);
        vkt_stream_destroy(st);
        host_destroy(&h);
        bufs_destroy(&d);
        vkt__ops_destroy(ops);
    }
}

/* The call fails with st and a message containing msg. */
static void expect_fail(vkt_ops *ops, vkt_stream *st, const vkt_attention_args *a, bool bwd,
                        vkt_status want, const char *msg)
{
    vkt_status got = bwd ? vkt_op_attention_bwd(ops, st, a) : vkt_op_attention_fwd(ops, st, a);
    assert_int_equal(got, want);
    if (!strstr(vkt_last_error(), msg)) fail_msg("'%s' lacks '%s'", vkt_last_error(), msg);
}

static void test_argument_errors(void **state)
{
    vkt_device *dev = *state;
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, VKT_KERNELS_AUTO, &ops));
    shape s = {2, 8, 2, 4};
    dev_bufs d;
    bufs_create(dev, &s, &d);
    vkt_stream *st;
    assert_vkt_ok(vkt_stream_create(dev, &st));
    assert_vkt_ok(vkt_stream_begin(st));
    vkt_attention_args ok = make_args(&d, &s, VKT_DTYPE_F32), a = ok;
    a.t = VKT_DTYPE_I32;
    expect_fail(ops, st, &a, false, VKT_ERR_INVALID_ARG, "not a training dtype");
    a = ok, a.heads = 3;
    expect_fail(ops, st, &a, false, VKT_ERR_INVALID_ARG, "does not divide c");
    a = ok, a.heads = 1, a.c = 256;
    expect_fail(ops, st, &a, true, VKT_ERR_INVALID_ARG, "head size");
    a = ok, a.c = 2048, a.heads = 32;
    expect_fail(ops, st, &a, false, VKT_ERR_INVALID_ARG, "channels");
    a = ok, a.t_len = 1025;
    expect_fail(ops, st, &a, false, VKT_ERR_INVALID_ARG, "t_len");
    a = ok, a.t_len = 0;
    expect_fail(ops, st, &a, true, VKT_ERR_INVALID_ARG, "t_len");
    a = ok, a.b = 0;
    expect_fail(ops, st, &a, false, VKT_ERR_INVALID_ARG, "batch item");
    a = ok, a.b = 3; /* views sized for 2 */
    expect_fail(ops, st, &a, false, VKT_ERR_INVALID_ARG, "past the end");
    a = ok, a.datt.buf = NULL;
    expect_fail(ops, st, &a, true, VKT_ERR_INVALID_ARG, "datt has no buffer");
    a = ok, a.att.offset = 2;
    expect_fail(ops, st, &a, true, VKT_ERR_INVALID_ARG, "att offset");
    assert_vkt_ok(vkt_op_attention_fwd(ops, st, &ok)); /* the stream is still usable */
    assert_vkt_ok(vkt_stream_end(st));
    vkt_stream_destroy(st);
    bufs_destroy(&d);
    vkt__ops_destroy(ops);
}



int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_timing),
        cmocka_unit_test(test_argument_errors),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
