/* The config module's key handling: typed getters whose errors name the key
 * path, the table of DeepSpeed keys vktrain knows but does not implement, and
 * unknown-key warnings with "did you mean" suggestions. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "formats/config_int.h"

/* ------------------------------------------------------------------------- */
/* Warnings and messages                                                     */

vkt_status vkt__cfg_warn(vkt__cfg_ctx *c, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    vkt_config *cfg = c->cfg;
    char **grown = vkt_realloc(cfg->warnings, (cfg->warning_count + 1) * sizeof *grown);
    VKT_FAIL_IF(!grown, VKT_ERR_NOMEM, "config: no memory for a warning");
    cfg->warnings = grown;
    grown[cfg->warning_count] = vkt_strdup(buf);
    VKT_FAIL_IF(!grown[cfg->warning_count], VKT_ERR_NOMEM, "config: no memory for a warning");
    cfg->warning_count++;
    if (c->warn_stream) fprintf(c->warn_stream, "vktrain: warning: %s\n", buf);
    return VKT_OK;
}

const char *vkt__cfg_path(char *buf, size_t cap, const char *parent, const char *key)
{
    snprintf(buf, cap, "%s%s%s", parent, *parent ? "." : "", key);
    return buf;
}

/* The value as compact JSON, cut at about 60 characters. */
static void show(json_t *v, char *buf, size_t cap)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(10));
    snprintf(buf, cap, "%s", s ? s : "?");
    if (s && strlen(s) >= cap && cap > 4) strcpy(buf + cap - 4, "...");
    free(s); /* jansson's allocator is the C library's */
}

vkt_status vkt__cfg_bad(vkt__cfg_ctx *c, const char *path, json_t *value, const char *what)
{
    char v[64];
    show(value, v, sizeof v);
    return VKT_ERROR(VKT_ERR_INVALID_ARG, "%s: %s = %s: expected %s", c->source, path, v, what);
}

static bool is_auto(json_t *v)
{
    return json_is_string(v) && strcmp(json_string_value(v), "auto") == 0;
}

/* "auto" is the Hugging Face Trainer's placeholder; DeepSpeed itself never
 * sees it there, so neither do we. */
static vkt_status fail_auto(vkt__cfg_ctx *c, const char *path, const char *what)
{
    return VKT_ERROR(VKT_ERR_INVALID_ARG,
                     "%s: %s = \"auto\": not supported by vktrain (\"auto\" is filled in by the "
                     "Hugging Face Trainer, not by DeepSpeed); write %s",
                     c->source, path, what);
}

/* Look up key; NULL for absent or null. */
static json_t *member(json_t *obj, const char *key, bool *given)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (v && json_is_null(v)) v = NULL;
    if (given) *given = v != NULL;
    return v;
}

/* ------------------------------------------------------------------------- */
/* Typed getters                                                             */

vkt_status vkt__cfg_bool(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                         bool *out, bool *given)
{
    char path[160];
    json_t *v = member(obj, key, given);
    if (!v) return VKT_OK;
    vkt__cfg_path(path, sizeof path, parent, key);
    if (is_auto(v)) return fail_auto(c, path, "true or false");
    if (!json_is_boolean(v)) return vkt__cfg_bad(c, path, v, "true or false");
    *out = json_is_true(v);
    return VKT_OK;
}

