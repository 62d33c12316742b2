/* Token + position embedding (src/ops/embed.c) for f32/f16/bf16 and both
 * kernel families against a double-precision C reference, on shapes with
 * 1-sized, odd and prime dims, every view at an odd element offset, with
 * repeated and out-of-range tokens; plus a central-difference gradient
 * check in f32, a determinism check and argument errors.
 *
 * Tolerances, as max |got - ref| / max(|ref|, 1), the reference computed in
 * double from the same dtype-rounded inputs: f32 2e-5 (the drift of a
 * sequential fp32 sum of N terms, eps*sqrt(N) ~ 1.6e-5, relative
 * to sqrt(N), N = 58001; out is exact), f16 1e-3 (half an
 * output ulp, 4.9e-4, plus fp32 error), bf16 8e-3 (half ulp 3.9e-3). The
 * gradients are sums over up to N = B*T positions that may cancel, so their
 * error is divided by max(|ref|, sqrt(N)) (the size of such a sum). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "test_gpu.h"

#include "norm_test_util.h"

/* int32 tokens at element offset OFF. */
static vkt_buffer *tokens_new(vkt_device *dev, const int32_t *tk, size_t n)
{
    vkt_buffer *b;
    int32_t *raw = calloc(n + OFF, 4);
    memcpy(raw + OFF, tk, n * 4);
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, (n + OFF) * 4, &b));
    assert_vkt_ok(vkt_buffer_upload(b, 0, raw, (n + OFF) * 4));
    free(raw);
    return b;
}

typedef struct emb {
    tensor out, wte, wpe, dwte, dwpe, dout;
    vkt_buffer *tokens;
    int32_t *tk;
    uint32_t b, t, c, v;
} emb;

/* Random tensors; tokens mostly from a small range (so rows repeat), with
 * one out-of-range and one negative token when there are enough. */
static void emb_new(vkt_device *dev, vkt_dtype dt, uint32_t b, uint32_t t, uint32_t c,
                    uint32_t v, emb *e)
{
    size_t bt = (size_t)b * t;
    *e = (emb){.b = b, .t = t, .c = c, .v = v};
    e->out = tensor_new(dev, dt, bt * c), e->dout = tensor_new(dev, dt, bt * c);
    e->wte = tensor_new(dev, dt, (size_t)v * c), e->dwte = tensor_new(dev, dt, (size_t)v * c);
    e->wpe = tensor_new(dev, dt, (size_t)t * c), e->dwpe = tensor_new(dev, dt, (size_t)t * c);
    uint32_t seed = b * 1000 + t * 100 + c + v;
    tensor_random(&e->wte, seed, 1.0f), tensor_random(&e->wpe, seed + 1, 1.0f);
    tensor_random(&e->dwte, seed + 2, 1.0f), tensor_random(&e->dwpe, seed + 3, 1.0f);
    tensor_random(&e->dout, seed + 4, 1.0f);
    e->tk = malloc(bt * 4);
    uint32_t h = seed;
    for (size_t i = 0; i < bt; i++) {
        h = h * 1664525u + 1013904223u;
        e->tk[i] = (int32_t)((h >> 8) % (v < 5 ? v : v / 2 + 1));
    }
    if (bt > 4) e->tk[1] = (int32_t)v, e->tk[3] = -7;
    e->tokens = tokens_new(dev, e->tk, bt);
}

static void emb_free(emb *e)
{
    tensor *all[] = {&e->out, &e->wte, &e->wpe, &e->dwte, &e->dwpe, &e->dout};
    for (int i = 0; i < 6; i++) tensor_free(all[i]);
    vkt_buffer_destroy(e->tokens);
    free(e->tk);
}

static void record_emb(vkt_ops *ops, vkt_stream *s, emb *e, vkt_dtype dt, bool fwd, bool bwd)
{
    vkt_embed_args a = {ref_of(&e->out),  {e->tokens, OFF * 4}, ref_of(&e->wte),
                        ref_of(&e->wpe),  ref_of(&e->dwte),     ref_of(&e->dwpe),
                        ref_of(&e->dout), dt, e->b, e->t, e->c, e->v};
    assert_vkt_ok(vkt_stream_begin(s));
    if (fwd) assert_vkt_ok(vkt_op_embed_fwd(ops, s, &a));
    if (bwd) assert_vkt_ok(vkt_op_embed_bwd(ops, s, &a));
    assert_vkt_ok(vkt_stream_end(s));
}

