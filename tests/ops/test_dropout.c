/* Dropout (src/ops/dropout.c): the C Philox against published known
 * answers; the device mask against the host decision vkt_dropout_keep,
 * element by element, for f32/f16/bf16 and both families, with the global
 * sample index crossing 2^32 inside a call; the keep rate within 5σ of 1-p;
 * the split property (rows [0,N) in one call equal [0,k) and [k,N) in two
 * calls with sample0 = S and S + k: any split of a batch across ranks draws
 * the same numbers); different steps/sites/seeds giving different masks;
 * the backward; p = 0 as a copy; a call spanning several dispatches; one
 * recording replayed after the state buffer was rewritten (new step, first
 * sample, p, and p = 0: off); and argument errors.
 * Forward values are exact: out = round(in · (float)(1/(1-p))) or 0, the
 * same fp32 product on both sides. Backward: din0 + dout·scale, one fp32 add
 * then the dtype's rounding (ew_tol). */
#include <stdio.h>

#include "elementwise_util.h"

#define SEED 0xfeedface12345678ull

static const char *fam_name(int f) { return vkt__kernel_family_str((vkt_kernel_family)f); }

/* Known answers of Philox-4x32-10 from the Random123 distribution (kat_vectors). */
static void test_philox_known_answers(void **state)
{
    (void)state;
    static const uint32_t kat[3][7] = {
        {0, 0, 0, 0, 0, 0, 0},
        {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0},
        {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0},
    };
    static const uint32_t want[3][4] = {
        {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
        {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu},
        {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u},
    };
    for (int k = 0; k < 3; k++) {
        uint32_t c[4] = {kat[k][0], kat[k][1], kat[k][2], kat[k][3]};
        vkt__philox4x32_10(c, kat[k][4], kat[k][5]);
        for (int i = 0; i < 4; i++)
            if (c[i] != want[k][i])
                fail_msg("philox kat %d word %d: %08x, want %08x", k, i, c[i], want[k][i]);
    }
}

#define SITES 4   /* the state holds keys for sites 0..3; the tests use site 3 */
#define ST_OFF 3  /* word offset of the state in its buffer: not 16-byte aligned on purpose */

/* Rewrite a state buffer for (SEED, step, sample0, p). */
static void state_set(vkt_buffer *b, uint64_t step, uint64_t sample0, float p)
{
    uint32_t w[VKT_DROPOUT_STATE_WORDS(SITES)];
    assert_vkt_ok(vkt_dropout_state_fill(w, SITES, SEED, step, sample0, p));
    assert_vkt_ok(vkt_buffer_upload(b, ST_OFF * 4, w, sizeof w));
}

/* A host-visible state buffer (the model writes its own before each run). */
static vkt_buffer *state_new(vkt_device *dev, uint64_t step, uint64_t sample0, float p)
{
    vkt_buffer *b = NULL;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_HOST,
                                    4 * (ST_OFF + VKT_DROPOUT_STATE_WORDS(SITES)), &b));
    state_set(b, step, sample0, p);
    return b;
}

static vkt_dropout_args args(ew_tensor *out, ew_tensor *in, uint32_t n, uint32_t c,
                             vkt_buffer *state)
{
    return (vkt_dropout_args){.out = ew_ref(out), .in = ew_ref(in), .t = in->t, .n = n, .c = c,
                              .state = {state, ST_OFF * 4}, .site = 3};
}

/* Inputs in ±[1, 2): never zero, so a zero output means "dropped". */
static ew_tensor nonzero_input(vkt_device *dev, vkt_dtype t, size_t n, uint32_t seed)
{
    ew_tensor x = ew_new(dev, t, n, seed, 1.0f);
    for (size_t i = 0; i < n; i++) x.h[i] = x.h[i] < 0 ? x.h[i] - 1.0f : x.h[i] + 1.0f;
    ew_upload(&x);
    return x;
}

