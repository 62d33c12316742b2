/* The DeepSpeed-style config: defaults, every derivation of the batch
 * identity, every error class, unknown-key warnings, the not-supported table,
 * DeepSpeed's own example configs, round trip through JSON, allocation
 * failures. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "formats/config_int.h"
#include "vktrain/config.h"

/* Parse text for world size w; asserts the status and returns the config
 * (NULL on failure). */
static vkt_config *parse_w(const char *text, uint32_t w, vkt_status want)
{
    vkt_config_opts o = VKT_CONFIG_OPTS_INIT;
    o.world_size = w;
    o.source_name = "ds.json";
    vkt_config *c = (vkt_config *)1;
    vkt_status st = vkt_config_parse(text, strlen(text), &o, &c);
    if (st != want)
        fail_msg("parse of %s: got %s (%s), want %s", text, vkt_status_name(st),
                 vkt_last_error(), vkt_status_name(want));
    if (st != VKT_OK) assert_null(c);
    return c;
}

static vkt_config *parse(const char *text) { return parse_w(text, 1, VKT_OK); }

/* The text fails with INVALID_ARG and the message holds every needle. */
static void fails_with(const char *text, uint32_t w, const char *n1, const char *n2)
{
    parse_w(text, w, VKT_ERR_INVALID_ARG);
    const char *m = vkt_last_error();
    if (!strstr(m, n1) || (n2 && !strstr(m, n2)))
        fail_msg("message for %s lacks '%s'/'%s': %s", text, n1, n2 ? n2 : "", m);
}

/* The config has a warning holding both needles. */
static bool has_warning(const vkt_config *c, const char *n1, const char *n2)
{
    for (uint32_t i = 0; i < c->warning_count; i++)
        if (strstr(c->warnings[i], n1) && (!n2 || strstr(c->warnings[i], n2))) return true;
    return false;
}

static void defaults(void **state)
{
    (void)state;
    vkt_config *c = parse("{\"train_batch_size\": 8}");
    assert_int_equal(c->world_size, 1);
    assert_int_equal(c->train_batch_size, 8);
    assert_int_equal(c->train_micro_batch_size_per_gpu, 8);
    assert_int_equal(c->gradient_accumulation_steps, 1);
    assert_false(c->optimizer.given);
    assert_false(c->scheduler_given);
    assert_int_equal(c->scheduler.kind, VKT_LR_CONSTANT);
    assert_true(c->scheduler.lr == 1e-3);
    assert_false(c->fp16);
    assert_false(c->bf16);
    assert_true(c->fp16_scaler.loss_scale == 0.0); /* dynamic */
    assert_int_equal(c->fp16_scaler.initial_scale_power, 16);
    assert_int_equal(c->fp16_scaler.loss_scale_window, 1000);
    assert_int_equal(c->fp16_scaler.hysteresis, 2);
    assert_true(c->fp16_scaler.min_loss_scale == 1.0);
    assert_true(c->gradient_clipping == 0.0);
    assert_int_equal(c->zero.stage, 0);
    assert_int_equal(c->zero.reduce_bucket_size, 500000000);
    assert_int_equal(c->zero.allgather_bucket_size, 500000000);
    assert_false(c->zero.overlap_comm);
    assert_true(c->zero.contiguous_gradients);
    assert_true(c->zero.reduce_scatter);
    assert_int_equal(c->zero.prefetch_bucket_size, 50000000);
    assert_int_equal(c->zero.param_persistence_threshold, 100000);
    assert_int_equal(c->steps_per_print, 10);
    assert_false(c->wall_clock_breakdown);
    assert_int_equal(c->backend, VKT_CONFIG_BACKEND_AUTO);
    assert_int_equal(c->device_count, 0);
    assert_true(c->comm_timeout_s == 300.0);
    assert_true(c->gpu_timeout_s == 300.0);
    assert_false(c->rank_batch_auto);
    assert_int_equal(c->rank_batch[0], 8);
    assert_null(c->metrics_file);
    assert_false(c->allow_unauthenticated);
    assert_int_equal(c->seed, 1234);
    assert_int_equal(c->check_replicas_every, 0); /* off */
    assert_int_equal(c->warning_count, 0);
    vkt_config_destroy(c);
    vkt_config_destroy(NULL);
    /* ZeRO-3's overlap_comm defaults to true (DeepSpeed's dynamic default) */
    c = parse("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 3}}");
    assert_true(c->zero.overlap_comm);
    vkt_config_destroy(c);
    /* DeepSpeed's older spellings: "bfloat16", and zero_optimization as a bool */
    c = parse("{\"train_batch_size\": 8, \"bfloat16\": {\"enabled\": true}, "
              "\"zero_optimization\": true}");
    assert_true(c->bf16);
    assert_int_equal(c->zero.stage, 1);
    assert_true(has_warning(c, "deprecated form", "{\"stage\": 1}"));
    vkt_config_destroy(c);
}

