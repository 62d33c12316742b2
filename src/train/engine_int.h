/* The training engine's internals (see vktrain/engine.h). */
#ifndef VKT_ENGINE_INT_H
#define VKT_ENGINE_INT_H

#include "nn/nn_int.h"
#include "vktrain/engine.h"

/* Outstanding collectives of one accumulation boundary: one per bucket. */
#define VKT_ENGINE_MAX_BUCKETS 4096

struct vkt_engine {
    vkt_model *model;
    vkt_comm *comm; /* NULL: one process */
    vkt_config *cfg;
    int rank, world;
    uint32_t stage;    /* as updated: ZeRO's, or 1 for DDP across kinds of device */
    bool mixed_devices;
    vkt_optim_opts opt;
    bool fp16;
    vkt_loss_scaler scaler;
    /* batches */
    uint64_t micro_batch;   /* this rank's */
    uint64_t micro_step;    /* micro-batches since the last boundary */
    uint64_t global_steps, global_samples, sched_iter;
    double grad_norm;
    /* reporting: this rank's loss × samples since the last update */
    double loss_sum, loss_samples, t_report;
    uint64_t samples_report;
    FILE *progress, *warn;
    bool have_forward;
    bool boundary_backward; /* the boundary micro-batch's backward ran */
    /* ZeRO at world > 1 (vkt__engine_partition): the buckets hold whole
     * parameters, each padded to a multiple of world x 64 elements, and
     * this rank owns the rank-th 1/world of each (the model's shard piece
     * b is bucket b's), so every collective on them has equal counts. */
    bool partitioned;
    /* gradient buckets over the flat buffer, and the reduction in flight */
    uint32_t nbuckets;
    uint64_t *bucket_ends;
    vkt_comm_req **reqs;
    bool sync_started;
    vkt_timeline *timeline;
    uint64_t timeline_base;
    /* Where the host reduces: the gradient buffer mapped, or (staged: the
     * device's gradients are not mappable) the model's grad_stage, which
     * each backward segment fills with the buckets it finalises; the
     * reduced gradients are uploaded after the last bucket. Slot mode on
     * such a device accumulates the shard in grads_stage instead. */
    void *grads_host;
    bool staged;
    /* timeline of the last boundary's reduction (wall_clock_breakdown) */
    bool timing;
    double t0, backward_s;
    vkt_bucket_timing *timings;
    void *grads_stage; /* slot mode, not mappable: the shard accumulated on the host */
    /* ZeRO-2 gradient slots (world > 1): the backward of every micro-batch
     * writes each bucket into a slot of the model; the bucket is
     * reduce-scattered out of it, and this rank's part accumulated into its
     * gradient shard (acc: the mapped shard, or grads_stage uploaded after
     * the last bucket). Releasing a slot signals slot_tl, which the backward
     * segments that reuse it wait for. */
    bool slots;
    vkt_timeline *slot_tl;
    uint64_t slot_base;     /* slot_tl at the start of this backward */
    uint32_t released;      /* buckets released in this backward */
    uint32_t *post_order;   /* buckets in the order their reductions started */
    uint32_t posted;
    bool acc_fresh;         /* the shard holds no accumulation yet: copy, not add */
    /* ZeRO-3 (world > 1): parameters partitioned too; every pass gathers
     * each segment's groups into the model's gather slots (engine_gather.c).
     * gather_tl lets segment k of a pass start at gather_base + k + 1. */
    bool gather;
    vkt_timeline *gather_tl;
    uint64_t gather_base;
    vkt_comm_req **greqs;   /* per residence of the pass running */
    uint32_t cap_greqs;
};

/* engine_sync.c: gradient buckets and their reduction. Partition first
 * (ZeRO at world > 1: re-lays the model out in padded buckets of whole
 * parameters and gives it this rank's shard), then the buckets. */
vkt_status vkt__engine_partition(vkt_engine *e);
vkt_status vkt__engine_buckets(vkt_engine *e);
/* engine_probe.c: vktrain.rank_batch "auto" — time each rank, split the
 * micro-batches by speed into cfg->rank_batch and e->micro_batch. */
vkt_status vkt__engine_probe_batches(vkt_engine *e);
/* Backward of the boundary micro-batch with the reduction overlapped. */
vkt_status vkt__engine_backward_sync(vkt_engine *e);
/* Wait for the reduction; the gradients are then final (sum over ranks;
 * under stage 2 only this rank's shard). */
