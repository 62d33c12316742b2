/* Finite-difference gradient checks, f32, both kernel families, of every
 * differentiable op of elementwise.h: ReLU, GELU, bias add (input and
 * bias), residual add, accumulate (through a cast copy), dropout and MSE.
 *
 * The scalar is L = Σ_k w_k · out_k with random w, evaluated by running the
 * forward kernel on the device; its central difference in each input
 * coordinate, (L(x+h) - L(x-h)) / 2h with h ≈ 1e-2, is compared to the
 * analytic backward kernel (dout = w, gradients accumulated from zero).
 * Tolerance 1e-3 · max(1, |grad|): outputs the perturbation does not touch
 * are bit-identical in both evaluations and cancel, so the error is the
 * fp32 rounding of the touched outputs over 2h (~1e-5) plus the truncation
 * h²/6 · |f'''| (< 2e-5 for GELU; 0 for the other, piecewise linear or
 * quadratic, ops). A wrong derivative is off by O(0.1). Inputs are kept at
 * least 0.05 from 0 so ReLU's kink is never inside [x-h, x+h]. */
#include <stdio.h>

#include "elementwise_util.h"

#define FD_H 1e-2f
#define T VKT_DTYPE_F32

typedef struct fd_op {
    const char *name;
    int nin, ngrad; /* inputs; the first ngrad get gradients */
    size_t in_n[2], out_n;
    /* Σ_k w_k · out_k of the device forward */
    double (*loss)(ew_ctx *c, vkt_ops *ops, ew_tensor *in, const float *w);
    /* g[i] += dL/d in[i] by the device backward, dout = w */
    void (*grad)(ew_ctx *c, vkt_ops *ops, ew_tensor *in, ew_tensor *w, ew_tensor *g);
} fd_op;

/* Σ w · out over the downloaded out, then free it. */
static double weigh(ew_tensor *out, const float *w)
{
    float *o = calloc(out->n, 4);
    ew_download(out, o);
    double l = 0;
    for (size_t i = 0; i < out->n; i++) l += (double)w[i] * o[i];
    free(o);
    ew_free(out);
    return l;
}

/* ---- the ops, as (loss, grad) pairs ---------------------------------------- */

#define ACT_PAIR(NAME, ACT)                                                                  \
    static double NAME##_loss(ew_ctx *c, vkt_ops *ops, ew_tensor *in, const float *w)        \
    {                                                                                        \
        ew_tensor out = ew_new(c->dev, T, in[0].n, 3, 0.0f);                                 \
        ew_begin(c);                                                                         \
        assert_vkt_ok(vkt_op_act_fwd(ops, c->s, ACT, ew_ref(&out), ew_ref(&in[0]), T,        \
                                     in[0].n));                                              \
        ew_finish(c);                                                                        \
        return weigh(&out, w);                                                               \
    }                                                                                        \
    static void NAME##_grad(ew_ctx *c, vkt_ops *ops, ew_tensor *in, ew_tensor *w,            \
                            ew_tensor *g)                                                    \
    {                                                                                        \
        ew_begin(c);                                                                         \
        assert_vkt_ok(vkt_op_act_bwd(ops, c->s, ACT, ew_ref(&g[0]), ew_ref(&in[0]),          \
                                     ew_ref(w), T, in[0].n));                                \
        ew_finish(c);                                                                        \
    }
ACT_PAIR(relu, VKT_ACT_RELU)
ACT_PAIR(gelu, VKT_ACT_GELU)

/* bias: in[0] = x [3,5], in[1] = bias [5] */
static double bias_loss(ew_ctx *c, vkt_ops *ops, ew_tensor *in, const float *w)
{
    ew_tensor out = ew_new(c->dev, T, in[0].n, 3, 0.0f);
    ew_begin(c);
    assert_vkt_ok(vkt_op_bias_fwd(ops, c->s, ew_ref(&out), ew_ref(&in[0]), ew_ref(&in[1]), T,
                                  (uint32_t)(in[0].n / in[1].n), (uint32_t)in[1].n));
    ew_finish(c);
    return weigh(&out, w);
}

static void bias_grad(ew_ctx *c, vkt_ops *ops, ew_tensor *in, ew_tensor *w, ew_tensor *g)
{
    ew_begin(c);
    /* dinput is dout itself (the header's contract): g0 += w */
    assert_vkt_ok(vkt_op_accumulate(ops, c->s, ew_ref(&g[0]), ew_ref(w), 1.0f, T, in[0].n));
    assert_vkt_ok(vkt_op_bias_bwd(ops, c->s, ew_ref(&g[1]), ew_ref(w), T,
                                  (uint32_t)(in[0].n / in[1].n), (uint32_t)in[1].n));
    ew_finish(c);
}

