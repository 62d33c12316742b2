/* Token data sets (raw text, llm.c .bin) and the accessors shared with the
 * IDX reader (see vktrain/data.h). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"
#include "formats/data_int.h"
#include "formats/file.h"

/* llm.c's token files: dev/data/data_common.py writes this header. */
#define BIN_MAGIC 20240520
#define BIN_VERSION 1 /* uint16 tokens (GPT-2); version 2 has uint32 (Llama 3) */
#define BIN_HEADER_BYTES (256 * 4)

#define TOKENS_MAX_FILE (64ull << 30)

static int32_t le32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static vkt_status check_part(const char *fn, const char *path, uint32_t seq_len, double from,
                             double to)
{
    VKT_FAIL_IF(!path, VKT_ERR_INVALID_ARG, "%s: path is NULL", fn);
    VKT_FAIL_IF(seq_len == 0, VKT_ERR_INVALID_ARG, "%s: %s: seq_len must be at least 1", fn,
                path);
    /* Written so that NaN fails too. */
    VKT_FAIL_IF(!(from >= 0 && from <= 1 && to >= 0 && to <= 1), VKT_ERR_INVALID_ARG,
                "%s: %s: the part [%g, %g) must lie within [0, 1] (fractions of the file's "
                "tokens)",
                fn, path, from, to);
    VKT_FAIL_IF(!(from < to), VKT_ERR_INVALID_ARG,
                "%s: %s: the part [%g, %g) is empty: 'from' must be below 'to'", fn, path, from,
                to);
    return VKT_OK;
}

/* Cut the part [from, to) out of the file's `total` tokens (src: bytes, or
 * little-endian uint16 when wide) into a new data set. */
static vkt_status make_tokens(const char *path, const void *src, uint64_t total, bool wide,
                              uint32_t seq_len, double from, double to, uint32_t vocab,
                              vkt_dataset **out)
{
    VKT_FAIL_IF(total < (uint64_t)seq_len + 1, VKT_ERR_CORRUPT,
                "%s: holds %llu tokens, too few for one sample of seq_len + 1 = %llu; use a "
                "longer file or a shorter seq_len",
                path, (unsigned long long)total, (unsigned long long)seq_len + 1);
    uint64_t a = (uint64_t)floor(from * (double)total), b = (uint64_t)floor(to * (double)total);
    if (b > total) b = total;
    uint64_t n = b > a ? b - a : 0;
    VKT_FAIL_IF(n < (uint64_t)seq_len + 1, VKT_ERR_INVALID_ARG,
                "%s: the part [%g, %g) holds %llu of its %llu tokens, too few for one sample of "
                "seq_len + 1 = %llu; widen the part or shorten seq_len",
                path, from, to, (unsigned long long)n, (unsigned long long)total,
                (unsigned long long)seq_len + 1);
    vkt_dataset *d = vkt_calloc(1, sizeof *d);
    VKT_FAIL_IF(!d, VKT_ERR_NOMEM, "%s: out of host memory", path);
    d->magic = VKT_DATASET_MAGIC;
    d->tokens = vkt_malloc((size_t)n * sizeof *d->tokens);
    if (!d->tokens) {
        vkt_free(d);
        return VKT_ERROR(VKT_ERR_NOMEM, "%s: no memory for %llu tokens", path,
                         (unsigned long long)n);
    }
    const uint8_t *s = src;
    for (uint64_t i = 0; i < n; i++)
        d->tokens[i] = wide ? (uint16_t)(s[2 * (a + i)] | s[2 * (a + i) + 1] << 8) : s[a + i];
    d->info = (vkt_dataset_info){.kind = VKT_DATASET_TOKENS,
                                 .samples = (n - 1) / seq_len,
                                 .seq_len = seq_len,
                                 .vocab = vocab,
                                 .tokens = n};
    *out = d;
    return VKT_OK;
}

vkt_status vkt_dataset_open_text(const char *path, uint32_t seq_len, double from, double to,
                                 vkt_dataset **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_dataset_open_text: out is NULL");
    *out = NULL;
    VKT_CHECK(check_part("vkt_dataset_open_text", path, seq_len, from, to));
    void *data;
    size_t size;
    VKT_CHECK(vkt__file_read(path, TOKENS_MAX_FILE, &data, &size));
    vkt_status st = make_tokens(path, data, size, false, seq_len, from, to, 256, out);
    vkt_free(data);
    return st;
}

