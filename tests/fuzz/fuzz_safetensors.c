/* libFuzzer target: the safetensors reader (vkt__st_open), which maps a
 * file: the input is written to a scratch file first. Input: a mode byte,
 * then either (even mode) the file itself or (odd mode) the JSON header, a
 * 0xff byte and the data section, the header length then being written
 * for it, so mutations of the header keep reaching the JSON checks. A file
 * that opens must describe tensors that lie inside it and tile its data
 * section. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* The odd-mode input as a file: u64 header length, header, data. */
static uint8_t *with_length(const uint8_t *in, size_t n, size_t *size)
{
    const uint8_t *cut = memchr(in, 0xff, n);
    uint64_t hlen = cut ? (uint64_t)(cut - in) : n;
    uint8_t *f = malloc(n + 8);
    FUZZ_CHECK(f);
    for (int b = 0; b < 8; b++) f[b] = (uint8_t)(hlen >> (8 * b));
    memcpy(f + 8, in, hlen);
    size_t rest = cut ? n - hlen - 1 : 0;
    memcpy(f + 8 + hlen, in + hlen + (cut ? 1 : 0), rest);
    *size = 8 + hlen + rest;
    return f;
}

static void fuzz_one(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (!(data[0] & 1)) {
        fuzz_one(data + 1, size - 1);
        return 0;
    }
    size_t n;
    uint8_t *file = with_length(data + 1, size - 1, &n);
    fuzz_one(file, n);
    free(file);
    return 0;
}

static void fuzz_one(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("in.bin", data, size);
    vkt_st_file *f = NULL;
    vkt_status st = vkt__st_open(path, &f);
    if (st != VKT_OK) {
        FUZZ_CHECK_FAILED(st);
        FUZZ_CHECK(f == NULL);
        return;
    }
    FUZZ_CHECK(size >= 8);
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)data[b] << (8 * b);
    FUZZ_CHECK(hlen <= size - 8);
    uint64_t covered = 0;
    for (size_t i = 0; i < vkt__st_count(f); i++) {
        const vkt_st_tensor *t = vkt__st_tensor(f, i);
        FUZZ_CHECK(t && t->name && t->ndim <= VKT_ST_MAX_DIMS);
        FUZZ_CHECK(vkt__st_dtype_size(t->dtype) > 0);
        FUZZ_CHECK(t->nbytes == vkt__st_numel(t) * vkt__st_dtype_size(t->dtype));
        FUZZ_CHECK(vkt__st_find(f, t->name) == t);
        /* every byte of the tensor is inside the data section: touch them
         * (ASan would catch a read past the mapping's end) */
        const uint8_t *p = t->data;
        uint8_t x = 0;
        for (uint64_t b = 0; b < t->nbytes; b++) x ^= p[b];
        (void)x;
        covered += t->nbytes;
    }
    FUZZ_CHECK(covered == size - 8 - hlen);
    for (size_t i = 0; i < vkt__st_meta_count(f); i++) {
        const vkt_st_meta *m = vkt__st_meta_at(f, i);
        FUZZ_CHECK(m && m->key && m->value && vkt__st_meta(f, m->key));
    }
    vkt__st_close(f);
}
