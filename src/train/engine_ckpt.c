/* Engine checkpoints (src/formats/ckpt_index.h has the directory format).
 *
 * Save: every rank writes its shard of the fp32 master weights and of the
 * optimizer state (at stage 0 rank 0 writes everything, the replicas being
 * identical); rank 0 gathers the file records and commits the index, which
 * also carries the loss scaler, the schedule position, the counters and
 * the resolved config. Load: every rank verifies the files, checks the
 * model, assembles each state's whole flat buffer in the writer's layout,
 * re-lays it into this run's layout (another world size or stage is fine)
 * and takes its range. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/ckpt_index.h"
#include "train/engine_int.h"

#define NSTATES_MAX 2

/* The optimizer's state kinds and buffers, in checkpoint names. */
static size_t state_kinds(const vkt_engine *e, const char **kinds, vkt_buffer **bufs)
{
    const vkt_model *m = e->model;
    if (e->opt.type != VKT_OPTIM_SGD) {
        kinds[0] = "exp_avg", kinds[1] = "exp_avg_sq";
        bufs[0] = m->opt_m, bufs[1] = m->opt_v;
        return 2;
    }
    if (e->opt.momentum == 0) return 0;
    kinds[0] = "momentum_buffer";
    bufs[0] = m->opt_m;
    return 1;
}

/* The model's parameter table in checkpoint form (names borrowed). */
static vkt_status param_table(const vkt_model *m, vkt_ckpt_param **out)
{
    vkt_ckpt_param *p = vkt_calloc(m->nparams, sizeof *p);
    VKT_FAIL_IF(!p, VKT_ERR_NOMEM, "engine: out of host memory");
    for (uint32_t i = 0; i < m->nparams; i++) {
        vkt_param_info pi;
        vkt_model_param_info(m, i, &pi);
        p[i].name = pi.name;
        p[i].ndim = pi.ndim;
        for (uint32_t d = 0; d < pi.ndim; d++) p[i].shape[d] = pi.shape[d];
        p[i].offset = pi.offset;
        p[i].numel = pi.numel;
    }
    *out = p;
    return VKT_OK;
}

/* Rank r's ranges in the checkpoint (room for max(nbuckets, 1)): its part
 * of every bucket, or unpartitioned everything on rank 0 and nothing
 * elsewhere (the replicas being identical). Returns how many. */
static size_t rank_ranges(const vkt_engine *e, int r, vkt_ckpt_range *out)
{
    if (!e->partitioned) {
        out[0] = (vkt_ckpt_range){0, e->model->padded};
        return r == 0;
    }
    for (uint32_t b = 0; b < e->nbuckets; b++) {
        uint64_t part = vkt__engine_part(e, b);
        out[b] = (vkt_ckpt_range){vkt__engine_bucket_lo(e, b) + (uint64_t)r * part, part};
    }
    return e->nbuckets;
}

static vkt_status write_my_shard(vkt_engine *e, const char *dir, vkt_ckpt_filerec *rec)
{
    vkt_model *m = e->model;
    vkt_ckpt_range *r = vkt_malloc((e->nbuckets + 1) * sizeof *r);
    VKT_FAIL_IF(!r, VKT_ERR_NOMEM, "engine: out of host memory");
    size_t nr = rank_ranges(e, e->rank, r);
    memset(rec, 0, sizeof *rec);
    /* The ranges are the model's shard pieces: the data is the shard packed. */
    uint64_t n = m->shard_len;
    const char *kinds[1 + NSTATES_MAX] = {VKT_CKPT_MASTER};
    vkt_buffer *bufs[1 + NSTATES_MAX] = {m->master};
    size_t nk = 1 + state_kinds(e, kinds + 1, bufs + 1);
    float *data = nr ? vkt_malloc(nk * n * sizeof *data) : NULL;
    vkt_status st = nr == 0 || data ? VKT_OK
                                    : VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory for "
                                                               "the checkpoint");
    const float *ptrs[1 + NSTATES_MAX];
    for (size_t k = 0; k < nk && nr && st == VKT_OK; k++) {
        /* the state holds the shard packed; the master packed or whole */
        bool packed = k > 0 || m->master_packed;
        ptrs[k] = data + k * n;
        if (!bufs[k]) memset(data + k * n, 0, n * 4); /* no step yet */
        for (uint32_t i = 0; i < m->npieces && bufs[k] && st == VKT_OK; i++) {
            const nn_piece *p = &m->pieces[i];
            st = vkt_buffer_download(bufs[k], vkt__nn_at(p, packed, p->flat) * 4,
                                     data + k * n + p->local, p->count * 4);
        }
    }
    if (st == VKT_OK && nr)
        st = vkt__ckpt_write_shard(dir, e->global_steps, (uint32_t)e->rank, (uint32_t)e->world,
                                   e->stage, r, nr, kinds, ptrs, nk, rec);
    vkt_free(data);
    vkt_free(r);
    return st;
}

