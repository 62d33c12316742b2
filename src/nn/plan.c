/* Activation memory planning: interval allocation over one arena.
 *
 * Tensors are placed largest first; each goes to the lowest aligned offset
 * where it overlaps (in memory) no already-placed tensor whose lifetime
 * overlaps its own. Greedy
 * by size is not optimal, but it is simple and within a few percent on the
 * layer-repeated graphs of MLPs and transformers. */
#include <stdlib.h>

#include "nn/nn_int.h"

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

typedef struct sized {
    uint64_t bytes;
    uint32_t id;
} sized;

/* Largest first; ties by id, so the plan does not depend on qsort's order. */
static int by_size_desc(const void *a, const void *b)
{
    const sized *x = a, *y = b;
    if (x->bytes != y->bytes) return (x->bytes < y->bytes) - (x->bytes > y->bytes);
    return (x->id > y->id) - (x->id < y->id);
}

static bool lifetimes_overlap(const nn_tensor *a, const nn_tensor *b)
{
    return a->first <= b->last && b->first <= a->last;
}

/* Lowest offset ≥ 0 where t fits among the placed tensors. No window rule
 * is needed: a view is bound from its own aligned offset, so any tensor of
 * at most one window fits a binding wherever it lies. */
static uint64_t place(const nn_graph *g, const uint32_t *placed, uint32_t np, const nn_tensor *t,
                      uint64_t bytes, uint64_t align)
{
    uint64_t at = 0;
    for (;;) {
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
    sized *ids = vkt_malloc((g->nt + 1) * sizeof *ids);
    uint32_t n = 0;
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
        uint64_t bytes = t->numel * vkt_dtype_size(t->dtype);
        ids[n++] = (sized){bytes, i};
        *naive += align_up(bytes, align);
    }
    qsort(ids, n, sizeof *ids, by_size_desc);
    vkt_status st = VKT_OK;
    *arena = align;
    for (uint32_t k = 0; k < n; k++) {
        nn_tensor *t = &g->t[ids[k].id];
        uint64_t bytes = ids[k].bytes;
        if (bytes > window) {
            st = VKT_ERROR(VKT_ERR_UNSUPPORTED,
                           "model: activation '%s' needs %llu bytes, more than one binding "
                           "window (%llu); use a smaller batch", t->name,
                           (unsigned long long)bytes, (unsigned long long)window);
            break;
        }
        t->offset = place(g, placed, np, t, bytes, align);
        placed[np++] = ids[k].id;
        if (t->offset + bytes > *arena) *arena = align_up(t->offset + bytes, align);
    }
    vkt_free(ids);
    vkt_free(placed);
    return st;
}
