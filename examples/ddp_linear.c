/* ddp_linear: PyTorch's DistributedDataParallel tutorial, written in C
 * against vktrain's public API.
 *
 * The PyTorch program it mirrors (tests/examples/fixtures/
 * make_example_fixtures.py runs exactly this, and the test example_ddp_linear
 * compares the final weights of the two):
 *
 *     dist.init_process_group("gloo")           # RANK, WORLD_SIZE, MASTER_ADDR/PORT
 *     model = DDP(Net())                        # Net: layers = [nn.Linear(10, 10)]
 *     loss_fn = nn.MSELoss()                    # mean over batch x 10 outputs
 *     optimizer = optim.SGD(model.parameters(), lr=0.01)
 *     sampler = DistributedSampler(data, shuffle=False)
 *     loader = DataLoader(data, batch_size=32, sampler=sampler)
 *     for epoch in range(10):
 *         for x, y in loader:
 *             optimizer.zero_grad()
 *             loss_fn(model(x), y).backward()   # DDP averages the gradients
 *             optimizer.step()
 *
 * Here the engine plays DDP: ZeRO stage 0, one micro-batch per update, so
 * each update all-reduces the gradients and every rank applies the same SGD
 * step. Its loss is the mean over the global batch (2 ranks x 32 samples x 10
 * outputs), which is DDP's average of the ranks' MSELoss means.
 *
 *   vktrain launch -n 2 build/examples/ddp_linear [--init W.safetensors]
 *       [--data D.safetensors] [--out OUT.safetensors] [--epochs N] [--store ADDR]
 *
 * --init: weights "layers.0.weight" [10, 10] and "layers.0.bias" [10] (PyTorch's
 *   state_dict of Net); default: PyTorch's nn.Linear init from a fixed seed.
 * --data: "x" [N, 10] and "y" [N, 10], N a multiple of 32 x ranks; default:
 *   256 samples of y = A x + noise from a fixed seed.
 * --out:  the final weights, written by rank 0, loadable by PyTorch.
 * --store: the rendezvous store (e.g. "file:/tmp/dir"); default MASTER_ADDR/PORT.
 * Without WORLD_SIZE in the environment it runs as one process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vktrain/vktrain.h>

#define FEATURES 10
#define BATCH 32 /* per rank */

typedef struct args {
    const char *init, *data, *out, *store;
    int epochs;
} args;

