/* vktrain — learning-rate schedules with DeepSpeed's names and formulas.
 *
 * A schedule maps the optimizer-step iteration i (0 for the first step) to a
 * learning rate, as DeepSpeed's get_lr() does at last_batch_iteration = i:
 *   constant       lr
 *   WarmupLR       min + (max - min) · γ(i), γ rising over warmup_num_steps
 *                  (log: ln(i+1)/ln(W); linear: i/W), then 1
 *   WarmupDecayLR  the same warmup, then γ = max(0, (T - i) / max(1, T - W))
 *                  with T = total_num_steps (linear decay to warmup_min_lr)
 * WarmupCosineLR is not implemented yet (VKT_ERR_UNSUPPORTED). */
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
    VKT_LR_WARMUP_COSINE = 3 /* DeepSpeed "WarmupCosineLR": not yet */
} vkt_lr_kind;

typedef struct vkt_lr_schedule {
    uint32_t struct_size; /* set by VKT_LR_SCHEDULE_INIT */
    vkt_lr_kind kind;
    double lr;            /* constant */
    double warmup_min_lr, warmup_max_lr; /* DeepSpeed defaults 0 and 0.001 */
    uint64_t warmup_num_steps;           /* default 1000 */
    uint64_t total_num_steps;            /* WarmupDecayLR */
    bool warmup_linear;                  /* warmup_type "linear" (default "log") */
} vkt_lr_schedule;

#define VKT_LR_SCHEDULE_INIT                                                       \
    {                                                                              \
        sizeof(vkt_lr_schedule), VKT_LR_CONSTANT, 1e-3, 0.0, 1e-3, 1000, 0, false  \
    }

/* VKT_OK, or VKT_ERR_INVALID_ARG naming the bad field (e.g. a log warmup
 * needs warmup_num_steps >= 2), VKT_ERR_UNSUPPORTED for WarmupCosineLR. */
VKT_API vkt_status vkt_lr_schedule_check(const vkt_lr_schedule *s);
/* The learning rate of optimizer step `iteration` (0-based); s must have
 * passed vkt_lr_schedule_check (else NaN). Thread-safe, pure. */
VKT_API double vkt_lr_at(const vkt_lr_schedule *s, uint64_t iteration);

#ifdef __cplusplus
}
#endif
#endif
