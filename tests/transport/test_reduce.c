/* Unit tests of the reduction kernels and the f16/bf16 conversions against a
 * scalar double-precision reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "transport_int.h"

static double to_d(const void *p, size_t i, vkt_dtype t)
{
    switch (t) {
    case VKT_DTYPE_F32: return ((const float *)p)[i];
    case VKT_DTYPE_F64: return ((const double *)p)[i];
    case VKT_DTYPE_I32: return ((const int32_t *)p)[i];
    case VKT_DTYPE_I64: return (double)((const int64_t *)p)[i];
    case VKT_DTYPE_F16: return vkt__f16_to_f32(((const uint16_t *)p)[i]);
    case VKT_DTYPE_BF16: return vkt__bf16_to_f32(((const uint16_t *)p)[i]);
    default: return 0;
    }
}

static void from_d(void *p, size_t i, vkt_dtype t, double v)
{
    switch (t) {
    case VKT_DTYPE_F32: ((float *)p)[i] = (float)v; break;
    case VKT_DTYPE_F64: ((double *)p)[i] = v; break;
    case VKT_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case VKT_DTYPE_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case VKT_DTYPE_F16: ((uint16_t *)p)[i] = vkt__f32_to_f16((float)v); break;
    case VKT_DTYPE_BF16: ((uint16_t *)p)[i] = vkt__f32_to_bf16((float)v); break;
    default: break;
    }
}

static void test_conversions(void **state)
{
    (void)state;
    /* Exact values survive a round trip; rounding is to nearest even. */
    const float exact[] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604645e-08f};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        assert_true(vkt__f16_to_f32(vkt__f32_to_f16(exact[i])) == exact[i]);
    assert_int_equal(vkt__f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(vkt__f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);  /* tie -> even */
    assert_int_equal(vkt__f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);  /* tie -> even (up) */
    assert_true(isinf(vkt__f16_to_f32(vkt__f32_to_f16(1e6f))));
    assert_int_equal(vkt__f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(vkt__f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);  /* tie -> even */
    assert_int_equal(vkt__f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
    assert_true(vkt__bf16_to_f32(vkt__f32_to_bf16(-3.0f)) == -3.0f);
    assert_true(isnan(vkt__bf16_to_f32(vkt__f32_to_bf16(NAN))));
}

/* Every dtype x op on odd lengths (vector bodies and scalar tails), also with
 * dst aliasing an input, against the double reference. */
static void test_kernels(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 7, 8, 9, 31, 1000, 1027};
    enum { MAXN = 1027 };
    static char a[MAXN * 8], b[MAXN * 8], d[MAXN * 8];
    for (int t = 0; t < VKT_DTYPE_COUNT_; t++) {
        for (int op = 0; op < VKT_REDOP_COUNT_; op++) {
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                size_t n = lens[li];
                for (size_t i = 0; i < n; i++) {
                    from_d(a, i, t, (double)((int)(i * 7 % 23) - 11) * 0.5);
                    from_d(b, i, t, (double)((int)(i * 5 % 19) - 9) * 0.25);
                }
                if (t == VKT_DTYPE_I32 || t == VKT_DTYPE_I64)
                    for (size_t i = 0; i < n; i++) {
                        from_d(a, i, t, (double)((int)(i * 7 % 23) - 11));
                        from_d(b, i, t, (double)((int)(i * 5 % 19) - 9));
                    }
                int alias = li % 2;
                char *dst = alias ? a : d;
                double ref[MAXN];
                for (size_t i = 0; i < n; i++) {
                    double x = to_d(a, i, t), y = to_d(b, i, t);
                    ref[i] = op == VKT_REDOP_MAX   ? fmax(x, y)
                             : op == VKT_REDOP_MIN ? fmin(x, y)
                                                   : x + y;
                }
                vkt__reduce(dst, a, b, n, t, op);
                for (size_t i = 0; i < n; i++) {
                    if (to_d(dst, i, t) != ref[i])
                        fail_msg("%s %s n=%zu i=%zu: got %g expected %g", vkt_dtype_name(t),
                                 vkt_redop_name(op), n, i, to_d(dst, i, t), ref[i]);
                }
            }
        }
    }
}

static void test_avg_and_wrap(void **state)
{
    (void)state;
    int32_t iv[3] = {7, -7, 8};
    vkt__scale_avg(iv, 3, VKT_DTYPE_I32, 2);
    assert_int_equal(iv[0], 3);
    assert_int_equal(iv[1], -3); /* C division truncates towards zero */
    assert_int_equal(iv[2], 4);
    uint16_t h = vkt__f32_to_f16(3.0f);
    vkt__scale_avg(&h, 1, VKT_DTYPE_F16, 2);
    assert_true(vkt__f16_to_f32(h) == 1.5f);
    int32_t big[1] = {INT32_MAX}, one[1] = {1};
    vkt__reduce(big, big, one, 1, VKT_DTYPE_I32, VKT_REDOP_SUM);
    assert_int_equal(big[0], INT32_MIN); /* documented: integer SUM wraps */
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(vkt_dtype_size(VKT_DTYPE_BF16), 2);
    assert_int_equal(vkt_dtype_size(VKT_DTYPE_I64), 8);
    assert_int_equal(vkt_dtype_size((vkt_dtype)99), 0);
    assert_string_equal(vkt_dtype_name(VKT_DTYPE_F16), "f16");
    assert_string_equal(vkt_redop_name(VKT_REDOP_AVG), "avg");
    assert_string_equal(vkt_redop_name((vkt_redop)-1), "invalid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_kernels),
        cmocka_unit_test(test_avg_and_wrap),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