/* One row per way of giving the batch: 0 = not given; want 0 = error. */
static void batch_identity(void **state)
{
    (void)state;
    static const struct {
        uint64_t train, micro, accum;
        uint32_t w;
        uint64_t want_train, want_micro, want_accum;
        const char *error;
    } rows[] = {
        {32, 4, 0, 2, 32, 4, 4, NULL},   /* train + micro -> accum */
        {32, 0, 2, 4, 32, 4, 2, NULL},   /* train + accum -> micro */
        {0, 4, 3, 2, 24, 4, 3, NULL},    /* micro + accum -> train */
        {16, 0, 0, 4, 16, 4, 1, NULL},   /* train alone: accum 1 */
        {0, 8, 0, 3, 24, 8, 1, NULL},    /* micro alone: accum 1 */
        {48, 4, 3, 4, 48, 4, 3, NULL},   /* all three, consistent */
        {32, 4, 2, 2, 0, 0, 0, "32 != train_micro_batch_size_per_gpu 4"},
        {0, 0, 4, 1, 0, 0, 0, "give train_batch_size or train_micro_batch_size_per_gpu"},
        {0, 0, 0, 1, 0, 0, 0, "give train_batch_size or train_micro_batch_size_per_gpu"},
        {10, 3, 0, 1, 0, 0, 0, "not a multiple"},
        {10, 0, 3, 1, 0, 0, 0, "not a multiple"},
        {10, 0, 0, 4, 0, 0, 0, "not a multiple of world size 4"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char text[256] = "{", *p = text + 1;
        typedef unsigned long long ull;
        if (rows[i].train) p += sprintf(p, "\"train_batch_size\": %llu,", (ull)rows[i].train);
        if (rows[i].micro)
            p += sprintf(p, "\"train_micro_batch_size_per_gpu\": %llu,", (ull)rows[i].micro);
        if (rows[i].accum)
            p += sprintf(p, "\"gradient_accumulation_steps\": %llu,", (ull)rows[i].accum);
        sprintf(p, "\"steps_per_print\": 10}");
        if (rows[i].error) {
            fails_with(text, rows[i].w, rows[i].error, NULL);
            continue;
        }
        vkt_config *c = parse_w(text, rows[i].w, VKT_OK);
        assert_int_equal(c->train_batch_size, rows[i].want_train);
        assert_int_equal(c->train_micro_batch_size_per_gpu, rows[i].want_micro);
        assert_int_equal(c->gradient_accumulation_steps, rows[i].want_accum);
        for (uint32_t r = 0; r < rows[i].w; r++)
            assert_int_equal(c->rank_batch[r], rows[i].want_micro);
        vkt_config_destroy(c);
    }
}

/* vktrain.rank_batch: train_batch_size = Σ rank_batch × accumulation. */
static void rank_batch(void **state)
{
    (void)state;
    vkt_config *c = parse_w("{\"gradient_accumulation_steps\": 2, \"vktrain\": "
                            "{\"rank_batch\": [3, 5]}}", 2, VKT_OK);
    assert_int_equal(c->train_batch_size, 16);
    assert_int_equal(c->train_micro_batch_size_per_gpu, 0); /* ranks differ */
    assert_int_equal(c->rank_batch[0], 3);
    assert_int_equal(c->rank_batch[1], 5);
    vkt_config_destroy(c);
    c = parse_w("{\"train_batch_size\": 32, \"vktrain\": {\"rank_batch\": [3, 5]}}", 2, VKT_OK);
    assert_int_equal(c->gradient_accumulation_steps, 4);
    vkt_config_destroy(c);
    c = parse_w("{\"vktrain\": {\"rank_batch\": [4, 4]}}", 2, VKT_OK);
    assert_int_equal(c->train_batch_size, 8);
    assert_int_equal(c->train_micro_batch_size_per_gpu, 4);
    vkt_config_destroy(c);
    c = parse_w("{\"train_micro_batch_size_per_gpu\": 4, \"vktrain\": {\"rank_batch\": \"auto\"}}",
                2, VKT_OK);
    assert_true(c->rank_batch_auto);
    assert_int_equal(c->train_batch_size, 8);
    vkt_config_destroy(c);
    fails_with("{\"train_batch_size\": 30, \"vktrain\": {\"rank_batch\": [3, 5]}}", 2,
               "not a multiple of the sum of vktrain.rank_batch, 8", NULL);
    fails_with("{\"train_batch_size\": 32, \"gradient_accumulation_steps\": 2, \"vktrain\": "
               "{\"rank_batch\": [3, 5]}}", 2, "32 != sum of vktrain.rank_batch 8", NULL);
    fails_with("{\"train_micro_batch_size_per_gpu\": 4, \"vktrain\": {\"rank_batch\": [3, 5]}}", 2,
               "both given", NULL);
    fails_with("{\"vktrain\": {\"rank_batch\": [3, 5, 1]}}", 2, "vktrain.rank_batch = [3,5,1]",
               "a list of 2 positive integers");
    fails_with("{\"vktrain\": {\"rank_batch\": [3, 0]}}", 2, "vktrain.rank_batch", NULL);
}

/* Wrong types and values name the key path, the value and what is accepted. */
static void error_classes(void **state)
{
    (void)state;
    fails_with("{\"train_batch_size\": \"32\"}", 1, "ds.json: train_batch_size = \"32\"",
               "expected an integer from 1 to 2147483648");
    fails_with("{\"train_batch_size\": 2.5}", 1, "train_batch_size = 2.5", NULL);
    /* sizes whose products could wrap 64 bits are refused, not divided by 0 */
    fails_with("{\"train_micro_batch_size_per_gpu\": 4611686018427387904}", 4,
               "train_micro_batch_size_per_gpu", "2147483648");
    fails_with("{\"train_batch_size\": 0}", 1, "train_batch_size = 0", NULL);
    fails_with("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 5}}", 1,
               "zero_optimization.stage = 5", "an integer from 0 to 3");
    fails_with("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": \"yes\"}}", 1,
               "fp16.enabled = \"yes\"", "true or false");
    fails_with("{\"train_batch_size\": 8, \"gradient_clipping\": -1}", 1,
               "gradient_clipping = -1", "a number >= 0");
    fails_with("{\"train_batch_size\": 8, \"fp16\": true}", 1, "fp16 = true", "an object");
    fails_with("{\"train_batch_size\": \"auto\"}", 1, "train_batch_size = \"auto\"",
               "not supported by vktrain");
    fails_with("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": \"auto\"}}", 1,
               "fp16.enabled = \"auto\"", "not supported by vktrain");
    /* JSON syntax: line and column */
    fails_with("{\n  \"train_batch_size\": 8,\n  \"fp16\": {\"enabled\": tru}\n}", 1,
               "ds.json: line 3", "column");
    fails_with("{\"train_batch_size\": 8, \"train_batch_size\": 9}", 1, "duplicate", NULL);
    fails_with("[1, 2]", 1, "must be a JSON object", NULL);
    fails_with("", 1, "invalid JSON", NULL);
    fails_with("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true}, \"bf16\": {\"enabled\": "
               "true}}", 1, "both true", NULL);
    fails_with("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adamm\"}}", 1,
               "optimizer.type = \"Adamm\"", "\"Adam\", \"AdamW\" or \"SGD\"");
    fails_with("{\"train_batch_size\": 8, \"optimizer\": {\"params\": {}}}", 1,
               "optimizer.type is missing", NULL);
    fails_with("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": "
               "{\"betas\": [0.9]}}}", 1, "optimizer.params.betas = [0.9]", "[beta1, beta2]");
    fails_with("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"SGD\", \"params\": "
               "{\"lr\": 0.1, \"nesterov\": true}}}", 1, "nesterov", "momentum > 0");
    fails_with("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"warmuplr\"}}", 1,
               "case-sensitive", "\"WarmupLR\"");
    fails_with("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupDecayLR\"}}", 1,
               "total_num_steps is missing", NULL);
    fails_with("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": "
               "{\"warmup_type\": \"cosine\"}}}", 1, "warmup_type = \"cosine\"", "\"linear\"");
    fails_with("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupCosineLR\", "
               "\"params\": {\"total_num_steps\": 10, \"warmup_num_steps\": 10}}}", 1,
               "ds.json", "total_num_steps = 10 must be greater");
    fails_with("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupCosineLR\", "
               "\"params\": {\"total_num_steps\": 100, \"warmup_max_lr\": 0.1}}}", 1,
               "scheduler.params.warmup_max_lr is a parameter of WarmupLR and WarmupDecayLR",
               "cos_min_ratio");
    fails_with("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", "
               "\"params\": {\"total_num_steps\": 100}}}", 1, "not of WarmupLR", NULL);
    fails_with("{\"train_batch_size\": 8, \"vktrain\": {\"backend\": \"mpi\"}}", 1,
               "vktrain.backend = \"mpi\"", "\"verbs\"");
    fails_with("{\"train_batch_size\": 8, \"vktrain\": {\"devices\": []}}", 1,
               "vktrain.devices = []", NULL);
    fails_with("{\"train_batch_size\": 8, \"vktrain\": {\"comm_timeout_s\": 0}}", 1,
               "vktrain.comm_timeout_s = 0", NULL);
    fails_with("{\"train_batch_size\": 8, \"vktrain\": {\"gpu_timeout_s\": -1}}", 1,
               "vktrain.gpu_timeout_s = -1", NULL);
    fails_with("{\"train_batch_size\": 8, \"vktrain\": {\"metrics_file\": \"\"}}", 1,
               "vktrain.metrics_file", NULL);
    /* bad options */
    vkt_config *c = NULL;
    vkt_config_opts o = VKT_CONFIG_OPTS_INIT;
    o.world_size = 0;
    assert_int_equal(vkt_config_parse("{}", 2, &o, &c), VKT_ERR_INVALID_ARG);
    o.world_size = 1;
    o.struct_size = 3;
    assert_int_equal(vkt_config_parse("{}", 2, &o, &c), VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_config_parse("{}", 2, NULL, NULL), VKT_ERR_INVALID_ARG);
    /* files: a missing one is an I/O error naming it */
    assert_int_equal(vkt_config_load("/nonexistent/ds_config.json", NULL, &c), VKT_ERR_IO);
    assert_non_null(strstr(vkt_last_error(), "/nonexistent/ds_config.json"));
    assert_null(c);
}

static void unknown_keys(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    vkt_config_opts o = VKT_CONFIG_OPTS_INIT;
    o.warn_stream = f;
    const char *text = "{\"train_batch_size\": 8, \"trian_micro_batch_size_per_gpu\": 8,"
                       " \"stage\": 2, \"frobnicate\": 1,"
                       " \"zero_optimization\": {\"stgae\": 2, \"overlap_com\": true},"
                       " \"optimizer\": {\"type\": \"AdamW\","
                       " \"params\": {\"lr\": 1e-4, \"beta\": [0.9, 0.95]}},"
                       " \"vktrain\": {\"backnd\": \"tcp\"}}";
    vkt_config *c = NULL;
    assert_int_equal(vkt_config_parse(text, strlen(text), &o, &c), VKT_OK);
    fclose(f);
    assert_true(has_warning(c, "trian_micro_batch_size_per_gpu: unknown key",
                            "did you mean 'train_micro_batch_size_per_gpu'"));
    assert_true(has_warning(c, "stage: unknown key", "did you mean 'zero_optimization.stage'"));
    assert_true(has_warning(c, "frobnicate: unknown key, ignored", NULL));
    assert_false(has_warning(c, "frobnicate", "did you mean"));
    assert_true(has_warning(c, "zero_optimization.stgae: unknown key", "did you mean 'stage'"));
    assert_true(has_warning(c, "zero_optimization.overlap_com:", "'overlap_comm'"));
    assert_true(has_warning(c, "optimizer.params.beta:", "'betas'"));
    assert_true(has_warning(c, "vktrain.backnd:", "'backend'"));
    assert_int_equal(c->warning_count, 7);
    /* the stream got the same warnings, one line each; none is printed without one */
    assert_non_null(strstr(buf, "vktrain: warning: config: zero_optimization.stgae"));
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 7);
    free(buf);
    assert_int_equal(c->zero.stage, 0); /* the misspelt stage did not count */
    vkt_config_destroy(c);
    assert_int_equal(vkt__cfg_edit_distance("stgae", "stage"), 1);
    assert_int_equal(vkt__cfg_edit_distance("Stage", "stage"), 0);
    assert_int_equal(vkt__cfg_edit_distance("abc", "xyz"), 3);
}

