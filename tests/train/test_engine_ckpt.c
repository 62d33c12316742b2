/* Engine state across updates and processes, with real ranks:
 * - an fp16 overflow on one rank (an Inf in its batch) skips that update on
 *   every rank: weights unchanged, loss scale halved, the lr schedule held,
 *   replicas still identical;
 * - resume: 20 updates straight vs 10, save, a fresh process loading, 10
 *   more (fp16 with a loss scale that grows, ZeRO-1, a warmup/decay lr
 *   schedule, world 2): the last 10 losses are bit-identical;
 * - re-shard: a ZeRO-2 checkpoint written at world 4 loads at world 2 under
 *   ZeRO-3 (parameters partitioned) with bit-identical weights, and
 *   training goes on; its index records DeepSpeed's layout: every rank one
 *   range per bucket, the four ranges of a bucket equal, consecutive and
 *   multiples of the alignment, tiling the padded flat buffer;
 * - a corrupted shard, a truncated shard and a checkpoint of another model
 *   each fail to load with an error that names the problem, on every rank;
 *   ranks with disagreeing configs are refused at create, and so is a model
 *   an earlier ZeRO-2 engine sharded, or a ZeRO-1 engine (fp32: only its
 *   optimizer's shard is partitioned) whose DDP successor would otherwise
 *   update that shard alone;
 * - every rank's optimizer state is 1/world of the padded flat buffer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_util.h"
#include "formats/ckpt_index.h"
#include "test_gpu.h"

#define TB 8

typedef enum mode { STRAIGHT, FIRST_HALF, SECOND_HALF, OVERFLOW, W4_SAVE, W2_LOAD, BAD_LOADS } mode;

typedef struct job {
    char dir[64];
    mode mode;
    int run; /* a fresh store directory per launch */
} job;

static const char *json_resume =
    "{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.002}},"
    " \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"warmup_num_steps\": 5,"
    " \"total_num_steps\": 40, \"warmup_max_lr\": 0.002}},"
    " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 6, \"loss_scale_window\": 4,"
    " \"hysteresis\": 1},"
    " \"zero_optimization\": {\"stage\": 1, \"reduce_bucket_size\": 500}%s}";
static const char *json_zero1 =
    "{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 0.001}},"
    " \"zero_optimization\": {\"stage\": 1, \"reduce_bucket_size\": 600}}";
static const char *json_ddp =
    "{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 0.001}}}";
static const char *json_zero2 =
    "{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 0.001}},"
    " \"zero_optimization\": {\"stage\": 2, \"reduce_bucket_size\": 600}}";

static const char *json_zero3 =
    "{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 0.001}},"
    " \"zero_optimization\": {\"stage\": 3, \"reduce_bucket_size\": 600}}";

static void path_of(const job *j, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", j->dir, name);
}

/* Train `steps` updates from update `from`; rank 0 appends the losses (the
 * mean over ranks is not needed: rank 0's own micro-batch loss is as
 * deterministic) to the file `losses`. */
static int train(int rank, int world, vkt_engine *e, bool gpt, uint64_t from, uint64_t steps,
                 const char *losses)
{
    const vkt_config *c = vkt_engine_config(e);
    uint64_t mb = c->train_micro_batch_size_per_gpu;
    float x[TB * 10], loss;
    int32_t y[TB * 8], tok[TB * 8];
    FILE *f = losses && rank == 0 ? fopen(losses, "ab") : NULL;
    for (uint64_t g = from; g < from + steps; g++) {
        vkt_batch b = eu_batch(gpt, g * TB + (uint64_t)rank * mb, (uint32_t)mb, x, tok, y);
        if (vkt_engine_forward(e, &b, &loss) != VKT_OK || vkt_engine_backward(e) != VKT_OK ||
            vkt_engine_step(e) != VKT_OK)
            return RANK_FAIL(rank, "update %llu: %s", (unsigned long long)g, vkt_last_error());
        if (f) fwrite(&loss, 4, 1, f);
    }
    if (f) fclose(f);
    return 0;
}

