/* Helpers shared by the subcommands. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

int cli_fail(vkt_status st, const char *what)
{
    fprintf(stderr, "vktrain: %s: %s\n", what,
            *vkt_last_error() ? vkt_last_error() : vkt_status_str(st));
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "vktrain %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'vktrain %s --help'.\n", cmd);
    return 2;
}

const char *cli_host_isa(void)
{
    static char buf[256];
    if (buf[0]) return buf;
    char model[160] = "unknown CPU", line[4096];
    bool avx2 = false, avx512 = false;
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            snprintf(model, sizeof model, "%s", strchr(line, ':') + 2);
            model[strcspn(model, "\n")] = '\0';
        } else if (strncmp(line, "flags", 5) == 0) {
            avx2 = strstr(line, " avx2") != NULL;
            avx512 = strstr(line, " avx512f") != NULL;
            break;
        }
    }
    if (f) fclose(f);
    snprintf(buf, sizeof buf, "%s (%s)", model,
             avx512 ? "avx512" : avx2 ? "avx2, no avx512" : "no avx2");
    return buf;
}

int cli_open_device(const char *select, vkt_device **out)
{
    vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
    o.select = select;
    vkt_status st = vkt_device_create(&o, out);
    return st == VKT_OK ? 0 : cli_fail(st, "cannot open a Vulkan device");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cli_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double cli_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                  uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return cli_usage_error(cmd, "--%s takes a whole number from %" PRIu64 " to %" PRIu64
                               ", not '%s'", opt, lo, hi, s);
    *out = v;
    return 0;
}