vkt_status vkt__cfg_uint(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                         uint64_t min, uint64_t max, uint64_t *out, bool *given)
{
    char path[160], what[96];
    json_t *v = member(obj, key, given);
    if (!v) return VKT_OK;
    vkt__cfg_path(path, sizeof path, parent, key);
    if (max > (uint64_t)INT64_MAX) max = (uint64_t)INT64_MAX; /* round-trips as JSON */
    if (max == (uint64_t)INT64_MAX)
        snprintf(what, sizeof what, "an integer >= %llu", (unsigned long long)min);
    else
        snprintf(what, sizeof what, "an integer from %llu to %llu", (unsigned long long)min,
                 (unsigned long long)max);
    if (is_auto(v)) return fail_auto(c, path, what);
    uint64_t u;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        u = (uint64_t)json_integer_value(v);
    } else if (json_is_real(v)) { /* 5e8 is an integer to DeepSpeed */
        double d = json_real_value(v);
        if (!(d >= 0 && d < 18446744073709551616.0 && floor(d) == d))
            return vkt__cfg_bad(c, path, v, what);
        u = (uint64_t)d;
    } else {
        return vkt__cfg_bad(c, path, v, what);
    }
    if (u < min || u > max) return vkt__cfg_bad(c, path, v, what);
    *out = u;
    return VKT_OK;
}

vkt_status vkt__cfg_real(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                         double min, double max, double *out, bool *given)
{
    char path[160], what[96];
    json_t *v = member(obj, key, given);
    if (!v) return VKT_OK;
    vkt__cfg_path(path, sizeof path, parent, key);
    if (isinf(max))
        snprintf(what, sizeof what, "a number >= %g", min);
    else
        snprintf(what, sizeof what, "a number from %g to %g", min, max);
    if (is_auto(v)) return fail_auto(c, path, what);
    if (!json_is_number(v)) return vkt__cfg_bad(c, path, v, what);
    double d = json_number_value(v);
    if (!(d >= min && d <= max)) return vkt__cfg_bad(c, path, v, what);
    *out = d;
    return VKT_OK;
}

vkt_status vkt__cfg_str(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                        const char **out, bool *given)
{
    char path[160];
    json_t *v = member(obj, key, given);
    if (!v) return VKT_OK;
    if (!json_is_string(v))
        return vkt__cfg_bad(c, vkt__cfg_path(path, sizeof path, parent, key), v, "a string");
    *out = json_string_value(v);
    return VKT_OK;
}

vkt_status vkt__cfg_object(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                           json_t **out)
{
    char path[160];
    json_t *v = member(obj, key, NULL);
    *out = NULL;
    if (!v) return VKT_OK;
    if (!json_is_object(v))
        return vkt__cfg_bad(c, vkt__cfg_path(path, sizeof path, parent, key), v,
                            "an object {...}");
    *out = v;
    return VKT_OK;
}

/* ------------------------------------------------------------------------- */
/* Keys DeepSpeed has and vktrain does not implement                         */

/* One row per key. error: ignoring it would change the math or the memory,
 * so the config is refused; else a warning. quiet: the JSON value that asks
 * for nothing (DeepSpeed's default), accepted without a word; null, false,
 * "none", {} and {"enabled": false}/{"device": "none"} always are. */
typedef struct ns_row {
    const char *path;
    bool error;
    const char *quiet;
    const char *why;
} ns_row;

