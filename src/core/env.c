/* Cached environment parameters and small formatting helpers. Each VKT_*
 * variable is read once; later changes to the environment are not seen, so
 * a value cannot change under a running job. */
#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

#define ENV_SLOTS 64

typedef struct env_slot {
    const char *name; /* static string of the caller */
    const char *value;
    bool warned;      /* a bad value was reported once */
} env_slot;

static env_slot slots[ENV_SLOTS];
static int nslots;
static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;

/* The slot of name, read from the environment on first use; NULL when the
 * table is full (then the caller reads the environment each time). */
static env_slot *slot_of(const char *name)
{
    for (int i = 0; i < nslots; i++)
        if (strcmp(slots[i].name, name) == 0) return &slots[i];
    if (nslots == ENV_SLOTS) return NULL;
    const char *v = getenv(name);
    /* Copied with libc's strdup, not vkt_malloc: the copy lives for the
     * whole process and must not depend on which allocator hook is set. */
    slots[nslots] = (env_slot){name, v && *v ? strdup(v) : NULL, false};
    return &slots[nslots++];
}

const char *vkt__env_str(const char *name)
{
    pthread_mutex_lock(&env_lock);
    env_slot *s = slot_of(name);
    const char *v = s ? s->value : getenv(name);
    pthread_mutex_unlock(&env_lock);
    return v && *v ? v : NULL;
}

int64_t vkt__env_int(const char *name, int64_t deflt)
{
    const char *v = vkt__env_str(name);
    if (!v) return deflt;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (!errno && end != v && !*end) return x;
    pthread_mutex_lock(&env_lock);
    env_slot *s = slot_of(name);
    bool first = s && !s->warned;
    if (s) s->warned = true;
    pthread_mutex_unlock(&env_lock);
    if (first)
        fprintf(stderr, "vktrain: warning: %s=%s is not an integer; using %lld\n", name, v,
                (long long)deflt);
    return deflt;
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
