/* The resolved config written back as JSON in DeepSpeed's layout, every key
 * with its effective value (vktrain/config.h: vkt_config_to_json). */
#include <stdlib.h>
#include <string.h>

#include "formats/config_int.h"

static const char *optim_name(vkt_optim_type t)
{
    return t == VKT_OPTIM_SGD ? "SGD" : t == VKT_OPTIM_ADAM ? "Adam" : "AdamW";
}

static json_t *optimizer_json(const vkt_config_optimizer *o)
{
    json_t *p;
    if (o->type == VKT_OPTIM_SGD)
        p = json_pack("{s:f, s:f, s:f, s:b}", "lr", o->lr, "momentum", o->momentum,
                      "weight_decay", o->weight_decay, "nesterov", o->nesterov);
    else /* adam_w_mode written out, so "Adam" reads the same in DeepSpeed */
        p = json_pack("{s:f, s:[f,f], s:f, s:f, s:b}", "lr", o->lr, "betas", o->beta1,
                      o->beta2, "eps", o->eps, "weight_decay", o->weight_decay, "adam_w_mode",
                      o->type == VKT_OPTIM_ADAMW);
    return json_pack("{s:s, s:o}", "type", optim_name(o->type), "params", p);
}

static json_t *scheduler_json(const vkt_lr_schedule *s)
{
    static const char *const names[] = {"constant", "WarmupLR", "WarmupDecayLR",
                                        "WarmupCosineLR"}; /* "constant": never written */
    const char *wt = s->warmup_linear ? "linear" : "log";
    json_t *p;
    if (s->kind == VKT_LR_CONSTANT)
        p = json_pack("{s:f}", "lr", s->lr);
    else if (s->kind == VKT_LR_WARMUP_COSINE)
        p = json_pack("{s:I, s:f, s:I, s:f, s:s}", "total_num_steps",
                      (json_int_t)s->total_num_steps, "warmup_min_ratio", s->warmup_min_ratio,
                      "warmup_num_steps", (json_int_t)s->warmup_num_steps, "cos_min_ratio",
                      s->cos_min_ratio, "warmup_type", wt);
    else
        p = json_pack("{s:f, s:f, s:I, s:s}", "warmup_min_lr", s->warmup_min_lr,
                      "warmup_max_lr", s->warmup_max_lr, "warmup_num_steps",
                      (json_int_t)s->warmup_num_steps, "warmup_type", wt);
    if (p && s->kind == VKT_LR_WARMUP_DECAY)
        json_object_set_new(p, "total_num_steps", json_integer((json_int_t)s->total_num_steps));
    return json_pack("{s:s, s:o}", "type", names[s->kind], "params", p);
}

static json_t *zero_json(const vkt_config_zero *z)
{
    return json_pack("{s:I, s:I, s:I, s:b, s:b, s:b, s:b, s:I, s:I, s:I, s:I}", "stage",
                     (json_int_t)z->stage, "reduce_bucket_size",
                     (json_int_t)z->reduce_bucket_size, "allgather_bucket_size",
                     (json_int_t)z->allgather_bucket_size, "overlap_comm", z->overlap_comm,
                     "contiguous_gradients", z->contiguous_gradients, "reduce_scatter",
                     z->reduce_scatter, "allgather_partitions", z->allgather_partitions,
                     "stage3_prefetch_bucket_size", (json_int_t)z->prefetch_bucket_size,
                     "stage3_param_persistence_threshold",
                     (json_int_t)z->param_persistence_threshold, "stage3_max_live_parameters",
                     (json_int_t)z->max_live_parameters, "stage3_max_reuse_distance",
                     (json_int_t)z->max_reuse_distance);
}

/* rank_batch is written only when the ranks differ, where it replaces
 * train_micro_batch_size_per_gpu, so the text parses back to the same config. */
static json_t *vktrain_json(const vkt_config *c)
{
    json_t *devices = c->device_count ? json_array() : json_string("auto");
    for (uint32_t i = 0; devices && i < c->device_count; i++)
        json_array_append_new(devices, json_string(c->devices[i]));
    json_t *rb = NULL;
    if (c->rank_batch_auto) {
        rb = json_string("auto");
    } else if (c->train_micro_batch_size_per_gpu == 0) {
        rb = json_array();
        for (uint32_t r = 0; rb && r < c->world_size; r++)
            json_array_append_new(rb, json_integer((json_int_t)c->rank_batch[r]));
    }
    return json_pack("{s:s, s:o, s:f, s:f, s:o*, s:s*, s:b, s:I, s:I}", "backend",
                     vkt_config_backend_name(c->backend), "devices", devices, "comm_timeout_s",
                     c->comm_timeout_s, "gpu_timeout_s", c->gpu_timeout_s, "rank_batch", rb, "metrics_file", c->metrics_file,
                     "allow_unauthenticated", c->allow_unauthenticated, "seed",
                     (json_int_t)c->seed, "check_replicas_every",
                     (json_int_t)c->check_replicas_every);
}

static json_t *fp16_json(const vkt_config *c)
{
    const vkt_loss_scaler_opts *s = &c->fp16_scaler;
    return json_pack("{s:b, s:f, s:I, s:I, s:I, s:b, s:f}", "enabled", c->fp16, "loss_scale",
                     s->loss_scale, "initial_scale_power", (json_int_t)s->initial_scale_power,
                     "loss_scale_window", (json_int_t)s->loss_scale_window, "hysteresis",
                     (json_int_t)s->hysteresis, "consecutive_hysteresis",
                     s->consecutive_hysteresis, "min_loss_scale", s->min_loss_scale);
}

vkt_status vkt_config_to_json(const vkt_config *c, char **json)
{
    VKT_FAIL_IF(!c || !json, VKT_ERR_INVALID_ARG, "vkt_config_to_json: config and out needed");
    *json = NULL;
    json_t *micro = c->train_micro_batch_size_per_gpu
                        ? json_integer((json_int_t)c->train_micro_batch_size_per_gpu)
                        : NULL;
    json_t *root = json_pack(
        "{s:I, s:o*, s:I, s:o*, s:o*, s:o, s:{s:b}, s:f, s:o, s:I, s:b, s:o}", "train_batch_size",
        (json_int_t)c->train_batch_size, "train_micro_batch_size_per_gpu", micro,
        "gradient_accumulation_steps", (json_int_t)c->gradient_accumulation_steps, "optimizer",
        c->optimizer.given ? optimizer_json(&c->optimizer) : NULL, "scheduler",
        c->scheduler_given ? scheduler_json(&c->scheduler) : NULL, "fp16", fp16_json(c), "bf16",
        "enabled", c->bf16,
        "gradient_clipping", c->gradient_clipping, "zero_optimization", zero_json(&c->zero),
        "steps_per_print", (json_int_t)c->steps_per_print, "wall_clock_breakdown",
        c->wall_clock_breakdown, "vktrain", vktrain_json(c));
    /* 17 digits: every double reads back bit for bit (0.8 prints as
     * 0.80000000000000004), so an engine that copies a config this way gets
     * exactly the same learning rate */
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(root);
    VKT_FAIL_IF(!text, VKT_ERR_NOMEM, "vkt_config_to_json: no memory");
    *json = vkt_strdup(text);
    free(text); /* jansson's allocator is the C library's */
    VKT_FAIL_IF(!*json, VKT_ERR_NOMEM, "vkt_config_to_json: no memory");
    return VKT_OK;
}
