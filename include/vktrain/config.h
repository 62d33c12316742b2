/* vktrain — the training configuration: DeepSpeed's JSON, resolved.
 *
 * A config file is DeepSpeed's ds_config.json with DeepSpeed's key names,
 * defaults and meanings, plus a "vktrain" section for what is ours. Parsing
 * resolves it into one plain struct (every default filled in, the batch
 * identity solved for the given world size), so the engine never looks at JSON.
 *
 * Batch identity (DeepSpeed's rule, world size W):
 *   train_batch_size = train_micro_batch_size_per_gpu × gradient_accumulation_steps × W
 *   all three given: they must agree; any two: the third is derived (it must
 *   divide exactly); train_batch_size alone: accumulation 1; micro batch alone:
 *   accumulation 1; neither train_batch_size nor the micro batch: an error.
 *   With vktrain.rank_batch = [b0, b1, ...] (one per rank, W entries):
 *   train_batch_size = Σ b_i × gradient_accumulation_steps, and
 *   train_micro_batch_size_per_gpu must not be given.
 *
 * Messages:
 *   - an unknown key is a warning naming its path ("zero_optimization.stgae:
 *     unknown key; did you mean 'stage'?");
 *   - a DeepSpeed key vktrain knows but does not implement is a warning when
 *     ignoring it leaves the math and memory the same (e.g. "flops_profiler"),
 *     else an error (e.g. "zero_optimization.offload_optimizer"); both say "not
 *     supported by vktrain". A value that asks for nothing (false, null,
 *     {"device": "none"}, {"enabled": false}, the default) is accepted quietly;
 *   - "auto" (a value the Hugging Face Trainer fills in) is an error wherever
 *     DeepSpeed expects a number or boolean;
 *   - a wrong type or value is VKT_ERR_INVALID_ARG naming the key path, the
 *     value and what is accepted; JSON syntax errors name line and column.
 * Warnings are collected in the result; the library prints them only to the
 * stream named in the options.
 *
 * No Vulkan: this module is usable (and fuzzable) without a device. */
#ifndef VKTRAIN_CONFIG_H
#define VKTRAIN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vktrain/export.h"
#include "vktrain/nn.h"
#include "vktrain/scaler.h"
#include "vktrain/schedule.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* vktrain.backend. The first four have the values of vkt_comm_backend. */
typedef enum vkt_config_backend {
    VKT_CONFIG_BACKEND_AUTO = 0,
    VKT_CONFIG_BACKEND_TCP = 1,
    VKT_CONFIG_BACKEND_SHM = 2,
    VKT_CONFIG_BACKEND_GLOO = 3,
    VKT_CONFIG_BACKEND_VERBS = 4
} vkt_config_backend;

/* "optimizer": DeepSpeed's "Adam" is AdamW (decoupled weight decay) unless
 * params.adam_w_mode is false, as in DeepSpeed; type is resolved to that. */
typedef struct vkt_config_optimizer {
    bool given;              /* false: no "optimizer" section (type is ADAMW, defaults) */
    vkt_optim_type type;     /* SGD, ADAM (L2 weight decay) or ADAMW (decoupled) */
    double lr;               /* 1e-3 */
    double beta1, beta2;     /* betas [0.9, 0.999] */
    double eps;              /* 1e-8 */
    double weight_decay;     /* 0 */
    double momentum;         /* SGD: 0 */
    bool nesterov;           /* SGD: false (needs momentum > 0) */
} vkt_config_optimizer;

/* "zero_optimization" (sizes in elements, as in DeepSpeed). */
typedef struct vkt_config_zero {
    uint32_t stage;                       /* 0..3, default 0 */
    uint64_t reduce_bucket_size;          /* 5e8 */
    uint64_t allgather_bucket_size;       /* 5e8 */
    bool overlap_comm;                    /* default: true at stage 3, else false */
    bool contiguous_gradients;            /* true */
    bool reduce_scatter;                  /* true */
    bool allgather_partitions;            /* true */
    uint64_t prefetch_bucket_size;        /* stage3_prefetch_bucket_size, 5e7 */
    uint64_t param_persistence_threshold; /* stage3_param_persistence_threshold, 1e5 */
    uint64_t max_live_parameters;         /* stage3_max_live_parameters, 1e9 */
    uint64_t max_reuse_distance;          /* stage3_max_reuse_distance, 1e9 */
} vkt_config_zero;

