/* Causal multi-head self-attention, forward and backward, as fused kernels
 * (shaders/attention_*.comp, shared code in shaders/include/attention.glsl).
 * See attention.h for the contract and the limits.
 *
 *   forward   attention_fwd     one invocation per query row (b, h, t):
 *                                scores, softmax into att, out = att · v
 *   backward  attention_bwd_q   one invocation per query row: dP = dout·vᵀ,
 *                                softmax backward into datt (dS), dq += dS · k
 *             (barrier)
 *             attention_bwd_kv  one invocation per key column: dk += dSᵀ · q,
 *                                dv += attᵀ · dout
 * Workgroups: x = blocks of rows, y = heads, z = batch items (B is split
 * into several dispatches when the workgroup-count limit or the binding
 * window requires it). */
#include <stdio.h>

#include "ops/attention.h"

#define ATT_MAX_T 1024u
#define ATT_MAX_HS 128u
#define ATT_MAX_C 1024u

/* Mirrors the push block in shaders/include/attention.glsl. */
typedef struct attn_push {
    uint32_t t_len, c, hs;
    uint32_t off_qkv, off_out, off_att, off_dqkv, off_dout, off_datt;
} attn_push;
_Static_assert(sizeof(attn_push) <= 128, "push constants fit every device");

enum { V_QKV, V_OUT, V_ATT, V_DQKV, V_DOUT, V_DATT, NVIEW };
static const char *const view_names[NVIEW] = {"qkv", "out", "att", "dqkv", "dout", "datt"};

static vkt_status check_dims(const vkt_attention_args *a, const char *op)
{
    VKT_FAIL_IF(a->b == 0, VKT_ERR_INVALID_ARG, "%s: b = 0; give at least one batch item", op);
    VKT_FAIL_IF(a->t_len == 0 || a->t_len > ATT_MAX_T, VKT_ERR_INVALID_ARG,
                "%s: t_len = %u; give 1..%u positions", op, a->t_len, ATT_MAX_T);
    VKT_FAIL_IF(a->c == 0 || a->c > ATT_MAX_C, VKT_ERR_INVALID_ARG,
                "%s: c = %u; give 1..%u channels", op, a->c, ATT_MAX_C);
    VKT_FAIL_IF(a->heads == 0 || a->c % a->heads, VKT_ERR_INVALID_ARG,
                "%s: heads = %u does not divide c = %u; pick a divisor of c", op, a->heads,
                a->c);
    VKT_FAIL_IF(a->c / a->heads > ATT_MAX_HS, VKT_ERR_INVALID_ARG,
                "%s: head size c / heads = %u exceeds %u; use more heads", op,
                a->c / a->heads, ATT_MAX_HS);
    return VKT_OK;
}

/* Bytes of one batch item of each view, and element sizes. */
static void view_shape(const vkt_attention_args *a, uint64_t item[NVIEW], uint32_t es[NVIEW])
{
    uint32_t e = (uint32_t)vkt_dtype_size(a->t);
    uint64_t t = a->t_len, c = a->c, tt = (uint64_t)a->heads * t * t;
    uint64_t elems[NVIEW] = {t * 3 * c, t * c, tt, t * 3 * c, t * c, tt};
    uint32_t sizes[NVIEW] = {e, e, 4, e, e, 4};
    for (int i = 0; i < NVIEW; i++) {
        es[i] = sizes[i];
        item[i] = elems[i] * sizes[i];
    }
}

static const vkt_tref *view_of(const vkt_attention_args *a, int v)
{
    const vkt_tref *all[NVIEW] = {&a->qkv, &a->out, &a->att, &a->dqkv, &a->dout, &a->datt};
    return all[v];
}

/* Whole-view checks before anything is recorded, so a bad argument leaves
 * the stream untouched; returns the batch items one dispatch may cover. */
static vkt_status check_views(const vkt_ops *ops, const vkt_attention_args *a, const int *ids,
                              int n, const char *op, uint32_t *chunk)
{
    const vkt_device_caps *c = vkt_device_get_caps(vkt__ops_device(ops));
    uint64_t item[NVIEW], window = c->max_storage_buffer_range - c->min_storage_buffer_alignment;
    uint32_t es[NVIEW];
    view_shape(a, item, es);
    uint64_t nb = c->max_workgroup_count[2] < a->b ? c->max_workgroup_count[2] : a->b;
    for (int i = 0; i < n; i++) {
        const vkt_tref *v = view_of(a, ids[i]);
        const char *name = view_names[ids[i]];
        VKT_FAIL_IF(!v->buf, VKT_ERR_INVALID_ARG, "%s: %s has no buffer", op, name);
        uint64_t bytes = item[ids[i]] * a->b, size = vkt_buffer_size(v->buf);
        VKT_FAIL_IF(v->offset % es[ids[i]], VKT_ERR_INVALID_ARG,
                    "%s: %s offset %llu is not a multiple of the element size %u", op, name,
                    (unsigned long long)v->offset, es[ids[i]]);
        VKT_FAIL_IF(v->offset > size || bytes > size - v->offset, VKT_ERR_INVALID_ARG,
                    "%s: %s needs %llu bytes at offset %llu, past the end of its %llu-byte "
                    "buffer", op, name, (unsigned long long)bytes,
                    (unsigned long long)v->offset, (unsigned long long)size);
        VKT_FAIL_IF(item[ids[i]] > window, VKT_ERR_INVALID_ARG,
                    "%s: one batch item of %s is %llu bytes, more than one %llu-byte binding "
                    "window of '%s'; use fewer heads or a shorter t_len", op, name,
                    (unsigned long long)item[ids[i]], (unsigned long long)window, c->name);
        if (window / item[ids[i]] < nb) nb = window / item[ids[i]];
    }
    VKT_FAIL_IF(a->heads > c->max_workgroup_count[1], VKT_ERR_INVALID_ARG,
                "%s: %u heads exceed the device's %u workgroups in y", op, a->heads,
                c->max_workgroup_count[1]);
    *chunk = (uint32_t)nb;
    return VKT_OK;
}

