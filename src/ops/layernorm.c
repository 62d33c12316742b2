/* LayerNorm over the last dimension, forward and backward (see norm.h).
 * Rows are n = B·T, columns c = C.
 *
 * Kernel shapes (shaders/layernorm_*.comp, shaders/include/rowreduce.glsl):
 * the CPU family runs one invocation per row in 8-lane workgroups, the GPU
 * family one 256-lane workgroup per row with a shared-memory tree. Backward
 * is two independent dispatches: the row-wise input gradient, and the
 * column sums for dweight/dbias, which use a fixed summation order (no
 * float atomics) so that data-parallel replicas stay bit-identical. */
#include <stdio.h>

#include "ops/ops.h"

/* Mirrors the push block of shaders/layernorm_fwd.comp. */
typedef struct ln_fwd_push {
    uint32_t n, c, row0, off_out, off_in, off_w, off_b, off_mean, off_rstd;
    float eps;
} ln_fwd_push;
_Static_assert(sizeof(ln_fwd_push) <= 128, "push constants fit every device");

/* Mirrors the push block of shaders/layernorm_bwd.comp. */
typedef struct ln_bwd_push {
    uint32_t n, c, row0, off_din, off_dout, off_in, off_w, off_mean, off_rstd;
} ln_bwd_push;
_Static_assert(sizeof(ln_bwd_push) <= 128, "push constants fit every device");

/* Mirrors the push block of shaders/layernorm_colsum.comp. */
typedef struct ln_colsum_push {
    uint32_t n, c, col0, off_dw, off_db, off_dout, off_in, off_mean, off_rstd;
} ln_colsum_push;
_Static_assert(sizeof(ln_colsum_push) <= 128, "push constants fit every device");

/* llvmpipe ends a shader invocation after 65535 loop iterations in total
 * (see shaders/include/rowreduce.glsl); the loops take 8 elements per
 * iteration, and CPU-family lanes walk whole rows and
 * columns, so the launchers bound what one lane sees. */
#define LOOP_BUDGET 65535u
#define CPU_WG 8u
#define GPU_WG 256u
#define GPU_COLS 32u /* columns per workgroup of the GPU column-sum kernel */

static vkt_status check_dims(const vkt_ops *ops, uint32_t n, uint32_t c, const char *op)
{
    bool cpu = vkt__ops_family(ops) == VKT_KERNELS_CPU;
    uint64_t row_iters = 3 * (((uint64_t)c + 7) / 8) / (cpu ? 1 : GPU_WG);
    uint64_t col_iters = ((uint64_t)n + 7) / 8 / (cpu ? 1 : 8);
    VKT_FAIL_IF(row_iters > LOOP_BUDGET || col_iters > LOOP_BUDGET, VKT_ERR_INVALID_ARG,
                "%s: n=%u c=%u is beyond what one %s-family lane may loop over on llvmpipe "
                "(c <= 174k, n <= 524k rows in the CPU family); split the rows into several "
                "calls or use the GPU family", op, n, c, cpu ? "CPU" : "GPU");
    VKT_FAIL_IF(n == 0 || c == 0, VKT_ERR_INVALID_ARG,
                "%s: n=%u c=%u; both must be at least 1", op, n, c);
    VKT_FAIL_IF((uint64_t)n * c > UINT32_MAX / 2, VKT_ERR_INVALID_ARG,
                "%s: n*c = %llu elements; the kernels index in 32 bits, split the rows into "
                "calls of fewer than 2^31 elements", op, (unsigned long long)n * c);
    return VKT_OK;
}

/* Bind views[i] for count[i] elements of esize[i] bytes, named by names[i]. */
static vkt_status bind_all(vkt_ops *ops, const vkt_tref *views, const uint32_t *esize,
                           const uint64_t *count, const char *const *names, int nv,
                           const char *op, vkt_binding *b, uint32_t *first)
{
    char what[64];
    for (int i = 0; i < nv; i++) {
        snprintf(what, sizeof what, "%s: %s", op, names[i]);
        VKT_CHECK(vkt__ops_bind(ops, views[i], count[i] * esize[i], esize[i], what, &b[i],
                                &first[i]));
    }
    return VKT_OK;
}

