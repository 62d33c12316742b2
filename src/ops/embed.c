/* Token + position embedding, forward and backward (see norm.h).
 * tokens int32 [B·T], wte [V, C], wpe [T, C] (at least t_len rows),
 * out/dout [B, T, C].
 *
 * Forward is elementwise over the output (shaders/embed_fwd.comp, the
 * families differ only in the split). Backward has two independent
 * dispatches with a fixed summation order and no float atomics, so that
 * data-parallel replicas stay bit-identical:
 *  - dwpe (shaders/embed_bwd_wpe.comp): each dwpe entry sums its B batch
 *    rows in order; O(B·T·C) work.
 *  - dwte (shaders/embed_bwd_wte.comp): a workgroup per (vocab row v,
 *    channel block) scans all B·T tokens in order and adds dout where the
 *    token matches: O(V·B·T) compares per channel block plus O(B·T·C)
 *    reads. Fine for vocabularies of a few hundred; slow beyond. Measured
 *    on lavapipe (2-core AVX2 host, under load): V = 30000, B·T = 1024,
 *    C = 768 took 18 s per call, so GPT-2's 50257 is out of reach there.
 *    A sort-based version would first order the positions by token (a
 *    stable counting sort: histogram, prefix sum, order-preserving scatter
 *    into an int [B·T] workspace plus int [V+1] offsets), then let each
 *    (v, c) sum only its own positions, still in ascending position order:
 *    O(B·T·C) work and the same bits as now. It
 *    needs that workspace in the interface, so it is left for when the
 *    vocabulary is large. */
#include <stdio.h>

#include "ops/ops.h"

/* Mirrors the push block of shaders/embed_fwd.comp. */
typedef struct embed_push {
    uint32_t count, base, c, t_len, vocab, off_out, off_tok, off_wte, off_wpe;
} embed_push;
_Static_assert(sizeof(embed_push) <= 128, "push constants fit every device");

/* Mirrors the push block of shaders/embed_bwd_wpe.comp. */
typedef struct wpe_push {
    uint32_t count, base, b, tc, off_dwpe, off_dout;
} wpe_push;
_Static_assert(sizeof(wpe_push) <= 128, "push constants fit every device");

/* Mirrors the push block of shaders/embed_bwd_wte.comp. */
typedef struct wte_push {
    uint32_t bt, c, vocab, v0, off_dwte, off_tok, off_dout;
} wte_push;
_Static_assert(sizeof(wte_push) <= 128, "push constants fit every device");

#define CPU_WG 8u
#define GPU_WG 256u
#define CPU_CH 16u /* channels per CPU-family dwte invocation (CH in the shader) */

static vkt_status check_args(const vkt_ops *ops, const vkt_embed_args *a, const char *op)
{
    VKT_CHECK(vkt__ops_check_dtype(ops, a->t, op));
    VKT_FAIL_IF(!a->b || !a->t_len || !a->c || !a->vocab, VKT_ERR_INVALID_ARG,
                "%s: b=%u t_len=%u c=%u vocab=%u; every dimension must be at least 1", op, a->b,
                a->t_len, a->c, a->vocab);
    uint64_t btc = (uint64_t)a->b * a->t_len * a->c, vc = (uint64_t)a->vocab * a->c;
    VKT_FAIL_IF(btc > UINT32_MAX / 2 || vc > UINT32_MAX / 2, VKT_ERR_INVALID_ARG,
                "%s: b*t_len*c = %llu, vocab*c = %llu; the kernels index in 32 bits, keep "
                "both below 2^31 (split the batch)", op, (unsigned long long)btc,
                (unsigned long long)vc);
    /* llvmpipe ends an invocation after 65535 loop iterations in total
     * (shaders/include/rowreduce.glsl); a dwte lane loops B·T/8 + (matches
     * of its token, at most B·T) times. Other drivers have no such limit. */
    uint64_t bt = (uint64_t)a->b * a->t_len;
    bool cpu_dev = vkt_device_get_caps(vkt__ops_device(ops))->type == VKT_DEVICE_CPU;
    VKT_FAIL_IF(cpu_dev && (bt + 7) / 8 + bt > 65535, VKT_ERR_INVALID_ARG,
                "%s: b*t_len = %llu tokens; a CPU device takes at most 58253 per call (the "
                "dwte scan's loop budget on llvmpipe), split the batch", op,
                (unsigned long long)bt);
    return VKT_OK;
}