#define W false
#define E true
static const ns_row not_supported[] = {
    /* top level */
    {"amp", E, NULL, "Apex AMP; use fp16 or bf16"},
    {"activation_checkpointing", E, NULL, "activations are kept; memory would differ"},
    {"sparse_attention", E, NULL, "vktrain's attention is dense"},
    {"pipeline", E, NULL, "no pipeline parallelism; vktrain is data parallel"},
    {"elasticity", E, NULL, "the batch is fixed by the batch identity"},
    {"data_efficiency", E, NULL, "data sampling and routing change the batches"},
    {"curriculum_learning", E, NULL, "it changes the batches"},
    {"compression_training", E, NULL, "it changes the model"},
    {"quantize_training", E, NULL, "it changes the weights"},
    {"progressive_layer_drop", E, NULL, "it changes the model"},
    {"eigenvalue", E, NULL, "it changes the schedule"},
    {"torch_autocast", E, NULL, "use fp16 or bf16"},
    {"tensor_parallel", E, NULL, "vktrain is data parallel only"},
    {"sequence_parallel_size", E, "1", "vktrain is data parallel only"},
    {"hybrid_engine", E, NULL, "no inference engine"},
    {"weight_quantization", E, NULL, "weights stay in the training dtype"},
    {"data_types", E, NULL, "gradients accumulate in fp32"},
    {"memory_breakdown", W, "false", "ignored (math unchanged)"},
    {"flops_profiler", W, NULL, "ignored (math unchanged)"},
    {"tensorboard", W, NULL, "ignored; see vktrain.metrics_file"},
    {"wandb", W, NULL, "ignored; see vktrain.metrics_file"},
    {"csv_monitor", W, NULL, "ignored; see vktrain.metrics_file"},
    {"comet", W, NULL, "ignored; see vktrain.metrics_file"},
    {"comms_logger", W, NULL, "ignored (math unchanged)"},
    {"dump_state", W, "false", "ignored (math unchanged)"},
    {"autotuning", W, NULL, "ignored (math unchanged)"},
    {"timers", W, NULL, "ignored (math unchanged)"},
    {"aio", W, NULL, "ignored: no NVMe offload"},
    {"checkpoint", W, NULL, "ignored; vktrain checkpoints are safetensors + index"},
    {"nebula", W, NULL, "ignored; vktrain checkpoints are safetensors + index"},
    {"compile", W, NULL, "ignored (math unchanged)"},
    {"prescale_gradients", W, "false", "ignored: vktrain averages in its own order"},
    {"gradient_predivide_factor", W, "1.0", "ignored: vktrain averages in its own order"},
    {"fp32_allreduce", W, "false", "ignored: vktrain reduces gradients in fp32"},
    {"communication_data_type", W, NULL, "ignored: vktrain reduces gradients in fp32"},
    {"sparse_gradients", W, "false", "ignored: gradients are dense (math unchanged)"},
    {"disable_allgather", W, "false", "ignored (math unchanged)"},
    {"zero_allow_untested_optimizer", W, "false", "ignored (math unchanged)"},
    {"zero_force_ds_cpu_optimizer", W, "true", "ignored: no CPU optimizer"},
    {"vocabulary_size", W, NULL, "ignored (math unchanged)"},
    {"graph_harvesting", W, "false", "ignored (math unchanged)"},
    {"use_node_local_storage", W, "false", "ignored (math unchanged)"},
    {"load_universal_checkpoint", W, "false", "ignored (math unchanged)"},
    {"dataloader_drop_last", W, "false", "ignored: vktrain's loader decides"},
    /* optimizer */
    {"optimizer.legacy_fusion", W, "false", "ignored (math unchanged)"},
    {"optimizer.params.amsgrad", E, "false", "AMSGrad is not implemented"},
    {"optimizer.params.bias_correction", E, "true", "Adam always corrects the bias"},
    {"optimizer.params.dampening", E, "0", "SGD momentum is undampened"},
    {"optimizer.params.torch_adam", W, "false", "ignored: vktrain's Adam kernel runs"},
    {"optimizer.params.maximize", E, "false", "vktrain minimizes"},
    {"optimizer.params.max_grad_norm", W, "0", "ignored; use gradient_clipping"},
    {"optimizer.params.foreach", W, NULL, "ignored (math unchanged)"},
    {"optimizer.params.fused", W, NULL, "ignored (math unchanged)"},
    {"optimizer.params.capturable", W, "false", "ignored (math unchanged)"},
    {"optimizer.params.differentiable", W, "false", "ignored (math unchanged)"},
    {"optimizer.params.set_grad_none", W, NULL, "ignored (math unchanged)"},
    /* scheduler */
    {"scheduler.params.last_batch_iteration", E, "-1",
     "the schedule's position comes from the checkpoint"},
    /* precision */
    {"fp16.auto_cast", E, "false", "inputs keep their dtype"},
    {"fp16.fp16_master_weights_and_grads", E, "false", "master weights and grads are fp32"},
    {"bf16.immediate_grad_update", E, "false", "gradients are applied at the step"},
    {"bf16.check_grad_overflow", E, "false", "bf16 steps are never skipped"},
    {"bf16.bf16_master_weights_and_grads", E, "false", "master weights and grads are fp32"},
    {"bf16.bf16_optimizer_states", E, "false", "optimizer states are fp32"},
    /* ZeRO */
    {"zero_optimization.offload_optimizer", E, NULL,
     "optimizer state stays in device memory; ZeRO stages shard it instead"},
    {"zero_optimization.offload_param", E, NULL,
     "parameters stay in device memory; ZeRO stage 3 shards them instead"},
    {"zero_optimization.cpu_offload", E, NULL,
     "optimizer state stays in device memory; ZeRO stages shard it instead"},
    {"zero_optimization.cpu_offload_param", E, NULL,
     "parameters stay in device memory; ZeRO stage 3 shards them instead"},
    {"zero_optimization.zero_quantized_weights", E, "false", "weights are gathered unquantized"},
    {"zero_optimization.zero_quantized_nontrainable_weights", E, "false",
     "weights are kept unquantized"},
    {"zero_optimization.zero_quantized_gradients", E, "false",
     "gradients are reduced unquantized"},
    {"zero_optimization.zeropp_loco_param", E, NULL, "gradients are reduced unquantized"},
    {"zero_optimization.zero_hpz_partition_size", E, "1", "no secondary partition (ZeRO++ hpZ)"},
    {"zero_optimization.mics_shard_size", E, "-1", "every rank holds one shard (no MiCS)"},
    {"zero_optimization.mics_hierarchical_params_gather", W, "false", "ignored (no MiCS)"},
    {"zero_optimization.cpu_offload_use_pin_memory", W, "false", "ignored: no offload"},
    {"zero_optimization.sub_group_size", W, "1000000000", "ignored (math unchanged)"},
    {"zero_optimization.load_from_fp32_weights", W, "true", "ignored: fp32 weights are loaded"},
    {"zero_optimization.elastic_checkpoint", W, "false", "ignored; checkpoints re-shard on load"},
    {"zero_optimization.ignore_unused_parameters", W, "true", "ignored (math unchanged)"},
    {"zero_optimization.legacy_stage1", W, "false", "ignored (math unchanged)"},
    {"zero_optimization.round_robin_gradients", W, "false", "ignored (math unchanged)"},
    {"zero_optimization.use_multi_rank_bucket_allreduce", W, "true", "ignored (math unchanged)"},
    {"zero_optimization.stage3_gather_16bit_weights_on_model_save", W, "false",
     "ignored; `vktrain ckpt consolidate` gathers weights"},
    {"zero_optimization.gather_16bit_weights_on_model_save", W, "false",
     "ignored; `vktrain ckpt consolidate` gathers weights"},
    {"zero_optimization.stage3_gather_fp16_weights_on_model_save", W, "false",
     "ignored; `vktrain ckpt consolidate` gathers weights"},
    {"zero_optimization.stage3_model_persistence_threshold", W, NULL, "ignored (math unchanged)"},
    {"zero_optimization.model_persistence_threshold", W, NULL, "ignored (math unchanged)"},
    {"zero_optimization.stage3_module_granularity_threshold", W, "0", "ignored (math unchanged)"},
    {"zero_optimization.module_granularity_threshold", W, "0", "ignored (math unchanged)"},
    {"zero_optimization.stage3_use_all_reduce_for_fetch_params", W, "false",
     "ignored (math unchanged)"},
    {"zero_optimization.use_all_reduce_for_fetch_params", W, "false", "ignored (math unchanged)"},
    {"zero_optimization.memory_efficient_linear", W, "true", "ignored (math unchanged)"},
    {"zero_optimization.pipeline_loading_checkpoint", W, "false", "ignored (math unchanged)"},
    {"zero_optimization.override_module_apply", W, "true", "ignored (math unchanged)"},
    {"zero_optimization.log_trace_cache_warnings", W, "false", "ignored (math unchanged)"},
    {"zero_optimization.grad_hooks", W, "true", "ignored (math unchanged)"},
};
#undef W
#undef E

