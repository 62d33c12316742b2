/* libFuzzer target: the checkpoint index reader (vkt__ckpt_index_read of
 * DIR/index.json). An index that reads must be consistent, and its
 * formatted text (what the writer would save) must read back the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "formats/ckpt_index.h"
#include "formats/ckpt_int.h"
#include "fuzz_util.h"

static void check_same(const vkt_ckpt_index *a, const vkt_ckpt_index *b)
{
    FUZZ_CHECK(a->step == b->step && a->samples_seen == b->samples_seen);
    FUZZ_CHECK(a->world_size == b->world_size && a->zero_stage == b->zero_stage);
    FUZZ_CHECK(a->dtype == b->dtype && a->nstates == b->nstates && a->nparams == b->nparams);
    FUZZ_CHECK(a->flat_length == b->flat_length && a->alignment == b->alignment);
    for (size_t i = 0; i < a->nparams; i++)
        FUZZ_CHECK(!strcmp(a->params[i].name, b->params[i].name) &&
                   a->params[i].offset == b->params[i].offset &&
                   a->params[i].numel == b->params[i].numel);
    for (uint32_t r = 0; r < a->world_size; r++) {
        FUZZ_CHECK(a->ranks[r].nranges == b->ranks[r].nranges &&
                   a->ranks[r].nfiles == b->ranks[r].nfiles);
        for (size_t j = 0; j < a->ranks[r].nfiles; j++)
            FUZZ_CHECK(a->ranks[r].files[j].xxh64 == b->ranks[r].files[j].xxh64 &&
                       a->ranks[r].files[j].bytes == b->ranks[r].files[j].bytes);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file("index.json", data, size);
    vkt_ckpt_index *idx = NULL;
    vkt_status st = vkt__ckpt_index_read(fuzz_dir(), &idx);
    if (st != VKT_OK) {
        FUZZ_CHECK_FAILED(st);
        FUZZ_CHECK(idx == NULL);
        return 0;
    }
    FUZZ_CHECK(vkt__ckpt_check_index(idx, VKT_ERR_INTERNAL, "fuzz") == VKT_OK);
    char *text = NULL;
    FUZZ_CHECK(vkt__ckpt_index_format(idx, &text) == VKT_OK);
    fuzz_file("index.json", (const uint8_t *)text, strlen(text));
    free(text); /* jansson's allocation */
    vkt_ckpt_index *again = NULL;
    FUZZ_CHECK(vkt__ckpt_index_read(fuzz_dir(), &again) == VKT_OK);
    check_same(idx, again);
    vkt__ckpt_index_free(again);
    vkt__ckpt_index_free(idx);
    return 0;
}
