/* train_ddp: data-parallel training with the engine — every rank runs this
 * program; they meet through a rendezvous store, each trains on its share
 * of every global batch, and the engine keeps their weights identical.
 * The config is DeepSpeed's JSON (examples/ds_config.json: bf16, ZeRO-1,
 * gradient accumulation, clipping, warmup/decay schedule).
 *
 *   RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \
 *   VKT_JOB_SECRET=... build/examples/train_ddp examples/ds_config.json [updates [store]]
 *   (and the same with RANK=1; tools/demo.sh starts both). store overrides
 *   the TCP store at MASTER_ADDR:MASTER_PORT, e.g. "file:/shared/dir".
 *
 * The task: an MLP learns labels given by a fixed random "teacher"; sample i
 * of the data is drawn from seed i, so the data does not depend on how many
 * ranks share it. Rank 0 prints progress; at the end every rank checks that
 * all replicas hold the same weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vktrain/vktrain.h>

#define IN 32
#define CLASSES 8

static float teacher[IN][CLASSES];

static float uniform(uint64_t *s) /* xorshift64*, [-1, 1) */
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return (float)((*s * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 23) - 1.0f;
}

static void sample(uint64_t i, float *x, int32_t *y)
{
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (i * 0xbf58476d1ce4e5b9ull + 1);
    float best = -INFINITY;
    for (int k = 0; k < IN; k++) x[k] = uniform(&s);
    for (int c = 0; c < CLASSES; c++) {
        float z = 0;
        for (int k = 0; k < IN; k++) z += x[k] * teacher[k][c];
        if (z > best) best = z, *y = c;
    }
}

static int fail(int rank, const char *what)
{
    fprintf(stderr, "train_ddp: rank %d: %s: %s\n", rank, what, vkt_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: train_ddp CONFIG.json [updates [store]]\n");
        return 2;
    }
    int updates = argc > 2 ? atoi(argv[2]) : 200;
    uint64_t ts = 12345;
    for (int k = 0; k < IN; k++)
        for (int c = 0; c < CLASSES; c++) teacher[k][c] = uniform(&ts);

    vkt_comm_opts co = VKT_COMM_OPTS_INIT; /* RANK, WORLD_SIZE, MASTER_ADDR/PORT, secret */
    if (argc > 3) co.store_addr = argv[3];
    vkt_comm *comm = NULL;
    if (vkt_comm_create(&co, &comm) != VKT_OK) return fail(-1, "joining the job");
    int rank = vkt_comm_rank(comm);
    vkt_device *dev = NULL;
    vkt_model *m = NULL;
    vkt_engine *e = NULL;
    int rc = 1;
    if (vkt_device_create(NULL, &dev) != VKT_OK) {
        fail(rank, "opening the device");
        goto out;
    }
    static const uint32_t sizes[] = {IN, 128, 128, CLASSES};
    vkt_mlp_opts mo = VKT_MLP_OPTS_INIT;
    mo.layers = 3, mo.sizes = sizes, mo.activation = VKT_ACTIVATION_GELU, mo.seed = 1;
    mo.dtype = VKT_DTYPE_BF16; /* the config enables bf16 */
    if (vkt_model_create_mlp(dev, &mo, &m) != VKT_OK) {
        fail(rank, "creating the model");
        goto out;
    }
    vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
    eo.model = m, eo.comm = comm, eo.config_path = argv[1];
    eo.progress_stream = stdout;
    if (vkt_engine_create(&eo, &e) != VKT_OK) {
        fail(rank, "starting the engine");
        goto out;
    }
    const vkt_config *cfg = vkt_engine_config(e);
    uint64_t mb = cfg->train_micro_batch_size_per_gpu, gas = cfg->gradient_accumulation_steps;
    int world = vkt_comm_size(comm);
    if (rank == 0)
        printf("train_ddp: %d ranks on %s, global batch %llu = %llu per rank x %llu "
               "accumulation x %d ranks, %s, ZeRO stage %u\n",
               world, vkt_device_get_caps(dev)->name, (unsigned long long)cfg->train_batch_size,
               (unsigned long long)mb, (unsigned long long)gas, world,
               cfg->bf16 ? "bf16" : cfg->fp16 ? "fp16" : "fp32", cfg->zero.stage);
    float *x = malloc(mb * IN * sizeof *x);
    int32_t *y = malloc(mb * sizeof *y);
    float first = 0, loss = 0;
    for (int u = 0; u < updates; u++)
        for (uint64_t k = 0; k < gas; k++) {
            /* this rank's micro-batch k of global batch u */
            uint64_t start = (uint64_t)u * cfg->train_batch_size + (k * (uint64_t)world + (uint64_t)rank) * mb;
            for (uint64_t s = 0; s < mb; s++) sample(start + s, x + s * IN, y + s);
            vkt_batch b = {.size = (uint32_t)mb, .inputs = x, .labels = y};
            if (vkt_engine_forward(e, &b, &loss) != VKT_OK || vkt_engine_backward(e) != VKT_OK ||
                vkt_engine_step(e) != VKT_OK) {
                fail(rank, "training");
                goto out_free;
            }
            if (u == 0 && k == 0) first = loss;
        }
    /* Are the replicas identical? Compare a checksum of the weights. */
    uint64_t n = vkt_model_num_params(m);
    float *p = malloc(n * sizeof *p);
    double sum[2] = {0, 0};
    if (vkt_engine_get_params(e, p) == VKT_OK) {
        for (uint64_t i = 0; i < n; i++) sum[0] += p[i] * (double)(i % 97 + 1);
        sum[1] = -sum[0];
        vkt_comm_allreduce(comm, sum, sum, 2, VKT_DTYPE_F64, VKT_REDOP_MAX);
    }
    free(p);
    if (rank == 0)
        printf("train_ddp: first micro-batch loss %.4f, last %.4f (chance: ln 8 = %.4f); "
               "replicas %s\n", first, loss, log(8.0),
               sum[0] == -sum[1] ? "identical" : "DIFFER");
    rc = sum[0] == -sum[1] && loss < 0.5f * first ? 0 : 1;
out_free:
    free(x);
    free(y);
out:
    vkt_engine_destroy(e);
    vkt_model_destroy(m);
    vkt_device_destroy(dev);
    vkt_comm_destroy(comm);
    return rc;
}
