/* The replica check (vktrain.check_replicas_every) with two real ranks
 * (forked processes, lavapipe with validation, shared memory).
 *
 * - Healthy runs at ZeRO stages 0, 1, 2 and 3 (MLP and GPT, fp32 and bf16)
 *   check after every update and pass (stage 3 hashes the copy its ranks
 *   all-gather: no rank holds a replica there).
 * - At stage 0 each rank applies the whole update to its own replica, so
 *   a replica changed behind the engine's back stays different: rank 1
 *   writes into one parameter through vkt_model_set_params between two
 *   updates, and the next checked update fails on both ranks with
 *   VKT_ERR_NUMERIC naming rank 1, rank 0, the parameter and the update.
 *   With check_replicas_every 3 (or 2) the updates between checks pass.
 * - At stages 1 and 2 the all-gather after each update rewrites every
 *   replica from the shard owners, so such a change cannot last until the
 *   check; there the comparison itself is tested with a doctored hash list
 *   (the piece ZeRO-3 will call with its own hashes). The staged hashing
 *   (download in pieces, for memory the host cannot map) is checked against
 *   the mapped one with pieces that cut through tensors.
 * - One check's time is measured for the MLP and the GPT of the engine
 *   tests, next to the time of a whole update. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_util.h"
#include "test_gpu.h"
#include "train/engine_int.h"

#define TB 8 /* global batch */

typedef struct ccase {
    const char *name;
    bool gpt;
    int stage;
    vkt_dtype dtype;
    uint64_t every;       /* vktrain.check_replicas_every */
    uint64_t corrupt_at;  /* rank 1 changes a parameter after this update (0: never) */
    uint64_t fail_at;     /* the update whose step must fail (0: none) */
} ccase;

static const ccase cases[] = {
    {"mlp-ddp", false, 0, VKT_DTYPE_F32, 1, 0, 0},
    {"mlp-zero1", false, 1, VKT_DTYPE_F32, 1, 0, 0},
    {"mlp-zero2", false, 2, VKT_DTYPE_F32, 1, 0, 0},
    {"gpt-ddp", true, 0, VKT_DTYPE_F32, 1, 0, 0},
    {"gpt-bf16-zero2", true, 2, VKT_DTYPE_BF16, 1, 0, 0},
    {"gpt-zero3", true, 3, VKT_DTYPE_F32, 1, 0, 0}, /* hashes of the gathered copy */
    {"mlp-ddp-corrupt", false, 0, VKT_DTYPE_F32, 1, 2, 3},
    {"mlp-ddp-every3", false, 0, VKT_DTYPE_F32, 3, 1, 3},
    {"gpt-bf16-ddp-every2", true, 0, VKT_DTYPE_BF16, 2, 2, 4},
};
#define NCASES (sizeof cases / sizeof cases[0])
#define HEALTHY_UPDATES 4

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static vkt_engine *make_engine(int rank, vkt_comm *comm, vkt_model *m, const ccase *c)
{
    /* comm_timeout_s 300: on a loaded machine lavapipe's first backward of
     * a new model (pipelines compiled, validation on) took over 60 s */
    char json[512];
    snprintf(json, sizeof json,
             "{\"train_batch_size\": %d, \"optimizer\": {\"type\": \"AdamW\","
             " \"params\": {\"lr\": 0.001}}, \"zero_optimization\": {\"stage\": %d,"
             " \"reduce_bucket_size\": 700}, \"bf16\": {\"enabled\": %s},"
             " \"vktrain\": {\"comm_timeout_s\": 300, \"check_replicas_every\": %llu}}",
             TB, c->stage, c->dtype == VKT_DTYPE_BF16 ? "true" : "false",
             (unsigned long long)c->every);
    vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
    eo.model = m;
    eo.comm = comm;
    eo.config_json = json;
    vkt_engine *e = NULL;
    if (vkt_engine_create(&eo, &e) != VKT_OK)
        RANK_FAIL(rank, "%s: engine: %s", c->name, vkt_last_error());
    return e;
}

/* One update of this rank's half of global batch g. */
static vkt_status one_update(vkt_engine *e, bool gpt, int rank, uint64_t g)
{
    float x[TB * 10];
    int32_t y[TB * 8], tok[TB * 8];
    vkt_batch b = eu_batch(gpt, g * TB + (uint64_t)rank * (TB / 2), TB / 2, x, tok, y);
    vkt_status st = vkt_engine_forward(e, &b, NULL);
    if (st == VKT_OK) st = vkt_engine_backward(e);
    return st == VKT_OK ? vkt_engine_step(e) : st;
}

