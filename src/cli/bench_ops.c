/* vktrain bench ops: speed of the op kernels next to a same-run reference
 * on the host CPU (OpenBLAS sgemm on one thread for matmul, a plain C loop
 * for the optimizer), as medians of fenced runs. Machines differ from day to
 * day, so the ratio is the number to compare, not the absolute speed. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef VKT_HAVE_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int n);
#endif

#include "cli/cli.h"
#include "ops/ops.h"

typedef struct record {
    const char *op, *dtype, *device, *unit; /* unit: "gflops" or "gbps" */
    uint32_t shape[3];
    int ndim;
    double median_s, rate;
} record;

typedef struct bench {
    vkt_device *dev;
    vkt_ops *ops;
    int reps;
    record *recs;
    int nrecs;
} bench;

static void add(bench *b, record r)
{
    b->recs = realloc(b->recs, (size_t)(b->nrecs + 1) * sizeof *b->recs);
    b->recs[b->nrecs++] = r;
}

/* Median seconds of reps fenced replays of a recorded stream. */
static vkt_status time_stream(vkt_stream *s, int reps, double *median)
{
    double *t = malloc((size_t)reps * sizeof *t);
    vkt_status st = vkt_stream_run(s); /* warm-up: first-run compilation, page faults */
    for (int r = 0; r < reps && st == VKT_OK; r++) {
        double t0 = cli_now_s();
        st = vkt_stream_run(s);
        t[r] = cli_now_s() - t0;
    }
    if (st == VKT_OK) *median = cli_median(t, reps);
    free(t);
    return st;
}

static void fill(float *v, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) v[i] = (float)((i * 2654435761u + seed) % 1000) / 500.0f - 1.0f;
}

static vkt_status gpu_matmul(bench *b, uint32_t n, vkt_matmul_layout layout, vkt_dtype t,
                             double *median)
{
    uint64_t bytes = (uint64_t)n * n * vkt_dtype_size(t);
    vkt_buffer *a = NULL, *bb = NULL, *c = NULL;
    vkt_stream *s = NULL;
    float *vals = malloc((size_t)n * n * 4);
    void *host = malloc(bytes);
    fill(vals, (size_t)n * n, 1);
    vkt__dtype_from_f32(t, host, vals, (size_t)n * n);
    free(vals);
    vkt_status st = vkt_buffer_create(b->dev, VKT_MEMORY_DEVICE, bytes, &a);
    if (st == VKT_OK) st = vkt_buffer_create(b->dev, VKT_MEMORY_DEVICE, bytes, &bb);
    if (st == VKT_OK) st = vkt_buffer_create(b->dev, VKT_MEMORY_DEVICE, bytes, &c);
    if (st == VKT_OK) st = vkt_buffer_upload(a, 0, host, bytes);
    if (st == VKT_OK) st = vkt_buffer_upload(bb, 0, host, bytes);
    if (st == VKT_OK) st = vkt_stream_create(b->dev, &s);
    vkt_matmul_args m = {.c = {c, 0}, .a = {a, 0}, .b = {bb, 0}, .m = n, .n = n, .k = n,
                         .layout = layout, .t = t};
    if (st == VKT_OK) st = vkt_stream_begin(s);
    if (st == VKT_OK) st = vkt_op_matmul(b->ops, s, &m);
    if (st == VKT_OK) st = vkt_stream_end(s);
    if (st == VKT_OK) st = time_stream(s, b->reps, median);
    vkt_stream_destroy(s);
    vkt_buffer_destroy(a);
    vkt_buffer_destroy(bb);
    vkt_buffer_destroy(c);
    free(host);
    return st;
}

