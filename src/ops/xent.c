/* Fused softmax + cross-entropy, forward and backward (see norm.h).
 * logits [n, v] with n = B·T rows and v = V classes; targets int32 [n].
 *
 * Numerics: every row is reduced with an online max/sum (subtract the row
 * max, rescale the running sum when the max grows), so exp never overflows,
 * even for logits of 1e4 in f16; the loss is log(sum) + max - x[target].
 * The row is walked by a strided loop, so v is not limited by shared memory
 * or registers (50k-class vocabularies work).
 * Kernel shapes (shaders/xent_*.comp, shaders/include/rowreduce.glsl): the
 * CPU family runs one invocation per row in 8-lane workgroups, the GPU
 * family one 256-lane workgroup per row with a shared-memory tree. Backward
 * recomputes the row statistics rather than reading them from forward: one
 * extra read of the logits, but no statistics buffer in the interface. */
#include <stdio.h>

#include "ops/ops.h"

/* Mirrors the push blocks of shaders/xent_fwd.comp and xent_bwd.comp. */
typedef struct xent_push {
    uint32_t n, v, row0, off_loss, off_logits, off_tgt, off_dl;
    int32_t ignore;
    float scale;
} xent_push;
_Static_assert(sizeof(xent_push) <= 128, "push constants fit every device");

#define CPU_WG 8u
#define GPU_WG 256u

static vkt_status check_args(const vkt_ops *ops, const vkt_xent_args *a, const char *op)
{
    VKT_CHECK(vkt__ops_check_dtype(ops, a->t, op));
    VKT_FAIL_IF(a->n == 0 || a->v == 0, VKT_ERR_INVALID_ARG,
                "%s: n=%u v=%u; both must be at least 1", op, a->n, a->v);
    /* llvmpipe ends an invocation after 65535 loop iterations in total
     * (shaders/include/rowreduce.glsl); a CPU-family lane walks its row
     * twice, 8 logits per iteration. */
    VKT_FAIL_IF(vkt__ops_family(ops) == VKT_KERNELS_CPU && 2 * (((uint64_t)a->v + 7) / 8) > 65535,
                VKT_ERR_INVALID_ARG,
                "%s: v = %u classes is more than a CPU-family lane may loop over on llvmpipe "
                "(262k); use the GPU family for this vocabulary", op, a->v);
    VKT_FAIL_IF((uint64_t)a->n * a->v > UINT32_MAX / 2, VKT_ERR_INVALID_ARG,
                "%s: n*v = %llu logits; the kernels index in 32 bits, split the rows into "
                "calls of fewer than 2^31 logits", op, (unsigned long long)a->n * a->v);
    return VKT_OK;
}

static vkt_status bind(vkt_ops *ops, vkt_tref t, uint64_t count, uint32_t es, const char *op,
                       const char *name, vkt_binding *b, uint32_t *first)
{
    char what[64];
    snprintf(what, sizeof what, "%s: %s", op, name);
    return vkt__ops_bind(ops, t, count * es, es, what, b, first);
}

/* Pipeline "<base>_<cpu|gpu>_<dtype>" with the family's workgroup size. */
static vkt_status row_pipeline(vkt_ops *ops, const char *base, vkt_dtype t, uint32_t in_place,
                               const vkt_pipeline **p)
{
    bool gpu = vkt__ops_family(ops) == VKT_KERNELS_GPU;
    char name[64];
    snprintf(name, sizeof name, "%s_%s_%s", base, gpu ? "gpu" : "cpu", vkt_dtype_name(t));
    uint32_t spec[2] = {gpu ? GPU_WG : CPU_WG, in_place};
    return vkt__ops_pipeline(ops, name, 3, sizeof(xent_push), spec, in_place ? 2 : 1, p);
}