static double add_loss(ew_ctx *c, vkt_ops *ops, ew_tensor *in, const float *w)
{
    ew_tensor out = ew_new(c->dev, T, in[0].n, 3, 0.0f);
    ew_begin(c);
    assert_vkt_ok(vkt_op_add_fwd(ops, c->s, ew_ref(&out), ew_ref(&in[0]), ew_ref(&in[1]), T,
                                 in[0].n));
    ew_finish(c);
    return weigh(&out, w);
}

/* Residual backward: da += dout, db += dout (two accumulates). */
static void add_grad(ew_ctx *c, vkt_ops *ops, ew_tensor *in, ew_tensor *w, ew_tensor *g)
{
    ew_begin(c);
    for (int i = 0; i < 2; i++)
        assert_vkt_ok(vkt_op_accumulate(ops, c->s, ew_ref(&g[i]), ew_ref(w), 1.0f, T, in[0].n));
    ew_finish(c);
}

#define ACC_ALPHA 0.625f

/* out = copy(dst); out += alpha · src */
static double acc_loss(ew_ctx *c, vkt_ops *ops, ew_tensor *in, const float *w)
{
    ew_tensor out = ew_new(c->dev, T, in[0].n, 3, 0.0f);
    ew_begin(c);
    assert_vkt_ok(vkt_op_cast(ops, c->s, ew_ref(&out), T, ew_ref(&in[0]), T, in[0].n));
    assert_vkt_ok(vkt_stream_barrier(c->s));
    assert_vkt_ok(vkt_op_accumulate(ops, c->s, ew_ref(&out), ew_ref(&in[1]), ACC_ALPHA, T,
                                    in[0].n));
    ew_finish(c);
    return weigh(&out, w);
}

static void acc_grad(ew_ctx *c, vkt_ops *ops, ew_tensor *in, ew_tensor *w, ew_tensor *g)
{
    ew_begin(c);
    assert_vkt_ok(vkt_op_accumulate(ops, c->s, ew_ref(&g[0]), ew_ref(w), 1.0f, T, in[0].n));
    assert_vkt_ok(vkt_op_accumulate(ops, c->s, ew_ref(&g[1]), ew_ref(w), ACC_ALPHA, T, in[0].n));
    ew_finish(c);
}

/* The dropout state (sites 0..1) for p 0.25, step 9, first sample 40. */
static vkt_buffer *drop_state(ew_ctx *c)
{
    uint32_t w[VKT_DROPOUT_STATE_WORDS(2)];
    assert_vkt_ok(vkt_dropout_state_fill(w, 2, 0x1234567890abcdefull, 9, 40, 0.25f));
    vkt_buffer *b = NULL;
    assert_vkt_ok(vkt_buffer_create(c->dev, VKT_MEMORY_HOST, sizeof w, &b));
    assert_vkt_ok(vkt_buffer_upload(b, 0, w, sizeof w));
    return b;
}

static vkt_dropout_args drop_args(vkt_tref out, vkt_tref in, size_t n, vkt_buffer *st)
{
    return (vkt_dropout_args){.out = out, .in = in, .t = T, .n = (uint32_t)(n / 7), .c = 7,
                              .state = {st, 0}, .site = 1};
}

static double drop_loss(ew_ctx *c, vkt_ops *ops, ew_tensor *in, const float *w)
{
    ew_tensor out = ew_new(c->dev, T, in[0].n, 3, 0.0f);
    vkt_buffer *st = drop_state(c);
    vkt_dropout_args a = drop_args(ew_ref(&out), ew_ref(&in[0]), in[0].n, st);
    ew_begin(c);
    assert_vkt_ok(vkt_op_dropout_fwd(ops, c->s, &a));
    ew_finish(c);
    vkt_buffer_destroy(st);
    return weigh(&out, w);
}

static void drop_grad(ew_ctx *c, vkt_ops *ops, ew_tensor *in, ew_tensor *w, ew_tensor *g)
{
    vkt_buffer *st = drop_state(c);
    vkt_dropout_args a = drop_args(ew_ref(&g[0]), ew_ref(w), in[0].n, st);
    ew_begin(c);
    assert_vkt_ok(vkt_op_dropout_bwd(ops, c->s, &a));
    ew_finish(c);
    vkt_buffer_destroy(st);
}

