/* A model's parameters to and from safetensors files (vktrain/tensors.h),
 * one tensor per parameter, named and shaped as PyTorch's state_dict. Built
 * only on the public model and tensors APIs. */
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"
#include "vktrain/tensors.h"

/* "[10, 10]" into buf. */
static const char *shape_str(char *buf, size_t cap, uint32_t ndim, const uint64_t *shape)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%llu", d ? ", " : "",
                               (unsigned long long)shape[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
    return buf;
}

vkt_status vkt_model_write_params(const vkt_model *m, const float *params, const char *path)
{
    VKT_FAIL_IF(!m || !params || !path, VKT_ERR_INVALID_ARG,
                "vkt_model_write_params: NULL argument");
    uint32_t n = vkt_model_param_count(m);
    vkt_tensor_f32 *t = vkt_calloc(n ? n : 1, sizeof *t);
    VKT_FAIL_IF(!t, VKT_ERR_NOMEM, "vkt_model_write_params: %s: no memory", path);
    /* params is dense in state_dict order (padding removed), so tensor i
     * starts where the previous ones' elements end, not at info.offset. */
    uint64_t at = 0;
    vkt_status st = VKT_OK;
    for (uint32_t i = 0; i < n; i++) {
        vkt_param_info pi;
        VKT_CHECK_GOTO(st, vkt_model_param_info(m, i, &pi), done);
        t[i].name = pi.name;
        t[i].ndim = pi.ndim;
        for (uint32_t d = 0; d < pi.ndim; d++) t[i].shape[d] = pi.shape[d];
        t[i].data = params + at;
        at += pi.numel;
    }
    st = vkt_tensors_write_f32(path, t, n);
done:
    vkt_free(t);
    return st;
}

/* Parameter pi from f into out, checking the shape. */
static vkt_status read_one(const vkt_tensor_file *f, const char *path, const vkt_param_info *pi,
                           float *out)
{
    vkt_tensor_info ti;
    if (vkt_tensor_file_find(f, pi->name, &ti) != VKT_OK)
        return VKT_ERROR(VKT_ERR_INVALID_ARG,
                         "%s: the model's parameter '%s' is missing (the file has %u tensors; "
                         "names must be the state_dict's)", path, pi->name,
                         vkt_tensor_file_count(f));
    bool same = ti.ndim == pi->ndim;
    for (uint32_t d = 0; same && d < pi->ndim; d++) same = ti.shape[d] == pi->shape[d];
    if (!same) {
        uint64_t want[VKT_TENSOR_MAX_DIMS] = {0};
        for (uint32_t d = 0; d < pi->ndim; d++) want[d] = pi->shape[d];
        char a[96], b[96];
        return VKT_ERROR(VKT_ERR_INVALID_ARG, "%s: tensor '%s' has shape %s; the model's is %s",
                         path, pi->name, shape_str(a, sizeof a, ti.ndim, ti.shape),
                         shape_str(b, sizeof b, pi->ndim, want));
    }
    return vkt_tensor_file_read_f32(f, pi->name, out, pi->numel);
}

vkt_status vkt_model_read_params(const vkt_model *m, const char *path, float *params)
{
    VKT_FAIL_IF(!m || !params || !path, VKT_ERR_INVALID_ARG,
                "vkt_model_read_params: NULL argument");
    vkt_tensor_file *f = NULL;
    VKT_CHECK(vkt_tensor_file_open(path, &f));
    vkt_status st = VKT_OK;
    uint64_t at = 0;
    for (uint32_t i = 0, n = vkt_model_param_count(m); i < n; i++) {
        vkt_param_info pi;
        VKT_CHECK_GOTO(st, vkt_model_param_info(m, i, &pi), done);
        VKT_CHECK_GOTO(st, read_one(f, path, &pi, params + at), done);
        at += pi.numel;
    }
done:
    vkt_tensor_file_close(f);
    return st;
}

vkt_status vkt_model_save_safetensors(vkt_model *m, const char *path)
{
    VKT_FAIL_IF(!m || !path, VKT_ERR_INVALID_ARG, "vkt_model_save_safetensors: NULL argument");
    uint64_t n = vkt_model_num_params(m);
    float *p = vkt_malloc((n ? n : 1) * sizeof *p);
    VKT_FAIL_IF(!p, VKT_ERR_NOMEM, "vkt_model_save_safetensors: no memory for %llu parameters",
                (unsigned long long)n);
    vkt_status st = vkt_model_get_params(m, p);
    if (st == VKT_OK) st = vkt_model_write_params(m, p, path);
    vkt_free(p);
    return st;
}

vkt_status vkt_model_load_safetensors(vkt_model *m, const char *path)
{
    VKT_FAIL_IF(!m || !path, VKT_ERR_INVALID_ARG, "vkt_model_load_safetensors: NULL argument");
    uint64_t n = vkt_model_num_params(m);
    float *p = vkt_malloc((n ? n : 1) * sizeof *p);
    VKT_FAIL_IF(!p, VKT_ERR_NOMEM, "vkt_model_load_safetensors: no memory for %llu parameters",
                (unsigned long long)n);
    vkt_status st = vkt_model_read_params(m, path, p);
    if (st == VKT_OK) st = vkt_model_set_params(m, p);
    vkt_free(p);
    return st;
}
