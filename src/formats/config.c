/* The training configuration (vktrain/config.h): DeepSpeed's JSON parsed with
 * jansson and resolved section by section into vkt_config, with DeepSpeed's
 * defaults. Key tables, getters and messages live in config_keys.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "formats/config_int.h"
#include "formats/file.h"
#include "vktrain/comm.h"

_Static_assert((int)VKT_CONFIG_BACKEND_AUTO == (int)VKT_COMM_BACKEND_AUTO &&
                   (int)VKT_CONFIG_BACKEND_TCP == (int)VKT_COMM_BACKEND_TCP &&
                   (int)VKT_CONFIG_BACKEND_SHM == (int)VKT_COMM_BACKEND_SHM &&
                   (int)VKT_CONFIG_BACKEND_GLOO == (int)VKT_COMM_BACKEND_GLOO &&
                   (int)VKT_CONFIG_BACKEND_VERBS == (int)VKT_COMM_BACKEND_VERBS,
               "vkt_config_backend mirrors vkt_comm_backend");

#define NOLIMIT HUGE_VAL

static const char *const top_keys[] = {
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
    "optimizer", "scheduler", "fp16", "bf16", "bfloat16", "gradient_clipping",
    "zero_optimization", "steps_per_print", "wall_clock_breakdown", "vktrain", NULL};
static const char *const section_keys[] = {"type", "params", NULL};
static const char *const adam_keys[] = {"lr", "betas", "eps", "weight_decay", "adam_w_mode",
                                        NULL};
static const char *const sgd_keys[] = {"lr", "momentum", "weight_decay", "nesterov", NULL};
static const char *const fp16_keys[] = {"enabled", "loss_scale", "initial_scale_power",
                                        "loss_scale_window", "hysteresis",
                                        "consecutive_hysteresis", "min_loss_scale", NULL};
static const char *const bf16_keys[] = {"enabled", NULL};
static const char *const zero_keys[] = {
    "stage", "reduce_bucket_size", "allgather_bucket_size", "overlap_comm",
    "contiguous_gradients", "reduce_scatter", "allgather_partitions",
    "stage3_prefetch_bucket_size", "prefetch_bucket_size", "stage3_param_persistence_threshold",
    "param_persistence_threshold", "stage3_max_live_parameters", "max_live_parameters",
    "stage3_max_reuse_distance", "max_reuse_distance", NULL};
static const char *const vktrain_keys[] = {"backend", "devices", "comm_timeout_s", "gpu_timeout_s",
                                           "rank_batch", "metrics_file",
                                           "allow_unauthenticated", "seed",
                                           "check_replicas_every", NULL};


/* Batch sizes and accumulation steps are at most 2^31, so their products
 * with each other and a world size (at most 2^20) cannot wrap in 64 bits. */
#define VKT_CFG_MAX_BATCH (1ull << 31)

/* Batch sizes as given; 0 = not given. */
typedef struct batch_in {
    uint64_t train, micro, accum;
    bool has_train, has_micro, has_accum;
} batch_in;

/* ------------------------------------------------------------------------- */
/* Defaults                                                                  */

static void set_defaults(vkt_config *cfg, uint32_t world)
{
    cfg->world_size = world;
    cfg->optimizer = (vkt_config_optimizer){false, VKT_OPTIM_ADAMW, 1e-3, 0.9, 0.999, 1e-8,
                                            0.0, 0.0, false};
    vkt_lr_schedule s = VKT_LR_SCHEDULE_INIT;
    cfg->scheduler = s;
    vkt_loss_scaler_opts so = VKT_LOSS_SCALER_OPTS_INIT;
    cfg->fp16_scaler = so;
    cfg->gradient_clipping = 0.0;
    cfg->zero = (vkt_config_zero){0, 500000000, 500000000, false, true, true, true,
                                  50000000, 100000, 1000000000, 1000000000};
    cfg->steps_per_print = 10;
    cfg->backend = VKT_CONFIG_BACKEND_AUTO;
    cfg->comm_timeout_s = 300.0; /* vkt_comm_opts' default */
    cfg->gpu_timeout_s = 300.0;
    cfg->seed = 1234;            /* DeepSpeed's data sampler and Megatron use 1234 */
}

/* ------------------------------------------------------------------------- */
/* optimizer                                                                 */

static const char *const other_optimizers[] = {
    "lamb", "onebitadam", "zerooneadam", "onebitlamb", "adagrad", "lion", "muadam",
    "muadamw", "musgd", "muon", "rmsprop", "adadelta", "adamax", "nadam", "radam", "asgd",
    "lbfgs", "rprop", "sparseadam", "cpuadam", "fusedadam", NULL};

