/* Models as static op lists over named tensors (internal).
 *
 * Tensors live in four kinds of storage:
 *   PARAM  views into the flat parameter buffers (fp32 master, the compute
 *          copy, the gradients), laid out once by params.c;
 *   ACT    activations, in one arena whose offsets the planner assigns so
 *          that tensors with disjoint lifetimes share memory;
 *   GRAD   gradients of activations, in the same arena;
 *   INPUT  the batch (host-visible buffers the host writes before a run).
 * Time for the planner: forward of node i is step i, backward of node i is
 * step 2N-1-i, so a forward activation used by a backward op lives until
 * then. */
#ifndef VKT_NN_INT_H
#define VKT_NN_INT_H

#include "ops/ops.h"
#include "vktrain/nn.h"

#define VKT_NN_MAX_IO 4
#define VKT_NN_NONE UINT32_MAX

typedef enum tensor_kind { T_PARAM, T_ACT, T_GRAD, T_INPUT } tensor_kind;

typedef struct nn_tensor {
    char name[48];
    tensor_kind kind;
    vkt_dtype dtype;
    uint32_t ndim;
    uint32_t shape[4];
    uint64_t numel;
    uint64_t offset;     /* PARAM: elements in the flat buffers; ACT/GRAD: bytes in the arena */
    uint32_t grad;       /* ACT/PARAM: id of its gradient tensor (GRAD or PARAM's grad view) */
    int first, last;     /* lifetime in planner steps (ACT/GRAD) */
    vkt_buffer *input;   /* INPUT: its own buffer */
    uint8_t init;        /* PARAM: an init_rule */
    float init_scale;    /* PARAM: the bound (uniform) or standard deviation (normal) */
} nn_tensor;

typedef enum init_rule { INIT_UNIFORM, INIT_NORMAL, INIT_ZEROS, INIT_ONES } init_rule;

/* Node inputs and outputs by kind (VKT_NN_NONE where unused):
 *   LINEAR     in {x [rows,cin], W [cout,cin], bias [cout] | NONE}  out {y [rows,cout]}
 *   ACT        in {x}                              out {y}
 *   ADD        in {a, b}                           out {y}             (residual)
 *   LAYERNORM  in {x [rows,cout], weight, bias}    out {y, mean, rstd}
 *   EMBED      in {tokens, wte [V,C], wpe [T,C]}   out {x [B·T, C]}
 *   ATTENTION  in {qkv [B·T, 3C]}                  out {y [B·T, C], att}  scratch datt
 *   XENT       in {logits [rows,cout], labels}     out {losses [rows]}
 *   MSE        in {pred [rows,cout], targets}      out {partials}
 *   DROPOUT    in {x}                              out {y}   rows = samples (MLP) or
 *              sequences (GPT), cout = elements per sample; `site` picks its key
 * Outputs without a gradient (mean, rstd, att) are saved for the backward. */
typedef enum node_kind {
    N_LINEAR, N_ACT, N_ADD, N_LAYERNORM, N_EMBED, N_ATTENTION, N_MSE, N_XENT, N_DROPOUT
} node_kind;

typedef struct nn_node {
    node_kind kind;
    uint32_t in[VKT_NN_MAX_IO];
    uint32_t out[VKT_NN_MAX_IO];
    uint32_t scratch;            /* a temporary of the backward, or NONE */
    uint32_t rows, cin, cout;    /* LINEAR: x [rows, cin] → y [rows, cout]; others: rows × cout */
    uint32_t b, t_len, heads, vocab;
    float eps;
    vkt_act act;
    uint32_t site;               /* DROPOUT: which dropout layer (its RNG key) */
} nn_node;

typedef struct nn_graph {
    nn_tensor *t;
    uint32_t nt, capt;
    nn_node *n;
    uint32_t nn, capn;
} nn_graph;

/* ---- graph building (graph.c) ---- */
uint32_t vkt__nn_tensor(nn_graph *g, const char *name, tensor_kind kind, vkt_dtype t,
                        uint32_t ndim, const uint32_t *shape);
