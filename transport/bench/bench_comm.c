/* vkt-bench-comm (see bench_comm.h): times all-reduce, reduce-scatter,
 * all-gather and broadcast of f32 buffers between N local ranks (forked
 * processes) for each backend in the same run, and prints nccl-tests columns:
 * size, median time, algbw, busbw, the ratio to Gloo's busbw and #wrong.
 *
 * Definitions (nccl-tests, docs/PERFORMANCE.md): bytes is the size of the
 * whole buffer (all-reduce, broadcast: the buffer; reduce-scatter: the input
 * of all ranks' blocks; all-gather: the output), algbw = bytes / time, and
 * busbw = algbw * 2(n-1)/n for all-reduce, * (n-1)/n for reduce-scatter and
 * all-gather, * 1 for broadcast: the rate each link must carry, comparable
 * with the loopback TCP stream rate measured first (the ceiling).
 *
 * One iteration is: barrier, start clock, collective, stop clock; its time
 * is the longest over the ranks (all-reduced with max afterwards). After one
 * warm-up, rank 0 picks the iteration count (about --budget seconds per case,
 * 3..50) and broadcasts it. Every rank checks the last result and reports its
 * wrong elements (#wrong). */
#include "bench/bench_comm.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "transport_int.h"

#define MAX_SIZES 32
#define MAX_BACKENDS 5
#define MAX_RANKS 64
#define MAX_ITERS 50
#define MAX_ROUNDS 9
#define LOOPBACK_BYTES (512u << 20)

enum { OP_ALLREDUCE, OP_REDUCE_SCATTER, OP_ALLGATHER, OP_BROADCAST, NOPS };
static const char *const op_names[NOPS] = {"allreduce", "reduce_scatter", "allgather",
                                           "broadcast"};
static const char *const backend_names[] = {"auto", "tcp", "shm", "gloo", "verbs"};

typedef struct bench_cfg {
    int nranks, json, iters, rounds;
    int ops[NOPS], nops;
    size_t sizes[MAX_SIZES];
    int nsizes;
    vkt_comm_backend backends[MAX_BACKENDS];
    int nbackends;
    double timeout_s, budget_s;
} bench_cfg;

/* What a rank sends the parent after each case (one write < PIPE_BUF). */
typedef struct record {
    int backend, op, size, rank, ok;
    uint64_t bytes, wrong;
    double median_s;
    char link[8];
} record;

/* The parent's table: results[backend][op][size], one median per round. */
typedef struct result {
    int have, ok, nrounds;
    uint64_t bytes, wrong;
    double round_s[MAX_ROUNDS], median_s; /* median_s: of round_s, set at the end */
    char link[8];
} result;

static result results[MAX_BACKENDS][NOPS][MAX_SIZES];

/* --------------------------------------------------------------- options -- */

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [-n RANKS] [--op LIST] [--sizes LIST] [--backend LIST] [--json]\n"
            "  -n, --nranks N     local ranks to fork (default 2, at most %d)\n"
            "  --op LIST          allreduce,reduce_scatter,allgather,broadcast (default all)\n"
            "  --sizes LIST       buffer sizes with K/M/G suffixes (KiB..GiB), default\n"
            "                     4K,64K,1M,16M,64M,256M\n"
            "  --backend LIST     auto,tcp,shm,gloo,verbs (default auto,tcp,gloo)\n"
            "  --iters N          iterations per case (default: ~--budget s, 3..%d)\n"
            "  --budget S         seconds to spend per case (default 0.25)\n"
            "  --rounds N         repeat the backends in turn N times (1..%d, default 1) and\n"
            "                     report the median of the rounds' medians: on a noisy\n"
            "                     machine this spreads drift over every backend alike\n"
            "  --timeout S        comm_timeout_s of the ranks (default 120)\n"
            "  --json             one JSON array of records on stdout\n",
            prog, MAX_RANKS, MAX_ITERS, MAX_ROUNDS);
}