static vkt_status optimizer_type(vkt__cfg_ctx *c, json_t *sec, vkt_optim_type *type)
{
    const char *name = NULL;
    bool has;
    VKT_CHECK(vkt__cfg_str(c, sec, "optimizer", "type", &name, &has));
    VKT_FAIL_IF(!has, VKT_ERR_INVALID_ARG,
                "%s: optimizer.type is missing: expected \"Adam\", \"AdamW\" or \"SGD\"",
                c->source);
    /* DeepSpeed lower-cases the names of its own optimizers */
    if (!strcasecmp(name, "adam")) *type = VKT_OPTIM_ADAM;
    else if (!strcasecmp(name, "adamw")) *type = VKT_OPTIM_ADAMW;
    else if (!strcasecmp(name, "sgd")) *type = VKT_OPTIM_SGD;
    else {
        for (size_t i = 0; other_optimizers[i]; i++)
            VKT_FAIL_IF(!strcasecmp(name, other_optimizers[i]), VKT_ERR_INVALID_ARG,
                        "%s: optimizer.type = \"%s\": not supported by vktrain; use \"Adam\", "
                        "\"AdamW\" or \"SGD\"",
                        c->source, name);
        return vkt__cfg_bad(c, "optimizer.type", json_object_get(sec, "type"),
                            "\"Adam\", \"AdamW\" or \"SGD\" (any case)");
    }
    return VKT_OK;
}

static vkt_status adam_params(vkt__cfg_ctx *c, json_t *p, vkt_config_optimizer *o)
{
    const char *at = "optimizer.params";
    json_t *betas = json_object_get(p, "betas");
    if (betas && !json_is_null(betas)) {
        bool ok = json_is_array(betas) && json_array_size(betas) == 2;
        for (size_t i = 0; ok && i < 2; i++) {
            json_t *b = json_array_get(betas, i);
            ok = json_is_number(b) && json_number_value(b) >= 0 && json_number_value(b) < 1;
        }
        if (!ok)
            return vkt__cfg_bad(c, "optimizer.params.betas", betas,
                                "[beta1, beta2], each a number in [0, 1)");
        o->beta1 = json_number_value(json_array_get(betas, 0));
        o->beta2 = json_number_value(json_array_get(betas, 1));
    }
    VKT_CHECK(vkt__cfg_real(c, p, at, "eps", 0.0, NOLIMIT, &o->eps, NULL));
    VKT_CHECK(vkt__cfg_real(c, p, at, "weight_decay", 0.0, NOLIMIT, &o->weight_decay, NULL));
    /* DeepSpeed: "Adam" is AdamW unless adam_w_mode is false */
    bool w_mode = true;
    VKT_CHECK(vkt__cfg_bool(c, p, at, "adam_w_mode", &w_mode, NULL));
    if (o->type == VKT_OPTIM_ADAM && w_mode) o->type = VKT_OPTIM_ADAMW;
    return VKT_OK;
}

static vkt_status sgd_params(vkt__cfg_ctx *c, json_t *p, vkt_config_optimizer *o)
{
    const char *at = "optimizer.params";
    VKT_CHECK(vkt__cfg_real(c, p, at, "momentum", 0.0, NOLIMIT, &o->momentum, NULL));
    VKT_CHECK(vkt__cfg_real(c, p, at, "weight_decay", 0.0, NOLIMIT, &o->weight_decay, NULL));
    VKT_CHECK(vkt__cfg_bool(c, p, at, "nesterov", &o->nesterov, NULL));
    VKT_FAIL_IF(o->nesterov && o->momentum <= 0, VKT_ERR_INVALID_ARG,
                "%s: optimizer.params.nesterov = true needs momentum > 0 (momentum is %g), as "
                "in torch.optim.SGD",
                c->source, o->momentum);
    return VKT_OK;
}

static vkt_status parse_optimizer(vkt__cfg_ctx *c, json_t *root)
{
    vkt_config_optimizer *o = &c->cfg->optimizer;
    json_t *sec, *params;
    VKT_CHECK(vkt__cfg_object(c, root, "", "optimizer", &sec));
    if (!sec) return VKT_OK;
    o->given = true;
    VKT_CHECK(vkt__cfg_check_keys(c, sec, "optimizer", section_keys));
    VKT_CHECK(optimizer_type(c, sec, &o->type));
    VKT_CHECK(vkt__cfg_object(c, sec, "optimizer", "params", &params));
    if (!params) { /* Adam without params: adam_w_mode keeps its default, true */
        if (o->type == VKT_OPTIM_ADAM) o->type = VKT_OPTIM_ADAMW;
        return VKT_OK;
    }
    bool sgd = o->type == VKT_OPTIM_SGD;
    VKT_CHECK(vkt__cfg_check_keys(c, params, "optimizer.params", sgd ? sgd_keys : adam_keys));
    VKT_CHECK(vkt__cfg_real(c, params, "optimizer.params", "lr", 0.0, NOLIMIT, &o->lr, NULL));
    return sgd ? sgd_params(c, params, o) : adam_params(c, params, o);
}

/* ------------------------------------------------------------------------- */
/* scheduler                                                                 */

static const char *const warmup_keys[] = {"warmup_min_lr", "warmup_max_lr",
                                          "warmup_num_steps", "warmup_type", NULL};
static const char *const decay_keys[] = {"total_num_steps", "warmup_min_lr", "warmup_max_lr",
                                         "warmup_num_steps", "warmup_type", NULL};