static double blas_matmul(uint32_t n, vkt_matmul_layout layout, int reps)
{
#ifdef VKT_HAVE_OPENBLAS
    size_t e = (size_t)n * n;
    float *a = malloc(e * 4), *b = malloc(e * 4), *c = malloc(e * 4);
    fill(a, e, 1);
    fill(b, e, 2);
    openblas_set_num_threads(1);
    double *t = malloc((size_t)(reps + 1) * sizeof *t);
    for (int r = 0; r <= reps; r++) {
        double t0 = cli_now_s();
        cblas_sgemm(CblasRowMajor, layout == VKT_MATMUL_TN ? CblasTrans : CblasNoTrans,
                    layout == VKT_MATMUL_NT ? CblasTrans : CblasNoTrans, (int)n, (int)n, (int)n,
                    1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
        t[r] = cli_now_s() - t0;
    }
    double med = cli_median(t + 1, reps); /* t[0] is the warm-up */
    free(a), free(b), free(c), free(t);
    return med;
#else
    (void)n, (void)layout, (void)reps;
    return -1;
#endif
}

/* One shape and layout in every training dtype the device stores, then
 * the fp32 OpenBLAS reference (the 16-bit products are compared with it
 * too: OpenBLAS has no portable f16 GEMM). */
static vkt_status bench_matmul(bench *b, uint32_t n, vkt_matmul_layout layout)
{
    static const char *names[] = {"matmul_nn", "matmul_tn", "matmul_nt"};
    static const vkt_dtype dtypes[] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_BF16};
    double flops = 2.0 * n * n * n, med;
    const vkt_device_caps *caps = vkt_device_get_caps(b->dev);
    for (int i = 0; i < 3; i++) {
        if (dtypes[i] != VKT_DTYPE_F32 && !caps->storage_16bit) continue;
        VKT_CHECK(gpu_matmul(b, n, layout, dtypes[i], &med));
        add(b, (record){names[layout], vkt_dtype_name(dtypes[i]), caps->name, "gflops",
                        {n, n, n}, 3, med, flops / med * 1e-9});
    }
    double ref = blas_matmul(n, layout, b->reps);
    if (ref > 0)
        add(b, (record){names[layout], "f32", "openblas-1t", "gflops", {n, n, n}, 3, ref,
                        flops / ref * 1e-9});
    return VKT_OK;
}

/* The same Adam update as the shader, in plain C on one thread. */
static double c_adam(float *p, const float *g, float *m, float *v, size_t n, int reps)
{
    double *t = malloc((size_t)(reps + 1) * sizeof *t);
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f, lr = 1e-3f;
    for (int r = 0; r <= reps; r++) {
        float step = lr / (1.0f - powf(b1, (float)(r + 1)));
        float isb = 1.0f / sqrtf(1.0f - powf(b2, (float)(r + 1))), decay = 1.0f - lr * wd;
        double t0 = cli_now_s();
        for (size_t i = 0; i < n; i++) {
            float w = p[i] * decay, gi = g[i];
            float mi = b1 * m[i] + (1 - b1) * gi, vi = b2 * v[i] + (1 - b2) * gi * gi;
            p[i] = w - step * mi / (sqrtf(vi) * isb + eps);
            m[i] = mi;
            v[i] = vi;
        }
        t[r] = cli_now_s() - t0;
    }
    double med = cli_median(t + 1, reps);
    free(t);
    return med;
}

