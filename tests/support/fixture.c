#include "fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_gpu.h"

typedef struct array {
    char name[64];
    uint32_t dtype;
    uint64_t count;
    void *data;
} array;

struct fixture {
    array *a;
    uint32_t n;
};

static void read_exact(FILE *f, void *dst, size_t n, const char *path)
{
    if (fread(dst, 1, n, f) != n) fail_msg("fixture %s is truncated", path);
}

fixture *fixture_load(const char *path)
{
    char full[1024];
    snprintf(full, sizeof full, "%s%s%s", path[0] == '/' ? "" : VKT_FIXTURE_DIR,
             path[0] == '/' ? "" : "/", path);
    FILE *f = fopen(full, "rb");
    if (!f) fail_msg("cannot open fixture %s", full);
    char magic[8];
    read_exact(f, magic, 8, full);
    if (memcmp(magic, "VKTFX1\0\0", 8)) fail_msg("%s is not a vktrain fixture", full);
    fixture *fx = calloc(1, sizeof *fx);
    read_exact(f, &fx->n, 4, full);
    fx->a = calloc(fx->n, sizeof *fx->a);
    for (uint32_t i = 0; i < fx->n; i++) {
        array *a = &fx->a[i];
        uint32_t len;
        read_exact(f, &len, 4, full);
        if (len >= sizeof a->name) fail_msg("%s: array name too long", full);
        read_exact(f, a->name, len, full);
        read_exact(f, &a->dtype, 4, full);
        read_exact(f, &a->count, 8, full);
        a->data = malloc(a->count * 4 + 1);
        read_exact(f, a->data, a->count * 4, full);
    }
    fclose(f);
    return fx;
}

void fixture_free(fixture *f)
{
    for (uint32_t i = 0; i < f->n; i++) free(f->a[i].data);
    free(f->a);
    free(f);
}

static const array *find(const fixture *f, const char *name, uint32_t dtype)
{
    for (uint32_t i = 0; i < f->n; i++)
        if (!strcmp(f->a[i].name, name)) {
            if (f->a[i].dtype != dtype) fail_msg("fixture array %s has dtype %u", name, f->a[i].dtype);
            return &f->a[i];
        }
    fail_msg("fixture has no array %s", name);
    return NULL;
}

const float *fixture_f32(const fixture *f, const char *name, size_t *count)
{
    const array *a = find(f, name, 0);
    if (count) *count = a->count;
    return a->data;
}

const int32_t *fixture_i32(const fixture *f, const char *name, size_t *count)
{
    const array *a = find(f, name, 4);
    if (count) *count = a->count;
    return a->data;
}

void fixture_expect_close(const char *what, const float *got, const float *want, size_t n,
                          double rel)
{
    double scale = 1e-6, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / scale;
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d, at = i; /* NaN is the worst */
    }
    print_message("  %-14s max diff %.2e of max |x| (%zu values)\n", what, worst, n);
    if (worst > rel)
        fail_msg("%s[%zu] = %.8g, PyTorch %.8g (diff %.2e > %.0e)", what, at, got[at], want[at],
                 worst, rel);
}
