/* vktrain train: opening the data, this rank's batches, evaluation on the
 * held-out part, and the bigram baseline of the language model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/train.h"

#define IDX_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

/* DIR/NAME, or DIR/NAME.gz when only that exists. */
static void idx_path(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
    if (access(out, R_OK) == 0) return;
    snprintf(out, cap, "%s/%s.gz", dir, name);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int open_tokens(train_job *j, const char *path, double from, double to,
                       vkt_dataset **out)
{
    vkt_status st = ends_with(path, ".bin")
                        ? vkt_dataset_open_tokens(path, j->o.context, from, to, out)
                        : vkt_dataset_open_text(path, j->o.context, from, to, out);
    return st == VKT_OK ? 0 : cli_fail(st, "train: opening the data (--data, --context, "
                                           "--val-fraction)");
}

/* Mean and standard deviation of every input value of the training set
 * (standardised inputs let the same learning rate suit any data set). */
static int input_stats(train_job *j)
{
    enum { CHUNK = 512 };
    uint64_t *idx = malloc(CHUNK * sizeof *idx);
    float *x = malloc((size_t)CHUNK * j->ti.features * sizeof *x);
    int32_t *y = malloc(CHUNK * sizeof *y);
    double s = 0, s2 = 0;
    vkt_status st = idx && x && y ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "out of memory");
    for (uint64_t at = 0; st == VKT_OK && at < j->ti.samples; at += CHUNK) {
        uint32_t n = (uint32_t)(j->ti.samples - at < CHUNK ? j->ti.samples - at : CHUNK);
        for (uint32_t k = 0; k < n; k++) idx[k] = at + k;
        st = vkt_dataset_fill(j->train, idx, n, x, NULL, y);
        for (uint64_t i = 0; st == VKT_OK && i < (uint64_t)n * j->ti.features; i++)
            s += x[i], s2 += (double)x[i] * x[i];
    }
    free(idx);
    free(x);
    free(y);
    if (st != VKT_OK) return cli_fail(st, "train: reading the training set");
    double cnt = (double)j->ti.samples * j->ti.features, mean = s / cnt;
    double var = s2 / cnt - mean * mean;
    j->in_mean = (float)mean;
    j->in_std = var > 1e-12 ? (float)sqrt(var) : 1.0f;
    return 0;
}

static void standardise(const train_job *j, uint32_t n)
{
    for (uint64_t i = 0; i < (uint64_t)n * j->ti.features; i++)
        j->inputs[i] = (j->inputs[i] - j->in_mean) / j->in_std;
}

int train_open_data(train_job *j)
{
    if (!j->gpt) {
        const char *dir = j->o.data ? j->o.data : IDX_DEFAULT_DIR;
        char im[4096], lb[4096];
        idx_path(im, sizeof im, dir, "train-images-idx3-ubyte");
        idx_path(lb, sizeof lb, dir, "train-labels-idx1-ubyte");
        vkt_status st = vkt_dataset_open_idx(im, lb, &j->train);
        if (st != VKT_OK) return cli_fail(st, "train: opening the training set");
        idx_path(im, sizeof im, dir, "t10k-images-idx3-ubyte");
        idx_path(lb, sizeof lb, dir, "t10k-labels-idx1-ubyte");
        st = vkt_dataset_open_idx(im, lb, &j->test);
        if (st != VKT_OK) return cli_fail(st, "train: opening the test set");
        vkt_dataset_info a, b;
        vkt_dataset_get_info(j->train, &a);
        vkt_dataset_get_info(j->test, &b);
        if (a.features != b.features || b.classes > a.classes)
            return cli_fail(VKT_ERROR(VKT_ERR_CORRUPT,
                                      "the test set %s (%u values per image, labels 0..%u) does "
                                      "not match the training set in %s (%u values, labels "
                                      "0..%u); use the t10k-* files of the same data set",
                                      im, b.features, b.classes - 1, dir, a.features,
                                      a.classes - 1),
                            "train: opening the test set");
    } else {
        const char *path = j->o.data ? j->o.data : "data/kjv.txt";
        double split = 1.0 - j->o.val_fraction;
        if (open_tokens(j, path, 0.0, split, &j->train) || open_tokens(j, path, split, 1.0, &j->test))
            return 1;
    }
    vkt_dataset_get_info(j->train, &j->ti);
    return j->gpt ? 0 : input_stats(j);
}

