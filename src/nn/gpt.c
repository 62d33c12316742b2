/* GPT-2 (see vktrain/nn.h for the architecture, names and init).
 * Shapes: B sequences, T positions, C channels, V vocabulary, nh heads. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn_int.h"

static vkt_status check_opts(vkt_device *dev, const vkt_gpt_opts *o)
{
    VKT_FAIL_IF(!dev || !o, VKT_ERR_INVALID_ARG, "vkt_model_create_gpt: NULL device or opts");
    VKT_FAIL_IF(o->struct_size != sizeof *o, VKT_ERR_INVALID_ARG,
                "vkt_model_create_gpt: initialise opts with VKT_GPT_OPTS_INIT");
    VKT_FAIL_IF(o->vocab < 2 || o->context < 1 || o->layers < 1 || o->layers > 256 ||
                    o->heads < 1 || o->channels < o->heads || o->channels % o->heads,
                VKT_ERR_INVALID_ARG,
                "gpt: vocab %u, context %u, layers %u, heads %u, channels %u: need vocab >= 2, "
                "context >= 1, 1..256 layers and channels divisible by heads", o->vocab,
                o->context, o->layers, o->heads, o->channels);
    VKT_FAIL_IF(o->dtype != VKT_DTYPE_F32 && o->dtype != VKT_DTYPE_F16 &&
                    o->dtype != VKT_DTYPE_BF16,
                VKT_ERR_INVALID_ARG, "gpt: compute dtype %s; use f32, f16 or bf16",
                vkt_dtype_name(o->dtype));
    return vkt__nn_check_dropout(o->dropout, "gpt");
}

static uint32_t param(vkt_model *m, const char *name, uint32_t ndim, uint32_t d0, uint32_t d1,
                      init_rule rule, float scale)
{
    uint32_t shape[2] = {d0, d1};
    uint32_t id = vkt__nn_tensor(&m->g, name, T_PARAM, m->dtype, ndim, shape);
    if (id == VKT_NN_NONE) return id;
    m->g.t[id].init = (uint8_t)rule;
    m->g.t[id].init_scale = scale;
    m->param_ids[m->nparams++] = id;
    return id;
}

static vkt_status add_params(vkt_model *m)
{
    uint32_t C = m->channels, L = m->layers;
    m->param_ids = vkt_calloc(2 + 12 * L + 2, sizeof *m->param_ids);
    VKT_FAIL_IF(!m->param_ids, VKT_ERR_NOMEM, "gpt: out of host memory");
    float proj_std = 0.02f / sqrtf(2.0f * (float)L);
    bool ok = param(m, "wte.weight", 2, m->vocab, C, INIT_NORMAL, 0.02f) != VKT_NN_NONE &&
              param(m, "wpe.weight", 2, m->context, C, INIT_NORMAL, 0.02f) != VKT_NN_NONE;
    for (uint32_t l = 0; l < L && ok; l++) {
        struct { const char *name; uint32_t ndim, d0, d1; init_rule r; float s; } p[12] = {
            {"ln_1.weight", 1, C, 0, INIT_ONES, 0}, {"ln_1.bias", 1, C, 0, INIT_ZEROS, 0},
            {"attn.c_attn.weight", 2, 3 * C, C, INIT_NORMAL, 0.02f},
            {"attn.c_attn.bias", 1, 3 * C, 0, INIT_ZEROS, 0},
            {"attn.c_proj.weight", 2, C, C, INIT_NORMAL, proj_std},
            {"attn.c_proj.bias", 1, C, 0, INIT_ZEROS, 0},
            {"ln_2.weight", 1, C, 0, INIT_ONES, 0}, {"ln_2.bias", 1, C, 0, INIT_ZEROS, 0},
            {"mlp.c_fc.weight", 2, 4 * C, C, INIT_NORMAL, 0.02f},
            {"mlp.c_fc.bias", 1, 4 * C, 0, INIT_ZEROS, 0},
            {"mlp.c_proj.weight", 2, C, 4 * C, INIT_NORMAL, proj_std},
            {"mlp.c_proj.bias", 1, C, 0, INIT_ZEROS, 0}};
        for (int k = 0; k < 12 && ok; k++) {
            char name[48];
            snprintf(name, sizeof name, "h.%u.%s", l, p[k].name);
            ok = param(m, name, p[k].ndim, p[k].d0, p[k].d1, p[k].r, p[k].s) != VKT_NN_NONE;
        }
    }
    ok = ok && param(m, "ln_f.weight", 1, C, 0, INIT_ONES, 0) != VKT_NN_NONE &&
         param(m, "ln_f.bias", 1, C, 0, INIT_ZEROS, 0) != VKT_NN_NONE;
    VKT_FAIL_IF(!ok, VKT_ERR_NOMEM, "gpt: out of host memory");
    return VKT_OK;
}

vkt_status vkt_model_create_gpt(vkt_device *dev, const vkt_gpt_opts *o, vkt_model **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_model_create_gpt: out is NULL");
    *out = NULL;
    VKT_CHECK(check_opts(dev, o));
    vkt_model *m;
    VKT_CHECK(vkt__nn_model_new(dev, o->dtype, o->seed, &m));
    m->gpt = true;
    m->loss = VKT_LOSS_XENT;
    m->vocab = o->vocab;
    m->context = o->context;
    m->layers = o->layers;
    m->heads = o->heads;
    m->channels = o->channels;
    m->out_features = o->vocab;
    vkt_status st;
    VKT_CHECK_GOTO(st, add_params(m), fail);
    VKT_CHECK_GOTO(st, vkt__nn_params_layout(m), fail);
    VKT_CHECK_GOTO(st, vkt__nn_params_init(m), fail);
    /* sites: 0 the embedding, 1 + 2l block l's attention, 2 + 2l its MLP */
    VKT_CHECK_GOTO(st, vkt__nn_dropout_setup(m, o->dropout, 1 + 2 * o->layers), fail);
    *out = m;
    return VKT_OK;
