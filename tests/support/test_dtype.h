/* Host-side storage of test data in f32, f16 and bf16, rounding as the
 * shaders do (round to nearest even; bf16 NaN stays NaN). */
#ifndef VKT_TEST_DTYPE_H
#define VKT_TEST_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "vktrain/dtype.h"

uint16_t tdt_to_bf16(float f);
float tdt_from_bf16(uint16_t h);
/* Store x as dtype t at element i of raw; returns the stored value. */
float tdt_store(vkt_dtype t, void *raw, size_t i, float x);
/* Element i of raw, of dtype t, as float. */
float tdt_load(vkt_dtype t, const void *raw, size_t i);
/* x rounded to dtype t. */
float tdt_round(vkt_dtype t, float x);

#endif
