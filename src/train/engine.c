/* The training engine (vktrain/engine.h): configuration against the model,
 * micro-batches and accumulation, the update at a boundary (overflow check,
 * clipping, schedule, optimizer on this rank's shard, all-gather). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "train/engine_int.h"

void vkt_engine_destroy(vkt_engine *e)
{
    if (!e) return;
    if (e->sync_started)
        for (uint32_t b = 0; b < e->nbuckets; b++)
            if (e->reqs[b]) vkt_comm_wait(e->reqs[b]);
    uint64_t v = 0;
    if (e->slot_tl && vkt_timeline_value(e->slot_tl, &v) == VKT_OK) /* free waiting segments */
        vkt_timeline_signal(e->slot_tl, v + (1ull << 40));
    if (e->gather_tl) vkt__engine_gathers_abort(e);
    if (e->model) {
        vkt_model_backward_wait(e->model); /* no segment may still signal */
        /* only buckets this engine set (a failed create must keep its error) */
        if (!e->slots && e->bucket_ends) vkt_model_set_grad_buckets(e->model, 0, NULL);
    }
    vkt_timeline_destroy(e->timeline);
    vkt_timeline_destroy(e->slot_tl);
    vkt_timeline_destroy(e->gather_tl);
    vkt_free(e->greqs);
    vkt_free(e->post_order);
    vkt_free(e->bucket_ends);
    vkt_free(e->reqs);
    vkt_free(e->grads_stage);
    vkt_free(e->timings);
    vkt_config_destroy(e->cfg);
    vkt_free(e);
}

static vkt_status load_config(vkt_engine *e, const vkt_engine_opts *o)
{
    int given = !!o->config + !!o->config_json + !!o->config_path;
    VKT_FAIL_IF(given != 1, VKT_ERR_INVALID_ARG,
                "vkt_engine_create: give exactly one of config, config_json, config_path "
                "(got %d)", given);
    vkt_config_opts co = VKT_CONFIG_OPTS_INIT;
    co.world_size = (uint32_t)e->world;
    co.warn_stream = e->rank == 0 ? (o->warn_stream ? o->warn_stream : stderr) : NULL;
    if (o->config_path) return vkt_config_load(o->config_path, &co, &e->cfg);
    if (o->config_json) return vkt_config_parse(o->config_json, strlen(o->config_json), &co, &e->cfg);
    /* A parsed config: re-parse its JSON form, which copies it. */
    VKT_FAIL_IF(o->config->world_size != (uint32_t)e->world, VKT_ERR_INVALID_ARG,
                "vkt_engine_create: the config was resolved for world size %u, the "
                "communicator has %d ranks", o->config->world_size, e->world);
    char *json = NULL;
    VKT_CHECK(vkt_config_to_json(o->config, &json));
    co.warn_stream = NULL; /* its warnings were shown when it was parsed */
    vkt_status st = vkt_config_parse(json, strlen(json), &co, &e->cfg);
    vkt_free(json);
    return st;
}

/* The config's precision and optimizer against the model. */
static vkt_status check_model(vkt_engine *e)
{
    const vkt_config *c = e->cfg;
    vkt_dtype want = c->fp16 ? VKT_DTYPE_F16 : c->bf16 ? VKT_DTYPE_BF16 : VKT_DTYPE_F32;
    VKT_FAIL_IF(e->model->dtype != want, VKT_ERR_INVALID_ARG,
                "engine: the config asks for %s training (fp16.enabled %s, bf16.enabled %s) "
                "but the model computes in %s; create the model with dtype %s",
                vkt_dtype_name(want), c->fp16 ? "true" : "false", c->bf16 ? "true" : "false",
                vkt_dtype_name(e->model->dtype), vkt_dtype_name(want));
    const vkt_model *m = e->model;
    VKT_FAIL_IF(m->slot_mode || m->gather_mode || m->master_packed || m->npieces != 1 ||
                    m->shard_len != m->padded,
                VKT_ERR_INVALID_USAGE,
                "vkt_engine_create: this model was sharded by an earlier engine (ZeRO), which "
                "left only its part of the weights or gradients here; create a new model (and "
                "vkt_engine_load a checkpoint into it) for another engine");
    const vkt_config_optimizer *op = &c->optimizer;
    vkt_optim_opts oo = VKT_OPTIM_OPTS_INIT;
    oo.type = op->type;
    oo.beta1 = (float)op->beta1;
    oo.beta2 = (float)op->beta2;
    oo.eps = (float)op->eps;
    oo.weight_decay = (float)op->weight_decay;
    oo.momentum = (float)op->momentum;
    oo.nesterov = op->nesterov;
    e->opt = oo;
    e->micro_batch = c->rank_batch ? c->rank_batch[e->rank] : c->train_micro_batch_size_per_gpu;
    e->fp16 = c->fp16;
    if (e->fp16) VKT_CHECK(vkt_loss_scaler_init(&e->scaler, &c->fp16_scaler));
    return VKT_OK;
}

