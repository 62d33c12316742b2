/* The op context: kernel family, a pipeline cache keyed by shader and
 * specialization constants, and view binding. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ops/ops_int.h"

#define MAX_SPEC 8

typedef struct cached_pipeline {
    char shader[64];
    uint32_t spec[MAX_SPEC];
    uint32_t nspec, bindings, push_size;
    vkt_pipeline *pipeline;
} cached_pipeline;

struct vkt_ops {
    vkt_device *dev;
    vkt_kernel_family family;
    pthread_mutex_t lock;
    cached_pipeline *cache;
    uint32_t ncache, capcache;
};

const char *vkt__kernel_family_str(vkt_kernel_family f)
{
    return f == VKT_KERNELS_CPU ? "cpu" : f == VKT_KERNELS_GPU ? "gpu" : "auto";
}

static vkt_status resolve_family(vkt_device *dev, vkt_kernel_family f, vkt_kernel_family *out)
{
    if (f == VKT_KERNELS_AUTO) {
        const char *env = vkt__env_str("VKT_KERNELS");
        if (env && !strcmp(env, "cpu")) f = VKT_KERNELS_CPU;
        else if (env && !strcmp(env, "gpu")) f = VKT_KERNELS_GPU;
        else if (env && strcmp(env, "auto"))
            return VKT_ERROR(VKT_ERR_INVALID_ARG,
                             "VKT_KERNELS=%s is not a kernel family; use cpu, gpu or auto", env);
        else
            f = vkt_device_get_caps(dev)->type == VKT_DEVICE_CPU ? VKT_KERNELS_CPU
                                                                  : VKT_KERNELS_GPU;
    }
    VKT_FAIL_IF(f != VKT_KERNELS_CPU && f != VKT_KERNELS_GPU, VKT_ERR_INVALID_ARG,
                "unknown kernel family %d", (int)f);
    *out = f;
    return VKT_OK;
}

vkt_status vkt__ops_create(vkt_device *dev, vkt_kernel_family family, vkt_ops **out)
{
    VKT_FAIL_IF(!dev || !out, VKT_ERR_INVALID_ARG, "ops: NULL device or out");
    *out = NULL;
    vkt_kernel_family f = VKT_KERNELS_CPU;
    VKT_CHECK(resolve_family(dev, family, &f));
    vkt_ops *ops = vkt_calloc(1, sizeof *ops);
    VKT_FAIL_IF(!ops, VKT_ERR_NOMEM, "ops: out of host memory");
    ops->dev = dev;
    ops->family = f;
    pthread_mutex_init(&ops->lock, NULL);
    *out = ops;
    return VKT_OK;
}

void vkt__ops_destroy(vkt_ops *ops)
{
    if (!ops) return;
    for (uint32_t i = 0; i < ops->ncache; i++) vkt_pipeline_destroy(ops->cache[i].pipeline);
    vkt_free(ops->cache);
    pthread_mutex_destroy(&ops->lock);
    vkt_free(ops);
}

vkt_kernel_family vkt__ops_family(const vkt_ops *ops) { return ops->family; }

vkt_device *vkt__ops_device(const vkt_ops *ops) { return ops->dev; }

static cached_pipeline *lookup(vkt_ops *ops, const char *shader, const uint32_t *spec,
                               uint32_t nspec)
{
    for (uint32_t i = 0; i < ops->ncache; i++) {
        cached_pipeline *c = &ops->cache[i];
        if (c->nspec == nspec && !strcmp(c->shader, shader) &&
            !memcmp(c->spec, spec, nspec * sizeof *spec))
            return c;
    }
    return NULL;
}

static vkt_status insert(vkt_ops *ops, const char *shader, uint32_t bindings, uint32_t push_size,
                         const uint32_t *spec, uint32_t nspec, cached_pipeline **out)
{
    if (ops->ncache == ops->capcache) {
        uint32_t cap = ops->capcache ? 2 * ops->capcache : 16;
        cached_pipeline *g = vkt_realloc(ops->cache, cap * sizeof *g);
        VKT_FAIL_IF(!g, VKT_ERR_NOMEM, "ops: out of host memory");
        ops->cache = g;
        ops->capcache = cap;
    }
    vkt_pipeline_opts o = VKT_PIPELINE_OPTS_INIT;
    o.shader = shader;
    o.bindings = bindings;
    o.push_size = push_size;
    o.spec = spec;
    o.spec_count = nspec;
    cached_pipeline *c = &ops->cache[ops->ncache];
    memset(c, 0, sizeof *c);
    VKT_CHECK(vkt_pipeline_create(ops->dev, &o, &c->pipeline));
    snprintf(c->shader, sizeof c->shader, "%s", shader);
    memcpy(c->spec, spec, nspec * sizeof *spec);
    c->nspec = nspec;
    c->bindings = bindings;
    c->push_size = push_size;
    ops->ncache++;
    *out = c;
    return VKT_OK;
}

vkt_status vkt__ops_pipeline(vkt_ops *ops, const char *shader, uint32_t bindings,
                             uint32_t push_size, const uint32_t *spec, uint32_t nspec,
                             const vkt_pipeline **out)
{
    VKT_FAIL_IF(nspec > MAX_SPEC || strlen(shader) >= 64, VKT_ERR_INVALID_ARG,
                "ops: shader '%s' with %u spec constants (at most %d)", shader, nspec, MAX_SPEC);
    pthread_mutex_lock(&ops->lock);
    cached_pipeline *c = lookup(ops, shader, spec, nspec);
    vkt_status st = VKT_OK;
    if (!c) st = insert(ops, shader, bindings, push_size, spec, nspec, &c);
    else if (c->bindings != bindings || c->push_size != push_size)
        st = VKT_ERROR(VKT_ERR_INTERNAL, "ops: shader '%s' asked with %u bindings/%u push bytes, "
                       "cached with %u/%u", shader, bindings, push_size, c->bindings,
                       c->push_size);
    pthread_mutex_unlock(&ops->lock);
    if (st == VKT_OK) *out = c->pipeline;
    return st;
}

vkt_status vkt__ops_bind(const vkt_ops *ops, vkt_tref t, uint64_t bytes, uint32_t elem_size,
                         const char *what, vkt_binding *b, uint32_t *first)
{
    const vkt_device_caps *c = vkt_device_get_caps(ops->dev);
    VKT_FAIL_IF(!t.buf, VKT_ERR_INVALID_ARG, "%s: no buffer", what);
    uint64_t size = vkt_buffer_size(t.buf);
    VKT_FAIL_IF(t.offset % elem_size, VKT_ERR_INVALID_ARG,
                "%s: offset %llu is not a multiple of the element size %u", what,
                (unsigned long long)t.offset, elem_size);
    VKT_FAIL_IF(t.offset > size || bytes > size - t.offset, VKT_ERR_INVALID_ARG,
                "%s: %llu bytes at offset %llu run past the end of its %llu-byte buffer", what,
                (unsigned long long)bytes, (unsigned long long)t.offset,
                (unsigned long long)size);
    uint64_t align = c->min_storage_buffer_alignment;
    uint64_t start = t.offset / align * align;
    uint64_t range = size - start < c->max_storage_buffer_range ? size - start
                                                                : c->max_storage_buffer_range;
    range -= range % elem_size;
    VKT_FAIL_IF(t.offset + bytes > start + range, VKT_ERR_INVALID_ARG,
                "%s: %llu bytes at offset %llu straddle a %llu-byte binding window of '%s'; "
                "lay tensors out so none crosses a window", what, (unsigned long long)bytes,
                (unsigned long long)t.offset, (unsigned long long)c->max_storage_buffer_range,
                c->name);
    *b = (vkt_binding){t.buf, start, range};
    *first = (uint32_t)((t.offset - start) / elem_size);
    return VKT_OK;
}

/* CPU family: 8 lanes, long contiguous runs per lane (measured 2-3x faster
 * than grid-stride loops on lavapipe). GPU family: 256 lanes, one element
 * each, so neighbours access neighbours. */
