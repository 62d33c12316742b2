/* safetensors files (Hugging Face's tensor container), written and read with
 * every check the reference implementation makes, and a few more.
 *
 * Layout, as the spec says: 8 bytes N (u64, little-endian), N bytes of UTF-8
 * JSON header, then the data section. The header maps each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (byte offsets relative to
 * the data section, end exclusive) and may hold "__metadata__", a map of
 * string to string. The reference reader requires the offsets, sorted, to
 * tile the data section exactly (no gap, no overlap, the last end = its
 * size), end - begin = numel x dtype size, and N <= 100,000,000. Its writer
 * pads the header with spaces to a multiple of 8 and orders data by
 * decreasing dtype size, so every tensor is aligned in a mapped file; ours
 * does the same. No Vulkan; not installed. */
#ifndef VKT_FORMATS_SAFETENSORS_H
#define VKT_FORMATS_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vktrain/status.h"

/* The spec's dtypes, in its order (increasing element size). */
#define VKT_ST_DTYPE_MAP(XX)                                                       \
    XX(BOOL, 1) XX(U8, 1) XX(I8, 1) XX(F8_E5M2, 1) XX(F8_E4M3, 1) XX(I16, 2)       \
    XX(U16, 2) XX(F16, 2) XX(BF16, 2) XX(I32, 4) XX(U32, 4) XX(F32, 4) XX(F64, 8)  \
    XX(I64, 8) XX(U64, 8)

typedef enum vkt_st_dtype {
#define VKT_ST_DTYPE_ENUM_(name, size) VKT_ST_##name,
    VKT_ST_DTYPE_MAP(VKT_ST_DTYPE_ENUM_)
#undef VKT_ST_DTYPE_ENUM_
    VKT_ST_DTYPE_COUNT_
} vkt_st_dtype;

/* Element size in bytes; 0 for an invalid value. */
size_t vkt__st_dtype_size(vkt_st_dtype t);
/* "F32", "BF16", ...; "invalid" for an invalid value. Static storage. */
const char *vkt__st_dtype_name(vkt_st_dtype t);
/* The dtype named s (exact, case-sensitive as in the spec); false if none. */
bool vkt__st_dtype_parse(const char *s, vkt_st_dtype *out);

/* Tensors have at most this many dimensions here (the spec has no limit; a
 * file with more is refused as VKT_ERR_UNSUPPORTED). */
#define VKT_ST_MAX_DIMS 8

/* One tensor. For writing, every field is the caller's (borrowed for the
 * call): data points at numel x dtype size bytes, row-major, little-endian.
 * For reading, the file owns name and data (valid until vkt__st_close). A
 * shape with ndim 0 is a scalar (one element). */
typedef struct vkt_st_tensor {
    const char *name;
    vkt_st_dtype dtype;
    uint32_t ndim;
    uint64_t shape[VKT_ST_MAX_DIMS];
    const void *data;
    uint64_t nbytes; /* reading: end - begin; writing: ignored (computed) */
} vkt_st_tensor;

/* One "__metadata__" entry (both strings borrowed). */
typedef struct vkt_st_meta {
    const char *key;
    const char *value;
} vkt_st_meta;

/* What a write produced: its size and the xxh64 (seed 0) of all its bytes. */
typedef struct vkt_st_written {
    uint64_t bytes;
    uint64_t xxh64;
} vkt_st_written;

/* Write n tensors and nmeta metadata entries to path, atomically (temporary
 * file, fsync, rename, directory fsync: see file.h). Data goes to the file
 * straight from the callers' pointers, never through one big copy. Tensors
 * are stored by decreasing element size, then in the order given (the
 * header keeps that order too). info, if not NULL, receives the size and
 * checksum. Blocks; thread-safe for distinct paths. n = 0 writes a valid
 * empty file. Returns VKT_ERR_INVALID_ARG (NULL/empty/duplicate name, the
 * name "__metadata__", bad dtype, NULL data with bytes, too many dims,
 * NULL metadata strings), VKT_ERR_NOMEM, VKT_ERR_IO (naming path). */
vkt_status vkt__st_write(const char *path, const vkt_st_tensor *tensors, size_t n,
                         const vkt_st_meta *meta, size_t nmeta, vkt_st_written *info);

/* An opened (mapped, fully validated) safetensors file. */
typedef struct vkt_st_file vkt_st_file;

/* Map path read-only and validate it: size >= 8; N <= 100,000,000 and
 * 8 + N <= file size; header starts with '{', is UTF-8 JSON, an object
 * without duplicate keys; "__metadata__" (if present) maps strings to
 * strings; every other entry has a known dtype, a shape of non-negative
 * integers (at most VKT_ST_MAX_DIMS), and data_offsets [begin, end] with
 * begin <= end <= data size, end - begin = numel x dtype size (no
 * overflow); the offsets, sorted, tile the data section with no gap or
 * overlap. Each failure is VKT_ERR_CORRUPT with a message naming the file,
 * the tensor (where there is one) and what is wrong. Also VKT_ERR_IO
 * (missing, unreadable), VKT_ERR_NOMEM, VKT_ERR_UNSUPPORTED (> 8 dims). */
vkt_status vkt__st_open(const char *path, vkt_st_file **out);
/* Unmap and free; accepts NULL. */
void vkt__st_close(vkt_st_file *f);

/* Tensors in header order; i < vkt__st_count. Owned by f. */
size_t vkt__st_count(const vkt_st_file *f);
const vkt_st_tensor *vkt__st_tensor(const vkt_st_file *f, size_t i);
/* The tensor called name, or NULL. */
const vkt_st_tensor *vkt__st_find(const vkt_st_file *f, const char *name);
/* The metadata value for key, or NULL; owned by f. */
const char *vkt__st_meta(const vkt_st_file *f, const char *key);
size_t vkt__st_meta_count(const vkt_st_file *f);
const vkt_st_meta *vkt__st_meta_at(const vkt_st_file *f, size_t i);
/* Product of the shape (1 for ndim 0). No overflow check: opened files and
 * written tensors have been checked. */
uint64_t vkt__st_numel(const vkt_st_tensor *t);

#endif
