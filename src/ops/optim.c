/* Optimizer steps (SGD, Adam, AdamW) and the gradient sum of squares used
 * for clipping and the fp16 overflow check. See ops.h. */
#include <math.h>
#include <stdio.h>

#include "ops/ops.h"

typedef struct adam_push {
    uint32_t n, off_p, off_g, off_m, off_v, off_o, off_h;
    float b1, b2, eps, wd;
} adam_push;
_Static_assert(sizeof(adam_push) <= 128, "push constants fit every device");

typedef struct sgd_push {
    uint32_t n, off_p, off_g, off_b, off_o, off_h;
    float momentum, wd;
} sgd_push;
_Static_assert(sizeof(sgd_push) <= 128, "push constants fit every device");

typedef struct sumsq_push {
    uint32_t n, off_g, off_out;
    float scale;
} sumsq_push;
_Static_assert(sizeof(sumsq_push) <= 128, "push constants fit every device");

static void shader_name(char *buf, size_t cap, const char *base, vkt_dtype t)
{
    snprintf(buf, cap, "%s_%s", base, vkt_dtype_name(t));
}

void vkt_op_adam_hyper(float h[4], float lr, float beta1, float beta2, uint64_t t,
                       float grad_scale)
{
    double bc1 = 1.0 - pow(beta1, (double)t), bc2 = 1.0 - pow(beta2, (double)t);
    h[0] = lr;
    h[1] = (float)(lr / bc1);
    h[2] = (float)(1.0 / sqrt(bc2));
    h[3] = grad_scale;
}

void vkt_op_sgd_hyper(float h[4], float lr, float grad_scale)
{
    h[0] = lr;
    h[1] = h[2] = 0;
    h[3] = grad_scale;
}

/* Bind each view for n elements (chunk-relative offsets go to *first). */
static vkt_status bind_all(vkt_ops *ops, const vkt_tref *views, const uint32_t *esize,
                           const uint64_t *count, int nv, const char *op, vkt_binding *b,
                           uint32_t *first)
{
    char what[64];
    for (int i = 0; i < nv; i++) {
        snprintf(what, sizeof what, "%s binding %d", op, i);
        VKT_CHECK(vkt__ops_bind(ops, views[i], count[i] * esize[i], esize[i], what, &b[i],
                                &first[i]));
    }
    return VKT_OK;
}

vkt_status vkt_op_adam(vkt_ops *ops, vkt_stream *s, const vkt_adam_args *a)
{
    VKT_CHECK(vkt__ops_check_dtype(ops, a->dtype, "adam"));
    VKT_FAIL_IF(a->n == 0 || a->n > UINT32_MAX, VKT_ERR_INVALID_ARG,
                "adam: n = %llu; give 1..2^32-1 parameters per call", (unsigned long long)a->n);
    bool copy = a->copy.buf != NULL;
    uint32_t es = (uint32_t)vkt_dtype_size(a->dtype);
    vkt_tref views[6] = {a->params, a->grads, a->m, a->v, copy ? a->copy : a->grads, a->hyper};
    uint32_t esize[6] = {4, es, 4, 4, es, 4};
    uint64_t count[6] = {a->n, a->n, a->n, a->n, a->n, 4};
    vkt_binding b[6];
    uint32_t first[6];
    VKT_CHECK(bind_all(ops, views, esize, count, 6, "adam", b, first));
    vkt_split sp = vkt__ops_split(ops);
    uint32_t spec[4] = {sp.wg, sp.run, a->adamw, copy};
    char name[32];
    shader_name(name, sizeof name, "opt_adam", a->dtype);
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, name, 6, sizeof(adam_push), spec, 4, &p));
    for (uint64_t done = 0; done < a->n; done += sp.per_dispatch) {
        uint64_t cnt = a->n - done < sp.per_dispatch ? a->n - done : sp.per_dispatch;
        uint32_t d = (uint32_t)done;
        adam_push pc = {(uint32_t)cnt, first[0] + d, first[1] + d, first[2] + d, first[3] + d,
                        first[4] + (copy ? d : 0), first[5], a->beta1, a->beta2, a->eps,
                        a->weight_decay};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 6, &pc, sizeof pc, vkt__ops_groups(sp, cnt), 1, 1));
    }
    return VKT_OK;
}

