/* Learning-rate schedules (vktrain/schedule.h): DeepSpeed's formulas. */
#include <math.h>

#include "core/core_int.h"
#include "vktrain/schedule.h"

vkt_status vkt_lr_schedule_check(const vkt_lr_schedule *s)
{
    VKT_FAIL_IF(!s || s->struct_size != sizeof *s, VKT_ERR_INVALID_ARG,
                "lr schedule: initialise it with VKT_LR_SCHEDULE_INIT");
    VKT_FAIL_IF(s->kind == VKT_LR_WARMUP_COSINE, VKT_ERR_UNSUPPORTED,
                "scheduler WarmupCosineLR is not supported by vktrain yet; use WarmupDecayLR");
    VKT_FAIL_IF(s->kind > VKT_LR_WARMUP_COSINE, VKT_ERR_INVALID_ARG,
                "lr schedule: unknown kind %d", (int)s->kind);
    if (s->kind == VKT_LR_CONSTANT) {
        VKT_FAIL_IF(!(s->lr >= 0), VKT_ERR_INVALID_ARG, "lr schedule: lr %g must be >= 0",
                    s->lr);
        return VKT_OK;
    }
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
