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

/* DeepSpeed's WarmupCosineLR: a ratio of the optimizer's lr, warmed up from
 * warmup_min_ratio to 1, then a half cosine down to cos_min_ratio at T. */
static void test_warmup_cosine_linear(void **state)
{
    (void)state;
    vkt_lr_schedule s = VKT_LR_SCHEDULE_INIT;
    s.kind = VKT_LR_WARMUP_COSINE;
    s.lr = 1e-3;
    s.total_num_steps = 1000;
    s.warmup_num_steps = 100;
    s.warmup_min_ratio = 0.1;
    s.cos_min_ratio = 0.01;
    s.warmup_linear = true;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_OK);
    CLOSE(vkt_lr_at(&s, 0), 1e-3 * 0.1);
    CLOSE(vkt_lr_at(&s, 50), 1e-3 * (0.1 + 0.5 * 0.9));
    CLOSE(vkt_lr_at(&s, 99), 1e-3 * (0.1 + 0.99 * 0.9));
    /* step W is the first cosine step, already 1/(T-W) of the way down */
    CLOSE(vkt_lr_at(&s, 100), 1e-3 * (0.01 + 0.99 * (1.0 + cos(M_PI / 900.0)) / 2.0));
    CLOSE(vkt_lr_at(&s, 549), 1e-3 * (0.01 + 0.99 * 0.5)); /* cos(π/2) = 0 */
    CLOSE(vkt_lr_at(&s, 999), 1e-3 * 0.01);                /* cos(π) = -1: the floor */
    /* past T DeepSpeed's cosine climbs back (no clamp); we match it */
    CLOSE(vkt_lr_at(&s, 1899), 1e-3);                      /* cos(2π) = 1 */
}

static void test_warmup_cosine_log_defaults(void **state)
{
    (void)state;
    vkt_lr_schedule s = VKT_LR_SCHEDULE_INIT; /* W 1000, log, ratios 0 and 1e-4 */
    s.kind = VKT_LR_WARMUP_COSINE;
    s.lr = 0.5;
    s.total_num_steps = 3000;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_OK);
    CLOSE(vkt_lr_at(&s, 0), 0.0);
    CLOSE(vkt_lr_at(&s, 9), 0.5 / 3.0);       /* ln 10 / ln 1000 */
    CLOSE(vkt_lr_at(&s, 99), 0.5 * 2.0 / 3.0);
    CLOSE(vkt_lr_at(&s, 1999), 0.5 * (1e-4 + (1.0 - 1e-4) * 0.5));
    CLOSE(vkt_lr_at(&s, 2999), 0.5 * 1e-4);
    /* warmup_num_steps below 2 is raised to 2, as DeepSpeed does */
    s.warmup_num_steps = 0;
    s.warmup_min_ratio = 0.25;
    s.total_num_steps = 4;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_OK);
    CLOSE(vkt_lr_at(&s, 0), 0.5 * 0.25);      /* ln 1 / ln 2 = 0 */
    CLOSE(vkt_lr_at(&s, 1), 0.5);             /* ln 2 / ln 2 = 1 */
    CLOSE(vkt_lr_at(&s, 2), 0.5 * (1e-4 + (1.0 - 1e-4) * 0.5)); /* (i - W + 1)/(T - W) = 1/2 */
    CLOSE(vkt_lr_at(&s, 3), 0.5 * 1e-4);
    s.total_num_steps = 2; /* T == max(2, W): DeepSpeed divides by zero */
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_INVALID_ARG);
    assert_true(isnan(vkt_lr_at(&s, 0)));
    s.total_num_steps = 10;
    s.cos_min_ratio = -0.5;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "cos_min_ratio"));
    s.cos_min_ratio = 0.0;
    s.lr = -1.0;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_INVALID_ARG);
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
    s.total_num_steps = 5;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "total_num_steps"));
    s.struct_size = 4;
    assert_int_equal(vkt_lr_schedule_check(&s), VKT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warmup_log_and_linear),
        cmocka_unit_test(test_warmup_decay),
        cmocka_unit_test(test_warmup_cosine_linear),
        cmocka_unit_test(test_warmup_cosine_log_defaults),
        cmocka_unit_test(test_constant_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