/* One dispatch per block of rows that fits max_workgroup_count. */
static vkt_status dispatch_rows(vkt_ops *ops, vkt_stream *s, const vkt_pipeline *p,
                                const vkt_binding *b, xent_push pc)
{
    uint32_t rpg = vkt__ops_family(ops) == VKT_KERNELS_GPU ? 1 : CPU_WG;
    uint32_t mg = vkt_device_get_caps(vkt__ops_device(ops))->max_workgroup_count[0];
    uint32_t per = (mg < 65535 ? mg : 65535) * rpg;
    for (uint32_t r0 = 0; r0 < pc.n; r0 += per) {
        uint32_t rows = pc.n - r0 < per ? pc.n - r0 : per;
        pc.row0 = r0;
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 3, &pc, sizeof pc, (rows + rpg - 1) / rpg, 1, 1));
    }
    return VKT_OK;
}

/* losses [n] fp32  <-  logits [n,v], targets [n] */
vkt_status vkt_op_xent_fwd(vkt_ops *ops, vkt_stream *s, const vkt_xent_args *a)
{
    VKT_FAIL_IF(!ops || !s || !a, VKT_ERR_INVALID_ARG, "xent_fwd: NULL ops, stream or args");
    VKT_CHECK(check_args(ops, a, "xent_fwd"));
    uint32_t es = (uint32_t)vkt_dtype_size(a->t);
    vkt_binding b[3];
    uint32_t f[3];
    VKT_CHECK(bind(ops, a->losses, a->n, 4, "xent_fwd", "losses", &b[0], &f[0]));
    VKT_CHECK(bind(ops, a->logits, (uint64_t)a->n * a->v, es, "xent_fwd", "logits", &b[1], &f[1]));
    VKT_CHECK(bind(ops, a->targets, a->n, 4, "xent_fwd", "targets", &b[2], &f[2]));
    const vkt_pipeline *p;
    VKT_CHECK(row_pipeline(ops, "xent_fwd", a->t, 0, &p));
    xent_push pc = {a->n, a->v, 0, f[0], f[1], f[2], 0, a->ignore_index, a->scale};
    return dispatch_rows(ops, s, p, b, pc);
}

static bool overlap(vkt_tref x, vkt_tref y, uint64_t bytes)
{
    return x.buf == y.buf && x.offset < y.offset + bytes && y.offset < x.offset + bytes;
}

/* dlogits [n,v] += (softmax - onehot) · scale, or logits [n,v] = that when
 * in_place  <-  logits [n,v], targets [n] */
vkt_status vkt_op_xent_bwd(vkt_ops *ops, vkt_stream *s, const vkt_xent_args *a)
{
    VKT_FAIL_IF(!ops || !s || !a, VKT_ERR_INVALID_ARG, "xent_bwd: NULL ops, stream or args");
    VKT_CHECK(check_args(ops, a, "xent_bwd"));
    uint32_t es = (uint32_t)vkt_dtype_size(a->t);
    uint64_t nv = (uint64_t)a->n * a->v;
    bool same = a->dlogits.buf == a->logits.buf && a->dlogits.offset == a->logits.offset;
    VKT_FAIL_IF(a->in_place && a->dlogits.buf && !same, VKT_ERR_INVALID_ARG,
                "xent_bwd: in_place needs dlogits to be the logits view itself (or no "
                "buffer); got a different view");
    VKT_FAIL_IF(!a->in_place && a->dlogits.buf && overlap(a->dlogits, a->logits, nv * es),
                VKT_ERR_INVALID_ARG,
                "xent_bwd: dlogits overlaps logits; set in_place to overwrite the logits with "
                "their gradient, or give dlogits its own memory");
    vkt_binding b[3];
    uint32_t f[3];
    VKT_CHECK(bind(ops, a->logits, nv, es, "xent_bwd", "logits", &b[0], &f[0]));
    VKT_CHECK(bind(ops, a->targets, a->n, 4, "xent_bwd", "targets", &b[1], &f[1]));
    if (a->in_place) b[2] = b[0], f[2] = f[0];
    else VKT_CHECK(bind(ops, a->dlogits, nv, es, "xent_bwd", "dlogits", &b[2], &f[2]));
    const vkt_pipeline *p;
    VKT_CHECK(row_pipeline(ops, "xent_bwd", a->t, a->in_place, &p));
    xent_push pc = {a->n, a->v, 0, 0, f[0], f[1], f[2], a->ignore_index, a->scale};
    return dispatch_rows(ops, s, p, b, pc);
}
