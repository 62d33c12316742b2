/* Inverted dropout with a counter-based RNG (see elementwise.h).
 *
 * The random word of element (sample s, column j) is word j % 4 of
 *     Philox-4x32-10(ctr = (j / 4, s_lo, s_hi, 0), key)
 * with key = words 0..1 of Philox-4x32-10(ctr = (step_lo, step_hi, site,
 * "drop"), (seed_lo, seed_hi)). Nothing depends on the rank or on how the
 * rows are split into calls, so data-parallel ranks holding different
 * slices of one global batch draw what one big batch would. The per-site
 * keys are derived on the host once per run (vkt_dropout_state_fill) and
 * read by the kernel from the state buffer together with the first sample,
 * thr and scale, so recorded command buffers replay with new values; the
 * per-element Philox is the same function in C (philox below) and GLSL
 * (shaders/include/rng.glsl). An element is kept when its word is
 * >= thr = floor(p · 2^32). */
#include <stdio.h>
#include <string.h>

#include "ops/elementwise.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define KEY_TAG 0x64726f70u /* "drop": keeps these keys apart from other uses */

/* Mirrors the push block of shaders/include/dropout.glsl. */
typedef struct dropout_push {
    uint32_t n, off_out, off_in, off_state, c, col0, row0, site;
} dropout_push;
_Static_assert(sizeof(dropout_push) <= 128, "push constants fit every device");

/* The state words (shaders/include/dropout.glsl reads them the same way). */
enum { ST_SAMPLE_LO, ST_SAMPLE_HI, ST_THR, ST_SCALE, ST_KEYS };

/* Philox-4x32-10 (Salmon et al., SC'11), in place on ctr. */
static void philox(uint32_t ctr[4], uint32_t k0, uint32_t k1)
{
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * ctr[0], p1 = (uint64_t)PHILOX_M1 * ctr[2];
        uint32_t c0 = (uint32_t)(p1 >> 32) ^ ctr[1] ^ k0;
        uint32_t c2 = (uint32_t)(p0 >> 32) ^ ctr[3] ^ k1;
        ctr[0] = c0;
        ctr[1] = (uint32_t)p1;
        ctr[2] = c2;
        ctr[3] = (uint32_t)p0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

void vkt__philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) { philox(ctr, k0, k1); }

static void derive_key(uint64_t seed, uint64_t step, uint32_t site, uint32_t key[2])
{
    uint32_t c[4] = {(uint32_t)step, (uint32_t)(step >> 32), site, KEY_TAG};
    philox(c, (uint32_t)seed, (uint32_t)(seed >> 32));
    key[0] = c[0];
    key[1] = c[1];
}

/* p in [0, 1): floor(p · 2^32) < 2^32. */
static uint32_t threshold(float p) { return (uint32_t)((double)p * 4294967296.0); }

vkt_status vkt_dropout_state_fill(uint32_t *words, uint32_t nsites, uint64_t seed, uint64_t step,
                                  uint64_t sample0, float p)
{
    VKT_FAIL_IF(!words, VKT_ERR_INVALID_ARG, "dropout state: words is NULL");
    VKT_FAIL_IF(!(p >= 0.0f && p < 1.0f), VKT_ERR_INVALID_ARG,
                "dropout: p = %g; the drop probability must be in [0, 1)", (double)p);
    float scale = (float)(1.0 / (1.0 - (double)p));
    words[ST_SAMPLE_LO] = (uint32_t)sample0;
    words[ST_SAMPLE_HI] = (uint32_t)(sample0 >> 32);
    words[ST_THR] = threshold(p);
    memcpy(&words[ST_SCALE], &scale, 4);
    for (uint32_t k = 0; k < nsites; k++) derive_key(seed, step, k, &words[ST_KEYS + 2 * k]);
    return VKT_OK;
}

int vkt_dropout_keep(uint64_t seed, uint64_t step, uint64_t sample, uint32_t index,
                     uint32_t site, float p)
{
    uint32_t key[2];
    derive_key(seed, step, site, key);
    uint32_t c[4] = {index >> 2, (uint32_t)sample, (uint32_t)(sample >> 32), 0};
    philox(c, key[0], key[1]);
    return c[index & 3] >= threshold(p);
}

