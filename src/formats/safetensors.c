/* safetensors writer and validating reader (see safetensors.h). */
#include "formats/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/core_int.h"
#include "formats/file.h"

/* The reference implementation refuses larger headers (MAX_HEADER_SIZE). */
#define ST_MAX_HEADER 100000000ull

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
#define VKT_ST_DTYPE_ROW_(name, size) {#name, size},
    VKT_ST_DTYPE_MAP(VKT_ST_DTYPE_ROW_)
#undef VKT_ST_DTYPE_ROW_
};

size_t vkt__st_dtype_size(vkt_st_dtype t)
{
    return (unsigned)t < VKT_ST_DTYPE_COUNT_ ? dtypes[t].size : 0;
}

const char *vkt__st_dtype_name(vkt_st_dtype t)
{
    return (unsigned)t < VKT_ST_DTYPE_COUNT_ ? dtypes[t].name : "invalid";
}

bool vkt__st_dtype_parse(const char *s, vkt_st_dtype *out)
{
    for (int i = 0; i < VKT_ST_DTYPE_COUNT_; i++)
        if (!strcmp(s, dtypes[i].name)) {
            *out = (vkt_st_dtype)i;
            return true;
        }
    return false;
}

uint64_t vkt__st_numel(const vkt_st_tensor *t)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* numel x element size of t, false on overflow. */
static bool tensor_bytes(const vkt_st_tensor *t, uint64_t *out)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < t->ndim; d++)
        if (__builtin_mul_overflow(n, t->shape[d], &n)) return false;
    return !__builtin_mul_overflow(n, (uint64_t)vkt__st_dtype_size(t->dtype), out);
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

static vkt_status check_tensor_arg(const char *path, const vkt_st_tensor *t, json_t *seen,
                                   uint64_t *bytes)
{
    VKT_FAIL_IF(!t->name || !t->name[0], VKT_ERR_INVALID_ARG, "%s: a tensor has no name", path);
    VKT_FAIL_IF(!strcmp(t->name, "__metadata__"), VKT_ERR_INVALID_ARG,
                "%s: '__metadata__' is reserved by safetensors and cannot name a tensor", path);
    VKT_FAIL_IF(json_object_get(seen, t->name), VKT_ERR_INVALID_ARG,
                "%s: tensor name '%s' is given twice", path, t->name);
    VKT_FAIL_IF(!vkt__st_dtype_size(t->dtype), VKT_ERR_INVALID_ARG,
                "%s: tensor '%s': invalid dtype %d", path, t->name, (int)t->dtype);
    VKT_FAIL_IF(t->ndim > VKT_ST_MAX_DIMS, VKT_ERR_INVALID_ARG,
                "%s: tensor '%s' has %u dimensions; at most %d are supported", path, t->name,
                t->ndim, VKT_ST_MAX_DIMS);
    VKT_FAIL_IF(!tensor_bytes(t, bytes) || *bytes > (uint64_t)INT64_MAX, VKT_ERR_INVALID_ARG,
                "%s: tensor '%s': shape x dtype size overflows 64 bits", path, t->name);
    VKT_FAIL_IF(*bytes && !t->data, VKT_ERR_INVALID_ARG, "%s: tensor '%s' has no data pointer",
                path, t->name);
    return VKT_OK;
}

static json_t *tensor_json(const vkt_st_tensor *t, uint64_t begin, uint64_t end)
{
    json_t *shape = json_array();
    for (uint32_t d = 0; d < t->ndim; d++)
        json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
    return json_pack("{s:s, s:o, s:[I,I]}", "dtype", vkt__st_dtype_name(t->dtype), "shape",
                     shape, "data_offsets", (json_int_t)begin, (json_int_t)end);
}

/* The header JSON (padded with spaces to a multiple of 8) and the write
 * order of the tensors: largest element size first, stable. */
