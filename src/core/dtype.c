/* Element types (vktrain/dtype.h). */
#include "vktrain/dtype.h"

static const char *const names[] = {"f32", "f16", "bf16", "f64", "i32", "i64"};
static const size_t sizes[] = {4, 2, 2, 8, 4, 8};
_Static_assert(sizeof names / sizeof names[0] == VKT_DTYPE_COUNT_, "one name per dtype");
_Static_assert(sizeof sizes / sizeof sizes[0] == VKT_DTYPE_COUNT_, "one size per dtype");

size_t vkt_dtype_size(vkt_dtype t) { return (unsigned)t < VKT_DTYPE_COUNT_ ? sizes[t] : 0; }

const char *vkt_dtype_name(vkt_dtype t)
{
    return (unsigned)t < VKT_DTYPE_COUNT_ ? names[t] : "invalid";
}
