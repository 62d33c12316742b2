/* Checkpoint directories: the index, the per-rank shard files, atomic commit,
 * verification and re-sharding. No Vulkan; the engine hands it flat arrays.
 *
 * Layout of a run directory RUN:
 *   RUN/step-000123/index.json            what is below, with checksums
 *   RUN/step-000123/rank_00002.safetensors  rank 2's flat fp32 shards: 1-D F32
 *                                         tensors "master" and one per
 *                                         optimizer state ("exp_avg", ...),
 *                                         each the concatenation of the
 *                                         rank's ranges; metadata "ranges"
 *                                         = [[offset, count], ...]
 *   RUN/step-000123/model.safetensors     optional: the weights by name, full
 *                                         tensors in the compute dtype
 *   RUN/latest                            "step-000123\n", written last
 * Offsets and counts are in elements of the flat, padded parameter buffer
 * (every bucket or layer group padded to a multiple of world x alignment,
 * each rank owning 1/world of each: see DESIGN.md "Shard layout"). At stage
 * 0 rank 0 owns the whole buffer and the other ranks own nothing.
 *
 * Saving: rank 0 calls vkt__ckpt_begin (an empty RUN/step-N.partial), every
 * rank writes its files into it (vkt__ckpt_write_shard, vkt__ckpt_write_model)
 * and sends rank 0 the file records, rank 0 calls vkt__ckpt_commit: index.json
 * into the partial directory, which is then renamed to RUN/step-N, then
 * RUN/latest. Every file is written atomically, so a crash at any point
 * leaves the previous checkpoint and `latest` as they were.
 *
 * Loading: vkt__ckpt_open (resolve, read the index, verify every file's size
 * and xxh64), vkt__ckpt_check_model, then vkt__ckpt_load_flat per state and
 * vkt__ckpt_relayout into this run's layout, whatever world size and stage
 * wrote the checkpoint. Not installed. */
#ifndef VKT_FORMATS_CKPT_INDEX_H
#define VKT_FORMATS_CKPT_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "formats/safetensors.h"
#include "vktrain/dtype.h"
#include "vktrain/status.h"

#define VKT_CKPT_FORMAT "vktrain-checkpoint"
#define VKT_CKPT_VERSION 1
/* Optimizer states per parameter at most (Adam has 2, momentum SGD 1). */
#define VKT_CKPT_MAX_STATES 4
/* The shard tensor that holds the fp32 master weights. */
#define VKT_CKPT_MASTER "master"

/* One parameter of the model: where it lives in the flat padded buffer. */
typedef struct vkt_ckpt_param {
    const char *name;
    uint32_t ndim;
    uint64_t shape[VKT_ST_MAX_DIMS];
    uint64_t offset; /* first element in the flat buffer */
    uint64_t numel;  /* product of shape */
} vkt_ckpt_param;

/* [offset, offset + count) of the flat buffer, in elements. */
typedef struct vkt_ckpt_range {
    uint64_t offset, count;
} vkt_ckpt_range;

/* A file of the checkpoint, relative to the step directory. */
typedef struct vkt_ckpt_filerec {
    char name[64];
    char role[16]; /* "shard" (flat fp32 state of one rank) or "model" (weights by name) */
    uint64_t bytes;
    uint64_t xxh64; /* of the whole file, seed 0 */
} vkt_ckpt_filerec;

/* What one rank owns and wrote. */
typedef struct vkt_ckpt_rank {
    const vkt_ckpt_range *ranges;
    size_t nranges;
    const vkt_ckpt_filerec *files;
    size_t nfiles;
} vkt_ckpt_rank;

/* The index. For writing, every pointer is the caller's (borrowed for the
 * call). From vkt__ckpt_index_read everything is owned by the index and
 * freed by vkt__ckpt_index_free. The five state fields are JSON texts (any
 * JSON value) that the engine owns the meaning of; NULL writes null. */
typedef struct vkt_ckpt_index {
    uint32_t version; /* VKT_CKPT_VERSION; ignored when writing */
    uint64_t step;
    uint64_t samples_seen;
    uint32_t world_size;
    uint32_t zero_stage; /* 0..3 */
    vkt_dtype dtype;     /* compute dtype of the weights */
    const char *states[VKT_CKPT_MAX_STATES]; /* "exp_avg", "exp_avg_sq" / "momentum_buffer" */
    size_t nstates;
    const vkt_ckpt_param *params;
    size_t nparams;
    uint64_t flat_length; /* elements of the padded flat buffer */
    uint64_t alignment;   /* elements each bucket's per-rank part is a multiple of */
    const vkt_ckpt_rank *ranks; /* world_size entries */
    const char *loss_scaler, *scheduler, *rng, *data_position, *config;
} vkt_ckpt_index;