static vkt_status bind(vkt_ops *ops, vkt_tref t, uint64_t count, uint32_t es, const char *op,
                       const char *name, vkt_binding *b, uint32_t *first)
{
    char what[64];
    snprintf(what, sizeof what, "%s: %s", op, name);
    return vkt__ops_bind(ops, t, count * es, es, what, b, first);
}

static uint32_t max_groups(const vkt_ops *ops, int dim)
{
    uint32_t m = vkt_device_get_caps(vkt__ops_device(ops))->max_workgroup_count[dim];
    return m < 65535 ? m : 65535;
}

/* out [B,T,C]  <-  tokens [B·T], wte [V,C], wpe [T,C] */
vkt_status vkt_op_embed_fwd(vkt_ops *ops, vkt_stream *s, const vkt_embed_args *a)
{
    VKT_FAIL_IF(!ops || !s || !a, VKT_ERR_INVALID_ARG, "embed_fwd: NULL ops, stream or args");
    VKT_CHECK(check_args(ops, a, "embed_fwd"));
    uint32_t es = (uint32_t)vkt_dtype_size(a->t), bt = a->b * a->t_len;
    vkt_binding b[4];
    uint32_t f[4];
    VKT_CHECK(bind(ops, a->out, (uint64_t)bt * a->c, es, "embed_fwd", "out", &b[0], &f[0]));
    VKT_CHECK(bind(ops, a->tokens, bt, 4, "embed_fwd", "tokens", &b[1], &f[1]));
    VKT_CHECK(bind(ops, a->wte, (uint64_t)a->vocab * a->c, es, "embed_fwd", "wte", &b[2], &f[2]));
    VKT_CHECK(bind(ops, a->wpe, (uint64_t)a->t_len * a->c, es, "embed_fwd", "wpe", &b[3], &f[3]));
    vkt_split sp = vkt__ops_split(ops);
    uint32_t spec[2] = {sp.wg, sp.run};
    char name[32];
    snprintf(name, sizeof name, "embed_fwd_%s", vkt_dtype_name(a->t));
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, name, 4, sizeof(embed_push), spec, 2, &p));
    uint64_t n = (uint64_t)bt * a->c;
    for (uint64_t done = 0; done < n; done += sp.per_dispatch) {
        uint64_t cnt = n - done < sp.per_dispatch ? n - done : sp.per_dispatch;
        embed_push pc = {(uint32_t)cnt, (uint32_t)done, a->c, a->t_len, a->vocab,
                         f[0], f[1], f[2], f[3]};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 4, &pc, sizeof pc, vkt__ops_groups(sp, cnt), 1, 1));
    }
    return VKT_OK;
}

/* dwpe [T,C] += Σ_b dout[b]  <-  dout [B,T,C] */
static vkt_status bwd_wpe(vkt_ops *ops, vkt_stream *s, const vkt_embed_args *a,
                          const vkt_binding *b, const uint32_t *f)
{
    /* Shorter runs than other elementwise kernels: each entry already loops
     * over B (8 per iteration), and llvmpipe ends an invocation after 65535
     * loop iterations (shaders/include/rowreduce.glsl). */
    vkt_split sp = vkt__ops_split(ops);
    uint32_t iters_per_entry = (a->b + 7) / 8, cap = 65535 / iters_per_entry;
    if (sp.run > 16) sp.run = 16;
    if (sp.run > cap) sp.run = cap ? cap : 1;
    sp.per_dispatch = (uint64_t)max_groups(ops, 0) * sp.wg * sp.run;
    uint32_t spec[2] = {sp.wg, sp.run};
    char name[32];
    snprintf(name, sizeof name, "embed_bwd_wpe_%s", vkt_dtype_name(a->t));
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, name, 2, sizeof(wpe_push), spec, 2, &p));
    uint32_t tc = a->t_len * a->c;
    for (uint64_t done = 0; done < tc; done += sp.per_dispatch) {
        uint64_t cnt = tc - done < sp.per_dispatch ? tc - done : sp.per_dispatch;
        wpe_push pc = {(uint32_t)cnt, (uint32_t)done, a->b, tc, f[0], f[1]};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 2, &pc, sizeof pc, vkt__ops_groups(sp, cnt), 1, 1));
    }
    return VKT_OK;
}