static const char *const cosine_keys[] = {"total_num_steps", "warmup_min_ratio",
                                          "warmup_num_steps", "cos_min_ratio", "warmup_type",
                                          NULL};

static vkt_status scheduler_kind(vkt__cfg_ctx *c, json_t *sec, vkt_lr_kind *kind)
{
    static const char *const names[] = {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR"};
    static const vkt_lr_kind kinds[] = {VKT_LR_WARMUP, VKT_LR_WARMUP_DECAY, VKT_LR_WARMUP_COSINE};
    const char *name = NULL;
    bool has;
    VKT_CHECK(vkt__cfg_str(c, sec, "scheduler", "type", &name, &has));
    VKT_FAIL_IF(!has, VKT_ERR_INVALID_ARG,
                "%s: scheduler.type is missing: expected \"WarmupLR\", \"WarmupDecayLR\" or "
                "\"WarmupCosineLR\"",
                c->source);
    for (int i = 0; i < 3; i++) {
        if (!strcmp(name, names[i])) return *kind = kinds[i], VKT_OK;
        /* DeepSpeed looks schedulers up by their exact class name */
        VKT_FAIL_IF(!strcasecmp(name, names[i]), VKT_ERR_INVALID_ARG,
                    "%s: scheduler.type = \"%s\": scheduler names are case-sensitive in "
                    "DeepSpeed; write \"%s\"",
                    c->source, name, names[i]);
    }
    VKT_FAIL_IF(!strcmp(name, "LRRangeTest") || !strcmp(name, "OneCycle"), VKT_ERR_INVALID_ARG,
                "%s: scheduler.type = \"%s\": not supported by vktrain; use \"WarmupLR\", "
                "\"WarmupDecayLR\" or \"WarmupCosineLR\"",
                c->source, name);
    return vkt__cfg_bad(c, "scheduler.type", json_object_get(sec, "type"),
                        "\"WarmupLR\", \"WarmupDecayLR\" or \"WarmupCosineLR\"");
}

static vkt_status warmup_params(vkt__cfg_ctx *c, json_t *p, vkt_lr_schedule *s)
{
    const char *at = "scheduler.params", *wtype = NULL;
    bool has;
    VKT_CHECK(vkt__cfg_uint(c, p, at, "warmup_num_steps", 0, UINT64_MAX, &s->warmup_num_steps,
                            NULL));
    VKT_CHECK(vkt__cfg_str(c, p, at, "warmup_type", &wtype, &has));
    if (has) {
        VKT_FAIL_IF(strcmp(wtype, "log") && strcmp(wtype, "linear"), VKT_ERR_INVALID_ARG,
                    "%s: scheduler.params.warmup_type = \"%s\": expected \"log\" or \"linear\"",
                    c->source, wtype);
        s->warmup_linear = !strcmp(wtype, "linear");
    }
    /* DeepSpeed raises warmup_num_steps to 2 (ln 1 = 0 would divide by zero) */
    if (s->warmup_num_steps < 2) {
        VKT_CHECK(vkt__cfg_warn(c, "%s: scheduler.params.warmup_num_steps = %llu raised to 2, "
                                   "as DeepSpeed does",
                                c->source, (unsigned long long)s->warmup_num_steps));
        s->warmup_num_steps = 2;
    }
    return VKT_OK;
}

/* A parameter of another schedule: DeepSpeed passes params as keyword
 * arguments, so it raises TypeError; so do we, saying which schedule has it. */
static vkt_status foreign_params(vkt__cfg_ctx *c, json_t *p, vkt_lr_kind kind)
{
    static const struct {
        const char *key, *owner;
        vkt_lr_kind a, b; /* the kinds that take it */
    } rows[] = {
        {"warmup_min_lr", "WarmupLR and WarmupDecayLR", VKT_LR_WARMUP, VKT_LR_WARMUP_DECAY},
        {"warmup_max_lr", "WarmupLR and WarmupDecayLR", VKT_LR_WARMUP, VKT_LR_WARMUP_DECAY},
        {"total_num_steps", "WarmupDecayLR and WarmupCosineLR", VKT_LR_WARMUP_DECAY,
         VKT_LR_WARMUP_COSINE},
        {"warmup_min_ratio", "WarmupCosineLR", VKT_LR_WARMUP_COSINE, VKT_LR_WARMUP_COSINE},
        {"cos_min_ratio", "WarmupCosineLR", VKT_LR_WARMUP_COSINE, VKT_LR_WARMUP_COSINE},
    };
    static const char *const names[] = {"", "WarmupLR", "WarmupDecayLR", "WarmupCosineLR"};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        VKT_FAIL_IF(json_object_get(p, rows[i].key) && kind != rows[i].a && kind != rows[i].b,
                    VKT_ERR_INVALID_ARG,
                    "%s: scheduler.params.%s is a parameter of %s, not of %s (DeepSpeed "
                    "would raise TypeError)%s",
                    c->source, rows[i].key, rows[i].owner, names[kind],
                    kind == VKT_LR_WARMUP_COSINE
                        ? "; WarmupCosineLR scales optimizer.params.lr by warmup_min_ratio "
                          "and cos_min_ratio"
                        : "");
    return VKT_OK;
}

static vkt_status parse_scheduler(vkt__cfg_ctx *c, json_t *root)
{
    vkt_config *cfg = c->cfg;
    vkt_lr_schedule *s = &cfg->scheduler;
    json_t *sec, *p;
    s->lr = cfg->optimizer.lr; /* no scheduler: the optimizer's lr throughout */
    VKT_CHECK(vkt__cfg_object(c, root, "", "scheduler", &sec));
    if (!sec) return VKT_OK;
    cfg->scheduler_given = true;
    VKT_CHECK(vkt__cfg_check_keys(c, sec, "scheduler", section_keys));
    VKT_CHECK(scheduler_kind(c, sec, &s->kind));
    VKT_CHECK(vkt__cfg_object(c, sec, "scheduler", "params", &p));
    const char *at = "scheduler.params";
    bool has_total = false;
    /* WarmupLR's warmup_max_lr defaults to the optimizer's lr; WarmupDecayLR's to 0.001 */
    if (s->kind == VKT_LR_WARMUP) s->warmup_max_lr = cfg->optimizer.lr;
    if (p) {
        const char *const *known = s->kind == VKT_LR_WARMUP         ? warmup_keys
                                   : s->kind == VKT_LR_WARMUP_DECAY ? decay_keys
                                                                    : cosine_keys;
        VKT_CHECK(foreign_params(c, p, s->kind));
        VKT_CHECK(vkt__cfg_check_keys(c, p, at, known));
        VKT_CHECK(warmup_params(c, p, s));
        VKT_CHECK(vkt__cfg_uint(c, p, at, "total_num_steps", 1, UINT64_MAX, &s->total_num_steps,
                                &has_total));
        if (s->kind == VKT_LR_WARMUP_COSINE) {
            VKT_CHECK(vkt__cfg_real(c, p, at, "warmup_min_ratio", 0.0, NOLIMIT,
                                    &s->warmup_min_ratio, NULL));
            VKT_CHECK(vkt__cfg_real(c, p, at, "cos_min_ratio", 0.0, NOLIMIT, &s->cos_min_ratio,
                                    NULL));
        } else {
            VKT_CHECK(vkt__cfg_real(c, p, at, "warmup_min_lr", 0.0, NOLIMIT, &s->warmup_min_lr,
                                    NULL));
            VKT_CHECK(vkt__cfg_real(c, p, at, "warmup_max_lr", 0.0, NOLIMIT, &s->warmup_max_lr,
                                    NULL));
        }
    }
    VKT_FAIL_IF(s->kind != VKT_LR_WARMUP && !has_total, VKT_ERR_INVALID_ARG,
                "%s: scheduler.params.total_num_steps is missing: %s needs it (the optimizer "
                "steps of the whole run)",
                c->source, s->kind == VKT_LR_WARMUP_DECAY ? "WarmupDecayLR" : "WarmupCosineLR");
    vkt_status st = vkt_lr_schedule_check(s);
    return st == VKT_OK ? VKT_OK : vkt__error_context(st, "%s", c->source);
}

/* ------------------------------------------------------------------------- */
/* fp16, bf16, ZeRO, top-level scalars                                       */

static vkt_status parse_precision(vkt__cfg_ctx *c, json_t *root)
{
    vkt_config *cfg = c->cfg;
    vkt_loss_scaler_opts *so = &cfg->fp16_scaler;
    json_t *fp16, *bf16;
    const char *bf16_name = json_object_get(root, "bf16") ? "bf16" : "bfloat16";
    VKT_CHECK(vkt__cfg_object(c, root, "", "fp16", &fp16));
    VKT_CHECK(vkt__cfg_object(c, root, "", bf16_name, &bf16));
    if (fp16) {
        uint64_t power = so->initial_scale_power, window = so->loss_scale_window,
                 hyst = so->hysteresis;
        VKT_CHECK(vkt__cfg_check_keys(c, fp16, "fp16", fp16_keys));
        VKT_CHECK(vkt__cfg_bool(c, fp16, "fp16", "enabled", &cfg->fp16, NULL));
        VKT_CHECK(vkt__cfg_real(c, fp16, "fp16", "loss_scale", 0.0, NOLIMIT, &so->loss_scale,
                                NULL));
        VKT_CHECK(vkt__cfg_uint(c, fp16, "fp16", "initial_scale_power", 0, 127, &power, NULL));
        VKT_CHECK(vkt__cfg_uint(c, fp16, "fp16", "loss_scale_window", 1, UINT32_MAX, &window,
                                NULL));
        VKT_CHECK(vkt__cfg_uint(c, fp16, "fp16", "hysteresis", 1, UINT32_MAX, &hyst, NULL));
        VKT_CHECK(vkt__cfg_bool(c, fp16, "fp16", "consecutive_hysteresis",
                                &so->consecutive_hysteresis, NULL));
        VKT_CHECK(vkt__cfg_real(c, fp16, "fp16", "min_loss_scale", 1e-30, NOLIMIT,
                                &so->min_loss_scale, NULL));
        so->initial_scale_power = (uint32_t)power;
        so->loss_scale_window = (uint32_t)window;
        so->hysteresis = (uint32_t)hyst;
    }
    if (bf16) {
        VKT_CHECK(vkt__cfg_check_keys(c, bf16, bf16_name, bf16_keys));
        VKT_CHECK(vkt__cfg_bool(c, bf16, bf16_name, "enabled", &cfg->bf16, NULL));
    }
    VKT_FAIL_IF(cfg->fp16 && cfg->bf16, VKT_ERR_INVALID_ARG,
                "%s: fp16.enabled and %s.enabled are both true: choose one (DeepSpeed refuses "
                "both too)",
                c->source, bf16_name);
    return VKT_OK;
}

/* DeepSpeed's alias pairs: "stage3_x" is the documented name, "x" the field. */
static vkt_status zero_size(vkt__cfg_ctx *c, json_t *z, const char *name, const char *alias,
                            uint64_t *out)
{
    bool has = false;
    VKT_CHECK(vkt__cfg_uint(c, z, "zero_optimization", name, 0, UINT64_MAX, out, &has));
    if (!has) VKT_CHECK(vkt__cfg_uint(c, z, "zero_optimization", alias, 0, UINT64_MAX, out, NULL));
    return VKT_OK;
}

static vkt_status parse_zero(vkt__cfg_ctx *c, json_t *root)
{
    vkt_config_zero *zc = &c->cfg->zero;
    const char *at = "zero_optimization";
    json_t *z = json_object_get(root, at);
    if (z && json_is_boolean(z)) { /* DeepSpeed's old form: true means stage 1 */
        zc->stage = json_is_true(z) ? 1 : 0;
        return vkt__cfg_warn(c, "%s: zero_optimization = %s is DeepSpeed's deprecated form; "
                                "write {\"stage\": %u}",
                             c->source, json_is_true(z) ? "true" : "false", zc->stage);
    }
    VKT_CHECK(vkt__cfg_object(c, root, "", at, &z));
    if (!z) return VKT_OK;
    VKT_CHECK(vkt__cfg_check_keys(c, z, at, zero_keys));
    uint64_t stage = 0;
    bool has_overlap = false;
    VKT_CHECK(vkt__cfg_uint(c, z, at, "stage", 0, 3, &stage, NULL));
    zc->stage = (uint32_t)stage;
    VKT_CHECK(vkt__cfg_uint(c, z, at, "reduce_bucket_size", 1, UINT64_MAX,
                            &zc->reduce_bucket_size, NULL));
    VKT_CHECK(vkt__cfg_uint(c, z, at, "allgather_bucket_size", 1, UINT64_MAX,
                            &zc->allgather_bucket_size, NULL));
    VKT_CHECK(vkt__cfg_bool(c, z, at, "overlap_comm", &zc->overlap_comm, &has_overlap));
    if (!has_overlap) zc->overlap_comm = zc->stage == 3; /* DeepSpeed's dynamic default */
    VKT_CHECK(vkt__cfg_bool(c, z, at, "contiguous_gradients", &zc->contiguous_gradients, NULL));
    VKT_CHECK(vkt__cfg_bool(c, z, at, "reduce_scatter", &zc->reduce_scatter, NULL));
    VKT_CHECK(vkt__cfg_bool(c, z, at, "allgather_partitions", &zc->allgather_partitions, NULL));
    VKT_CHECK(zero_size(c, z, "stage3_prefetch_bucket_size", "prefetch_bucket_size",
                        &zc->prefetch_bucket_size));
    VKT_CHECK(zero_size(c, z, "stage3_param_persistence_threshold", "param_persistence_threshold",
                        &zc->param_persistence_threshold));
    VKT_CHECK(zero_size(c, z, "stage3_max_live_parameters", "max_live_parameters",
                        &zc->max_live_parameters));
    VKT_CHECK(zero_size(c, z, "stage3_max_reuse_distance", "max_reuse_distance",
                        &zc->max_reuse_distance));
    return VKT_OK;
}

static vkt_status parse_scalars(vkt__cfg_ctx *c, json_t *root, batch_in *b)
{
    vkt_config *cfg = c->cfg;
    VKT_CHECK(vkt__cfg_uint(c, root, "", "train_batch_size", 1, VKT_CFG_MAX_BATCH, &b->train,
                            &b->has_train));
    VKT_CHECK(vkt__cfg_uint(c, root, "", "train_micro_batch_size_per_gpu", 1, VKT_CFG_MAX_BATCH,
                            &b->micro, &b->has_micro));
    VKT_CHECK(vkt__cfg_uint(c, root, "", "gradient_accumulation_steps", 1, VKT_CFG_MAX_BATCH,
                            &b->accum, &b->has_accum));
    VKT_CHECK(vkt__cfg_real(c, root, "", "gradient_clipping", 0.0, NOLIMIT,
                            &cfg->gradient_clipping, NULL));
    VKT_CHECK(vkt__cfg_uint(c, root, "", "steps_per_print", 1, UINT64_MAX, &cfg->steps_per_print,
                            NULL));
    return vkt__cfg_bool(c, root, "", "wall_clock_breakdown", &cfg->wall_clock_breakdown, NULL);
}

/* ------------------------------------------------------------------------- */
/* The batch identity                                                        */

static vkt_status batch_uniform(vkt__cfg_ctx *c, batch_in *b, uint64_t w)
{
    const char *src = c->source;
    if (b->has_train && b->has_micro && !b->has_accum) {
        VKT_FAIL_IF(b->train % (b->micro * w) != 0, VKT_ERR_INVALID_ARG,
                    "%s: train_batch_size %llu is not a multiple of "
                    "train_micro_batch_size_per_gpu %llu x world size %llu",
                    src, (unsigned long long)b->train, (unsigned long long)b->micro,
                    (unsigned long long)w);
        b->accum = b->train / (b->micro * w);
    } else if (b->has_train && b->has_accum && !b->has_micro) {
        VKT_FAIL_IF(b->train % (b->accum * w) != 0, VKT_ERR_INVALID_ARG,
                    "%s: train_batch_size %llu is not a multiple of gradient_accumulation_steps "
                    "%llu x world size %llu",
                    src, (unsigned long long)b->train, (unsigned long long)b->accum,
                    (unsigned long long)w);
        b->micro = b->train / (b->accum * w);
    } else if (b->has_train && !b->has_micro) { /* train alone: accumulation 1 */
        VKT_FAIL_IF(b->train % w != 0, VKT_ERR_INVALID_ARG,
                    "%s: train_batch_size %llu is not a multiple of world size %llu",
                    src, (unsigned long long)b->train, (unsigned long long)w);
        b->accum = 1;
        b->micro = b->train / w;
    } else if (b->has_micro && !b->has_train) { /* micro alone: accumulation 1 */
        if (!b->has_accum) b->accum = 1;
        b->train = b->micro * b->accum * w;
    }
    VKT_FAIL_IF(!b->has_train && !b->has_micro, VKT_ERR_INVALID_ARG,
                "%s: give train_batch_size or train_micro_batch_size_per_gpu (or "
                "vktrain.rank_batch); vktrain derives the rest as DeepSpeed does",
                src);
    VKT_FAIL_IF(b->train != b->micro * b->accum * w, VKT_ERR_INVALID_ARG,
                "%s: train_batch_size %llu != train_micro_batch_size_per_gpu %llu x "
                "gradient_accumulation_steps %llu x world size %llu = %llu; give two of the three "
                "and vktrain derives the third",
                src, (unsigned long long)b->train, (unsigned long long)b->micro,
                (unsigned long long)b->accum, (unsigned long long)w,
                (unsigned long long)(b->micro * b->accum * w));
    return VKT_OK;
}

/* With vktrain.rank_batch: train = Σ rank_batch × accumulation. */
static vkt_status batch_weighted(vkt__cfg_ctx *c, batch_in *b, uint64_t sum)
{
    const char *src = c->source;
    VKT_FAIL_IF(b->has_micro, VKT_ERR_INVALID_ARG,
                "%s: train_micro_batch_size_per_gpu and vktrain.rank_batch are both given; "
                "rank_batch sets each rank's micro batch, so remove one",
                src);
    if (b->has_train && !b->has_accum) {
        VKT_FAIL_IF(b->train % sum != 0, VKT_ERR_INVALID_ARG,
                    "%s: train_batch_size %llu is not a multiple of the sum of "
                    "vktrain.rank_batch, %llu",
                    src, (unsigned long long)b->train, (unsigned long long)sum);
        b->accum = b->train / sum;
    }
    if (!b->has_train) {
        if (!b->has_accum) b->accum = 1;
        b->train = sum * b->accum;
    }
    VKT_FAIL_IF(b->train != sum * b->accum, VKT_ERR_INVALID_ARG,
                "%s: train_batch_size %llu != sum of vktrain.rank_batch %llu x "
                "gradient_accumulation_steps %llu = %llu",
                src, (unsigned long long)b->train, (unsigned long long)sum,
                (unsigned long long)b->accum, (unsigned long long)(sum * b->accum));
    return VKT_OK;
}

static vkt_status resolve_batch(vkt__cfg_ctx *c, batch_in *b, bool weighted)
{
    vkt_config *cfg = c->cfg;
    uint64_t w = cfg->world_size, sum = 0;
    bool uniform = true;
    if (weighted) {
        for (uint64_t r = 0; r < w; r++) {
            sum += cfg->rank_batch[r];
            uniform = uniform && cfg->rank_batch[r] == cfg->rank_batch[0];
        }
        VKT_CHECK(batch_weighted(c, b, sum));
        b->micro = uniform ? cfg->rank_batch[0] : 0;
    } else {
        VKT_CHECK(batch_uniform(c, b, w));
        cfg->rank_batch = vkt_calloc(w, sizeof *cfg->rank_batch);
        VKT_FAIL_IF(!cfg->rank_batch, VKT_ERR_NOMEM, "config: no memory");
        for (uint64_t r = 0; r < w; r++) cfg->rank_batch[r] = b->micro;
    }
    cfg->train_batch_size = b->train;
    cfg->train_micro_batch_size_per_gpu = b->micro;
    cfg->gradient_accumulation_steps = b->accum;
    return VKT_OK;
}

/* ------------------------------------------------------------------------- */
/* The vktrain section                                                       */

static vkt_status parse_backend(vkt__cfg_ctx *c, json_t *v)
{
    static const char *const names[] = {"auto", "tcp", "shm", "gloo", "verbs"};
    const char *name = NULL;
    bool has;
    VKT_CHECK(vkt__cfg_str(c, v, "vktrain", "backend", &name, &has));
    if (!has) return VKT_OK;
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, names[i])) return c->cfg->backend = (vkt_config_backend)i, VKT_OK;
    return vkt__cfg_bad(c, "vktrain.backend", json_object_get(v, "backend"),
                        "\"auto\", \"tcp\", \"shm\", \"gloo\" or \"verbs\"");
}