int train_create_sampler(train_job *j)
{
    uint32_t *rb = calloc((size_t)j->world, sizeof *rb);
    if (!rb) return cli_fail(VKT_ERROR(VKT_ERR_NOMEM, "out of memory"), "train");
    /* the engine's config: rank_batch "auto" has been resolved there */
    const vkt_config *c = vkt_engine_config(j->e);
    for (int r = 0; r < j->world; r++)
        rb[r] = (uint32_t)(c->rank_batch ? c->rank_batch[r] : c->train_micro_batch_size_per_gpu);
    vkt_sampler_opts so = VKT_SAMPLER_OPTS_INIT;
    so.samples = j->ti.samples, so.world = (uint32_t)j->world, so.rank = (uint32_t)j->rank;
    so.rank_batch = rb, so.shuffle = true, so.seed = j->o.seed;
    vkt_status st = vkt_sampler_create(&so, &j->sampler);
    free(rb);
    if (st != VKT_OK) return cli_fail(st, "train: the sampler");
    size_t rows = (size_t)j->micro * (j->gpt ? j->o.context : 1);
    uint32_t width = j->gpt ? j->ti.vocab : j->ti.classes;
    j->idx = calloc(j->micro, sizeof *j->idx);
    j->labels = calloc(rows, sizeof *j->labels);
    j->outputs = calloc(rows * width, sizeof *j->outputs);
    if (j->gpt) j->tokens = calloc(rows, sizeof *j->tokens);
    else j->inputs = calloc(rows * j->ti.features, sizeof *j->inputs);
    if (!j->idx || !j->labels || !j->outputs || (!j->tokens && !j->inputs))
        return cli_fail(VKT_ERROR(VKT_ERR_NOMEM, "out of memory for the batch"), "train");
    return 0;
}

void train_close_data(train_job *j)
{
    vkt_sampler_destroy(j->sampler);
    vkt_dataset_close(j->train);
    vkt_dataset_close(j->test);
    free(j->idx);
    free(j->inputs);
    free(j->tokens);
    free(j->labels);
    free(j->outputs);
}

static vkt_batch batch_of(const train_job *j, uint32_t n)
{
    vkt_batch b = {.size = n, .inputs = j->inputs, .labels = j->labels, .tokens = j->tokens};
    if (j->gpt) b.seq_len = j->o.context;
    return b;
}

int train_next_batch(train_job *j, vkt_batch *b, uint64_t *epoch)
{
    vkt_sampler_next(j->sampler, j->idx, epoch);
    vkt_status st = vkt_dataset_fill(j->train, j->idx, j->micro, j->inputs, j->tokens, j->labels);
    if (st != VKT_OK) return cli_fail(st, "train: reading a batch");
    if (!j->gpt) standardise(j, j->micro);
    *b = batch_of(j, j->micro);
    return 0;
}

/* Cross-entropy (nats) of row `logits` for label y, and whether its argmax
 * is y. */
static double row_xent(const float *logits, uint32_t v, int32_t y, bool *hit)
{
    float mx = logits[0];
    uint32_t arg = 0;
    for (uint32_t c = 1; c < v; c++)
        if (logits[c] > mx) mx = logits[c], arg = c;
    double z = 0;
    for (uint32_t c = 0; c < v; c++) z += exp((double)logits[c] - mx);
    *hit = (int32_t)arg == y;
    return log(z) + mx - logits[y];
}

/* This rank's part of the evaluation: [lo, hi) of the held-out samples, in
 * `batches` micro-batches of the training size (the recorded forward is
 * reused; the last ones are padded with ignored labels: under ZeRO-3 every
 * rank must run as many forwards). sums: loss, hits, targets. */