/* Asks for nothing: null, false, "none", {}, {"enabled": false},
 * {"device": "none"}, or an object whose members are all null or false. */
static bool generic_quiet(json_t *v)
{
    if (json_is_null(v) || json_is_false(v)) return true;
    if (json_is_string(v)) return strcmp(json_string_value(v), "none") == 0;
    if (!json_is_object(v)) return false;
    json_t *en = json_object_get(v, "enabled"), *dev = json_object_get(v, "device");
    if (en && json_is_false(en)) return true;
    if (dev && json_is_string(dev) && strcmp(json_string_value(dev), "none") == 0) return true;
    const char *k;
    json_t *m;
    json_object_foreach(v, k, m) {
        if (!json_is_null(m) && !json_is_false(m)) return false;
    }
    return true;
}

static bool row_quiet(const ns_row *r, json_t *v)
{
    if (generic_quiet(v)) return true;
    if (!r->quiet) return false;
    json_t *q = json_loads(r->quiet, JSON_DECODE_ANY, NULL);
    /* 1e9 and 1000000000 are the same default: compare numbers by value */
    bool same = q && (json_is_number(q) && json_is_number(v)
                          ? json_number_value(q) == json_number_value(v)
                          : json_equal(q, v));
    json_decref(q);
    return same;
}

