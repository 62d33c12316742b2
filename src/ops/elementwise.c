/* Elementwise ops: bias add, ReLU/GELU, residual add, accumulate, casts,
 * zeroing and the MSE loss (see elementwise.h). Dropout is in dropout.c.
 *
 * Every kernel here but bias_bwd and mse_fwd is a pure map over count
 * elements, so one launcher (ew_run) serves them: it binds the views, picks
 * the family's split (spec constants 0 and 1, as in optim.c) and loops
 * dispatches of at most split.per_dispatch elements, shifting the element
 * offsets in the push constants. Shapes: N rows × C channels, row-major. */
#include <stdio.h>

#include "ops/elementwise.h"

/* Mirrors shaders/include/ew_push.glsl. */
typedef struct ew_push {
    uint32_t n, off[3], c, col0;
    float alpha, beta;
} ew_push;
_Static_assert(sizeof(ew_push) <= 128, "push constants fit every device");

#define EW_MAX_VIEWS 3

/* One elementwise kernel call over n elements. Views with shift set cover
 * the n elements (bound for count[i] elements, offset moved per dispatch);
 * the others (the bias vector) stay put. */
typedef struct ew_call {
    const char *op;     /* for messages */
    char shader[40];    /* shader table row */
    uint32_t nv;        /* views */
    vkt_tref v[EW_MAX_VIEWS];
    uint32_t esize[EW_MAX_VIEWS];
    uint64_t count[EW_MAX_VIEWS];
    bool shift[EW_MAX_VIEWS];
    bool has_spec2;
    uint32_t spec2; /* spec constant 2 where the shader has one (ACT) */
    uint32_t c;     /* bias channels: push col0 = first element % c */
    float alpha;
} ew_call;

/* Common checks: ops/stream present, a training dtype, count in range.
 * count 0 passes (the launchers then record nothing). */
static vkt_status check_call(vkt_ops *ops, vkt_stream *s, vkt_dtype t, uint64_t count,
                             const char *op)
{
    VKT_FAIL_IF(!ops || !s, VKT_ERR_INVALID_ARG, "%s: ops or stream is NULL", op);
    VKT_CHECK(vkt__ops_check_dtype(ops, t, op));
    VKT_FAIL_IF(count > UINT32_MAX, VKT_ERR_INVALID_ARG,
                "%s: %llu elements; give at most 2^32-1 per call (split the tensor)", op,
                (unsigned long long)count);
    return VKT_OK;
}

static ew_call ew_init(const char *op, const char *base, vkt_dtype t)
{
    ew_call k = {.op = op, .alpha = 1.0f};
    snprintf(k.shader, sizeof k.shader, "%s_%s", base, vkt_dtype_name(t));
    return k;
}

/* Add a view of count elements of es bytes. */
static void ew_view(ew_call *k, vkt_tref v, uint32_t es, uint64_t count, bool shift)
{
    k->v[k->nv] = v;
    k->esize[k->nv] = es;
    k->count[k->nv] = count;
    k->shift[k->nv] = shift;
    k->nv++;
}

static vkt_status bind_views(vkt_ops *ops, const ew_call *k, vkt_binding *b, uint32_t *first)
{
    char what[64];
    for (uint32_t i = 0; i < k->nv; i++) {
        snprintf(what, sizeof what, "%s binding %u", k->op, i);
        VKT_CHECK(vkt__ops_bind(ops, k->v[i], k->count[i] * k->esize[i], k->esize[i], what,
                                &b[i], &first[i]));
    }
    return VKT_OK;
}