/* The not-supported table: errors where the math or memory would change,
 * warnings where it would not, silence for values that ask for nothing. */
static void not_supported(void **state)
{
    (void)state;
    fails_with("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 2, "
               "\"offload_optimizer\": {\"device\": \"cpu\", \"pin_memory\": true}}}", 1,
               "zero_optimization.offload_optimizer = {\"device\":\"cpu\"",
               "not supported by vktrain");
    fails_with("{\"train_batch_size\": 8, \"zero_optimization\": {\"stage\": 3, "
               "\"offload_param\": {\"device\": \"nvme\"}}}", 1, "offload_param",
               "not supported by vktrain");
    fails_with("{\"train_batch_size\": 8, \"zero_optimization\": {\"cpu_offload\": true}}", 1,
               "cpu_offload = true", "not supported by vktrain");
    fails_with("{\"train_batch_size\": 8, \"activation_checkpointing\": "
               "{\"partition_activations\": true}}", 1, "activation_checkpointing",
               "not supported by vktrain");
    fails_with("{\"train_batch_size\": 8, \"fp16\": {\"enabled\": true, "
               "\"fp16_master_weights_and_grads\": true}}", 1, "fp16.fp16_master_weights_and_grads",
               "not supported by vktrain");
    fails_with("{\"train_batch_size\": 8, \"amp\": {\"enabled\": true, \"opt_level\": \"O1\"}}", 1,
               "amp", "not supported by vktrain");
    fails_with("{\"train_batch_size\": 8, \"zero_optimization\": {\"mics_shard_size\": 4}}", 1,
               "mics_shard_size = 4", "not supported by vktrain");
    fails_with("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": "
               "{\"last_batch_iteration\": 5}}}", 1, "last_batch_iteration = 5", "not supported");
    fails_with("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Lamb\"}}", 1,
               "optimizer.type = \"Lamb\": not supported by vktrain", NULL);
    fails_with("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"OneCycle\"}}", 1,
               "scheduler.type = \"OneCycle\": not supported by vktrain", NULL);
    fails_with("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": "
               "{\"amsgrad\": true}}}", 1, "optimizer.params.amsgrad", "not supported by vktrain");
    /* warnings: ignoring them keeps the math */
    vkt_config *c = parse("{\"train_batch_size\": 8, \"flops_profiler\": {\"enabled\": true},"
                          " \"memory_breakdown\": true, \"tensorboard\": {\"enabled\": true,"
                          " \"output_path\": \"tb\"}, \"zero_optimization\": {\"stage\": 1,"
                          " \"sub_group_size\": 1e8, \"round_robin_gradients\": true}}");
    assert_true(has_warning(c, "flops_profiler: not supported by vktrain", "math unchanged"));
    assert_true(has_warning(c, "memory_breakdown: not supported by vktrain", NULL));
    assert_true(has_warning(c, "tensorboard: not supported by vktrain", "metrics_file"));
    assert_true(has_warning(c, "zero_optimization.sub_group_size: not supported by vktrain", NULL));
    assert_true(has_warning(c, "zero_optimization.round_robin_gradients", NULL));
    assert_int_equal(c->warning_count, 5);
    assert_int_equal(c->zero.stage, 1);
    vkt_config_destroy(c);
    /* values that ask for nothing: quiet */
    c = parse("{\"train_batch_size\": 8, \"memory_breakdown\": false, \"flops_profiler\": "
              "{\"enabled\": false, \"profile_step\": 1}, \"activation_checkpointing\": "
              "{\"partition_activations\": false, \"cpu_checkpointing\": false, "
              "\"number_checkpoints\": null}, \"zero_optimization\": {\"stage\": 2, "
              "\"offload_optimizer\": {\"device\": \"none\"}, \"cpu_offload\": false, "
              "\"sub_group_size\": 1e9, \"mics_shard_size\": -1, \"ignore_unused_parameters\": "
              "true}, \"scheduler\": {\"type\": \"WarmupLR\", \"params\": "
              "{\"last_batch_iteration\": -1}}, \"gradient_predivide_factor\": 1.0}");
    if (c->warning_count) fail_msg("unexpected warning: %s", c->warnings[0]);
    vkt_config_destroy(c);
}