fail:
    vkt_model_destroy(m);
    return st;
}

#define NONE4 {VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE}

/* y = LN(x) with weight/bias params p[0], p[1]; returns y or NONE. */
static uint32_t layernorm(vkt_model *m, const char *name, uint32_t x, const uint32_t *p,
                          uint32_t rows)
{
    nn_graph *g = &m->g;
    char n2[48];
    uint32_t y = vkt__nn_act(g, name, m->dtype, rows, m->channels, true);
    snprintf(n2, sizeof n2, "%s.mean", name);
    uint32_t mean = vkt__nn_act(g, n2, VKT_DTYPE_F32, rows, 1, false);
    snprintf(n2, sizeof n2, "%s.rstd", name);
    uint32_t rstd = vkt__nn_act(g, n2, VKT_DTYPE_F32, rows, 1, false);
    if (y == VKT_NN_NONE || mean == VKT_NN_NONE || rstd == VKT_NN_NONE) return VKT_NN_NONE;
    nn_node n = {.kind = N_LAYERNORM, .rows = rows, .cout = m->channels, .eps = 1e-5f,
                 .in = {x, p[0], p[1], VKT_NN_NONE}, .out = {y, mean, rstd, VKT_NN_NONE},
                 .scratch = VKT_NN_NONE};
    return vkt__nn_node(g, n) == VKT_OK ? y : VKT_NN_NONE;
}

/* y = x · Wᵀ + b (b may be NONE); returns y or NONE. */
static uint32_t linear(vkt_model *m, const char *name, uint32_t x, uint32_t w, uint32_t b,
                       uint32_t rows)
{
    const nn_tensor *wt = &m->g.t[w];
    uint32_t y = vkt__nn_act(&m->g, name, m->dtype, rows, wt->shape[0], true);
    nn_node n = {.kind = N_LINEAR, .rows = rows, .cin = wt->shape[1], .cout = wt->shape[0],
                 .in = {x, w, b, VKT_NN_NONE}, .out = {y, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE},
                 .scratch = VKT_NN_NONE};
    return y != VKT_NN_NONE && vkt__nn_node(&m->g, n) == VKT_OK ? y : VKT_NN_NONE;
}

static uint32_t unary(vkt_model *m, node_kind kind, const char *name, uint32_t a, uint32_t b,
                      uint32_t rows, uint32_t cols)
{
    uint32_t y = vkt__nn_act(&m->g, name, m->dtype, rows, cols, true);
    nn_node n = {.kind = kind, .rows = rows, .cout = cols, .act = VKT_ACT_GELU,
                 .in = {a, b, VKT_NN_NONE, VKT_NN_NONE},
                 .out = {y, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE}, .scratch = VKT_NN_NONE};
    return y != VKT_NN_NONE && vkt__nn_node(&m->g, n) == VKT_OK ? y : VKT_NN_NONE;
}