static vkt_engine *engine(int rank, vkt_model *m, vkt_comm *comm, const char *json)
{
    vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
    eo.model = m;
    eo.comm = comm;
    eo.config_json = json;
    vkt_engine *e = NULL;
    if (vkt_engine_create(&eo, &e) != VKT_OK) RANK_FAIL(rank, "engine: %s", vkt_last_error());
    return e;
}

static int write_params(int rank, vkt_engine *e, vkt_model *m, const char *path)
{
    uint64_t n = vkt_model_num_params(m);
    float *p = malloc(n * 4);
    int rc = vkt_engine_get_params(e, p) != VKT_OK;
    if (rc) RANK_FAIL(rank, "get_params: %s", vkt_last_error());
    FILE *f = rank == 0 && !rc ? fopen(path, "wb") : NULL;
    if (f) {
        fwrite(p, 4, n, f);
        fclose(f);
    }
    free(p);
    return rc;
}

/* A load that must fail with status want and a message containing what. */
static int expect_load_fails(int rank, vkt_engine *e, const char *path, vkt_status want,
                             const char *what)
{
    vkt_status st = vkt_engine_load(e, path);
    if (st != want || !strstr(vkt_last_error(), what))
        return RANK_FAIL(rank, "load %s: got %s '%s', want %s mentioning '%s'", path,
                         vkt_status_name(st), vkt_last_error(), vkt_status_name(want), what);
    printf("rank %d: refused as expected: %s\n", rank, vkt_last_error());
    return 0;
}