/* Adam is AdamW unless adam_w_mode is false; names are case-insensitive. */
static void optimizer_and_scheduler(void **state)
{
    (void)state;
    vkt_config *c = parse("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"adam\", "
                          "\"params\": {\"lr\": 3e-4}}, \"scheduler\": {\"type\": \"WarmupLR\"}}");
    assert_int_equal(c->optimizer.type, VKT_OPTIM_ADAMW);
    assert_true(c->optimizer.lr == 3e-4);
    assert_int_equal(c->scheduler.kind, VKT_LR_WARMUP);
    assert_true(c->scheduler.warmup_max_lr == 3e-4); /* WarmupLR: the optimizer's lr */
    assert_int_equal(c->scheduler.warmup_num_steps, 1000);
    vkt_config_destroy(c);
    c = parse("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"ADAM\", \"params\": "
              "{\"adam_w_mode\": false, \"weight_decay\": 0.01}}}");
    assert_int_equal(c->optimizer.type, VKT_OPTIM_ADAM);
    assert_true(c->optimizer.weight_decay == 0.01);
    vkt_config_destroy(c);
    c = parse("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"SGD\", \"params\": "
              "{\"lr\": 0.1, \"momentum\": 0.9, \"nesterov\": true, \"weight_decay\": 5e-4}}}");
    assert_int_equal(c->optimizer.type, VKT_OPTIM_SGD);
    assert_true(c->optimizer.momentum == 0.9 && c->optimizer.nesterov);
    vkt_config_destroy(c);
    c = parse("{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": "
              "{\"lr\": 2e-3}}, \"scheduler\": {\"type\": \"WarmupCosineLR\", \"params\": "
              "{\"total_num_steps\": 1000, \"warmup_num_steps\": 100, \"warmup_min_ratio\": 0.1,"
              " \"cos_min_ratio\": 0.01, \"warmup_type\": \"linear\"}}}");
    assert_int_equal(c->scheduler.kind, VKT_LR_WARMUP_COSINE);
    assert_true(c->scheduler.lr == 2e-3);
    assert_true(fabs(vkt_lr_at(&c->scheduler, 50) - 2e-3 * 0.55) < 1e-15);
    assert_true(fabs(vkt_lr_at(&c->scheduler, 999) - 2e-3 * 0.01) < 1e-15);
    vkt_config_destroy(c);
    c = parse("{\"train_batch_size\": 8, \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": "
              "{\"total_num_steps\": 100, \"warmup_num_steps\": 1}}}");
    assert_int_equal(c->scheduler.warmup_num_steps, 2); /* DeepSpeed's max(2, n) */
    assert_true(c->scheduler.warmup_max_lr == 1e-3);
    assert_true(has_warning(c, "warmup_num_steps = 1 raised to 2", NULL));
    vkt_config_destroy(c);
}

