/* Element types (vktrain/dtype.h). */
#include "vktrain/dtype.h"

#include <stdint.h>
#include <string.h>

#include "core/core_int.h"

static const char *const names[] = {"f32", "f16", "bf16", "f64", "i32", "i64"};
static const size_t sizes[] = {4, 2, 2, 8, 4, 8};
_Static_assert(sizeof names / sizeof names[0] == VKT_DTYPE_COUNT_, "one name per dtype");
_Static_assert(sizeof sizes / sizeof sizes[0] == VKT_DTYPE_COUNT_, "one size per dtype");

size_t vkt_dtype_size(vkt_dtype t) { return (unsigned)t < VKT_DTYPE_COUNT_ ? sizes[t] : 0; }

const char *vkt_dtype_name(vkt_dtype t)
{
    return (unsigned)t < VKT_DTYPE_COUNT_ ? names[t] : "invalid";
}

/* Host conversions, rounding as the shaders do: to nearest even; a bf16
 * NaN stays a NaN (the quiet bit is set so truncation cannot make it Inf). */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void vkt__dtype_from_f32(vkt_dtype t, void *dst, const float *src, size_t n)
{
    uint16_t *d = dst;
    switch (t) {
    case VKT_DTYPE_F32: memmove(dst, src, n * 4); return;
    case VKT_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            _Float16 h = (_Float16)src[i]; /* gcc rounds to nearest even */
            memcpy(&d[i], &h, 2);
        }
        return;
    case VKT_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) d[i] = to_bf16(src[i]);
        return;
    default: return; /* callers pass floating 16/32-bit types only */
    }
}

void vkt__dtype_to_f32(vkt_dtype t, float *dst, const void *src, size_t n)
{
    const uint16_t *s = src;
    switch (t) {
    case VKT_DTYPE_F32: memmove(dst, src, n * 4); return;
    case VKT_DTYPE_F16:
        for (size_t i = n; i-- > 0;) { /* backwards: dst may start where src does */
            _Float16 h;
            memcpy(&h, &s[i], 2);
            dst[i] = (float)h;
        }
        return;
    case VKT_DTYPE_BF16:
        for (size_t i = n; i-- > 0;) dst[i] = from_bf16(s[i]);
        return;
    default: return;
    }
}