static vkt_status build_header(const char *path, const vkt_st_tensor *tensors, size_t n,
                               const vkt_st_meta *meta, size_t nmeta, size_t *order,
                               char **header, size_t *hlen)
{
    vkt_status st = VKT_OK;
    json_t *root = json_object(), *seen = json_object();
    char *text = NULL;
    if (nmeta) {
        json_t *m = json_object();
        json_object_set_new(root, "__metadata__", m);
        for (size_t i = 0; i < nmeta; i++) {
            if (!meta[i].key || !meta[i].value) {
                st = VKT_ERROR(VKT_ERR_INVALID_ARG, "%s: metadata entry %zu has a NULL string",
                               path, i);
                goto done;
            }
            if (json_object_set_new(m, meta[i].key, json_string(meta[i].value))) {
                st = VKT_ERROR(VKT_ERR_INVALID_ARG, "%s: metadata entry '%s' is not valid UTF-8",
                               path, meta[i].key);
                goto done;
            }
        }
    }
    size_t k = 0;
    uint64_t offset = 0;
    for (size_t esize = 8; esize >= 1; esize /= 2)
        for (size_t i = 0; i < n; i++) {
            if (esize == 8) { /* first pass: check every tensor once */
                uint64_t b;
                VKT_CHECK_GOTO(st, check_tensor_arg(path, &tensors[i], seen, &b), done);
                if (json_object_set_new(seen, tensors[i].name, json_true())) {
                    st = VKT_ERROR(VKT_ERR_INVALID_ARG, "%s: tensor name '%s' is not valid UTF-8",
                                   path, tensors[i].name);
                    goto done;
                }
            }
            if (vkt__st_dtype_size(tensors[i].dtype) != esize) continue;
            uint64_t bytes = 0;
            tensor_bytes(&tensors[i], &bytes);
            order[k++] = i;
            json_object_set_new(root, tensors[i].name, tensor_json(&tensors[i], offset,
                                                                   offset + bytes));
            offset += bytes;
        }
    text = json_dumps(root, JSON_COMPACT);
    if (!text) {
        st = VKT_ERROR(VKT_ERR_NOMEM, "%s: cannot format the safetensors header", path);
        goto done;
    }
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    *header = vkt_malloc(padded);
    if (!*header) {
        st = VKT_ERROR(VKT_ERR_NOMEM, "%s: no memory for a %zu-byte header", path, padded);
        goto done;
    }
    memcpy(*header, text, len);
    memset(*header + len, ' ', padded - len);
    *hlen = padded;
done:
    free(text);
    json_decref(seen);
    json_decref(root);
    return st;
}