/* out, and dwte/dwpe including their initial values, in double. */
static void ref_embed(const emb *e, double *out, double *dwte, double *dwpe)
{
    uint32_t c = e->c;
    for (size_t i = 0; i < e->dwte.n; i++) dwte[i] = e->dwte.h[i];
    for (size_t i = 0; i < e->dwpe.n; i++) dwpe[i] = e->dwpe.h[i];
    for (size_t i = 0; i < (size_t)e->b * e->t; i++) {
        int32_t tok = e->tk[i];
        bool ok = tok >= 0 && (uint32_t)tok < e->v;
        size_t pos = i % e->t;
        for (uint32_t j = 0; j < c; j++) {
            out[i * c + j] = e->wpe.h[pos * c + j] + (ok ? e->wte.h[(size_t)tok * c + j] : 0.0);
            if (ok) dwte[(size_t)tok * c + j] += e->dout.h[i * c + j];
            dwpe[pos * c + j] += e->dout.h[i * c + j];
        }
    }
}

static void run_case(vkt_device *dev, vkt_kernel_family fam, vkt_dtype dt, uint32_t b, uint32_t t,
                     uint32_t c, uint32_t v)
{
    vkt_ops *ops;
    assert_vkt_ok(vkt__ops_create(dev, fam, &ops));
    emb e;
    emb_new(dev, dt, b, t, c, v, &e);
    double *out = malloc(e.out.n * 8), *dwte = malloc(e.dwte.n * 8), *dwpe = malloc(e.dwpe.n * 8);
    ref_embed(&e, out, dwte, dwpe);
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    record_emb(ops, s, &e, dt, true, true);
    assert_vkt_ok(vkt_stream_run(s));
    /* dwte/dwpe sum up to B*T random terms that may cancel: their error is
     * divided by max(|ref|, sqrt(B*T)), the size of such a sum. */
    double floor = sqrt((double)b * t), e_out = max_err(&e.out, out);
    double e_wte = max_err_floor(&e.dwte, dwte, floor), e_wpe = max_err_floor(&e.dwpe, dwpe, floor);
    print_message("embed %-4s %s b=%-2u t=%-3u c=%-3u v=%-4u max err: out %.1e dwte %.1e "
                  "dwpe %.1e\n", vkt_dtype_name(dt), vkt__kernel_family_str(fam), b, t, c, v,
                  e_out, e_wte, e_wpe);
    double tol = dt == VKT_DTYPE_F32 ? 2e-5 : dt == VKT_DTYPE_F16 ? 1e-3 : 8e-3;
    assert_true(e_out <= tol && e_wte <= tol && e_wpe <= tol);
    vkt_stream_destroy(s);
    emb_free(&e);
    free(out), free(dwte), free(dwpe);
    vkt__ops_destroy(ops);
}

static void test_embed_vs_reference(void **state)
{
    vkt_device *dev = *state;
    static const uint32_t shapes[][4] = {
        {1, 1, 1, 1}, {2, 3, 5, 7}, {3, 17, 33, 97}, {4, 64, 48, 500}, {1, 13, 257, 11}};
    static const vkt_dtype types[] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++)
        for (int t = 0; t < 3; t++)
            for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
                run_case(dev, (vkt_kernel_family)fam, types[t], shapes[i][0], shapes[i][1],
                         shapes[i][2], shapes[i][3]);
    /* B*T near the most a CPU device takes (llvmpipe's loop budget): a
     * dwte lane loops B*T/8 + (its matches, here ~B*T/3) times */
    run_case(dev, VKT_KERNELS_CPU, VKT_DTYPE_F32, 58001, 1, 2, 3);
    run_case(dev, VKT_KERNELS_GPU, VKT_DTYPE_BF16, 58001, 1, 2, 3);
}

/* L = sum_k wl[k] * out[k] on the device's forward output, in double. */
static double loss_of(vkt_stream *s, const emb *e, const float *wl)
{
    assert_vkt_ok(vkt_stream_run(s));
    float *out = malloc(e->out.n * sizeof(float));
    tensor_read(&e->out, out);
    double l = 0;
    for (size_t k = 0; k < e->out.n; k++) l += (double)wl[k] * out[k];
    free(out);
    return l;
}

static double fd_max_err(vkt_stream *s, const emb *e, tensor *x, const float *analytic)
{
    const float eps = 1e-2f;
    double m = 0;
    for (size_t i = 0; i < x->n; i++) {
        float x0 = x->h[i];
        x->h[i] = x0 + eps, tensor_upload(x);
        double lp = loss_of(s, e, e->dout.h);
        x->h[i] = x0 - eps, tensor_upload(x);
        double lm = loss_of(s, e, e->dout.h);
        x->h[i] = x0, tensor_upload(x);
        m = fmax(m, fabs((lp - lm) / (2.0 * eps) - analytic[i]));
    }
    return m;
}

/* f32, both families: dwte and dwpe (from zero) against central differences
 * of L = sum(dout * out). L is linear in wte and wpe, so the differences
 * are exact up to fp32 rounding of out (~1e-7 * |L| / eps ~ 1e-4 here):
 * tolerance 1e-3. */
