/* The checkpoint index: checking its consistency, index.json out and in
 * (see ckpt_index.h). The directory operations are in ckpt_dir.c. */
#include "formats/ckpt_index.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"
#include "formats/ckpt_int.h"
#include "formats/file.h"

/* index.json larger than this is refused before it is read. */
#define INDEX_MAX_BYTES (256ull << 20)

/* ------------------------------------------------------------------------ */
/* Consistency, shared by the writer (st = INVALID_ARG) and reader (CORRUPT) */

typedef struct iv {
    uint64_t begin, end;
    uint32_t who; /* parameter index or rank */
} iv;

static int iv_cmp(const void *a, const void *b)
{
    const iv *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end ? 1 : 0; /* empty ranges first */
}

static vkt_status check_params(const vkt_ckpt_index *x, vkt_status code, const char *where,
                               iv *pv)
{
    json_t *seen = json_object();
    vkt_status st = VKT_OK;
    for (size_t i = 0; i < x->nparams && st == VKT_OK; i++) {
        const vkt_ckpt_param *p = &x->params[i];
        uint64_t n = 1;
        bool ovf = false;
        for (uint32_t d = 0; d < p->ndim && d < VKT_ST_MAX_DIMS; d++)
            ovf |= __builtin_mul_overflow(n, p->shape[d], &n);
        if (!p->name || !p->name[0])
            st = VKT_ERROR(code, "%s: parameter %zu has no name", where, i);
        else if (json_object_get(seen, p->name))
            st = VKT_ERROR(code, "%s: parameter '%s' appears twice", where, p->name);
        else if (p->ndim > VKT_ST_MAX_DIMS)
            st = VKT_ERROR(code, "%s: parameter '%s' has %u dimensions (at most %d)", where,
                           p->name, p->ndim, VKT_ST_MAX_DIMS);
        else if (ovf || n != p->numel)
            st = VKT_ERROR(code, "%s: parameter '%s': numel %" PRIu64 " is not the product of "
                           "its shape", where, p->name, p->numel);
        else if (p->offset > x->flat_length || p->numel > x->flat_length - p->offset)
            st = VKT_ERROR(code, "%s: parameter '%s' [%" PRIu64 ", +%" PRIu64 ") lies outside "
                           "the flat buffer of %" PRIu64 " elements", where, p->name, p->offset,
                           p->numel, x->flat_length);
        else if (json_object_set_new(seen, p->name, json_true()))
            st = VKT_ERROR(code, "%s: parameter %zu's name is not valid UTF-8", where, i);
        pv[i] = (iv){p->offset, p->offset + p->numel, (uint32_t)i};
    }
    json_decref(seen);
    VKT_CHECK(st);
    qsort(pv, x->nparams, sizeof *pv, iv_cmp);
    for (size_t i = 1; i < x->nparams; i++)
        VKT_FAIL_IF(pv[i].begin < pv[i - 1].end, code, "%s: parameters '%s' and '%s' overlap in "
                    "the flat buffer", where, x->params[pv[i - 1].who].name,
                    x->params[pv[i].who].name);
    return VKT_OK;
}

static bool file_name_ok(const char *s)
{
    return s[0] && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") &&
           strcmp(s, "index.json") && strlen(s) < sizeof(((vkt_ckpt_filerec *)0)->name);
}

static vkt_status check_files(const vkt_ckpt_index *x, vkt_status code, const char *where)
{
    json_t *seen = json_object();
    vkt_status st = VKT_OK;
    for (uint32_t r = 0; r < x->world_size && st == VKT_OK; r++) {
        const vkt_ckpt_rank *k = &x->ranks[r];
        uint64_t owned = 0;
        size_t shards = 0;
        for (size_t j = 0; j < k->nranges; j++) owned += k->ranges[j].count;
        for (size_t j = 0; j < k->nfiles && st == VKT_OK; j++) {
            const vkt_ckpt_filerec *f = &k->files[j];
            bool shard = !strcmp(f->role, "shard");
            shards += shard;
            if (!file_name_ok(f->name))
                st = VKT_ERROR(code, "%s: rank %u: '%s' is not a plain file name", where, r,
                               f->name);
            else if (!shard && strcmp(f->role, "model"))
                st = VKT_ERROR(code, "%s: rank %u: file '%s' has role '%s' (expected 'shard' or "
                               "'model')", where, r, f->name, f->role);
            else if (json_object_get(seen, f->name))
                st = VKT_ERROR(code, "%s: file '%s' is listed twice", where, f->name);
            json_object_set_new(seen, f->name, json_true());
        }
        if (st == VKT_OK && (shards > 1 || (owned > 0 && shards == 0)))
            st = VKT_ERROR(code, "%s: rank %u owns %" PRIu64 " elements but lists %zu shard "
                           "files (expected exactly one)", where, r, owned, shards);
    }
    json_decref(seen);
    return st;
}