/* Whether every rank has the same key (compared by its XXH64): one
 * all-reduce of {h, -h} with max gives the largest and the smallest hash. */
vkt_status vkt__engine_ranks_agree(vkt_engine *e, const void *key, size_t n, bool *same)
{
    int64_t h = (int64_t)(XXH64(key, n, 0) >> 1), v[2] = {h, -h};
    VKT_CHECK(vkt_comm_allreduce(e->comm, v, v, 2, VKT_DTYPE_I64, VKT_REDOP_MAX));
    *same = v[0] == -v[1];
    return VKT_OK;
}

/* Every rank must cut the same flat buffer the same way, or the collectives
 * would pair unrelated data: compare the layout and the batch settings (not
 * the per-rank micro-batch) across ranks. */
static vkt_status check_agreement(vkt_engine *e)
{
    if (!e->comm || e->world == 1) return VKT_OK;
    const vkt_model *m = e->model;
    const uint64_t key[] = {m->padded, m->numel, e->stage, (uint64_t)m->dtype,
                            e->cfg->train_batch_size, e->cfg->gradient_accumulation_steps,
                            e->cfg->zero.reduce_bucket_size}; /* the buckets follow from these */
    bool same;
    VKT_CHECK(vkt__engine_ranks_agree(e, key, sizeof key, &same));
    VKT_FAIL_IF(!same, VKT_ERR_INVALID_ARG,
                "engine: the ranks disagree on the model or the config (parameter layout, "
                "dtype, zero_optimization.stage, reduce_bucket_size or the batch sizes); every "
                "rank must build the same model and read the same config");
    return VKT_OK;
}

static vkt_status broadcast_params(vkt_engine *e)
{
    if (!e->comm || e->world == 1) return VKT_OK;
    uint64_t n = vkt_model_num_params(e->model);
    float *p = vkt_malloc(n * sizeof *p + 4);
    VKT_FAIL_IF(!p, VKT_ERR_NOMEM, "engine: out of host memory");
    vkt_status st = vkt_model_get_params(e->model, p);
    if (st == VKT_OK) st = vkt_comm_broadcast(e->comm, p, n, VKT_DTYPE_F32, 0);
    if (st == VKT_OK && e->rank != 0) st = vkt_model_set_params(e->model, p);
    vkt_free(p);
    return st;
}

/* Ranks on different kinds of device round differently, so replicas that
 * each apply the full update would drift apart: then every stage updates
 * sharded (each rank its shard, then all-gather), which keeps them equal.
 * The kind is what decides rounding: the device and its driver (not the
 * UUID: two identical GPUs round alike). */
static vkt_status check_devices(vkt_engine *e)
{
    if (!e->comm || e->world == 1) return VKT_OK;
    const vkt_device_caps *c = vkt_device_get_caps(e->model->dev);
    char kind[1024];
    snprintf(kind, sizeof kind, "%s|%s|%s|%u", c->name, c->driver_name, c->driver_info,
             c->vendor_id);
    bool same;
    VKT_CHECK(vkt__engine_ranks_agree(e, kind, strlen(kind), &same));
    e->mixed_devices = !same;
    if (e->mixed_devices && e->stage == 0) {
        e->stage = 1;
        if (e->rank == 0)
            fprintf(e->warn, "vktrain: engine: the ranks run on different kinds of device; "
                             "updating sharded (as ZeRO-1) so replicas stay identical\n");
    }
    return VKT_OK;
}

