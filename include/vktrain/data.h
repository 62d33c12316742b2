/* vktrain — data sets and the distributed sampler. No Vulkan.
 *
 * Three kinds of file:
 *   - IDX (MNIST, Fashion-MNIST): an images file (idx3, uint8 [n, rows,
 *     cols]) and a labels file (idx1, uint8 [n]), raw or gzip-compressed
 *     (detected from the content, not the name). A sample is rows·cols
 *     floats, pixel / 255, and a label.
 *   - raw text: every byte is a token (vocabulary 256).
 *   - llm.c token files (.bin): a header of 256 little-endian int32 (magic
 *     20240520, version 1, token count) followed by that many uint16 tokens.
 *   Token data is cut into samples of seq_len + 1 tokens starting at multiples
 *   of seq_len (sample i covers tokens [i·seq_len, i·seq_len + seq_len]):
 *   the inputs are its first seq_len tokens, the labels the last seq_len.
 *   A part of the file can be opened ([from, to) as fractions of its
 *   tokens) to split training and validation data.
 *
 * A truncated file, a wrong magic number or header, a label out of range or
 * a file too short for one sample is VKT_ERR_CORRUPT (or VKT_ERR_IO when it
 * cannot be read) with a message naming the file and what is wrong. A part
 * [from, to) outside [0, 1], empty, or too short for one sample (of a file
 * long enough) and seq_len 0 are VKT_ERR_INVALID_ARG.
 *
 * The sampler hands each rank its share of every global micro-batch: with
 * per-rank micro-batch sizes b_0..b_{W-1} (G = Σ b_r), micro-step s of an
 * epoch takes positions [s·G, (s+1)·G) of that epoch's order, rank r the
 * b_r of them starting at Σ_{j<r} b_j. The order is a permutation drawn
 * from (seed, epoch) when shuffling (the same on every rank), else 0..n-1.
 * An epoch has floor(n / G) micro-steps (the remainder is dropped). The
 * position is the count of samples all ranks have consumed, so it can be
 * saved in a checkpoint and restored with vkt_sampler_seek. */
#ifndef VKTRAIN_DATA_H
#define VKTRAIN_DATA_H

#include <stdbool.h>
#include <stdint.h>

#include "vktrain/export.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkt_dataset vkt_dataset;

typedef enum vkt_dataset_kind {
    VKT_DATASET_CLASSES = 1, /* IDX: float inputs and one label per sample */
    VKT_DATASET_TOKENS = 2   /* text or .bin: token sequences */
} vkt_dataset_kind;

typedef struct vkt_dataset_info {
    vkt_dataset_kind kind;
    uint64_t samples;
    uint32_t features; /* CLASSES: floats per sample (rows·cols); TOKENS: 0 */
    uint32_t classes;  /* CLASSES: largest label + 1 */
    uint32_t seq_len;  /* TOKENS: tokens per sample's inputs */
    uint32_t vocab;    /* TOKENS: 256 for text; .bin: largest token + 1 in the
                          whole file (so both parts of a split agree) */
    uint64_t tokens;   /* TOKENS: tokens in the opened part */
} vkt_dataset_info;

VKT_API vkt_status vkt_dataset_open_idx(const char *images_path, const char *labels_path,
                                        vkt_dataset **out);
VKT_API vkt_status vkt_dataset_open_text(const char *path, uint32_t seq_len, double from,
                                         double to, vkt_dataset **out);
VKT_API vkt_status vkt_dataset_open_tokens(const char *path, uint32_t seq_len, double from,
                                           double to, vkt_dataset **out);
/* Accepts NULL. */
VKT_API void vkt_dataset_close(vkt_dataset *d);
VKT_API void vkt_dataset_get_info(const vkt_dataset *d, vkt_dataset_info *out);

/* Fill n samples (indices < samples, else VKT_ERR_INVALID_ARG):
 *   CLASSES: inputs [n, features], labels [n]; tokens unused (may be NULL);
 *   TOKENS: tokens [n, seq_len] and labels [n, seq_len] (the next tokens);
 *           inputs unused (may be NULL). */
VKT_API vkt_status vkt_dataset_fill(const vkt_dataset *d, const uint64_t *indices, uint32_t n,
                                    float *inputs, int32_t *tokens, int32_t *labels);

/* The token stream itself ([0, info.tokens)), e.g. for counting bigrams; NULL
 * for CLASSES. Tokens are uint16 (text bytes widened). */
VKT_API const uint16_t *vkt_dataset_tokens(const vkt_dataset *d);

typedef struct vkt_sampler vkt_sampler;

typedef struct vkt_sampler_opts {
    uint32_t struct_size; /* set by VKT_SAMPLER_OPTS_INIT */
    uint64_t samples;     /* in the data set */
    uint32_t world, rank;
    const uint32_t *rank_batch; /* world entries, each ≥ 1 (borrowed for create) */
    bool shuffle;
    uint64_t seed;
} vkt_sampler_opts;

#define VKT_SAMPLER_OPTS_INIT                                                      \
    {                                                                              \
        sizeof(vkt_sampler_opts), 0, 1, 0, NULL, true, 0                           \
    }

/* VKT_ERR_INVALID_ARG when the data set has fewer samples than one global
 * micro-batch (the message says how many it has and needs). */
VKT_API vkt_status vkt_sampler_create(const vkt_sampler_opts *o, vkt_sampler **out);
VKT_API void vkt_sampler_destroy(vkt_sampler *s);
/* This rank's indices of the next micro-step (rank_batch[rank] of them);
 * *epoch (may be NULL) gets the epoch they belong to (0-based). Moves on to
 * the next epoch (a new order) after the last micro-step of one. */
VKT_API void vkt_sampler_next(vkt_sampler *s, uint64_t *indices, uint64_t *epoch);
VKT_API uint64_t vkt_sampler_steps_per_epoch(const vkt_sampler *s);
/* Samples consumed by all ranks so far; seek restores such a position
 * (it must be a multiple of G: VKT_ERR_INVALID_ARG otherwise). */
VKT_API uint64_t vkt_sampler_position(const vkt_sampler *s);
VKT_API vkt_status vkt_sampler_seek(vkt_sampler *s, uint64_t position);

#ifdef __cplusplus
}
#endif

#endif
