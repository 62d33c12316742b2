/* The fp16 loss scaler step by step against DeepSpeed's DynamicLossScaler
 * (deepspeed/runtime/fp16/loss_scaler.py), traced by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vktrain/scaler.h"

static void test_growth_and_hysteresis(void **state)
{
    (void)state;
    vkt_loss_scaler_opts o = VKT_LOSS_SCALER_OPTS_INIT;
    o.initial_scale_power = 4; /* 16 */
    o.loss_scale_window = 3;
    o.hysteresis = 2;
    vkt_loss_scaler s;
    assert_int_equal(vkt_loss_scaler_init(&s, &o), VKT_OK);
    assert_true(s.scale == 16);
    /* iter 0: (0 - -1) % 3 != 0; iter 1: 2 % 3; iter 2: 3 % 3 == 0 -> x2 */
    assert_int_equal(vkt_loss_scaler_update(&s, false), VKT_OK);
    assert_int_equal(vkt_loss_scaler_update(&s, false), VKT_OK);
    assert_true(s.scale == 16);
    assert_int_equal(vkt_loss_scaler_update(&s, false), VKT_OK);
    assert_true(s.scale == 32);
    /* iter 3: overflow with hysteresis 2: scale kept, hysteresis used up */
    assert_int_equal(vkt_loss_scaler_update(&s, true), VKT_OK);
    assert_true(s.scale == 32);
    assert_int_equal(s.hysteresis_left, 1);
    /* iter 4: overflow again: halve */
    assert_int_equal(vkt_loss_scaler_update(&s, true), VKT_OK);
    assert_true(s.scale == 16);
    assert_int_equal(s.skipped, 2);
    /* iters 5, 6 clean; 7: (7 - 4) % 3 == 0 -> x2 and hysteresis restored */
    for (int i = 0; i < 2; i++) assert_int_equal(vkt_loss_scaler_update(&s, false), VKT_OK);
    assert_true(s.scale == 16);
    assert_int_equal(s.hysteresis_left, 1);
    assert_int_equal(vkt_loss_scaler_update(&s, false), VKT_OK);
    assert_true(s.scale == 32);
    assert_int_equal(s.hysteresis_left, 2);
}

/* An overflow storm: the scale halves down to the minimum, then the next
 * overflow is a named error that suggests bf16 (DeepSpeed raises a bare
 * exception here). */
static void test_overflow_storm(void **state)
{
    (void)state;
    vkt_loss_scaler_opts o = VKT_LOSS_SCALER_OPTS_INIT;
    o.initial_scale_power = 3;
    o.hysteresis = 1;
    o.min_loss_scale = 2;
    vkt_loss_scaler s;
    assert_int_equal(vkt_loss_scaler_init(&s, &o), VKT_OK);
    assert_int_equal(vkt_loss_scaler_update(&s, true), VKT_OK); /* 8 -> 4 */
    assert_int_equal(vkt_loss_scaler_update(&s, true), VKT_OK); /* 4 -> 2 */
    assert_true(s.scale == 2);
    assert_int_equal(vkt_loss_scaler_update(&s, true), VKT_ERR_NUMERIC);
    assert_non_null(strstr(vkt_last_error(), "bf16"));
    assert_non_null(strstr(vkt_last_error(), "min_loss_scale 2"));
}

static void test_static_and_errors(void **state)
{
    (void)state;
    vkt_loss_scaler_opts o = VKT_LOSS_SCALER_OPTS_INIT;
    o.loss_scale = 128;
    vkt_loss_scaler s;
    assert_int_equal(vkt_loss_scaler_init(&s, &o), VKT_OK);
    for (int i = 0; i < 5; i++) assert_int_equal(vkt_loss_scaler_update(&s, i % 2), VKT_OK);
    assert_true(s.scale == 128);
    assert_int_equal(s.skipped, 2);
    o.loss_scale = 0;
    o.loss_scale_window = 0;
    assert_int_equal(vkt_loss_scaler_init(&s, &o), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "fp16.loss_scale_window"));
    assert_int_equal(vkt_loss_scaler_init(&s, NULL), VKT_OK); /* DeepSpeed's defaults */
    assert_true(s.scale == 65536);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_growth_and_hysteresis),
        cmocka_unit_test(test_overflow_storm),
        cmocka_unit_test(test_static_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
