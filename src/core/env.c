/* Cached environment parameters and small formatting helpers. Each VKT_*
 * variable is read once; later changes to the environment are not seen, so
 * a value cannot change under a running job. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

#define ENV_SLOTS 64

typedef struct env_slot {
    const char *name; /* static string of the caller */
    const char *value;
} env_slot;

static env_slot slots[ENV_SLOTS];
static int nslots;
static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;

const char *vkt__env_str(const char *name)
{
    const char *v = NULL;
    pthread_mutex_lock(&env_lock);
    for (int i = 0; i < nslots; i++) {
        if (strcmp(slots[i].name, name) == 0) {
            v = slots[i].value;
            goto out;
        }
    }
    v = getenv(name);
    if (v && !*v) v = NULL;
    /* The environment string lives as long as the process unless someone
     * calls setenv on the same name; copy it so that cannot bite. */
    if (v) v = strdup(v);
    if (nslots < ENV_SLOTS) slots[nslots++] = (env_slot){name, v};
out:
    pthread_mutex_unlock(&env_lock);
    return v;
}

int64_t vkt__env_int(const char *name, int64_t deflt)
{
    const char *v = vkt__env_str(name);
    if (!v) return deflt;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (errno || end == v || *end) {
        fprintf(stderr, "vktrain: warning: %s=%s is not an integer; using %lld\n", name, v,
                (long long)deflt);
        return deflt;
    }
    return x;
}

const char *vkt__fmt_bytes(char *buf, size_t cap, uint64_t bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}