/* The CPU-family variant for head size hs: 16, 32, 64 or 128 (table rows
 * in cmake/shaders.cmake). */
static uint32_t cpu_padded_hs(uint32_t hs)
{
    return hs <= 16 ? 16 : hs <= 32 ? 32 : hs <= 64 ? 64 : 128;
}

/* Record `shader` over all batch items, binding views ids[0..n) in order. */
static vkt_status launch(vkt_ops *ops, vkt_stream *s, const vkt_attention_args *a,
                         const char *shader, const int *ids, int n, uint32_t chunk)
{
    bool cpu = vkt__ops_family(ops) == VKT_KERNELS_CPU;
    uint32_t hs = a->c / a->heads, wg = cpu ? 8 : 64, spec[2] = {wg, (hs + 3) / 4};
    char name[48];
    if (cpu) /* the register rows are unrolled for a padded head size */
        snprintf(name, sizeof name, "%s_cpu_h%u_%s", shader, cpu_padded_hs(hs),
                 vkt_dtype_name(a->t));
    else
        snprintf(name, sizeof name, "%s_gpu_%s", shader, vkt_dtype_name(a->t));
    const vkt_pipeline *p; /* CPU variants take hs from the name: one pipeline per bucket */
    VKT_CHECK(vkt__ops_pipeline(ops, name, (uint32_t)n, sizeof(attn_push), spec, cpu ? 1 : 2,
                                &p));
    uint64_t item[NVIEW];
    uint32_t es[NVIEW];
    view_shape(a, item, es);
    for (uint32_t b0 = 0; b0 < a->b; b0 += chunk) {
        uint32_t nb = a->b - b0 < chunk ? a->b - b0 : chunk, off[NVIEW] = {0};
        vkt_binding bind[NVIEW];
        for (int i = 0; i < n; i++) {
            vkt_tref v = *view_of(a, ids[i]);
            v.offset += item[ids[i]] * b0;
            char what[64];
            snprintf(what, sizeof what, "%s: %s", shader, view_names[ids[i]]);
            VKT_CHECK(vkt__ops_bind(ops, v, item[ids[i]] * nb, es[ids[i]], what, &bind[i],
                                    &off[ids[i]]));
        }
        attn_push pc = {a->t_len, a->c, hs, off[V_QKV], off[V_OUT], off[V_ATT],
                        off[V_DQKV], off[V_DOUT], off[V_DATT]};
        VKT_CHECK(vkt_stream_dispatch(s, p, bind, (uint32_t)n, &pc, sizeof pc,
                                      (a->t_len + wg - 1) / wg, a->heads, nb));
    }
    return VKT_OK;
}

/* out [B, T, C], att [B, nh, T, T] <- qkv [B, T, 3C] */
vkt_status vkt_op_attention_fwd(vkt_ops *ops, vkt_stream *s, const vkt_attention_args *a)
{
    static const int ids[] = {V_QKV, V_OUT, V_ATT};
    uint32_t chunk;
    VKT_CHECK(vkt__ops_check_dtype(ops, a->t, "attention_fwd"));
    VKT_CHECK(check_dims(a, "attention_fwd"));
    VKT_CHECK(check_views(ops, a, ids, 3, "attention_fwd", &chunk));
    return launch(ops, s, a, "attention_fwd", ids, 3, chunk);
}

/* dqkv [B, T, 3C] += f(qkv [B, T, 3C], att [B, nh, T, T], dout [B, T, C]);
 * datt [B, nh, T, T] scratch */
vkt_status vkt_op_attention_bwd(vkt_ops *ops, vkt_stream *s, const vkt_attention_args *a)
{
    static const int ids[] = {V_QKV, V_ATT, V_DOUT, V_DATT, V_DQKV};
    uint32_t chunk;
    VKT_CHECK(vkt__ops_check_dtype(ops, a->t, "attention_bwd"));
    VKT_CHECK(check_dims(a, "attention_bwd"));
    VKT_CHECK(check_views(ops, a, ids, 5, "attention_bwd", &chunk));
    VKT_CHECK(launch(ops, s, a, "attention_bwd_q", ids, 5, chunk));
    VKT_CHECK(vkt_stream_barrier(s)); /* bwd_kv reads the dS that bwd_q wrote */
    return launch(ops, s, a, "attention_bwd_kv", ids, 5, chunk);
}
