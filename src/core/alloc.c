/* Host allocation through replaceable hooks (see vktrain/alloc.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vktrain/alloc.h"

static void *libc_alloc(void *user, size_t size)
{
    (void)user;
    return malloc(size);
}

static void *libc_realloc(void *user, void *ptr, size_t size)
{
    (void)user;
    return realloc(ptr, size);
}

static void libc_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

static vkt_allocator hooks = {libc_alloc, libc_realloc, libc_free, NULL};

void vkt_set_allocator(const vkt_allocator *a)
{
    if (a && a->alloc && a->realloc && a->free)
        hooks = *a;
    else
        hooks = (vkt_allocator){libc_alloc, libc_realloc, libc_free, NULL};
}

void *vkt_malloc(size_t size) { return hooks.alloc(hooks.user, size ? size : 1); }

void *vkt_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *p = vkt_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void *vkt_realloc(void *ptr, size_t size)
{
    return hooks.realloc(hooks.user, ptr, size ? size : 1);
}

void vkt_free(void *ptr)
{
    if (ptr) hooks.free(hooks.user, ptr);
}

char *vkt_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = vkt_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
