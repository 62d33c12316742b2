/* vktrain — element types shared by tensors and collectives. */
#ifndef VKTRAIN_DTYPE_H
#define VKTRAIN_DTYPE_H

#include <stddef.h>

#include "vktrain/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types. bf16 is stored as 16 bits and converted where it is used,
 * since many drivers have no bfloat16 type. Values are pinned. */
typedef enum vkt_dtype {
    VKT_DTYPE_F32 = 0,
    VKT_DTYPE_F16 = 1,
    VKT_DTYPE_BF16 = 2,
    VKT_DTYPE_F64 = 3,
    VKT_DTYPE_I32 = 4,
    VKT_DTYPE_I64 = 5,
    VKT_DTYPE_COUNT_
} vkt_dtype;

/* Size in bytes of one element of t, or 0 for an invalid type. */
VKT_API size_t vkt_dtype_size(vkt_dtype t);
/* "f32", "f16", ...; "invalid" for an unknown value. Static storage. */
VKT_API const char *vkt_dtype_name(vkt_dtype t);

#ifdef __cplusplus
}
#endif
#endif
