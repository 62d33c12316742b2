/* Data sets (vktrain/data.h): the object shared by the IDX reader
 * (data_idx.c) and the token readers plus the public accessors
 * (data_tokens.c). Not installed. */
#ifndef VKT_FORMATS_DATA_INT_H
#define VKT_FORMATS_DATA_INT_H

#include <stdint.h>

#include "vktrain/data.h"

#define VKT_DATASET_MAGIC 0x44415441u /* "DATA" */

struct vkt_dataset {
    uint32_t magic;
    vkt_dataset_info info;
    /* CLASSES: pixels [samples, features] and labels [samples] point into
     * the two (unpacked) files, kept whole. */
    void *images_file, *labels_file;
    const uint8_t *pixels, *labels;
    /* TOKENS: the opened part's tokens [info.tokens], owned. */
    uint16_t *tokens;
};

/* Fill n CLASSES samples (indices already checked < samples). */
void vkt__data_fill_classes(const vkt_dataset *d, const uint64_t *indices, uint32_t n,
                            float *inputs, int32_t *labels);

#endif
