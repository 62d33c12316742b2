/* Engine benchmarks, each over N local ranks forked before any Vulkan is
 * opened.
 *
 * vktrain bench overlap: does the engine overlap gradient reduction with
 * the backward? N local ranks (forked before any Vulkan is opened) train a
 * small GPT with DDP, first over the plain transport, then with every
 * transport message delayed by D µs (VKT_COMM_DELAY_US). Without overlap
 * the step would grow by at least D × buckets (each bucket's all-reduce is
 * delayed at least once, one after the other); with overlap the delays of
 * early buckets hide behind the rest of the backward. Prints median step
 * times side by side and the per-bucket timeline of the delayed run's last
 * step (when each bucket's segment finished and when its all-reduce did,
 * relative to the start of the backward).
 *
 * vktrain bench memory: device memory of the model states per rank at ZeRO
 * stages 0 to 3 (an f16 GPT with Adam, one update done), next to
 * DeepSpeed's estimate for the same parameter count. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"

#define MAX_BUCKETS 64

typedef struct overlap_result {
    double median_step_s, median_backward_s; /* backward: from backward() to step()'s end */
    uint32_t buckets;
    double backward_s; /* of the last step */
    vkt_bucket_timing t[MAX_BUCKETS];
} overlap_result;

typedef struct overlap_args {
    int world, steps, delay_us, stage;
    char dir[64];
} overlap_args;

static const char *config_json =
    "{\"train_batch_size\": %d, \"optimizer\": {\"type\": \"AdamW\"},"
    " \"wall_clock_breakdown\": true,"
    " \"zero_optimization\": {\"stage\": 0, \"reduce_bucket_size\": 60000}}";

typedef int (*rank_body)(int rank, const overlap_args *a, int run);

/* Fork the ranks of one run and collect rank 0's result (size bytes). */
static int run_once(rank_body body, const overlap_args *a, int run, void *out, size_t size)
{
    pid_t pids[16];
    fflush(stdout);
    fflush(stderr);
    for (int r = 0; r < a->world; r++) {
        pids[r] = fork();
        if (pids[r] == 0) _exit(body(r, a, run));
    }
    int failed = 0;
    for (int r = 0; r < a->world; r++) {
        int status;
        waitpid(pids[r], &status, 0);
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    if (failed) return 1;
    char path[96];
    snprintf(path, sizeof path, "%s/result%d", a->dir, run);
    FILE *f = fopen(path, "rb");
    int ok = f && fread(out, size, 1, f) == 1;
    if (f) fclose(f);
    return ok ? 0 : 1;
}

static int write_result(const overlap_args *a, int run, const void *r, size_t size)
{
    char path[96];
    snprintf(path, sizeof path, "%s/result%d", a->dir, run);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(r, size, 1, f) == 1;
    if (f) fclose(f);
    return ok ? 0 : 1;
}

static vkt_comm_opts rank_comm_opts(int rank, const overlap_args *a, int run, char *store,
                                    size_t cap)
{
    snprintf(store, cap, "file:%s/store%d", a->dir, run);
    vkt_comm_opts co = VKT_COMM_OPTS_INIT;
    co.rank = rank;
    co.world_size = a->world;
    co.store_addr = store;
    co.store_server = 0;
    co.job_secret = "vktrain-bench-engine"; /* local ranks; the store dir is 0700 */
    return co;
}

static bool make_dir(overlap_args *a)
{
    strcpy(a->dir, "/tmp/vktrain-bench.XXXXXX");
    return mkdtemp(a->dir) != NULL;
}

static void remove_dir(const overlap_args *a)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", a->dir);
    if (system(cmd) != 0) fprintf(stderr, "vktrain: could not remove %s\n", a->dir);
}

/* What one benchmark rank runs on: its device, communicator, a GPT and
 * the engine over them. */
typedef struct rank_env {
    vkt_device *dev;
    vkt_comm *comm;
    vkt_model *m;
    vkt_engine *e;
} rank_env;

static vkt_status rank_open(int rank, const overlap_args *a, int run, const vkt_gpt_opts *go,
                            const char *json, rank_env *r)
{
    char store[96];
    vkt_comm_opts co = rank_comm_opts(rank, a, run, store, sizeof store);
    vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
    eo.config_json = json;
    *r = (rank_env){0};
    vkt_status st = vkt_device_create(NULL, &r->dev);
    if (st == VKT_OK) st = vkt_comm_create(&co, &r->comm);
    if (st == VKT_OK) st = vkt_model_create_gpt(r->dev, go, &r->m);
    eo.model = r->m;
    eo.comm = r->comm;
    if (st == VKT_OK) st = vkt_engine_create(&eo, &r->e);
    return st;
}

static void rank_close(rank_env *r)
{
    vkt_engine_destroy(r->e);
    vkt_model_destroy(r->m);
    vkt_comm_destroy(r->comm);
    vkt_device_destroy(r->dev);
}