static int parse_size(const char *s, size_t *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    double mult = 1;
    if (end == s || v <= 0) return -1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end) return -1;
    *out = (size_t)(v * mult);
    return 0;
}

/* Split a comma list; each item goes to fn, which returns -1 on a bad one. */
static int each_item(const char *list, int (*fn)(bench_cfg *, const char *), bench_cfg *b)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (fn(b, t) != 0) return -1;
    return 0;
}

static int add_op(bench_cfg *b, const char *s)
{
    for (int i = 0; i < NOPS; i++)
        if (strcmp(s, op_names[i]) == 0 && b->nops < NOPS) return b->ops[b->nops++] = i, 0;
    fprintf(stderr, "vkt-bench-comm: unknown op '%s'; use %s, %s, %s or %s\n", s, op_names[0],
            op_names[1], op_names[2], op_names[3]);
    return -1;
}

static int add_backend(bench_cfg *b, const char *s)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, backend_names[i]) == 0 && b->nbackends < MAX_BACKENDS)
            return b->backends[b->nbackends++] = (vkt_comm_backend)i, 0;
    fprintf(stderr, "vkt-bench-comm: unknown backend '%s'; use auto, tcp, shm, gloo or verbs\n", s);
    return -1;
}

static int add_size(bench_cfg *b, const char *s)
{
    size_t v = 0;
    if (parse_size(s, &v) != 0 || b->nsizes == MAX_SIZES) {
        fprintf(stderr, "vkt-bench-comm: bad size '%s'; give bytes with an optional K, M or "
                "G suffix, e.g. 16M\n", s);
        return -1;
    }
    b->sizes[b->nsizes++] = v;
    return 0;
}

