/* Re-sharding: the model check, the whole flat state assembled from every
 * rank's shard, and the copy into another layout (see ckpt_index.h). */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"
#include "formats/ckpt_int.h"

#define PATH_CAP 4096

static const char *shape_str(char *buf, size_t cap, const vkt_ckpt_param *p)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < p->ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, d ? ", %" PRIu64 : "%" PRIu64, p->shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

static bool same_param(const vkt_ckpt_param *a, const vkt_ckpt_param *b)
{
    if (strcmp(a->name, b->name) || a->ndim != b->ndim) return false;
    for (uint32_t d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

vkt_status vkt__ckpt_check_model(const vkt_ckpt_index *idx, const char *step_dir,
                                 const vkt_ckpt_param *expect, size_t n)
{
    char a[160], b[160];
    size_t common = n < idx->nparams ? n : idx->nparams;
    for (size_t i = 0; i < common; i++)
        VKT_FAIL_IF(!same_param(&idx->params[i], &expect[i]), VKT_ERR_INVALID_ARG,
                    "checkpoint %s is from another model: its parameter %zu is '%s' %s, this "
                    "model's is '%s' %s", step_dir, i, idx->params[i].name,
                    shape_str(a, sizeof a, &idx->params[i]), expect[i].name,
                    shape_str(b, sizeof b, &expect[i]));
    VKT_FAIL_IF(n > idx->nparams, VKT_ERR_INVALID_ARG, "checkpoint %s is from another model: it "
                "has %zu parameters, this model %zu; the first it lacks is '%s'", step_dir,
                idx->nparams, n, expect[common].name);
    VKT_FAIL_IF(n < idx->nparams, VKT_ERR_INVALID_ARG, "checkpoint %s is from another model: it "
                "has %zu parameters, this model %zu; the first extra one is '%s'", step_dir,
                idx->nparams, n, idx->params[common].name);
    return VKT_OK;
}

/* The shard's "ranges" metadata must say what the index says. */
static bool ranges_match(const char *text, const vkt_ckpt_rank *k)
{
    json_t *a = text ? json_loads(text, 0, NULL) : NULL;
    bool ok = json_is_array(a) && json_array_size(a) == k->nranges;
    for (size_t j = 0; ok && j < k->nranges; j++) {
        json_t *g = json_array_get(a, j);
        ok = json_array_size(g) == 2 &&
             json_integer_value(json_array_get(g, 0)) == (json_int_t)k->ranges[j].offset &&
             json_integer_value(json_array_get(g, 1)) == (json_int_t)k->ranges[j].count;
    }
    json_decref(a);
    return ok;
}

static vkt_status load_rank(const char *step_dir, uint32_t r, const vkt_ckpt_rank *k,
                            const char *kind, float *out)
{
    uint64_t total = 0;
    for (size_t j = 0; j < k->nranges; j++) total += k->ranges[j].count;
    if (!total) return VKT_OK;
    const vkt_ckpt_filerec *f = NULL;
    for (size_t j = 0; j < k->nfiles; j++)
        if (!strcmp(k->files[j].role, "shard")) f = &k->files[j];
    VKT_ASSERT(f); /* vkt__ckpt_check_index made sure */
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", step_dir, f->name);
    vkt_st_file *sf = NULL;
    VKT_CHECK(vkt__st_open(path, &sf));
    const vkt_st_tensor *t = vkt__st_find(sf, kind);
    vkt_status st = VKT_OK;
    if (!t)
        st = VKT_ERROR(VKT_ERR_CORRUPT, "rank %u's shard %s has no tensor '%s'", r, path, kind);
    else if (t->dtype != VKT_ST_F32 || t->ndim != 1 || t->shape[0] != total)
        st = VKT_ERROR(VKT_ERR_CORRUPT, "rank %u's shard %s: tensor '%s' is not F32 [%" PRIu64
                       "] as the index's ranges say", r, path, kind, total);
    else if (!ranges_match(vkt__st_meta(sf, "ranges"), k))
        st = VKT_ERROR(VKT_ERR_CORRUPT, "rank %u's shard %s: its 'ranges' metadata differs "
                       "from the index", r, path);
    const float *src = t ? t->data : NULL;
    for (size_t j = 0; st == VKT_OK && j < k->nranges; j++) {
        memcpy(out + k->ranges[j].offset, src, k->ranges[j].count * sizeof(float));
        src += k->ranges[j].count;
    }
    vkt__st_close(sf);
    return st;
}

vkt_status vkt__ckpt_load_flat(const char *step_dir, const vkt_ckpt_index *idx, const char *kind,
                               float *out)
{
    bool known = !strcmp(kind, VKT_CKPT_MASTER);
    for (size_t i = 0; i < idx->nstates; i++) known |= !strcmp(kind, idx->states[i]);
    VKT_FAIL_IF(!known, VKT_ERR_INVALID_ARG,
                "checkpoint %s holds no state '%s' (it has '%s'%s%s%s)", step_dir, kind,
                VKT_CKPT_MASTER, idx->nstates ? ", '" : "", idx->nstates ? idx->states[0] : "",
                idx->nstates ? "', ..." : "");
    memset(out, 0, idx->flat_length * sizeof(float));
    for (uint32_t r = 0; r < idx->world_size; r++)
        VKT_CHECK(load_rank(step_dir, r, &idx->ranks[r], kind, out));
    return VKT_OK;
}

vkt_status vkt__ckpt_relayout(const vkt_ckpt_index *idx, const float *src,
                              const vkt_ckpt_param *dst, size_t ndst, uint64_t dst_length,
                              float *out)
{
    json_t *by_name = json_object();
    for (size_t i = 0; i < idx->nparams; i++)
        json_object_set_new(by_name, idx->params[i].name, json_integer((json_int_t)i));
    vkt_status st = VKT_OK;
    char a[160], b[160];
    memset(out, 0, dst_length * sizeof(float));
    for (size_t i = 0; i < ndst && st == VKT_OK; i++) {
        json_t *hit = json_object_get(by_name, dst[i].name);
        const vkt_ckpt_param *s = hit ? &idx->params[json_integer_value(hit)] : NULL;
        if (!s)
            st = VKT_ERROR(VKT_ERR_INVALID_ARG, "parameter '%s' of this model is not in the "
                           "checkpoint (another model?)", dst[i].name);
        else if (!same_param(s, &dst[i]))
            st = VKT_ERROR(VKT_ERR_INVALID_ARG, "parameter '%s' is %s in the checkpoint but %s "
                           "in this model", dst[i].name, shape_str(a, sizeof a, s),
                           shape_str(b, sizeof b, &dst[i]));
        else if (dst[i].offset > dst_length || s->numel > dst_length - dst[i].offset)
            st = VKT_ERROR(VKT_ERR_INVALID_ARG, "parameter '%s' at %" PRIu64 " does not fit the "
                           "target buffer of %" PRIu64 " elements", dst[i].name, dst[i].offset,
                           dst_length);
        else
            memcpy(out + dst[i].offset, src + s->offset, s->numel * sizeof(float));
    }
    json_decref(by_name);
    VKT_CHECK(st);
    VKT_FAIL_IF(ndst != idx->nparams, VKT_ERR_INVALID_ARG, "the checkpoint has %zu parameters, "
                "this model %zu (another model?)", idx->nparams, ndst);
    return VKT_OK;
}