vkt_status vkt__nn_node(nn_graph *g, nn_node n);
void vkt__nn_graph_free(nn_graph *g);

/* ---- memory planning (plan.c) ----
 * Assign byte offsets to ACT and GRAD tensors: align each to `align`, share
 * memory between tensors whose lifetimes [first, last] do not overlap; none
 * may exceed `window` bytes (one binding). Returns the arena size and
 * what one buffer per tensor would take. */
vkt_status vkt__nn_plan(nn_graph *g, uint64_t align, uint64_t window, uint64_t *arena,
                        uint64_t *naive);

/* ---- the model ---- */
/* One piece of a rank's shard: flat elements [flat, flat + count), kept at
 * [local, local + count) of the buffers that hold the shard only. */
typedef struct nn_piece {
    uint64_t flat, local, count;
} nn_piece;

/* Where flat element `at` of piece p lives in a buffer that holds the shard
 * only (packed) or every element. */
static inline uint64_t vkt__nn_at(const nn_piece *p, bool packed, uint64_t at)
{
    return packed ? p->local + (at - p->flat) : at;
}

struct vkt_model {
    vkt_device *dev;
    vkt_ops *ops;
    nn_graph g;
    vkt_dtype dtype;
    vkt_loss loss;
    vkt_act act;
    bool gpt;
    uint32_t layers, in_features, out_features;
    uint32_t vocab, context, heads, channels; /* GPT */
    uint64_t seed;
    /* parameters */
    uint32_t *param_ids; /* state_dict order */
    char (*param_names)[48]; /* copies that stay put while the graph grows */
    uint32_t nparams;
    uint64_t numel, padded; /* real and padded element counts */
    /* This rank's shard: the optimizer updates (and Σg² covers) these
     * pieces of the flat buffers, and its state holds them packed (piece k
     * at pieces[k].local; shard_len elements in all). One piece, the whole
     * buffer, by default; under ZeRO one piece per bucket, this rank's
     * 1/world of it (vkt__nn_set_shard). */
    nn_piece *pieces;
    uint32_t npieces;
    uint64_t shard_len;
    vkt_buffer *master, *copy, *grads; /* copy == master for f32 */
    /* The flat buffers that hold only the shard, packed as the optimizer
     * state: the fp32 master weights of an f16/bf16 model under ZeRO, the
     * gradients in slot mode (ZeRO-2), the compute copy in gather mode
     * (ZeRO-3; for f32 models the master too, which is the copy). The
     * others hold every flat element. */
    bool master_packed, grads_packed, copy_packed;
    vkt_buffer *opt_m, *opt_v, *hyper;
    vkt_optim_opts opt;  /* what opt_stream was recorded with (lr aside) */
    bool opt_recorded;   /* opt_stream holds a complete recording of opt */
    uint64_t opt_step;
    vkt_stream *opt_stream;
    vkt_stream *sumsq_stream;     /* vkt_model_grad_sumsq, recorded on first use */
    vkt_buffer *sumsq_partials;
    bool sumsq_recorded;
    /* activations and the batch */
    uint32_t batch, seq;       /* what the graph is built for; batch 0: nothing yet */
    vkt_buffer *arena;
    uint64_t arena_bytes, arena_naive;
    uint32_t x_id, y_id, loss_id; /* input, target, loss (INPUT tensors: host-visible) */
    vkt_stream *fwd, *zero;
    vkt_stream **bwd;             /* backward segments, nseg of cap_seg in use */
    uint32_t nseg, cap_seg;
    uint64_t *bucket_ends;        /* gradient buckets (vkt_model_set_grad_buckets) */
    uint32_t nbuckets;
    uint32_t *bucket_seg;         /* per bucket: the segment that finalises it */
    /* Gradient staging (vkt__nn_set_grad_staging; gradients the host cannot
     * map): the segment that finalises a bucket also copies it into
     * grad_stage (host-visible, the flat layout), which the engine reduces. */
    vkt_buffer *grad_stage;
    /* Gradient slots (ZeRO-2, vkt__nn_set_grad_slots): the backward writes
     * each bucket's gradients into one of nslots slot buffers (at its offset
     * minus the bucket's start) instead of a whole-size buffer, and grads
     * holds only this rank's shard (grads_packed), into which the engine
     * accumulates the reduce-scattered slots. */
    bool slot_mode;
    vkt_buffer **slots;
    uint32_t nslots, cap_slots;
    uint64_t slot_len;            /* elements of all slots (each: its longest bucket) */
    uint32_t *bucket_slot;        /* per bucket: its slot */
    uint32_t *bucket_first_seg;   /* per bucket: the segment that writes it first */
    /* Per segment: how many slot releases (in release order: by finalising
     * segment, then bucket) must have happened before it may start, because
     * it reuses a slot; 0: none. */
    uint32_t *seg_wait;
    /* ZeRO-3 (vkt__nn_set_gather_mode): the compute copy holds only this
     * rank's shard (copy_packed; for f32 models the master weights, which
     * are the copy, too). Parameters reach
     * the kernels through gather slots: the forward and the backward are
     * cut into segments, and each bucket ("group") a segment reads is
     * gathered by the engine into a gather slot before the segment starts
     * (nn_gather: one such residence; fgath for the forward's segments,
     * bgath for the backward's). */
    bool gather_mode;
    vkt_buffer **gslots;
    uint32_t ngslots, cap_gslots;
    uint64_t gslot_len;           /* elements of all gather slots */
    struct nn_gather *fgath, *bgath;
    uint32_t nfgath, nbgath;
    vkt_stream **fseg;            /* forward segments (gather mode) */
    uint32_t nfseg, cap_fseg;
    uint32_t *cur_gslot;          /* per bucket while recording: its gather slot */
    /* Dropout (p > 0 only; else no nodes and no buffer): every DROPOUT node
     * reads drop_state (host-visible, VKT_DROPOUT_STATE_WORDS(drop_sites)
     * words), which forward_begin fills from the mode, the step and the
     * batch's first sample, so the recordings replay with new masks. */
    float dropout;
    uint32_t drop_sites;
    vkt_buffer *drop_state;
    bool drop_training, drop_step_set; /* step set by vkt_model_set_dropout */
    uint64_t drop_step;
    float loss_scale, rec_loss_scale; /* current, and recorded into the backward */
    uint64_t rec_denominator;     /* loss denominator the backward was recorded with */
    uint64_t cur_denominator;     /* of the last forward */
    bool have_forward;
};

