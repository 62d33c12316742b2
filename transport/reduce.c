/* Element-wise reductions for the ring algorithms: dst[i] = a[i] op b[i].
 *
 * The loops are plain, branch-free C that gcc vectorizes (reduce.c is built
 * with -O3; check with -fopt-info-vec). They use the baseline ISA (SSE2 on
 * x86-64, NEON on aarch64): these loops stream memory, so wider vectors gain
 * little, and ifunc-based multiversioning (target_clones) crashed under
 * ThreadSanitizer. The exception is f16 on x86, where gcc 12 cannot vectorize
 * the conversions without AVX512-FP16: there F16C intrinsics do 8 elements at
 * a time, chosen at run time with __builtin_cpu_supports. f16 and bf16 are
 * widened to f32, combined, and rounded back to nearest even once per call
 * (one ring step). */
#include <string.h>

#include "transport_int.h"

#define VKT_CLONES /* see above: no multiversioning */

#ifdef __FLT16_MANT_DIG__
#define VKT_HAVE_F16 1
typedef _Float16 __attribute__((may_alias)) h16;
#endif

/* ------------------------------------------------------------ conversions -- */

float vkt__bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t vkt__f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

#ifdef VKT_HAVE_F16
float vkt__f16_to_f32(uint16_t h)
{
    h16 v;
    memcpy(&v, &h, sizeof v);
    return (float)v;
}

uint16_t vkt__f32_to_f16(float f)
{
    h16 v = (h16)f;
    uint16_t h;
    memcpy(&h, &v, sizeof h);
    return h;
}
#else
float vkt__f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0x1f) {
        u = s | 0x7f800000u | (m << 13);
    } else if (e == 0) { /* zero or subnormal: value = m * 2^-24 */
        float f = (float)m * 5.9604644775390625e-8f;
        return s ? -f : f;
    } else {
        u = s | ((e + 112u) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t vkt__f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t s = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(s | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(s | 0x7c00u); /* overflow to inf */
    if (a < 0x38800000u) {                                 /* subnormal or zero */
        float v = (s ? -f : f) * 16777216.0f;               /* units of 2^-24 */
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
        return (uint16_t)(s | m);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
    return (uint16_t)(s | (r >> 13));
}
#endif

/* ---------------------------------------------------------------- kernels -- */

#define MAXF(x, y) ((x) > (y) ? (x) : (y))
#define MINF(x, y) ((x) < (y) ? (x) : (y))

/* One kernel per (type, op); the switch picks it once per call, never per
 * element, so each loop body stays vectorizable. */
#define DEF_SUM(NAME, T, SUMEXPR)                                                       \
    VKT_CLONES static void NAME##_sum(T *d, const T *a, const T *b, size_t n)          \
    {                                                                                   \
        for (size_t i = 0; i < n; i++) d[i] = SUMEXPR;                                  \
    }
#define DEF_MAXMIN(NAME, T)                                                             \
    VKT_CLONES static void NAME##_max(T *d, const T *a, const T *b, size_t n)          \
    {                                                                                   \
        for (size_t i = 0; i < n; i++) d[i] = MAXF(a[i], b[i]);                         \
    }                                                                                   \
    VKT_CLONES static void NAME##_min(T *d, const T *a, const T *b, size_t n)          \
    {                                                                                   \
        for (size_t i = 0; i < n; i++) d[i] = MINF(a[i], b[i]);                         \
    }
#define DEF_KERNELS(NAME, T, SUMEXPR) DEF_SUM(NAME, T, SUMEXPR) DEF_MAXMIN(NAME, T)

DEF_KERNELS(f32, float, a[i] + b[i])
DEF_KERNELS(f64, double, a[i] + b[i])
DEF_KERNELS(i32, int32_t, (int32_t)((uint32_t)a[i] + (uint32_t)b[i]))
DEF_KERNELS(i64, int64_t, (int64_t)((uint64_t)a[i] + (uint64_t)b[i]))

#ifdef VKT_HAVE_F16
DEF_KERNELS(f16, h16, (h16)((float)a[i] + (float)b[i]))
#define F16T h16
#else
/* Without a compiler f16 type: widen, combine and narrow per element. */
#define F16T uint16_t
#define F16OP(NAME, EXPR)                                                               \
    static void NAME(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n)       \
    {                                                                                   \
        for (size_t i = 0; i < n; i++) {                                                \
            float x = vkt__f16_to_f32(a[i]), y = vkt__f16_to_f32(b[i]);                 \
            d[i] = vkt__f32_to_f16(EXPR);                                               \
        }                                                                               \
    }
F16OP(f16_sum, x + y)
F16OP(f16_max, MAXF(x, y))
F16OP(f16_min, MINF(x, y))
#endif

/* bf16 uses only integer shifts and adds, which vectorize everywhere. */
static inline float bf_in(uint16_t h) { return vkt__bf16_to_f32(h); }
static inline uint16_t bf_out(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
DEF_SUM(bf16, uint16_t, bf_out(bf_in(a[i]) + bf_in(b[i])))

/* Compare values, not raw bit patterns (those order negatives backwards). */
VKT_CLONES static void bf16_maxv(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) d[i] = bf_out(MAXF(bf_in(a[i]), bf_in(b[i])));
}
VKT_CLONES static void bf16_minv(uint16_t *d, const uint16_t *a, const uint16_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) d[i] = bf_out(MINF(bf_in(a[i]), bf_in(b[i])));
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* gcc 12 cannot vectorize _Float16 conversions without AVX512-FP16, so the
 * x86 f16 path uses F16C intrinsics, 8 elements at a time. */
__attribute__((target("avx2,f16c"))) static void f16_f16c(uint16_t *d, const uint16_t *a,
                                                          const uint16_t *b, size_t n,
                                                          vkt_redop op)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 y = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i)));
        __m256 r = op == VKT_REDOP_MAX   ? _mm256_max_ps(x, y)
                   : op == VKT_REDOP_MIN ? _mm256_min_ps(x, y)
                                         : _mm256_add_ps(x, y);
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(r, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) {
        float x = vkt__f16_to_f32(a[i]), y = vkt__f16_to_f32(b[i]);
        float r = op == VKT_REDOP_MAX ? MAXF(x, y) : op == VKT_REDOP_MIN ? MINF(x, y) : x + y;
        d[i] = vkt__f32_to_f16(r);
    }
}