vkt_status vkt_engine_create(const vkt_engine_opts *o, vkt_engine **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_engine_create: out is NULL");
    *out = NULL;
    VKT_FAIL_IF(!o || o->struct_size != sizeof *o, VKT_ERR_INVALID_ARG,
                "vkt_engine_create: initialise opts with VKT_ENGINE_OPTS_INIT");
    VKT_FAIL_IF(!o->model, VKT_ERR_INVALID_ARG, "vkt_engine_create: opts.model is NULL");
    vkt_engine *e = vkt_calloc(1, sizeof *e);
    VKT_FAIL_IF(!e, VKT_ERR_NOMEM, "engine: out of host memory");
    e->model = o->model;
    e->comm = o->comm;
    e->rank = o->comm ? vkt_comm_rank(o->comm) : 0;
    e->world = o->comm ? vkt_comm_size(o->comm) : 1;
    e->progress = o->progress_stream;
    e->warn = o->warn_stream ? o->warn_stream : stderr;
    e->t_report = vkt__engine_now();
    vkt_status st;
    VKT_CHECK_GOTO(st, load_config(e, o), fail);
    e->stage = e->cfg->zero.stage;
    VKT_CHECK_GOTO(st, check_model(e), fail);
    VKT_CHECK_GOTO(st, check_devices(e), fail);
    VKT_CHECK_GOTO(st, check_agreement(e), fail); /* before the first collective on weights */
    VKT_CHECK_GOTO(st, broadcast_params(e), fail); /* while every rank holds all weights */
    VKT_CHECK_GOTO(st, vkt__engine_partition(e), fail);
    /* the probe runs plain backwards: before the buckets (ZeRO-2's slot
     * mode refuses them) */
    VKT_CHECK_GOTO(st, vkt__engine_probe_batches(e), fail);
    VKT_CHECK_GOTO(st, vkt__engine_buckets(e), fail);
    if (e->gather) VKT_CHECK_GOTO(st, vkt__engine_gather_setup(e), fail);
    VKT_CHECK_GOTO(st, vkt_model_zero_grad(e->model), fail);
    *out = e;
    return VKT_OK;
fail:
    vkt_engine_destroy(e);
    return st;
}

/* Targets in the global batch: samples, or for the GPT token positions.
 * Positions labelled -1 count too: the global number of real labels is
 * only known once every rank's micro-batches are, so with ignored labels
 * the loss is sum / positions (one process given loss_denominator = the
 * same count computes the same; PyTorch's ignore_index mean divides by
 * the real labels instead, DeepSpeed averages the micro-batch means). */
static uint64_t global_denominator(const vkt_engine *e, const vkt_batch *b)
{
    uint64_t den = e->cfg->train_batch_size;
    return e->model->gpt ? den * b->seq_len : den;
}

/* Global index of this rank's micro-batch's first sample in the run: the
 * updates so far, this accumulation's earlier micro-steps (every rank's
 * micro-batch each), then the lower ranks' micro-batches (dropout masks are
 * drawn per global sample, so any split matches one process). */
static uint64_t first_sample(const vkt_engine *e)
{
    const vkt_config *c = e->cfg;
    uint64_t all = 0, below = 0;
    for (int q = 0; q < e->world; q++) {
        uint64_t mb = c->rank_batch ? c->rank_batch[q] : c->train_micro_batch_size_per_gpu;
        all += mb;
        below += q < e->rank ? mb : 0;
    }
    return e->global_samples + e->micro_step * all + below;
}

