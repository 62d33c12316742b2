/* IDX data sets (MNIST, Fashion-MNIST), raw or gzip (see vktrain/data.h).
 *
 * An IDX file is 00 00, an element type (0x08: uint8), the number of
 * dimensions, each dimension as a big-endian uint32, then the elements.
 * Both files are read whole and unpacked in memory (Fashion-MNIST's
 * training images are 47 MB); pixels stay uint8 until fill. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "core/core_int.h"
#include "formats/data_int.h"
#include "formats/file.h"

/* Files larger than this are refused before reading (compressed or not). */
#define IDX_MAX_FILE (16ull << 30)

/* ------------------------------------------------------------------------ */
/* gzip                                                                      */

/* Grow *buf to at least twice its capacity (at least need bytes). */
static vkt_status grow(const char *path, uint8_t **buf, size_t *cap, size_t need)
{
    size_t c = *cap;
    while (c < need) c = c > (SIZE_MAX / 2) ? SIZE_MAX : c * 2;
    VKT_FAIL_IF(c > IDX_MAX_FILE, VKT_ERR_CORRUPT,
                "%s: unpacks to more than %llu bytes, larger than any IDX data set this reader "
                "accepts; check that it is the right file",
                path, (unsigned long long)IDX_MAX_FILE);
    uint8_t *p = vkt_realloc(*buf, c);
    VKT_FAIL_IF(!p, VKT_ERR_NOMEM, "%s: no memory to unpack it (%zu bytes)", path, c);
    *buf = p;
    *cap = c;
    return VKT_OK;
}

/* Inflate one or more concatenated gzip members. The trailer's size field
 * (the unpacked size mod 2^32) sizes the first allocation; the buffer grows
 * when that guess is short. */
static vkt_status gunzip(const char *path, const uint8_t *in, size_t in_size, uint8_t **out,
                         size_t *out_size)
{
    *out = NULL;
    *out_size = 0;
    size_t cap = in_size >= 4 ? (size_t)in[in_size - 4] | (size_t)in[in_size - 3] << 8 |
                                    (size_t)in[in_size - 2] << 16 | (size_t)in[in_size - 1] << 24
                              : 0;
    if (cap < in_size) cap = in_size * 2;
    /* deflate expands at most ~1032:1, so a larger trailer is a lie that
     * must not size an allocation; grow() handles honest misses */
    if (in_size <= IDX_MAX_FILE / 1032 && cap > in_size * 1032) cap = in_size * 1032;
    if (cap > IDX_MAX_FILE) cap = IDX_MAX_FILE;
    cap += 1; /* room to see the stream end without a second allocation */
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    VKT_FAIL_IF(inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK, VKT_ERR_NOMEM,
                "%s: no memory for the gzip decoder", path);
    uint8_t *buf = vkt_malloc(cap);
    vkt_status st = buf ? VKT_OK
                        : VKT_ERROR(VKT_ERR_NOMEM, "%s: no memory to unpack it (%zu bytes)", path,
                                    cap);
    size_t in_pos = 0, out_pos = 0;
    while (st == VKT_OK) {
        /* avail_in/avail_out are 32-bit: feed large buffers in pieces. */
        zs.next_in = (Bytef *)(uintptr_t)(in + in_pos);
        zs.avail_in = (uInt)(in_size - in_pos > UINT_MAX ? UINT_MAX : in_size - in_pos);
        zs.next_out = buf + out_pos;
        zs.avail_out = (uInt)(cap - out_pos > UINT_MAX ? UINT_MAX : cap - out_pos);
        int r = inflate(&zs, Z_NO_FLUSH);
        in_pos = (size_t)(zs.next_in - in);
        out_pos = (size_t)(zs.next_out - buf);
        if (r == Z_STREAM_END) {
            /* gzip allows several members one after another; anything
             * else after the stream is ignored, as gzip(1) does. */
            if (in_size - in_pos >= 2 && in[in_pos] == 0x1f && in[in_pos + 1] == 0x8b) {
                inflateReset(&zs);
                continue;
            }
            break;
        }
        if (r == Z_OK || r == Z_BUF_ERROR) {
            if (out_pos == cap)
                st = grow(path, &buf, &cap, cap + 1);
            else if (in_pos == in_size)
                st = VKT_ERROR(VKT_ERR_CORRUPT,
                               "%s: truncated: the gzip stream ends after %zu compressed bytes "
                               "(%zu unpacked) before its end marker; download it again",
                               path, in_size, out_pos);
        } else if (r == Z_MEM_ERROR) {
            st = VKT_ERROR(VKT_ERR_NOMEM, "%s: out of memory while unpacking", path);
        } else {
            st = VKT_ERROR(VKT_ERR_CORRUPT,
                           "%s: bad gzip stream at compressed byte %zu (zlib: %s); download it "
                           "again",
                           path, in_pos, zs.msg ? zs.msg : "invalid data");
        }
    }
    inflateEnd(&zs);
    if (st != VKT_OK) {
        vkt_free(buf);
        return st;
    }
    *out = buf;
    *out_size = out_pos;
    return VKT_OK;
}

