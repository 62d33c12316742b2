/* vktrain — models for one process: build, forward with loss, backward,
 * optimizer step. The engine (distributed training) is built on this.
 *
 * A model is built once as a static list of ops over named tensors. Its
 * parameters live in one flat fp32 buffer of "master" weights (plus a copy in
 * the compute dtype when that is f16/bf16) and its gradients in one flat
 * buffer, each tensor a view padded to an alignment, so that collectives and
 * ZeRO shards are plain ranges. Forward and backward are recorded once per
 * batch size and replayed every step. Gradients accumulate across calls of
 * vkt_model_backward until vkt_model_zero_grad.
 *
 * Parameter order (vkt_model_param_info) is PyTorch's state_dict order of the
 * equivalent torch module, so weights can be exchanged with PyTorch as one
 * flat array: MLP "layers.{i}.weight" [out, in] then "layers.{i}.bias" [out].
 *
 * Thread safety: one model is used by one thread at a time. */
#ifndef VKTRAIN_NN_H
#define VKTRAIN_NN_H

#include <stdbool.h>
#include <stdint.h>

#include "vktrain/dtype.h"
#include "vktrain/export.h"
#include "vktrain/gpu.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkt_model vkt_model;

typedef enum vkt_loss {
    VKT_LOSS_XENT = 0, /* softmax + cross-entropy over class logits, int32 labels */
    VKT_LOSS_MSE = 1,  /* mean squared error against float targets */
} vkt_loss;

typedef enum vkt_activation {
    VKT_ACTIVATION_RELU = 0,
    VKT_ACTIVATION_GELU = 1, /* tanh approximation */
} vkt_activation;

typedef struct vkt_mlp_opts {
    uint32_t struct_size;      /* set by VKT_MLP_OPTS_INIT */
    uint32_t layers;           /* linear layers, ≥ 1 */
    const uint32_t *sizes;     /* layers + 1 widths: input, hidden…, output (borrowed) */
    vkt_activation activation; /* between linear layers, not after the last */
    vkt_loss loss;
    vkt_dtype dtype;           /* compute dtype f32, f16 or bf16 (master weights f32) */
    uint64_t seed;             /* deterministic init (PyTorch's nn.Linear bounds) */
    /* Dropout probability in [0, 1) after each hidden activation (not after
     * the output layer); 0: no dropout nodes at all. See "Dropout" below. */
    float dropout;
} vkt_mlp_opts;

#define VKT_MLP_OPTS_INIT                                                          \
    {                                                                              \
        sizeof(vkt_mlp_opts), 0, NULL, VKT_ACTIVATION_RELU, VKT_LOSS_XENT,         \
            VKT_DTYPE_F32, 0, 0.0f                                                 \
    }

/* Build an MLP on dev (borrowed; must outlive the model). Blocking.
 * Returns VKT_ERR_INVALID_ARG (sizes, dtype), VKT_ERR_UNSUPPORTED,
 * VKT_ERR_NOMEM, VKT_ERR_VULKAN. */
VKT_API vkt_status vkt_model_create_mlp(vkt_device *dev, const vkt_mlp_opts *opts,
                                        vkt_model **out);

/* GPT-2: token + position embedding, pre-LayerNorm blocks of causal
 * self-attention and a GELU MLP (4× width), a final LayerNorm and an output
 * head tied to the token embedding; loss: cross-entropy on next tokens.
 * Init as GPT-2: weights N(0, 0.02), residual projections N(0, 0.02/sqrt(2
 * layers)), biases 0, LayerNorm weights 1. Parameter order (state_dict):
 * wte.weight [V,C], wpe.weight [T,C], then per block h.{l}: ln_1.weight, ln_1.bias,
 * attn.c_attn.weight [3C,C], attn.c_attn.bias, attn.c_proj.weight [C,C],
 * attn.c_proj.bias, ln_2.weight, ln_2.bias, mlp.c_fc.weight [4C,C],
 * mlp.c_fc.bias, mlp.c_proj.weight [C,4C], mlp.c_proj.bias; then ln_f.weight,
 * ln_f.bias.
 * Dropout (p = dropout > 0) where GPT-2 has it: on the embedding sum, and on
 * the output projection of each attention and each MLP block before its
 * residual add. Not on the attention probabilities: GPT-2's attn_pdrop is
 * not implemented (the attention kernels would have to apply and recompute
 * the mask). */
typedef struct vkt_gpt_opts {
    uint32_t struct_size; /* set by VKT_GPT_OPTS_INIT */
    uint32_t vocab;       /* tokens 0..vocab-1 */
    uint32_t context;     /* longest sequence */
    uint32_t layers, heads, channels; /* channels divisible by heads */
    vkt_dtype dtype;      /* compute dtype f32, f16 or bf16 (master weights f32) */
    uint64_t seed;
    float dropout;        /* probability in [0, 1); 0: no dropout nodes at all */
} vkt_gpt_opts;

#define VKT_GPT_OPTS_INIT                                                          \
    {                                                                              \
        sizeof(vkt_gpt_opts), 256, 64, 2, 4, 128, VKT_DTYPE_F32, 0, 0.0f           \
    }

