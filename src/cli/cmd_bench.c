/* vktrain bench: benchmarks that print medians measured side by side in one
 * run, with the device and the host ISA. 'dispatch' measures the fixed cost
 * of a submit and of each dispatch inside a command buffer. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

typedef struct dispatch_result {
    double submit_us;        /* submit+wait of 1 empty dispatch (host clock) */
    double per_dispatch_us;  /* extra host time per dispatch, no barriers */
    double per_barrier_us;   /* extra host time per dispatch with a barrier after each */
    double gpu_per_dispatch_us; /* GPU timestamps, with barriers, per dispatch; <0 if none */
} dispatch_result;

/* Record k empty dispatches (with barriers when asked) and time reps replays. */
static vkt_status time_stream(vkt_stream *s, const vkt_pipeline *p, vkt_buffer *buf, int k,
                              bool barriers, bool stamps, int reps, double *median_us,
                              double *gpu_us)
{
    vkt_binding b = {buf, 0, 0};
    vkt_status st = vkt_stream_begin(s);
    if (st == VKT_OK && stamps) st = vkt_stream_timestamp(s, NULL);
    for (int i = 0; i < k && st == VKT_OK; i++) {
        st = vkt_stream_dispatch(s, p, &b, 1, NULL, 0, 1, 1, 1);
        if (st == VKT_OK && barriers) st = vkt_stream_barrier(s);
    }
    if (st == VKT_OK && stamps) st = vkt_stream_timestamp(s, NULL);
    if (st == VKT_OK) st = vkt_stream_end(s);
    if (st != VKT_OK) return st;
    double *t = malloc((size_t)reps * sizeof *t), *g = malloc((size_t)reps * sizeof *g);
    if (!t || !g) {
        free(t);
        free(g);
        return VKT_ERR_NOMEM;
    }
    for (int r = 0; r < reps && st == VKT_OK; r++) {
        double t0 = cli_now_s();
        st = vkt_stream_run(s);
        t[r] = (cli_now_s() - t0) * 1e6;
        double ts[2] = {0, 0};
        if (st == VKT_OK && stamps) st = vkt_stream_timestamps(s, ts, 2);
        g[r] = ts[1] * 1e6;
    }
    if (st == VKT_OK) {
        *median_us = cli_median(t, reps);
        if (gpu_us) *gpu_us = cli_median(g, reps);
    }
    free(t);
    free(g);
    return st;
}

static vkt_status bench_dispatch(vkt_device *dev, int reps, int k, dispatch_result *r)
{
    vkt_buffer *buf = NULL;
    vkt_pipeline *p = NULL;
    vkt_stream *s = NULL;
    uint32_t spec[1] = {64};
    vkt_pipeline_opts o = VKT_PIPELINE_OPTS_INIT;
    o.shader = "empty";
    o.bindings = 1;
    o.spec = spec;
    o.spec_count = 1;
    bool stamps = vkt_device_get_caps(dev)->timestamps;
    double one, many, many_b, gpu = -1;
    vkt_status st = vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 256, &buf);
    if (st == VKT_OK) st = vkt_pipeline_create(dev, &o, &p);
    if (st == VKT_OK) st = vkt_stream_create(dev, &s);
    if (st == VKT_OK) st = time_stream(s, p, buf, 1, false, false, reps, &one, NULL);
    if (st == VKT_OK) st = time_stream(s, p, buf, k, false, false, reps, &many, NULL);
    if (st == VKT_OK)
        st = time_stream(s, p, buf, k, true, stamps, reps, &many_b, stamps ? &gpu : NULL);
    if (st == VKT_OK) {
        r->submit_us = one;
        r->per_dispatch_us = (many - one) / (k - 1);
        r->per_barrier_us = (many_b - one) / (k - 1);
        r->gpu_per_dispatch_us = stamps ? gpu / k : -1;
    }
    vkt_stream_destroy(s);
    vkt_pipeline_destroy(p);
    vkt_buffer_destroy(buf);
    return st;
}

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: vktrain bench dispatch [--device SEL] [--reps N] [--dispatches K] [--json]\n"
               "       vktrain bench ops [--op matmul|adam] [--size N] [--json]  (see --help)\n"
               "       vktrain bench comm [-n N] [--op allreduce] [--sizes 16M,64M] "
               "[--backend auto,tcp,gloo] [--json]\n"
               "       vktrain bench overlap [-n RANKS] [--steps N] [--delay-us D]\n"
               "       vktrain bench memory [-n RANKS]\n\n"
               "Measures the fixed costs every kernel pays, as medians of N runs (default 201):\n"
               "  submit+wait   one pre-recorded command buffer with one empty dispatch\n"
               "  per dispatch  extra time per dispatch in a command buffer of K (default 100)\n"
               "  +barrier      the same with a memory barrier after every dispatch\n"
               "  GPU           per dispatch between GPU timestamps (where supported)\n");
    return code;
}

