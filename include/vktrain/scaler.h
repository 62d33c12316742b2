/* vktrain — the fp16 loss scaler, with DeepSpeed's semantics.
 *
 * The loss is multiplied by `scale` before backward and the gradients by
 * 1/scale before the update. When any gradient overflowed (the grad norm is
 * not finite; decided the same way on every rank), the step is skipped and:
 *   with hysteresis left (hysteresis > 1): one hysteresis is used up;
 *   otherwise the scale is divided by 2, but not below min_loss_scale —
 *   and an overflow at the minimum is VKT_ERR_NUMERIC (DeepSpeed raises).
 * After loss_scale_window steps without overflow the scale doubles (and the
 * hysteresis is restored). A static scale (loss_scale > 0) never changes.
 *
 * The state is a plain value with no resources: copy it into checkpoints. */
#ifndef VKTRAIN_SCALER_H
#define VKTRAIN_SCALER_H

#include <stdbool.h>
#include <stdint.h>

#include "vktrain/export.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkt_loss_scaler_opts {
    uint32_t struct_size;        /* set by VKT_LOSS_SCALER_OPTS_INIT */
    double loss_scale;           /* fp16.loss_scale: 0 = dynamic (default) */
    uint32_t initial_scale_power; /* fp16.initial_scale_power: scale starts at 2^this (16) */
    uint32_t loss_scale_window;  /* fp16.loss_scale_window (1000) */
    uint32_t hysteresis;         /* fp16.hysteresis: overflows tolerated before shrinking (2) */
    double min_loss_scale;       /* fp16.min_loss_scale (1) */
    bool consecutive_hysteresis; /* fp16.consecutive_hysteresis (false) */
} vkt_loss_scaler_opts;

#define VKT_LOSS_SCALER_OPTS_INIT                                                  \
    {                                                                              \
        sizeof(vkt_loss_scaler_opts), 0.0, 16, 1000, 2, 1.0, false                 \
    }

typedef struct vkt_loss_scaler {
    vkt_loss_scaler_opts opts;
    double scale;               /* the current loss scale */
    uint64_t iteration;         /* updates so far */
    int64_t last_overflow;      /* iteration of the last overflow, -1: none */
    uint32_t hysteresis_left;
    uint64_t skipped;           /* steps skipped for overflow */
} vkt_loss_scaler;

/* VKT_ERR_INVALID_ARG names the bad key (e.g. loss_scale_window 0). */
VKT_API vkt_status vkt_loss_scaler_init(vkt_loss_scaler *s, const vkt_loss_scaler_opts *o);
/* Record one step's outcome; true overflow means the step was skipped.
 * VKT_ERR_NUMERIC when an overflow happens at min_loss_scale. */
VKT_API vkt_status vkt_loss_scaler_update(vkt_loss_scaler *s, bool overflow);

#ifdef __cplusplus
}
#endif
#endif
