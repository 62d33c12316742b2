/* Learning-rate schedules against DeepSpeed's formulas, computed by hand. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vktrain/schedule.h"
#include "vktrain/status.h"

#define CLOSE(a, b) assert_true(fabs((a) - (b)) <= 1e-12 * fmax(1.0, fabs(b)))

static void test_warmup_log_and_linear(void **state)
{
    (void)state;
    vkt_lr_schedule s = VKT_LR_SCHEDULE_INIT;
    s.kind = VKT_LR_WARMUP;
    s.warmup_min_lr = 1e-5;
    s.warmup_max_lr = 1e-3;
    s.warmup_num_steps = 1000;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_OK);
    CLOSE(vkt_lr_at(&s, 0), 1e-5);                            /* ln 1 = 0 */
    CLOSE(vkt_lr_at(&s, 9), 1e-5 + (1e-3 - 1e-5) / 3.0);      /* ln 10 / ln 1000 */
    CLOSE(vkt_lr_at(&s, 99), 1e-5 + (1e-3 - 1e-5) * 2.0 / 3.0);
    CLOSE(vkt_lr_at(&s, 1000), 1e-3);
    CLOSE(vkt_lr_at(&s, 123456), 1e-3);
    s.warmup_linear = true;
    CLOSE(vkt_lr_at(&s, 0), 1e-5);
    CLOSE(vkt_lr_at(&s, 500), 1e-5 + (1e-3 - 1e-5) * 0.5);
    CLOSE(vkt_lr_at(&s, 999), 1e-5 + (1e-3 - 1e-5) * 0.999);
}

static void test_warmup_decay(void **state)
{
    (void)state;
    vkt_lr_schedule s = VKT_LR_SCHEDULE_INIT;
    s.kind = VKT_LR_WARMUP_DECAY;
    s.warmup_max_lr = 2e-3;
    s.warmup_num_steps = 100;
    s.total_num_steps = 1100;
    s.warmup_linear = true;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_OK);
    CLOSE(vkt_lr_at(&s, 50), 1e-3);
    CLOSE(vkt_lr_at(&s, 100), 2e-3);           /* (1100 - 100) / 1000 = 1 */
    CLOSE(vkt_lr_at(&s, 600), 1e-3);           /* halfway down */
    CLOSE(vkt_lr_at(&s, 1100), 0.0);
    CLOSE(vkt_lr_at(&s, 5000), 0.0);           /* clamped at the minimum */
}

static void test_constant_and_errors(void **state)
{
    (void)state;
    vkt_lr_schedule s = VKT_LR_SCHEDULE_INIT;
    s.lr = 0.25;
    CLOSE(vkt_lr_at(&s, 7), 0.25);
    s.kind = VKT_LR_WARMUP;
    s.warmup_num_steps = 1; /* log warmup: ln(1) = 0 would divide by zero */
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "warmup_num_steps"));
    assert_true(isnan(vkt_lr_at(&s, 0)));
    s.kind = VKT_LR_WARMUP_DECAY;
    s.warmup_num_steps = 10;
    s.total_num_steps = 5;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "total_num_steps"));
    s.kind = VKT_LR_WARMUP_COSINE;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_UNSUPPORTED);
    assert_non_null(strstr(vkt_last_error(), "not supported by vktrain"));
    s.struct_size = 4;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warmup_log_and_linear),
        cmocka_unit_test(test_warmup_decay),
        cmocka_unit_test(test_constant_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