vkt_status vkt_engine_forward(vkt_engine *e, const vkt_batch *b, float *loss)
{
    VKT_FAIL_IF(!e || !b, VKT_ERR_INVALID_ARG, "vkt_engine_forward: NULL argument");
    VKT_FAIL_IF(b->size != e->micro_batch, VKT_ERR_INVALID_ARG,
                "vkt_engine_forward: rank %d's micro-batch has %llu samples (%s), this batch "
                "%u", e->rank, (unsigned long long)e->micro_batch,
                e->cfg->rank_batch ? "vktrain.rank_batch" : "train_micro_batch_size_per_gpu",
                b->size);
    vkt_batch mine = *b;
    if (!mine.loss_denominator) mine.loss_denominator = global_denominator(e, b);
    if (!mine.first_sample) mine.first_sample = first_sample(e);
    VKT_CHECK(vkt_model_set_dropout(e->model, true, e->global_steps));
    e->have_forward = false;
    float share = 0;
    VKT_CHECK(vkt__engine_model_forward(e, &mine, &share));
    /* This micro-batch's own mean: over its targets (cross-entropy: the
     * labels that are not -1). */
    uint64_t rows = (uint64_t)b->size * (e->model->gpt ? b->seq_len : 1), own = rows;
    if (e->model->loss == VKT_LOSS_XENT || e->model->gpt)
        for (uint64_t i = 0; i < rows; i++) own -= b->labels[i] == -1;
    double mean = own ? (double)share * (double)mine.loss_denominator / (double)own : 0.0;
    if (loss) *loss = (float)mean; /* this micro-batch's own mean */
    e->loss_sum += mean * b->size;
    e->loss_samples += b->size;
    e->have_forward = true;
    return VKT_OK;
}

vkt_status vkt_engine_eval(vkt_engine *e, const vkt_batch *b, float *loss)
{
    VKT_FAIL_IF(!e || !b, VKT_ERR_INVALID_ARG, "vkt_engine_eval: NULL argument");
    VKT_FAIL_IF(e->sync_started || e->micro_step, VKT_ERR_INVALID_USAGE,
                "vkt_engine_eval: evaluate between updates, not inside a gradient "
                "accumulation");
    e->have_forward = false; /* no backward goes through an evaluation */
    VKT_CHECK(vkt_model_set_dropout(e->model, false, e->global_steps));
    vkt_batch mine = *b;
    return vkt__engine_model_forward(e, &mine, loss);
}

bool vkt_engine_is_boundary(const vkt_engine *e)
{
    return e && e->micro_step + 1 >= e->cfg->gradient_accumulation_steps;
}

vkt_status vkt_engine_backward(vkt_engine *e)
{
    VKT_FAIL_IF(!e, VKT_ERR_INVALID_ARG, "vkt_engine_backward: engine is NULL");
    VKT_FAIL_IF(!e->have_forward, VKT_ERR_INVALID_USAGE,
                "vkt_engine_backward: call vkt_engine_forward first");
    VKT_FAIL_IF(e->sync_started, VKT_ERR_INVALID_USAGE,
                "vkt_engine_backward: this accumulation's gradients are already being "
                "reduced; call vkt_engine_step before the next forward/backward");
    e->have_forward = false;
    if (e->fp16) VKT_CHECK(vkt_model_set_loss_scale(e->model, (float)e->scaler.scale));
    if (!vkt_engine_is_boundary(e)) return vkt__engine_backward_local(e);
    VKT_CHECK(vkt__engine_backward_sync(e));
    e->boundary_backward = true;
    return VKT_OK;
}

/* Σg² of the reduced gradients over all ranks: this rank's shard, summed
 * (a non-finite value anywhere makes the total non-finite on every rank,
 * so all ranks skip together). */
static vkt_status global_sumsq(vkt_engine *e, double *out)
{
    double s = 0;
    VKT_CHECK(vkt_model_grad_sumsq(e->model, &s));
    if (e->stage > 0 && e->comm && e->world > 1)
        VKT_CHECK(vkt_comm_allreduce(e->comm, &s, &s, 1, VKT_DTYPE_F64, VKT_REDOP_SUM));
    *out = s;
    return VKT_OK;
}