/* Ranges inside the buffer, disjoint across ranks, covering every
 * parameter (pv: the parameters sorted by offset). */
static vkt_status check_ranges(const vkt_ckpt_index *x, vkt_status code, const char *where,
                               const iv *pv, iv *rv, size_t nr)
{
    size_t k = 0;
    for (uint32_t r = 0; r < x->world_size; r++)
        for (size_t j = 0; j < x->ranks[r].nranges; j++) {
            vkt_ckpt_range g = x->ranks[r].ranges[j];
            VKT_FAIL_IF(g.offset > x->flat_length || g.count > x->flat_length - g.offset, code,
                        "%s: rank %u's range [%" PRIu64 ", +%" PRIu64 ") lies outside the flat "
                        "buffer of %" PRIu64 " elements", where, r, g.offset, g.count,
                        x->flat_length);
            rv[k++] = (iv){g.offset, g.offset + g.count, r};
        }
    qsort(rv, nr, sizeof *rv, iv_cmp);
    for (size_t i = 1; i < nr; i++)
        VKT_FAIL_IF(rv[i].begin < rv[i - 1].end, code, "%s: rank %u's range at %" PRIu64
                    " overlaps rank %u's range [%" PRIu64 ", %" PRIu64 ")", where, rv[i].who,
                    rv[i].begin, rv[i - 1].who, rv[i - 1].begin, rv[i - 1].end);
    /* Walk parameters and ranges together: every parameter element must
     * fall in a range (ranges are disjoint and sorted now). */
    size_t j = 0;
    for (size_t i = 0; i < x->nparams; i++) {
        uint64_t at = pv[i].begin;
        while (at < pv[i].end) {
            while (j < nr && rv[j].end <= at) j++;
            VKT_FAIL_IF(j == nr || rv[j].begin > at, code, "%s: element %" PRIu64 " of "
                        "parameter '%s' is owned by no rank", where, at - pv[i].begin,
                        x->params[pv[i].who].name);
            at = rv[j].end < pv[i].end ? rv[j].end : pv[i].end;
        }
    }
    return VKT_OK;
}

static vkt_status check_header(const vkt_ckpt_index *x, vkt_status code, const char *where)
{
    VKT_FAIL_IF(x->world_size < 1 || x->world_size > (1u << 20), code,
                "%s: world size %u is out of range", where, x->world_size);
    VKT_FAIL_IF(x->zero_stage > 3, code, "%s: ZeRO stage %u (expected 0-3)", where, x->zero_stage);
    VKT_FAIL_IF(!vkt_dtype_size(x->dtype), code, "%s: invalid dtype %d", where, (int)x->dtype);
    VKT_FAIL_IF(x->alignment < 1, code, "%s: alignment must be at least 1", where);
    /* Readers allocate flat_length floats: keep that product far from
     * wrapping (2^40 elements = 4 TiB of fp32). */
    VKT_FAIL_IF(x->flat_length > (1ull << 40), code,
                "%s: flat length %llu is beyond any model vktrain trains (at most 2^40)",
                where, (unsigned long long)x->flat_length);
    VKT_FAIL_IF(x->nstates > VKT_CKPT_MAX_STATES, code, "%s: %zu optimizer states (at most %d)",
                where, x->nstates, VKT_CKPT_MAX_STATES);
    VKT_FAIL_IF(x->nparams && !x->params, code, "%s: no parameter table", where);
    VKT_FAIL_IF(!x->ranks, code, "%s: no rank table", where);
    for (size_t i = 0; i < x->nstates; i++) {
        const char *s = x->states[i];
        VKT_FAIL_IF(!s || !s[0] || !strcmp(s, VKT_CKPT_MASTER), code,
                    "%s: optimizer state %zu needs a name other than '%s'", where, i,
                    VKT_CKPT_MASTER);
        for (size_t j = 0; j < i; j++)
            VKT_FAIL_IF(!strcmp(s, x->states[j]), code, "%s: optimizer state '%s' appears twice",
                        where, s);
    }
    return VKT_OK;
}