/* One rank: train, time, and (rank 0) write the result file. */
static int overlap_rank(int rank, const overlap_args *a, int run)
{
    char delay[32], json[256];
    snprintf(delay, sizeof delay, "%d", a->delay_us);
    setenv("VKT_COMM_DELAY_US", delay, 1);
    snprintf(json, sizeof json, config_json, 4 * a->world);
    vkt_gpt_opts go = VKT_GPT_OPTS_INIT;
    go.vocab = 512;
    go.context = 32;
    go.layers = 4;
    go.heads = 4;
    go.channels = 64;
    go.seed = 1;
    rank_env env;
    vkt_status st = rank_open(rank, a, run, &go, json, &env);
    vkt_engine *e = env.e;
    int32_t tok[4 * 32], lab[4 * 32];
    for (int i = 0; i < 4 * 32; i++) {
        tok[i] = (i * 7 + rank) % 512;
        lab[i] = (i * 11 + 1) % 512;
    }
    vkt_batch b = {.size = 4, .tokens = tok, .labels = lab, .seq_len = 32};
    overlap_result r = {0};
    int warm = 2, n = a->steps;
    double *step = calloc((size_t)n, sizeof *step), *bwd = calloc((size_t)n, sizeof *bwd);
    for (int i = 0; i < warm + n && st == VKT_OK; i++) {
        double t0 = cli_now_s();
        st = vkt_engine_forward(e, &b, NULL);
        double t1 = cli_now_s();
        if (st == VKT_OK) st = vkt_engine_backward(e);
        if (st == VKT_OK) st = vkt_engine_step(e);
        double t2 = cli_now_s();
        if (i >= warm) {
            step[i - warm] = t2 - t0;
            bwd[i - warm] = t2 - t1;
        }
    }
    if (st == VKT_OK) {
        r.median_step_s = cli_median(step, n);
        r.median_backward_s = cli_median(bwd, n);
        r.buckets = vkt_engine_bucket_timings(e, r.t, MAX_BUCKETS, &r.backward_s);
    }
    free(step);
    free(bwd);
    if (st != VKT_OK) fprintf(stderr, "vktrain: bench overlap: rank %d: %s\n", rank, vkt_last_error());
    rank_close(&env);
    if (st != VKT_OK) return 1;
    return rank == 0 ? write_result(a, run, &r, sizeof r) : 0;
}