/* Read path whole, unpacking it when it starts with gzip's magic 1f 8b.
 * *gz says which it was (for messages). */
static vkt_status read_maybe_gzip(const char *path, void **data, size_t *size, bool *gz)
{
    void *raw;
    size_t n;
    VKT_CHECK(vkt__file_read(path, IDX_MAX_FILE, &raw, &n));
    const uint8_t *b = raw;
    *gz = n >= 2 && b[0] == 0x1f && b[1] == 0x8b;
    if (!*gz) {
        *data = raw;
        *size = n;
        return VKT_OK;
    }
    uint8_t *out;
    vkt_status st = gunzip(path, raw, n, &out, size);
    vkt_free(raw);
    *data = st == VKT_OK ? out : NULL;
    return st;
}

/* ------------------------------------------------------------------------ */
/* IDX header                                                                */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Check an images (want_dims 3) or labels (1) file and find its elements. */
static vkt_status idx_parse(const char *path, const uint8_t *b, size_t size, bool gz,
                            uint32_t want_dims, uint32_t dims[3], const uint8_t **elems)
{
    const char *what = want_dims == 3 ? "images" : "labels";
    const char *unpacked = gz ? " unpacked" : "";
    VKT_FAIL_IF(size < 4, VKT_ERR_CORRUPT,
                "%s: truncated: %zu%s bytes cannot hold an IDX header; download it again", path,
                size, unpacked);
    VKT_FAIL_IF(b[0] != 0 || b[1] != 0, VKT_ERR_CORRUPT,
                "%s: not an IDX file (it starts %02x %02x %02x %02x, IDX starts 00 00); pass the "
                "%s file of an MNIST-style data set, raw or .gz",
                path, b[0], b[1], b[2], b[3], what);
    VKT_FAIL_IF(b[2] != 0x08, VKT_ERR_CORRUPT,
                "%s: IDX element type 0x%02x is not supported: only uint8 (0x08) images and "
                "labels are",
                path, b[2]);
    uint32_t nd = b[3];
    VKT_FAIL_IF(want_dims == 3 && nd == 1, VKT_ERR_CORRUPT,
                "%s is a labels file (idx1) but was passed as the images file; swap the two "
                "paths",
                path);
    VKT_FAIL_IF(want_dims == 1 && nd == 3, VKT_ERR_CORRUPT,
                "%s is an images file (idx3) but was passed as the labels file; swap the two "
                "paths",
                path);
    VKT_FAIL_IF(nd != want_dims, VKT_ERR_CORRUPT,
                "%s: an IDX file with %u dimensions; %s files have %u (%s)", path, nd, what,
                want_dims, want_dims == 3 ? "count, rows, columns" : "count");
    size_t head = 4 + 4 * (size_t)nd;
    VKT_FAIL_IF(size < head, VKT_ERR_CORRUPT,
                "%s: truncated: %zu%s bytes cannot hold the %zu-byte IDX header; download it "
                "again",
                path, size, unpacked, head);
    uint64_t want = 1;
    for (uint32_t i = 0; i < nd; i++) {
        dims[i] = be32(b + 4 + 4 * i);
        /* checked before multiplying: want ≤ IDX_MAX_FILE, so the product
         * cannot wrap */
        VKT_FAIL_IF(dims[i] && want > IDX_MAX_FILE / dims[i], VKT_ERR_CORRUPT,
                    "%s: the IDX header's sizes are implausibly large (dimension %u is %u); the "
                    "file is damaged, download it again",
                    path, i, dims[i]);
        want *= dims[i];
        VKT_FAIL_IF(want > IDX_MAX_FILE, VKT_ERR_CORRUPT,
                    "%s: the IDX header's sizes are implausibly large (dimension %u is %u); the "
                    "file is damaged, download it again",
                    path, i, dims[i]);
    }
    want += head;
    char said[96];
    if (nd == 3)
        snprintf(said, sizeof said, "%u images of %ux%u", dims[0], dims[1], dims[2]);
    else
        snprintf(said, sizeof said, "%u labels", dims[0]);
    VKT_FAIL_IF(want > size, VKT_ERR_CORRUPT,
                "%s: truncated: the header says %s (%llu bytes) but the file holds %zu%s; "
                "download it again",
                path, said, (unsigned long long)want, size, unpacked);
    VKT_FAIL_IF(want < size, VKT_ERR_CORRUPT,
                "%s: the header says %s (%llu bytes) but the file holds %zu%s, more than that; "
                "it is damaged or not an IDX file, download it again",
                path, said, (unsigned long long)want, size, unpacked);
    VKT_FAIL_IF(dims[0] == 0, VKT_ERR_CORRUPT, "%s: holds no %s; pass a non-empty data set",
                path, what);
    VKT_FAIL_IF(nd == 3 && (uint64_t)dims[1] * dims[2] > UINT32_MAX, VKT_ERR_CORRUPT,
                "%s: images of %ux%u pixels are implausibly large; the file is damaged", path,
                dims[1], dims[2]);
    VKT_FAIL_IF(nd == 3 && (uint64_t)dims[1] * dims[2] == 0, VKT_ERR_CORRUPT,
                "%s: images of %ux%u pixels hold nothing; the file is damaged", path, dims[1],
                dims[2]);
    *elems = b + head;
    return VKT_OK;
}