vkt_status vkt__ckpt_check_index(const vkt_ckpt_index *x, vkt_status code, const char *where)
{
    VKT_CHECK(check_header(x, code, where));
    size_t nr = 0;
    for (uint32_t r = 0; r < x->world_size; r++) nr += x->ranks[r].nranges;
    iv *pv = vkt_malloc((x->nparams + 1) * sizeof *pv), *rv = vkt_malloc((nr + 1) * sizeof *rv);
    vkt_status st = VKT_OK;
    if (!pv || !rv)
        st = VKT_ERROR(VKT_ERR_NOMEM, "%s: no memory to check %zu parameters", where, x->nparams);
    if (st == VKT_OK) st = check_params(x, code, where, pv);
    if (st == VKT_OK) st = check_ranges(x, code, where, pv, rv, nr);
    if (st == VKT_OK) st = check_files(x, code, where);
    vkt_free(pv);
    vkt_free(rv);
    return st;
}

/* ------------------------------------------------------------------------ */
/* index.json out                                                            */

static json_t *params_json(const vkt_ckpt_index *x)
{
    json_t *a = json_array();
    for (size_t i = 0; i < x->nparams; i++) {
        const vkt_ckpt_param *p = &x->params[i];
        json_t *shape = json_array();
        for (uint32_t d = 0; d < p->ndim; d++)
            json_array_append_new(shape, json_integer((json_int_t)p->shape[d]));
        json_array_append_new(a, json_pack("{s:s, s:o, s:I, s:I}", "name", p->name, "shape",
                                           shape, "offset", (json_int_t)p->offset, "numel",
                                           (json_int_t)p->numel));
    }
    return a;
}

static json_t *ranks_json(const vkt_ckpt_index *x)
{
    json_t *a = json_array();
    for (uint32_t r = 0; r < x->world_size; r++) {
        const vkt_ckpt_rank *k = &x->ranks[r];
        json_t *ranges = json_array(), *files = json_array();
        for (size_t j = 0; j < k->nranges; j++)
            json_array_append_new(ranges, json_pack("[I,I]", (json_int_t)k->ranges[j].offset,
                                                    (json_int_t)k->ranges[j].count));
        for (size_t j = 0; j < k->nfiles; j++) {
            char hex[17];
            snprintf(hex, sizeof hex, "%016" PRIx64, k->files[j].xxh64);
            json_array_append_new(files, json_pack("{s:s, s:s, s:I, s:s}", "name",
                                                   k->files[j].name, "role", k->files[j].role,
                                                   "bytes", (json_int_t)k->files[j].bytes,
                                                   "xxh64", hex));
        }
        json_array_append_new(a, json_pack("{s:I, s:o, s:o}", "rank", (json_int_t)r, "ranges",
                                           ranges, "files", files));
    }
    return a;
}

static const char *const blob_keys[5] = {"loss_scaler", "scheduler", "rng", "data_position",
                                         "config"};

static const char *const *blob_fields(const vkt_ckpt_index *x, const char *out[5])
{
    out[0] = x->loss_scaler;
    out[1] = x->scheduler;
    out[2] = x->rng;
    out[3] = x->data_position;
    out[4] = x->config;
    return out;
}