/* "auto" or a list of device selectors (index, UUID, or part of the name). */
static vkt_status parse_devices(vkt__cfg_ctx *c, json_t *v)
{
    vkt_config *cfg = c->cfg;
    json_t *d = json_object_get(v, "devices");
    const char *what = "\"auto\" or a non-empty list of device indexes or names";
    if (!d || json_is_null(d)) return VKT_OK;
    if (json_is_string(d) && !strcmp(json_string_value(d), "auto")) return VKT_OK;
    if (!json_is_array(d) || json_array_size(d) == 0 || json_array_size(d) > 4096)
        return vkt__cfg_bad(c, "vktrain.devices", d, what);
    cfg->devices = vkt_calloc(json_array_size(d), sizeof *cfg->devices);
    VKT_FAIL_IF(!cfg->devices, VKT_ERR_NOMEM, "config: no memory");
    size_t i;
    json_t *e;
    json_array_foreach(d, i, e) {
        char buf[32];
        if (json_is_integer(e) && json_integer_value(e) >= 0)
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(e));
        else if (!json_is_string(e) || !*json_string_value(e))
            return vkt__cfg_bad(c, "vktrain.devices", d, what);
        cfg->devices[i] = vkt_strdup(json_is_string(e) ? json_string_value(e) : buf);
        VKT_FAIL_IF(!cfg->devices[i], VKT_ERR_NOMEM, "config: no memory");
        cfg->device_count = (uint32_t)i + 1;
    }
    return VKT_OK;
}