static const ns_row *find_row(const char *path)
{
    for (size_t i = 0; i < sizeof not_supported / sizeof not_supported[0]; i++)
        if (strcmp(not_supported[i].path, path) == 0) return &not_supported[i];
    return NULL;
}

static vkt_status apply_row(vkt__cfg_ctx *c, const ns_row *r, json_t *v)
{
    if (row_quiet(r, v)) return VKT_OK;
    char shown[64];
    show(v, shown, sizeof shown);
    if (r->error)
        return VKT_ERROR(VKT_ERR_INVALID_ARG,
                         "%s: %s = %s: not supported by vktrain (%s); remove it or set it "
                         "to its default",
                         c->source, r->path, shown, r->why);
    return vkt__cfg_warn(c, "%s: %s: not supported by vktrain; %s", c->source, r->path, r->why);
}

/* ------------------------------------------------------------------------- */
/* Unknown keys                                                              */

unsigned vkt__cfg_edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63) return 99;
    unsigned d[64][64];
    char x[64], y[64];
    for (size_t i = 0; i < n; i++) x[i] = (char)tolower((unsigned char)a[i]);
    for (size_t j = 0; j < m; j++) y[j] = (char)tolower((unsigned char)b[j]);
    for (size_t i = 0; i <= n; i++) d[i][0] = (unsigned)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (unsigned)j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            unsigned best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + (x[i - 1] != y[j - 1]) < best)
                best = d[i - 1][j - 1] + (x[i - 1] != y[j - 1]);
            /* a swap of neighbours is one typo */
            if (i > 1 && j > 1 && x[i - 1] == y[j - 2] && x[i - 2] == y[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

/* Close enough to be a typo: one edit for short names, two from 5 letters,
 * three from 12. */
static bool close_to(const char *key, const char *cand)
{
    size_t len = strlen(cand);
    unsigned limit = len >= 12 ? 3 : len >= 5 ? 2 : 1;
    return vkt__cfg_edit_distance(key, cand) <= limit;
}

/* Every section's keys, for suggestions across sections ("stage" at the top
 * level means zero_optimization.stage). */
static const char *const all_paths[] = {
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
    "optimizer", "scheduler", "fp16", "bf16", "gradient_clipping", "zero_optimization",
    "steps_per_print", "wall_clock_breakdown", "vktrain",
    "optimizer.type", "optimizer.params", "optimizer.params.lr", "optimizer.params.betas",
    "optimizer.params.eps", "optimizer.params.weight_decay", "optimizer.params.momentum",
    "optimizer.params.nesterov", "optimizer.params.adam_w_mode", "scheduler.type",
    "scheduler.params",
    "scheduler.params.warmup_min_lr", "scheduler.params.warmup_max_lr",
    "scheduler.params.warmup_num_steps", "scheduler.params.warmup_type",
    "scheduler.params.total_num_steps", "scheduler.params.warmup_min_ratio",
    "scheduler.params.cos_min_ratio", "fp16.enabled", "fp16.loss_scale",
    "fp16.initial_scale_power", "fp16.loss_scale_window", "fp16.hysteresis",
    "fp16.consecutive_hysteresis", "fp16.min_loss_scale", "bf16.enabled",
    "zero_optimization.stage", "zero_optimization.reduce_bucket_size",
    "zero_optimization.allgather_bucket_size", "zero_optimization.overlap_comm",
    "zero_optimization.contiguous_gradients", "zero_optimization.reduce_scatter",
    "zero_optimization.allgather_partitions", "zero_optimization.stage3_prefetch_bucket_size",
    "zero_optimization.stage3_param_persistence_threshold",
    "zero_optimization.stage3_max_live_parameters", "zero_optimization.stage3_max_reuse_distance",
    "vktrain.backend", "vktrain.devices", "vktrain.comm_timeout_s", "vktrain.gpu_timeout_s",
    "vktrain.rank_batch",
    "vktrain.metrics_file", "vktrain.allow_unauthenticated", "vktrain.seed",
    "vktrain.check_replicas_every",
};

static const char *last_part(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* The best suggestion for an unknown key under parent: a close known key of
 * this section or of the table; else the same name in another section. */
static void suggest(const char *parent, const char *key, const char *const *known, char *out,
                    size_t cap)
{
    unsigned best = 99;
    out[0] = '\0';
    for (size_t i = 0; known[i]; i++) {
        unsigned d = vkt__cfg_edit_distance(key, known[i]);
        if (close_to(key, known[i]) && d < best) best = d, snprintf(out, cap, "%s", known[i]);
    }
    size_t plen = strlen(parent);
    for (size_t i = 0; i < sizeof not_supported / sizeof not_supported[0]; i++) {
        const char *p = not_supported[i].path;
        bool here = plen ? strncmp(p, parent, plen) == 0 && p[plen] == '.' &&
                               !strchr(p + plen + 1, '.')
                         : !strchr(p, '.');
        unsigned d = vkt__cfg_edit_distance(key, last_part(p));
        if (here && close_to(key, last_part(p)) && d < best)
            best = d, snprintf(out, cap, "%s", last_part(p));
    }
    if (out[0]) return;
    char here[200];
    vkt__cfg_path(here, sizeof here, parent, key);
    for (size_t i = 0; i < sizeof all_paths / sizeof all_paths[0]; i++) {
        /* not the key itself: SGD's params have no "betas", Adam's do */
        if (strcasecmp(last_part(all_paths[i]), key) == 0 && strchr(all_paths[i], '.') &&
            strcasecmp(all_paths[i], here) != 0) {
            snprintf(out, cap, "%s", all_paths[i]);
            return;
        }
    }
}

vkt_status vkt__cfg_check_keys(vkt__cfg_ctx *c, json_t *obj, const char *parent,
                               const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        bool listed = false;
        for (size_t i = 0; known[i] && !listed; i++) listed = strcmp(known[i], key) == 0;
        if (listed) continue;
        char path[200], hint[128];
        vkt__cfg_path(path, sizeof path, parent, key);
        const ns_row *r = find_row(path);
        if (r) {
            VKT_CHECK(apply_row(c, r, v));
            continue;
        }
        suggest(parent, key, known, hint, sizeof hint);
        if (hint[0])
            VKT_CHECK(vkt__cfg_warn(c, "%s: %s: unknown key, ignored; did you mean '%s'?",
                                    c->source, path, hint));
        else
            VKT_CHECK(vkt__cfg_warn(c, "%s: %s: unknown key, ignored", c->source, path));
    }
    return VKT_OK;
}