VKT_API vkt_status vkt_model_create_gpt(vkt_device *dev, const vkt_gpt_opts *opts,
                                        vkt_model **out);
VKT_API void vkt_model_destroy(vkt_model *m);

typedef struct vkt_param_info {
    const char *name; /* owned by the model */
    uint32_t ndim;
    uint32_t shape[4];
    uint64_t numel;
    uint64_t offset; /* first element in the flat (padded) parameter buffer */
} vkt_param_info;

/* Number of parameter tensors; their info in state_dict order. */
VKT_API uint32_t vkt_model_param_count(const vkt_model *m);
VKT_API vkt_status vkt_model_param_info(const vkt_model *m, uint32_t i, vkt_param_info *out);
/* Total parameters (without padding). */
VKT_API uint64_t vkt_model_num_params(const vkt_model *m);

/* Parameters (fp32 master weights; setting them also sets the f16/bf16
 * compute copy; VKT_ERR_INVALID_USAGE from get while an engine has sharded
 * the master weights across ranks: use vkt_engine_get_params) and
 * gradients (converted to fp32; VKT_ERR_INVALID_USAGE once an engine's
 * ZeRO-2 keeps only this rank's shard of them) as one dense
 * array of vkt_model_num_params floats in state_dict order, padding
 * removed. Blocking. */
VKT_API vkt_status vkt_model_get_params(vkt_model *m, float *out);
VKT_API vkt_status vkt_model_set_params(vkt_model *m, const float *in);
VKT_API vkt_status vkt_model_get_grads(vkt_model *m, float *out);

/* One micro-batch. MLP: inputs [size, in] floats; targets: labels [size]
 * (XENT, values 0..out-1, or -1 to ignore) or targets_f [size, out] (MSE).
 * GPT: tokens [size, seq_len] and labels [size, seq_len] (the next tokens;
 * -1 ignores a position), seq_len ≤ the model's context. */
typedef struct vkt_batch {
    uint32_t size;
    const float *inputs;
    const int32_t *labels;
    const float *targets_f;
    const int32_t *tokens;
    uint32_t seq_len;
    /* Loss normalisation: the loss is a mean over this many targets — XENT:
     * labels that are not -1 (for the GPT: token positions, not sequences);
     * MSE: samples (multiplied by the output width inside). Set it to the
     * global batch's count when gradients of several micro-batches or ranks
     * are summed. 0: this batch's own count. */
    uint64_t loss_denominator;
    /* Global index of this batch's first sample (MLP) or sequence (GPT) in
     * the run: dropout draws its mask per global sample, so a batch split
     * into micro-batches or across ranks drops what the whole batch would.
     * 0 by default; the engine sets it (see vkt_engine_forward). */
    uint64_t first_sample;
} vkt_batch;

/* Forward pass with loss (blocking; *loss is this batch's share of the mean
 * loss, i.e. sum over this batch / loss_denominator; loss may be NULL).
 * Records the command buffers the first time a (batch size, seq_len) is
 * seen and replays them afterwards. Returns VKT_ERR_INVALID_ARG (missing
 * arrays, a label or token out of range: the message names the position),
 * VKT_ERR_NOMEM, VKT_ERR_UNSUPPORTED (an activation larger than one binding
 * window: use a smaller batch), VKT_ERR_VULKAN; VKT_ERR_INVALID_USAGE on a
 * model whose parameters a ZeRO-3 engine partitioned (use vkt_engine_eval). */
VKT_API vkt_status vkt_model_forward(vkt_model *m, const vkt_batch *b, float *loss);
/* Backward of the last forward: accumulates into the gradients. Blocking.
 * VKT_ERR_INVALID_USAGE without a forward since the last backward. */
VKT_API vkt_status vkt_model_backward(vkt_model *m);
/* After a forward (and before its backward): the outputs that feed the
 * loss, as fp32 — the MLP's logits or predictions [size, width], the GPT's
 * logits [size·seq_len, vocab]. out holds rows × vkt_model_output_width
 * floats. VKT_ERR_INVALID_USAGE without such a forward. */
VKT_API uint32_t vkt_model_output_width(const vkt_model *m);
VKT_API vkt_status vkt_model_get_outputs(vkt_model *m, float *out);
VKT_API vkt_status vkt_model_zero_grad(vkt_model *m);

/* Multiply the loss by scale in the backward (fp16 loss scaling: the
 * gradients come out multiplied by scale; divide them again with
 * vkt_model_step_scaled). Positive and finite; 1 by default. */
VKT_API vkt_status vkt_model_set_loss_scale(vkt_model *m, float scale);

