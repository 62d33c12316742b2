/* The engine's equivalence: DDP and ZeRO-1/2/3 at world 2 and 4 (real
 * processes, lavapipe, shared memory and TCP) end with the same weights as
 * one process running the same global batch, with and without gradient
 * accumulation, for the MLP and the GPT, with gradient clipping on, and with
 * uneven per-rank micro-batches (vktrain.rank_batch), and with dropout (the
 * engine gives each micro-batch its global first sample, so the masks are
 * the reference's whatever the split). ZeRO-2 runs with
 * gradient slots (each micro-batch's buckets reduce-scattered out of the
 * slots and accumulated into the rank's gradient shard).
 *
 * Every configuration trains 10 updates; each rank writes its final fp32
 * weights to a file. The parent checks that all ranks hold bit-identical
 * replicas, and that they match the one-process reference within fp32
 * tolerance: max |w - w_ref| <= 1e-5 · max |w_ref|. The ring sums in
 * another order than one process's batch sums, and Adam amplifies that
 * rounding where a gradient is near zero (m/sqrt(v) is then ±1 whatever
 * its size): at lr 0.01 the GPT drifted 2.5e-5 relative after 10 steps,
 * at lr 0.001 (used here) 4e-7; the MLP stays near 1e-7 at both.
 *
 * The parent never opens Vulkan (forking a process with driver threads is
 * unsafe); the reference runs in a child too. One launch per world size
 * runs every configuration over one communicator.
 *
 * A world-2 run with VKT_EMULATE_DISCRETE=1 (device buffers never mapped,
 * as on a discrete GPU) runs the configurations marked "discrete": the
 * gradients then reach the host through the model's staging buffer, which
 * each backward segment fills with the buckets it finalises (DDP, ZeRO-1),
 * ZeRO-2 accumulates its shard on the host and uploads it, and every upload
 * and download goes through staging copies.
 *
 * World 3 runs a few configurations of its own: the global batch of 8 does
 * not divide by 3, so they split it unevenly (vktrain.rank_batch), and the
 * ZeRO layout pads every bucket to a multiple of 3 x 64 elements (an odd
 * world size, so a part is not a power of two). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_util.h"
#include "test_gpu.h"

#define STEPS 10
#define TB 8 /* global batch, samples (MLP) or sequences (GPT) */

typedef struct config {
    const char *name;
    bool gpt;
    int stage, gas;
    const char *rank_batch; /* JSON list or NULL */
    int world;              /* only at this world size (0: 2 and 4) */
    vkt_dtype dtype;
    float dropout;          /* 0: none */
    bool discrete;          /* also in the emulated discrete-GPU run */
} config;

