/* vktrain — host memory allocation hooks.
 *
 * All host heap memory the library uses goes through these functions. A
 * program (or a test) may install its own allocator, e.g. one that fails the
 * Nth allocation to prove that every failure path returns VKT_ERR_NOMEM and
 * leaks nothing. */
#ifndef VKTRAIN_ALLOC_H
#define VKTRAIN_ALLOC_H

#include <stddef.h>

#include "vktrain/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkt_allocator {
    void *(*alloc)(void *user, size_t size);           /* NULL on failure */
    void *(*realloc)(void *user, void *ptr, size_t size);
    void (*free)(void *user, void *ptr);                /* accepts NULL */
    void *user;
} vkt_allocator;

/* Install a = all three hooks, or NULL to restore the C library's allocator.
 * Not thread-safe: call before creating any vktrain object, and never while
 * objects allocated through the previous hooks are alive. */
VKT_API void vkt_set_allocator(const vkt_allocator *a);

/* malloc/calloc/realloc/free through the installed hooks. vkt_malloc(0)
 * returns a unique pointer; vkt_calloc checks n*size for overflow. */
VKT_API void *vkt_malloc(size_t size);
VKT_API void *vkt_calloc(size_t n, size_t size);
VKT_API void *vkt_realloc(void *ptr, size_t size);
VKT_API void vkt_free(void *ptr);
/* A copy of s in vkt_malloc'd memory, or NULL when out of memory. */
VKT_API char *vkt_strdup(const char *s);

#ifdef __cplusplus
}
#endif
#endif