static vkt_status ew_run(vkt_ops *ops, vkt_stream *s, const ew_call *k, uint64_t n)
{
    if (n == 0) return VKT_OK;
    vkt_binding b[EW_MAX_VIEWS];
    uint32_t first[EW_MAX_VIEWS] = {0};
    VKT_CHECK(bind_views(ops, k, b, first));
    vkt_split sp = vkt__ops_split(ops);
    uint32_t spec[3] = {sp.wg, sp.run, k->spec2};
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, k->shader, k->nv, sizeof(ew_push), spec,
                                k->has_spec2 ? 3 : 2, &p));
    for (uint64_t done = 0; done < n; done += sp.per_dispatch) {
        uint64_t cnt = n - done < sp.per_dispatch ? n - done : sp.per_dispatch;
        ew_push pc = {.n = (uint32_t)cnt, .c = k->c, .alpha = k->alpha};
        for (uint32_t i = 0; i < k->nv; i++)
            pc.off[i] = first[i] + (k->shift[i] ? (uint32_t)done : 0);
        pc.col0 = k->c ? (uint32_t)(done % k->c) : 0;
        VKT_CHECK(vkt_stream_dispatch(s, p, b, k->nv, &pc, sizeof pc, vkt__ops_groups(sp, cnt),
                                      1, 1));
    }
    return VKT_OK;
}

/* ---- bias ------------------------------------------------------------- */

static vkt_status check_rows(uint32_t n, uint32_t c, const char *op)
{
    VKT_FAIL_IF((uint64_t)n * c > UINT32_MAX, VKT_ERR_INVALID_ARG,
                "%s: %u rows × %u channels exceed 2^32-1 elements; split the rows", op, n, c);
    return VKT_OK;
}

/* out[N,C] = in[N,C] + bias[C] */
vkt_status vkt_op_bias_fwd(vkt_ops *ops, vkt_stream *s, vkt_tref out, vkt_tref in,
                           vkt_tref bias, vkt_dtype t, uint32_t n, uint32_t c)
{
    VKT_CHECK(check_call(ops, s, t, 0, "bias_fwd"));
    VKT_CHECK(check_rows(n, c, "bias_fwd"));
    uint64_t count = (uint64_t)n * c;
    uint32_t es = (uint32_t)vkt_dtype_size(t);
    ew_call k = ew_init("bias_fwd", "bias_fwd", t);
    ew_view(&k, out, es, count, true);
    ew_view(&k, in, es, count, true);
    ew_view(&k, bias, es, c, false);
    k.c = c;
    return ew_run(ops, s, &k, count);
}

/* dbias[C] += Σ_n dout[N,C], each column summed in a fixed order. CPU
 * family: 8-lane workgroups, one lane per column (no shared memory). GPU
 * family: 256 lanes = 32 columns × 8 row lanes and a shared-memory tree. */
vkt_status vkt_op_bias_bwd(vkt_ops *ops, vkt_stream *s, vkt_tref dbias, vkt_tref dout,
                           vkt_dtype t, uint32_t n, uint32_t c)
{
    VKT_CHECK(check_call(ops, s, t, 0, "bias_bwd"));
    VKT_CHECK(check_rows(n, c, "bias_bwd"));
    if (n == 0 || c == 0) return VKT_OK;
    uint32_t es = (uint32_t)vkt_dtype_size(t);
    ew_call k = ew_init("bias_bwd", "bias_bwd", t);
    ew_view(&k, dbias, es, c, false);
    ew_view(&k, dout, es, (uint64_t)n * c, false);
    vkt_binding b[2];
    uint32_t first[2];
    VKT_CHECK(bind_views(ops, &k, b, first));
    bool gpu = vkt__ops_family(ops) == VKT_KERNELS_GPU;
    uint32_t spec[2] = {gpu ? 256 : 8, gpu ? 32 : 8};
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, k.shader, 2, sizeof(ew_push), spec, 2, &p));
    const vkt_device_caps *caps = vkt_device_get_caps(vkt__ops_device(ops));
    uint64_t max_groups = caps->max_workgroup_count[0] < 65535 ? caps->max_workgroup_count[0]
                                                               : 65535;
    uint64_t per = max_groups * spec[1]; /* columns per dispatch */
    for (uint64_t col = 0; col < c; col += per) {
        uint64_t cols = c - col < per ? c - col : per;
        ew_push pc = {.n = n, .off = {first[0], first[1]}, .c = c, .col0 = (uint32_t)col};
        uint32_t groups = (uint32_t)((cols + spec[1] - 1) / spec[1]);
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 2, &pc, sizeof pc, groups, 1, 1));
    }
    return VKT_OK;
}

/* ---- activations -------------------------------------------------------- */