static int parse_args(int argc, char **argv, args *a)
{
    *a = (args){.epochs = 10};
    for (int i = 1; i < argc; i++) {
        const char **slot = !strcmp(argv[i], "--init")    ? &a->init
                            : !strcmp(argv[i], "--data")  ? &a->data
                            : !strcmp(argv[i], "--out")   ? &a->out
                            : !strcmp(argv[i], "--store") ? &a->store
                                                          : NULL;
        if (i + 1 < argc && slot) {
            *slot = argv[++i];
        } else if (i + 1 < argc && !strcmp(argv[i], "--epochs")) {
            a->epochs = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: ddp_linear [--init W.safetensors] [--data D.safetensors] "
                            "[--out OUT.safetensors] [--epochs N] [--store ADDR]\n");
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

/* The dataset: from --data, or n made-up samples y = A x + noise. Every
 * rank holds all of it, as a map-style PyTorch dataset does. */
static vkt_status load_data(const char *path, uint64_t *n, float **x, float **y)
{
    if (!path) {
        *n = 256;
        *x = malloc(*n * FEATURES * sizeof **x), *y = malloc(*n * FEATURES * sizeof **y);
        if (!*x || !*y) return VKT_ERR_NOMEM;
        float a[FEATURES][FEATURES];
        uint64_t s = 42;
        for (int i = 0; i < FEATURES; i++)
            for (int j = 0; j < FEATURES; j++) a[i][j] = uniform(&s);
        for (uint64_t k = 0; k < *n; k++)
            for (int i = 0; i < FEATURES; i++) (*x)[k * FEATURES + i] = uniform(&s);
        for (uint64_t k = 0; k < *n; k++)
            for (int i = 0; i < FEATURES; i++) {
                float v = 0.1f * uniform(&s);
                for (int j = 0; j < FEATURES; j++) v += a[i][j] * (*x)[k * FEATURES + j];
                (*y)[k * FEATURES + i] = v;
            }
        return VKT_OK;
    }
    vkt_tensor_file *f = NULL;
    vkt_status st = vkt_tensor_file_open(path, &f);
    vkt_tensor_info ti;
    if (st == VKT_OK) st = vkt_tensor_file_find(f, "x", &ti);
    if (st == VKT_OK && (ti.ndim != 2 || ti.shape[1] != FEATURES)) {
        fprintf(stderr, "ddp_linear: %s: x must be [N, %d]\n", path, FEATURES);
        st = VKT_ERR_INVALID_ARG;
    }
    if (st == VKT_OK) {
        *n = ti.shape[0];
        *x = malloc(*n * FEATURES * sizeof **x), *y = malloc(*n * FEATURES * sizeof **y);
        st = *x && *y ? VKT_OK : VKT_ERR_NOMEM;
    }
    if (st == VKT_OK) st = vkt_tensor_file_read_f32(f, "x", *x, *n * FEATURES);
    if (st == VKT_OK) st = vkt_tensor_file_read_f32(f, "y", *y, *n * FEATURES);
    vkt_tensor_file_close(f);
    return st;
}

static int fail(int rank, const char *what)
{
    fprintf(stderr, "ddp_linear: rank %d: %s: %s\n", rank, what, vkt_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    args a;
    if (parse_args(argc, argv, &a)) return 2;

    /* dist.init_process_group: RANK, WORLD_SIZE, MASTER_ADDR/PORT, VKT_JOB_SECRET
     * (vktrain launch sets them all), or srun / mpirun; none of them: one process. */
    vkt_comm *comm = NULL;
    vkt_dist_env env; /* torchrun-style variables, srun or mpirun; else one process */
    if (vkt_dist_env_detect(&env) != VKT_OK) return fail(-1, "reading the environment");
    if (strcmp(env.source, "none")) {
        vkt_comm_opts co = VKT_COMM_OPTS_INIT;
        co.store_addr = a.store;
        if (vkt_comm_create(&co, &comm) != VKT_OK) return fail(-1, "joining the job");
    }
    int rank = comm ? vkt_comm_rank(comm) : 0, world = comm ? vkt_comm_size(comm) : 1;
    vkt_device *dev = NULL;
    vkt_model *m = NULL;
    vkt_engine *e = NULL;
    float *x = NULL, *y = NULL, *w = NULL;
    int rc = 1;

    /* model = Net(): one Linear(10, 10), MSE loss. */
    static const uint32_t sizes[] = {FEATURES, FEATURES};
    vkt_mlp_opts mo = VKT_MLP_OPTS_INIT;
    mo.layers = 1, mo.sizes = sizes, mo.loss = VKT_LOSS_MSE, mo.seed = 1;
    if (vkt_device_create(NULL, &dev) != VKT_OK || vkt_model_create_mlp(dev, &mo, &m) != VKT_OK) {
        fail(rank, "creating the model");
        goto out;
    }
    if (a.init && vkt_model_load_safetensors(m, a.init) != VKT_OK) {
        fail(rank, "loading --init");
        goto out;
    }
    uint64_t n = 0;
    if (load_data(a.data, &n, &x, &y) != VKT_OK) {
        fail(rank, "loading --data");
        goto out;
    }
    if (n % ((uint64_t)BATCH * (uint64_t)world)) {
        fprintf(stderr, "ddp_linear: %llu samples do not split into batches of %d on %d ranks\n",
                (unsigned long long)n, BATCH, world);
        goto out;
    }

    /* model = DDP(model); optimizer = SGD(lr=0.01). The engine broadcasts
     * rank 0's weights, as DDP's constructor does. */
    vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
    eo.model = m, eo.comm = comm;
    eo.config_json = "{\"train_micro_batch_size_per_gpu\": 32,"
                     " \"optimizer\": {\"type\": \"SGD\", \"params\": {\"lr\": 0.01}},"
                     " \"zero_optimization\": {\"stage\": 0}}";
    if (vkt_engine_create(&eo, &e) != VKT_OK) {
        fail(rank, "starting the engine");
        goto out;
    }
    if (rank == 0)
        printf("ddp_linear: %d rank(s), %llu samples, batch %d per rank, SGD lr 0.01, MSE\n",
               world, (unsigned long long)n, BATCH);

    /* DistributedSampler(shuffle=False): rank r's j-th sample is r + j x world. */
    uint64_t per_rank = n / (uint64_t)world;
    float bx[BATCH * FEATURES], by[BATCH * FEATURES];
    for (int epoch = 0; epoch < a.epochs; epoch++) {
        double sums[2] = {0, 0}; /* Σ batch losses, batches */
        for (uint64_t j0 = 0; j0 < per_rank; j0 += BATCH) {
            for (int s = 0; s < BATCH; s++) {
                uint64_t k = (uint64_t)rank + (j0 + (uint64_t)s) * (uint64_t)world;
                memcpy(bx + s * FEATURES, x + k * FEATURES, sizeof(float) * FEATURES);
                memcpy(by + s * FEATURES, y + k * FEATURES, sizeof(float) * FEATURES);
            }
            vkt_batch b = {.size = BATCH, .inputs = bx, .targets_f = by};
            float loss;
            if (vkt_engine_forward(e, &b, &loss) != VKT_OK || /* loss = loss_fn(model(x), y) */
                vkt_engine_backward(e) != VKT_OK ||           /* loss.backward()         */
                vkt_engine_step(e) != VKT_OK) {               /* optimizer.step()        */
                fail(rank, "training");
                goto out;
            }
            sums[0] += loss, sums[1] += 1;
        }
        if (comm && vkt_comm_allreduce(comm, sums, sums, 2, VKT_DTYPE_F64, VKT_REDOP_SUM)) {
            fail(rank, "averaging the loss");
            goto out;
        }
        if (rank == 0) printf("epoch %d  loss %.6f\n", epoch, sums[0] / sums[1]);
    }

    /* torch.save(model.module.state_dict()): gather (collective), rank 0 writes. */
    w = malloc(vkt_model_num_params(m) * sizeof *w);
    if (!w || vkt_engine_get_params(e, w) != VKT_OK) {
        fail(rank, "reading the weights");
        goto out;
    }
    if (rank == 0 && a.out) {
        if (vkt_model_write_params(m, w, a.out) != VKT_OK) {
            fail(rank, "writing --out");
            goto out;
        }
        printf("ddp_linear: wrote %s\n", a.out);
    }
    rc = 0;
out:
    free(w);
    free(x);
    free(y);
    vkt_engine_destroy(e);
    vkt_model_destroy(m);
    vkt_device_destroy(dev);
    vkt_comm_destroy(comm);
    return rc;
}
