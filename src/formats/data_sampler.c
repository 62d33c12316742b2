/* The distributed sampler (see vktrain/data.h).
 *
 * Every rank computes the same epoch order from (seed, epoch) alone, so no
 * rank ever needs to hear another's: a splitmix64-seeded xoshiro256**
 * generator drives a Fisher–Yates shuffle of 0..n-1. The state that moves
 * is one number, the global position, which is what a checkpoint saves. */
#include <stdbool.h>
#include <string.h>

#include "core/core_int.h"
#include "vktrain/data.h"

#define VKT_SAMPLER_MAGIC 0x53414d50u /* "SAMP" */
#define NO_EPOCH UINT64_MAX

struct vkt_sampler {
    uint32_t magic;
    bool shuffle;
    uint32_t batch;    /* this rank's samples per micro-step */
    uint64_t offset;   /* this rank's first position in a micro-step: Σ_{j<rank} b_j */
    uint64_t global;   /* G = Σ b_r */
    uint64_t samples;  /* n */
    uint64_t steps;    /* micro-steps per epoch: floor(n / G) */
    uint64_t seed;
    uint64_t position; /* samples all ranks have consumed */
    uint64_t *order;   /* [samples], the order of order_epoch (shuffle only) */
    uint64_t order_epoch;
};

/* ------------------------------------------------------------------------ */
/* Random numbers: splitmix64 (seeding) and xoshiro256** (Vigna, Blackman)  */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, range) without modulo bias: reject the lowest
 * 2^64 mod range values, which would otherwise come up once too often. */
static uint64_t uniform(uint64_t s[4], uint64_t range)
{
    uint64_t threshold = (0 - range) % range;
    for (;;) {
        uint64_t r = xoshiro_next(s);
        if (r >= threshold) return r % range;
    }
}

static void draw_order(vkt_sampler *s, uint64_t epoch)
{
    uint64_t e = epoch, x = s->seed ^ splitmix64(&e), st[4];
    for (int i = 0; i < 4; i++) st[i] = splitmix64(&x);
    for (uint64_t i = 0; i < s->samples; i++) s->order[i] = i;
    for (uint64_t i = s->samples - 1; i > 0; i--) {
        uint64_t j = uniform(st, i + 1), t = s->order[i];
        s->order[i] = s->order[j];
        s->order[j] = t;
    }
    s->order_epoch = epoch;
}

/* ------------------------------------------------------------------------ */
/* Public                                                                    */

static vkt_status check_opts(const vkt_sampler_opts *o, uint64_t *global, uint64_t *offset)
{
    VKT_FAIL_IF(!o || o->struct_size != sizeof *o, VKT_ERR_INVALID_ARG,
                "vkt_sampler_create: initialise opts with VKT_SAMPLER_OPTS_INIT");
    VKT_FAIL_IF(o->world == 0 || o->rank >= o->world, VKT_ERR_INVALID_ARG,
                "vkt_sampler_create: rank %u of world %u: need world >= 1 and rank < world",
                o->rank, o->world);
    VKT_FAIL_IF(!o->rank_batch, VKT_ERR_INVALID_ARG,
                "vkt_sampler_create: rank_batch is NULL; pass one micro-batch size per rank");
    uint64_t g = 0;
    for (uint32_t r = 0; r < o->world; r++) {
        VKT_FAIL_IF(o->rank_batch[r] == 0, VKT_ERR_INVALID_ARG,
                    "vkt_sampler_create: rank %u's micro-batch size is 0; every rank needs at "
                    "least 1",
                    r);
        if (r == o->rank) *offset = g;
        g += o->rank_batch[r];
    }
    VKT_FAIL_IF(o->samples < g, VKT_ERR_INVALID_ARG,
                "the data set has %llu samples, fewer than one global micro-batch of %llu "
                "(the sum of all %u ranks' micro-batch sizes); use a smaller batch or more data",
                (unsigned long long)o->samples, (unsigned long long)g, o->world);
    *global = g;
    return VKT_OK;
}

vkt_status vkt_sampler_create(const vkt_sampler_opts *o, vkt_sampler **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_sampler_create: out is NULL");
    *out = NULL;
    uint64_t global = 0, offset = 0;
    VKT_CHECK(check_opts(o, &global, &offset));
    vkt_sampler *s = vkt_calloc(1, sizeof *s);
    VKT_FAIL_IF(!s, VKT_ERR_NOMEM, "vkt_sampler_create: out of host memory");
    *s = (vkt_sampler){.magic = VKT_SAMPLER_MAGIC,
                       .shuffle = o->shuffle,
                       .batch = o->rank_batch[o->rank],
                       .offset = offset,
                       .global = global,
                       .samples = o->samples,
                       .steps = o->samples / global,
                       .seed = o->seed,
                       .order_epoch = NO_EPOCH};
    if (s->shuffle && !(s->order = vkt_calloc((size_t)s->samples, sizeof *s->order))) {
        vkt_free(s);
        return VKT_ERROR(VKT_ERR_NOMEM, "vkt_sampler_create: no memory for the order of %llu "
                                        "samples",
                         (unsigned long long)o->samples);
    }
    *out = s;
    return VKT_OK;
}

void vkt_sampler_destroy(vkt_sampler *s)
{
    if (!s || s->magic != VKT_SAMPLER_MAGIC) return;
    s->magic = 0;
    vkt_free(s->order);
    vkt_free(s);
}

void vkt_sampler_next(vkt_sampler *s, uint64_t *indices, uint64_t *epoch)
{
    if (!s || s->magic != VKT_SAMPLER_MAGIC || !indices) return;
    uint64_t per_epoch = s->steps * s->global;
    uint64_t e = s->position / per_epoch, at = s->position % per_epoch + s->offset;
    if (s->shuffle && s->order_epoch != e) draw_order(s, e);
    for (uint32_t k = 0; k < s->batch; k++) indices[k] = s->shuffle ? s->order[at + k] : at + k;
    if (epoch) *epoch = e;
    s->position += s->global;
}

uint64_t vkt_sampler_steps_per_epoch(const vkt_sampler *s)
{
    return s && s->magic == VKT_SAMPLER_MAGIC ? s->steps : 0;
}

uint64_t vkt_sampler_position(const vkt_sampler *s)
{
    return s && s->magic == VKT_SAMPLER_MAGIC ? s->position : 0;
}

vkt_status vkt_sampler_seek(vkt_sampler *s, uint64_t position)
{
    VKT_FAIL_IF(!s || s->magic != VKT_SAMPLER_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_sampler_seek: not a sampler");
    VKT_FAIL_IF(position % s->global != 0, VKT_ERR_INVALID_ARG,
                "vkt_sampler_seek: position %llu is not a multiple of the global micro-batch "
                "%llu; restore a position saved from a run with the same per-rank batch sizes",
                (unsigned long long)position, (unsigned long long)s->global);
    s->position = position;
    return VKT_OK;
}