static vkt_status bench_adam(bench *b, uint32_t n)
{
    uint64_t bytes = (uint64_t)n * 4;
    vkt_buffer *buf[5] = {NULL};
    vkt_stream *s = NULL;
    float *host = calloc(n, 4);
    vkt_status st = VKT_OK;
    for (int i = 0; i < 5 && st == VKT_OK; i++)
        st = vkt_buffer_create(b->dev, i == 4 ? VKT_MEMORY_HOST : VKT_MEMORY_DEVICE,
                               i == 4 ? 16 : bytes, &buf[i]);
    for (int i = 0; i < 4 && st == VKT_OK; i++) st = vkt_buffer_upload(buf[i], 0, host, bytes);
    float h[4];
    vkt_op_adam_hyper(h, 1e-3f, 0.9f, 0.999f, 1, 1.0f);
    if (st == VKT_OK) st = vkt_buffer_upload(buf[4], 0, h, sizeof h);
    if (st == VKT_OK) st = vkt_stream_create(b->dev, &s);
    vkt_adam_args a = {.params = {buf[0], 0}, .grads = {buf[1], 0}, .m = {buf[2], 0},
                       .v = {buf[3], 0}, .hyper = {buf[4], 0}, .dtype = VKT_DTYPE_F32, .n = n,
                       .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                       .adamw = true};
    double med = 0;
    if (st == VKT_OK) st = vkt_stream_begin(s);
    if (st == VKT_OK) st = vkt_op_adam(b->ops, s, &a);
    if (st == VKT_OK) st = vkt_stream_end(s);
    if (st == VKT_OK) st = time_stream(s, b->reps, &med);
    vkt_stream_destroy(s);
    for (int i = 0; i < 5; i++) vkt_buffer_destroy(buf[i]);
    /* bytes moved per element: p, m, v read and written, g read */
    double moved = 28.0 * n;
    if (st == VKT_OK) {
        add(b, (record){"adamw", "f32", vkt_device_get_caps(b->dev)->name, "gbps", {n}, 1, med,
                        moved / med * 1e-9});
        float *g = malloc(bytes), *m = calloc(n, 4), *v = calloc(n, 4);
        fill(g, n, 3);
        fill(host, n, 4);
        double ref = c_adam(host, g, m, v, n, b->reps);
        add(b, (record){"adamw", "f32", "c-loop", "gbps", {n}, 1, ref, moved / ref * 1e-9});
        free(g), free(m), free(v);
    }
    free(host);
    return st;
}

static bool is_ref(const record *r)
{
    return !strcmp(r->device, "openblas-1t") || !strcmp(r->device, "c-loop");
}

/* The reference record that follows record i's group: same op and shape. */
static const record *find_ref(const bench *b, int i)
{
    const record *r = &b->recs[i];
    if (is_ref(r)) return NULL;
    for (int j = i + 1; j < b->nrecs; j++) {
        const record *q = &b->recs[j];
        if (strcmp(q->op, r->op) || memcmp(q->shape, r->shape, sizeof r->shape)) return NULL;
        if (is_ref(q)) return q;
    }
    return NULL;
}

static void print_table(const bench *b)
{
    printf("%-10s %-5s %-18s %-38s %12s %10s %8s\n", "op", "dtype", "shape", "device",
           "median ms", "rate", "ratio");
    for (int i = 0; i < b->nrecs; i++) {
        const record *r = &b->recs[i];
        char shape[64] = "";
        for (int d = 0; d < r->ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%u", d ? "x" : "",
                     r->shape[d]);
        const record *ref = find_ref(b, i);
        char ratio[16] = "";
        if (ref)
            snprintf(ratio, sizeof ratio, "%.3fx", r->rate / ref->rate);
        printf("%-10s %-5s %-18s %-38.38s %12.3f %7.2f %s %8s\n", r->op, r->dtype, shape,
               r->device, r->median_s * 1e3, r->rate, !strcmp(r->unit, "gflops") ? "GF/s" : "GB/s",
               ratio);
    }
}