/* One residence of a parameter group (bucket) in a gather slot: gathered
 * before segment `first` of its pass starts, read by segments first..last,
 * and the slot free again once segment `last` is done. */
typedef struct nn_gather {
    uint32_t group, first, last, slot;
} nn_gather;

/* params.c */
vkt_status vkt__nn_params_layout(vkt_model *m);
/* Elements of the flat parameter buffers one binding window holds: ops over
 * the whole flat buffer (zeroing, the optimizer) go window by window. */
uint64_t vkt__nn_param_window(const vkt_model *m);
vkt_status vkt__nn_params_init(vkt_model *m);

/* (re)build the graph's activations and nodes for a batch (rows for the
 * MLP, sequences of seq tokens for the GPT) */
vkt_status vkt__nn_build(vkt_model *m, uint32_t batch, uint32_t seq);
vkt_status vkt__nn_mlp_nodes(vkt_model *m, uint32_t batch);
vkt_status vkt__nn_gpt_nodes(vkt_model *m, uint32_t batch, uint32_t seq);
/* An activation [rows, cols] with its gradient tensor (or without: saved
 * statistics); VKT_NN_NONE when out of memory. */
uint32_t vkt__nn_act(nn_graph *g, const char *name, vkt_dtype t, uint32_t rows, uint32_t cols,
                     bool with_grad);
