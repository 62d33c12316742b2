/* vktrain estimate: DeepSpeed's model-state memory per rank for ZeRO stages
 * 0-3 (mixed precision with Adam), from the ZeRO paper's accounting: per
 * parameter 2 bytes of fp16/bf16 weights, 2 of fp16/bf16 gradients and 12 of
 * optimizer state (fp32 master weight, momentum, variance). Stage 1 shards the
 * 12 over the ranks, stage 2 also the gradients, stage 3 also the weights.
 * Activations, buffers and fragmentation are not included. */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define MAX_PARAMS 1e15 /* 16 bytes each still fits in 64 bits */

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: vktrain estimate --params N --world W [--json]\n\n"
               "Prints the device memory that model states take on each rank for ZeRO\n"
               "stages 0-3 with fp16/bf16 and Adam, as DeepSpeed counts them: per parameter\n"
               "2 bytes of weights + 2 of gradients + 12 of optimizer state; stage 1 divides\n"
               "the 12 by W, stage 2 also the gradients, stage 3 also the weights.\n"
               "Activations and temporary buffers come on top.\n\n"
               "  --params N   parameter count; K, M, B (10^3, 10^6, 10^9) suffixes, e.g. 1.5B\n"
               "  --world W    number of ranks (data-parallel size)\n"
               "  --json       {\"stage0\": bytes, \"stage1\": ..., \"stage2\": ...,\n"
               "               \"stage3\": ...}\n");
    return code;
}

/* "1.5B" -> 1500000000. Returns -1 for anything else. */
static int parse_count(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s) return -1;
    double mult = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mult = 1e3; break;
        case 'm': case 'M': mult = 1e6; break;
        case 'b': case 'B': case 'g': case 'G': mult = 1e9; break;
        case 't': case 'T': mult = 1e12; break;
        default: return -1;
        }
        if (end[1]) return -1;
    }
    v = round(v * mult);
    if (!(v >= 1 && v <= MAX_PARAMS)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_ranks(const char *s, uint64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 1000000) return -1;
    *out = (uint64_t)v;
    return 0;
}

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* "13.0 GiB" */
static const char *human(char *buf, size_t cap, uint64_t b)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 5) v /= 1024, i++;
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", v, u[i]);
    return buf;
}

int cmd_estimate(int argc, char **argv)
{
    static const struct option opts[] = {{"params", required_argument, NULL, 'p'},
                                         {"world", required_argument, NULL, 'w'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    uint64_t n = 0, w = 0;
    bool as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'p' && parse_count(optarg, &n))
            return cli_usage_error("estimate", "--params '%s': expected a count >= 1 such as "
                                   "125M or 1.5B (at most 1000T)", optarg);
        if (c == 'w' && parse_ranks(optarg, &w))
            return cli_usage_error("estimate", "--world '%s': expected an integer >= 1", optarg);
        if (c == 'j') as_json = true;
        if (c == 'h') return usage(stdout, 0);
        if (c == '?') return usage(stderr, 2);
    }
    if (optind < argc)
        return cli_usage_error("estimate", "unexpected argument '%s'", argv[optind]);
    if (!n || !w) return cli_usage_error("estimate", "--params and --world are required");
    /* [stage][weights, gradients, optimizer state]; shards round up */
    uint64_t part[4][3] = {{2 * n, 2 * n, 12 * n},
                           {2 * n, 2 * n, ceil_div(12 * n, w)},
                           {2 * n, ceil_div(2 * n, w), ceil_div(12 * n, w)},
                           {ceil_div(2 * n, w), ceil_div(2 * n, w), ceil_div(12 * n, w)}};
    uint64_t total[4];
    for (int s = 0; s < 4; s++) total[s] = part[s][0] + part[s][1] + part[s][2];
    if (as_json) {
        printf("{\"stage0\": %llu, \"stage1\": %llu, \"stage2\": %llu, \"stage3\": %llu}\n",
               (unsigned long long)total[0], (unsigned long long)total[1],
               (unsigned long long)total[2], (unsigned long long)total[3]);
        return 0;
    }
    char a[32], b[32], d[32], t[32];
    printf("model states per rank: %llu parameters, %llu rank%s, fp16/bf16 + Adam "
           "(2 + 2 + 12 bytes per parameter)\n",
           (unsigned long long)n, (unsigned long long)w, w == 1 ? "" : "s");
    printf("  %-7s %12s %12s %12s %12s %16s\n", "stage", "weights", "gradients", "optimizer",
           "total", "bytes");
    for (int s = 0; s < 4; s++)
        printf("  %-7d %12s %12s %12s %12s %16llu\n", s, human(a, sizeof a, part[s][0]),
               human(b, sizeof b, part[s][1]), human(d, sizeof d, part[s][2]),
               human(t, sizeof t, total[s]), (unsigned long long)total[s]);
    printf("Activations, temporary buffers and fragmentation come on top.\n");
    return 0;
}