static int have_f16c(void)
{
    static int cached = -1; /* benign race: every thread computes the same value */
    if (cached < 0) cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
    return cached;
}
#define F16_FAST(d, a, b, n, op)                                                        \
    do {                                                                                \
        if (have_f16c()) {                                                              \
            f16_f16c(d, a, b, n, op);                                                   \
            return;                                                                     \
        }                                                                               \
    } while (0)
#else
#define F16_FAST(d, a, b, n, op) ((void)0)
#endif

#define DISPATCH(NAME, T, MAXFN, MINFN)                                                 \
    switch (op) {                                                                       \
    case VKT_REDOP_SUM:                                                                 \
    case VKT_REDOP_AVG: NAME##_sum((T *)dst, (const T *)a, (const T *)b, n); return;    \
    case VKT_REDOP_MAX: MAXFN((T *)dst, (const T *)a, (const T *)b, n); return;         \
    case VKT_REDOP_MIN: MINFN((T *)dst, (const T *)a, (const T *)b, n); return;         \
    default: return;                                                                    \
    }

void vkt__reduce(void *dst, const void *a, const void *b, size_t n, vkt_dtype t, vkt_redop op)
{
    switch (t) {
    case VKT_DTYPE_F32: DISPATCH(f32, float, f32_max, f32_min)
    case VKT_DTYPE_F64: DISPATCH(f64, double, f64_max, f64_min)
    case VKT_DTYPE_I32: DISPATCH(i32, int32_t, i32_max, i32_min)
    case VKT_DTYPE_I64: DISPATCH(i64, int64_t, i64_max, i64_min)
    case VKT_DTYPE_F16:
        F16_FAST((uint16_t *)dst, (const uint16_t *)a, (const uint16_t *)b, n, op);
        DISPATCH(f16, F16T, f16_max, f16_min)
    case VKT_DTYPE_BF16: DISPATCH(bf16, uint16_t, bf16_maxv, bf16_minv)
    default: return;
    }
}

/* --------------------------------------------------------------- average -- */

void vkt__scale_avg(void *buf, size_t n, vkt_dtype t, int divisor)
{
    if (divisor <= 1) return;
    float fd = (float)divisor;
    switch (t) {
    case VKT_DTYPE_F32:
        for (size_t i = 0; i < n; i++) ((float *)buf)[i] /= (float)divisor;
        return;
    case VKT_DTYPE_F64:
        for (size_t i = 0; i < n; i++) ((double *)buf)[i] /= (double)divisor;
        return;
    case VKT_DTYPE_I32:
        for (size_t i = 0; i < n; i++) ((int32_t *)buf)[i] /= divisor;
        return;
    case VKT_DTYPE_I64:
        for (size_t i = 0; i < n; i++) ((int64_t *)buf)[i] /= divisor;
        return;
    case VKT_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t *p = (uint16_t *)buf + i;
            *p = vkt__f32_to_f16(vkt__f16_to_f32(*p) / fd);
        }
        return;
    case VKT_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t *p = (uint16_t *)buf + i;
            *p = vkt__f32_to_bf16(vkt__bf16_to_f32(*p) / fd);
        }
        return;
    default: return;
    }
}