/* The resolved configuration. Created by vkt_config_parse/vkt_config_load,
 * owned by the caller, freed with vkt_config_destroy. Read the fields
 * directly; do not modify the pointers. */
typedef struct vkt_config {
    uint32_t world_size;                     /* the W it was resolved for */
    uint64_t train_batch_size;
    uint64_t train_micro_batch_size_per_gpu; /* 0 when ranks differ (see rank_batch) */
    uint64_t gradient_accumulation_steps;
    vkt_config_optimizer optimizer;
    /* "scheduler": kind and DeepSpeed's parameters; no scheduler: constant lr
     * = optimizer.lr. WarmupCosineLR scales optimizer.lr (copied into lr). */
    bool scheduler_given;
    vkt_lr_schedule scheduler;
    bool fp16;                               /* fp16.enabled */
    vkt_loss_scaler_opts fp16_scaler;        /* fp16.loss_scale (0 = dynamic), ... */
    bool bf16;                               /* bf16.enabled (or "bfloat16") */
    double gradient_clipping;                /* 0 = off */
    vkt_config_zero zero;
    uint64_t steps_per_print;                /* 10 */
    bool wall_clock_breakdown;               /* false */
    /* "vktrain" */
    vkt_config_backend backend;              /* auto */
    uint32_t device_count;                   /* 0: "auto" (LOCAL_RANK's device) */
    char **devices;                          /* selectors, one per local rank */
    double comm_timeout_s;                   /* 300 */
    double gpu_timeout_s;                    /* 300: the engine's waits for its GPU work */
    bool rank_batch_auto;                    /* "auto": split from a timing probe */
    uint64_t *rank_batch;                    /* world_size micro-batch sizes */
    char *metrics_file;                      /* NULL: none */
    bool allow_unauthenticated;              /* false */
    uint64_t seed;                           /* 1234 (DeepSpeed has no seed key) */
    uint64_t check_replicas_every;           /* 0: off; N: compare replicas every N updates */
    /* Warnings, in file order, each one line without a newline. */
    uint32_t warning_count;
    char **warnings;
} vkt_config;

typedef struct vkt_config_opts {
    uint32_t struct_size; /* set by VKT_CONFIG_OPTS_INIT */
    uint32_t world_size;  /* ranks the batch identity is solved for, >= 1 */
    /* Each warning is also written here (one line, "vktrain: config: ...")
     * as it is found, so it shows even when parsing then fails. NULL: silent. */
    FILE *warn_stream;
    /* Names the source in messages ("ds_config.json: line 3, ..."); NULL: "config". */
    const char *source_name;
} vkt_config_opts;

#define VKT_CONFIG_OPTS_INIT                                                       \
    {                                                                              \
        sizeof(vkt_config_opts), 1, NULL, NULL                                     \
    }

/* Parse and resolve len bytes of JSON text (need not be NUL-terminated).
 * opts may be NULL (world size 1, silent). On success *out is a new config;
 * on failure *out is NULL, nothing leaks, and vkt_last_error() names the key
 * path, the value and what is accepted. Returns VKT_ERR_INVALID_ARG (bad JSON,
 * type, value, inconsistent batch, a not-supported key that changes the math),
 * VKT_ERR_NOMEM. Thread-safe; blocks only on warn_stream. */
VKT_API vkt_status vkt_config_parse(const char *json, size_t len, const vkt_config_opts *opts,
                                    vkt_config **out);

/* vkt_config_parse of a file's contents (at most 16 MiB); also VKT_ERR_IO
 * naming the path. source_name defaults to the path. */
VKT_API vkt_status vkt_config_load(const char *path, const vkt_config_opts *opts,
                                   vkt_config **out);

/* Free a config; NULL is a no-op. */
VKT_API void vkt_config_destroy(vkt_config *c);

/* The resolved config as JSON text in DeepSpeed's layout (every key with its
 * effective value, plus "vktrain"), suitable for a checkpoint index or
 * `vktrain config check --json`. *json is vkt_malloc'd, NUL-terminated; free
 * it with vkt_free. Returns VKT_ERR_NOMEM or VKT_ERR_INVALID_ARG (NULL c). */
VKT_API vkt_status vkt_config_to_json(const vkt_config *c, char **json);

/* Names: "auto", "tcp", "shm", "gloo", "verbs"; "invalid" otherwise. Static. */
VKT_API const char *vkt_config_backend_name(vkt_config_backend b);

#ifdef __cplusplus
}
#endif
#endif