/* ---- Dropout ----
 * Inverted dropout (kept values scaled by 1/(1-p)) whose mask is a pure
 * function of (model seed, step, dropout layer, global sample index, element
 * within the sample): never of the rank, the micro-batch split or the
 * recording, so data-parallel ranks holding slices of one global batch (each
 * batch with its first_sample) drop exactly what one process running the
 * whole batch would, and the backward recomputes the forward's mask. The
 * recorded command buffers read these values from a small host-visible
 * buffer the model writes at each forward, so changing them costs nothing.
 *
 * training true: forwards drop with the model's p, masks keyed by step (use
 * the optimizer update number: a new mask per update). false: evaluation,
 * no dropout (the same numbers as a model built without it). Until the
 * first call a model trains with step = its number of vkt_model_step calls.
 * The engine calls it on every forward (training, its global step) and
 * evaluation. Takes effect at the next forward; a no-op for models built
 * with dropout 0. VKT_ERR_INVALID_ARG for a NULL model. */
VKT_API vkt_status vkt_model_set_dropout(vkt_model *m, bool training, uint64_t step);

/* ---- gradient buckets: backward in segments, for overlapping the
 * all-reduce of finished gradients with the rest of the backward ----
 *
 * The flat gradient buffer (vkt_model_flat_size elements, in the compute
 * dtype; parameter i at vkt_param_info.offset) is split into n buckets:
 * bucket i is [ends[i-1], ends[i]) with ends strictly increasing and the
 * last equal to the flat size (n = 0: one bucket, one segment). The backward
 * is then recorded as segments, each ending right after the node that makes
 * some bucket's gradients final, so each segment is one submit that can
 * signal a timeline semaphore. */
VKT_API uint64_t vkt_model_flat_size(const vkt_model *m);
VKT_API vkt_status vkt_model_set_grad_buckets(vkt_model *m, uint32_t n, const uint64_t *ends);
/* After vkt_model_backward_submit (or vkt_model_backward): the number of
 * segments of that backward, and the segment (0-based, in submit order) at
 * whose end bucket i is final. */
VKT_API uint32_t vkt_model_backward_segments(const vkt_model *m);
VKT_API uint32_t vkt_model_bucket_segment(const vkt_model *m, uint32_t bucket);
/* Submit the backward of the last forward without waiting: segment k
 * signals tl (may be NULL) with base + k + 1 when it completes; at most
 * (number of buckets + 1) segments. Wait with vkt_timeline_wait or
 * vkt_model_backward_wait. The next forward, zero_grad, step, grad_sumsq
 * or get_grads waits for it first (the backward still reads the batch). */
VKT_API vkt_status vkt_model_backward_submit(vkt_model *m, vkt_timeline *tl, uint64_t base);
VKT_API vkt_status vkt_model_backward_wait(vkt_model *m);

/* Σ g² over the accumulated gradients (all of them; under the engine's
 * ZeRO, this rank's shard), as stored (still multiplied by the loss scale),
 * summed on the device in fp32 and on the host in double.
 * Not finite when any gradient is Inf or NaN: the fp16 overflow check.
 * For clipping by global norm: norm = sqrt(sumsq) / loss_scale. Blocking. */
VKT_API vkt_status vkt_model_grad_sumsq(vkt_model *m, double *out);

typedef enum vkt_optim_type {
    VKT_OPTIM_SGD = 0,
    VKT_OPTIM_ADAM = 1,
    VKT_OPTIM_ADAMW = 2,
} vkt_optim_type;

typedef struct vkt_optim_opts {
    uint32_t struct_size; /* set by VKT_OPTIM_OPTS_INIT */
    vkt_optim_type type;
    float beta1, beta2, eps; /* Adam/AdamW */
    float weight_decay;
    float momentum; /* SGD */
    bool nesterov;  /* SGD */
} vkt_optim_opts;

#define VKT_OPTIM_OPTS_INIT                                                        \
    {                                                                              \
        sizeof(vkt_optim_opts), VKT_OPTIM_SGD, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f,    \
            false                                                                  \
    }

/* Apply one optimizer step to the parameters from the accumulated gradients
 * (PyTorch semantics), with learning rate lr (the schedule is the caller's,
 * so lr is an argument, not an option). The optimizer state is created on
 * the first call; the type must not change afterwards (VKT_ERR_INVALID_USAGE).
 * Other hyperparameters may change between steps (re-recorded). Blocking.
 * Returns VKT_ERR_INVALID_ARG for bad options, VKT_ERR_NOMEM, VKT_ERR_VULKAN. */
VKT_API vkt_status vkt_model_step(vkt_model *m, const vkt_optim_opts *opts, float lr);
/* The same with every gradient multiplied by grad_scale first (finite,
 * ≥ 0): 1/loss_scale to undo loss scaling, times the clipping coefficient
 * min(1, max_norm / norm). */
VKT_API vkt_status vkt_model_step_scaled(vkt_model *m, const vkt_optim_opts *opts, float lr,
                                         float grad_scale);

/* Device memory of the model, in bytes. activations_planned is the arena
 * after reuse of buffers whose lifetimes do not overlap; activations_naive
 * what one buffer per tensor would take. */
typedef struct vkt_model_memory {
    uint64_t params, grads, optimizer, activations_planned, activations_naive;
} vkt_model_memory;
VKT_API void vkt_model_memory_report(const vkt_model *m, vkt_model_memory *out);

#ifdef __cplusplus
}
#endif
#endif