/* MSE: L = w0 · loss (w0 plays the loss scale: grad_scale = w0). */
static double mse_loss(ew_ctx *c, vkt_ops *ops, ew_tensor *in, const float *w)
{
    size_t n = in[0].n;
    uint32_t np = vkt_op_mse_partials(ops, n);
    ew_tensor part = ew_new(c->dev, T, np, 3, 0.0f);
    ew_begin(c);
    assert_vkt_ok(vkt_op_mse_fwd(ops, c->s, ew_ref(&part), ew_ref(&in[0]), ew_ref(&in[1]), T, n,
                                 1.0f / (float)n));
    ew_finish(c);
    float *ones = malloc(np * sizeof(float));
    for (uint32_t i = 0; i < np; i++) ones[i] = w[0];
    double l = weigh(&part, ones);
    free(ones);
    return l;
}

static void mse_grad(ew_ctx *c, vkt_ops *ops, ew_tensor *in, ew_tensor *w, ew_tensor *g)
{
    size_t n = in[0].n;
    ew_begin(c);
    assert_vkt_ok(vkt_op_mse_bwd(ops, c->s, ew_ref(&g[0]), ew_ref(&in[0]), ew_ref(&in[1]), T, n,
                                 1.0f / (float)n, w->h[0]));
    ew_finish(c);
}

static const fd_op fd_ops[] = {
    {"relu", 1, 1, {11, 0}, 11, relu_loss, relu_grad},
    {"gelu", 1, 1, {11, 0}, 11, gelu_loss, gelu_grad},
    {"bias", 2, 2, {15, 5}, 15, bias_loss, bias_grad},
    {"add", 2, 2, {9, 9}, 9, add_loss, add_grad},
    {"accumulate", 2, 2, {9, 9}, 9, acc_loss, acc_grad},
    {"dropout", 1, 1, {21, 0}, 21, drop_loss, drop_grad},
    {"mse", 2, 1, {13, 13}, 1, mse_loss, mse_grad},
};

/* ---- the check -------------------------------------------------------------- */

static double fd_check(ew_ctx *c, int fam, const fd_op *op)
{
    vkt_ops *ops = c->ops[fam];
    ew_tensor in[2], g[2];
    for (int i = 0; i < op->nin; i++) {
        in[i] = ew_new(c->dev, T, op->in_n[i], 101 + 7 * (uint32_t)i, 2.0f);
        for (size_t j = 0; j < in[i].n; j++)
            if (fabsf(in[i].h[j]) < 0.05f) in[i].h[j] = in[i].h[j] < 0 ? -0.05f : 0.05f;
        ew_upload(&in[i]);
    }
    for (int i = 0; i < op->ngrad; i++) g[i] = ew_new(c->dev, T, op->in_n[i], 1, 0.0f);
    ew_tensor w = ew_new(c->dev, T, op->out_n, 211, 1.0f);
    if (op->out_n == 1) w.h[0] = 3.0f, ew_upload(&w);
    op->grad(c, ops, in, &w, g);
    double worst = 0;
    for (int i = 0; i < op->ngrad; i++) {
        float *ana = calloc(in[i].n, 4);
        ew_download(&g[i], ana);
        for (size_t j = 0; j < in[i].n; j++) {
            float x0 = in[i].h[j], xp = x0 + FD_H, xm = x0 - FD_H;
            in[i].h[j] = xp, ew_upload(&in[i]);
            double lp = op->loss(c, ops, in, w.h);
            in[i].h[j] = xm, ew_upload(&in[i]);
            double lm = op->loss(c, ops, in, w.h);
            in[i].h[j] = x0, ew_upload(&in[i]);
            double num = (lp - lm) / ((double)xp - xm);
            double d = fabs(num - ana[j]) / fmax(1.0, fabs(ana[j]));
            if (!(d <= 1e-3))
                fail_msg("fd %s %s input %d [%zu]: numeric %.6g, backward %.6g", op->name,
                         vkt__kernel_family_str((vkt_kernel_family)fam), i, j, num,
                         (double)ana[j]);
            worst = fmax(worst, d);
        }
        free(ana);
    }
    for (int i = 0; i < op->nin; i++) ew_free(&in[i]);
    for (int i = 0; i < op->ngrad; i++) ew_free(&g[i]);
    ew_free(&w);
    return worst;
}

static void test_finite_differences(void **state)
{
    for (int f = 0; f < 2; f++)
        for (size_t k = 0; k < sizeof fd_ops / sizeof fd_ops[0]; k++) {
            double d = fd_check(*state, f, &fd_ops[k]);
            print_message("fd %-10s f32 %s: max |numeric - backward| / max(1,|g|) %.2e\n",
                          fd_ops[k].name, vkt__kernel_family_str((vkt_kernel_family)f), d);
        }
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
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
