/* vktrain — named tensors in safetensors files: read weights and data written
 * by PyTorch (or anything else), write weights PyTorch can load.
 *
 * safetensors is Hugging Face's container: an 8-byte little-endian header
 * length, a JSON header {name: {"dtype", "shape", "data_offsets"}}, then raw
 * little-endian data. Files are validated fully on open (offsets, sizes,
 * duplicate names) and written atomically (a temporary file renamed into
 * place), so a reader never sees half a file.
 *
 * With PyTorch: safetensors.torch.save_file(model.state_dict(), path) writes
 * what vkt_model_load_safetensors reads, and
 * model.load_state_dict(safetensors.torch.load_file(path)) reads what
 * vkt_model_save_safetensors writes (parameter names and shapes are the
 * state_dict's: see nn.h).
 *
 * Thread safety: an open file may be read from several threads; distinct
 * paths may be written concurrently. */
#ifndef VKTRAIN_TENSORS_H
#define VKTRAIN_TENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "vktrain/export.h"
#include "vktrain/nn.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An opened, validated safetensors file (mapped read-only). */
typedef struct vkt_tensor_file vkt_tensor_file;

#define VKT_TENSOR_MAX_DIMS 8

/* What a file says about one tensor. name and dtype are owned by the file
 * and valid until vkt_tensor_file_close. */
typedef struct vkt_tensor_info {
    const char *name;
    const char *dtype; /* the file's dtype name: "F32", "F16", "BF16", "I64", ... */
    uint32_t ndim;     /* 0: a scalar */
    uint64_t shape[VKT_TENSOR_MAX_DIMS];
    uint64_t numel;    /* product of the shape (1 for a scalar) */
} vkt_tensor_info;

/* Open and validate path. Blocking. Returns VKT_ERR_IO (missing, unreadable:
 * the message names the path), VKT_ERR_CORRUPT (not a valid safetensors file:
 * the message names the tensor and what is wrong), VKT_ERR_UNSUPPORTED (more
 * than VKT_TENSOR_MAX_DIMS dimensions), VKT_ERR_NOMEM, VKT_ERR_INVALID_ARG
 * (NULL). On failure *out is NULL. */
VKT_API vkt_status vkt_tensor_file_open(const char *path, vkt_tensor_file **out);
/* Unmap and free. Accepts NULL. */
VKT_API void vkt_tensor_file_close(vkt_tensor_file *f);

/* Number of tensors, and tensor i's info in the file's header order. info
 * returns VKT_ERR_INVALID_ARG for i out of range. */
VKT_API uint32_t vkt_tensor_file_count(const vkt_tensor_file *f);
VKT_API vkt_status vkt_tensor_file_info(const vkt_tensor_file *f, uint32_t i,
                                        vkt_tensor_info *out);
/* The info of the tensor called name; VKT_ERR_INVALID_ARG naming it and the
 * file when there is none. */
VKT_API vkt_status vkt_tensor_file_find(const vkt_tensor_file *f, const char *name,
                                        vkt_tensor_info *out);

/* Copy tensor name into out as fp32, converting from F32, F16, BF16 or F64
 * (rounding to nearest). numel must be the tensor's element count (a check
 * that the caller's buffer fits). Returns VKT_ERR_INVALID_ARG (no such
 * tensor; numel differs: the message gives both shapes' counts; a dtype
 * that is not floating point: the message names it). */
VKT_API vkt_status vkt_tensor_file_read_f32(const vkt_tensor_file *f, const char *name,
                                            float *out, uint64_t numel);

/* One fp32 tensor to write. Everything is borrowed for the call. */
typedef struct vkt_tensor_f32 {
    const char *name;
    uint32_t ndim; /* ≤ VKT_TENSOR_MAX_DIMS; 0: a scalar */
    uint64_t shape[VKT_TENSOR_MAX_DIMS];
    const float *data; /* numel floats, row-major */
} vkt_tensor_f32;

/* Write n fp32 tensors to path atomically, as dtype "F32", in the given
 * order. n = 0 writes a valid empty file. Blocking. Returns
 * VKT_ERR_INVALID_ARG (NULL, empty or duplicate name, too many dims),
 * VKT_ERR_IO (naming path), VKT_ERR_NOMEM. */
VKT_API vkt_status vkt_tensors_write_f32(const char *path, const vkt_tensor_f32 *t, size_t n);

/* ---- models ----
 *
 * A model's parameters as one tensor each, named and shaped as in PyTorch's
 * state_dict of the equivalent module ("layers.0.weight" [out, in], ...). */

/* Write params (vkt_model_num_params floats in state_dict order, as
 * vkt_model_get_params or vkt_engine_get_params give them) with m's names
 * and shapes. Under an engine: vkt_engine_get_params on every rank (it is
 * collective), then this on one rank. Blocking. Errors as
 * vkt_tensors_write_f32. */
VKT_API vkt_status vkt_model_write_params(const vkt_model *m, const float *params,
                                          const char *path);
/* Read every parameter of m from path into params (vkt_model_num_params
 * floats, state_dict order). Every parameter must be present with m's shape
 * and a floating dtype; extra tensors in the file are ignored. Returns
 * VKT_ERR_INVALID_ARG naming the missing or mismatched tensor (with both
 * shapes), and the errors of vkt_tensor_file_open. */
VKT_API vkt_status vkt_model_read_params(const vkt_model *m, const char *path, float *params);

/* vkt_model_get_params + vkt_model_write_params, and vkt_model_read_params +
 * vkt_model_set_params. Blocking. Load before handing the model to an engine
 * (which broadcasts rank 0's parameters at create); save a model not sharded
 * by an engine (else use vkt_engine_get_params + vkt_model_write_params).
 * Also VKT_ERR_NOMEM and the device errors of get/set. */
VKT_API vkt_status vkt_model_save_safetensors(vkt_model *m, const char *path);
VKT_API vkt_status vkt_model_load_safetensors(vkt_model *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
