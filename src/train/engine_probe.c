/* vktrain.rank_batch "auto": split the global micro-batch between ranks by
 * their measured speed. Each rank times forward + backward of a synthetic
 * micro-batch of the even split's size on its own device; the ranks
 * all-gather their seconds per sample and give each rank a share of
 * G = Σ micro-batches proportional to its speed (at least one sample). The
 * split replaces the even one in the engine's config, so rank 0 prints it
 * and checkpoints carry it (as an explicit rank_batch list). Slow ranks
 * thus stop holding every step back when devices differ (a discrete GPU
 * next to lavapipe); the update is the same as ever, since gradients are
 * weighted by sample count. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/engine_int.h"

#define PROBE_REPS 3
#define VKT_ENGINE_PROBE_MAX 1024 /* ranks; the arrays below live on the stack */

/* Median seconds per sample of PROBE_REPS forward + backward passes (after
 * one untimed pass that records the command buffers). */
static vkt_status time_rank(vkt_engine *e, uint32_t b, double *per_sample)
{
    vkt_model *m = e->model;
    uint32_t seq = m->gpt ? m->context : 1;
    uint64_t rows = (uint64_t)b * seq;
    uint64_t in = m->gpt ? 0 : rows * m->in_features;
    uint64_t tgt = m->loss == VKT_LOSS_MSE ? rows * m->out_features : 0;
    float *x = vkt_calloc(in + tgt + 1, sizeof *x);
    int32_t *t = vkt_calloc(2 * rows, sizeof *t); /* tokens, labels: all 0 */
    vkt_status st = x && t ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "engine: out of host memory");
    vkt_batch batch = {.size = b, .inputs = x, .labels = t + rows, .targets_f = x + in,
                       .tokens = t, .seq_len = m->gpt ? seq : 0};
    double times[PROBE_REPS];
    for (int k = -1; st == VKT_OK && k < PROBE_REPS; k++) {
        double t0 = vkt__engine_now();
        st = vkt_model_forward(m, &batch, NULL);
        if (st == VKT_OK) st = vkt_model_backward(m);
        if (k >= 0) times[k] = vkt__engine_now() - t0;
    }
    vkt_free(x);
    vkt_free(t);
    VKT_CHECK(st);
    for (int i = 1; i < PROBE_REPS; i++) /* insertion sort of three */
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
            double s = times[j];
            times[j] = times[j - 1], times[j - 1] = s;
        }
    *per_sample = times[PROBE_REPS / 2] / b;
    return vkt_model_zero_grad(m);
}

/* Shares of g proportional to speed[r], each ≥ 1, summing to g: floors
 * first, then the remainder by largest fraction. */
static void split(const double *speed, int w, uint64_t g, uint64_t *out)
{
    double total = 0, frac[VKT_ENGINE_PROBE_MAX];
    for (int r = 0; r < w; r++) total += speed[r];
    uint64_t used = 0;
    for (int r = 0; r < w; r++) {
        double want = (double)(g - (uint64_t)w) * speed[r] / total; /* beyond the 1 each */
        out[r] = 1 + (uint64_t)floor(want);
        frac[r] = want - floor(want);
        used += out[r];
    }
    while (used < g) {
        int best = 0;
        for (int r = 1; r < w; r++)
            if (frac[r] > frac[best]) best = r;
        out[best]++, frac[best] = -1, used++;
    }
}

vkt_status vkt__engine_probe_batches(vkt_engine *e)
{
    vkt_config *c = e->cfg;
    if (!c->rank_batch_auto || e->world < 2 || !e->comm) return VKT_OK;
    VKT_FAIL_IF(e->world > VKT_ENGINE_PROBE_MAX, VKT_ERR_UNSUPPORTED,
                "vktrain.rank_batch \"auto\" splits at most %d ranks; give the list instead",
                VKT_ENGINE_PROBE_MAX);
    uint64_t g = 0;
    for (int r = 0; r < e->world; r++) g += c->rank_batch[r];
    double mine, per[VKT_ENGINE_PROBE_MAX], speed[VKT_ENGINE_PROBE_MAX];
    VKT_CHECK(time_rank(e, (uint32_t)c->rank_batch[e->rank], &mine));
    VKT_CHECK(vkt_comm_allgather(e->comm, &mine, per, 1, VKT_DTYPE_F64));
    for (int r = 0; r < e->world; r++) speed[r] = per[r] > 0 ? 1.0 / per[r] : 1.0;
    split(speed, e->world, g, c->rank_batch);
    bool uniform = true;
    for (int r = 1; r < e->world; r++) uniform = uniform && c->rank_batch[r] == c->rank_batch[0];
    c->train_micro_batch_size_per_gpu = uniform ? c->rank_batch[0] : 0;
    c->rank_batch_auto = false; /* from now on, and in checkpoints, the list */
    e->micro_batch = c->rank_batch[e->rank];
    if (e->rank == 0) {
        fprintf(e->warn, "vktrain: rank_batch \"auto\": measured ms per sample");
        for (int r = 0; r < e->world; r++) fprintf(e->warn, " %s%.3f", r ? "/ " : "", 1e3 * per[r]);
        fprintf(e->warn, "; micro-batches");
        for (int r = 0; r < e->world; r++)
            fprintf(e->warn, " %s%llu", r ? "/ " : "", (unsigned long long)c->rank_batch[r]);
        fprintf(e->warn, " (sum %llu)\n", (unsigned long long)g);
        fflush(e->warn);
    }
    return VKT_OK;
}