double vkt_engine_lr(const vkt_engine *e)
{
    if (!e) return 0;
    if (!e->cfg->scheduler_given) return e->cfg->optimizer.lr;
    /* DeepSpeed's engine steps the scheduler after each applied update, and
     * its WarmupLR/WarmupDecayLR set the optimizer's lr to warmup_min_lr when
     * created: update k uses get_lr(k - 1), update 0 warmup_min_lr, which is
     * get_lr(0) (gamma(0) = 0 for both warmup types). */
    return vkt_lr_at(&e->cfg->scheduler, e->sched_iter ? e->sched_iter - 1 : 0);
}

static vkt_status update(vkt_engine *e)
{
    VKT_CHECK(vkt__engine_finish_sync(e));
    double sumsq;
    VKT_CHECK(global_sumsq(e, &sumsq));
    double scale = e->fp16 ? e->scaler.scale : 1.0;
    bool overflow = !isfinite(sumsq);
    e->grad_norm = sqrt(sumsq) / scale;
    VKT_FAIL_IF(overflow && !e->fp16, VKT_ERR_NUMERIC,
                "engine: the gradients of update %llu are not finite (Inf or NaN) and %s has "
                "no loss scaling to skip such a step; lower the learning rate, set "
                "gradient_clipping, or check the data",
                (unsigned long long)e->global_steps + 1, e->cfg->bf16 ? "bf16" : "fp32");
    if (e->fp16) {
        vkt_status st = vkt_loss_scaler_update(&e->scaler, overflow);
        if (st != VKT_OK)
            return vkt__error_context(st, "update %llu (set \"bf16\": {\"enabled\": true} to "
                                      "train without loss scaling)",
                                      (unsigned long long)e->global_steps + 1);
    }
    if (!overflow) {
        double coef = 1.0, clip = e->cfg->gradient_clipping;
        if (clip > 0 && e->grad_norm > clip) coef = clip / (e->grad_norm + 1e-6);
        float lr = (float)vkt_engine_lr(e);
        VKT_CHECK(vkt_model_step_scaled(e->model, &e->opt, lr, (float)(coef / scale)));
        /* ZeRO-3 keeps the updated shard: the next forward gathers it */
        if (e->stage > 0 && !e->gather)
            VKT_CHECK(vkt__engine_gather(e, e->model->copy, e->model->dtype));
        e->sched_iter++;
    }
    e->acc_fresh = true;
    return vkt_model_zero_grad(e->model);
}

/* After an update: the global mean loss, and a progress line and a metrics
 * record where asked. Collective (one small all-reduce) on the updates
 * every rank knows to report: every steps_per_print-th, or all of them
 * with a metrics file. */
static vkt_status report(vkt_engine *e)
{
    const vkt_config *c = e->cfg;
    bool every = c->metrics_file != NULL;
    if (!every && e->global_steps % c->steps_per_print) return VKT_OK;
    double v[2] = {e->loss_sum, e->loss_samples};
    e->loss_sum = e->loss_samples = 0;
    if (e->comm && e->world > 1)
        VKT_CHECK(vkt_comm_allreduce(e->comm, v, v, 2, VKT_DTYPE_F64, VKT_REDOP_SUM));
    if (e->rank != 0) return VKT_OK;
    double now = vkt__engine_now(), dt = now - e->t_report;
    double rate = e->t_report > 0 && dt > 0 ? (double)(e->global_samples - e->samples_report) / dt : 0;
    e->t_report = now;
    e->samples_report = e->global_samples;
    double loss = v[1] > 0 ? v[0] / v[1] : 0, lr = vkt_engine_lr(e);
    if (e->progress && e->global_steps % c->steps_per_print == 0)
        fprintf(e->progress, "step %llu  loss %.5f  lr %.3g  grad norm %.4g  scale %g  "
                             "%.1f samples/s\n",
                (unsigned long long)e->global_steps, loss, lr, e->grad_norm,
                vkt_engine_loss_scale(e), rate);
    if (!c->metrics_file) return VKT_OK;
    FILE *f = fopen(c->metrics_file, "a");
    VKT_FAIL_IF(!f, VKT_ERR_IO, "engine: cannot append to vktrain.metrics_file %s",
                c->metrics_file);
    fprintf(f, "{\"step\": %llu, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
               "\"loss_scale\": %g, \"skipped\": %llu, \"samples\": %llu, "
               "\"samples_per_s\": %.6g}\n",
            (unsigned long long)e->global_steps, loss, lr, e->grad_norm,
            vkt_engine_loss_scale(e), (unsigned long long)vkt_engine_skipped_steps(e),
            (unsigned long long)e->global_samples, rate);
    int bad = fclose(f) != 0;
    VKT_FAIL_IF(bad, VKT_ERR_IO, "engine: cannot write vktrain.metrics_file %s", c->metrics_file);
    return VKT_OK;
}

