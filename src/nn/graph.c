/* Building the static op list: tensors and nodes. */
#include <stdio.h>
#include <string.h>

#include "nn/nn_int.h"

uint32_t vkt__nn_tensor(nn_graph *g, const char *name, tensor_kind kind, vkt_dtype t,
                        uint32_t ndim, const uint32_t *shape)
{
    if (g->nt == g->capt) {
        uint32_t cap = g->capt ? 2 * g->capt : 32;
        nn_tensor *n = vkt_realloc(g->t, cap * sizeof *n);
        if (!n) return VKT_NN_NONE;
        g->t = n;
        g->capt = cap;
    }
    nn_tensor *x = &g->t[g->nt];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->kind = kind;
    x->dtype = t;
    x->ndim = ndim;
    x->numel = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        x->shape[i] = shape[i];
        x->numel *= shape[i];
    }
    x->grad = VKT_NN_NONE;
    x->first = x->last = -1;
    return g->nt++;
}

vkt_status vkt__nn_node(nn_graph *g, nn_node n)
{
    if (g->nn == g->capn) {
        uint32_t cap = g->capn ? 2 * g->capn : 16;
        nn_node *x = vkt_realloc(g->n, cap * sizeof *x);
        VKT_FAIL_IF(!x, VKT_ERR_NOMEM, "model: out of host memory");
        g->n = x;
        g->capn = cap;
    }
    g->n[g->nn++] = n;
    return VKT_OK;
}

void vkt__nn_graph_free(nn_graph *g)
{
    for (uint32_t i = 0; i < g->nt; i++) vkt_buffer_destroy(g->t[i].input);
    vkt_free(g->t);
    vkt_free(g->n);
    memset(g, 0, sizeof *g);
}
