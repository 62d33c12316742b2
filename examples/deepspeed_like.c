/* deepspeed_like: a DeepSpeed training script, written in C against
 * vktrain's engine and configured by the same JSON file DeepSpeed reads
 * (examples/deepspeed_like.json: ZeRO stage 2, fp16 with dynamic loss
 * scaling, gradient accumulation 2, WarmupLR, gradient clipping, SGD with
 * momentum).
 *
 * The DeepSpeed program it mirrors, line by line:
 *
 *     deepspeed.init_distributed()              # RANK, WORLD_SIZE, MASTER_ADDR/PORT
 *     net = Net()                               # layers = [nn.Linear(10, 10)]
 *     model_engine, _, _, _ = deepspeed.initialize(
 *         model=net, model_parameters=net.parameters(), config="deepspeed_like.json")
 *     sampler = DistributedSampler(data, shuffle=False)
 *     loader = DataLoader(data, batch_size=32, sampler=sampler)  # the micro-batch
 *     for epoch in range(10):
 *         for x, y in loader:
 *             loss = F.mse_loss(model_engine(x), y)   # forward
 *             model_engine.backward(loss)             # backward (scaled, accumulated)
 *             model_engine.step()                     # update every 2nd micro-batch
 *
 * DeepSpeed is not needed to check it: tests/examples/fixtures/
 * make_example_fixtures.py runs the same arithmetic in plain PyTorch (DDP
 * with no_sync for the accumulation, loss scaling, clipping, DeepSpeed's
 * WarmupLR) and the test example_deepspeed_like compares the final weights:
 * that reference runs in fp32 and this program in fp16 with fp32 master
 * weights, so they agree to fp16's rounding of the gradients (the test
 * allows 2e-3 of the largest weight; the script says why).
 *
 *   vktrain launch -n 2 build/examples/deepspeed_like [--config examples/deepspeed_like.json]
 *       [--init W.safetensors] [--data D.safetensors] [--out OUT.safetensors]
 *       [--epochs N] [--store ADDR]
 *
 * The files are those of examples/ddp_linear.c: --init "layers.0.weight"
 * [10, 10] and "layers.0.bias" [10]; --data "x" [N, 10] and "y" [N, 10] with
 * N a multiple of the micro-batch x ranks; --out the final fp32 master
 * weights, written by rank 0. Without WORLD_SIZE it runs as one process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vktrain/vktrain.h>

#define FEATURES 10

typedef struct args {
    const char *config, *init, *data, *out, *store;
    int epochs;
} args;

static int parse_args(int argc, char **argv, args *a)
{
    *a = (args){.config = "examples/deepspeed_like.json", .epochs = 10};
    for (int i = 1; i < argc; i++) {
        const char **slot = !strcmp(argv[i], "--config")  ? &a->config
                            : !strcmp(argv[i], "--init")  ? &a->init
                            : !strcmp(argv[i], "--data")  ? &a->data
                            : !strcmp(argv[i], "--out")   ? &a->out
                            : !strcmp(argv[i], "--store") ? &a->store
                                                          : NULL;
        if (i + 1 < argc && slot) {
            *slot = argv[++i];
        } else if (i + 1 < argc && !strcmp(argv[i], "--epochs")) {
            a->epochs = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: deepspeed_like [--config DS.json] [--init W.safetensors] "
                            "[--data D.safetensors] [--out OUT.safetensors] [--epochs N] "
                            "[--store ADDR]\n");
            return 2;
        }
    }
    return 0;
}

static float uniform(uint64_t *s) /* xorshift64*, [-1, 1) */
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return (float)((*s * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 23) - 1.0f;
}