/* Check an llm.c header against the file's size; *count gets the tokens. */
static vkt_status bin_parse(const char *path, const uint8_t *b, size_t size, uint64_t *count)
{
    VKT_FAIL_IF(size < BIN_HEADER_BYTES, VKT_ERR_CORRUPT,
                "%s: truncated: %zu bytes cannot hold the %d-byte llm.c token-file header; "
                "write it again",
                path, size, BIN_HEADER_BYTES);
    int32_t magic = le32(b), version = le32(b + 4), n = le32(b + 8);
    VKT_FAIL_IF(magic != BIN_MAGIC, VKT_ERR_CORRUPT,
                "%s: not an llm.c token file: its magic number is %d, not %d; pass a .bin "
                "written by llm.c's dev/data scripts (or open text with vkt_dataset_open_text)",
                path, magic, BIN_MAGIC);
    VKT_FAIL_IF(version != BIN_VERSION, VKT_ERR_CORRUPT,
                "%s: llm.c token-file version %d is not supported; only version %d (uint16 "
                "GPT-2 tokens) is%s",
                path, version, BIN_VERSION,
                version == 2 ? " (version 2 holds uint32 Llama 3 tokens)" : "");
    VKT_FAIL_IF(n < 0, VKT_ERR_CORRUPT,
                "%s: the header's token count is negative (%d); the file is damaged, write it "
                "again",
                path, n);
    uint64_t want = BIN_HEADER_BYTES + 2 * (uint64_t)n;
    VKT_FAIL_IF(want > size, VKT_ERR_CORRUPT,
                "%s: truncated: the header says %d tokens (%llu bytes) but the file holds %zu; "
                "write it again",
                path, n, (unsigned long long)want, size);
    VKT_FAIL_IF(want < size, VKT_ERR_CORRUPT,
                "%s: the header says %d tokens (%llu bytes) but the file holds %zu, more than "
                "that; it is damaged, write it again",
                path, n, (unsigned long long)want, size);
    *count = (uint64_t)n;
    return VKT_OK;
}

vkt_status vkt_dataset_open_tokens(const char *path, uint32_t seq_len, double from, double to,
                                   vkt_dataset **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_dataset_open_tokens: out is NULL");
    *out = NULL;
    VKT_CHECK(check_part("vkt_dataset_open_tokens", path, seq_len, from, to));
    void *data;
    size_t size;
    VKT_CHECK(vkt__file_read(path, TOKENS_MAX_FILE, &data, &size));
    uint64_t n = 0;
    vkt_status st = bin_parse(path, data, size, &n);
    if (st == VKT_OK) {
        /* The vocabulary is taken over the whole file, so that the
         * training and validation parts of one file agree on it. */
        const uint8_t *t = (const uint8_t *)data + BIN_HEADER_BYTES;
        uint32_t top = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)t[2 * i] | (uint32_t)t[2 * i + 1] << 8;
            if (v > top) top = v;
        }
        st = make_tokens(path, t, n, true, seq_len, from, to, top + 1, out);
    }
    vkt_free(data);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Accessors (both kinds)                                                    */

void vkt_dataset_close(vkt_dataset *d)
{
    if (!d || d->magic != VKT_DATASET_MAGIC) return;
    d->magic = 0;
    vkt_free(d->images_file);
    vkt_free(d->labels_file);
    vkt_free(d->tokens);
    vkt_free(d);
}

void vkt_dataset_get_info(const vkt_dataset *d, vkt_dataset_info *out)
{
    if (!out) return;
    if (!d || d->magic != VKT_DATASET_MAGIC) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = d->info;
}

const uint16_t *vkt_dataset_tokens(const vkt_dataset *d)
{
    return d && d->magic == VKT_DATASET_MAGIC ? d->tokens : NULL;
}

vkt_status vkt_dataset_fill(const vkt_dataset *d, const uint64_t *indices, uint32_t n,
                            float *inputs, int32_t *tokens, int32_t *labels)
{
    VKT_FAIL_IF(!d || d->magic != VKT_DATASET_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_dataset_fill: not an open data set");
    if (n == 0) return VKT_OK;
    bool classes = d->info.kind == VKT_DATASET_CLASSES;
    VKT_FAIL_IF(!indices || !labels || (classes ? !inputs : !tokens), VKT_ERR_INVALID_ARG,
                "vkt_dataset_fill: indices, labels and %s must not be NULL",
                classes ? "inputs" : "tokens");
    for (uint32_t k = 0; k < n; k++)
        VKT_FAIL_IF(indices[k] >= d->info.samples, VKT_ERR_INVALID_ARG,
                    "vkt_dataset_fill: index %llu (entry %u) is beyond the data set's %llu "
                    "samples",
                    (unsigned long long)indices[k], k, (unsigned long long)d->info.samples);
    if (classes) {
        vkt__data_fill_classes(d, indices, n, inputs, labels);
        return VKT_OK;
    }
    const uint32_t T = d->info.seq_len;
    for (uint32_t k = 0; k < n; k++) {
        const uint16_t *src = d->tokens + indices[k] * T;
        int32_t *tok = tokens + (size_t)k * T, *lab = labels + (size_t)k * T;
        for (uint32_t t = 0; t < T; t++) {
            tok[t] = src[t];
            lab[t] = src[t + 1];
        }
    }
    return VKT_OK;
}