/* Pipeline "<base>_<cpu|gpu>_<dtype>" with the family's workgroup size. */
static vkt_status row_pipeline(vkt_ops *ops, const char *base, vkt_dtype t, uint32_t push,
                               const vkt_pipeline **p)
{
    bool gpu = vkt__ops_family(ops) == VKT_KERNELS_GPU;
    char name[64];
    snprintf(name, sizeof name, "%s_%s_%s", base, gpu ? "gpu" : "cpu", vkt_dtype_name(t));
    uint32_t spec[1] = {gpu ? GPU_WG : CPU_WG};
    return vkt__ops_pipeline(ops, name, 6, push, spec, 1, p);
}

static uint32_t max_groups(const vkt_ops *ops)
{
    uint32_t m = vkt_device_get_caps(vkt__ops_device(ops))->max_workgroup_count[0];
    return m < 65535 ? m : 65535;
}

/* Rows one workgroup covers: CPU one per lane, GPU one per workgroup. */
static uint32_t rows_per_group(const vkt_ops *ops)
{
    return vkt__ops_family(ops) == VKT_KERNELS_GPU ? 1 : CPU_WG;
}

/* out [n,c], mean/rstd [n] fp32  <-  in [n,c], weight [c], bias [c] */
vkt_status vkt_op_layernorm_fwd(vkt_ops *ops, vkt_stream *s, const vkt_layernorm_args *a)
{
    VKT_FAIL_IF(!ops || !s || !a, VKT_ERR_INVALID_ARG, "layernorm_fwd: NULL ops, stream or args");
    VKT_CHECK(vkt__ops_check_dtype(ops, a->t, "layernorm_fwd"));
    VKT_CHECK(check_dims(ops, a->n, a->c, "layernorm_fwd"));
    VKT_FAIL_IF(!(a->eps > 0), VKT_ERR_INVALID_ARG,
                "layernorm_fwd: eps = %g; give a positive eps such as 1e-5", (double)a->eps);
    uint32_t es = (uint32_t)vkt_dtype_size(a->t);
    uint64_t nc = (uint64_t)a->n * a->c;
    static const char *const names[6] = {"out", "in", "weight", "bias", "mean", "rstd"};
    vkt_tref views[6] = {a->out, a->in, a->weight, a->bias, a->mean, a->rstd};
    uint32_t esize[6] = {es, es, es, es, 4, 4};
    uint64_t count[6] = {nc, nc, a->c, a->c, a->n, a->n};
    vkt_binding b[6];
    uint32_t f[6];
    VKT_CHECK(bind_all(ops, views, esize, count, names, 6, "layernorm_fwd", b, f));
    const vkt_pipeline *p;
    VKT_CHECK(row_pipeline(ops, "layernorm_fwd", a->t, sizeof(ln_fwd_push), &p));
    uint32_t rpg = rows_per_group(ops), per = max_groups(ops) * rpg;
    for (uint32_t r0 = 0; r0 < a->n; r0 += per) {
        uint32_t rows = a->n - r0 < per ? a->n - r0 : per;
        ln_fwd_push pc = {a->n, a->c, r0, f[0], f[1], f[2], f[3], f[4], f[5], a->eps};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 6, &pc, sizeof pc, (rows + rpg - 1) / rpg, 1, 1));
    }
    return VKT_OK;
}

