/* The fp16 loss scaler (vktrain/scaler.h), DeepSpeed's update rule. */
#include <math.h>
#include <string.h>

#include "core/core_int.h"
#include "vktrain/scaler.h"

vkt_status vkt_loss_scaler_init(vkt_loss_scaler *s, const vkt_loss_scaler_opts *o)
{
    VKT_FAIL_IF(!s, VKT_ERR_INVALID_ARG, "vkt_loss_scaler_init: scaler is NULL");
    vkt_loss_scaler_opts d = VKT_LOSS_SCALER_OPTS_INIT;
    if (o) {
        VKT_FAIL_IF(o->struct_size < sizeof(uint32_t) || o->struct_size > sizeof d,
                    VKT_ERR_INVALID_ARG,
                    "vkt_loss_scaler_init: initialise opts with VKT_LOSS_SCALER_OPTS_INIT");
        memcpy(&d, o, o->struct_size);
    }
    VKT_FAIL_IF(!(d.loss_scale >= 0), VKT_ERR_INVALID_ARG,
                "fp16.loss_scale = %g: use 0 (dynamic) or a positive static scale",
                d.loss_scale);
    VKT_FAIL_IF(d.initial_scale_power > 64, VKT_ERR_INVALID_ARG,
                "fp16.initial_scale_power = %u: use 0..64 (DeepSpeed's default is 16)",
                d.initial_scale_power);
    VKT_FAIL_IF(d.loss_scale_window == 0, VKT_ERR_INVALID_ARG,
                "fp16.loss_scale_window must be at least 1 (DeepSpeed's default is 1000)");
    VKT_FAIL_IF(d.hysteresis == 0, VKT_ERR_INVALID_ARG,
                "fp16.hysteresis must be at least 1 (DeepSpeed's default is 2)");
    VKT_FAIL_IF(!(d.min_loss_scale > 0), VKT_ERR_INVALID_ARG,
                "fp16.min_loss_scale = %g must be positive (DeepSpeed's default is 1)",
                d.min_loss_scale);
    *s = (vkt_loss_scaler){.opts = d,
                           .scale = d.loss_scale > 0 ? d.loss_scale
                                                     : ldexp(1.0, (int)d.initial_scale_power),
                           .last_overflow = -1,
                           .hysteresis_left = d.hysteresis};
    return VKT_OK;
}

static vkt_status on_overflow(vkt_loss_scaler *s)
{
    const vkt_loss_scaler_opts *o = &s->opts;
    if (o->hysteresis == 1 || s->hysteresis_left == 1) {
        VKT_FAIL_IF(s->scale <= o->min_loss_scale, VKT_ERR_NUMERIC,
                    "fp16 gradients overflowed at update %llu (counting from 1) with the loss "
                    "scale already at its minimum (min_loss_scale %g), after %llu skipped "
                    "updates: the gradients do "
                    "not fit fp16 even unscaled; train in bf16 (\"bf16\": {\"enabled\": true}), "
                    "lower the learning rate, or clip gradients",
                    (unsigned long long)s->iteration + 1, o->min_loss_scale,
                    (unsigned long long)s->skipped);
        s->scale = fmax(s->scale / 2.0, o->min_loss_scale);
    } else {
        s->hysteresis_left--;
    }
    s->last_overflow = (int64_t)s->iteration;
    return VKT_OK;
}

vkt_status vkt_loss_scaler_update(vkt_loss_scaler *s, bool overflow)
{
    VKT_FAIL_IF(!s, VKT_ERR_INVALID_ARG, "vkt_loss_scaler_update: scaler is NULL");
    vkt_status st = VKT_OK;
    if (overflow) s->skipped++;
    if (s->opts.loss_scale > 0) { /* static: nothing to adapt */
        s->iteration++;
        return VKT_OK;
    }
    if (overflow) {
        st = on_overflow(s);
    } else {
        if (s->opts.consecutive_hysteresis) s->hysteresis_left = s->opts.hysteresis;
        if (((int64_t)s->iteration - s->last_overflow) % s->opts.loss_scale_window == 0) {
            if (!s->opts.consecutive_hysteresis) s->hysteresis_left = s->opts.hysteresis;
            s->scale *= 2.0;
        }
    }
    s->iteration++;
    return st;
}