static int rank_main(int rank, int world, void *arg)
{
    const job *j = arg;
    vkt_device *dev = eu_device(rank);
    if (!dev) return 1;
    char store[96], run[96], losses[96], params[96];
    snprintf(store, sizeof store, "%s/store%d", j->dir, j->run);
    path_of(j, "run", run, sizeof run);
    bool fp16 = j->mode <= OVERFLOW;
    vkt_comm *comm = NULL;
    int rc = eu_comm(rank, world, store, VKT_COMM_BACKEND_AUTO, &comm);
    vkt_model *m = rc ? NULL : eu_model(dev, false, fp16 ? VKT_DTYPE_F16 : VKT_DTYPE_F32);
    /* The straight run also writes metrics. */
    char json[1024], metrics[128] = "";
    if (j->mode == STRAIGHT)
        snprintf(metrics, sizeof metrics, ", \"vktrain\": {\"metrics_file\": \"%s/metrics.jsonl\"}",
                 j->dir);
    snprintf(json, sizeof json, json_resume, metrics);
    /* the world-4 ZeRO-2 checkpoint loads at world 2 under ZeRO-3 */
    const char *cfg = fp16 ? json : j->mode == W2_LOAD ? json_zero3 : json_zero2;
    vkt_engine *e = m ? engine(rank, m, comm, cfg) : NULL;
    if (!e) rc = 1;
    switch (rc ? BAD_LOADS + 1 : (int)j->mode) {
    case STRAIGHT:
        path_of(j, "losses-straight", losses, sizeof losses);
        rc = train(rank, world, e, false, 0, 20, losses);
        break;
    case FIRST_HALF:
        rc = train(rank, world, e, false, 0, 10, NULL);
        if (!rc && vkt_engine_save(e, run) != VKT_OK) rc = RANK_FAIL(rank, "save: %s", vkt_last_error());
        break;
    case SECOND_HALF:
        path_of(j, "losses-resumed", losses, sizeof losses);
        if (vkt_engine_load(e, run) != VKT_OK) rc = RANK_FAIL(rank, "load: %s", vkt_last_error());
        else if (vkt_engine_global_steps(e) != 10) rc = RANK_FAIL(rank, "global steps not restored");
        else rc = train(rank, world, e, false, 10, 10, losses);
        break;
    case OVERFLOW: {
        uint64_t n = vkt_model_num_params(m);
        float *before = malloc(n * 4), *after = malloc(n * 4);
        float x[TB * 10], loss;
        int32_t y[TB * 8], tok[TB * 8];
        uint64_t mb = vkt_engine_config(e)->train_micro_batch_size_per_gpu;
        for (uint64_t g = 0; g < 8 && !rc; g++) {
            vkt_batch b = eu_batch(false, g * TB + (uint64_t)rank * mb, (uint32_t)mb, x, tok, y);
            if (g == 5 && rank == 1) x[3] = 1e30f; /* Inf in f16, on one rank only */
            double scale = vkt_engine_loss_scale(e), lr = vkt_engine_lr(e);
            if (g == 5 && vkt_engine_get_params(e, before) != VKT_OK) rc = 1;
            if (vkt_engine_forward(e, &b, &loss) != VKT_OK || vkt_engine_backward(e) != VKT_OK ||
                vkt_engine_step(e) != VKT_OK) {
                rc = RANK_FAIL(rank, "update %llu: %s", (unsigned long long)g, vkt_last_error());
                break;
            }
            if (g != 5) continue;
            if (vkt_engine_get_params(e, after) != VKT_OK) rc = 1;
            else if (memcmp(before, after, n * 4) != 0) rc = RANK_FAIL(rank, "skipped update changed the weights");
            if (vkt_engine_skipped_steps(e) != 1 || vkt_engine_loss_scale(e) != scale / 2 ||
                vkt_engine_lr(e) != lr || vkt_engine_global_steps(e) != 6)
                rc = RANK_FAIL(rank, "after the overflow: skipped %llu, scale %g (was %g), lr "
                               "%g (was %g), global steps %llu",
                               (unsigned long long)vkt_engine_skipped_steps(e),
                               vkt_engine_loss_scale(e), scale, vkt_engine_lr(e), lr,
                               (unsigned long long)vkt_engine_global_steps(e));
        }
        /* replicas identical: every rank writes its weights */
        char pp[96];
        snprintf(pp, sizeof pp, "%s/overflow.%d", j->dir, rank);
        if (!rc && vkt_engine_get_params(e, after) == VKT_OK) {
            FILE *f = fopen(pp, "wb");
            if (!f || fwrite(after, 4, n, f) != n) rc = RANK_FAIL(rank, "cannot write %s", pp);
            if (f) fclose(f);
        }
        free(before);
        free(after);
        break;
    }
    case W4_SAVE:
        path_of(j, "params-w4", params, sizeof params);
        rc = train(rank, world, e, false, 0, 10, NULL);
        vkt_model_memory mem;
        vkt_model_memory_report(m, &mem);
        if (!rc && mem.optimizer * (uint64_t)world != 2 * 4 * vkt_model_flat_size(m))
            rc = RANK_FAIL(rank, "Adam state %llu bytes for a flat buffer of %llu at world %d",
                           (unsigned long long)mem.optimizer,
                           (unsigned long long)vkt_model_flat_size(m), world);
        if (!rc && vkt_engine_save(e, run) != VKT_OK) rc = RANK_FAIL(rank, "save: %s", vkt_last_error());
        if (!rc) rc = write_params(rank, e, m, params);
        break;
    case W2_LOAD:
        path_of(j, "params-w2", params, sizeof params);
        if (vkt_engine_load(e, run) != VKT_OK) rc = RANK_FAIL(rank, "load: %s", vkt_last_error());
        if (!rc) rc = write_params(rank, e, m, params);
        if (!rc) rc = train(rank, world, e, false, 10, 5, NULL);
        break;
    case BAD_LOADS: {
        char bad[96];
        path_of(j, "corrupt", bad, sizeof bad);
        rc |= expect_load_fails(rank, e, bad, VKT_ERR_CORRUPT, "rank_00001");
        path_of(j, "truncated", bad, sizeof bad);
        rc |= expect_load_fails(rank, e, bad, VKT_ERR_CORRUPT, "rank_00000");
        /* A GPT engine given the MLP's checkpoint. */
        vkt_model *g = eu_model(dev, true, VKT_DTYPE_F32);
        vkt_engine *ge = g ? engine(rank, g, comm, json_zero2) : NULL;
        rc |= !ge || expect_load_fails(rank, ge, run, VKT_ERR_INVALID_ARG, "another model");
        vkt_engine_destroy(ge);
        vkt_model_destroy(g);
        /* Ranks whose configs disagree (ZeRO stage) are refused at create,
         * on every rank, before any collective could pair unrelated data. */
        vkt_model *m2 = eu_model(dev, false, VKT_DTYPE_F32);
        vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
        eo.model = m2;
        eo.comm = comm;
        eo.config_json = rank == 0 ? json_zero2 : json_zero1;
        vkt_engine *bad_e = NULL;
        vkt_status st = m2 ? vkt_engine_create(&eo, &bad_e) : VKT_ERR_NOMEM;
        if (st != VKT_ERR_INVALID_ARG || !strstr(vkt_last_error(), "disagree"))
            rc |= RANK_FAIL(rank, "disagreeing configs: got %s '%s'", vkt_status_name(st),
                            vkt_last_error());
        vkt_engine_destroy(bad_e);
        bad_e = NULL;
        /* fp32 ZeRO-1 keeps the weights whole but the shard in the model */
        vkt_engine *z1 = m2 ? engine(rank, m2, comm, json_zero1) : NULL;
        vkt_engine_destroy(z1);
        eo.config_json = json_ddp;
        st = z1 ? vkt_engine_create(&eo, &bad_e) : VKT_ERR_NOMEM;
        if (st != VKT_ERR_INVALID_USAGE || !strstr(vkt_last_error(), "earlier engine"))
            rc |= RANK_FAIL(rank, "a model after ZeRO-1 reused: got %s '%s'", vkt_status_name(st),
                            vkt_last_error());
        vkt_engine_destroy(bad_e);
        vkt_model_destroy(m2);
        /* A model a ZeRO-2 engine sharded cannot serve another engine. */
        vkt_engine_destroy(e);
        e = NULL;
        eo.model = m;
        eo.config_json = json_zero1;
        st = vkt_engine_create(&eo, &bad_e);
        if (st != VKT_ERR_INVALID_USAGE || !strstr(vkt_last_error(), "earlier engine"))
            rc |= RANK_FAIL(rank, "a sharded model reused: got %s '%s'", vkt_status_name(st),
                            vkt_last_error());
        vkt_engine_destroy(bad_e);
        break;
    }
    default: break;
    }
    vkt_engine_destroy(e);
    vkt_model_destroy(m);
    vkt_comm_destroy(comm);
    return eu_device_close(rank, dev) || rc;
}