vkt_status vkt__ckpt_index_format(const vkt_ckpt_index *x, char **text)
{
    *text = NULL;
    json_t *states = json_array();
    for (size_t i = 0; i < x->nstates; i++)
        json_array_append_new(states, json_string(x->states[i]));
    json_t *root = json_pack(
        "{s:s, s:i, s:I, s:I, s:i, s:i, s:s, s:o, s:{s:I, s:I}, s:o, s:o}", "format",
        VKT_CKPT_FORMAT, "version", VKT_CKPT_VERSION, "step", (json_int_t)x->step,
        "samples_seen", (json_int_t)x->samples_seen, "world_size", (int)x->world_size,
        "zero_stage", (int)x->zero_stage, "dtype", vkt_dtype_name(x->dtype), "optimizer_states",
        states, "flat", "length", (json_int_t)x->flat_length, "alignment",
        (json_int_t)x->alignment, "params", params_json(x), "ranks", ranks_json(x));
    if (!root) return VKT_ERROR(VKT_ERR_NOMEM, "cannot build the checkpoint index");
    const char *blobs[5];
    blob_fields(x, blobs);
    for (int i = 0; i < 5; i++) {
        json_error_t je;
        json_t *v = blobs[i] ? json_loads(blobs[i], JSON_DECODE_ANY, &je) : json_null();
        if (!v) {
            json_decref(root);
            return VKT_ERROR(VKT_ERR_INVALID_ARG, "checkpoint index: the %s state is not valid "
                             "JSON: %s", blob_keys[i], je.text);
        }
        json_object_set_new(root, blob_keys[i], v);
    }
    *text = json_dumps(root, JSON_INDENT(1));
    json_decref(root);
    return *text ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "cannot format the checkpoint index");
}

/* ------------------------------------------------------------------------ */
/* index.json in                                                             */

typedef struct owned_index {
    vkt_ckpt_index pub; /* first: the public pointer is this struct's */
    json_t *root;       /* owns the names */
    vkt_ckpt_param *params;
    vkt_ckpt_rank *ranks;
    vkt_ckpt_range *ranges;
    vkt_ckpt_filerec *files;
    char *blobs[5];
} owned_index;

#define BAD(...) VKT_ERROR(VKT_ERR_CORRUPT, __VA_ARGS__)

static bool u64_of(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static vkt_status get_u64(const char *where, json_t *o, const char *key, uint64_t *out)
{
    VKT_FAIL_IF(!u64_of(json_object_get(o, key), out), VKT_ERR_CORRUPT,
                "%s: '%s' is missing or not a non-negative integer", where, key);
    return VKT_OK;
}

static vkt_status parse_params(const char *where, json_t *a, owned_index *o)
{
    VKT_FAIL_IF(!json_is_array(a), VKT_ERR_CORRUPT, "%s: 'params' is not a list", where);
    size_t n = json_array_size(a);
    o->params = vkt_calloc(n + 1, sizeof *o->params);
    VKT_FAIL_IF(!o->params, VKT_ERR_NOMEM, "%s: no memory for %zu parameters", where, n);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i), *shape = json_object_get(e, "shape");
        vkt_ckpt_param *p = &o->params[i];
        p->name = json_string_value(json_object_get(e, "name"));
        VKT_FAIL_IF(!p->name, VKT_ERR_CORRUPT, "%s: parameter %zu has no name", where, i);
        VKT_FAIL_IF(!json_is_array(shape) || json_array_size(shape) > VKT_ST_MAX_DIMS,
                    VKT_ERR_CORRUPT, "%s: parameter '%s': bad shape", where, p->name);
        p->ndim = (uint32_t)json_array_size(shape);
        for (uint32_t d = 0; d < p->ndim; d++)
            VKT_FAIL_IF(!u64_of(json_array_get(shape, d), &p->shape[d]), VKT_ERR_CORRUPT,
                        "%s: parameter '%s': bad shape", where, p->name);
        VKT_CHECK(get_u64(where, e, "offset", &p->offset));
        VKT_CHECK(get_u64(where, e, "numel", &p->numel));
    }
    o->pub.params = o->params;
    o->pub.nparams = n;
    return VKT_OK;
}