vkt_status vkt__engine_finish_sync(vkt_engine *e);
/* engine.c: collective; whether every rank has the same key (n bytes). */
vkt_status vkt__engine_ranks_agree(vkt_engine *e, const void *key, size_t n, bool *same);
/* engine_sync.c: all-gather every rank's part of each bucket in place in
 * host memory p (the flat layout, elements of dtype t), bucket by bucket,
 * all posted before the first wait. */
vkt_status vkt__engine_gather_host(vkt_engine *e, void *p, vkt_dtype t);
/* Seconds on a monotonic clock. */
double vkt__engine_now(void);
/* Wait until the engine's timeline reaches v (its GPU work up to there is
 * done), at most vktrain.gpu_timeout_s; a timeout's error says so. */
vkt_status vkt__engine_wait_gpu(vkt_engine *e, uint64_t v);
/* The backward of a micro-batch that is not a boundary: in slot mode its
 * gradients are reduced right away (DeepSpeed's stage 2 reduces every
 * micro-batch); otherwise they accumulate locally (no_sync). */
vkt_status vkt__engine_backward_local(vkt_engine *e);
/* Partitioned: where bucket b starts and the count of each rank's part. */
uint64_t vkt__engine_bucket_lo(const vkt_engine *e, uint32_t b);
uint64_t vkt__engine_part(const vkt_engine *e, uint32_t b);
/* All-gather the updated shards of buf (elements of dtype t, every flat
 * element held), bucket by bucket. */
vkt_status vkt__engine_gather(vkt_engine *e, vkt_buffer *buf, vkt_dtype t);

/* engine_check.c: the replica check (vktrain.check_replicas_every). */
/* After an update: every check_replicas_every-th one, the check below
 * (at stage 3 on the copy gathered for the check). */
vkt_status vkt__engine_check_replicas(vkt_engine *e);
/* Collective, now: hash each parameter of the compute copy (whole on every
 * rank at stages 0-2) and compare across ranks. */
vkt_status vkt__engine_replica_check(vkt_engine *e);
/* XXH3-64 of each parameter tensor of the flat buffer buf (elements of
 * dtype t, the model's layout), in state_dict order: nparams hashes into
 * out. stage_bytes 0: reads mapped memory directly, else downloads in
 * pieces of 16 MiB; > 0: downloads in pieces of that many bytes (tests). */
vkt_status vkt__engine_param_hashes(vkt_engine *e, vkt_buffer *buf, vkt_dtype t,
                                    uint64_t stage_bytes, uint64_t *out);
/* Collective: all-gather each rank's n = nparams hashes (hash i: parameter
 * i) and compare them with rank 0's. VKT_ERR_NUMERIC on every rank when any
 * differ, naming the ranks, the first parameter and the update; transport
 * errors. ZeRO-3 passes the hashes of its gathered parameters here. */
vkt_status vkt__engine_compare_hashes(vkt_engine *e, const uint64_t *mine, uint32_t n);

/* engine_gather.c (ZeRO-3): partition the model's parameters (after the
 * gradient slots exist); gather the groups of the residences in g[0..n)
 * that start at segment seg (post), or wait for them and let segment seg
 * start (finish, signalling gather_tl at gbase + seg + 1); after an error,
 * end every gather and release every segment still waiting. */
vkt_status vkt__engine_gather_setup(vkt_engine *e);
/* Start the all-gather of group (bucket) b of the compute copy's shards
 * into dst (the bucket's padded length). */
vkt_status vkt__engine_gather_group(vkt_engine *e, uint32_t b, void *dst, vkt_comm_req **req);
vkt_status vkt__engine_gathers_post(vkt_engine *e, const nn_gather *g, uint32_t n, uint32_t seg);
vkt_status vkt__engine_gathers_finish(vkt_engine *e, const nn_gather *g, uint32_t n, uint32_t seg,
                                      uint64_t gbase);
void vkt__engine_gathers_abort(vkt_engine *e);
/* The model's forward (with the gathers under ZeRO-3). */
vkt_status vkt__engine_model_forward(vkt_engine *e, const vkt_batch *b, float *loss);

#endif