vkt_status vkt__st_write(const char *path, const vkt_st_tensor *tensors, size_t n,
                         const vkt_st_meta *meta, size_t nmeta, vkt_st_written *info)
{
    VKT_FAIL_IF(!path || (n && !tensors) || (nmeta && !meta), VKT_ERR_INVALID_ARG,
                "vkt__st_write: NULL argument");
    size_t *order = vkt_malloc((n ? n : 1) * sizeof *order);
    vkt_file_part *parts = vkt_malloc((n + 2) * sizeof *parts);
    char *header = NULL;
    size_t hlen = 0;
    vkt_status st = VKT_OK;
    if (!order || !parts) {
        st = VKT_ERROR(VKT_ERR_NOMEM, "%s: no memory for %zu tensor entries", path, n);
        goto done;
    }
    VKT_CHECK_GOTO(st, build_header(path, tensors, n, meta, nmeta, order, &header, &hlen), done);
    uint8_t lenbuf[8];
    for (int b = 0; b < 8; b++) lenbuf[b] = (uint8_t)((uint64_t)hlen >> (8 * b));
    parts[0] = (vkt_file_part){lenbuf, 8};
    parts[1] = (vkt_file_part){header, hlen};
    size_t np = 2;
    for (size_t k = 0; k < n; k++) {
        const vkt_st_tensor *t = &tensors[order[k]];
        uint64_t bytes = 0;
        tensor_bytes(t, &bytes);
        if (bytes) parts[np++] = (vkt_file_part){t->data, (size_t)bytes};
    }
    if (info) { /* hashed from the same pointers the write reads */
        XXH64_state_t *hs = XXH64_createState();
        if (!hs) {
            st = VKT_ERROR(VKT_ERR_NOMEM, "%s: no memory for a hash state", path);
            goto done;
        }
        XXH64_reset(hs, 0);
        info->bytes = 0;
        for (size_t i = 0; i < np; i++) {
            XXH64_update(hs, parts[i].data, parts[i].size);
            info->bytes += parts[i].size;
        }
        info->xxh64 = XXH64_digest(hs);
        XXH64_freeState(hs);
    }
    st = vkt__file_write_atomic(path, parts, np);
done:
    vkt_free(header);
    vkt_free(parts);
    vkt_free(order);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */

struct vkt_st_file {
    void *map;
    size_t map_size;
    json_t *root; /* owns the tensor names and metadata strings */
    vkt_st_tensor *tensors;
    size_t ntensors;
    vkt_st_meta *meta;
    size_t nmeta;
};

#define CORRUPT(...) VKT_ERROR(VKT_ERR_CORRUPT, __VA_ARGS__)

static bool get_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static vkt_status parse_metadata(const char *path, vkt_st_file *f, json_t *m)
{
    if (!json_is_object(m)) return CORRUPT("%s: __metadata__ is not an object of strings", path);
    f->meta = vkt_malloc((json_object_size(m) + 1) * sizeof *f->meta);
    if (!f->meta) return VKT_ERROR(VKT_ERR_NOMEM, "%s: no memory for metadata", path);
    const char *key;
    json_t *v;
    json_object_foreach(m, key, v) {
        if (!json_is_string(v))
            return CORRUPT("%s: __metadata__ entry '%s' is not a string (the spec allows "
                           "only string values)", path, key);
        f->meta[f->nmeta++] = (vkt_st_meta){key, json_string_value(v)};
    }
    return VKT_OK;
}

/* One header entry into t; begin/end are its data_offsets. */
static vkt_status parse_entry(const char *path, const char *name, json_t *e, uint64_t data_size,
                              vkt_st_tensor *t, uint64_t *begin, uint64_t *end)
{
    if (!json_is_object(e))
        return CORRUPT("%s: tensor '%s': entry is not an object", path, name);
    t->name = name;
    json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
           *off = json_object_get(e, "data_offsets");
    if (!json_is_string(dt) || !vkt__st_dtype_parse(json_string_value(dt), &t->dtype))
        return CORRUPT("%s: tensor '%s': dtype %s%s%s is not a safetensors dtype", path, name,
                       json_is_string(dt) ? "'" : "",
                       json_is_string(dt) ? json_string_value(dt) : "missing or not a string",
                       json_is_string(dt) ? "'" : "");
    if (!json_is_array(sh))
        return CORRUPT("%s: tensor '%s': shape is missing or not a list", path, name);
    if (json_array_size(sh) > VKT_ST_MAX_DIMS)
        return VKT_ERROR(VKT_ERR_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions; vktrain "
                         "reads at most %d", path, name, json_array_size(sh), VKT_ST_MAX_DIMS);
    t->ndim = (uint32_t)json_array_size(sh);
    for (uint32_t d = 0; d < t->ndim; d++)
        if (!get_u64(json_array_get(sh, d), &t->shape[d]))
            return CORRUPT("%s: tensor '%s': shape entry %u is not a non-negative integer",
                           path, name, d);
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !get_u64(json_array_get(off, 0), begin) || !get_u64(json_array_get(off, 1), end))
        return CORRUPT("%s: tensor '%s': data_offsets is not a pair of non-negative integers",
                       path, name);
    uint64_t bytes;
    if (!tensor_bytes(t, &bytes))
        return CORRUPT("%s: tensor '%s': shape x dtype size overflows 64 bits", path, name);
    if (*end < *begin)
        return CORRUPT("%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path,
                       name, (unsigned long long)*begin, (unsigned long long)*end);
    if (*end > data_size)
        return CORRUPT("%s: tensor '%s': data_offsets [%llu, %llu] run past the %llu-byte data "
                       "section (truncated file?)", path, name, (unsigned long long)*begin,
                       (unsigned long long)*end, (unsigned long long)data_size);
    if (*end - *begin != bytes)
        return CORRUPT("%s: tensor '%s': shape and dtype %s give %llu bytes but data_offsets "
                       "[%llu, %llu] span %llu", path, name, vkt__st_dtype_name(t->dtype),
                       (unsigned long long)bytes, (unsigned long long)*begin,
                       (unsigned long long)*end, (unsigned long long)(*end - *begin));
    t->nbytes = bytes;
    return VKT_OK;
}