static void launch(job *j, mode md, int world)
{
    j->mode = md;
    j->run++;
    assert_int_equal(run_ranks(world, rank_main, j, 300, NULL), 0);
}

static void *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*n + 1);
    assert_int_equal(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static void make_job(job *j)
{
    memset(j, 0, sizeof *j);
    strcpy(j->dir, "/tmp/vkt-test-ckpt.XXXXXX");
    assert_non_null(mkdtemp(j->dir));
}

static void drop_job(const job *j)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", j->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_resume_is_exact(void **state)
{
    job j;
    make_job(&j);
    launch(&j, STRAIGHT, 2);
    launch(&j, FIRST_HALF, 2);
    launch(&j, SECOND_HALF, 2);
    char a[96], b[96];
    path_of(&j, "losses-straight", a, sizeof a);
    path_of(&j, "losses-resumed", b, sizeof b);
    size_t na, nb;
    float *straight = slurp(a, &na), *resumed = slurp(b, &nb);
    assert_int_equal(na, 20 * 4);
    assert_int_equal(nb, 10 * 4);
    for (int i = 0; i < 10; i++)
        print_message("update %2d: straight %.7f resumed %.7f\n", 10 + i, straight[10 + i],
                      resumed[i]);
    assert_memory_equal(straight + 10, resumed, 10 * 4);
    /* One metrics line per update, the last for update 20. */
    char mpath[96];
    path_of(&j, "metrics.jsonl", mpath, sizeof mpath);
    size_t nm;
    char *metrics = slurp(mpath, &nm);
    metrics[nm] = '\0';
    int lines = 0;
    for (size_t i = 0; i < nm; i++) lines += metrics[i] == '\n';
    assert_int_equal(lines, 20);
    assert_non_null(strstr(metrics, "{\"step\": 20, \"loss\": "));
    assert_non_null(strstr(metrics, "\"loss_scale\": "));
    free(metrics);
    free(straight);
    free(resumed);
    drop_job(&j);
}

static void test_fp16_overflow_on_one_rank(void **state)
{
    job j;
    make_job(&j);
    launch(&j, OVERFLOW, 2);
    char a[96], b[96];
    path_of(&j, "overflow.0", a, sizeof a);
    path_of(&j, "overflow.1", b, sizeof b);
    size_t na, nb;
    void *p0 = slurp(a, &na), *p1 = slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(p0, p1, na);
    free(p0);
    free(p1);
    drop_job(&j);
}

/* Copy the latest step of run into dst (a step directory). */
static void copy_step(const job *j, const char *dst)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp -r '%s/run/'\"$(cat '%s/run/latest')\" '%s/%s'", j->dir, j->dir,
             j->dir, dst);
    assert_int_equal(system(cmd), 0);
}