/* Forward + backward of one call; every element against the host. */
static void mask_case(ew_ctx *c, int fam, vkt_dtype t, uint32_t n, uint32_t ch, float p,
                      uint64_t sample0)
{
    size_t cnt = (size_t)n * ch;
    ew_tensor x = nonzero_input(c->dev, t, cnt, 5 + n), out = ew_new(c->dev, t, cnt, 7, 1.0f);
    ew_tensor din = ew_new(c->dev, t, cnt, 11, 1.0f);
    vkt_buffer *st = state_new(c->dev, 77, sample0, p);
    vkt_dropout_args a = args(&out, &x, n, ch, st);
    vkt_dropout_args b = args(&din, &x, n, ch, st); /* dout := x */
    ew_begin(c);
    assert_vkt_ok(vkt_op_dropout_fwd(c->ops[fam], c->s, &a));
    assert_vkt_ok(vkt_op_dropout_bwd(c->ops[fam], c->s, &b));
    ew_finish(c);
    float *got = calloc(cnt, 4), scale = (float)(1.0 / (1.0 - (double)p));
    double *dref = calloc(cnt, 8);
    ew_download(&out, got);
    size_t kept = 0;
    for (size_t i = 0; i < cnt; i++) {
        int keep = vkt_dropout_keep(SEED, 77, sample0 + i / ch, (uint32_t)(i % ch), 3, p);
        float want = keep ? tdt_round(t, x.h[i] * scale) : 0.0f;
        if (got[i] != want)
            fail_msg("dropout %s %s [%zu] (row %zu col %zu): %g, want %g (keep %d)",
                     vkt_dtype_name(t), fam_name(fam), i, i / ch, i % ch, (double)got[i],
                     (double)want, keep);
        kept += (size_t)keep;
        dref[i] = din.h[i] + (keep ? (double)x.h[i] * scale : 0.0);
    }
    ew_download(&din, got);
    char what[80];
    snprintf(what, sizeof what, "dropout_bwd %s %s", vkt_dtype_name(t), fam_name(fam));
    double e = ew_check(what, got, dref, cnt, ew_tol(t));
    print_message("dropout %-4s %s %ux%u p=%.2f: mask = host decisions, kept %.4f, bwd max diff "
                  "%.2e\n", vkt_dtype_name(t), fam_name(fam), n, ch, (double)p,
                  (double)kept / (double)cnt, e);
    ew_free(&x), ew_free(&out), ew_free(&din);
    vkt_buffer_destroy(st);
    free(got), free(dref);
}

static void test_mask_matches_host(void **state)
{
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 3; t++) {
            /* rows cross sample 2^32 (the carry into the high word) */
            mask_case(*state, f, ew_types[t], 37, 53, 0.3f, (1ull << 32) - 20);
            mask_case(*state, f, ew_types[t], 1, 1, 0.5f, 0);
            mask_case(*state, f, ew_types[t], 3, 1001, 0.0f, 12345); /* p = 0: a copy */
        }
}

/* The keep rate of 1 - p within 5 standard deviations, on the host
 * decisions (the device follows them, see above). */
static void test_keep_rate(void **state)
{
    (void)state;
    static const float ps[] = {0.1f, 0.5f, 0.9f};
    const size_t rows = 512, cols = 1000;
    for (int k = 0; k < 3; k++) {
        size_t kept = 0;
        for (size_t r = 0; r < rows; r++)
            for (uint32_t j = 0; j < cols; j++) kept += (size_t)vkt_dropout_keep(SEED, 5, r, j, 0, ps[k]);
        double m = (double)(rows * cols), rate = kept / m, q = 1.0 - ps[k];
        double sigma = sqrt(q * (1 - q) / m);
        print_message("keep rate p=%.1f: %.5f, want %.5f ± %.5f (5σ)\n", (double)ps[k], rate, q,
                      5 * sigma);
        assert_true(fabs(rate - q) < 5 * sigma);
    }
    /* Different keys decorrelate: two independent masks agree on a fraction
     * q² + p² of elements (0.5 at p = 0.5). */
    const uint64_t keys[3][3] = {{SEED, 6, 0}, {SEED, 5, 1}, {SEED + 1, 5, 0}};
    for (int k = 0; k < 3; k++) {
        size_t same = 0, m = 100000;
        for (size_t i = 0; i < m; i++)
            same += vkt_dropout_keep(SEED, 5, i / 100, (uint32_t)(i % 100), 0, 0.5f) ==
                    vkt_dropout_keep(keys[k][0], keys[k][1], i / 100, (uint32_t)(i % 100),
                                     (uint32_t)keys[k][2], 0.5f);
        assert_true(fabs((double)same / m - 0.5) < 5 * 0.5 / sqrt((double)m));
    }
}