/* din [n,c] += rows; dweight/dbias [c] += column sums. */
static vkt_status ln_bwd_rows(vkt_ops *ops, vkt_stream *s, const vkt_layernorm_bwd_args *a,
                              uint32_t es)
{
    uint64_t nc = (uint64_t)a->n * a->c;
    static const char *const names[6] = {"din", "dout", "in", "weight", "mean", "rstd"};
    vkt_tref views[6] = {a->din, a->dout, a->in, a->weight, a->mean, a->rstd};
    uint32_t esize[6] = {es, es, es, es, 4, 4};
    uint64_t count[6] = {nc, nc, nc, a->c, a->n, a->n};
    vkt_binding b[6];
    uint32_t f[6];
    VKT_CHECK(bind_all(ops, views, esize, count, names, 6, "layernorm_bwd", b, f));
    const vkt_pipeline *p;
    VKT_CHECK(row_pipeline(ops, "layernorm_bwd", a->t, sizeof(ln_bwd_push), &p));
    uint32_t rpg = rows_per_group(ops), per = max_groups(ops) * rpg;
    for (uint32_t r0 = 0; r0 < a->n; r0 += per) {
        uint32_t rows = a->n - r0 < per ? a->n - r0 : per;
        ln_bwd_push pc = {a->n, a->c, r0, f[0], f[1], f[2], f[3], f[4], f[5]};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 6, &pc, sizeof pc, (rows + rpg - 1) / rpg, 1, 1));
    }
    return VKT_OK;
}

static vkt_status ln_bwd_cols(vkt_ops *ops, vkt_stream *s, const vkt_layernorm_bwd_args *a,
                              uint32_t es)
{
    uint64_t nc = (uint64_t)a->n * a->c;
    static const char *const names[6] = {"dweight", "dbias", "dout", "in", "mean", "rstd"};
    vkt_tref views[6] = {a->dweight, a->dbias, a->dout, a->in, a->mean, a->rstd};
    uint32_t esize[6] = {es, es, es, es, 4, 4};
    uint64_t count[6] = {a->c, a->c, nc, nc, a->n, a->n};
    vkt_binding b[6];
    uint32_t f[6];
    VKT_CHECK(bind_all(ops, views, esize, count, names, 6, "layernorm_bwd", b, f));
    const vkt_pipeline *p;
    VKT_CHECK(row_pipeline(ops, "layernorm_colsum", a->t, sizeof(ln_colsum_push), &p));
    uint32_t cpg = vkt__ops_family(ops) == VKT_KERNELS_GPU ? GPU_COLS : CPU_WG;
    uint32_t per = max_groups(ops) * cpg;
    for (uint32_t c0 = 0; c0 < a->c; c0 += per) {
        uint32_t cols = a->c - c0 < per ? a->c - c0 : per;
        ln_colsum_push pc = {a->n, a->c, c0, f[0], f[1], f[2], f[3], f[4], f[5]};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 6, &pc, sizeof pc, (cols + cpg - 1) / cpg, 1, 1));
    }
    return VKT_OK;
}

vkt_status vkt_op_layernorm_bwd(vkt_ops *ops, vkt_stream *s, const vkt_layernorm_bwd_args *a)
{
    VKT_FAIL_IF(!ops || !s || !a, VKT_ERR_INVALID_ARG, "layernorm_bwd: NULL ops, stream or args");
    VKT_CHECK(vkt__ops_check_dtype(ops, a->t, "layernorm_bwd"));
    VKT_CHECK(check_dims(ops, a->n, a->c, "layernorm_bwd"));
    uint32_t es = (uint32_t)vkt_dtype_size(a->t);
    /* Check the column pass's own outputs before recording anything, so a
     * bad call leaves the stream as it was. */
    vkt_binding b;
    uint32_t f;
    VKT_CHECK(vkt__ops_bind(ops, a->dweight, (uint64_t)a->c * es, es, "layernorm_bwd: dweight",
                            &b, &f));
    VKT_CHECK(vkt__ops_bind(ops, a->dbias, (uint64_t)a->c * es, es, "layernorm_bwd: dbias", &b,
                            &f));
    /* The two dispatches write disjoint outputs and read only inputs, so
     * they need no barrier between them. */
    VKT_CHECK(ln_bwd_rows(ops, s, a, es));
    return ln_bwd_cols(ops, s, a, es);
}
