/* vktrain — the training engine: one model trained by the ranks of a
 * communicator, configured by a DeepSpeed JSON file.
 *
 * Usage, per rank (each rank runs the same calls, as with DeepSpeed):
 *
 *     vkt_engine_opts o = VKT_ENGINE_OPTS_INIT;
 *     o.model = model; o.comm = comm; o.config_path = "ds_config.json";
 *     vkt_engine_create(&o, &e);
 *     for (each micro-batch of this rank) {
 *         vkt_engine_forward(e, &batch, &loss);
 *         vkt_engine_backward(e);
 *         vkt_engine_step(e);  // updates only at an accumulation boundary
 *     }
 *
 * Semantics (DeepSpeed's):
 *   - a global batch is train_batch_size samples: every rank's micro-batch
 *     (train_micro_batch_size_per_gpu, or vktrain.rank_batch[rank]) times
 *     gradient_accumulation_steps;
 *   - the loss is a mean over the global batch: each micro-batch's gradients
 *     are divided by the global batch's target count (samples; for the GPT,
 *     sequences × seq_len positions, including positions labelled -1, unless
 *     the batch gives loss_denominator) and summed across micro-batches and
 *     ranks, so uneven per-rank batches weigh each sample the same, and the
 *     update equals one process running the whole global batch;
 *   - step() counts micro-batches and applies the update at every
 *     gradient_accumulation_steps-th call: gradients are reduced, checked
 *     for fp16 overflow (a non-finite gradient on any rank skips the step on
 *     every rank and shrinks the loss scale), clipped to gradient_clipping by
 *     global norm, and the optimizer runs with the scheduled learning rate;
 *   - DDP (zero stage 0): the flat gradient buffer is cut into buckets of
 *     reduce_bucket_size elements; the backward runs in segments, and each
 *     bucket's all-reduce starts as soon as its segment has finished, while
 *     the rest of the backward runs. On a device whose memory the host
 *     cannot map (a discrete GPU) each segment also copies the buckets it
 *     finalises into a host-visible staging buffer, which the host reduces,
 *     and the result is uploaded after the last bucket;
 *   - ZeRO stages 1 and 2 (equal counts, as DeepSpeed pads its partitions):
 *     at world > 1 the flat buffer is laid out again in buckets of whole
 *     parameters (about reduce_bucket_size elements; a longer parameter is
 *     a bucket of its own), each padded to a multiple of world x 64
 *     elements, and rank r owns the r-th 1/world of every bucket, so every
 *     reduce-scatter and all-gather has equal counts and every rank's shard
 *     the same length (vkt_model_param_info's offsets change accordingly).
 *     A rank keeps optimizer state (and, for f16/bf16 models, the fp32
 *     master weights) for its shard only and updates it, then the updated
 *     parameters are all-gathered bucket by bucket. Stage 2 also keeps
 *     only its shard of the gradients: the
 *     backward of every micro-batch writes each bucket into one of a few
 *     slots (a bucket's slot is reused two segments after it was final, so
 *     each reduce-scatter overlaps one segment; the GPT's tied wte holds
 *     one for the whole backward), each bucket is reduce-scattered out of
 *     its slot and this rank's part is added into its gradient shard, as
 *     DeepSpeed reduces every micro-batch at stage 2. Gradient memory per
 *     rank is the shard plus the slots (vkt_model_memory_report).
 *   - ZeRO stage 3 (world > 1): stage 2, and each rank also keeps only its
 *     shard of the parameters (the compute copy; for fp32 models the
 *     master weights, which are the copy). The forward and the backward
 *     run in segments; before a segment starts, the parameter groups it
 *     reads (the gradient buckets, whole parameters) are all-gathered into
 *     a few gather slots, the next segment's while this one runs (a slot
 *     is reused two segments after its last reader). After the update each
 *     rank keeps its updated shard (no all-gather). Evaluation goes through
 *     vkt_engine_eval. At world 1 stage 3 trains as stage 2;
 *   - fp32 and bf16 have no loss scaling: a non-finite gradient stops
 *     training with VKT_ERR_NUMERIC naming the update;
 *   - ranks on different kinds of device (name, driver) round differently,
 *     so then the update always runs sharded (each rank updates its part,
 *     then all-gather), as at ZeRO-1, which keeps the replicas identical;
 *   - parameters are broadcast from rank 0 at create;
 *   - with vktrain.check_replicas_every N, after every N-th update the
 *     ranks compare XXH3 hashes of each parameter of their replicas (one
 *     small all-gather; at stage 3, of the copy each rank all-gathers for
 *     the check); a difference fails step() with
 *     VKT_ERR_NUMERIC on every rank, naming the ranks, the first parameter
 *     and the update;
 *   - with vktrain.metrics_file set, rank 0 appends one JSON line per
 *     update: {"step", "loss", "lr", "grad_norm", "loss_scale", "skipped",
 *     "samples", "samples_per_s"} (the loss is the global batch's mean).
 *
 * The engine shards the model it is given (ZeRO): after it, use the model
 * only through the engine. A failed vkt_engine_load leaves the engine in an
 * undefined state (weights may be loaded, optimizer state not): destroy it.
 *
 * Thread safety: one engine is used by one thread. */