static vkt_status check_args(const vkt_ops *ops, const vkt_stream *s, const vkt_dropout_args *a,
                             const char *op)
{
    VKT_FAIL_IF(!ops || !s || !a, VKT_ERR_INVALID_ARG, "%s: ops, stream or args is NULL", op);
    vkt_dtype t = a->t;
    VKT_FAIL_IF(t != VKT_DTYPE_F32 && t != VKT_DTYPE_F16 && t != VKT_DTYPE_BF16,
                VKT_ERR_INVALID_ARG, "%s: dtype %s is not a training dtype (f32, f16, bf16)",
                op, vkt_dtype_name(t));
    const vkt_device_caps *c = vkt_device_get_caps(vkt__ops_device(ops));
    VKT_FAIL_IF(t != VKT_DTYPE_F32 && !c->storage_16bit, VKT_ERR_UNSUPPORTED,
                "%s: %s tensors need 16-bit storage buffers, which '%s' lacks; train in f32 "
                "on this device", op, vkt_dtype_name(t), c->name);
    VKT_FAIL_IF(a->site > (UINT32_MAX - ST_KEYS) / 2 - 1, VKT_ERR_INVALID_ARG,
                "%s: site %u is too large", op, a->site);
    VKT_FAIL_IF((uint64_t)a->n * a->c > UINT32_MAX || a->c > INT32_MAX, VKT_ERR_INVALID_ARG,
                "%s: %u rows × %u columns exceed 2^32-1 elements (or a row exceeds 2^31-1); "
                "split the rows", op, a->n, a->c);
    return VKT_OK;
}

/* fwd: out = in · keep / (1 - p);  bwd: out += in · keep / (1 - p). */
static vkt_status dropout(vkt_ops *ops, vkt_stream *s, const vkt_dropout_args *a, bool bwd)
{
    const char *op = bwd ? "dropout_bwd" : "dropout_fwd";
    VKT_CHECK(check_args(ops, s, a, op));
    uint64_t count = (uint64_t)a->n * a->c;
    if (count == 0) return VKT_OK;
    uint32_t es = (uint32_t)vkt_dtype_size(a->t), first[3];
    vkt_binding b[3];
    char what[48], name[32];
    snprintf(what, sizeof what, "%s out", op);
    VKT_CHECK(vkt__ops_bind(ops, a->out, count * es, es, what, &b[0], &first[0]));
    snprintf(what, sizeof what, "%s in", op);
    VKT_CHECK(vkt__ops_bind(ops, a->in, count * es, es, what, &b[1], &first[1]));
    snprintf(what, sizeof what, "%s state (site %u)", op, a->site);
    VKT_CHECK(vkt__ops_bind(ops, a->state, 4ull * VKT_DROPOUT_STATE_WORDS(a->site + 1), 4, what,
                            &b[2], &first[2]));
    vkt_split sp = vkt__ops_split(ops);
    uint32_t spec[2] = {sp.wg, sp.run};
    snprintf(name, sizeof name, "%s_%s", op, vkt_dtype_name(a->t));
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, name, 3, sizeof(dropout_push), spec, 2, &p));
    for (uint64_t done = 0; done < count; done += sp.per_dispatch) {
        uint64_t cnt = count - done < sp.per_dispatch ? count - done : sp.per_dispatch;
        dropout_push pc = {(uint32_t)cnt, first[0] + (uint32_t)done, first[1] + (uint32_t)done,
                           first[2], a->c, (uint32_t)(done % a->c), (uint32_t)(done / a->c),
                           a->site};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 3, &pc, sizeof pc, vkt__ops_groups(sp, cnt), 1, 1));
    }
    return VKT_OK;
}

vkt_status vkt_op_dropout_fwd(vkt_ops *ops, vkt_stream *s, const vkt_dropout_args *a)
{
    return dropout(ops, s, a, false);
}

vkt_status vkt_op_dropout_bwd(vkt_ops *ops, vkt_stream *s, const vkt_dropout_args *a)
{
    return dropout(ops, s, a, true);
}
