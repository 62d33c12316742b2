/* Learning-rate schedules (vktrain/schedule.h): DeepSpeed's formulas. */
#include <math.h>

#include "core/core_int.h"
#include "vktrain/schedule.h"

/* DeepSpeed raises warmup_num_steps to at least 2 for WarmupCosineLR (so the
 * log warmup never divides by ln 1 = 0); we do the same instead of failing. */
static uint64_t cosine_warmup_steps(const vkt_lr_schedule *s)
{
    return s->warmup_num_steps < 2 ? 2 : s->warmup_num_steps;
}

static vkt_status check_cosine(const vkt_lr_schedule *s)
{
    VKT_FAIL_IF(!(s->lr >= 0) || !isfinite(s->lr), VKT_ERR_INVALID_ARG,
                "WarmupCosineLR: optimizer lr %g must be finite and >= 0", s->lr);
    VKT_FAIL_IF(!(s->warmup_min_ratio >= 0) || !isfinite(s->warmup_min_ratio),
                VKT_ERR_INVALID_ARG,
                "scheduler.params.warmup_min_ratio = %g: must be finite and >= 0",
                s->warmup_min_ratio);
    VKT_FAIL_IF(!(s->cos_min_ratio >= 0) || !isfinite(s->cos_min_ratio), VKT_ERR_INVALID_ARG,
                "scheduler.params.cos_min_ratio = %g: must be finite and >= 0",
                s->cos_min_ratio);
    /* T == W divides by zero in DeepSpeed; T < W runs the cosine backwards. */
    VKT_FAIL_IF(s->total_num_steps <= cosine_warmup_steps(s), VKT_ERR_INVALID_ARG,
                "scheduler.params.total_num_steps = %llu must be greater than "
                "warmup_num_steps = %llu (at least 2) for WarmupCosineLR",
                (unsigned long long)s->total_num_steps,
                (unsigned long long)cosine_warmup_steps(s));
    return VKT_OK;
}

/* DeepSpeed's WarmupCosineLR.get_lr_ratio() at last_batch_iteration = i. */
static double cosine_ratio(const vkt_lr_schedule *s, uint64_t i)
{
    uint64_t wsteps = cosine_warmup_steps(s);
    double w = (double)wsteps;
    if (i < wsteps) {
        double r = s->warmup_linear ? (double)i / w : log((double)i + 1.0) / log(w);
        return s->warmup_min_ratio + r * (1.0 - s->warmup_min_ratio);
    }
    double done = (double)(i - wsteps + 1), span = (double)s->total_num_steps - w;
    double r = (1.0 + cos(M_PI * done / span)) / 2.0;
    return fmax(0.0, s->cos_min_ratio + (1.0 - s->cos_min_ratio) * r);
}

vkt_status vkt_lr_schedule_check(const vkt_lr_schedule *s)
{
    VKT_FAIL_IF(!s || s->struct_size != sizeof *s, VKT_ERR_INVALID_ARG,
                "lr schedule: initialise it with VKT_LR_SCHEDULE_INIT");
    VKT_FAIL_IF(s->kind > VKT_LR_WARMUP_COSINE, VKT_ERR_INVALID_ARG,
                "lr schedule: unknown kind %d", (int)s->kind);
    if (s->kind == VKT_LR_CONSTANT) {
        VKT_FAIL_IF(!(s->lr >= 0), VKT_ERR_INVALID_ARG, "lr schedule: lr %g must be >= 0",
                    s->lr);
        return VKT_OK;
    }
    if (s->kind == VKT_LR_WARMUP_COSINE) return check_cosine(s);
    VKT_FAIL_IF(!(s->warmup_min_lr >= 0) || !(s->warmup_max_lr >= 0), VKT_ERR_INVALID_ARG,
                "scheduler.params: warmup_min_lr %g and warmup_max_lr %g must be >= 0",
                s->warmup_min_lr, s->warmup_max_lr);
    VKT_FAIL_IF(!s->warmup_linear && s->warmup_num_steps < 2, VKT_ERR_INVALID_ARG,
                "scheduler.params.warmup_num_steps = %llu: a log warmup needs at least 2 "
                "(ln 1 = 0); use 2 or more, or warmup_type \"linear\"",
                (unsigned long long)s->warmup_num_steps);
    VKT_FAIL_IF(s->warmup_linear && s->warmup_num_steps < 1, VKT_ERR_INVALID_ARG,
                "scheduler.params.warmup_num_steps must be >= 1");
    VKT_FAIL_IF(s->kind == VKT_LR_WARMUP_DECAY && s->total_num_steps < s->warmup_num_steps,
                VKT_ERR_INVALID_ARG,
                "scheduler.params.total_num_steps = %llu is less than warmup_num_steps = %llu",
                (unsigned long long)s->total_num_steps,
                (unsigned long long)s->warmup_num_steps);
    return VKT_OK;
}

double vkt_lr_at(const vkt_lr_schedule *s, uint64_t i)
{
    if (vkt_lr_schedule_check(s) != VKT_OK) return NAN;
    if (s->kind == VKT_LR_CONSTANT) return s->lr;
    if (s->kind == VKT_LR_WARMUP_COSINE) return s->lr * cosine_ratio(s, i);
    double w = (double)s->warmup_num_steps, gamma;
    if (i < s->warmup_num_steps)
        gamma = s->warmup_linear ? (double)i / w : log((double)i + 1.0) / log(w);
    else if (s->kind == VKT_LR_WARMUP)
        gamma = 1.0;
    else
        gamma = fmax(0.0, ((double)s->total_num_steps - (double)i) /
                              fmax(1.0, (double)s->total_num_steps - w));
    return s->warmup_min_lr + (s->warmup_max_lr - s->warmup_min_lr) * gamma;
}