#ifndef VKTRAIN_ENGINE_H
#define VKTRAIN_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "vktrain/comm.h"
#include "vktrain/config.h"
#include "vktrain/export.h"
#include "vktrain/nn.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkt_engine vkt_engine;

typedef struct vkt_engine_opts {
    uint32_t struct_size; /* set by VKT_ENGINE_OPTS_INIT */
    vkt_model *model;     /* borrowed; its dtype must match fp16/bf16 of the config */
    vkt_comm *comm;       /* borrowed; NULL: one process */
    /* The configuration, exactly one of: a parsed config (borrowed, copied
     * by create; its world_size must be the communicator's), JSON text, or a
     * file path. */
    const vkt_config *config;
    const char *config_json;
    const char *config_path;
    /* Config warnings are printed here by rank 0 (NULL: stderr). */
    FILE *warn_stream;
    /* Rank 0 prints a progress line here every steps_per_print updates
     * (update, loss averaged over the global batch, lr, grad norm, loss
     * scale, samples/s). NULL: silent. */
    FILE *progress_stream;
} vkt_engine_opts;

#define VKT_ENGINE_OPTS_INIT                                                       \
    {                                                                              \
        sizeof(vkt_engine_opts), NULL, NULL, NULL, NULL, NULL, NULL, NULL          \
    }

/* Collective over the communicator's ranks. Checks the config against the
 * model (dtype, zero stage), cuts gradient buckets, broadcasts rank 0's
 * parameters. Returns VKT_ERR_INVALID_ARG (config errors name the key),
 * VKT_ERR_UNSUPPORTED (a feature this build lacks, named), transport and
 * device errors. */
VKT_API vkt_status vkt_engine_create(const vkt_engine_opts *opts, vkt_engine **out);
/* Not collective. Accepts NULL. The model and comm are not destroyed. */
VKT_API void vkt_engine_destroy(vkt_engine *e);

/* Forward of this rank's micro-batch: b->size must be this rank's micro
 * batch size (VKT_ERR_INVALID_ARG otherwise); b->loss_denominator is set by
 * the engine unless the caller gave one. *loss (may be NULL): the mean loss
 * of this micro-batch. Dropout trains with step = global_steps and, unless
 * the caller set b->first_sample (nonzero), first_sample = this micro-batch's
 * place in the run: global_samples + micro_step × (Σ of the ranks'
 * micro-batches) + the micro-batches of the lower ranks, so the masks match
 * one process running the whole global batch; vkt_engine_eval turns dropout
 * off. */
VKT_API vkt_status vkt_engine_forward(vkt_engine *e, const vkt_batch *b, float *loss);
/* Forward only, for evaluation: the loss (may be NULL) is this batch's own
 * mean, nothing is counted, and no backward may follow (read the outputs
 * with vkt_model_get_outputs). Any batch size (a new size records the model
 * again). Between updates only. Under ZeRO-3 it is collective: every rank
 * must evaluate the same number of batches (pad a short share with batches
 * whose labels are all -1). */
