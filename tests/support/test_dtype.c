#include "test_dtype.h"

#include <string.h>

uint16_t tdt_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float tdt_from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float tdt_store(vkt_dtype t, void *raw, size_t i, float x)
{
    if (t == VKT_DTYPE_F32) return ((float *)raw)[i] = x;
    if (t == VKT_DTYPE_F16) { /* gcc's _Float16 conversion rounds to nearest even */
        _Float16 h = (_Float16)x;
        memcpy((char *)raw + 2 * i, &h, 2);
        return (float)h;
    }
    uint16_t b = tdt_to_bf16(x);
    memcpy((char *)raw + 2 * i, &b, 2);
    return tdt_from_bf16(b);
}

float tdt_load(vkt_dtype t, const void *raw, size_t i)
{
    if (t == VKT_DTYPE_F32) return ((const float *)raw)[i];
    uint16_t h;
    memcpy(&h, (const char *)raw + 2 * i, 2);
    if (t == VKT_DTYPE_BF16) return tdt_from_bf16(h);
    _Float16 f;
    memcpy(&f, &h, 2);
    return (float)f;
}

float tdt_round(vkt_dtype t, float x)
{
    uint32_t scratch;
    return tdt_store(t, &scratch, 0, x);
}