static vkt_status parse_file(const char *where, uint32_t r, json_t *e, vkt_ckpt_filerec *f)
{
    const char *name = json_string_value(json_object_get(e, "name"));
    const char *role = json_string_value(json_object_get(e, "role"));
    const char *hex = json_string_value(json_object_get(e, "xxh64"));
    VKT_FAIL_IF(!name || !role || strlen(name) >= sizeof f->name || strlen(role) >= sizeof f->role,
                VKT_ERR_CORRUPT, "%s: rank %u: a file entry lacks a name or role", where, r);
    strcpy(f->name, name);
    strcpy(f->role, role);
    VKT_CHECK(get_u64(where, e, "bytes", &f->bytes));
    /* strspn first: strtoull alone would also take a sign, spaces or "0x" */
    VKT_FAIL_IF(!hex || strlen(hex) != 16 || strspn(hex, "0123456789abcdefABCDEF") != 16,
                VKT_ERR_CORRUPT, "%s: rank %u: file '%s': xxh64 is not 16 hex digits", where,
                r, name);
    f->xxh64 = strtoull(hex, NULL, 16);
    return VKT_OK;
}

static vkt_status parse_ranks(const char *where, json_t *a, owned_index *o)
{
    VKT_FAIL_IF(!json_is_array(a) || json_array_size(a) != o->pub.world_size, VKT_ERR_CORRUPT,
                "%s: 'ranks' is not a list of world_size (%u) entries", where, o->pub.world_size);
    size_t nr = 0, nf = 0;
    for (size_t r = 0; r < json_array_size(a); r++) {
        nr += json_array_size(json_object_get(json_array_get(a, r), "ranges"));
        nf += json_array_size(json_object_get(json_array_get(a, r), "files"));
    }
    o->ranks = vkt_calloc(o->pub.world_size, sizeof *o->ranks);
    o->ranges = vkt_calloc(nr + 1, sizeof *o->ranges);
    o->files = vkt_calloc(nf + 1, sizeof *o->files);
    VKT_FAIL_IF(!o->ranks || !o->ranges || !o->files, VKT_ERR_NOMEM, "%s: no memory", where);
    vkt_ckpt_range *rg = o->ranges;
    vkt_ckpt_filerec *fl = o->files;
    for (uint32_t r = 0; r < o->pub.world_size; r++) {
        json_t *e = json_array_get(a, r), *ranges = json_object_get(e, "ranges"),
               *files = json_object_get(e, "files");
        VKT_FAIL_IF(!json_is_array(ranges) || !json_is_array(files), VKT_ERR_CORRUPT,
                    "%s: rank %u lacks its 'ranges' or 'files' list", where, r);
        o->ranks[r] = (vkt_ckpt_rank){rg, json_array_size(ranges), fl, json_array_size(files)};
        for (size_t j = 0; j < json_array_size(ranges); j++, rg++) {
            json_t *g = json_array_get(ranges, j);
            VKT_FAIL_IF(json_array_size(g) != 2 || !u64_of(json_array_get(g, 0), &rg->offset) ||
                        !u64_of(json_array_get(g, 1), &rg->count), VKT_ERR_CORRUPT,
                        "%s: rank %u: range %zu is not [offset, count]", where, r, j);
        }
        for (size_t j = 0; j < json_array_size(files); j++, fl++)
            VKT_CHECK(parse_file(where, r, json_array_get(files, j), fl));
    }
    o->pub.ranks = o->ranks;
    return VKT_OK;
}