/* ------------------------------------------------------------------------ */
/* Public                                                                    */

static vkt_status open_both(const char *images_path, const char *labels_path, vkt_dataset *d)
{
    size_t isize, lsize;
    bool igz, lgz;
    uint32_t idims[3], ldims[3];
    VKT_CHECK(read_maybe_gzip(images_path, &d->images_file, &isize, &igz));
    VKT_CHECK(idx_parse(images_path, d->images_file, isize, igz, 3, idims, &d->pixels));
    VKT_CHECK(read_maybe_gzip(labels_path, &d->labels_file, &lsize, &lgz));
    VKT_CHECK(idx_parse(labels_path, d->labels_file, lsize, lgz, 1, ldims, &d->labels));
    VKT_FAIL_IF(idims[0] != ldims[0], VKT_ERR_CORRUPT,
                "%s holds %u images but %s holds %u labels; pass the labels that belong to "
                "these images (train-* with train-*, t10k-* with t10k-*)",
                images_path, idims[0], labels_path, ldims[0]);
    uint32_t top = 0;
    for (uint32_t i = 0; i < ldims[0]; i++)
        if (d->labels[i] > top) top = d->labels[i];
    d->info = (vkt_dataset_info){.kind = VKT_DATASET_CLASSES,
                                 .samples = idims[0],
                                 .features = idims[1] * idims[2],
                                 .classes = top + 1};
    return VKT_OK;
}

vkt_status vkt_dataset_open_idx(const char *images_path, const char *labels_path,
                                vkt_dataset **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_dataset_open_idx: out is NULL");
    *out = NULL;
    VKT_FAIL_IF(!images_path || !labels_path, VKT_ERR_INVALID_ARG,
                "vkt_dataset_open_idx: pass both the images and the labels path");
    vkt_dataset *d = vkt_calloc(1, sizeof *d);
    VKT_FAIL_IF(!d, VKT_ERR_NOMEM, "vkt_dataset_open_idx: out of host memory");
    d->magic = VKT_DATASET_MAGIC;
    vkt_status st = open_both(images_path, labels_path, d);
    if (st != VKT_OK) {
        vkt_dataset_close(d);
        return st;
    }
    *out = d;
    return VKT_OK;
}

void vkt__data_fill_classes(const vkt_dataset *d, const uint64_t *indices, uint32_t n,
                            float *inputs, int32_t *labels)
{
    const uint32_t f = d->info.features;
    for (uint32_t k = 0; k < n; k++) {
        const uint8_t *px = d->pixels + indices[k] * f;
        float *dst = inputs + (size_t)k * f;
        for (uint32_t j = 0; j < f; j++) dst[j] = (float)px[j] / 255.0f;
        labels[k] = d->labels[indices[k]];
    }
}