/* dwte [V,C] += Σ_{i: tokens[i] = v} dout[i]  <-  tokens [B·T], dout [B·T,C] */
static vkt_status bwd_wte(vkt_ops *ops, vkt_stream *s, const vkt_embed_args *a,
                          const vkt_binding *b, const uint32_t *f)
{
    bool gpu = vkt__ops_family(ops) == VKT_KERNELS_GPU;
    char name[40];
    snprintf(name, sizeof name, "embed_bwd_wte_%s_%s", gpu ? "gpu" : "cpu",
             vkt_dtype_name(a->t));
    uint32_t spec[1] = {gpu ? GPU_WG : CPU_WG};
    const vkt_pipeline *p;
    VKT_CHECK(vkt__ops_pipeline(ops, name, 3, sizeof(wte_push), spec, 1, &p));
    /* x = channel blocks of wg·CH channels, y = vocab rows. */
    uint32_t per_group = gpu ? GPU_WG : CPU_WG * CPU_CH;
    uint32_t cgroups = (a->c + per_group - 1) / per_group;
    VKT_FAIL_IF(cgroups > max_groups(ops, 0), VKT_ERR_INVALID_ARG,
                "embed_bwd: c = %u needs %u workgroups, more than this device allows", a->c,
                cgroups);
    uint32_t per = max_groups(ops, 1);
    for (uint32_t v0 = 0; v0 < a->vocab; v0 += per) {
        uint32_t rows = a->vocab - v0 < per ? a->vocab - v0 : per;
        wte_push pc = {a->b * a->t_len, a->c, a->vocab, v0, f[0], f[1], f[2]};
        VKT_CHECK(vkt_stream_dispatch(s, p, b, 3, &pc, sizeof pc, cgroups, rows, 1));
    }
    return VKT_OK;
}

vkt_status vkt_op_embed_bwd(vkt_ops *ops, vkt_stream *s, const vkt_embed_args *a)
{
    VKT_FAIL_IF(!ops || !s || !a, VKT_ERR_INVALID_ARG, "embed_bwd: NULL ops, stream or args");
    VKT_CHECK(check_args(ops, a, "embed_bwd"));
    uint32_t es = (uint32_t)vkt_dtype_size(a->t), bt = a->b * a->t_len;
    uint64_t btc = (uint64_t)bt * a->c;
    /* Bind everything before recording, so a bad call records nothing. */
    vkt_binding bw[3], bp[2];
    uint32_t fw[3], fp[2];
    VKT_CHECK(bind(ops, a->dwte, (uint64_t)a->vocab * a->c, es, "embed_bwd", "dwte", &bw[0],
                   &fw[0]));
    VKT_CHECK(bind(ops, a->tokens, bt, 4, "embed_bwd", "tokens", &bw[1], &fw[1]));
    VKT_CHECK(bind(ops, a->dout, btc, es, "embed_bwd", "dout", &bw[2], &fw[2]));
    VKT_CHECK(bind(ops, a->dwpe, (uint64_t)a->t_len * a->c, es, "embed_bwd", "dwpe", &bp[0],
                   &fp[0]));
    bp[1] = bw[2], fp[1] = fw[2];
    /* The two dispatches write disjoint outputs: no barrier between them. */
    VKT_CHECK(bwd_wte(ops, s, a, bw, fw));
    return bwd_wpe(ops, s, a, bp, fp);
}