/* The parameter rank 1 changes: the MLP's layers.1.weight, the GPT's middle
 * one; its name into name, its first element in the dense array into at. */
static void victim(vkt_model *m, bool gpt, char *name, size_t cap, uint64_t *at)
{
    uint32_t k = gpt ? vkt_model_param_count(m) / 2 : 2;
    *at = 0;
    vkt_param_info pi;
    for (uint32_t i = 0; i < k; i++) {
        vkt_model_param_info(m, i, &pi);
        *at += pi.numel;
    }
    vkt_model_param_info(m, k, &pi);
    snprintf(name, cap, "%s", pi.name);
}

static int corrupt(int rank, vkt_model *m, uint64_t at)
{
    uint64_t n = vkt_model_num_params(m);
    float *p = malloc(n * 4);
    int rc = 0;
    if (vkt_model_get_params(m, p) != VKT_OK) {
        rc = RANK_FAIL(rank, "get_params: %s", vkt_last_error());
    } else {
        p[at + 3] += 1.0f; /* changes the bf16 copy too */
        if (vkt_model_set_params(m, p) != VKT_OK)
            rc = RANK_FAIL(rank, "set_params: %s", vkt_last_error());
    }
    free(p);
    return rc;
}

/* The failure every rank must report: NUMERIC, naming both ranks, the
 * parameter and the update. */
static int expect_mismatch(int rank, const char *what, vkt_status st, const char *name,
                           uint64_t update)
{
    const char *msg = vkt_last_error();
    char param[80], upd[48];
    snprintf(param, sizeof param, "'%s'", name);
    snprintf(upd, sizeof upd, "after update %llu:", (unsigned long long)update);
    if (st != VKT_ERR_NUMERIC)
        return RANK_FAIL(rank, "%s: got %s (%s), want NUMERIC", what, vkt_status_name(st), msg);
    if (!strstr(msg, "rank 1 differs from rank 0") || !strstr(msg, param) || !strstr(msg, upd) ||
        !strstr(msg, "zero_optimization.stage"))
        return RANK_FAIL(rank, "%s: message lacks the ranks, %s, '%s' or the fix: %s", what,
                         param, upd, msg);
    if (rank == 0) printf("%s: %s\n", what, msg);
    return 0;
}

static int run_case(int rank, vkt_device *dev, vkt_comm *comm, const ccase *c)
{
    vkt_model *m = eu_model(dev, c->gpt, c->dtype);
    if (!m) return RANK_FAIL(rank, "%s: model: %s", c->name, vkt_last_error());
    vkt_engine *e = make_engine(rank, comm, m, c);
    int rc = e ? 0 : 1;
    char name[64];
    uint64_t at, last = c->fail_at ? c->fail_at : HEALTHY_UPDATES;
    victim(m, c->gpt, name, sizeof name, &at);
    for (uint64_t g = 0; g < last && rc == 0; g++) {
        vkt_status st = one_update(e, c->gpt, rank, g);
        if (g + 1 == c->fail_at) rc = expect_mismatch(rank, c->name, st, name, c->fail_at);
        else if (st != VKT_OK)
            rc = RANK_FAIL(rank, "%s: update %llu: %s", c->name, (unsigned long long)g + 1,
                           vkt_last_error());
        if (rc == 0 && g + 1 == c->corrupt_at && rank == 1) rc = corrupt(rank, m, at);
    }
    vkt_engine_destroy(e);
    vkt_model_destroy(m);
    return rc;
}

/* Stage 2: the hashes, mapped and staged in pieces of 1000 bytes (which cut
 * through tensors), agree; a doctored list fails the comparison on both
 * ranks; an honest one passes. */