static const config configs[] = {
    {"mlp-ddp", false, 0, 1, NULL, 0, VKT_DTYPE_F32, 0, false},
    {"mlp-ddp-gas2", false, 0, 2, NULL, 0, VKT_DTYPE_F32, 0, true},
    {"mlp-zero1", false, 1, 1, NULL, 0, VKT_DTYPE_F32, 0, false},
    {"mlp-zero2-gas2", false, 2, 2, NULL, 0, VKT_DTYPE_F32, 0, false},
    {"mlp-uneven", false, 0, 1, "[3, 5]", 2, VKT_DTYPE_F32, 0, false},
    {"mlp-zero2-uneven", false, 2, 1, "[3, 5]", 2, VKT_DTYPE_F32, 0, true},
    {"gpt-ddp", true, 0, 1, NULL, 0, VKT_DTYPE_F32, 0, true},
    {"gpt-zero2", true, 2, 1, NULL, 0, VKT_DTYPE_F32, 0, false},
    {"mlp-fp16-zero1", false, 1, 2, NULL, 0, VKT_DTYPE_F16, 0, true},
    {"mlp-bf16-zero2", false, 2, 1, NULL, 0, VKT_DTYPE_BF16, 0, false},
    {"gpt-bf16-ddp", true, 0, 1, NULL, 0, VKT_DTYPE_BF16, 0, false},
    /* ZeRO-2 accumulates each micro-batch's reduce-scattered slots into the
     * shard on the host: in fp16 here, with the tied wte's slot */
    {"gpt-fp16-zero2-gas2", true, 2, 2, NULL, 0, VKT_DTYPE_F16, 0, true},
    /* ZeRO-3: parameters partitioned, each segment's groups gathered */
    {"mlp-zero3", false, 3, 1, NULL, 0, VKT_DTYPE_F32, 0, false},
    {"mlp-zero3-gas2-uneven", false, 3, 2, "[1, 3]", 2, VKT_DTYPE_F32, 0, false},
    {"gpt-zero3-gas2", true, 3, 2, NULL, 0, VKT_DTYPE_F32, 0, true},
    {"gpt-bf16-zero3", true, 3, 1, NULL, 0, VKT_DTYPE_BF16, 0, false},
    /* dropout p = 0.1: masks per global sample and update */
    {"mlp-zero1-dropout", false, 1, 2, NULL, 0, VKT_DTYPE_F32, 0.1f, false},
    {"mlp-zero2-uneven-dropout", false, 2, 2, "[1, 3]", 2, VKT_DTYPE_F32, 0.1f, false},
    {"gpt-ddp-dropout", true, 0, 1, NULL, 0, VKT_DTYPE_F32, 0.1f, false},
    {"gpt-zero3-dropout", true, 3, 2, NULL, 0, VKT_DTYPE_F32, 0.1f, false},
    /* world 3 */
    {"mlp-zero1-w3", false, 1, 1, "[2, 3, 3]", 3, VKT_DTYPE_F32, 0, false},
    {"mlp-fp16-zero2-w3-gas2", false, 2, 2, "[1, 2, 1]", 3, VKT_DTYPE_F16, 0, false},
    {"gpt-zero2-w3", true, 2, 1, "[3, 2, 3]", 3, VKT_DTYPE_F32, 0, false},
    {"gpt-bf16-zero3-w3-gas2", true, 3, 2, "[2, 1, 1]", 3, VKT_DTYPE_BF16, 0.1f, false},
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

typedef struct job {
    char dir[64];
    vkt_comm_backend backend;
    int world; /* the configurations of this world size (the reference's too) */
    bool discrete; /* the configurations of the emulated discrete-GPU run */
} job;

static bool runs_at(const config *c, int world, bool discrete)
{
    if (discrete) return c->discrete;
    return c->world ? c->world == world : world == 2 || world == 4;
}

static void config_json(const config *c, int world, char *buf, size_t cap)
{
    /* The reference: one process, the whole global batch at once. */
    int gas = world ? c->gas : 1, stage = world ? c->stage : 0;
    char rb[64] = "";
    if (world && c->rank_batch) snprintf(rb, sizeof rb, ", \"rank_batch\": %s", c->rank_batch);
    snprintf(buf, cap,
             "{\"train_batch_size\": %d, \"gradient_accumulation_steps\": %d,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.001,"
             " \"weight_decay\": 0.01}},"
             " \"gradient_clipping\": 0.5,"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 700},"
             " \"fp16\": {\"enabled\": %s, \"initial_scale_power\": 8},"
             " \"bf16\": {\"enabled\": %s},"
             " \"vktrain\": {\"comm_timeout_s\": 60%s}}",
             TB, gas, stage, c->dtype == VKT_DTYPE_F16 ? "true" : "false",
             c->dtype == VKT_DTYPE_BF16 ? "true" : "false", rb);
}

/* Train one configuration; write the final weights to dir/name.rank. */
static int train(int rank, int world, vkt_device *dev, vkt_comm *comm, const config *c,
                 const char *dir)
{
    char json[768];
    config_json(c, comm ? world : 0, json, sizeof json);
    vkt_model *m = eu_model_dropout(dev, c->gpt, c->dtype, c->dropout);
    if (!m) return RANK_FAIL(rank, "%s: model: %s", c->name, vkt_last_error());
    vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
    eo.model = m;
    eo.comm = comm;
    eo.config_json = json;
    vkt_engine *e = NULL;
    int rc = 0;
    if (vkt_engine_create(&eo, &e) != VKT_OK) {
        rc = RANK_FAIL(rank, "%s: engine: %s", c->name, vkt_last_error());
        goto out;
    }
    const vkt_config *cfg = vkt_engine_config(e);
    uint64_t per_micro = TB / cfg->gradient_accumulation_steps, first = 0, mine = 0;
    for (int q = 0; q <= rank && comm; q++) {
        uint64_t b = cfg->rank_batch ? cfg->rank_batch[q] : cfg->train_micro_batch_size_per_gpu;
        if (q < rank) first += b;
        else mine = b;
    }
    if (!comm) mine = TB;
    float x[TB * 10];
    int32_t y[TB * 8], tok[TB * 8];
    for (uint64_t g = 0; g < STEPS; g++)
        for (uint64_t k = 0; k < cfg->gradient_accumulation_steps; k++) {
            uint64_t start = g * TB + k * per_micro + first;
            vkt_batch b = eu_batch(c->gpt, start, (uint32_t)mine, x, tok, y);
            float loss;
            if (vkt_engine_forward(e, &b, &loss) != VKT_OK || vkt_engine_backward(e) != VKT_OK ||
                vkt_engine_step(e) != VKT_OK) {
                rc = RANK_FAIL(rank, "%s: step %llu: %s", c->name, (unsigned long long)g,
                               vkt_last_error());
                goto out;
            }
        }
    if (vkt_engine_global_steps(e) != STEPS) {
        rc = RANK_FAIL(rank, "%s: %llu global steps", c->name,
                       (unsigned long long)vkt_engine_global_steps(e));
        goto out;
    }
    uint64_t n = vkt_model_num_params(m);
    float *p = malloc(n * 4);
    if (vkt_engine_get_params(e, p) != VKT_OK) {
        rc = RANK_FAIL(rank, "%s: get_params: %s", c->name, vkt_last_error());
    } else {
        char path[160];
        snprintf(path, sizeof path, "%s/%s.%d", dir, c->name, comm ? rank : -1);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(p, 4, n, f) != n) rc = RANK_FAIL(rank, "cannot write %s", path);
        if (f) fclose(f);
    }
    free(p);
