/* Elementwise ops of src/ops/elementwise.c — bias add, ReLU/GELU, residual
 * add, accumulate, casts, zeroing, MSE loss — forward and backward for
 * f32/f16/bf16 and both kernel families against a double-precision C
 * reference, on sizes with 1-sized, odd and prime dims, every view at an odd
 * element offset with guard elements checked after it. Tolerances: ew_tol
 * in elementwise_util.h (f32 1e-5, f16 1e-3, bf16 8e-3 on
 * |got - ref| / max(|ref|, 1)). Finite-difference gradient checks are in
 * test_elementwise_fd.c; dropout in test_dropout.c. */
#include <stdio.h>

#include "elementwise_util.h"

static const char *fam_name(int f) { return vkt__kernel_family_str((vkt_kernel_family)f); }

/* ---- bias ---------------------------------------------------------------- */

static const uint32_t bias_shapes[][2] = {{1, 1}, {7, 13}, {31, 1}, {1, 97}, {64, 129}, {5, 300}};

static void bias_case(ew_ctx *c, int fam, vkt_dtype t, uint32_t n, uint32_t ch, bool inplace)
{
    size_t cnt = (size_t)n * ch;
    ew_tensor in = ew_new(c->dev, t, cnt, 11 + n, 2.0f), b = ew_new(c->dev, t, ch, 13 + ch, 1.0f);
    ew_tensor out = inplace ? in : ew_new(c->dev, t, cnt, 17, 1.0f);
    ew_tensor db = ew_new(c->dev, t, ch, 19 + ch, 1.0f);
    double *ref = calloc(cnt, 8), *dref = calloc(ch, 8);
    float *got = calloc(cnt, 4), *dgot = calloc(ch, 4);
    for (size_t i = 0; i < cnt; i++) ref[i] = (double)in.h[i] + b.h[i % ch];
    for (size_t j = 0; j < ch; j++) dref[j] = db.h[j];
    for (size_t i = 0; i < cnt; i++) dref[i % ch] += in.h[i]; /* dout := in */
    ew_begin(c);
    /* backward first: it reads `in` as dout before an in-place forward */
    assert_vkt_ok(vkt_op_bias_bwd(c->ops[fam], c->s, ew_ref(&db), ew_ref(&in), t, n, ch));
    assert_vkt_ok(vkt_stream_barrier(c->s));
    assert_vkt_ok(vkt_op_bias_fwd(c->ops[fam], c->s, ew_ref(&out), ew_ref(&in), ew_ref(&b), t,
                                  n, ch));
    ew_finish(c);
    ew_download(&out, got);
    ew_download(&db, dgot);
    char what[96];
    snprintf(what, sizeof what, "bias_fwd %s %s %ux%u", vkt_dtype_name(t), fam_name(fam), n, ch);
    double e1 = ew_check(what, got, ref, cnt, ew_tol(t));
    /* the column sum is fp32 over n terms of |x| < 2: its error bound grows
     * like n·eps·Σ|x| / max(|ref|, 1), so allow n·1e-6 on top */
    snprintf(what, sizeof what, "bias_bwd %s %s %ux%u", vkt_dtype_name(t), fam_name(fam), n, ch);
    double e2 = ew_check(what, dgot, dref, ch, ew_tol(t) + n * 1e-6);
    print_message("bias %-4s %s %3ux%-3u%s: max diff fwd %.2e bwd %.2e\n", vkt_dtype_name(t),
                  fam_name(fam), n, ch, inplace ? " in place" : "", e1, e2);
    if (!inplace) ew_free(&out);
    ew_free(&in), ew_free(&b), ew_free(&db);
    free(ref), free(dref), free(got), free(dgot);
}