static vkt_status check_act(vkt_act act, const char *op)
{
    VKT_FAIL_IF(act != VKT_ACT_RELU && act != VKT_ACT_GELU, VKT_ERR_INVALID_ARG,
                "%s: unknown activation %d; use VKT_ACT_RELU or VKT_ACT_GELU", op, (int)act);
    return VKT_OK;
}

/* out[count] = act(in[count]) */
vkt_status vkt_op_act_fwd(vkt_ops *ops, vkt_stream *s, vkt_act act, vkt_tref out, vkt_tref in,
                          vkt_dtype t, uint64_t count)
{
    VKT_CHECK(check_call(ops, s, t, count, "act_fwd"));
    VKT_CHECK(check_act(act, "act_fwd"));
    uint32_t es = (uint32_t)vkt_dtype_size(t);
    ew_call k = ew_init("act_fwd", "act_fwd", t);
    ew_view(&k, out, es, count, true);
    ew_view(&k, in, es, count, true);
    k.has_spec2 = true;
    k.spec2 = (uint32_t)act;
    return ew_run(ops, s, &k, count);
}

/* din[count] += act'(in) · dout */
vkt_status vkt_op_act_bwd(vkt_ops *ops, vkt_stream *s, vkt_act act, vkt_tref din, vkt_tref in,
                          vkt_tref dout, vkt_dtype t, uint64_t count)
{
    VKT_CHECK(check_call(ops, s, t, count, "act_bwd"));
    VKT_CHECK(check_act(act, "act_bwd"));
    uint32_t es = (uint32_t)vkt_dtype_size(t);
    ew_call k = ew_init("act_bwd", "act_bwd", t);
    ew_view(&k, din, es, count, true);
    ew_view(&k, in, es, count, true);
    ew_view(&k, dout, es, count, true);
    k.has_spec2 = true;
    k.spec2 = (uint32_t)act;
    return ew_run(ops, s, &k, count);
}

/* ---- add, accumulate, cast, zero ---------------------------------------- */

/* One add_fwd kernel serves both: out = a + alpha · b. */
static vkt_status add_call(vkt_ops *ops, vkt_stream *s, const char *op, vkt_tref out,
                           vkt_tref a, vkt_tref b, float alpha, vkt_dtype t, uint64_t count)
{
    VKT_CHECK(check_call(ops, s, t, count, op));
    uint32_t es = (uint32_t)vkt_dtype_size(t);
    ew_call k = ew_init(op, "add_fwd", t);
    ew_view(&k, out, es, count, true);
    ew_view(&k, a, es, count, true);
    ew_view(&k, b, es, count, true);
    k.alpha = alpha;
    return ew_run(ops, s, &k, count);
}

vkt_status vkt_op_add_fwd(vkt_ops *ops, vkt_stream *s, vkt_tref out, vkt_tref a, vkt_tref b,
                          vkt_dtype t, uint64_t count)
{
    return add_call(ops, s, "add_fwd", out, a, b, 1.0f, t, count);
}

vkt_status vkt_op_accumulate(vkt_ops *ops, vkt_stream *s, vkt_tref dst, vkt_tref src,
                             float alpha, vkt_dtype t, uint64_t count)
{
    return add_call(ops, s, "accumulate", dst, dst, src, alpha, t, count);
}

vkt_status vkt_op_cast(vkt_ops *ops, vkt_stream *s, vkt_tref dst, vkt_dtype dst_t, vkt_tref src,
                       vkt_dtype src_t, uint64_t count)
{
    VKT_CHECK(check_call(ops, s, dst_t, count, "cast (destination)"));
    VKT_CHECK(vkt__ops_check_dtype(ops, src_t, "cast (source)"));
    ew_call k = ew_init("cast", "cast", dst_t);
    snprintf(k.shader, sizeof k.shader, "cast_%s_to_%s", vkt_dtype_name(src_t),
             vkt_dtype_name(dst_t));
    ew_view(&k, dst, (uint32_t)vkt_dtype_size(dst_t), count, true);
    ew_view(&k, src, (uint32_t)vkt_dtype_size(src_t), count, true);
    return ew_run(ops, s, &k, count);
}