/* "auto" or world_size positive integers. */
static vkt_status parse_rank_batch(vkt__cfg_ctx *c, json_t *v, bool *weighted)
{
    vkt_config *cfg = c->cfg;
    json_t *rb = json_object_get(v, "rank_batch");
    char what[96];
    *weighted = false;
    if (!rb || json_is_null(rb)) return VKT_OK;
    if (json_is_string(rb) && !strcmp(json_string_value(rb), "auto"))
        return cfg->rank_batch_auto = true, VKT_OK;
    snprintf(what, sizeof what, "\"auto\" or a list of %u positive integers (one per rank)",
             cfg->world_size);
    if (!json_is_array(rb) || json_array_size(rb) != cfg->world_size)
        return vkt__cfg_bad(c, "vktrain.rank_batch", rb, what);
    cfg->rank_batch = vkt_calloc(cfg->world_size, sizeof *cfg->rank_batch);
    VKT_FAIL_IF(!cfg->rank_batch, VKT_ERR_NOMEM, "config: no memory");
    size_t i;
    json_t *e;
    json_array_foreach(rb, i, e) {
        if (!json_is_integer(e) || json_integer_value(e) < 1 ||
            json_integer_value(e) > (json_int_t)VKT_CFG_MAX_BATCH)
            return vkt__cfg_bad(c, "vktrain.rank_batch", rb, what);
        cfg->rank_batch[i] = (uint64_t)json_integer_value(e);
    }
    *weighted = true;
    return VKT_OK;
}

