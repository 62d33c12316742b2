/* Activation memory planning: interval allocation over one arena.
 *
 * Tensors are placed largest first; each goes to the lowest aligned offset
 * where it overlaps (in memory) no already-placed tensor whose lifetime
 * overlaps its own, and where it does not straddle a binding window. Greedy
 * by size is not optimal, but it is simple and within a few percent on the
 * layer-repeated graphs of MLPs and transformers. */
#include <stdlib.h>

#include "nn/nn_int.h"

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static const nn_graph *sort_graph; /* qsort has no context argument */

static int by_size_desc(const void *a, const void *b)
{
    const nn_tensor *x = &sort_graph->t[*(const uint32_t *)a];
    const nn_tensor *y = &sort_graph->t[*(const uint32_t *)b];
    uint64_t sx = x->numel * vkt_dtype_size(x->dtype), sy = y->numel * vkt_dtype_size(y->dtype);
    return (sx < sy) - (sx > sy);
}

static bool lifetimes_overlap(const nn_tensor *a, const nn_tensor *b)
{
    return a->first <= b->last && b->first <= a->last;
}

/* Lowest offset ≥ 0 where t fits among the placed tensors. */
static uint64_t place(const nn_graph *g, const uint32_t *placed, uint32_t np, const nn_tensor *t,
                      uint64_t bytes, uint64_t align, uint64_t window)
{
    uint64_t at = 0;
    for (;;) {
        if (at / window != (at + bytes - 1) / window) at = align_up(at, window);
        bool moved = false;
        for (uint32_t i = 0; i < np && !moved; i++) {
            const nn_tensor *o = &g->t[placed[i]];
            uint64_t ob = o->numel * vkt_dtype_size(o->dtype);
            if (!lifetimes_overlap(o, t) || at >= o->offset + ob || o->offset >= at + bytes)
                continue;
            at = align_up(o->offset + ob, align);
            moved = true;
        }
        if (!moved) return at;
    }
}

vkt_status vkt__nn_plan(nn_graph *g, uint64_t align, uint64_t window, uint64_t *arena,
                        uint64_t *naive)
{
    uint32_t *ids = vkt_malloc((g->nt + 1) * sizeof *ids), n = 0;
    uint32_t *placed = vkt_malloc((g->nt + 1) * sizeof *placed), np = 0;
    if (!ids || !placed) {
        vkt_free(ids);
        vkt_free(placed);
        return VKT_ERROR(VKT_ERR_NOMEM, "model: out of host memory planning activations");
    }
    *naive = 0;
    for (uint32_t i = 0; i < g->nt; i++) {
        nn_tensor *t = &g->t[i];
        if (t->kind != T_ACT && t->kind != T_GRAD) continue;
        if (t->first < 0) t->first = t->last = 0; /* unused: still gets a place */
        ids[n++] = i;
        *naive += align_up(t->numel * vkt_dtype_size(t->dtype), align);
    }
    sort_graph = g;
    qsort(ids, n, sizeof *ids, by_size_desc);
    vkt_status st = VKT_OK;
    *arena = align;
    for (uint32_t k = 0; k < n; k++) {
        nn_tensor *t = &g->t[ids[k]];
        uint64_t bytes = t->numel * vkt_dtype_size(t->dtype);
        if (bytes > window) {
            st = VKT_ERROR(VKT_ERR_UNSUPPORTED,
                           "model: activation '%s' needs %llu bytes, more than one binding "
                           "window (%llu); use a smaller batch", t->name,
                           (unsigned long long)bytes, (unsigned long long)window);
            break;
        }
        t->offset = place(g, placed, np, t, bytes, align, window);
        placed[np++] = ids[k];
        if (t->offset + bytes > *arena) *arena = align_up(t->offset + bytes, align);
    }
    vkt_free(ids);
    vkt_free(placed);
    return st;
}