static void test_bias(void **state)
{
    ew_ctx *c = *state;
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 3; t++)
            for (size_t k = 0; k < sizeof bias_shapes / sizeof bias_shapes[0]; k++)
                bias_case(c, f, ew_types[t], bias_shapes[k][0], bias_shapes[k][1], k == 2);
    /* more columns than one bias_bwd dispatch covers (CPU: 65535 × 8) */
    bias_case(c, VKT_KERNELS_CPU, VKT_DTYPE_F32, 2, 600001, false);
    /* more elements than one GPU-family dispatch (65535 × 256): the second
     * dispatch starts mid-row */
    bias_case(c, VKT_KERNELS_GPU, VKT_DTYPE_F16, 16411, 1023, false);
}

/* The column sums run in a fixed order: two runs agree bit for bit. */
static void test_bias_bwd_deterministic(void **state)
{
    ew_ctx *c = *state;
    const uint32_t n = 1000, ch = 41;
    for (int f = 0; f < 2; f++) {
        ew_tensor dout = ew_new(c->dev, VKT_DTYPE_F32, (size_t)n * ch, 5, 1.0f);
        float got[2][41];
        for (int run = 0; run < 2; run++) {
            ew_tensor db = ew_new(c->dev, VKT_DTYPE_F32, ch, 3, 0.0f);
            ew_begin(c);
            assert_vkt_ok(vkt_op_bias_bwd(c->ops[f], c->s, ew_ref(&db), ew_ref(&dout),
                                          VKT_DTYPE_F32, n, ch));
            ew_finish(c);
            ew_download(&db, got[run]);
            ew_free(&db);
        }
        assert_memory_equal(got[0], got[1], sizeof got[0]);
        ew_free(&dout);
    }
}

/* ---- activations ---------------------------------------------------------- */

static double gelu_ref(double x)
{
    const double k = sqrt(2.0 / M_PI), a = 0.044715;
    return 0.5 * x * (1.0 + tanh(k * (x + a * x * x * x)));
}