static vkt_status parse_vktrain(vkt__cfg_ctx *c, json_t *root, bool *weighted)
{
    vkt_config *cfg = c->cfg;
    json_t *v;
    const char *metrics = NULL;
    bool has_metrics;
    *weighted = false;
    VKT_CHECK(vkt__cfg_object(c, root, "", "vktrain", &v));
    if (!v) return VKT_OK;
    VKT_CHECK(vkt__cfg_check_keys(c, v, "vktrain", vktrain_keys));
    VKT_CHECK(parse_backend(c, v));
    VKT_CHECK(parse_devices(c, v));
    VKT_CHECK(vkt__cfg_real(c, v, "vktrain", "comm_timeout_s", 1e-3, 1e9, &cfg->comm_timeout_s,
                            NULL));
    VKT_CHECK(vkt__cfg_real(c, v, "vktrain", "gpu_timeout_s", 1e-3, 1e9, &cfg->gpu_timeout_s,
                            NULL));
    VKT_CHECK(parse_rank_batch(c, v, weighted));
    VKT_CHECK(vkt__cfg_str(c, v, "vktrain", "metrics_file", &metrics, &has_metrics));
    if (has_metrics) {
        VKT_FAIL_IF(!*metrics, VKT_ERR_INVALID_ARG,
                    "%s: vktrain.metrics_file = \"\": expected a file name (or null for none)",
                    c->source);
        cfg->metrics_file = vkt_strdup(metrics);
        VKT_FAIL_IF(!cfg->metrics_file, VKT_ERR_NOMEM, "config: no memory");
    }
    VKT_CHECK(vkt__cfg_bool(c, v, "vktrain", "allow_unauthenticated",
                            &cfg->allow_unauthenticated, NULL));
    VKT_CHECK(vkt__cfg_uint(c, v, "vktrain", "seed", 0, UINT64_MAX, &cfg->seed, NULL));
    return vkt__cfg_uint(c, v, "vktrain", "check_replicas_every", 0, UINT64_MAX,
                         &cfg->check_replicas_every, NULL);
}