/* bench comm is the transport's own benchmark, vkt-bench-comm, a program
 * with no Vulkan in it (it forks its ranks, which a process holding a
 * Vulkan device should not do). It is installed next to vktrain; run it. */
static int bench_comm(int argc, char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return cli_usage_error("bench", "cannot find my own executable: %s",
                                       strerror(errno));
    self[n] = '\0';
    snprintf(path, sizeof path, "%s/vkt-bench-comm", dirname(self));
    argv[0] = "vkt-bench-comm";
    execv(path, argv);
    fprintf(stderr, "vktrain: bench comm: cannot run %s: %s; it is built with the transport "
                    "(needs libjansson-dev) and installed next to vktrain\n", path,
            strerror(errno));
    return 1;
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return usage(argc < 2 ? stderr : stdout, argc < 2 ? 2 : 0);
    if (!strcmp(argv[1], "ops")) return cmd_bench_ops(argc - 1, argv + 1);
    if (!strcmp(argv[1], "comm")) return bench_comm(argc - 1, argv + 1);
#ifdef VKT_HAVE_ENGINE
    if (!strcmp(argv[1], "overlap")) return cmd_bench_overlap(argc - 1, argv + 1);
    if (!strcmp(argv[1], "memory")) return cmd_bench_memory(argc - 1, argv + 1);
#endif
    if (strcmp(argv[1], "dispatch"))
        return cli_usage_error("bench", "unknown benchmark '%s' (available: dispatch, ops, "
                               "comm, overlap, memory)", argv[1]);
    static const struct option opts[] = {
        {"device", required_argument, NULL, 'd'}, {"reps", required_argument, NULL, 'r'},
        {"dispatches", required_argument, NULL, 'k'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *sel = NULL;
    int reps = 201, k = 100, c;
    bool as_json = false;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "d:h", opts, NULL)) != -1) {
        if (c == 'd') sel = optarg;
        else if (c == 'r') reps = atoi(optarg);
        else if (c == 'k') k = atoi(optarg);
        else if (c == 'j') as_json = true;
        else if (c == 'h') return usage(stdout, 0);
        else return usage(stderr, 2);
    }
    if (reps < 1 || reps > 100000 || k < 2 || k > 100000)
        return cli_usage_error("bench", "--reps must be 1..100000 and --dispatches 2..100000");
    vkt_device *dev;
    if (cli_open_device(sel, &dev)) return 1;
    const vkt_device_caps *caps = vkt_device_get_caps(dev);
    if (!as_json)
        printf("bench dispatch on [%u] %s (%s)\nhost %s; LP_NUM_THREADS=%s\n", caps->index,
               caps->name, caps->driver_info, cli_host_isa(),
               getenv("LP_NUM_THREADS") ? getenv("LP_NUM_THREADS") : "(default)");
    dispatch_result r = {0, 0, 0, -1};
    vkt_status st = bench_dispatch(dev, reps, k, &r);
    int rc = 0;
    if (st != VKT_OK) {
        rc = cli_fail(st, "bench dispatch");
    } else if (as_json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f}", "bench",
                              "dispatch", "device", caps->name, "host", cli_host_isa(), "reps",
                              reps, "dispatches", k, "submit_wait_us", r.submit_us,
                              "per_dispatch_us", r.per_dispatch_us, "per_dispatch_barrier_us",
                              r.per_barrier_us, "gpu_per_dispatch_us", r.gpu_per_dispatch_us);
        json_dumpf(o, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(o);
    } else {
        printf("%-34s %10s\n", "measure (median of runs)", "us");
        printf("%-34s %10.2f\n", "submit+wait, 1 empty dispatch", r.submit_us);
        printf("%-34s %10.2f\n", "per dispatch (no barrier)", r.per_dispatch_us);
        printf("%-34s %10.2f\n", "per dispatch (+ barrier)", r.per_barrier_us);
        if (r.gpu_per_dispatch_us >= 0)
            printf("%-34s %10.2f\n", "per dispatch, GPU timestamps", r.gpu_per_dispatch_us);
        printf("ratio: a command buffer of %d dispatches costs %.1fx one submit\n", k,
               (r.submit_us + (k - 1) * r.per_dispatch_us) / r.submit_us);
    }
    vkt_device_destroy(dev);
    return rc;
}