out:
    vkt_engine_destroy(e);
    vkt_model_destroy(m);
    return rc;
}

static int rank_main(int rank, int world, void *arg)
{
    const job *j = arg;
    vkt_device *dev = eu_device(rank);
    if (!dev) return 1;
    vkt_comm *comm = NULL;
    char store[96];
    snprintf(store, sizeof store, "%s/store", j->dir);
    int rc = eu_comm(rank, world, store, j->backend, &comm);
    if (j->discrete && world) { /* the emulation is on: device memory is not mappable */
        vkt_buffer *b = NULL;
        if (vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 256, &b) != VKT_OK ||
            vkt_buffer_host_ptr(b) || vkt_device_get_caps(dev)->unified_memory)
            rc = RANK_FAIL(rank, "VKT_EMULATE_DISCRETE: device memory still mapped");
        vkt_buffer_destroy(b);
    }
    for (size_t i = 0; i < NCONFIGS && rc == 0; i++)
        if (runs_at(&configs[i], j->world, j->discrete))
            rc = train(rank, world, dev, comm, &configs[i], j->dir);
    vkt_comm_destroy(comm);
    return eu_device_close(rank, dev) || rc;
}

/* The one-process reference, in a child. */
static int reference_main(int rank, int world, void *arg) { return rank_main(0, 0, arg); }

static float *load(const char *dir, const char *name, int rank, size_t *n)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s.%d", dir, name, rank);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f) / 4;
    fseek(f, 0, SEEK_SET);
    float *p = malloc(*n * 4 + 4);
    size_t got = fread(p, 4, *n, f);
    fclose(f);
    assert_int_equal(got, *n);
    return p;
}

static void run_world(int world, vkt_comm_backend backend, bool discrete)
{
    job j = {.backend = backend, .world = world, .discrete = discrete};
    strcpy(j.dir, "/tmp/vkt-test-engine.XXXXXX");
    assert_non_null(mkdtemp(j.dir));
    char ref_dir[80];
    snprintf(ref_dir, sizeof ref_dir, "%s/ref", j.dir);
    assert_int_equal(mkdir(ref_dir, 0700), 0);
    job ref = {.backend = backend, .world = world, .discrete = discrete};
    strcpy(ref.dir, ref_dir);
    assert_int_equal(run_ranks(1, reference_main, &ref, 300, NULL), 0);
    if (discrete) setenv("VKT_EMULATE_DISCRETE", "1", 1); /* the ranks only */
    int rc = run_ranks(world, rank_main, &j, 400, NULL);
    unsetenv("VKT_EMULATE_DISCRETE");
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < NCONFIGS; i++) {
        const config *c = &configs[i];
        if (!runs_at(c, world, discrete)) continue;
        size_t n = 0, nr = 0;
        float *want = load(ref_dir, c->name, -1, &nr);
        float *p0 = load(j.dir, c->name, 0, &n);
        assert_non_null(want);
        assert_non_null(p0);
        assert_int_equal(n, nr);
        for (int r = 1; r < world; r++) { /* replicas are bit-identical */
            size_t nn = 0;
            float *pr = load(j.dir, c->name, r, &nn);
            assert_non_null(pr);
            assert_int_equal(nn, n);
            if (memcmp(pr, p0, n * 4) != 0) fail_msg("%s: rank %d differs from rank 0", c->name, r);
            free(pr);
        }
        double maxref = 0, maxdiff = 0;
        for (size_t k = 0; k < n; k++) {
            maxref = fmax(maxref, fabs(want[k]));
            maxdiff = fmax(maxdiff, fabs((double)p0[k] - want[k]));
        }
        print_message("world %d%s %-24s max|w - ref| = %.3g (max|ref| %.3g)\n", world,
                      discrete ? " discrete" : "", c->name, maxdiff, maxref);
        double tol = c->dtype == VKT_DTYPE_F32 ? 1e-5 : c->dtype == VKT_DTYPE_F16 ? 1e-3 : 1e-2;
        if (!(maxdiff <= tol * maxref))
            fail_msg("%s: differs from one process by more than %g", c->name, tol);
        free(want);
        free(p0);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", j.dir);
    assert_int_equal(system(cmd), 0);
}

static void test_world2_shm(void **state) { run_world(2, VKT_COMM_BACKEND_AUTO, false); }
static void test_world4_tcp(void **state) { run_world(4, VKT_COMM_BACKEND_TCP, false); }
static void test_world3_shm(void **state) { run_world(3, VKT_COMM_BACKEND_AUTO, false); }
static void test_world2_discrete(void **state) { run_world(2, VKT_COMM_BACKEND_AUTO, true); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world2_shm),
        cmocka_unit_test(test_world4_tcp),
        cmocka_unit_test(test_world3_shm),
        cmocka_unit_test(test_world2_discrete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