/* Create the model object common to all kinds (ops, dtype, seed). */
vkt_status vkt__nn_model_new(vkt_device *dev, vkt_dtype t, uint64_t seed, vkt_model **out);
/* p in [0, 1) (what: the function for the message). */
vkt_status vkt__nn_check_dropout(float p, const char *what);
/* Dropout with probability p over `sites` layers: the state buffer (none
 * when p is 0). */
vkt_status vkt__nn_dropout_setup(vkt_model *m, float p, uint32_t sites);
/* y = dropout(x) as a node with its own activation of x's shape; rows
 * samples of cols elements each; returns y, x itself when the model has no
 * dropout, or VKT_NN_NONE when out of memory. */
uint32_t vkt__nn_dropout(vkt_model *m, const char *name, uint32_t x, uint32_t rows,
                         uint32_t cols, uint32_t site);

/* record.c */
/* Append the loss node on top of tensor pred (rows b). */
vkt_status vkt__nn_loss_node(vkt_model *m, uint32_t pred, uint32_t b);
/* Record the forward, backward (for loss denominator den) and zero streams. */
vkt_status vkt__nn_record_forward(vkt_model *m);
vkt_status vkt__nn_record_backward(vkt_model *m, uint64_t den);
vkt_status vkt__nn_record_zero(vkt_model *m);

/* params.c: set the master weights (the part this rank holds) and the
 * compute copy from a padded flat fp32 array, which is destroyed
 * (converted in place). */
vkt_status vkt__nn_set_master_flat(vkt_model *m, float *w);
/* params.c: between a dense state_dict-order array and the padded layout. */
void vkt__nn_dense_padded(const vkt_model *m, float *dense, float *pad, bool to_dense);
/* step.c: create the optimizer's state (zeroed) for opts if missing, so a
 * checkpoint can fill it before the first step. */
vkt_status vkt__nn_optim_prepare(vkt_model *m, const vkt_optim_opts *o);
/* step.c: the pieces of the flat buffers this rank's optimizer owns (n
 * pieces of flat ranges {flat, count}, increasing, disjoint; local is
 * computed); before the first step. With shard_master (f16/bf16 models
 * only) the fp32 master weights shrink to the shard too. */
vkt_status vkt__nn_set_shard(vkt_model *m, uint32_t n, const nn_piece *pieces,
                             bool shard_master);
/* step.c: a buffer (host-visible where asked) of shard_len elements of es
 * bytes holding the shard's pieces of `whole`, which holds every flat
 * element. */
vkt_status vkt__nn_pack(vkt_model *m, vkt_buffer *whole, uint64_t es, bool host_visible,
                        vkt_buffer **out);
/* Elements of a flat buffer that holds the shard only (packed) or all. */
static inline uint64_t vkt__nn_len(const vkt_model *m, bool packed)
{
    return packed ? m->shard_len : m->padded;
}
/* params.c: lay the parameters out again in nb buckets: bucket k holds
 * parameters first[k] .. first[k + 1] - 1 (state_dict order; first[0] = 0),
 * starts where bucket k - 1 ends and is padded to a multiple of unit
 * elements (a multiple of 64), so that each of unit / 64 ranks can own an
 * equal, aligned part of it; no parameter straddles a multiple of window
 * elements (at most vkt__nn_param_window: the smallest of all ranks', so
 * every rank lays out alike). The weights move with their parameters, the
 * gradients are zeroed, the buckets and every recording are dropped; the
 * old buffers are freed before the new ones are made. ends[k] gets bucket
 * k's end. Before any sharding or optimizer step. */
vkt_status vkt__nn_relayout(vkt_model *m, uint32_t nb, const uint32_t *first, uint64_t unit,
                            uint64_t window, uint64_t *ends);

/* buckets.c: where backward segments end (seg_end[node], one per node) and
 * which segment finalises each bucket (sets m->nseg, m->bucket_seg). */
