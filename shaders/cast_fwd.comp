#version 450
#extension GL_GOOGLE_include_directive : require
// cast_fwd: dst[i] = (dst dtype) src[i] through fp32 (exact for every
// widening and for same-dtype copies; narrowing rounds to nearest even).
// Bindings: 0 dst, STORE_T[n], w; 1 src, SRC_T[n], r.
// Push: ew_push (n, off0, off1). Spec: 0 workgroup size, 1 RUN.
// Defines: DTYPE_* (the destination), SRC_F32 / SRC_F16 / SRC_BF16.
#include "common.glsl"
#include "dtype.glsl"
#include "elementwise.glsl"
#include "ew_push.glsl"

#if defined(SRC_F32)
#define SRC_T float
float src_f32(float x) { return x; }
#elif defined(SRC_F16)
#define SRC_T float16_t
float src_f32(float16_t x) { return float(x); }
#elif defined(SRC_BF16)
#define SRC_T uint16_t
float src_f32(uint16_t x) { return uintBitsToFloat(uint(x) << 16); }
#else
#error "define SRC_F32, SRC_F16 or SRC_BF16"
#endif

layout(set = 0, binding = 0) writeonly buffer O { STORE_T o[]; };
layout(set = 0, binding = 1) readonly buffer I { SRC_T x[]; };

void main()
{
    uint end = run_end(pc.n);
    for (uint i = run_begin(); i < end; i++) o[pc.off0 + i] = from_f32(src_f32(x[pc.off1 + i]));
}