static int eval_part(train_job *j, uint64_t lo, uint64_t hi, uint64_t batches, double sums[3])
{
    uint32_t seq = j->gpt ? j->o.context : 1;
    uint32_t width = j->gpt ? j->ti.vocab : j->ti.classes;
    for (uint64_t k = 0, at = lo; k < batches; k++, at += j->micro) {
        uint32_t n = (uint32_t)(at >= hi ? 0 : hi - at < j->micro ? hi - at : j->micro);
        for (uint32_t q = 0; q < j->micro; q++) j->idx[q] = n ? at + (q < n ? q : 0) : lo;
        vkt_status st = vkt_dataset_fill(j->test, j->idx, j->micro, j->inputs, j->tokens,
                                         j->labels);
        for (uint64_t r = (uint64_t)n * seq; r < (uint64_t)j->micro * seq; r++) j->labels[r] = -1;
        if (!j->gpt) standardise(j, j->micro);
        vkt_batch b = batch_of(j, j->micro);
        if (st == VKT_OK) st = vkt_engine_eval(j->e, &b, NULL);
        if (st == VKT_OK) st = vkt_model_get_outputs(j->model, j->outputs);
        if (st != VKT_OK) return cli_fail(st, "train: evaluating");
        for (uint64_t r = 0; r < (uint64_t)n * seq; r++) {
            bool hit;
            sums[0] += row_xent(j->outputs + r * width, width, j->labels[r], &hit);
            sums[1] += hit;
            sums[2] += 1;
        }
    }
    return 0;
}

int train_evaluate(train_job *j, uint32_t max_batches, double *loss, double *acc)
{
    vkt_dataset_info ei;
    vkt_dataset_get_info(j->test, &ei);
    uint64_t n = ei.samples, w = (uint64_t)j->world, r = (uint64_t)j->rank;
    uint64_t lo = n * r / w, hi = n * (r + 1) / w;
    if (max_batches && hi - lo > (uint64_t)max_batches * j->micro)
        hi = lo + (uint64_t)max_batches * j->micro;
    double sums[3] = {0, 0, 0};
    int64_t batches = (int64_t)((hi - lo + j->micro - 1) / j->micro);
    if (j->comm) { /* the most any rank needs (micro-batches may differ by rank) */
        vkt_status st = vkt_comm_allreduce(j->comm, &batches, &batches, 1, VKT_DTYPE_I64,
                                           VKT_REDOP_MAX);
        if (st != VKT_OK) return cli_fail(st, "train: evaluating");
    }
    if (eval_part(j, lo, hi, (uint64_t)batches, sums)) return 1;
    if (j->comm) {
        vkt_status st = vkt_comm_allreduce(j->comm, sums, sums, 3, VKT_DTYPE_F64, VKT_REDOP_SUM);
        if (st != VKT_OK) return cli_fail(st, "train: evaluating");
    }
    *loss = sums[2] > 0 ? sums[0] / sums[2] : 0;
    *acc = sums[2] > 0 ? 100.0 * sums[1] / sums[2] : 0;
    return 0;
}

double train_bigram_loss(const train_job *j)
{
    vkt_dataset_info vi;
    vkt_dataset_get_info(j->test, &vi);
    uint64_t v = j->ti.vocab;
    if (v > 4096) return -1;
    double *count = calloc(v * v, sizeof *count), *row = calloc(v, sizeof *row);
    if (!count || !row) {
        free(count);
        free(row);
        return -1;
    }
    const uint16_t *t = vkt_dataset_tokens(j->train);
    for (uint64_t i = 0; i + 1 < j->ti.tokens; i++) {
        count[t[i] * v + t[i + 1]] += 1;
        row[t[i]] += 1;
    }
    const uint16_t *u = vkt_dataset_tokens(j->test);
    double nll = 0;
    uint64_t pairs = 0;
    for (uint64_t i = 0; i + 1 < vi.tokens; i++, pairs++) {
        uint64_t a = u[i] < v ? u[i] : 0, b = u[i + 1] < v ? u[i + 1] : 0;
        nll -= log((count[a * v + b] + 1.0) / (row[a] + (double)v));
    }
    free(count);
    free(row);
    return pairs ? nll / (double)pairs : -1;
}