static vkt_status parse_top(const char *where, json_t *root, owned_index *o)
{
    vkt_ckpt_index *x = &o->pub;
    const char *fmt = json_string_value(json_object_get(root, "format"));
    VKT_FAIL_IF(!fmt || strcmp(fmt, VKT_CKPT_FORMAT), VKT_ERR_CORRUPT,
                "%s: not a vktrain checkpoint index ('format' is not \"%s\")", where,
                VKT_CKPT_FORMAT);
    uint64_t v, world, stage;
    VKT_CHECK(get_u64(where, root, "version", &v));
    VKT_FAIL_IF(v > VKT_CKPT_VERSION, VKT_ERR_UNSUPPORTED, "%s: format version %" PRIu64 " is "
                "newer than this vktrain reads (%d); use a newer vktrain", where, v,
                VKT_CKPT_VERSION);
    x->version = (uint32_t)v;
    VKT_CHECK(get_u64(where, root, "step", &x->step));
    VKT_CHECK(get_u64(where, root, "samples_seen", &x->samples_seen));
    VKT_CHECK(get_u64(where, root, "world_size", &world));
    VKT_CHECK(get_u64(where, root, "zero_stage", &stage));
    VKT_FAIL_IF(world < 1 || world > (1u << 20) || stage > 3, VKT_ERR_CORRUPT,
                "%s: world size %" PRIu64 " / ZeRO stage %" PRIu64 " out of range", where, world,
                stage);
    x->world_size = (uint32_t)world;
    x->zero_stage = (uint32_t)stage;
    const char *dt = json_string_value(json_object_get(root, "dtype"));
    x->dtype = VKT_DTYPE_COUNT_;
    for (int d = 0; dt && d < VKT_DTYPE_COUNT_; d++)
        if (!strcmp(dt, vkt_dtype_name((vkt_dtype)d))) x->dtype = (vkt_dtype)d;
    VKT_FAIL_IF(x->dtype == VKT_DTYPE_COUNT_, VKT_ERR_CORRUPT, "%s: unknown dtype '%s'", where,
                dt ? dt : "(missing)");
    json_t *states = json_object_get(root, "optimizer_states");
    json_t *flat = json_object_get(root, "flat");
    VKT_FAIL_IF(!json_is_array(states) || json_array_size(states) > VKT_CKPT_MAX_STATES,
                VKT_ERR_CORRUPT, "%s: 'optimizer_states' is not a list of at most %d names",
                where, VKT_CKPT_MAX_STATES);
    x->nstates = json_array_size(states);
    for (size_t i = 0; i < x->nstates; i++)
        x->states[i] = json_string_value(json_array_get(states, i));
    VKT_CHECK(get_u64(where, flat, "length", &x->flat_length));
    VKT_CHECK(get_u64(where, flat, "alignment", &x->alignment));
    return VKT_OK;
}

static vkt_status parse_index(const char *where, json_t *root, owned_index *o)
{
    VKT_FAIL_IF(!json_is_object(root), VKT_ERR_CORRUPT, "%s is not a JSON object", where);
    VKT_CHECK(parse_top(where, root, o));
    VKT_CHECK(parse_params(where, json_object_get(root, "params"), o));
    VKT_CHECK(parse_ranks(where, json_object_get(root, "ranks"), o));
    for (int i = 0; i < 5; i++) {
        json_t *v = json_object_get(root, blob_keys[i]);
        o->blobs[i] = v && !json_is_null(v) ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        VKT_FAIL_IF(v && !json_is_null(v) && !o->blobs[i], VKT_ERR_NOMEM, "%s: no memory", where);
    }
    o->pub.loss_scaler = o->blobs[0];
    o->pub.scheduler = o->blobs[1];
    o->pub.rng = o->blobs[2];
    o->pub.data_position = o->blobs[3];
    o->pub.config = o->blobs[4];
    return vkt__ckpt_check_index(&o->pub, VKT_ERR_CORRUPT, where);
}

vkt_status vkt__ckpt_index_read(const char *step_dir, vkt_ckpt_index **out)
{
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/index.json", step_dir);
    void *text = NULL;
    size_t n = 0;
    VKT_CHECK(vkt__file_read(path, INDEX_MAX_BYTES, &text, &n));
    owned_index *o = vkt_calloc(1, sizeof *o);
    vkt_status st = VKT_OK;
    json_error_t je;
    if (!o) {
        st = VKT_ERROR(VKT_ERR_NOMEM, "no memory to read %s", path);
    } else if (!(o->root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je))) {
        st = BAD("%s is not valid JSON: %s (line %d, column %d)", path, je.text, je.line,
                 je.column);
    } else {
        st = parse_index(path, o->root, o);
    }
    vkt_free(text);
    if (st != VKT_OK) {
        vkt__ckpt_index_free(o ? &o->pub : NULL);
        return st;
    }
    *out = &o->pub;
    return VKT_OK;
}

void vkt__ckpt_index_free(vkt_ckpt_index *idx)
{
    if (!idx) return;
    owned_index *o = (owned_index *)idx;
    json_decref(o->root);
    vkt_free(o->params);
    vkt_free(o->ranks);
    vkt_free(o->ranges);
    vkt_free(o->files);
    for (int i = 0; i < 5; i++) free(o->blobs[i]);
    vkt_free(o);
}