static void test_embed_gradcheck(void **state)
{
    vkt_device *dev = *state;
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++) {
        vkt_ops *ops;
        assert_vkt_ok(vkt__ops_create(dev, (vkt_kernel_family)fam, &ops));
        emb e;
        emb_new(dev, VKT_DTYPE_F32, 2, 3, 4, 5, &e);
        memset(e.dwte.h, 0, e.dwte.n * 4), memset(e.dwpe.h, 0, e.dwpe.n * 4);
        tensor_upload(&e.dwte), tensor_upload(&e.dwpe);
        vkt_stream *s;
        assert_vkt_ok(vkt_stream_create(dev, &s));
        record_emb(ops, s, &e, VKT_DTYPE_F32, false, true);
        assert_vkt_ok(vkt_stream_run(s));
        float gte[20], gpe[12];
        tensor_read(&e.dwte, gte), tensor_read(&e.dwpe, gpe);
        record_emb(ops, s, &e, VKT_DTYPE_F32, true, false);
        double m_te = fd_max_err(s, &e, &e.wte, gte), m_pe = fd_max_err(s, &e, &e.wpe, gpe);
        print_message("embed gradcheck %s: max abs err dwte %.1e dwpe %.1e\n",
                      vkt__kernel_family_str((vkt_kernel_family)fam), m_te, m_pe);
        assert_true(m_te < 1e-3 && m_pe < 1e-3);
        vkt_stream_destroy(s);
        emb_free(&e);
        vkt__ops_destroy(ops);
    }
}

/* The same backward twice from the same state gives bit-identical dwte and
 * dwpe (fixed summation order, no atomics). */
static void test_embed_deterministic(void **state)
{
    vkt_device *dev = *state;
    for (int fam = VKT_KERNELS_CPU; fam <= VKT_KERNELS_GPU; fam++) {
        vkt_ops *ops;
        assert_vkt_ok(vkt__ops_create(dev, (vkt_kernel_family)fam, &ops));
        emb e;
        emb_new(dev, VKT_DTYPE_F32, 8, 31, 19, 13, &e);
        vkt_stream *s;
        assert_vkt_ok(vkt_stream_create(dev, &s));
        record_emb(ops, s, &e, VKT_DTYPE_F32, false, true);
        float *got[2][2];
        for (int k = 0; k < 2; k++) {
            tensor_upload(&e.dwte), tensor_upload(&e.dwpe);
            assert_vkt_ok(vkt_stream_run(s));
            got[k][0] = malloc(e.dwte.n * 4), got[k][1] = malloc(e.dwpe.n * 4);
            tensor_read(&e.dwte, got[k][0]), tensor_read(&e.dwpe, got[k][1]);
        }
        assert_memory_equal(got[0][0], got[1][0], e.dwte.n * 4);
        assert_memory_equal(got[0][1], got[1][1], e.dwpe.n * 4);
        for (int k = 0; k < 2; k++) free(got[k][0]), free(got[k][1]);
        vkt_stream_destroy(s);
        emb_free(&e);
        vkt__ops_destroy(ops);
    }
}

static void test_embed_argument_errors(void **state)
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
    vkt_embed_args a = {v, v, v, v, v, v, v, VKT_DTYPE_F64, 2, 4, 8, 16};
    assert_int_equal(vkt_op_embed_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "not a training dtype"));
    a.t = VKT_DTYPE_F32, a.vocab = 0;
    assert_int_equal(vkt_op_embed_bwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "at least 1"));
    a.vocab = 1000; /* 32000 bytes of wte in a 4096-byte buffer */
    assert_int_equal(vkt_op_embed_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "embed_fwd: wte"));
    assert_int_equal(vkt_op_embed_bwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "embed_bwd: dwte"));
    if (vkt_device_get_caps(dev)->type == VKT_DEVICE_CPU) {
        a.b = 70000, a.t_len = 1; /* beyond llvmpipe's loop budget for the dwte scan */
        assert_int_equal(vkt_op_embed_bwd(ops, s, &a), VKT_ERR_INVALID_ARG);
        assert_non_null(strstr(vkt_last_error(), "split the batch"));
        a.b = 2, a.t_len = 4;
    }
    a.vocab = 16, a.tokens.offset = 2; /* not a multiple of 4 */
    assert_int_equal(vkt_op_embed_fwd(ops, s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "embed_fwd: tokens"));
    assert_vkt_ok(vkt_stream_end(s));
    vkt_stream_destroy(s);
    vkt_buffer_destroy(b);
    vkt__ops_destroy(ops);
}



int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_vs_reference),
        cmocka_unit_test(test_embed_gradcheck),
        cmocka_unit_test(test_embed_deterministic),
        cmocka_unit_test(test_embed_argument_errors),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