/* Examples from DeepSpeed's documentation (config-json and the ZeRO tutorial). */
static void deepspeed_examples(void **state)
{
    (void)state;
    const char *docs =
        "{\n"
        "  \"train_batch_size\": 32,\n"
        "  \"gradient_accumulation_steps\": 1,\n"
        "  \"optimizer\": {\n"
        "    \"type\": \"Adam\",\n"
        "    \"params\": {\"lr\": 0.001, \"betas\": [0.8, 0.999], \"eps\": 1e-8,\n"
        "               \"weight_decay\": 3e-7}\n"
        "  },\n"
        "  \"scheduler\": {\n"
        "    \"type\": \"WarmupLR\",\n"
        "    \"params\": {\"warmup_min_lr\": 0, \"warmup_max_lr\": 0.001,\n"
        "               \"warmup_num_steps\": 1000}\n"
        "  },\n"
        "  \"fp16\": {\"enabled\": true, \"loss_scale\": 0, \"initial_scale_power\": 32,\n"
        "           \"loss_scale_window\": 1000, \"hysteresis\": 2, \"min_loss_scale\": 1},\n"
        "  \"gradient_clipping\": 1.0,\n"
        "  \"zero_optimization\": {\n"
        "    \"stage\": 2, \"allgather_partitions\": true, \"allgather_bucket_size\": 5e8,\n"
        "    \"overlap_comm\": false, \"reduce_scatter\": true, \"reduce_bucket_size\": 5e8,\n"
        "    \"contiguous_gradients\": true\n"
        "  },\n"
        "  \"steps_per_print\": 100,\n"
        "  \"wall_clock_breakdown\": false\n"
        "}\n";
    vkt_config *c = parse_w(docs, 4, VKT_OK);
    assert_int_equal(c->train_micro_batch_size_per_gpu, 8);
    assert_int_equal(c->optimizer.type, VKT_OPTIM_ADAMW);
    assert_true(c->optimizer.beta1 == 0.8 && c->optimizer.beta2 == 0.999);
    assert_true(c->optimizer.weight_decay == 3e-7);
    assert_true(c->fp16);
    assert_int_equal(c->fp16_scaler.initial_scale_power, 32);
    assert_true(c->gradient_clipping == 1.0);
    assert_int_equal(c->zero.stage, 2);
    assert_int_equal(c->zero.reduce_bucket_size, 500000000);
    assert_int_equal(c->steps_per_print, 100);
    assert_int_equal(c->warning_count, 0);
    vkt_config_destroy(c);
    /* the ZeRO-3 tutorial's settings (without its offload) */
    const char *z3 = "{\"train_micro_batch_size_per_gpu\": 2, \"bf16\": {\"enabled\": true},"
                     " \"zero_optimization\": {\"stage\": 3, \"contiguous_gradients\": true,"
                     " \"stage3_max_live_parameters\": 1e9, \"stage3_max_reuse_distance\": 1e9,"
                     " \"stage3_prefetch_bucket_size\": 1e7,"
                     " \"stage3_param_persistence_threshold\": 1e5, \"reduce_bucket_size\": 1e7,"
                     " \"sub_group_size\": 1e9}}";
    c = parse_w(z3, 8, VKT_OK);
    assert_int_equal(c->train_batch_size, 16);
    assert_true(c->bf16);
    assert_int_equal(c->zero.stage, 3);
    assert_true(c->zero.overlap_comm);
    assert_int_equal(c->zero.prefetch_bucket_size, 10000000);
    assert_int_equal(c->zero.max_live_parameters, 1000000000);
    assert_int_equal(c->warning_count, 0);
    vkt_config_destroy(c);
    /* a Hugging Face Trainer template: "auto" is named as not supported */
    fails_with("{\"fp16\": {\"enabled\": \"auto\"}, \"train_batch_size\": \"auto\"}", 1,
               "\"auto\": not supported by vktrain", NULL);
}