typedef struct span {
    uint64_t begin, end;
    size_t index;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* The sorted offsets must tile [0, data_size) exactly (as the reference
 * reader requires: no gap, no overlap, nothing after the last tensor). */
static vkt_status check_tiling(const char *path, const vkt_st_file *f, span *s,
                               uint64_t data_size)
{
    qsort(s, f->ntensors, sizeof *s, span_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < f->ntensors; i++) {
        const char *name = f->tensors[s[i].index].name;
        if (s[i].begin < at)
            return CORRUPT("%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                           "(which ends at %llu)", path, name, (unsigned long long)s[i].begin,
                           (unsigned long long)s[i].end, f->tensors[s[i - 1].index].name,
                           (unsigned long long)at);
        if (s[i].begin > at)
            return CORRUPT("%s: tensor '%s': %llu bytes of the data section before it belong to "
                           "no tensor (data_offsets begin at %llu)", path, name,
                           (unsigned long long)(s[i].begin - at), (unsigned long long)s[i].begin);
        at = s[i].end;
    }
    if (at != data_size)
        return CORRUPT("%s: the data section is %llu bytes but the tensors cover %llu (wrong "
                       "header length, or bytes appended)", path, (unsigned long long)data_size,
                       (unsigned long long)at);
    return VKT_OK;
}

static vkt_status parse_header(const char *path, vkt_st_file *f, const char *h, size_t n,
                               uint64_t data_size, const uint8_t *data)
{
    if (n == 0 || h[0] != '{')
        return CORRUPT("%s: the header does not start with '{' (wrong header length, or not a "
                       "safetensors file)", path);
    json_error_t je;
    f->root = json_loadb(h, n, JSON_REJECT_DUPLICATES, &je);
    if (!f->root) {
        if (json_error_code(&je) == json_error_duplicate_key)
            return CORRUPT("%s: the header names a tensor twice: %s", path, je.text);
        return CORRUPT("%s: the header is not valid JSON: %s (line %d, column %d)", path, je.text,
                       je.line, je.column);
    }
    if (!json_is_object(f->root)) return CORRUPT("%s: the header is not a JSON object", path);
    size_t cap = json_object_size(f->root);
    f->tensors = vkt_calloc(cap + 1, sizeof *f->tensors);
    span *spans = vkt_calloc(cap + 1, sizeof *spans);
    vkt_status st = VKT_OK;
    if (!f->tensors || !spans) {
        st = VKT_ERROR(VKT_ERR_NOMEM, "%s: no memory for %zu header entries", path, cap);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(f->root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            VKT_CHECK_GOTO(st, parse_metadata(path, f, v), done);
            continue;
        }
        size_t i = f->ntensors++;
        VKT_CHECK_GOTO(st, parse_entry(path, key, v, data_size, &f->tensors[i], &spans[i].begin,
                                       &spans[i].end), done);
        spans[i].index = i;
        f->tensors[i].data = data + spans[i].begin;
    }
    st = check_tiling(path, f, spans, data_size);
done:
    vkt_free(spans);
    return st;
}

vkt_status vkt__st_open(const char *path, vkt_st_file **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    VKT_FAIL_IF(fd < 0, VKT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    vkt_status st = VKT_OK;
    vkt_st_file *f = vkt_calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return VKT_ERROR(VKT_ERR_NOMEM, "no memory to open %s", path);
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = VKT_ERROR(VKT_ERR_IO, "%s is not a readable regular file", path);
    } else if (sb.st_size < 8) {
        st = CORRUPT("%s is %lld bytes, shorter than the 8-byte header length of a safetensors "
                     "file (truncated?)", path, (long long)sb.st_size);
    } else {
        f->map_size = (size_t)sb.st_size;
        f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            st = VKT_ERROR(VKT_ERR_IO, "cannot map %s: %s", path, strerror(errno));
        }
    }
    close(fd);
    if (st == VKT_OK) {
        const uint8_t *p = f->map;
        uint64_t n = 0;
        for (int b = 0; b < 8; b++) n |= (uint64_t)p[b] << (8 * b);
        if (n > ST_MAX_HEADER)
            st = CORRUPT("%s: header length %llu is more than the %llu bytes safetensors allows "
                         "(wrong header length, or not a safetensors file)", path,
                         (unsigned long long)n, ST_MAX_HEADER);
        else if (8 + n > f->map_size)
            st = CORRUPT("%s: header length %llu runs past the end of the %zu-byte file "
                         "(truncated, or wrong header length)", path, (unsigned long long)n,
                         f->map_size);
        else
            st = parse_header(path, f, (const char *)p + 8, (size_t)n, f->map_size - 8 - n,
                              p + 8 + n);
    }
    if (st != VKT_OK) {
        vkt__st_close(f);
        return st;
    }
    *out = f;
    return VKT_OK;
}

void vkt__st_close(vkt_st_file *f)
{
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    json_decref(f->root);
    vkt_free(f->tensors);
    vkt_free(f->meta);
    vkt_free(f);
}

size_t vkt__st_count(const vkt_st_file *f) { return f->ntensors; }

const vkt_st_tensor *vkt__st_tensor(const vkt_st_file *f, size_t i)
{
    return i < f->ntensors ? &f->tensors[i] : NULL;
}

const vkt_st_tensor *vkt__st_find(const vkt_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->ntensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *vkt__st_meta(const vkt_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

size_t vkt__st_meta_count(const vkt_st_file *f) { return f->nmeta; }

const vkt_st_meta *vkt__st_meta_at(const vkt_st_file *f, size_t i)
{
    return i < f->nmeta ? &f->meta[i] : NULL;
}