/* "step-000123" for step 123 into out (cap >= 32). */
void vkt__ckpt_step_name(uint64_t step, char *out, size_t cap);

/* Rank 0, before any rank writes: create run_dir if missing and an empty
 * run_dir/step-N.partial (a stale one from a crashed save is removed
 * first). Returns VKT_ERR_IO naming the directory. */
vkt_status vkt__ckpt_begin(const char *run_dir, uint64_t step);

/* Any rank: write its shard file rank_RRRRR.safetensors into the partial
 * directory. data[k] holds state kinds[k] ("master" or an optimizer state)
 * for the rank's ranges, concatenated: sum of counts fp32 values (read
 * only, borrowed). rec receives the file's record for the index. Returns
 * VKT_ERR_INVALID_ARG (rank >= world, stage, kinds), VKT_ERR_IO, NOMEM. */
vkt_status vkt__ckpt_write_shard(const char *run_dir, uint64_t step, uint32_t rank,
                                 uint32_t world, uint32_t stage, const vkt_ckpt_range *ranges,
                                 size_t nranges, const char *const *kinds,
                                 const float *const *data, size_t nkinds, vkt_ckpt_filerec *rec);

/* Write model.safetensors (full tensors by name, any dtype; metadata
 * "format": "pt" as Hugging Face tools expect) into the partial directory. */
vkt_status vkt__ckpt_write_model(const char *run_dir, uint64_t step, const vkt_st_tensor *tensors,
                                 size_t n, vkt_ckpt_filerec *rec);

/* Rank 0, after every rank's files are written: validate idx (as the reader
 * does), check each listed file is in the partial directory with its size,
 * write index.json, rename the partial directory to run_dir/step-N (an
 * existing one is swapped out atomically and removed), then write
 * run_dir/latest. Returns VKT_ERR_INVALID_ARG (an inconsistent index),
 * VKT_ERR_IO (a file missing or of the wrong size, a failed write). */
vkt_status vkt__ckpt_commit(const char *run_dir, const vkt_ckpt_index *idx);

/* Step directory for path: path itself if it holds index.json, else
 * path/<contents of path/latest>. Returns VKT_ERR_IO when it is neither. */
vkt_status vkt__ckpt_resolve(const char *path, char *step_dir, size_t cap);

/* Read and check step_dir/index.json: format and version, sizes, parameters
 * inside the flat buffer without overlap, ranges inside it without overlap
 * and covering every parameter, one shard file per rank that owns elements,
 * file names without '/'. VKT_ERR_CORRUPT names what is wrong;
 * VKT_ERR_UNSUPPORTED for a newer format version; VKT_ERR_IO, NOMEM. */
vkt_status vkt__ckpt_index_read(const char *step_dir, vkt_ckpt_index **out);
void vkt__ckpt_index_free(vkt_ckpt_index *idx);

/* Check every file of idx: present ("rank 2's shard DIR/x is missing"),
 * of the recorded size (truncated or grown), with the recorded xxh64.
 * Reads every byte. VKT_ERR_CORRUPT or VKT_ERR_IO. */
vkt_status vkt__ckpt_verify(const char *step_dir, const vkt_ckpt_index *idx);

/* resolve + index_read + verify. step_dir receives the step directory. */
vkt_status vkt__ckpt_open(const char *path, char *step_dir, size_t cap, vkt_ckpt_index **out);

/* Does the checkpoint hold this model? Compares names and shapes, in order
 * (offsets may differ: padding depends on the world size). VKT_ERR_INVALID_ARG
 * naming the first differing parameter ("from another model"). */
vkt_status vkt__ckpt_check_model(const vkt_ckpt_index *idx, const char *step_dir,
                                 const vkt_ckpt_param *expect, size_t n);

/* The whole flat buffer (flat_length floats, padding zero) of state kind
 * ("master" or one of idx->states), assembled from every rank's shard file.
 * The files are validated as safetensors and checked against the index
 * (dtype F32, 1-D, length = the rank's elements, metadata ranges). Does not
 * re-hash: call vkt__ckpt_verify (or _open) first. VKT_ERR_CORRUPT, IO,
 * INVALID_ARG (unknown kind). */
vkt_status vkt__ckpt_load_flat(const char *step_dir, const vkt_ckpt_index *idx, const char *kind,
                               float *out);

/* Copy every parameter of src (laid out as idx says) to where dst puts it
 * (by name), zeroing padding: out has dst_length floats. Changes world size
 * and stage: take any rank's ranges of out afterwards. Parameters must
 * match by name and shape (VKT_ERR_INVALID_ARG naming the first that does
 * not). */
vkt_status vkt__ckpt_relayout(const vkt_ckpt_index *idx, const float *src,
                              const vkt_ckpt_param *dst, size_t ndst, uint64_t dst_length,
                              float *out);

#endif