static uint32_t attention(vkt_model *m, uint32_t l, uint32_t qkv, uint32_t b, uint32_t t)
{
    nn_graph *g = &m->g;
    char name[48];
    uint32_t rows = b * t;
    snprintf(name, sizeof name, "h.%u.attn.y", l);
    uint32_t y = vkt__nn_act(g, name, m->dtype, rows, m->channels, true);
    snprintf(name, sizeof name, "h.%u.attn.att", l);
    uint32_t att = vkt__nn_act(g, name, VKT_DTYPE_F32, b * m->heads * t, t, false);
    snprintf(name, sizeof name, "h.%u.attn.datt", l);
    uint32_t datt = vkt__nn_act(g, name, VKT_DTYPE_F32, b * m->heads * t, t, false);
    if (y == VKT_NN_NONE || att == VKT_NN_NONE || datt == VKT_NN_NONE) return VKT_NN_NONE;
    nn_node n = {.kind = N_ATTENTION, .rows = rows, .cout = m->channels, .b = b, .t_len = t,
                 .heads = m->heads, .in = {qkv, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE},
                 .out = {y, att, VKT_NN_NONE, VKT_NN_NONE}, .scratch = datt};
    return vkt__nn_node(g, n) == VKT_OK ? y : VKT_NN_NONE;
}

/* One pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(·)). */
static uint32_t block(vkt_model *m, uint32_t l, uint32_t x, uint32_t b, uint32_t t)
{
    const uint32_t *p = &m->param_ids[2 + 12 * l];
    uint32_t rows = b * t, C = m->channels;
    char name[48];
#define NAME(s) (snprintf(name, sizeof name, "h.%u.%s", l, s), name)
    uint32_t h = layernorm(m, NAME("ln_1"), x, &p[0], rows);
    if (h != VKT_NN_NONE) h = linear(m, NAME("attn.qkv"), h, p[2], p[3], rows);
    if (h != VKT_NN_NONE) h = attention(m, l, h, b, t);
    if (h != VKT_NN_NONE) h = linear(m, NAME("attn.proj"), h, p[4], p[5], rows);
    h = vkt__nn_dropout(m, NAME("attn.drop"), h, b, t * C, 1 + 2 * l);
    if (h != VKT_NN_NONE) x = unary(m, N_ADD, NAME("res_1"), x, h, rows, C);
    h = x != VKT_NN_NONE ? layernorm(m, NAME("ln_2"), x, &p[6], rows) : VKT_NN_NONE;
    if (h != VKT_NN_NONE) h = linear(m, NAME("mlp.fc"), h, p[8], p[9], rows);
    if (h != VKT_NN_NONE) h = unary(m, N_ACT, NAME("mlp.gelu"), h, VKT_NN_NONE, rows, 4 * C);
    if (h != VKT_NN_NONE) h = linear(m, NAME("mlp.proj"), h, p[10], p[11], rows);
    h = vkt__nn_dropout(m, NAME("mlp.drop"), h, b, t * C, 2 + 2 * l);
    return h != VKT_NN_NONE ? unary(m, N_ADD, NAME("res_2"), x, h, rows, C) : VKT_NN_NONE;
#undef NAME
}

vkt_status vkt__nn_gpt_nodes(vkt_model *m, uint32_t b, uint32_t t)
{
    nn_graph *g = &m->g;
    uint32_t rows = b * t, bt[1] = {rows};
    m->x_id = vkt__nn_tensor(g, "tokens", T_INPUT, VKT_DTYPE_I32, 1, bt);
    uint32_t x = vkt__nn_act(g, "embed", m->dtype, rows, m->channels, true);
    VKT_FAIL_IF(m->x_id == VKT_NN_NONE || x == VKT_NN_NONE, VKT_ERR_NOMEM, "gpt: out of memory");
    nn_node e = {.kind = N_EMBED, .rows = rows, .cout = m->channels, .b = b, .t_len = t,
                 .vocab = m->vocab, .in = {m->x_id, m->param_ids[0], m->param_ids[1], VKT_NN_NONE},
                 .out = {x, VKT_NN_NONE, VKT_NN_NONE, VKT_NN_NONE}, .scratch = VKT_NN_NONE};
    VKT_CHECK(vkt__nn_node(g, e));
    /* per sequence: its t·C elements ([B·T, C] rows of one sequence are adjacent) */
    x = vkt__nn_dropout(m, "embed.drop", x, b, t * m->channels, 0);
    for (uint32_t l = 0; l < m->layers && x != VKT_NN_NONE; l++) x = block(m, l, x, b, t);
    const uint32_t *lnf = &m->param_ids[2 + 12 * m->layers];
    if (x != VKT_NN_NONE) x = layernorm(m, "ln_f", x, lnf, rows);
    /* tied head: logits [B·T, V] = x · wteᵀ */
    if (x != VKT_NN_NONE) x = linear(m, "logits", x, m->param_ids[0], VKT_NN_NONE, rows);
    VKT_FAIL_IF(x == VKT_NN_NONE, VKT_ERR_NOMEM, "gpt: out of host memory building the graph");
    return vkt__nn_loss_node(m, x, rows);
}