/* Rows [0,N) in one call equal [0,k) and [k,N) as two calls. */
static void test_split_property(void **state)
{
    ew_ctx *c = *state;
    const uint32_t n = 23, ch = 37, k = 9;
    const uint64_t s0 = 1000003;
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < 3; t++) {
            vkt_dtype dt = ew_types[t];
            size_t es = vkt_dtype_size(dt), cnt = (size_t)n * ch;
            ew_tensor x = nonzero_input(c->dev, dt, cnt, 3), one = ew_new(c->dev, dt, cnt, 7, 1.0f);
            ew_tensor two = ew_new(c->dev, dt, cnt, 7, 1.0f);
            /* as two ranks: each its own state with its first sample */
            vkt_buffer *s_all = state_new(c->dev, 77, s0, 0.4f);
            vkt_buffer *s_hi = state_new(c->dev, 77, s0 + k, 0.4f);
            vkt_dropout_args a = args(&one, &x, n, ch, s_all);
            vkt_dropout_args lo = args(&two, &x, k, ch, s_all);
            vkt_dropout_args hi = args(&two, &x, n - k, ch, s_hi);
            hi.out.offset += (uint64_t)k * ch * es;
            hi.in.offset += (uint64_t)k * ch * es;
            ew_begin(c);
            assert_vkt_ok(vkt_op_dropout_fwd(c->ops[f], c->s, &a));
            assert_vkt_ok(vkt_op_dropout_fwd(c->ops[f], c->s, &lo));
            assert_vkt_ok(vkt_op_dropout_fwd(c->ops[f], c->s, &hi));
            ew_finish(c);
            float *g1 = calloc(cnt, 4), *g2 = calloc(cnt, 4);
            ew_download(&one, g1);
            ew_download(&two, g2);
            assert_memory_equal(g1, g2, cnt * 4);
            free(g1), free(g2);
            vkt_buffer_destroy(s_all), vkt_buffer_destroy(s_hi);
            ew_free(&x), ew_free(&one), ew_free(&two);
        }
    print_message("split property: rows [0,%u) == [0,%u) + [%u,%u), all dtypes and families\n",
                  n, k, k, n);
}

/* A call larger than one dispatch (GPU family: 65535 × 256 elements), so
 * later dispatches start mid-row; checked against the host. */
static void test_many_dispatches(void **state)
{
    ew_ctx *c = *state;
    const uint32_t ch = 1009, n = 65535u * 256u / ch + 3;
    size_t cnt = (size_t)n * ch;
    ew_tensor x = ew_new(c->dev, VKT_DTYPE_F16, cnt, 9, 0.0f);
    for (size_t i = 0; i < cnt; i++) x.h[i] = 1.0f;
    ew_upload(&x);
    ew_tensor out = ew_new(c->dev, VKT_DTYPE_F16, cnt, 9, 0.0f);
    vkt_buffer *st = state_new(c->dev, 77, 77, 0.5f);
    vkt_dropout_args a = args(&out, &x, n, ch, st);
    ew_begin(c);
    assert_vkt_ok(vkt_op_dropout_fwd(c->ops[VKT_KERNELS_GPU], c->s, &a));
    ew_finish(c);
    float *got = calloc(cnt, 4);
    ew_download(&out, got);
    for (size_t i = 0; i < cnt; i++)
        if ((got[i] != 0.0f) != vkt_dropout_keep(SEED, 77, 77 + i / ch, (uint32_t)(i % ch), 3,
                                                  0.5f))
            fail_msg("dropout many dispatches [%zu]: %g disagrees with the host", i,
                     (double)got[i]);
    print_message("dropout over %zu elements (2 dispatches): mask = host decisions\n", cnt);
    free(got);
    vkt_buffer_destroy(st);
    ew_free(&x), ew_free(&out);
}