vkt_status vkt__nn_plan_segments(vkt_model *m, bool *seg_end);
/* buckets.c: gradient slots. Every bucket must hold whole parameters; the
 * gradient buffer shrinks to the shard (vkt__nn_set_shard). Before the
 * first backward; the slots are made when the backward is recorded. */
vkt_status vkt__nn_set_grad_slots(vkt_model *m);
/* buckets.c: after planning segments, give each bucket a slot (a slot is
 * reused only by a bucket whose first segment comes at least two segments
 * after its previous bucket was finalised, so one segment overlaps the
 * reduction) and size the slot buffers. */
vkt_status vkt__nn_assign_slots(vkt_model *m);
/* buckets.c: make grad_stage (the whole flat gradient layout, host
 * visible) and record the backward to fill it bucket by bucket. Not in slot
 * mode; the buckets must be set. */
vkt_status vkt__nn_set_grad_staging(vkt_model *m);
/* buckets.c: the bucket holding flat element at (slot mode). */
uint32_t vkt__nn_bucket_of(const vkt_model *m, uint64_t at);
/* gather.c (ZeRO-3): shrink the compute copy to the shard (buckets of whole
 * parameters and gradient slots must be set); every recording binds gather
 * slots from then. */
vkt_status vkt__nn_set_gather_mode(vkt_model *m);
/* gather.c: plan both passes (forward and backward segments, the groups
 * each gathers, slots) and size the gather slots. With the graph built. */
vkt_status vkt__nn_plan_gathers(vkt_model *m);
/* gather.c: where the backward must also cut for gathers: seg_end[i] for
 * the node before (in backward order) a node that reads a group its
 * segment does not read yet. */
vkt_status vkt__nn_gather_cuts(const vkt_model *m, bool *seg_end);
/* gather.c: start[i]: forward node i opens a new segment (gather mode). */
vkt_status vkt__nn_forward_cuts(const vkt_model *m, bool *start);
/* gather.c: while recording segment seg of a pass, point the groups that
 * start residing there at their slots. */
void vkt__nn_gather_enter(vkt_model *m, const nn_gather *g, uint32_t n, uint32_t seg);
/* gather.c: the groups (buckets) node n reads parameters from, up to
 * VKT_NN_MAX_IO; returns how many. */
uint32_t vkt__nn_node_groups(const vkt_model *m, const nn_node *n, uint32_t *out);
/* buckets.c: a buffer the host can map: device memory where the device
 * offers it mappable (integrated GPUs, lavapipe), else host memory that
 * kernels read (discrete GPUs). */
vkt_status vkt__nn_host_visible(vkt_model *m, uint64_t bytes, vkt_buffer **out);
/* buckets.c: make n host-visible slot buffers of len[k] elements each in
 * *bufs (kept where the size matches); *total gets the sum of the lengths. */
vkt_status vkt__nn_make_slots(vkt_model *m, vkt_buffer ***bufs, uint32_t *cap, uint32_t n,
                              const uint64_t *len, uint64_t *total);
/* model.c: the forward in parts (gather mode runs it through the engine):
 * check and upload the batch (recording what changed); submit the segments
 * (each waits for gather_tl >= gbase + k + 1, signals tl at base + k + 1);
 * after they are done, the loss. */
vkt_status vkt__nn_forward_begin(vkt_model *m, const vkt_batch *b);
vkt_status vkt__nn_forward_submit(vkt_model *m, vkt_timeline *tl, uint64_t base,
                                  vkt_timeline *gather_tl, uint64_t gbase);
vkt_status vkt__nn_forward_end(vkt_model *m, const vkt_batch *b, float *loss);

/* model.c: submit the backward; in slot mode segment k first waits for
 * slot_tl >= slot_base + seg_wait[k] (the engine signals releases). */
vkt_status vkt__nn_backward_submit(vkt_model *m, vkt_timeline *tl, uint64_t base,
                                   vkt_timeline *slot_tl, uint64_t slot_base,
                                   vkt_timeline *gather_tl, uint64_t gbase);

#endif