/* The dataset (as examples/ddp_linear.c): --data, or 256 samples y = A x + noise. */
static vkt_status load_data(const char *path, uint64_t *n, float **x, float **y)
{
    vkt_tensor_file *f = NULL;
    vkt_tensor_info ti = {0};
    if (path) {
        vkt_status st = vkt_tensor_file_open(path, &f);
        if (st == VKT_OK) st = vkt_tensor_file_find(f, "x", &ti);
        if (st == VKT_OK && (ti.ndim != 2 || ti.shape[1] != FEATURES)) {
            fprintf(stderr, "deepspeed_like: %s: x must be [N, %d]\n", path, FEATURES);
            st = VKT_ERR_INVALID_ARG;
        }
        if (st != VKT_OK) {
            vkt_tensor_file_close(f);
            return st;
        }
    }
    *n = path ? ti.shape[0] : 256;
    *x = malloc(*n * FEATURES * sizeof **x), *y = malloc(*n * FEATURES * sizeof **y);
    vkt_status st = *x && *y ? VKT_OK : VKT_ERR_NOMEM;
    if (st == VKT_OK && path) {
        st = vkt_tensor_file_read_f32(f, "x", *x, *n * FEATURES);
        if (st == VKT_OK) st = vkt_tensor_file_read_f32(f, "y", *y, *n * FEATURES);
    } else if (st == VKT_OK) {
        float a[FEATURES][FEATURES];
        uint64_t s = 42;
        for (int i = 0; i < FEATURES; i++)
            for (int j = 0; j < FEATURES; j++) a[i][j] = uniform(&s);
        for (uint64_t k = 0; k < *n * FEATURES; k++) (*x)[k] = uniform(&s);
        for (uint64_t k = 0; k < *n; k++)
            for (int i = 0; i < FEATURES; i++) {
                float v = 0.1f * uniform(&s);
                for (int j = 0; j < FEATURES; j++) v += a[i][j] * (*x)[k * FEATURES + j];
                (*y)[k * FEATURES + i] = v;
            }
    }
    vkt_tensor_file_close(f);
    return st;
}

/* The training loop: epochs over this rank's share of the n samples, in
 * micro-batches of mb. */
static vkt_status train(vkt_engine *e, int rank, int world, int epochs, uint64_t mb, uint64_t n,
                        const float *x, const float *y)
{
    float *bx = malloc(mb * FEATURES * sizeof *bx), *by = malloc(mb * FEATURES * sizeof *by);
    vkt_status st = bx && by ? VKT_OK : VKT_ERR_NOMEM;
    uint64_t per_rank = n / (uint64_t)world;
    for (int epoch = 0; epoch < epochs && st == VKT_OK; epoch++)
        for (uint64_t j0 = 0; j0 < per_rank && st == VKT_OK; j0 += mb) {
            /* DistributedSampler(shuffle=False): rank r's j-th sample is r + j x world. */
            for (uint64_t s = 0; s < mb; s++) {
                uint64_t k = (uint64_t)rank + (j0 + s) * (uint64_t)world;
                memcpy(bx + s * FEATURES, x + k * FEATURES, sizeof(float) * FEATURES);
                memcpy(by + s * FEATURES, y + k * FEATURES, sizeof(float) * FEATURES);
            }
            vkt_batch b = {.size = (uint32_t)mb, .inputs = bx, .targets_f = by};
            float loss;
            /* loss = F.mse_loss(model_engine(x), y) */
            st = vkt_engine_forward(e, &b, &loss);
            /* model_engine.backward(loss): the loss times the loss scale;
             * gradients accumulate, and the last micro-batch of an update
             * also starts reducing them across ranks. */
            if (st == VKT_OK) st = vkt_engine_backward(e);
            /* model_engine.step(): at every gradient_accumulation_steps-th
             * micro-batch: unscale, skip on fp16 overflow, clip, SGD with the
             * WarmupLR learning rate, all-gather the ZeRO shards. */
            if (st == VKT_OK) st = vkt_engine_step(e);
        }
    free(bx);
    free(by);
    return st;
}