/* Returns 0, or the exit code to return (2: bad usage, -1: --help shown). */
static int parse_args(int argc, char **argv, bench_cfg *b)
{
    enum { O_OP = 256, O_SIZES, O_BACKEND, O_ITERS, O_BUDGET, O_TIMEOUT, O_JSON, O_ROUNDS };
    static const struct option longs[] = {
        {"nranks", required_argument, NULL, 'n'}, {"op", required_argument, NULL, O_OP},
        {"sizes", required_argument, NULL, O_SIZES},
        {"backend", required_argument, NULL, O_BACKEND},
        {"iters", required_argument, NULL, O_ITERS}, {"budget", required_argument, NULL, O_BUDGET},
        {"timeout", required_argument, NULL, O_TIMEOUT}, {"json", no_argument, NULL, O_JSON},
        {"rounds", required_argument, NULL, O_ROUNDS},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    *b = (bench_cfg){.nranks = 2, .rounds = 1, .timeout_s = 120, .budget_s = 0.25};
    int c, bad = 0;
    optind = 1;
    while (!bad && (c = getopt_long(argc, argv, "n:h", longs, NULL)) != -1) {
        switch (c) {
        case 'n': b->nranks = atoi(optarg); break;
        case O_OP: bad = each_item(optarg, add_op, b); break;
        case O_SIZES: bad = each_item(optarg, add_size, b); break;
        case O_BACKEND: bad = each_item(optarg, add_backend, b); break;
        case O_ITERS: b->iters = atoi(optarg); break;
        case O_BUDGET: b->budget_s = atof(optarg); break;
        case O_TIMEOUT: b->timeout_s = atof(optarg); break;
        case O_JSON: b->json = 1; break;
        case O_ROUNDS: b->rounds = atoi(optarg); break;
        case 'h': usage(stdout, argv[0]); return -1;
        default: bad = 1;
        }
    }
    if (!bad && (b->nranks < 1 || b->nranks > MAX_RANKS || optind < argc || b->iters < 0 ||
                 b->iters > MAX_ITERS || b->timeout_s <= 0 || b->rounds < 1 ||
                 b->rounds > MAX_ROUNDS)) {
        fprintf(stderr, "vkt-bench-comm: bad arguments (-n is 1..%d, --iters 0..%d, "
                "--rounds 1..%d)\n", MAX_RANKS, MAX_ITERS, MAX_ROUNDS);
        bad = 1;
    }
    if (bad) {
        usage(stderr, argv[0]);
        return 2;
    }
    for (int i = 0; !b->nops && i < NOPS; i++) b->ops[i] = i;
    if (!b->nops) b->nops = NOPS;
    if (!b->nbackends) each_item("auto,tcp,gloo", add_backend, b);
    if (!b->nsizes) each_item("4K,64K,1M,16M,64M,256M", add_size, b);
    return 0;
}

/* ------------------------------------------------------------ host facts -- */

static void host_line(FILE *f)
{
    char line[4096], model[128] = "unknown CPU", isa[160] = "";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    static const char *const feats[] = {" avx512f", " avx2", " fma", " f16c", " sse4_2",
                                        " asimd", " fphp", " sve"};
    while (ci && fgets(line, sizeof line, ci)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        if (!strncmp(line, "model name", 10)) snprintf(model, sizeof model, "%s", colon + 2);
        if (isa[0] || (strncmp(line, "flags", 5) && strncmp(line, "Features", 8))) continue;
        size_t n = 0;
        strcat(colon, " ");
        for (size_t i = 0; i < sizeof feats / sizeof feats[0]; i++) {
            char want[24];
            snprintf(want, sizeof want, "%s ", feats[i]);
            if (strstr(colon, want)) n += (size_t)snprintf(isa + n, sizeof isa - n, "%s", feats[i]);
        }
        if (!isa[0]) snprintf(isa, sizeof isa, " (none of the vector features we use)");
    }
    if (ci) fclose(ci);
    model[strcspn(model, "\n")] = '\0';
    double load[3] = {0, 0, 0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (!la || fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
    if (la) fclose(la);
    fprintf(f, "# host: %s, %ld cores; ISA:%s; load average %.2f %.2f %.2f\n", model,
            sysconf(_SC_NPROCESSORS_ONLN), isa, load[0], load[1], load[2]);
}

/* One TCP stream over 127.0.0.1 from a forked child: the ceiling of the
 * tcp and gloo backends. Returns GB/s, or -1. */
static double loopback_gbs(void)
{
    int lfd = -1, port = 0, fd = -1;
    if (vkt__net_listen("127.0.0.1", 0, &lfd, &port) != VKT_OK) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        static char blk[4u << 20];
        vkt__close(lfd);
        if (vkt__net_connect("127.0.0.1", port, vkt__now() + 10, "loopback", &fd)) _exit(1);
        vkt__net_tune(fd);
        for (size_t sent = 0; sent < LOOPBACK_BYTES; sent += sizeof blk)
            if (vkt__net_write_all(fd, blk, sizeof blk, vkt__now() + 30, "loopback")) _exit(1);
        _exit(0);
    }
    fd = accept(lfd, NULL, NULL);
    vkt__close(lfd);
    if (fd >= 0) vkt__net_tune(fd);
    char *buf = malloc(4u << 20);
    size_t got = 0;
    double t0 = vkt__now();
    for (ssize_t n = 1; fd >= 0 && buf && n > 0; got += n > 0 ? (size_t)n : 0)
        n = read(fd, buf, 4u << 20);
    double dt = vkt__now() - t0;
    free(buf);
    vkt__close(fd);
    waitpid(pid, NULL, 0);
    return got == LOOPBACK_BYTES && dt > 0 ? (double)got / dt / 1e9 : -1;
}

/* ------------------------------------------------------------- the ranks -- */

/* Element counts of one case: the count argument, and the buffer lengths. */
typedef struct shape {
    size_t count, send_elems, recv_elems;
    uint64_t bytes; /* rounded down to whole blocks */
} shape;

static shape shape_of(int op, size_t bytes, int n)
{
    size_t e = bytes / sizeof(float), blk = e / (size_t)n;
    switch (op) {
    case OP_REDUCE_SCATTER: return (shape){blk, blk * (size_t)n, blk, blk * (size_t)n * 4};
    case OP_ALLGATHER: return (shape){blk, blk, blk * (size_t)n, blk * (size_t)n * 4};
    default: return (shape){e, e, e, (uint64_t)e * 4};
    }
}

static vkt_status run_op(vkt_comm *c, int op, const float *s, float *r, size_t count)
{
    switch (op) {
    case OP_ALLREDUCE: return vkt_comm_allreduce(c, s, r, count, VKT_DTYPE_F32, VKT_REDOP_SUM);
    case OP_REDUCE_SCATTER:
        return vkt_comm_reduce_scatter(c, s, r, count, VKT_DTYPE_F32, VKT_REDOP_SUM);
    case OP_ALLGATHER: return vkt_comm_allgather(c, s, r, count, VKT_DTYPE_F32);
    default: return vkt_comm_broadcast(c, r, count, VKT_DTYPE_F32, 0);
    }
}

/* Elements of the result that differ from the closed form (inputs rank+1). */
static uint64_t count_wrong(int op, const float *r, const shape *sh, int n)
{
    uint64_t wrong = 0;
    float sum = (float)n * (float)(n + 1) / 2;
    for (size_t i = 0; i < sh->recv_elems; i++) {
        float want = op == OP_ALLGATHER ? (float)(i / sh->count + 1)
                     : op == OP_BROADCAST ? 1.0f : sum;
        wrong += r[i] != want;
    }
    return wrong;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Warm up, agree on the iteration count, time the iterations, check. */
static vkt_status time_case(vkt_comm *c, const bench_cfg *b, int op, float *s, float *r,
                            const shape *sh, record *rec)
{
    int rank = vkt_comm_rank(c);
    double t[MAX_ITERS];
    for (size_t i = 0; i < sh->send_elems; i++) s[i] = (float)(rank + 1);
    for (size_t i = 0; i < sh->recv_elems; i++) r[i] = (float)(rank + 1);
    double t0 = vkt__now();
    VKT_CHECK(run_op(c, op, s, r, sh->count));
    int32_t iters = b->iters;
    if (!iters) {
        double once = vkt__now() - t0;
        iters = once > 0 ? (int32_t)(b->budget_s / once) : MAX_ITERS;
        iters = iters < 3 ? 3 : iters > MAX_ITERS ? MAX_ITERS : iters;
        VKT_CHECK(vkt_comm_broadcast(c, &iters, 1, VKT_DTYPE_I32, 0)); /* rank 0's */
    }
    for (int i = 0; i < iters; i++) {
        VKT_CHECK(vkt_comm_barrier(c));
        t0 = vkt__now();
        VKT_CHECK(run_op(c, op, s, r, sh->count));
        t[i] = vkt__now() - t0;
    }
    /* An iteration lasts until its slowest rank is done (a broadcast root
     * finishes long before the last receiver). */
    VKT_CHECK(vkt_comm_allreduce(c, t, t, (size_t)iters, VKT_DTYPE_F64, VKT_REDOP_MAX));
    qsort(t, (size_t)iters, sizeof t[0], cmp_double);
    rec->median_s = iters % 2 ? t[iters / 2] : (t[iters / 2 - 1] + t[iters / 2]) / 2;
    rec->wrong = count_wrong(op, r, sh, vkt_comm_size(c));
    return VKT_OK;
}

static int rank_main(const bench_cfg *b, int bi, int rank, const char *store,
                     const char *secret, int out_fd)
{
    vkt_comm_opts o = VKT_COMM_OPTS_INIT;
    o.rank = rank;
    o.world_size = b->nranks;
    o.store_addr = store;
    o.job_secret = secret;
    o.comm_timeout_s = b->timeout_s;
    o.backend = b->backends[bi];
    o.listen_addr = "127.0.0.1";
    vkt_comm *c = NULL;
    size_t maxb = 0;
    for (int i = 0; i < b->nsizes; i++) maxb = b->sizes[i] > maxb ? b->sizes[i] : maxb;
    float *s = malloc(maxb + 64), *r = malloc(maxb + 64);
    vkt_status st = !s || !r ? VKT_ERROR(VKT_ERR_NOMEM, "out of memory for 2 x %zu bytes", maxb)
                             : vkt_comm_create(&o, &c);
    for (int k = 0; k < b->nops && st == VKT_OK; k++) {
        for (int i = 0; i < b->nsizes && st == VKT_OK; i++) {
            shape sh = shape_of(b->ops[k], b->sizes[i], b->nranks);
            record rec = {bi, b->ops[k], i, rank, 1, sh.bytes, 0, 0, ""};
            snprintf(rec.link, sizeof rec.link, "%s", vkt_comm_link(c));
            st = time_case(c, b, b->ops[k], s, r, &sh, &rec);
            rec.ok = st == VKT_OK;
            if (write(out_fd, &rec, sizeof rec) != (ssize_t)sizeof rec) st = VKT_ERR_IO;
        }
    }
    if (st != VKT_OK)
        fprintf(stderr, "vkt-bench-comm: rank %d, backend %s: %s\n", rank,
                backend_names[b->backends[bi]], vkt_last_error());
    vkt_comm_destroy(c);
    free(s);
    free(r);
    return st == VKT_OK ? 0 : 1;
}

/* ------------------------------------------------------------ the parent -- */

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
    if (d) closedir(d);
    rmdir(dir);
}

static void take_record(const record *rec)
{
    result *res = &results[rec->backend][rec->op][rec->size];
    if (rec->rank == 0 && res->nrounds < MAX_ROUNDS) {
        res->round_s[res->nrounds++] = rec->median_s;
        res->bytes = rec->bytes;
        snprintf(res->link, sizeof res->link, "%s", rec->link);
    }
    res->ok = (res->have ? res->ok : 1) && rec->ok;
    res->have = 1;
    res->wrong += rec->wrong;
}

/* Read records until every rank has closed the pipe, or nothing has come for
 * timeout_s + 30 s (then the ranks are killed). Returns 0 when all is well. */
static int collect(const bench_cfg *b, int fd, const pid_t *pids)
{
    double quiet_until = vkt__now() + b->timeout_s + 30;
    int failed = 0;
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        int pr = poll(&pf, 1, 1000);
        if (pr < 0 && errno != EINTR) break;
        if (pr > 0) {
            record rec;
            ssize_t n = read(fd, &rec, sizeof rec);
            if (n == 0) break; /* every rank is done */
            if (n == (ssize_t)sizeof rec) take_record(&rec);
            quiet_until = vkt__now() + b->timeout_s + 30;
        } else if (vkt__now() > quiet_until) {
            fprintf(stderr, "vkt-bench-comm: no progress for %.0f s; killing the ranks\n",
                    b->timeout_s + 30);
            for (int r = 0; r < b->nranks; r++) kill(pids[r], SIGKILL);
            break;
        }
    }
    for (int r = 0; r < b->nranks; r++) {
        int status = 0;
        waitpid(pids[r], &status, 0);
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    return failed;
}

/* Fork the ranks of one backend, each with a fresh file store. */
static int run_backend(const bench_cfg *b, int bi, const char *secret)
{
    char dir[] = "/tmp/vkt-bench-comm-XXXXXX", store[64];
    int fds[2];
    pid_t pids[MAX_RANKS];
    if (!mkdtemp(dir) || pipe(fds) != 0) {
        fprintf(stderr, "vkt-bench-comm: cannot make a store in /tmp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(store, sizeof store, "file:%s", dir);
    fflush(stdout);
    fflush(stderr);
    for (int r = 0; r < b->nranks; r++) {
        pids[r] = fork();
        if (pids[r] < 0) { /* out of processes: stop the ranks already started */
            fprintf(stderr, "vkt-bench-comm: fork: %s\n", strerror(errno));
            for (int q = 0; q < r; q++) kill(pids[q], SIGKILL);
            for (int q = 0; q < r; q++) waitpid(pids[q], NULL, 0);
            close(fds[0]);
            close(fds[1]);
            remove_dir(dir);
            return 1;
        }
        if (pids[r] == 0) {
            close(fds[0]);
            int rc = rank_main(b, bi, r, store, secret, fds[1]);
            fflush(stderr);
            _exit(rc);
        }
    }
    close(fds[1]);
    int failed = collect(b, fds[0], pids);
    close(fds[0]);
    remove_dir(dir);
    return failed;
}

/* ------------------------------------------------------------- reporting -- */

static double bus_factor(int op, int n)
{
    if (op == OP_ALLREDUCE) return 2.0 * (n - 1) / n;
    if (op == OP_BROADCAST) return 1.0;
    return (double)(n - 1) / n;
}

static const char *fmt_size(char *buf, size_t cap, uint64_t v)
{
    if (v >= (1u << 30) && v % (1u << 30) == 0) snprintf(buf, cap, "%llu GiB",
                                                          (unsigned long long)(v >> 30));
    else if (v >= (1u << 20)) snprintf(buf, cap, "%.4g MiB", (double)v / (1u << 20));
    else if (v >= 1024) snprintf(buf, cap, "%.4g KiB", (double)v / 1024);
    else snprintf(buf, cap, "%llu B", (unsigned long long)v);
    return buf;
}

static int gloo_index(const bench_cfg *b)
{
    for (int i = 0; i < b->nbackends; i++)
        if (b->backends[i] == VKT_COMM_BACKEND_GLOO) return i;
    return -1;
}

static void print_table(const bench_cfg *b, int op)
{
    int gi = gloo_index(b), n = b->nranks;
    printf("#\n# %s: f32%s, out of place, %d ranks; busbw = algbw x %s\n", op_names[op],
           op == OP_ALLREDUCE || op == OP_REDUCE_SCATTER ? " sum" : "", n,
           op == OP_ALLREDUCE ? "2(n-1)/n" : op == OP_BROADCAST ? "1 (root 0)" : "(n-1)/n");
    printf("# %10s %8s %5s %11s %11s %11s %8s %7s\n", "size", "backend", "link", "time",
           "algbw GB/s", "busbw GB/s", "vs gloo", "#wrong");
    for (int si = 0; si < b->nsizes; si++) {
        for (int bi = 0; bi < b->nbackends; bi++) {
            const result *r = &results[bi][op][si];
            char sz[32], tm[32], ratio[16] = "-";
            if (!r->have || !r->ok) {
                printf("  %10s %8s %5s %11s\n", fmt_size(sz, sizeof sz, b->sizes[si]),
                       backend_names[b->backends[bi]], "-", "failed");
                continue;
            }
            double alg = r->median_s > 0 ? (double)r->bytes / r->median_s / 1e9 : 0;
            double bus = alg * bus_factor(op, n);
            const result *g = gi >= 0 ? &results[gi][op][si] : NULL;
            if (g && g->have && g->ok && g->median_s > 0 && bi != gi && n > 1)
                snprintf(ratio, sizeof ratio, "%.2fx", g->median_s / r->median_s);
            if (r->median_s < 1e-3) snprintf(tm, sizeof tm, "%.1f us", r->median_s * 1e6);
            else snprintf(tm, sizeof tm, "%.2f ms", r->median_s * 1e3);
            printf("  %10s %8s %5s %11s %11.3f %11.3f %8s %7llu\n",
                   fmt_size(sz, sizeof sz, r->bytes), backend_names[b->backends[bi]], r->link,
                   tm, alg, bus, ratio, (unsigned long long)r->wrong);
        }
    }
}

static void print_json(const bench_cfg *b)
{
    json_t *arr = json_array();
    for (int bi = 0; bi < b->nbackends; bi++)
        for (int k = 0; k < b->nops; k++)
            for (int si = 0; si < b->nsizes; si++) {
                const result *r = &results[bi][b->ops[k]][si];
                if (!r->have || !r->ok) continue;
                double alg = r->median_s > 0 ? (double)r->bytes / r->median_s / 1e9 : 0;
                json_array_append_new(arr, json_pack(
                    "{s:s, s:s, s:i, s:I, s:f, s:f, s:f}", "backend",
                    backend_names[b->backends[bi]], "op", op_names[b->ops[k]], "nranks",
                    b->nranks, "bytes", (json_int_t)r->bytes, "median_s", r->median_s,
                    "algbw_gbs", alg, "busbw_gbs", alg * bus_factor(b->ops[k], b->nranks)));
            }
    json_dumpf(arr, stdout, JSON_INDENT(1));
    printf("\n");
    json_decref(arr);
}

static void finish_medians(void)
{
    result *r = &results[0][0][0];
    for (size_t i = 0; i < sizeof results / sizeof results[0][0][0]; i++, r++) {
        if (!r->nrounds) continue;
        qsort(r->round_s, (size_t)r->nrounds, sizeof r->round_s[0], cmp_double);
        int m = r->nrounds;
        r->median_s = m % 2 ? r->round_s[m / 2] : (r->round_s[m / 2 - 1] + r->round_s[m / 2]) / 2;
    }
}

static int any_wrong(const bench_cfg *b)
{
    for (int bi = 0; bi < b->nbackends; bi++)
        for (int k = 0; k < NOPS; k++)
            for (int si = 0; si < b->nsizes; si++)
                if (results[bi][k][si].wrong) return 1;
    return 0;
}

int vkt_bench_comm_main(int argc, char **argv)
{
    bench_cfg b;
    int rc = parse_args(argc, argv, &b), failed = 0;
    if (rc) return rc < 0 ? 0 : rc;
    FILE *info = b.json ? stderr : stdout; /* --json: stdout holds only the array */
    unsigned char raw[16];
    char secret[40];
    vkt__random(raw, sizeof raw);
    for (int i = 0; i < 16; i++) snprintf(secret + 2 * i, 3, "%02x", raw[i]);
    fprintf(info, "# vkt-bench-comm: %d ranks (forked), f32 buffers, median of 3..%d "
            "iterations%s\n", b.nranks, MAX_ITERS,
            b.rounds > 1 ? ", then of the rounds (backends take turns)" : "");
    host_line(info);
    double lo = loopback_gbs();
    fprintf(info, "# loopback TCP, one stream: %.2f GB/s (the ceiling of tcp and gloo)\n", lo);
    fflush(info);
    for (int round = 0; round < b.rounds; round++) {
        for (int bi = 0; bi < b.nbackends; bi++) {
            double t0 = vkt__now();
            int f = run_backend(&b, bi, secret);
            fprintf(info, "# round %d, backend %s: %s in %.1f s\n", round + 1,
                    backend_names[b.backends[bi]], f ? "FAILED (see above)" : "done",
                    vkt__now() - t0);
            failed |= f;
        }
    }
    finish_medians();
    if (b.json)
        print_json(&b);
    else
        for (int k = 0; k < b.nops; k++) print_table(&b, b.ops[k]);
    if (any_wrong(&b)) fprintf(stderr, "vkt-bench-comm: some results were WRONG (#wrong)\n");
    return failed || any_wrong(&b) ? 1 : 0;
}
