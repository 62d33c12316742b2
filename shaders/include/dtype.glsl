// Storage types of tensors. A shader that includes this file defines
// DTYPE_F32, DTYPE_F16 or DTYPE_BF16 (a row of the shader table) and gets:
//   STORE_T           the storage element type of a buffer of that dtype
//   float to_f32(STORE_T)   and   STORE_T from_f32(float)
// fp16 uses the native 16-bit storage type; bf16 is kept as uint16 (many
// drivers have no bfloat16 type) and converted here with round-to-nearest-
// even, which is what PyTorch's .to(torch.bfloat16) does. NaN stays NaN.
#ifndef VKT_DTYPE_GLSL
#define VKT_DTYPE_GLSL

#extension GL_EXT_shader_16bit_storage : enable
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : enable
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : enable

#if defined(DTYPE_F32)
#define STORE_T float
float to_f32(float x) { return x; }
float from_f32(float x) { return x; }
#elif defined(DTYPE_F16)
#define STORE_T float16_t
float to_f32(float16_t x) { return float(x); }
float16_t from_f32(float x) { return float16_t(x); }
#elif defined(DTYPE_BF16)
#define STORE_T uint16_t
float to_f32(uint16_t x) { return uintBitsToFloat(uint(x) << 16); }
uint16_t from_f32(float x)
{
    uint u = floatBitsToUint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);                                       // nearest even
    return uint16_t(u >> 16);
}
#else
#error "define DTYPE_F32, DTYPE_F16 or DTYPE_BF16"
#endif

#endif