static double gelu_dref(double x)
{
    const double k = sqrt(2.0 / M_PI), a = 0.044715;
    double t = tanh(k * (x + a * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * a * x * x);
}

static void act_case(ew_ctx *c, int fam, vkt_act act, vkt_dtype t, size_t n)
{
    ew_tensor x = ew_new(c->dev, t, n, 23 + (uint32_t)n, 5.0f);
    if (n > 4) { /* saturated tails and an exact zero */
        x.h[0] = -30.0f, x.h[1] = 30.0f, x.h[2] = 0.0f, x.h[3] = -9.0f;
        ew_upload(&x);
    }
    ew_tensor out = ew_new(c->dev, t, n, 29, 1.0f), dout = ew_new(c->dev, t, n, 31, 1.0f);
    ew_tensor din = ew_new(c->dev, t, n, 37, 1.0f);
    double *ref = calloc(n, 8), *dref = calloc(n, 8);
    float *got = calloc(n, 4);
    for (size_t i = 0; i < n; i++) {
        double xi = x.h[i];
        ref[i] = act == VKT_ACT_RELU ? fmax(xi, 0.0) : gelu_ref(xi);
        double d = act == VKT_ACT_RELU ? (xi > 0 ? 1.0 : 0.0) : gelu_dref(xi);
        dref[i] = din.h[i] + d * dout.h[i];
    }
    ew_begin(c);
    assert_vkt_ok(vkt_op_act_fwd(c->ops[fam], c->s, act, ew_ref(&out), ew_ref(&x), t, n));
    assert_vkt_ok(vkt_op_act_bwd(c->ops[fam], c->s, act, ew_ref(&din), ew_ref(&x), ew_ref(&dout),
                                 t, n));
    assert_vkt_ok(vkt_stream_barrier(c->s));
    /* in place, on the input itself */
    assert_vkt_ok(vkt_op_act_fwd(c->ops[fam], c->s, act, ew_ref(&x), ew_ref(&x), t, n));
    ew_finish(c);
    const char *an = act == VKT_ACT_RELU ? "relu" : "gelu";
    char what[96];
    snprintf(what, sizeof what, "%s_fwd %s %s n=%zu", an, vkt_dtype_name(t), fam_name(fam), n);
    ew_download(&out, got);
    double e1 = ew_check(what, got, ref, n, ew_tol(t));
    ew_download(&x, got);
    ew_check(what, got, ref, n, ew_tol(t));
    snprintf(what, sizeof what, "%s_bwd %s %s n=%zu", an, vkt_dtype_name(t), fam_name(fam), n);
    ew_download(&din, got);
    double e2 = ew_check(what, got, dref, n, ew_tol(t));
    print_message("%s %-4s %s n=%-5zu: max diff fwd %.2e bwd %.2e\n", an, vkt_dtype_name(t),
                  fam_name(fam), n, e1, e2);
    ew_free(&x), ew_free(&out), ew_free(&dout), ew_free(&din);
    free(ref), free(dref), free(got);
}

static void test_activations(void **state)
{
    static const size_t sizes[] = {1, 7, 1000, 4099};
    for (int f = 0; f < 2; f++)
        for (int a = VKT_ACT_RELU; a <= VKT_ACT_GELU; a++)
            for (int t = 0; t < 3; t++)
                for (int k = 0; k < 4; k++)
                    act_case(*state, f, (vkt_act)a, ew_types[t], sizes[k]);
}

/* ---- add, accumulate ------------------------------------------------------- */

static void add_case(ew_ctx *c, int fam, vkt_dtype t, size_t n)
{
    const float alpha = -0.375f;
    ew_tensor a = ew_new(c->dev, t, n, 41 + (uint32_t)n, 3.0f), b = ew_new(c->dev, t, n, 43, 2.0f);
    ew_tensor out = ew_new(c->dev, t, n, 47, 1.0f), acc = ew_new(c->dev, t, n, 53, 1.0f);
    double *ref = calloc(n, 8), *aref = calloc(n, 8);
    float *got = calloc(n, 4);
    for (size_t i = 0; i < n; i++) {
        ref[i] = (double)a.h[i] + b.h[i];
        /* two accumulates: the first one's result is rounded to the dtype */
        aref[i] = (double)tdt_round(t, acc.h[i] + alpha * a.h[i]) + b.h[i];
    }
    ew_begin(c);
    assert_vkt_ok(vkt_op_add_fwd(c->ops[fam], c->s, ew_ref(&out), ew_ref(&a), ew_ref(&b), t, n));
    assert_vkt_ok(vkt_op_accumulate(c->ops[fam], c->s, ew_ref(&acc), ew_ref(&a), alpha, t, n));
    assert_vkt_ok(vkt_stream_barrier(c->s));
    assert_vkt_ok(vkt_op_accumulate(c->ops[fam], c->s, ew_ref(&acc), ew_ref(&b), 1.0f, t, n));
    ew_finish(c);
    char what[96];
    snprintf(what, sizeof what, "add_fwd %s %s n=%zu", vkt_dtype_name(t), fam_name(fam), n);
    ew_download(&out, got);
    double e1 = ew_check(what, got, ref, n, ew_tol(t));
    snprintf(what, sizeof what, "accumulate %s %s n=%zu", vkt_dtype_name(t), fam_name(fam), n);
    ew_download(&acc, got);
    double e2 = ew_check(what, got, aref, n, ew_tol(t));
    print_message("add %-4s %s n=%-5zu: max diff add %.2e accumulate %.2e\n", vkt_dtype_name(t),
                  fam_name(fam), n, e1, e2);
    ew_free(&a), ew_free(&b), ew_free(&out), ew_free(&acc);
    free(ref), free(aref), free(got);
}

static void test_add_accumulate(void **state)
{
    static const size_t sizes[] = {1, 7, 1000, 4099};
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 3; t++)
            for (int k = 0; k < 4; k++) add_case(*state, f, ew_types[t], sizes[k]);
}