VKT_API vkt_status vkt_engine_eval(vkt_engine *e, const vkt_batch *b, float *loss);
/* Backward of the last forward; at an accumulation boundary it also starts
 * the gradient reduction (overlapped with the backward itself). */
VKT_API vkt_status vkt_engine_backward(vkt_engine *e);
/* Count the micro-batch; at an accumulation boundary, finish the reduction
 * and update (or skip on fp16 overflow). VKT_ERR_NUMERIC when the fp16 loss
 * scale would have to drop below min_loss_scale: the message says at which
 * step and suggests bf16; also when the replica check finds ranks whose
 * parameters differ (vktrain.check_replicas_every). */
VKT_API vkt_status vkt_engine_step(vkt_engine *e);

/* Whether the next vkt_engine_step will apply an update. */
VKT_API bool vkt_engine_is_boundary(const vkt_engine *e);
/* Learning rate of the next update, the current loss scale (1 without
 * fp16), updates applied or skipped so far (DeepSpeed's global_steps),
 * samples seen by all ranks, steps skipped for overflow. */
VKT_API double vkt_engine_lr(const vkt_engine *e);
VKT_API double vkt_engine_loss_scale(const vkt_engine *e);
VKT_API uint64_t vkt_engine_global_steps(const vkt_engine *e);
VKT_API uint64_t vkt_engine_global_samples(const vkt_engine *e);
VKT_API uint64_t vkt_engine_skipped_steps(const vkt_engine *e);
/* The global gradient norm of the last update (before clipping; Inf or NaN
 * on an overflow). */
VKT_API double vkt_engine_grad_norm(const vkt_engine *e);
/* The resolved configuration (owned by the engine). */
VKT_API const vkt_config *vkt_engine_config(const vkt_engine *e);

/* When each gradient bucket's reduction ran in the last update, in seconds
 * from the start of that backward: recorded when the config has
 * "wall_clock_breakdown": true (or VKT_ENGINE_TIMELINE=1 is set), since
 * it polls the transport while the backward runs. */
typedef struct vkt_bucket_timing {
    uint64_t first, count; /* elements of the flat gradient buffer */
    double ready_s;        /* its backward segment finished */
    double end_s;          /* its reduction finished (as seen by polling) */
} vkt_bucket_timing;
/* Copies up to cap entries (buckets in the order they became ready is
 * bucket order reversed) and returns the number of buckets; *backward_s
 * (may be NULL) gets when the whole backward had finished. 0 without
 * timing. */
VKT_API uint32_t vkt_engine_bucket_timings(const vkt_engine *e, vkt_bucket_timing *out,
                                           uint32_t cap, double *backward_s);

/* Checkpoints (collective; between updates, i.e. not inside a gradient
 * accumulation). save writes run_dir/step-N (N = global steps) with every
 * rank's shard of the fp32 master weights and optimizer state as
 * safetensors, plus index.json with the loss scaler, schedule position,
 * counters and the resolved config, then points run_dir/latest at it. Every
 * file is written atomically and the index commits last, so a crash leaves
 * the previous checkpoint usable. load takes a run directory (its latest)
 * or a step directory, verifies every file's checksum, checks that it holds
 * this model, and re-shards when it was written at another world size or
 * ZeRO stage. A failure on any rank fails the call on every rank. Returns
 * VKT_ERR_IO, VKT_ERR_CORRUPT (damaged or truncated file: the message names
 * it), VKT_ERR_INVALID_ARG (another model or optimizer), VKT_ERR_INVALID_USAGE. */
VKT_API vkt_status vkt_engine_save(vkt_engine *e, const char *run_dir);
VKT_API vkt_status vkt_engine_load(vkt_engine *e, const char *path);

/* Every rank's full fp32 parameters in state_dict order (as
 * vkt_model_get_params), gathered from the shards under ZeRO. Collective. */
VKT_API vkt_status vkt_engine_get_params(vkt_engine *e, float *out);

#ifdef __cplusplus
}
#endif
#endif
