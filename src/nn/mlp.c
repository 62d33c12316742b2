/* The MLP: x [B, in] → (linear → act)* → linear → logits/pred [B, out] → loss.
 * Parameters in nn.Linear's order and with its default init bounds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn_int.h"

static vkt_status check_opts(vkt_device *dev, const vkt_mlp_opts *o)
{
    VKT_FAIL_IF(!dev || !o, VKT_ERR_INVALID_ARG, "vkt_model_create_mlp: NULL device or opts");
    VKT_FAIL_IF(o->struct_size != sizeof *o, VKT_ERR_INVALID_ARG,
                "vkt_model_create_mlp: initialise opts with VKT_MLP_OPTS_INIT");
    VKT_FAIL_IF(o->layers == 0 || o->layers > 64 || !o->sizes, VKT_ERR_INVALID_ARG,
                "mlp: %u layers; give 1..64 layers and layers+1 sizes", o->layers);
    for (uint32_t i = 0; i <= o->layers; i++)
        VKT_FAIL_IF(o->sizes[i] == 0 || o->sizes[i] > (1u << 20), VKT_ERR_INVALID_ARG,
                    "mlp: size %u of layer boundary %u; each width must be 1..2^20",
                    o->sizes[i], i);
    VKT_FAIL_IF(o->loss != VKT_LOSS_XENT && o->loss != VKT_LOSS_MSE, VKT_ERR_INVALID_ARG,
                "mlp: unknown loss %d", (int)o->loss);
    VKT_FAIL_IF(o->activation != VKT_ACTIVATION_RELU && o->activation != VKT_ACTIVATION_GELU,
                VKT_ERR_INVALID_ARG, "mlp: unknown activation %d", (int)o->activation);
    VKT_FAIL_IF(o->dtype != VKT_DTYPE_F32 && o->dtype != VKT_DTYPE_F16 &&
                    o->dtype != VKT_DTYPE_BF16,
                VKT_ERR_INVALID_ARG, "mlp: compute dtype %s; use f32, f16 or bf16",
                vkt_dtype_name(o->dtype));
    return vkt__nn_check_dropout(o->dropout, "mlp");
}

static vkt_status add_params(vkt_model *m, const vkt_mlp_opts *o)
{
    m->param_ids = vkt_calloc(2 * o->layers, sizeof *m->param_ids);
    VKT_FAIL_IF(!m->param_ids, VKT_ERR_NOMEM, "mlp: out of host memory");
    for (uint32_t i = 0; i < o->layers; i++) {
        char name[48];
        uint32_t wshape[2] = {o->sizes[i + 1], o->sizes[i]};
        float bound = 1.0f / sqrtf((float)o->sizes[i]); /* nn.Linear: U(±1/sqrt(fan_in)) */
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "layers.%u.%s", i, k ? "bias" : "weight");
            uint32_t id = vkt__nn_tensor(&m->g, name, T_PARAM, m->dtype, k ? 1 : 2, wshape);
            VKT_FAIL_IF(id == VKT_NN_NONE, VKT_ERR_NOMEM, "mlp: out of host memory");
            m->g.t[id].init = INIT_UNIFORM;
            m->g.t[id].init_scale = bound;
            m->param_ids[m->nparams++] = id;
        }
    }
    return VKT_OK;
}

vkt_status vkt_model_create_mlp(vkt_device *dev, const vkt_mlp_opts *o, vkt_model **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_model_create_mlp: out is NULL");
    *out = NULL;
    VKT_CHECK(check_opts(dev, o));
    vkt_model *m;
    VKT_CHECK(vkt__nn_model_new(dev, o->dtype, o->seed, &m));
    m->loss = o->loss;
    m->act = o->activation == VKT_ACTIVATION_GELU ? VKT_ACT_GELU : VKT_ACT_RELU;
    m->layers = o->layers;
    m->in_features = o->sizes[0];
    m->out_features = o->sizes[o->layers];
    vkt_status st;
    VKT_CHECK_GOTO(st, add_params(m, o), fail);
    VKT_CHECK_GOTO(st, vkt__nn_params_layout(m), fail);
    VKT_CHECK_GOTO(st, vkt__nn_params_init(m), fail);
    VKT_CHECK_GOTO(st, vkt__nn_dropout_setup(m, o->dropout, o->layers - 1), fail);
    *out = m;
    return VKT_OK;
fail:
    vkt_model_destroy(m);
    return st;
}

vkt_status vkt__nn_mlp_nodes(vkt_model *m, uint32_t b)
{
    nn_graph *g = &m->g;
    uint32_t xs[2] = {b, m->in_features};
    m->x_id = vkt__nn_tensor(g, "input", T_INPUT, m->dtype, 2, xs);
    uint32_t cur = m->x_id;
    for (uint32_t i = 0; i < m->layers; i++) {
        const nn_tensor *w = &g->t[m->param_ids[2 * i]];
        uint32_t cin = w->shape[1], cout = w->shape[0];
        char name[48];
        snprintf(name, sizeof name, "layers.%u.out", i);
        uint32_t h = vkt__nn_act(g, name, m->dtype, b, cout, true);
        VKT_FAIL_IF(h == VKT_NN_NONE || cur == VKT_NN_NONE, VKT_ERR_NOMEM, "mlp: out of memory");
        nn_node lin = {.kind = N_LINEAR, .rows = b, .cin = cin, .cout = cout,
                       .in = {cur, m->param_ids[2 * i], m->param_ids[2 * i + 1], VKT_NN_NONE},
                       .out = {h, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE},
                       .scratch = VKT_NN_NONE};
        VKT_CHECK(vkt__nn_node(g, lin));
        cur = h;
        if (i + 1 == m->layers) break;
        snprintf(name, sizeof name, "layers.%u.act", i);
        uint32_t a = vkt__nn_act(g, name, m->dtype, b, cout, true);
        VKT_FAIL_IF(a == VKT_NN_NONE, VKT_ERR_NOMEM, "mlp: out of memory");
        nn_node act = {.kind = N_ACT, .rows = b, .cout = cout, .act = m->act,
                       .in = {cur, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE},
                       .out = {a, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE},
                       .scratch = VKT_NN_NONE};
        VKT_CHECK(vkt__nn_node(g, act));
        snprintf(name, sizeof name, "layers.%u.drop", i);
        cur = vkt__nn_dropout(m, name, a, b, cout, i); /* site i: hidden layer i */
        VKT_FAIL_IF(cur == VKT_NN_NONE, VKT_ERR_NOMEM, "mlp: out of memory");
    }
    return vkt__nn_loss_node(m, cur, b);
}