static int fail(int rank, const char *what)
{
    fprintf(stderr, "deepspeed_like: rank %d: %s: %s\n", rank, what, vkt_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    args a;
    if (parse_args(argc, argv, &a)) return 2;

    /* deepspeed.init_distributed() */
    vkt_comm *comm = NULL;
    vkt_dist_env env; /* torchrun-style variables, srun or mpirun; else one process */
    if (vkt_dist_env_detect(&env) != VKT_OK) return fail(-1, "reading the environment");
    if (strcmp(env.source, "none")) {
        vkt_comm_opts co = VKT_COMM_OPTS_INIT;
        co.store_addr = a.store;
        if (vkt_comm_create(&co, &comm) != VKT_OK) return fail(-1, "joining the job");
    }
    int rank = comm ? vkt_comm_rank(comm) : 0, world = comm ? vkt_comm_size(comm) : 1;
    vkt_config *cfg = NULL;
    vkt_device *dev = NULL;
    vkt_model *m = NULL;
    vkt_engine *e = NULL;
    float *x = NULL, *y = NULL, *w = NULL;
    int rc = 1;

    /* The config is read first: its fp16/bf16 section picks the dtype the
     * model computes in (DeepSpeed casts the module; here it is built so). */
    vkt_config_opts cop = VKT_CONFIG_OPTS_INIT;
    cop.world_size = (uint32_t)world;
    cop.warn_stream = rank == 0 ? stderr : NULL;
    if (vkt_config_load(a.config, &cop, &cfg) != VKT_OK) {
        fail(rank, "reading --config");
        goto out;
    }

    /* net = Net() */
    static const uint32_t sizes[] = {FEATURES, FEATURES};
    vkt_mlp_opts mo = VKT_MLP_OPTS_INIT;
    mo.layers = 1, mo.sizes = sizes, mo.loss = VKT_LOSS_MSE, mo.seed = 1;
    mo.dtype = cfg->fp16 ? VKT_DTYPE_F16 : cfg->bf16 ? VKT_DTYPE_BF16 : VKT_DTYPE_F32;
    if (vkt_device_create(NULL, &dev) != VKT_OK || vkt_model_create_mlp(dev, &mo, &m) != VKT_OK) {
        fail(rank, "creating the model");
        goto out;
    }
    if (a.init && vkt_model_load_safetensors(m, a.init) != VKT_OK) {
        fail(rank, "loading --init");
        goto out;
    }

    /* model_engine = deepspeed.initialize(model=net, config=...): the fp32
     * master weights, the ZeRO shards, the loss scaler and the schedule. */
    vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
    eo.model = m, eo.comm = comm, eo.config = cfg;
    eo.progress_stream = stdout; /* every steps_per_print updates, rank 0 */
    if (vkt_engine_create(&eo, &e) != VKT_OK) {
        fail(rank, "deepspeed.initialize");
        goto out;
    }
    uint64_t n = 0, mb = cfg->train_micro_batch_size_per_gpu;
    if (load_data(a.data, &n, &x, &y) != VKT_OK) {
        fail(rank, "loading --data");
        goto out;
    }
    if (!mb || n % (mb * (uint64_t)world)) {
        fprintf(stderr, "deepspeed_like: %llu samples do not split into micro-batches of %llu "
                        "on %d ranks\n", (unsigned long long)n, (unsigned long long)mb, world);
        goto out;
    }
    if (rank == 0)
        printf("deepspeed_like: %d rank(s), micro-batch %llu x accumulation %llu x ranks = "
               "%llu, %s, ZeRO stage %u\n", world, (unsigned long long)mb,
               (unsigned long long)cfg->gradient_accumulation_steps,
               (unsigned long long)cfg->train_batch_size,
               cfg->fp16 ? "fp16" : cfg->bf16 ? "bf16" : "fp32", cfg->zero.stage);

    if (train(e, rank, world, a.epochs, mb, n, x, y) != VKT_OK) {
        fail(rank, "training");
        goto out;
    }
    if (rank == 0)
        printf("deepspeed_like: %llu updates, %llu skipped for fp16 overflow, loss scale %g, "
               "last lr %g\n", (unsigned long long)vkt_engine_global_steps(e),
               (unsigned long long)vkt_engine_skipped_steps(e), vkt_engine_loss_scale(e),
               vkt_engine_lr(e));

    /* model_engine.save_16bit_model() would write fp16; here the fp32 master
     * weights, gathered from the ZeRO shards (collective), written by rank 0. */
    w = malloc(vkt_model_num_params(m) * sizeof *w);
    if (!w || vkt_engine_get_params(e, w) != VKT_OK) {
        fail(rank, "gathering the weights");
        goto out;
    }
    if (rank == 0 && a.out) {
        if (vkt_model_write_params(m, w, a.out) != VKT_OK) {
            fail(rank, "writing --out");
            goto out;
        }
        printf("deepspeed_like: wrote %s\n", a.out);
    }
    rc = 0;
out:
    free(w);
    free(x);
    free(y);
    vkt_engine_destroy(e);
    vkt_model_destroy(m);
    vkt_device_destroy(dev);
    vkt_config_destroy(cfg);
    vkt_comm_destroy(comm);
    return rc;
}