vkt_status vkt_op_sgd(vkt_ops *ops, vkt_stream *s, const vkt_sgd_args *a)
{
    VKT_CHECK(vkt__ops_check_dtype(ops, a->dtype, "sgd"));
    VKT_FAIL_IF(a->n == 0 || a->n > UINT32_MAX, VKT_ERR_INVALID_ARG,
                "sgd: n = %llu; give 1..2^32-1 parameters per call", (unsigned long long)a->n);
    VKT_FAIL_IF(a->momentum != 0 && !a->momentum_buf.buf, VKT_ERR_INVALID_ARG,
                "sgd: momentum %g needs a momentum buffer", (double)a->momentum);
    bool copy = a->copy.buf != NULL, mom = a->momentum != 0;
    uint32_t es = (uint32_t)vkt_dtype_size(a->dtype);
    vkt_tref views[5] = {a->params, a->grads, mom ? a->momentum_buf : a->params,
                         copy ? a->copy : a->grads, a->hyper};
    uint32_t esize[5] = {4, es, 4, es, 4};
    uint64_t count[5] = {a->n, a->n, a->n, a->n, 4};
    vkt_binding b[5];
    uint32_t first[5];
    VKT_CHECK(bind_all(ops, views, esize, count, 5, "sgd", b, first));
    vkt_split sp = vkt__ops_split(ops);
    uint32_t spec[4] = {sp.wg, sp.run, a->nesterov, copy};
    char name[32];
    shader_name(name, sizeof name, "opt_sgd", a->dtype);
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, name, 5, sizeof(sgd_push), spec, 4, &p));
    for (uint64_t done = 0; done < a->n; done += sp.per_dispatch) {
        uint64_t cnt = a->n - done < sp.per_dispatch ? a->n - done : sp.per_dispatch;
        uint32_t d = (uint32_t)done;
        sgd_push pc = {(uint32_t)cnt, first[0] + d, first[1] + d, first[2] + (mom ? d : 0),
                       first[3] + (copy ? d : 0), first[4], a->momentum, a->weight_decay};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 5, &pc, sizeof pc, vkt__ops_groups(sp, cnt), 1, 1));
    }
    return VKT_OK;
}

/* The reduction needs power-of-two workgroups of at most 256 lanes. */
static vkt_split sumsq_split(const vkt_ops *ops)
{
    vkt_split sp = vkt__ops_split(ops);
    if (vkt__ops_family(ops) == VKT_KERNELS_CPU) sp.run = 256;
    sp.per_dispatch = (uint64_t)65535 * sp.wg * sp.run;
    return sp;
}

uint32_t vkt_op_grad_sumsq_partials(const vkt_ops *ops, uint64_t n)
{
    vkt_split sp = sumsq_split(ops);
    uint32_t total = 0;
    for (uint64_t done = 0; done < n; done += sp.per_dispatch)
        total += vkt__ops_groups(sp, n - done < sp.per_dispatch ? n - done : sp.per_dispatch);
    return total;
}

vkt_status vkt_op_grad_sumsq(vkt_ops *ops, vkt_stream *s, vkt_tref partials, vkt_tref grads,
                             vkt_dtype dtype, uint64_t n, float scale)
{
    VKT_CHECK(vkt__ops_check_dtype(ops, dtype, "grad_sumsq"));
    VKT_FAIL_IF(n == 0 || n > UINT32_MAX, VKT_ERR_INVALID_ARG,
                "grad_sumsq: n = %llu; give 1..2^32-1 elements", (unsigned long long)n);
    uint32_t es = (uint32_t)vkt_dtype_size(dtype), np = vkt_op_grad_sumsq_partials(ops, n);
    vkt_tref views[2] = {grads, partials};
    uint32_t esize[2] = {es, 4};
    uint64_t count[2] = {n, np};
    vkt_binding b[2];
    uint32_t first[2];
    VKT_CHECK(bind_all(ops, views, esize, count, 2, "grad_sumsq", b, first));
    vkt_split sp = sumsq_split(ops);
    uint32_t spec[2] = {sp.wg, sp.run};
    char name[32];
    shader_name(name, sizeof name, "grad_sumsq", dtype);
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, name, 2, sizeof(sumsq_push), spec, 2, &p));
    uint32_t out = first[1];
    for (uint64_t done = 0; done < n; done += sp.per_dispatch) {
        uint64_t cnt = n - done < sp.per_dispatch ? n - done : sp.per_dispatch;
        uint32_t groups = vkt__ops_groups(sp, cnt);
        sumsq_push pc = {(uint32_t)cnt, first[0] + (uint32_t)done, out, scale};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 2, &pc, sizeof pc, groups, 1, 1));
        out += groups;
    }
    return VKT_OK;
}