/* ---- cast, zero -------------------------------------------------------- */

/* Casts are exact: widening is exact, and narrowing must give the host's
 * round-to-nearest-even of the same value, bit for bit. */
static void cast_case(ew_ctx *c, int fam, vkt_dtype src_t, vkt_dtype dst_t, size_t n)
{
    ew_tensor src = ew_new(c->dev, src_t, n, 59 + (uint32_t)n, 100.0f);
    ew_tensor dst = ew_new(c->dev, dst_t, n, 61, 1.0f);
    float *got = calloc(n, 4);
    ew_begin(c);
    assert_vkt_ok(vkt_op_cast(c->ops[fam], c->s, ew_ref(&dst), dst_t, ew_ref(&src), src_t, n));
    ew_finish(c);
    ew_download(&dst, got);
    for (size_t i = 0; i < n; i++)
        if (got[i] != tdt_round(dst_t, src.h[i]))
            fail_msg("cast %s->%s %s [%zu]: %.9g -> %.9g, want %.9g", vkt_dtype_name(src_t),
                     vkt_dtype_name(dst_t), fam_name(fam), i, (double)src.h[i], (double)got[i],
                     (double)tdt_round(dst_t, src.h[i]));
    ew_free(&src), ew_free(&dst);
    free(got);
}

static void test_cast_zero(void **state)
{
    ew_ctx *c = *state;
    for (int f = 0; f < 2; f++)
        for (int s = 0; s < 3; s++)
            for (int d = 0; d < 3; d++) {
                cast_case(c, f, ew_types[s], ew_types[d], 1);
                cast_case(c, f, ew_types[s], ew_types[d], 2053);
            }
    print_message("cast: all 9 dtype pairs, both families, bit-exact\n");
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 3; t++) {
            size_t n = 3001;
            ew_tensor x = ew_new(c->dev, ew_types[t], n, 67, 1.0f);
            float *got = calloc(n, 4);
            ew_begin(c);
            assert_vkt_ok(vkt_op_zero(c->ops[f], c->s, ew_ref(&x), ew_types[t], n));
            ew_finish(c);
            ew_download(&x, got); /* also checks the neighbours kept their values */
            for (size_t i = 0; i < n; i++) assert_true(got[i] == 0.0f);
            ew_free(&x);
            free(got);
        }
}

/* ---- MSE --------------------------------------------------------------- */

static double mse_run(ew_ctx *c, int fam, ew_tensor *p, ew_tensor *y, size_t n, float inv)
{
    uint32_t np = vkt_op_mse_partials(c->ops[fam], n);
    ew_tensor part = ew_new(c->dev, VKT_DTYPE_F32, np, 71, 1.0f);
    float *pp = calloc(np, 4);
    ew_begin(c);
    assert_vkt_ok(vkt_op_mse_fwd(c->ops[fam], c->s, ew_ref(&part), ew_ref(p), ew_ref(y), p->t, n,
                                 inv));
    ew_finish(c);
    ew_download(&part, pp);
    double loss = 0;
    for (uint32_t i = 0; i < np; i++) loss += pp[i];
    ew_free(&part);
    free(pp);
    return loss;
}

