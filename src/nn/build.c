/* Per-batch graph building shared by all models: activation tensors, the
 * lifetimes the planner needs, the arena and the input buffers. */
#include <stdio.h>

#include "nn/nn_int.h"

vkt_status vkt__nn_model_new(vkt_device *dev, vkt_dtype t, uint64_t seed, vkt_model **out)
{
    vkt_model *m = vkt_calloc(1, sizeof *m);
    VKT_FAIL_IF(!m, VKT_ERR_NOMEM, "model: out of host memory");
    m->dev = dev;
    m->dtype = t;
    m->seed = seed;
    m->loss_scale = 1.0f;
    vkt_status st = vkt__ops_create(dev, VKT_KERNELS_AUTO, &m->ops);
    if (st != VKT_OK) {
        vkt_free(m);
        return st;
    }
    *out = m;
    return VKT_OK;
}

vkt_status vkt__nn_check_dropout(float p, const char *what)
{
    VKT_FAIL_IF(!(p >= 0.0f && p < 1.0f), VKT_ERR_INVALID_ARG,
                "%s: dropout %g; the drop probability must be in [0, 1) (0: none)", what,
                (double)p);
    return VKT_OK;
}

vkt_status vkt__nn_dropout_setup(vkt_model *m, float p, uint32_t sites)
{
    m->dropout = p;
    m->drop_training = true;
    if (p == 0.0f || sites == 0) return VKT_OK;
    m->drop_sites = sites;
    return vkt_buffer_create(m->dev, VKT_MEMORY_HOST, 4ull * VKT_DROPOUT_STATE_WORDS(sites),
                             &m->drop_state);
}

uint32_t vkt__nn_dropout(vkt_model *m, const char *name, uint32_t x, uint32_t rows,
                         uint32_t cols, uint32_t site)
{
    if (!m->drop_state || x == VKT_NN_NONE) return x;
    nn_graph *g = &m->g;
    uint32_t y = vkt__nn_act(g, name, m->dtype, g->t[x].shape[0], g->t[x].shape[1], true);
    nn_node n = {.kind = N_DROPOUT, .rows = rows, .cout = cols, .site = site,
                 .in = {x, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE},
                 .out = {y, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE}, .scratch = VKT_NN_NONE};
    return y != VKT_NN_NONE && vkt__nn_node(g, n) == VKT_OK ? y : VKT_NN_NONE;
}

uint32_t vkt__nn_act(nn_graph *g, const char *name, vkt_dtype t, uint32_t rows, uint32_t cols,
                     bool with_grad)
{
    uint32_t shape[2] = {rows, cols};
    uint32_t a = vkt__nn_tensor(g, name, T_ACT, t, 2, shape);
    if (a == VKT_NN_NONE || !with_grad) return a;
    char gname[48];
    snprintf(gname, sizeof gname, "d.%s", name);
    uint32_t d = vkt__nn_tensor(g, gname, T_GRAD, t, 2, shape);
    if (d == VKT_NN_NONE) return VKT_NN_NONE;
    g->t[a].grad = d;
    return a;
}

/* Lifetime bookkeeping: tensor id used at planner step s. */
static void use(nn_graph *g, uint32_t id, int s)
{
    if (id == VKT_NN_NONE) return;
    nn_tensor *t = &g->t[id];
    if (t->first < 0 || s < t->first) t->first = s;
    if (s > t->last) t->last = s;
}

/* Forward of node i at step i, its backward at 2N-1-i. A backward reads the
 * node's inputs and saved outputs and the gradient of its outputs, and
 * writes the gradients of its inputs. */
static void lifetimes(nn_graph *g)
{
    int n2 = 2 * (int)g->nn - 1;
    for (uint32_t i = 0; i < g->nn; i++) {
        const nn_node *nd = &g->n[i];
        int f = (int)i, bk = n2 - (int)i;
        for (int k = 0; k < VKT_NN_MAX_IO; k++) {
            uint32_t in = nd->in[k], out = nd->out[k];
            if (in != VKT_NN_NONE && g->t[in].kind == T_ACT) {
                use(g, in, f);
                use(g, in, bk);
                use(g, g->t[in].grad, bk);
            }
            if (out != VKT_NN_NONE && g->t[out].kind == T_ACT) {
                use(g, out, f);
                use(g, g->t[out].grad == VKT_NN_NONE ? out : g->t[out].grad, bk);
            }
        }
        use(g, nd->scratch, bk);
    }
}

static vkt_status make_buffers(vkt_model *m)
{
    nn_graph *g = &m->g;
    const vkt_device_caps *c = vkt_device_get_caps(m->dev);
    uint64_t align = c->min_storage_buffer_alignment > 256 ? c->min_storage_buffer_alignment : 256;
    VKT_CHECK(vkt__nn_plan(g, align, c->max_storage_buffer_range, &m->arena_bytes,
                           &m->arena_naive));
    vkt_buffer_destroy(m->arena);
    m->arena = NULL;
    VKT_CHECK(vkt_buffer_create(m->dev, VKT_MEMORY_DEVICE, m->arena_bytes, &m->arena));
    for (uint32_t i = m->nparams; i < g->nt; i++) {
        nn_tensor *t = &g->t[i];
        if (t->kind != T_INPUT) continue;
        uint64_t bytes = t->numel * vkt_dtype_size(t->dtype);
        VKT_CHECK(vkt_buffer_create(m->dev, VKT_MEMORY_HOST, bytes ? bytes : 4, &t->input));
    }
    return VKT_OK;
}

vkt_status vkt__nn_build(vkt_model *m, uint32_t batch, uint32_t seq)
{
    nn_graph *g = &m->g;
    for (uint32_t i = m->nparams; i < g->nt; i++) vkt_buffer_destroy(g->t[i].input);
    g->nt = m->nparams; /* drop the previous batch's tensors and nodes */
    g->nn = 0;
    m->batch = 0;
    VKT_CHECK(m->gpt ? vkt__nn_gpt_nodes(m, batch, seq) : vkt__nn_mlp_nodes(m, batch));
    lifetimes(g);
    VKT_CHECK(make_buffers(m));
    m->batch = batch;
    m->seq = seq;
    return VKT_OK;
}