vkt_split vkt__ops_split(const vkt_ops *ops)
{
    const vkt_device_caps *c = vkt_device_get_caps(ops->dev);
    vkt_split sp = ops->family == VKT_KERNELS_CPU ? (vkt_split){8, 64, 0}
                                                  : (vkt_split){256, 1, 0};
    uint64_t max_groups = c->max_workgroup_count[0] < 65535 ? c->max_workgroup_count[0] : 65535;
    sp.per_dispatch = max_groups * sp.wg * sp.run;
    return sp;
}

uint32_t vkt__ops_groups(vkt_split sp, uint64_t count)
{
    uint64_t per_group = (uint64_t)sp.wg * sp.run;
    return (uint32_t)((count + per_group - 1) / per_group);
}

vkt_status vkt__ops_check_dtype(const vkt_ops *ops, vkt_dtype t, const char *op)
{
    VKT_FAIL_IF(t != VKT_DTYPE_F32 && t != VKT_DTYPE_F16 && t != VKT_DTYPE_BF16,
                VKT_ERR_INVALID_ARG, "%s: dtype %s is not a training dtype (f32, f16, bf16)",
                op, vkt_dtype_name(t));
    const vkt_device_caps *c = vkt_device_get_caps(ops->dev);
    VKT_FAIL_IF(t != VKT_DTYPE_F32 && !c->storage_16bit, VKT_ERR_UNSUPPORTED,
                "%s: %s tensors need 16-bit storage buffers, which '%s' lacks; train in f32 "
                "on this device", op, vkt_dtype_name(t), c->name);
    return VKT_OK;
}