vkt_status vkt_engine_step(vkt_engine *e)
{
    VKT_FAIL_IF(!e, VKT_ERR_INVALID_ARG, "vkt_engine_step: engine is NULL");
    bool boundary = vkt_engine_is_boundary(e);
    if (!boundary) {
        e->micro_step++;
        return VKT_OK;
    }
    VKT_FAIL_IF(!e->boundary_backward, VKT_ERR_INVALID_USAGE,
                "vkt_engine_step: this step ends a gradient accumulation but its last "
                "micro-batch had no vkt_engine_backward; call forward and backward first");
    e->boundary_backward = false;
    e->micro_step = 0;
    vkt_status st = update(e);
    e->global_steps++;
    e->global_samples += e->cfg->train_batch_size;
    if (st == VKT_OK) st = vkt__engine_check_replicas(e); /* vktrain.check_replicas_every */
    return st == VKT_OK ? report(e) : st;
}

double vkt_engine_loss_scale(const vkt_engine *e)
{
    return e && e->fp16 ? e->scaler.scale : 1.0;
}

uint64_t vkt_engine_global_steps(const vkt_engine *e) { return e ? e->global_steps : 0; }

uint64_t vkt_engine_global_samples(const vkt_engine *e) { return e ? e->global_samples : 0; }

uint64_t vkt_engine_skipped_steps(const vkt_engine *e) { return e && e->fp16 ? e->scaler.skipped : 0; }

double vkt_engine_grad_norm(const vkt_engine *e) { return e ? e->grad_norm : 0; }

uint32_t vkt_engine_bucket_timings(const vkt_engine *e, vkt_bucket_timing *out, uint32_t cap,
                                   double *backward_s)
{
    if (!e || !e->timings) return 0;
    for (uint32_t b = 0; b < e->nbuckets && b < cap && out; b++) out[b] = e->timings[b];
    if (backward_s) *backward_s = e->backward_s;
    return e->nbuckets;
}

const vkt_config *vkt_engine_config(const vkt_engine *e) { return e ? e->cfg : NULL; }

vkt_status vkt_engine_get_params(vkt_engine *e, float *out)
{
    VKT_FAIL_IF(!e || !out, VKT_ERR_INVALID_ARG, "vkt_engine_get_params: NULL argument");
    vkt_model *m = e->model;
    /* The same decision on every rank (the gather is collective): the
     * master is packed for f16/bf16 models under ZeRO and for every model
     * at ZeRO-3. */
    if (!e->partitioned || !m->master_packed) return vkt_model_get_params(m, out);
    float *pad = vkt_calloc(m->padded, sizeof *pad), *mine = vkt_malloc(m->shard_len * 4);
    vkt_status st = pad && mine ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory");
    if (st == VKT_OK) st = vkt_buffer_download(m->master, 0, mine, m->shard_len * 4);
    for (uint32_t k = 0; k < m->npieces && st == VKT_OK; k++) /* this rank's parts in place */
        memcpy(pad + m->pieces[k].flat, mine + m->pieces[k].local, m->pieces[k].count * 4);
    if (st == VKT_OK) st = vkt__engine_gather_host(e, pad, VKT_DTYPE_F32);
    if (st == VKT_OK) vkt__nn_dense_padded(m, out, pad, true);
    vkt_free(pad);
    vkt_free(mine);
    return st;
}