vkt_status vkt_op_zero(vkt_ops *ops, vkt_stream *s, vkt_tref dst, vkt_dtype t, uint64_t count)
{
    VKT_CHECK(check_call(ops, s, t, count, "zero"));
    ew_call k = ew_init("zero", "zero_fwd", t);
    ew_view(&k, dst, (uint32_t)vkt_dtype_size(t), count, true);
    return ew_run(ops, s, &k, count);
}

/* ---- MSE loss ----------------------------------------------------------- */

/* CPU family: 8 lanes × runs of 256, one partial per lane (no shared
 * memory). GPU family: 256 lanes × 1 element, one partial per workgroup. */
static vkt_split mse_split(const vkt_ops *ops, uint32_t *partials_per_group)
{
    vkt_split sp = vkt__ops_split(ops);
    bool cpu = vkt__ops_family(ops) == VKT_KERNELS_CPU;
    if (cpu) sp.run = 256;
    const vkt_device_caps *c = vkt_device_get_caps(vkt__ops_device(ops));
    uint64_t max_groups = c->max_workgroup_count[0] < 65535 ? c->max_workgroup_count[0] : 65535;
    sp.per_dispatch = max_groups * sp.wg * sp.run;
    *partials_per_group = cpu ? sp.wg : 1;
    return sp;
}

uint32_t vkt_op_mse_partials(const vkt_ops *ops, uint64_t count)
{
    uint32_t ppg;
    vkt_split sp = mse_split(ops, &ppg);
    uint64_t total = 0;
    for (uint64_t done = 0; done < count; done += sp.per_dispatch)
        total += (uint64_t)ppg *
                 vkt__ops_groups(sp, count - done < sp.per_dispatch ? count - done
                                                                   : sp.per_dispatch);
    return total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
}

/* partials[P] = fp32 partial sums of inv_count · (pred - target)² */
vkt_status vkt_op_mse_fwd(vkt_ops *ops, vkt_stream *s, vkt_tref partials, vkt_tref pred,
                          vkt_tref target, vkt_dtype t, uint64_t count, float inv_count)
{
    VKT_CHECK(check_call(ops, s, t, count, "mse_fwd"));
    if (count == 0) return VKT_OK;
    uint32_t es = (uint32_t)vkt_dtype_size(t), ppg;
    ew_call k = ew_init("mse_fwd", "mse_fwd", t);
    ew_view(&k, partials, 4, vkt_op_mse_partials(ops, count), false);
    ew_view(&k, pred, es, count, true);
    ew_view(&k, target, es, count, true);
    vkt_binding b[3];
    uint32_t first[3];
    VKT_CHECK(bind_views(ops, &k, b, first));
    vkt_split sp = mse_split(ops, &ppg);
    uint32_t spec[3] = {sp.wg, sp.run, ppg == 1};
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, k.shader, 3, sizeof(ew_push), spec, 3, &p));
    uint32_t out = first[0];
    for (uint64_t done = 0; done < count; done += sp.per_dispatch) {
        uint64_t cnt = count - done < sp.per_dispatch ? count - done : sp.per_dispatch;
        uint32_t groups = vkt__ops_groups(sp, cnt);
        ew_push pc = {.n = (uint32_t)cnt,
                      .off = {out, first[1] + (uint32_t)done, first[2] + (uint32_t)done},
                      .alpha = inv_count};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 3, &pc, sizeof pc, groups, 1, 1));
        out += groups * ppg;
    }
    return VKT_OK;
}

/* dpred[count] += 2 · (pred - target) · inv_count · grad_scale */
vkt_status vkt_op_mse_bwd(vkt_ops *ops, vkt_stream *s, vkt_tref dpred, vkt_tref pred,
                          vkt_tref target, vkt_dtype t, uint64_t count, float inv_count,
                          float grad_scale)
{
    VKT_CHECK(check_call(ops, s, t, count, "mse_bwd"));
    uint32_t es = (uint32_t)vkt_dtype_size(t);
    ew_call k = ew_init("mse_bwd", "mse_bwd", t);
    ew_view(&k, dpred, es, count, true);
    ew_view(&k, pred, es, count, true);
    ew_view(&k, target, es, count, true);
    k.alpha = (float)(2.0 * inv_count * grad_scale);
    return ew_run(ops, s, &k, count);
}