static int run_compare(int rank, vkt_device *dev, vkt_comm *comm)
{
    const ccase c = {"gpt-zero2-doctored", true, 2, VKT_DTYPE_F32, 0, 0, 0};
    vkt_model *m = eu_model(dev, true, VKT_DTYPE_F32);
    if (!m) return RANK_FAIL(rank, "compare: model: %s", vkt_last_error());
    vkt_engine *e = make_engine(rank, comm, m, &c);
    int rc = e ? 0 : 1;
    uint32_t n = vkt_model_param_count(m);
    uint64_t *h = calloc(n, 8), *hs = calloc(n, 8);
    for (uint64_t g = 0; g < 2 && rc == 0; g++)
        if (one_update(e, true, rank, g) != VKT_OK)
            rc = RANK_FAIL(rank, "compare: update: %s", vkt_last_error());
    if (rc == 0 && (vkt__engine_param_hashes(e, m->copy, m->dtype, 0, h) != VKT_OK ||
                    vkt__engine_param_hashes(e, m->copy, m->dtype, 1000, hs) != VKT_OK))
        rc = RANK_FAIL(rank, "compare: hashes: %s", vkt_last_error());
    if (rc == 0 && memcmp(h, hs, n * 8) != 0)
        rc = RANK_FAIL(rank, "compare: staged hashes differ from mapped ones");
    for (uint32_t i = 1; i < n && rc == 0; i++)
        if (h[i] == h[i - 1])
            rc = RANK_FAIL(rank, "compare: parameters %u and %u hash alike", i - 1, i);
    if (rc == 0 && vkt__engine_compare_hashes(e, h, n) != VKT_OK)
        rc = RANK_FAIL(rank, "compare: honest hashes: %s", vkt_last_error());
    if (rc == 0) {
        if (rank == 1) h[n - 1] ^= 1;
        vkt_param_info pi;
        vkt_model_param_info(m, n - 1, &pi);
        rc = expect_mismatch(rank, c.name, vkt__engine_compare_hashes(e, h, n), pi.name,
                             vkt_engine_global_steps(e));
    }
    free(h);
    free(hs);
    vkt_engine_destroy(e);
    vkt_model_destroy(m);
    return rc;
}

/* One check's time (mean of 20) against one update's (mean of 5). */
static int run_timing(int rank, vkt_device *dev, vkt_comm *comm, bool gpt)
{
    const ccase c = {gpt ? "gpt" : "mlp", gpt, 0, VKT_DTYPE_F32, 0, 0, 0};
    vkt_model *m = eu_model(dev, gpt, VKT_DTYPE_F32);
    if (!m) return RANK_FAIL(rank, "timing: model: %s", vkt_last_error());
    vkt_engine *e = make_engine(rank, comm, m, &c);
    int rc = e ? 0 : 1;
    if (rc == 0 && one_update(e, gpt, rank, 0) != VKT_OK) /* warm up */
        rc = RANK_FAIL(rank, "timing: %s", vkt_last_error());
    double t0 = now_s();
    for (uint64_t g = 1; g <= 5 && rc == 0; g++)
        if (one_update(e, gpt, rank, g) != VKT_OK)
            rc = RANK_FAIL(rank, "timing: %s", vkt_last_error());
    double t1 = now_s();
    for (int k = 0; k < 20 && rc == 0; k++)
        if (vkt__engine_replica_check(e) != VKT_OK)
            rc = RANK_FAIL(rank, "timing: check: %s", vkt_last_error());
    double t2 = now_s();
    if (rc == 0 && rank == 0)
        printf("%s (%llu parameters, %u tensors): one check %.1f us, one update %.1f us\n",
               c.name, (unsigned long long)vkt_model_num_params(m), vkt_model_param_count(m),
               (t2 - t1) / 20 * 1e6, (t1 - t0) / 5 * 1e6);
    vkt_engine_destroy(e);
    vkt_model_destroy(m);
    return rc;
}

static int rank_main(int rank, int world, void *arg)
{
    const char *dir = arg;
    vkt_device *dev = eu_device(rank);
    if (!dev) return 1;
    vkt_comm *comm = NULL;
    char store[96];
    snprintf(store, sizeof store, "%s/store", dir);
    int rc = eu_comm(rank, world, store, VKT_COMM_BACKEND_AUTO, &comm);
    for (size_t i = 0; i < NCASES && rc == 0; i++) rc = run_case(rank, dev, comm, &cases[i]);
    if (rc == 0) rc = run_compare(rank, dev, comm);
    if (rc == 0) rc = run_timing(rank, dev, comm, false);
    if (rc == 0) rc = run_timing(rank, dev, comm, true);
    fflush(stdout);
    vkt_comm_destroy(comm);
    return eu_device_close(rank, dev) || rc;
}

static void test_world2(void **state)
{
    (void)state;
    char dir[] = "/tmp/vkt-test-check.XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(run_ranks(2, rank_main, dir, 800, NULL), 0);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_world2)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
