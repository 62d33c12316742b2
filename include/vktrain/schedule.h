/* vktrain — learning-rate schedules with DeepSpeed's names and formulas.
 *
 * A schedule maps the optimizer-step iteration i (0 for the first step) to a
 * learning rate, as DeepSpeed's get_lr() does at last_batch_iteration = i:
 *   constant       lr
 *   WarmupLR       min + (max - min) · γ(i), γ rising over warmup_num_steps
 *                  (log: ln(i+1)/ln(W); linear: i/W), then 1
 *   WarmupDecayLR  the same warmup, then γ = max(0, (T - i) / max(1, T - W))
 *                  with T = total_num_steps (linear decay to warmup_min_lr)
 *   WarmupCosineLR lr · r(i), a ratio of the optimizer's lr (field lr):
 *                  warmup (i < W): r = warmup_min_ratio + (1 - warmup_min_ratio) · γ(i)
 *                  then r = max(0, c + (1 - c) · (1 + cos(π (i - W + 1) / (T - W))) / 2)
 *                  with c = cos_min_ratio; W = max(2, warmup_num_steps) as in
 *                  DeepSpeed. Past T the cosine rises again, exactly as
 *                  DeepSpeed's does (it does not clamp); size T to the run. */
#ifndef VKTRAIN_SCHEDULE_H
#define VKTRAIN_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "vktrain/export.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vkt_lr_kind {
    VKT_LR_CONSTANT = 0,
    VKT_LR_WARMUP = 1,       /* DeepSpeed "WarmupLR" */
    VKT_LR_WARMUP_DECAY = 2, /* DeepSpeed "WarmupDecayLR" */
    VKT_LR_WARMUP_COSINE = 3 /* DeepSpeed "WarmupCosineLR" */
} vkt_lr_kind;

typedef struct vkt_lr_schedule {
    uint32_t struct_size; /* set by VKT_LR_SCHEDULE_INIT */
    vkt_lr_kind kind;
    double lr;            /* constant; WarmupCosineLR: the lr its ratio scales */
    double warmup_min_lr, warmup_max_lr; /* DeepSpeed defaults 0 and 0.001 */
    uint64_t warmup_num_steps;           /* default 1000 */
    uint64_t total_num_steps;            /* WarmupDecayLR, WarmupCosineLR */
    bool warmup_linear;                  /* warmup_type "linear" (default "log") */
    double warmup_min_ratio;             /* WarmupCosineLR: default 0 */
    double cos_min_ratio;                /* WarmupCosineLR: default 0.0001 */
} vkt_lr_schedule;

#define VKT_LR_SCHEDULE_INIT                                                       \
    {                                                                              \
        sizeof(vkt_lr_schedule), VKT_LR_CONSTANT, 1e-3, 0.0, 1e-3, 1000, 0, false, \
            0.0, 1e-4                                                              \
    }

/* VKT_OK, or VKT_ERR_INVALID_ARG naming the bad field (e.g. a log warmup
 * needs warmup_num_steps >= 2; WarmupCosineLR needs total_num_steps greater
 * than max(2, warmup_num_steps), where DeepSpeed would divide by zero or bend
 * the curve backwards). */
VKT_API vkt_status vkt_lr_schedule_check(const vkt_lr_schedule *s);
/* The learning rate of optimizer step `iteration` (0-based); s must have
 * passed vkt_lr_schedule_check (else NaN). Thread-safe, pure. */
VKT_API double vkt_lr_at(const vkt_lr_schedule *s, uint64_t iteration);

#ifdef __cplusplus
}
#endif
#endif