int cmd_bench_overlap(int argc, char **argv)
{
    overlap_args a = {.world = 2, .steps = 8, .delay_us = 2000};
    static const struct option opts[] = {{"ranks", required_argument, NULL, 'n'},
                                         {"steps", required_argument, NULL, 's'},
                                         {"delay-us", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "n:s:d:h", opts, NULL)) != -1;) {
        if (c == 'n') a.world = atoi(optarg);
        else if (c == 's') a.steps = atoi(optarg);
        else if (c == 'd') a.delay_us = atoi(optarg);
        else {
            FILE *f = c == 'h' ? stdout : stderr;
            fprintf(f, "usage: vktrain bench overlap [-n RANKS (2)] [--steps N (8)] "
                       "[--delay-us D (2000)]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (a.world < 2 || a.world > 16 || a.steps < 1 || a.steps > 1000 || a.delay_us < 1)
        return cli_usage_error("bench overlap", "need 2..16 ranks, 1..1000 steps, delay >= 1 us");
    if (!make_dir(&a)) return cli_usage_error("bench overlap", "cannot make a temporary directory");
    printf("bench overlap: %d ranks, GPT 4 layers x 64 wide, DDP, host %s\n", a.world,
           cli_host_isa());
    overlap_result base, slow;
    int delay = a.delay_us;
    a.delay_us = 0;
    int rc = run_once(overlap_rank, &a, 0, &base, sizeof base);
    a.delay_us = delay;
    if (!rc) rc = run_once(overlap_rank, &a, 1, &slow, sizeof slow);
    remove_dir(&a);
    if (rc) {
        fprintf(stderr, "vktrain: bench overlap: a rank failed (see above)\n");
        return 1;
    }
    double grow = slow.median_step_s - base.median_step_s;
    /* A ring all-reduce sends 2(n-1) messages one after another, each now
     * delay µs later: done bucket after bucket, the delays would add up. */
    int msgs = 2 * (a.world - 1);
    double serial = 1e-6 * delay * msgs * slow.buckets;
    printf("median step  no delay %.1f ms   delay %d us/message %.1f ms   growth %.1f ms\n",
           1e3 * base.median_step_s, delay, 1e3 * slow.median_step_s, 1e3 * grow);
    printf("without overlap it would grow by at least delay x %d messages x %u buckets = "
           "%.1f ms; it grew %.2f of that (< 1: overlapped)\n",
           msgs, slow.buckets, 1e3 * serial, grow / serial);
    printf("timeline of the delayed run's last step (ms from the start of backward; "
           "backward done at %.1f):\n", 1e3 * slow.backward_s);
    printf("  bucket  elements          ready    reduced\n");
    for (uint32_t i = slow.buckets < MAX_BUCKETS ? slow.buckets : MAX_BUCKETS; i-- > 0;)
        printf("  %6u  %8llu+%-8llu %7.1f  %8.1f\n", i, (unsigned long long)slow.t[i].first,
               (unsigned long long)slow.t[i].count, 1e3 * slow.t[i].ready_s,
               1e3 * slow.t[i].end_s);
    return 0;
}

/* ---- bench memory ---- */

typedef struct memory_result {
    uint64_t params;
    vkt_model_memory mem;
    vkt_memory_stats dev;
} memory_result;

static int memory_rank(int rank, const overlap_args *a, int run)
{
    char json[256];
    snprintf(json, sizeof json,
             "{\"train_batch_size\": %d, \"fp16\": {\"enabled\": true},"
             " \"optimizer\": {\"type\": \"Adam\"}, \"zero_optimization\": {\"stage\": %d,"
             " \"reduce_bucket_size\": 200000}}",
             2 * a->world, a->stage);
    vkt_gpt_opts go = VKT_GPT_OPTS_INIT;
    go.vocab = 4096;
    go.context = 64;
    go.layers = 4;
    go.heads = 4;
    go.channels = 256;
    go.dtype = VKT_DTYPE_F16;
    rank_env env;
    vkt_status st = rank_open(rank, a, run, &go, json, &env);
    vkt_engine *e = env.e;
    int32_t tok[2 * 64], lab[2 * 64];
    for (int i = 0; i < 2 * 64; i++) tok[i] = lab[i] = (i * 13 + rank) % 4096;
    vkt_batch b = {.size = 2, .tokens = tok, .labels = lab, .seq_len = 64};
    if (st == VKT_OK) st = vkt_engine_forward(e, &b, NULL);
    if (st == VKT_OK) st = vkt_engine_backward(e);
    if (st == VKT_OK) st = vkt_engine_step(e);
    memory_result r = {0};
    if (st == VKT_OK) {
        r.params = vkt_model_num_params(env.m);
        vkt_model_memory_report(env.m, &r.mem);
        vkt_device_memory_stats(env.dev, &r.dev);
    } else {
        fprintf(stderr, "vktrain: bench memory: rank %d: %s\n", rank, vkt_last_error());
    }
    rank_close(&env);
    if (st != VKT_OK) return 1;
    return rank == 0 ? write_result(a, run, &r, sizeof r) : 0;
}

int cmd_bench_memory(int argc, char **argv)
{
    overlap_args a = {.world = 4};
    for (int c; (c = getopt(argc, argv, "n:h")) != -1;) {
        if (c == 'n') a.world = atoi(optarg);
        else {
            fprintf(c == 'h' ? stdout : stderr, "usage: vktrain bench memory [-n RANKS (4)]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (a.world < 1 || a.world > 16) return cli_usage_error("bench memory", "need 1..16 ranks");
    if (!make_dir(&a)) return cli_usage_error("bench memory", "cannot make a temporary directory");
    printf("bench memory: %d ranks, f16 GPT (4 layers x 256, vocab 4096) with Adam, rank 0's "
           "model states after one update, host %s\n", a.world, cli_host_isa());
    printf("  %-6s %10s %10s %10s %10s   %s\n", "stage", "weights", "grads", "optimizer",
           "total MiB", "DeepSpeed's estimate MiB (2+2+12 bytes/param)");
    int rc = 0;
    double n = 0, w = a.world, mib = 1024.0 * 1024.0;
    for (int stage = 0; stage <= 3 && !rc; stage++) {
        a.stage = stage;
        memory_result r;
        rc = run_once(memory_rank, &a, stage, &r, sizeof r);
        if (rc) break;
        n = (double)r.params;
        double est = stage == 0   ? 16 * n
                     : stage == 1 ? 4 * n + 12 * n / w
                     : stage == 2 ? 2 * n + 14 * n / w
                                  : 16 * n / w;
        double tot = (double)(r.mem.params + r.mem.grads + r.mem.optimizer);
        printf("  %-6d %10.2f %10.2f %10.2f %10.2f   %.2f   (all device memory %.2f)\n", stage,
               r.mem.params / mib, r.mem.grads / mib, r.mem.optimizer / mib, tot / mib,
               est / mib, (double)r.dev.in_use / mib);
        if (stage == 3)
            printf("  (%llu parameters; activations %.2f MiB; stage 2-3 gradients are this "
                   "rank's shard plus the bucket slots the backward writes into; stage 3 "
                   "weights are the shard plus the gather slots)\n",
                   (unsigned long long)r.params, r.mem.activations_planned / mib);
    }
    remove_dir(&a);
    if (rc) fprintf(stderr, "vktrain: bench memory: a rank failed (see above)\n");
    return rc;
}
