/* Mixed precision on the real device: fp32 master weights with an f16 or
 * bf16 compute copy.
 * - bf16 training of an MLP on a synthetic task ends within 2% of the fp32
 *   run's loss after the same number of steps (from the same weights and
 *   data); f16 with loss scaling too;
 * - f16 training with the dynamic loss scaler (DeepSpeed's rules) survives
 *   an injected overflow: the gradient check sees exactly that step's
 *   overflow, the scale halves, and training goes on to a lower loss (the
 *   engine's own skip across ranks is tested in test_engine_ckpt). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_gpu.h"

#define IN 16
#define OUT 4
#define ROWS 32
#define STEPS 120

static const uint32_t sizes[] = {IN, 64, 64, OUT};

static vkt_model *mlp(vkt_device *dev, vkt_dtype t)
{
    vkt_mlp_opts o = VKT_MLP_OPTS_INIT;
    o.layers = 3;
    o.sizes = sizes;
    o.activation = VKT_ACTIVATION_GELU;
    o.dtype = t;
    o.seed = 11;
    vkt_model *m = NULL;
    assert_vkt_ok(vkt_model_create_mlp(dev, &o, &m));
    return m;
}

/* Batch t of a synthetic task: the label is the largest of four fixed
 * linear functions of x. */
static void batch(uint32_t t, float *x, int32_t *y)
{
    tgpu_fill_random(x, ROWS * IN, 1000 + t);
    for (int r = 0; r < ROWS; r++) {
        float best = -1e30f;
        for (int k = 0; k < OUT; k++) {
            float s = 0;
            for (int j = 0; j < IN; j++) s += x[r * IN + j] * sinf((float)(k * IN + j));
            if (s > best) {
                best = s;
                y[r] = k;
            }
        }
    }
}

static vkt_optim_opts adam(void)
{
    vkt_optim_opts o = VKT_OPTIM_OPTS_INIT;
    o.type = VKT_OPTIM_ADAMW;
    o.weight_decay = 0.01f;
    return o;
}

/* Train STEPS steps from weights p0; the mean loss of the last 10 steps.
 * With a scaler: loss scaling, overflow check and skip, as the engine does. */
static double train(vkt_device *dev, vkt_dtype t, const float *p0, vkt_loss_scaler *sc)
{
    vkt_model *m = mlp(dev, t);
    assert_vkt_ok(vkt_model_set_params(m, p0));
    vkt_optim_opts o = adam();
    float x[ROWS * IN], loss;
    int32_t y[ROWS];
    double tail = 0;
    for (uint32_t s = 0; s < STEPS; s++) {
        batch(s, x, y);
        vkt_batch b = {.size = ROWS, .inputs = x, .labels = y};
        assert_vkt_ok(vkt_model_zero_grad(m));
        if (sc) assert_vkt_ok(vkt_model_set_loss_scale(m, (float)sc->scale));
        assert_vkt_ok(vkt_model_forward(m, &b, &loss));
        assert_vkt_ok(vkt_model_backward(m));
        float gs = 1.0f;
        if (sc) {
            double ss;
            assert_vkt_ok(vkt_model_grad_sumsq(m, &ss));
            gs = (float)(1.0 / sc->scale);
            assert_vkt_ok(vkt_loss_scaler_update(sc, !isfinite(ss)));
            if (!isfinite(ss)) continue;
        }
        assert_vkt_ok(vkt_model_step_scaled(m, &o, 3e-3f, gs));
        if (s >= STEPS - 10) tail += loss / 10.0;
    }
    vkt_model_destroy(m);
    return tail;
}

static void test_bf16_and_f16_track_f32(void **state)
{
    vkt_device *dev = *state;
    vkt_model *m = mlp(dev, VKT_DTYPE_F32);
    size_t n = vkt_model_num_params(m);
    float *p0 = malloc(n * 4);
    assert_vkt_ok(vkt_model_get_params(m, p0));
    vkt_model_destroy(m);
    double f32 = train(dev, VKT_DTYPE_F32, p0, NULL);
    double bf16 = train(dev, VKT_DTYPE_BF16, p0, NULL);
    vkt_loss_scaler sc;
    vkt_loss_scaler_opts so = VKT_LOSS_SCALER_OPTS_INIT;
    so.initial_scale_power = 12;
    assert_vkt_ok(vkt_loss_scaler_init(&sc, &so));
    double f16 = train(dev, VKT_DTYPE_F16, p0, &sc);
    print_message("mean loss of the last 10 of %d steps: f32 %.5f, bf16 %.5f (%+.2f%%), "
                  "f16 %.5f (%+.2f%%)\n", STEPS, f32, bf16, 100 * (bf16 - f32) / f32, f16,
                  100 * (f16 - f32) / f32);
    assert_true(f32 < 0.5); /* it learned something */
    assert_true(fabs(bf16 - f32) <= 0.02 * f32);
    assert_true(fabs(f16 - f32) <= 0.02 * f32);
    free(p0);
}

static void test_f16_overflow_is_skipped(void **state)
{
    vkt_device *dev = *state;
    vkt_model *m = mlp(dev, VKT_DTYPE_F16);
    vkt_loss_scaler sc;
    vkt_loss_scaler_opts so = VKT_LOSS_SCALER_OPTS_INIT;
    so.initial_scale_power = 10;
    so.hysteresis = 1; /* shrink at the first overflow */
    assert_vkt_ok(vkt_loss_scaler_init(&sc, &so));
    vkt_optim_opts o = adam();
    float x[ROWS * IN], loss, first = 0, last = 0;
    int32_t y[ROWS];
    for (uint32_t s = 0; s < 60; s++) {
        batch(s, x, y);
        if (s == 20) x[3] = 1e30f; /* Inf once rounded to f16 */
        vkt_batch b = {.size = ROWS, .inputs = x, .labels = y};
        double scale = sc.scale;
        assert_vkt_ok(vkt_model_zero_grad(m));
        assert_vkt_ok(vkt_model_set_loss_scale(m, (float)scale));
        assert_vkt_ok(vkt_model_forward(m, &b, &loss));
        assert_vkt_ok(vkt_model_backward(m));
        double ss;
        assert_vkt_ok(vkt_model_grad_sumsq(m, &ss));
        bool overflow = !isfinite(ss);
        assert_int_equal(overflow, s == 20);
        assert_vkt_ok(vkt_loss_scaler_update(&sc, overflow));
        if (overflow) {
            assert_true(sc.scale == scale / 2);
            assert_int_equal(sc.skipped, 1);
            continue; /* skip the optimizer step */
        }
        assert_vkt_ok(vkt_model_step_scaled(m, &o, 3e-3f, (float)(1.0 / scale)));
        if (s == 0) first = loss;
        last = loss;
    }
    print_message("f16 with an overflow at step 20: loss %.4f -> %.4f, scale %g\n", first,
                  last, sc.scale);
    assert_true(isfinite(last) && last < 0.7f * first);
    vkt_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_and_f16_track_f32),
        cmocka_unit_test(test_f16_overflow_is_skipped),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