static void print_json(const bench *b)
{
    json_t *arr = json_array();
    for (int i = 0; i < b->nrecs; i++) {
        const record *r = &b->recs[i];
        json_t *shape = json_array();
        for (int d = 0; d < r->ndim; d++) json_array_append_new(shape, json_integer(r->shape[d]));
        json_t *o = json_pack("{s:s, s:s, s:o, s:s, s:f}", "op", r->op, "dtype", r->dtype,
                              "shape", shape, "device", r->device, "median_s", r->median_s);
        json_object_set_new(o, !strcmp(r->unit, "gflops") ? "gflops" : "gbps", json_real(r->rate));
        json_array_append_new(arr, o);
    }
    json_dumpf(arr, stdout, JSON_INDENT(2));
    printf("\n");
    json_decref(arr);
}

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: vktrain bench ops [--op matmul|adam] [--size N] [--reps N] [--device SEL] "
               "[--json]\n\n"
               "GFLOP/s (matmul, 2*M*N*K over the fenced median) and GB/s (AdamW update, 28\n"
               "bytes moved per parameter) of the kernel family the device uses (VKT_KERNELS=\n"
               "cpu|gpu forces one), each followed by a reference measured in the same run on\n"
               "the host: OpenBLAS sgemm on one thread ('openblas-1t') and a plain C loop\n"
               "('c-loop'). matmul runs in f32, f16 and bf16 (A, B, C of that dtype, fp32\n"
               "accumulation); the ratio of each is to the fp32 sgemm. Defaults: matmul at\n"
               "256, 512, 1024 (NN; NT and TN at the largest), adam at 16M parameters.\n");
    return code;
}

static vkt_status run_all(bench *b, const char *op, uint32_t size)
{
    bool mm = !op || !strcmp(op, "matmul"), adam = !op || !strcmp(op, "adam");
    if (mm) {
        uint32_t sizes[3] = {256, 512, 1024};
        int ns = size ? 1 : 3;
        if (size) sizes[0] = size;
        for (int i = 0; i < ns; i++) VKT_CHECK(bench_matmul(b, sizes[i], VKT_MATMUL_NN));
        VKT_CHECK(bench_matmul(b, sizes[ns - 1], VKT_MATMUL_NT));
        VKT_CHECK(bench_matmul(b, sizes[ns - 1], VKT_MATMUL_TN));
    }
    if (adam) VKT_CHECK(bench_adam(b, size ? size : 16u << 20));
    return VKT_OK;
}

int cmd_bench_ops(int argc, char **argv)
{
    static const struct option opts[] = {
        {"op", required_argument, NULL, 'o'},     {"size", required_argument, NULL, 's'},
        {"reps", required_argument, NULL, 'r'},   {"device", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *op = NULL, *sel = NULL;
    long size = 0;
    int reps = 5, c;
    bool as_json = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'o') op = optarg;
        else if (c == 's') size = atol(optarg);
        else if (c == 'r') reps = atoi(optarg);
        else if (c == 'd') sel = optarg;
        else if (c == 'j') as_json = true;
        else if (c == 'h') return usage(stdout, 0);
        else return usage(stderr, 2);
    }
    if (op && strcmp(op, "matmul") && strcmp(op, "adam"))
        return cli_usage_error("bench ops", "unknown op '%s' (available: matmul, adam)", op);
    if (size < 0 || size > (1l << 30) || reps < 1 || reps > 1000)
        return cli_usage_error("bench ops", "--size must be 1..2^30 and --reps 1..1000");
    bench b = {.reps = reps};
    if (cli_open_device(sel, &b.dev)) return 1;
    vkt_status st = vkt__ops_create(b.dev, VKT_KERNELS_AUTO, &b.ops);
    const vkt_device_caps *caps = vkt_device_get_caps(b.dev);
    if (!as_json && st == VKT_OK)
        printf("bench ops on [%u] %s (%s), %s kernels\nhost %s; reps %d%s\n", caps->index,
               caps->name, caps->driver_info, vkt__kernel_family_str(vkt__ops_family(b.ops)),
               cli_host_isa(), reps,
#ifdef VKT_HAVE_OPENBLAS
               ""
#else
               "; built without OpenBLAS: no matmul reference (setup.sh --test installs it)"
#endif
        );
    if (st == VKT_OK) st = run_all(&b, op, (uint32_t)size);
    int rc = 0;
    if (st != VKT_OK) rc = cli_fail(st, "bench ops");
    else if (as_json) print_json(&b);
    else print_table(&b);
    free(b.recs);
    vkt__ops_destroy(b.ops);
    vkt_device_destroy(b.dev);
    return rc;
}