/* ------------------------------------------------------------------------- */
/* Entry points                                                              */

static vkt_status resolve(vkt__cfg_ctx *c, json_t *root)
{
    batch_in b = {0};
    bool weighted;
    VKT_FAIL_IF(!json_is_object(root), VKT_ERR_INVALID_ARG,
                "%s: the config must be a JSON object {...}", c->source);
    VKT_CHECK(vkt__cfg_check_keys(c, root, "", top_keys));
    VKT_CHECK(parse_scalars(c, root, &b));
    VKT_CHECK(parse_vktrain(c, root, &weighted));
    VKT_CHECK(resolve_batch(c, &b, weighted));
    VKT_CHECK(parse_optimizer(c, root));
    VKT_CHECK(parse_scheduler(c, root));
    VKT_CHECK(parse_precision(c, root));
    return parse_zero(c, root);
}

vkt_status vkt_config_parse(const char *json, size_t len, const vkt_config_opts *opts,
                            vkt_config **out)
{
    vkt_config_opts dflt = VKT_CONFIG_OPTS_INIT;
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_config_parse: out is NULL");
    *out = NULL;
    if (!opts) opts = &dflt;
    VKT_FAIL_IF(opts->struct_size != sizeof *opts, VKT_ERR_INVALID_ARG,
                "vkt_config_parse: initialise the options with VKT_CONFIG_OPTS_INIT");
    VKT_FAIL_IF(!json && len, VKT_ERR_INVALID_ARG, "vkt_config_parse: json is NULL");
    VKT_FAIL_IF(opts->world_size < 1 || opts->world_size > (1u << 20), VKT_ERR_INVALID_ARG,
                "vkt_config_parse: world_size %u; give 1..2^20", opts->world_size);
    vkt__cfg_ctx c = {NULL, opts->warn_stream, opts->source_name ? opts->source_name : "config"};
    json_error_t je;
    /* DeepSpeed refuses duplicate keys too */
    json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &je);
    VKT_FAIL_IF(!root, VKT_ERR_INVALID_ARG, "%s: line %d, column %d: invalid JSON: %s",
                c.source, je.line, je.column, je.text);
    vkt_status st = VKT_ERR_NOMEM;
    c.cfg = vkt_calloc(1, sizeof *c.cfg);
    if (c.cfg) {
        set_defaults(c.cfg, opts->world_size);
        st = resolve(&c, root);
    } else {
        VKT_ERROR(st, "config: no memory");
    }
    json_decref(root);
    if (st != VKT_OK) {
        vkt_config_destroy(c.cfg);
        return st;
    }
    *out = c.cfg;
    return VKT_OK;
}