static void mse_case(ew_ctx *c, int fam, vkt_dtype t, size_t n)
{
    const float inv = 1.0f / (float)(2 * n), scale = 8.0f; /* as if two ranks */
    ew_tensor p = ew_new(c->dev, t, n, 73 + (uint32_t)n, 2.0f), y = ew_new(c->dev, t, n, 79, 1.0f);
    ew_tensor dp = ew_new(c->dev, t, n, 83, 1.0f);
    double want = 0, *dref = calloc(n, 8);
    float *got = calloc(n, 4);
    for (size_t i = 0; i < n; i++) {
        double d = (double)p.h[i] - y.h[i];
        want += d * d * inv;
        dref[i] = dp.h[i] + 2.0 * d * inv * scale;
    }
    double loss = mse_run(c, fam, &p, &y, n, inv);
    ew_begin(c);
    assert_vkt_ok(vkt_op_mse_bwd(c->ops[fam], c->s, ew_ref(&dp), ew_ref(&p), ew_ref(&y), t, n,
                                 inv, scale));
    ew_finish(c);
    ew_download(&dp, got);
    char what[96];
    snprintf(what, sizeof what, "mse_bwd %s %s n=%zu", vkt_dtype_name(t), fam_name(fam), n);
    double e2 = ew_check(what, got, dref, n, ew_tol(t));
    /* fp32 partial sums of ≤256 positive terms, added in double: 1e-5 */
    double e1 = fabs(loss - want) / want;
    print_message("mse %-4s %s n=%-6zu: loss %.6f rel diff %.2e, max diff bwd %.2e\n",
                  vkt_dtype_name(t), fam_name(fam), n, loss, e1, e2);
    assert_true(e1 < 1e-5);
    ew_free(&p), ew_free(&y), ew_free(&dp);
    free(dref), free(got);
}

static void test_mse(void **state)
{
    static const size_t sizes[] = {1, 7, 1000, 70001};
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 3; t++)
            for (int k = 0; k < 4; k++) mse_case(*state, f, ew_types[t], sizes[k]);
}

/* ---- argument errors and count 0 ----------------------------------------- */

static void test_argument_errors(void **state)
{
    ew_ctx *c = *state;
    vkt_ops *ops = c->ops[0];
    ew_tensor x = ew_new(c->dev, VKT_DTYPE_F32, 64, 3, 1.0f);
    vkt_tref r = ew_ref(&x);
    ew_begin(c);
    assert_int_equal(vkt_op_act_fwd(ops, c->s, VKT_ACT_RELU, r, r, VKT_DTYPE_I32, 8),
                     VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "not a training dtype"));
    assert_int_equal(vkt_op_act_fwd(ops, c->s, (vkt_act)7, r, r, VKT_DTYPE_F32, 8),
                     VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "unknown activation"));
    assert_int_equal(vkt_op_add_fwd(ops, c->s, r, r, r, VKT_DTYPE_F32, 1000), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "past the end"));
    assert_int_equal(vkt_op_bias_fwd(ops, c->s, r, r, r, VKT_DTYPE_F32, 1u << 20, 1u << 13),
                     VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "bias_fwd"));
    assert_int_equal(vkt_op_cast(ops, c->s, r, VKT_DTYPE_F32, r, VKT_DTYPE_F64, 8),
                     VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "cast (source)"));
    assert_int_equal(vkt_op_zero(ops, c->s, (vkt_tref){NULL, 0}, VKT_DTYPE_F32, 8),
                     VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_op_mse_bwd(ops, c->s, r, r, r, VKT_DTYPE_F32, 100, 1.0f, 1.0f),
                     VKT_ERR_INVALID_ARG);
    /* count 0 records nothing and succeeds */
    assert_vkt_ok(vkt_op_act_bwd(ops, c->s, VKT_ACT_GELU, r, r, r, VKT_DTYPE_F32, 0));
    assert_vkt_ok(vkt_op_bias_bwd(ops, c->s, r, r, VKT_DTYPE_F32, 0, 5));
    assert_vkt_ok(vkt_op_mse_fwd(ops, c->s, r, r, r, VKT_DTYPE_F32, 0, 1.0f));
    assert_int_equal(vkt_op_mse_partials(ops, 0), 0);
    ew_finish(c);
    ew_free(&x);
}

static int setup(void **state)
{
    *state = ew_open();
    return 0;
}

static int teardown(void **state) { return ew_close(*state); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bias),
        cmocka_unit_test(test_bias_bwd_deterministic),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_add_accumulate),
        cmocka_unit_test(test_cast_zero),
        cmocka_unit_test(test_mse),
        cmocka_unit_test(test_argument_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