/* to_json writes every key; parsing it back gives the same config, quietly. */
/* vktrain.check_replicas_every: a whole number of updates, 0 = off; kept by
 * the JSON form (the engine re-parses that form of a parsed config). */
static void check_replicas_every(void **state)
{
    (void)state;
    vkt_config *c = parse("{\"train_batch_size\": 8, \"vktrain\": {\"check_replicas_every\": 25}}");
    assert_int_equal(c->check_replicas_every, 25);
    assert_int_equal(c->warning_count, 0);
    char *json = NULL;
    assert_int_equal(vkt_config_to_json(c, &json), VKT_OK);
    assert_non_null(strstr(json, "\"check_replicas_every\": 25"));
    vkt_config *b = parse(json);
    assert_int_equal(b->check_replicas_every, 25);
    vkt_free(json);
    vkt_config_destroy(b);
    vkt_config_destroy(c);
    c = parse("{\"train_batch_size\": 8, \"vktrain\": {\"check_replicas_every\": 0}}");
    assert_int_equal(c->check_replicas_every, 0);
    vkt_config_destroy(c);
    c = parse("{\"train_batch_size\": 8, \"vktrain\": {\"check_replicas_every\": 1e3}}");
    assert_int_equal(c->check_replicas_every, 1000); /* 1e3 is an integer to DeepSpeed */
    vkt_config_destroy(c);
    static const char *const bad[] = {"\"10\"", "-1", "2.5", "true", "[1]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[128], key[64];
        snprintf(text, sizeof text,
                 "{\"train_batch_size\": 8, \"vktrain\": {\"check_replicas_every\": %s}}", bad[i]);
        snprintf(key, sizeof key, "vktrain.check_replicas_every = %s", bad[i]);
        fails_with(text, 1, key, "expected an integer >= 0");
    }
    fails_with("{\"train_batch_size\": 8, \"vktrain\": {\"check_replicas_every\": \"auto\"}}",
               1, "vktrain.check_replicas_every = \"auto\"", "not supported by vktrain");
    c = parse("{\"train_batch_size\": 8, \"vktrain\": {\"check_replica_every\": 5}}");
    assert_int_equal(c->check_replicas_every, 0);
    assert_true(has_warning(c, "vktrain.check_replica_every", "'check_replicas_every'"));
    vkt_config_destroy(c);
}