/* The mask of out (forward of a nonzero x) against the host for (step, s0, p). */
static void check_replay(const ew_tensor *x, const ew_tensor *out, uint32_t ch, uint64_t step,
                         uint64_t s0, float p)
{
    float *got = calloc(x->n, 4), scale = (float)(1.0 / (1.0 - (double)p));
    ew_download(out, got);
    for (size_t i = 0; i < x->n; i++) {
        int keep = vkt_dropout_keep(SEED, step, s0 + i / ch, (uint32_t)(i % ch), 3, p);
        float want = keep ? x->h[i] * scale : 0.0f;
        if (got[i] != want)
            fail_msg("replay step %llu sample0 %llu p %.2f [%zu]: %g, want %g",
                     (unsigned long long)step, (unsigned long long)s0, (double)p, i,
                     (double)got[i], (double)want);
    }
    free(got);
}

/* One recording, replayed with the state rewritten in between: the kernel
 * reads step, first sample and p when it runs, not when it was recorded. */
static void test_state_rewritten(void **state)
{
    ew_ctx *c = *state;
    const uint32_t n = 19, ch = 41;
    for (int f = 0; f < 2; f++) {
        ew_tensor x = nonzero_input(c->dev, VKT_DTYPE_F32, (size_t)n * ch, 13);
        ew_tensor out = ew_new(c->dev, VKT_DTYPE_F32, (size_t)n * ch, 7, 1.0f);
        vkt_buffer *st = state_new(c->dev, 77, 100, 0.3f);
        vkt_dropout_args a = args(&out, &x, n, ch, st);
        ew_begin(c);
        assert_vkt_ok(vkt_op_dropout_fwd(c->ops[f], c->s, &a));
        ew_finish(c);
        check_replay(&x, &out, ch, 77, 100, 0.3f);
        state_set(st, 78, 5, 0.6f);
        assert_vkt_ok(vkt_stream_run(c->s));
        check_replay(&x, &out, ch, 78, 5, 0.6f);
        state_set(st, 78, 5, 0.0f); /* dropout off: a copy */
        assert_vkt_ok(vkt_stream_run(c->s));
        check_replay(&x, &out, ch, 78, 5, 0.0f);
        vkt_buffer_destroy(st);
        ew_free(&x), ew_free(&out);
    }
    print_message("one recording replayed under three states: each mask = host decisions\n");
}

static void test_argument_errors(void **state)
{
    ew_ctx *c = *state;
    ew_tensor x = ew_new(c->dev, VKT_DTYPE_F32, 64, 3, 1.0f);
    uint32_t w[VKT_DROPOUT_STATE_WORDS(SITES)];
    assert_int_equal(vkt_dropout_state_fill(w, SITES, SEED, 1, 0, 1.0f), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "[0, 1)"));
    assert_int_equal(vkt_dropout_state_fill(w, SITES, SEED, 1, 0, NAN), VKT_ERR_INVALID_ARG);
    vkt_buffer *st = state_new(c->dev, 1, 0, 0.5f);
    vkt_dropout_args a = args(&x, &x, 8, 8, st);
    ew_begin(c);
    a.site = SITES; /* the state holds no key for it */
    assert_int_equal(vkt_op_dropout_fwd(c->ops[0], c->s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "state"));
    a.site = 3;
    a.state.buf = NULL;
    assert_int_equal(vkt_op_dropout_bwd(c->ops[0], c->s, &a), VKT_ERR_INVALID_ARG);
    a.state.buf = st;
    a.n = 9; /* 72 elements in a 64-element view */
    assert_int_equal(vkt_op_dropout_fwd(c->ops[0], c->s, &a), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "past the end"));
    a.t = VKT_DTYPE_I64;
    assert_int_equal(vkt_op_dropout_fwd(c->ops[0], c->s, &a), VKT_ERR_INVALID_ARG);
    a.t = VKT_DTYPE_F32;
    a.n = 0;
    assert_vkt_ok(vkt_op_dropout_fwd(c->ops[0], c->s, &a)); /* nothing to do */
    ew_finish(c);
    vkt_buffer_destroy(st);
    ew_free(&x);
}

static int setup(void **state)
{
    *state = ew_open();
    return 0;
}

static int teardown(void **state) { return ew_close(*state); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_mask_matches_host),
        cmocka_unit_test(test_keep_rate),
        cmocka_unit_test(test_split_property),
        cmocka_unit_test(test_many_dispatches),
        cmocka_unit_test(test_state_rewritten),
        cmocka_unit_test(test_argument_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