static char *engine_state_json(const vkt_engine *e, int which)
{
    json_t *o = NULL;
    if (which == 0) /* loss scaler */
        o = json_pack("{s:b, s:f, s:I, s:I, s:i, s:I}", "fp16", e->fp16, "scale",
                      e->fp16 ? e->scaler.scale : 1.0, "iteration",
                      (json_int_t)e->scaler.iteration, "last_overflow",
                      (json_int_t)e->scaler.last_overflow, "hysteresis_left",
                      (int)e->scaler.hysteresis_left, "skipped", (json_int_t)e->scaler.skipped);
    else if (which == 1) /* schedule and optimizer position */
        o = json_pack("{s:I, s:I, s:s}", "iteration", (json_int_t)e->sched_iter,
                      "optimizer_steps", (json_int_t)e->model->opt_step, "optimizer",
                      e->opt.type == VKT_OPTIM_SGD ? "SGD" : e->opt.type == VKT_OPTIM_ADAM ? "Adam" : "AdamW");
    else /* data position */
        o = json_pack("{s:I, s:I}", "global_samples", (json_int_t)e->global_samples,
                      "global_steps", (json_int_t)e->global_steps);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* Rank 0: the index (layout, every rank's file record, the host-side
 * state) committed last. */
static vkt_status commit_index(vkt_engine *e, const char *run_dir, const vkt_ckpt_filerec *recs)
{
    vkt_status st = VKT_OK;
    vkt_ckpt_param *params = NULL;
    size_t per = e->nbuckets + 1;
    vkt_ckpt_range *ranges = vkt_calloc((size_t)e->world * per, sizeof *ranges);
    vkt_ckpt_rank *ranks = vkt_calloc((size_t)e->world, sizeof *ranks);
    char *cfg = NULL, *js[3] = {NULL, NULL, NULL};
    if (!ranges || !ranks) st = VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory");
    if (st == VKT_OK) st = param_table(e->model, &params);
    if (st == VKT_OK) st = vkt_config_to_json(e->cfg, &cfg);
    for (int k = 0; k < 3 && st == VKT_OK; k++)
        if (!(js[k] = engine_state_json(e, k)))
            st = VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory");
    if (st == VKT_OK) {
        const char *kinds[NSTATES_MAX];
        vkt_buffer *bufs[NSTATES_MAX];
        size_t ns = state_kinds(e, kinds, bufs);
        for (int r = 0; r < e->world; r++) {
            size_t n = rank_ranges(e, r, ranges + (size_t)r * per);
            ranks[r] = (vkt_ckpt_rank){ranges + (size_t)r * per, n, &recs[r], n ? 1 : 0};
        }
        vkt_ckpt_index idx = {
            .step = e->global_steps, .samples_seen = e->global_samples,
            .world_size = (uint32_t)e->world, .zero_stage = e->stage,
            .dtype = e->model->dtype, .nstates = ns, .params = params,
            .nparams = e->model->nparams, .flat_length = e->model->padded,
            .alignment = 64, .ranks = ranks, .loss_scaler = js[0], .scheduler = js[1],
            .rng = "{}", .data_position = js[2], .config = cfg};
        for (size_t k = 0; k < ns; k++) idx.states[k] = kinds[k];
        st = vkt__ckpt_commit(run_dir, &idx);
    }
    for (int k = 0; k < 3; k++) free(js[k]);
    vkt_free(cfg);
    vkt_free(params);
    vkt_free(ranges);
    vkt_free(ranks);
    return st;
}

vkt_status vkt_engine_save(vkt_engine *e, const char *run_dir)
{
    VKT_FAIL_IF(!e || !run_dir, VKT_ERR_INVALID_ARG, "vkt_engine_save: NULL argument");
    VKT_FAIL_IF(e->micro_step != 0 || e->sync_started, VKT_ERR_INVALID_USAGE,
                "vkt_engine_save: save between updates (after the step that ends a "
                "gradient accumulation), not in the middle of one");
    vkt_status st = e->rank == 0 ? vkt__ckpt_begin(run_dir, e->global_steps) : VKT_OK;
    /* Every rank learns whether rank 0 could begin, then writes. */
    int32_t ok = st == VKT_OK;
    if (e->comm && e->world > 1)
        VKT_CHECK(vkt_comm_broadcast(e->comm, &ok, 1, VKT_DTYPE_I32, 0));
    if (!ok) return st != VKT_OK ? st : VKT_ERROR(VKT_ERR_IO, "vkt_engine_save: rank 0 could not create the checkpoint directory in %s", run_dir);
    vkt_ckpt_filerec *recs = vkt_calloc((size_t)e->world, sizeof *recs);
    VKT_FAIL_IF(!recs, VKT_ERR_NOMEM, "engine: out of host memory");
    st = write_my_shard(e, run_dir, &recs[e->rank]);
    /* A failed write anywhere fails the save everywhere (nothing committed). */
    int32_t bad = st != VKT_OK;
    vkt_status cst = VKT_OK;
    if (e->comm && e->world > 1) {
        _Static_assert(sizeof(vkt_ckpt_filerec) % 4 == 0, "records travel as int32");
        cst = vkt_comm_allreduce(e->comm, &bad, &bad, 1, VKT_DTYPE_I32, VKT_REDOP_MAX);
        if (cst == VKT_OK)
            cst = vkt_comm_allgather(e->comm, &recs[e->rank], recs, sizeof *recs / 4,
                                     VKT_DTYPE_I32);
    }
    if (st == VKT_OK && cst != VKT_OK) st = cst;
    if (st == VKT_OK && bad)
        st = VKT_ERROR(VKT_ERR_IO, "vkt_engine_save: another rank failed to write its shard "
                                   "(see its error); the previous checkpoint is kept");
    if (st == VKT_OK && e->rank == 0) st = commit_index(e, run_dir, recs);
    vkt_free(recs);
    /* Rank 0's commit decides; everyone returns its outcome. */
    int32_t committed = st == VKT_OK;
    if (e->comm && e->world > 1 && cst == VKT_OK)
        VKT_CHECK(vkt_comm_broadcast(e->comm, &committed, 1, VKT_DTYPE_I32, 0));
    if (st == VKT_OK && !committed)
        st = VKT_ERROR(VKT_ERR_IO, "vkt_engine_save: rank 0 could not commit the checkpoint "
                                   "(see its error); the previous checkpoint is kept");
    return st;
}

static vkt_status json_field(const char *text, const char *what, json_t **out)
{
    json_error_t err;
    *out = text ? json_loads(text, 0, &err) : NULL;
    VKT_FAIL_IF(!*out || !json_is_object(*out), VKT_ERR_CORRUPT,
                "checkpoint: its %s state is missing or not a JSON object", what);
    return VKT_OK;
}

static uint64_t get_u64(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* Counters, loss scaler and schedule position from the index. */
static vkt_status restore_host_state(vkt_engine *e, const vkt_ckpt_index *idx)
{
    json_t *ls = NULL, *sc = NULL;
    vkt_status st = json_field(idx->loss_scaler, "loss-scaler", &ls);
    if (st == VKT_OK) st = json_field(idx->scheduler, "scheduler", &sc);
    if (st == VKT_OK) {
        e->global_steps = idx->step;
        e->global_samples = idx->samples_seen;
        e->samples_report = idx->samples_seen; /* rates count from now */
        e->t_report = vkt__engine_now();
        e->loss_sum = e->loss_samples = 0;
        e->sched_iter = get_u64(sc, "iteration");
        e->model->opt_step = get_u64(sc, "optimizer_steps");
        if (e->fp16 && json_is_true(json_object_get(ls, "fp16"))) {
            e->scaler.scale = json_real_value(json_object_get(ls, "scale"));
            e->scaler.iteration = get_u64(ls, "iteration");
            json_t *lo = json_object_get(ls, "last_overflow");
            e->scaler.last_overflow = json_is_integer(lo) ? (int64_t)json_integer_value(lo) : -1;
            e->scaler.hysteresis_left = (uint32_t)get_u64(ls, "hysteresis_left");
            e->scaler.skipped = get_u64(ls, "skipped");
            if (!(e->scaler.scale > 0))
                st = VKT_ERROR(VKT_ERR_CORRUPT, "checkpoint: loss scale %g is not positive",
                               e->scaler.scale);
        }
    }
    json_decref(ls);
    json_decref(sc);
    return st;
}

/* One state's whole flat buffer, re-laid into this model's layout. */
static vkt_status load_state(vkt_engine *e, const char *dir, const vkt_ckpt_index *idx,
                             const char *kind, const vkt_ckpt_param *mine, float *src,
                             float *out)
{
    VKT_CHECK(vkt__ckpt_load_flat(dir, idx, kind, src));
    return vkt__ckpt_relayout(idx, src, mine, e->model->nparams, e->model->padded, out);
}

vkt_status vkt_engine_load(vkt_engine *e, const char *path)
{
    VKT_FAIL_IF(!e || !path, VKT_ERR_INVALID_ARG, "vkt_engine_load: NULL argument");
    VKT_FAIL_IF(e->micro_step != 0 || e->sync_started, VKT_ERR_INVALID_USAGE,
                "vkt_engine_load: load between updates, not in a gradient accumulation");
    vkt_model *m = e->model;
    char dir[4200];
    vkt_ckpt_index *idx = NULL;
    vkt_ckpt_param *mine = NULL;
    float *src = NULL, *flat = NULL;
    vkt_status st = vkt__ckpt_open(path, dir, sizeof dir, &idx);
    if (st == VKT_OK) st = param_table(m, &mine);
    if (st == VKT_OK) st = vkt__ckpt_check_model(idx, dir, mine, m->nparams);
    const char *kinds[NSTATES_MAX];
    vkt_buffer *bufs[NSTATES_MAX];
    size_t ns = 0;
    if (st == VKT_OK) {
        VKT_CHECK_GOTO(st, vkt__nn_optim_prepare(m, &e->opt), out);
        ns = state_kinds(e, kinds, bufs);
        bool same = ns == idx->nstates;
        for (size_t k = 0; same && k < ns; k++) same = strcmp(kinds[k], idx->states[k]) == 0;
        if (!same)
            st = VKT_ERROR(VKT_ERR_INVALID_ARG,
                           "checkpoint %s holds optimizer state for another optimizer (%zu "
                           "states, the first '%s'); configure the optimizer it was saved with",
                           dir, idx->nstates, idx->nstates ? idx->states[0] : "none");
    }
    if (st == VKT_OK) {
        src = vkt_malloc(idx->flat_length * sizeof *src + 4);
        flat = vkt_malloc(m->padded * sizeof *flat);
        if (!src || !flat) st = VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory");
    }
    if (st == VKT_OK) st = load_state(e, dir, idx, VKT_CKPT_MASTER, mine, src, flat);
    if (st == VKT_OK) st = vkt__nn_set_master_flat(m, flat);
    for (size_t k = 0; k < ns && st == VKT_OK; k++) {
        st = load_state(e, dir, idx, kinds[k], mine, src, flat);
        /* packed in place: a piece's local offset never exceeds its flat one */
        for (uint32_t i = 0; i < m->npieces && st == VKT_OK; i++)
            memmove(flat + m->pieces[i].local, flat + m->pieces[i].flat, m->pieces[i].count * 4);
        if (st == VKT_OK) st = vkt_buffer_upload(bufs[k], 0, flat, m->shard_len * 4);
    }
    if (st == VKT_OK) st = restore_host_state(e, idx);
out:
    vkt_free(src);
    vkt_free(flat);
    vkt_free(mine);
    vkt__ckpt_index_free(idx);
    /* Fail together: a rank that could not load must not train on alone. */
    int32_t bad = st != VKT_OK;
    if (e->comm && e->world > 1) {
        vkt_status cst = vkt_comm_allreduce(e->comm, &bad, &bad, 1, VKT_DTYPE_I32, VKT_REDOP_MAX);
        if (cst != VKT_OK) return cst;
    }
    if (st == VKT_OK && bad)
        st = VKT_ERROR(VKT_ERR_IO, "vkt_engine_load: another rank could not load %s (see its "
                                   "error)", path);
    if (st == VKT_OK) st = vkt_model_zero_grad(m);
    e->acc_fresh = true;
    return st;
}