static void round_trip(void **state)
{
    (void)state;
    const char *text = "{\"train_batch_size\": 12, \"gradient_accumulation_steps\": 2,"
                       " \"optimizer\": {\"type\": \"SGD\","
                       " \"params\": {\"lr\": 0.0333333333333333,"
                       " \"momentum\": 0.9}}, \"scheduler\": {\"type\": \"WarmupDecayLR\","
                       " \"params\": {\"total_num_steps\": 500, \"warmup_num_steps\": 50}},"
                       " \"fp16\": {\"enabled\": true, \"loss_scale\": 128},"
                       " \"zero_optimization\": {\"stage\": 1},"
                       " \"vktrain\": {\"backend\": \"shm\", \"devices\": [0, \"llvmpipe\"],"
                       " \"rank_batch\": [2, 4], \"metrics_file\": \"m.jsonl\", \"seed\": 7,"
                       " \"allow_unauthenticated\": true, \"comm_timeout_s\": 30,"
                       " \"gpu_timeout_s\": 45.5}}";
    vkt_config *a = parse_w(text, 2, VKT_OK), *b = NULL;
    char *json = NULL, *json2 = NULL;
    assert_int_equal(vkt_config_to_json(a, &json), VKT_OK);
    vkt_config_opts o = VKT_CONFIG_OPTS_INIT;
    o.world_size = 2;
    assert_int_equal(vkt_config_parse(json, strlen(json), &o, &b), VKT_OK);
    assert_int_equal(b->warning_count, 0);
    assert_int_equal(vkt_config_to_json(b, &json2), VKT_OK);
    assert_string_equal(json, json2);
    assert_int_equal(b->train_batch_size, 12);
    assert_int_equal(b->rank_batch[1], 4);
    assert_int_equal(b->backend, VKT_CONFIG_BACKEND_SHM);
    assert_int_equal(b->device_count, 2);
    assert_string_equal(b->devices[0], "0");
    assert_string_equal(b->devices[1], "llvmpipe");
    assert_string_equal(b->metrics_file, "m.jsonl");
    assert_int_equal(b->seed, 7);
    assert_true(b->gpu_timeout_s == 45.5);
    assert_true(b->fp16_scaler.loss_scale == 128);
    assert_int_equal(b->scheduler.total_num_steps, 500);
    assert_int_equal(b->optimizer.type, VKT_OPTIM_SGD);
    assert_true(b->optimizer.lr == a->optimizer.lr); /* bit for bit (17 digits) */
    assert_true(b->optimizer.momentum == a->optimizer.momentum);
    vkt_free(json);
    vkt_free(json2);
    vkt_config_destroy(a);
    vkt_config_destroy(b);
    assert_int_equal(vkt_config_to_json(NULL, &json), VKT_ERR_INVALID_ARG);
    assert_string_equal(vkt_config_backend_name(VKT_CONFIG_BACKEND_VERBS), "verbs");
    assert_string_equal(vkt_config_backend_name((vkt_config_backend)99), "invalid");
}