vkt_status vkt_config_load(const char *path, const vkt_config_opts *opts, vkt_config **out)
{
    VKT_FAIL_IF(!out || !path, VKT_ERR_INVALID_ARG, "vkt_config_load: path and out are needed");
    *out = NULL;
    vkt_config_opts o = VKT_CONFIG_OPTS_INIT;
    if (opts) {
        VKT_FAIL_IF(opts->struct_size != sizeof *opts, VKT_ERR_INVALID_ARG,
                    "vkt_config_load: initialise the options with VKT_CONFIG_OPTS_INIT");
        o = *opts;
    }
    if (!o.source_name) o.source_name = path;
    void *text;
    size_t size;
    VKT_CHECK(vkt__file_read(path, 16u << 20, &text, &size));
    vkt_status st = vkt_config_parse(text, size, &o, out);
    vkt_free(text);
    return st;
}

void vkt_config_destroy(vkt_config *c)
{
    if (!c) return;
    for (uint32_t i = 0; i < c->device_count; i++) vkt_free(c->devices[i]);
    vkt_free(c->devices);
    for (uint32_t i = 0; i < c->warning_count; i++) vkt_free(c->warnings[i]);
    vkt_free(c->warnings);
    vkt_free(c->rank_batch);
    vkt_free(c->metrics_file);
    vkt_free(c);
}

const char *vkt_config_backend_name(vkt_config_backend b)
{
    static const char *const names[] = {"auto", "tcp", "shm", "gloo", "verbs"};
    return (unsigned)b < 5 ? names[b] : "invalid";
}
