/* libFuzzer target: the IDX data-set reader (vkt_dataset_open_idx), raw or
 * gzip. Input: a little-endian u16 n, then n bytes of the images file (cut
 * short if the input is), then the labels file. A data set that opens is
 * filled for its first and last sample (ASan checks the reads). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "vktrain/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (n > size) n = size;
    const char *images = fuzz_file("in.bin", data, n);
    const char *labels = fuzz_file("in2.bin", data + n, size - n);
    vkt_dataset *d = NULL;
    vkt_status st = vkt_dataset_open_idx(images, labels, &d);
    if (st != VKT_OK) {
        FUZZ_CHECK_FAILED(st);
        FUZZ_CHECK(d == NULL);
        return 0;
    }
    vkt_dataset_info info;
    vkt_dataset_get_info(d, &info);
    FUZZ_CHECK(info.kind == VKT_DATASET_CLASSES && info.samples >= 1 && info.features >= 1);
    FUZZ_CHECK(info.classes >= 1 && info.classes <= 256);
    uint64_t idx[2] = {0, info.samples - 1};
    float *inputs = malloc(2 * (size_t)info.features * sizeof *inputs);
    int32_t labs[2];
    FUZZ_CHECK(inputs);
    FUZZ_CHECK(vkt_dataset_fill(d, idx, 2, inputs, NULL, labs) == VKT_OK);
    for (int k = 0; k < 2; k++) FUZZ_CHECK(labs[k] >= 0 && (uint32_t)labs[k] < info.classes);
    for (size_t i = 0; i < 2 * (size_t)info.features; i++)
        FUZZ_CHECK(inputs[i] >= 0.0f && inputs[i] <= 1.0f);
    uint64_t past = info.samples;
    FUZZ_CHECK(vkt_dataset_fill(d, &past, 1, inputs, NULL, labs) == VKT_ERR_INVALID_ARG);
    free(inputs);
    vkt_dataset_close(d);
    return 0;
}