/* Every allocation failure gives NOMEM with nothing leaked (asan checks). */
static int fail_at, calls;
static void *fa_alloc(void *u, size_t n) { (void)u; return ++calls == fail_at ? NULL : malloc(n); }
static void *fa_realloc(void *u, void *p, size_t n)
{
    (void)u;
    return ++calls == fail_at ? NULL : realloc(p, n);
}
static void fa_free(void *u, void *p) { (void)u; free(p); }

static void allocation_failures(void **state)
{
    (void)state;
    const char *text = "{\"train_batch_size\": 8, \"frob\": 1, \"flops_profiler\": {\"x\": 1},"
                       " \"vktrain\": {\"devices\": [0, 1], \"metrics_file\": \"m\"}}";
    vkt_allocator a = {fa_alloc, fa_realloc, fa_free, NULL};
    int nomem = 0, ok = 0;
    for (fail_at = 1; fail_at < 40; fail_at++) {
        calls = 0;
        vkt_config *c = NULL;
        char *json = NULL;
        vkt_set_allocator(&a);
        vkt_status st = vkt_config_parse(text, strlen(text), NULL, &c);
        vkt_status js = st == VKT_OK ? vkt_config_to_json(c, &json) : VKT_OK;
        vkt_free(json);
        vkt_config_destroy(c);
        vkt_set_allocator(NULL);
        assert_true(st == VKT_OK || st == VKT_ERR_NOMEM);
        assert_true(js == VKT_OK || js == VKT_ERR_NOMEM);
        if (st == VKT_ERR_NOMEM) assert_null(c);
        nomem += st == VKT_ERR_NOMEM || js == VKT_ERR_NOMEM;
        ok += st == VKT_OK && js == VKT_OK;
    }
    assert_true(nomem > 5);
    assert_true(ok > 0);
}

/* Byte mutations of valid configs (a seeded fuzz run): every result is OK or
 * INVALID_ARG with a message, never a crash (asan and ubsan watch). */
static void mutations(void **state)
{
    (void)state;
    const char *seeds[] = {
        "{\"train_batch_size\": 32, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": "
        "1e-3, \"betas\": [0.9, 0.99]}}, \"scheduler\": {\"type\": \"WarmupCosineLR\", "
        "\"params\": {\"total_num_steps\": 100}}, \"fp16\": {\"enabled\": true}}",
        "{\"train_micro_batch_size_per_gpu\": 2, \"zero_optimization\": {\"stage\": 3, "
        "\"offload_param\": {\"device\": \"none\"}}, \"vktrain\": {\"devices\": [0, \"x\"], "
        "\"rank_batch\": [1, 2], \"backend\": \"shm\"}}",
    };
    static const char alphabet[] = "{}[]\":,0123456789.-eE truefalsenull\"auto\"x";
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 3000; iter++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", seeds[iter % 2]);
        size_t n = strlen(buf);
        for (int k = 0; k < 1 + iter % 4; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t at = (size_t)(rng % n);
            buf[at] = alphabet[(rng >> 32) % (sizeof alphabet - 1)];
        }
        vkt_config_opts o = VKT_CONFIG_OPTS_INIT;
        o.world_size = 2;
        vkt_config *c = NULL;
        vkt_status st = vkt_config_parse(buf, n, &o, &c);
        assert_true(st == VKT_OK || st == VKT_ERR_INVALID_ARG);
        if (st != VKT_OK) assert_true(strlen(vkt_last_error()) > 10);
        char *json = NULL;
        if (st == VKT_OK) assert_int_equal(vkt_config_to_json(c, &json), VKT_OK);
        vkt_free(json);
        vkt_config_destroy(c);
        ok += st == VKT_OK;
        bad += st != VKT_OK;
    }
    print_message("mutations: %d parsed, %d refused\n", ok, bad);
    assert_true(ok > 0 && bad > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),          cmocka_unit_test(batch_identity),
        cmocka_unit_test(rank_batch),        cmocka_unit_test(error_classes),
        cmocka_unit_test(unknown_keys),      cmocka_unit_test(not_supported),
        cmocka_unit_test(optimizer_and_scheduler), cmocka_unit_test(deepspeed_examples),
        cmocka_unit_test(round_trip),        cmocka_unit_test(allocation_failures),
        cmocka_unit_test(mutations),         cmocka_unit_test(check_replicas_every),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
