/* libFuzzer target: the llm.c token-file reader (vkt_dataset_open_tokens)
 * and the raw-text reader beside it. Input: seq_len - 1, the part's from
 * and to in 255ths, then the file. A data set that opens is filled for its
 * first and last sample (ASan checks the reads). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "vktrain/data.h"

static void check_open(vkt_status st, vkt_dataset *d, uint32_t seq_len)
{
    if (st != VKT_OK) {
        FUZZ_CHECK_FAILED(st);
        FUZZ_CHECK(d == NULL);
        return;
    }
    vkt_dataset_info info;
    vkt_dataset_get_info(d, &info);
    FUZZ_CHECK(info.kind == VKT_DATASET_TOKENS && info.seq_len == seq_len);
    FUZZ_CHECK(info.samples >= 1 && info.tokens >= info.samples * seq_len + 1);
    const uint16_t *tok = vkt_dataset_tokens(d);
    for (uint64_t i = 0; i < info.tokens; i++) FUZZ_CHECK(tok[i] < info.vocab);
    uint64_t idx[2] = {0, info.samples - 1};
    int32_t *buf = malloc(4 * (size_t)seq_len * sizeof *buf);
    FUZZ_CHECK(buf);
    FUZZ_CHECK(vkt_dataset_fill(d, idx, 2, NULL, buf, buf + 2 * seq_len) == VKT_OK);
    /* labels are the inputs shifted by one */
    for (uint32_t t = 0; t + 1 < seq_len; t++) FUZZ_CHECK(buf[2 * seq_len + t] == buf[t + 1]);
    free(buf);
    vkt_dataset_close(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    uint32_t seq_len = 1 + data[0] % 64;
    double from = data[1] / 255.0, to = data[2] / 255.0;
    const char *path = fuzz_file("in.bin", data + 3, size - 3);
    vkt_dataset *d = NULL;
    check_open(vkt_dataset_open_tokens(path, seq_len, from, to, &d), d, seq_len);
    d = NULL;
    check_open(vkt_dataset_open_text(path, seq_len, from, to, &d), d, seq_len);
    return 0;
}