/* The layout in the index of the checkpoint in j->dir/run. */
static void check_layout(const job *j, uint32_t world)
{
    char run[96], step_dir[512];
    snprintf(run, sizeof run, "%s/run", j->dir);
    vkt_ckpt_index *idx = NULL;
    assert_vkt_ok(vkt__ckpt_open(run, step_dir, sizeof step_dir, &idx));
    assert_int_equal(idx->world_size, world);
    assert_int_equal(idx->alignment, 64);
    size_t nb = idx->ranks[0].nranges;
    assert_true(nb > 1); /* reduce_bucket_size makes several buckets */
    uint64_t at = 0;
    for (size_t b = 0; b < nb; b++) {
        uint64_t part = idx->ranks[0].ranges[b].count;
        assert_true(part > 0 && part % idx->alignment == 0);
        for (uint32_t r = 0; r < world; r++) {
            assert_int_equal(idx->ranks[r].nranges, nb);
            assert_int_equal(idx->ranks[r].ranges[b].count, part);
            assert_int_equal(idx->ranks[r].ranges[b].offset, at + r * part);
        }
        at += world * part;
    }
    assert_int_equal(at, idx->flat_length);
    print_message("world %u checkpoint: %zu buckets, every rank %llu of %llu elements\n", world,
                  nb, (unsigned long long)(idx->flat_length / world),
                  (unsigned long long)idx->flat_length);
    vkt__ckpt_index_free(idx);
}

static void test_reshard_and_bad_checkpoints(void **state)
{
    job j;
    make_job(&j);
    launch(&j, W4_SAVE, 4);
    check_layout(&j, 4);
    launch(&j, W2_LOAD, 2);
    char a[96], b[96];
    path_of(&j, "params-w4", a, sizeof a);
    path_of(&j, "params-w2", b, sizeof b);
    size_t na, nb;
    void *p4 = slurp(a, &na), *p2 = slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(p4, p2, na);
    free(p4);
    free(p2);
    /* Damage copies of the checkpoint: a flipped byte in rank 1's shard
     * data, and rank 0's shard cut short. */
    copy_step(&j, "corrupt");
    copy_step(&j, "truncated");
    char f[160];
    snprintf(f, sizeof f, "%s/corrupt/rank_00001.safetensors", j.dir);
    FILE *fp = fopen(f, "r+b");
    assert_non_null(fp);
    fseek(fp, -5, SEEK_END);
    int ch = fgetc(fp);
    fseek(fp, -5, SEEK_END);
    fputc(ch ^ 0x40, fp);
    fclose(fp);
    snprintf(f, sizeof f, "%s/truncated/rank_00000.safetensors", j.dir);
    struct stat sb;
    assert_int_equal(stat(f, &sb), 0);
    assert_int_equal(truncate(f, sb.st_size - 100), 0);
    launch(&j, BAD_LOADS, 2);
    drop_job(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_exact),
        cmocka_unit_test(test_fp16_overflow_on_one_rank),
        cmocka_unit_test(test_reshard_and_bad_checkpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
