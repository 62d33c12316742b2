/* The public safetensors API (vktrain/tensors.h): thin wrappers over the
 * internal reader and writer (formats/safetensors.h), which do the
 * validation; this file only converts dtypes and shapes. */
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"
#include "formats/safetensors.h"
#include "vktrain/tensors.h"

_Static_assert(VKT_TENSOR_MAX_DIMS == VKT_ST_MAX_DIMS, "public and internal dim limits differ");

/* The internal file, and its path for messages. */
struct vkt_tensor_file {
    vkt_st_file *st;
    char path[256]; /* for messages; truncated if longer */
};

vkt_status vkt_tensor_file_open(const char *path, vkt_tensor_file **out)
{
    VKT_FAIL_IF(!path || !out, VKT_ERR_INVALID_ARG, "vkt_tensor_file_open: NULL argument");
    *out = NULL;
    vkt_tensor_file *f = vkt_calloc(1, sizeof *f);
    VKT_FAIL_IF(!f, VKT_ERR_NOMEM, "vkt_tensor_file_open: %s: no memory", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    vkt_status st = vkt__st_open(path, &f->st);
    if (st != VKT_OK) {
        vkt_free(f);
        return st;
    }
    *out = f;
    return VKT_OK;
}

void vkt_tensor_file_close(vkt_tensor_file *f)
{
    if (!f) return;
    vkt__st_close(f->st);
    vkt_free(f);
}

uint32_t vkt_tensor_file_count(const vkt_tensor_file *f)
{
    return f ? (uint32_t)vkt__st_count(f->st) : 0;
}

static void fill_info(const vkt_st_tensor *t, vkt_tensor_info *out)
{
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = vkt__st_dtype_name(t->dtype);
    out->ndim = t->ndim;
    for (uint32_t d = 0; d < t->ndim; d++) out->shape[d] = t->shape[d];
    out->numel = vkt__st_numel(t);
}

vkt_status vkt_tensor_file_info(const vkt_tensor_file *f, uint32_t i, vkt_tensor_info *out)
{
    VKT_FAIL_IF(!f || !out, VKT_ERR_INVALID_ARG, "vkt_tensor_file_info: NULL argument");
    VKT_FAIL_IF(i >= vkt__st_count(f->st), VKT_ERR_INVALID_ARG,
                "vkt_tensor_file_info: %s has %zu tensors; there is no tensor %u", f->path,
                vkt__st_count(f->st), i);
    fill_info(vkt__st_tensor(f->st, i), out);
    return VKT_OK;
}

static vkt_status find(const vkt_tensor_file *f, const char *name, const vkt_st_tensor **out)
{
    VKT_FAIL_IF(!f || !name, VKT_ERR_INVALID_ARG, "vkt_tensor_file: NULL argument");
    *out = vkt__st_find(f->st, name);
    VKT_FAIL_IF(!*out, VKT_ERR_INVALID_ARG, "%s: no tensor named '%s' (the file has %zu)",
                f->path, name, vkt__st_count(f->st));
    return VKT_OK;
}

vkt_status vkt_tensor_file_find(const vkt_tensor_file *f, const char *name,
                                vkt_tensor_info *out)
{
    const vkt_st_tensor *t;
    VKT_CHECK(find(f, name, &t));
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_tensor_file_find: out is NULL");
    fill_info(t, out);
    return VKT_OK;
}

vkt_status vkt_tensor_file_read_f32(const vkt_tensor_file *f, const char *name, float *out,
                                    uint64_t numel)
{
    const vkt_st_tensor *t;
    VKT_CHECK(find(f, name, &t));
    VKT_FAIL_IF(!out && numel, VKT_ERR_INVALID_ARG, "vkt_tensor_file_read_f32: out is NULL");
    uint64_t n = vkt__st_numel(t);
    VKT_FAIL_IF(n != numel, VKT_ERR_INVALID_ARG,
                "%s: tensor '%s' has %llu elements; the caller expects %llu", f->path, name,
                (unsigned long long)n, (unsigned long long)numel);
    /* The data may be unaligned (writers other than ours need not pad the
     * header), so it is copied before it is read as numbers. */
    switch (t->dtype) {
    case VKT_ST_F32:
        if (n) memcpy(out, t->data, n * sizeof *out);
        return VKT_OK;
    case VKT_ST_F16:
    case VKT_ST_BF16:
        /* Copied to the front of out, then widened in place (the converter
         * runs back to front for that). */
        if (n) memcpy(out, t->data, n * 2);
        vkt__dtype_to_f32(t->dtype == VKT_ST_F16 ? VKT_DTYPE_F16 : VKT_DTYPE_BF16, out, out, n);
        return VKT_OK;
    case VKT_ST_F64: {
        const unsigned char *p = t->data;
        for (uint64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + i * sizeof d, sizeof d);
            out[i] = (float)d;
        }
        return VKT_OK;
    }
    default:
        return VKT_ERROR(VKT_ERR_INVALID_ARG,
                         "%s: tensor '%s' is %s; only F32, F16, BF16 and F64 can be read "
                         "as fp32", f->path, name, vkt__st_dtype_name(t->dtype));
    }
}

vkt_status vkt_tensors_write_f32(const char *path, const vkt_tensor_f32 *t, size_t n)
{
    VKT_FAIL_IF(!path || (n && !t), VKT_ERR_INVALID_ARG, "vkt_tensors_write_f32: NULL argument");
    vkt_st_tensor *st = vkt_calloc(n ? n : 1, sizeof *st);
    VKT_FAIL_IF(!st, VKT_ERR_NOMEM, "%s: no memory for %zu tensor entries", path, n);
    vkt_status s = VKT_OK;
    for (size_t i = 0; i < n; i++) {
        if (t[i].ndim > VKT_TENSOR_MAX_DIMS) {
            s = VKT_ERROR(VKT_ERR_INVALID_ARG, "%s: tensor '%s' has %u dimensions; at most %d",
                          path, t[i].name ? t[i].name : "(null)", t[i].ndim,
                          VKT_TENSOR_MAX_DIMS);
            goto done;
        }
        st[i].name = t[i].name;
        st[i].dtype = VKT_ST_F32;
        st[i].ndim = t[i].ndim;
        for (uint32_t d = 0; d < t[i].ndim; d++) st[i].shape[d] = t[i].shape[d];
        st[i].data = t[i].data;
    }
    s = vkt__st_write(path, st, n, NULL, 0, NULL);
done:
    vkt_free(st);
    return s;
}
