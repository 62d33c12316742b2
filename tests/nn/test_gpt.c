/* The GPT (2 layers, 4 heads, width 128, context 64, vocabulary 64) against
 * PyTorch (fixture from tools/fixtures/make_gpt_fixture.py): from the same
 * weights and batch, the loss and every parameter gradient, then 5 AdamW
 * steps' losses (dropout: test_gpt_dropout). fp32 tolerances: loss 1e-5
 * relative; gradients 1e-4 of the largest gradient (long fp32 reductions —
 * attention over 64 positions, LayerNorm over 128 channels, a 4096-row
 * batch — in another order than PyTorch's); losses after steps 1e-4. */
#include <stdlib.h>

#include "fixture.h"
#include "nn/nn_int.h"
#include "test_gpu.h"

/* The planner's promise: tensors alive at the same time never share bytes. */
static void check_plan(const vkt_model *m)
{
    const nn_graph *g = &m->g;
    int pairs = 0;
    for (uint32_t i = 0; i < g->nt; i++)
        for (uint32_t j = i + 1; j < g->nt; j++) {
            const nn_tensor *a = &g->t[i], *b = &g->t[j];
            if ((a->kind != T_ACT && a->kind != T_GRAD) || (b->kind != T_ACT && b->kind != T_GRAD))
                continue;
            if (a->first > b->last || b->first > a->last) continue;
            uint64_t ea = a->offset + a->numel * vkt_dtype_size(a->dtype);
            uint64_t eb = b->offset + b->numel * vkt_dtype_size(b->dtype);
            if (a->offset < eb && b->offset < ea)
                fail_msg("%s [%d,%d] and %s [%d,%d] overlap in the arena", a->name, a->first,
                         a->last, b->name, b->first, b->last);
            pairs++;
        }
    print_message("  planner: %d live pairs checked, none overlap\n", pairs);
}

static void test_gpt_against_pytorch(void **state)
{
    vkt_device *dev = *state;
    fixture *f = fixture_load("gpt_small.bin");
    vkt_gpt_opts o = VKT_GPT_OPTS_INIT;
    o.vocab = 64;
    o.context = 64;
    o.layers = 2;
    o.heads = 4;
    o.channels = 128;
    vkt_model *m = NULL;
    assert_vkt_ok(vkt_model_create_gpt(dev, &o, &m));
    size_t np, nt;
    const float *p0 = fixture_f32(f, "params0", &np);
    assert_int_equal(vkt_model_num_params(m), np);
    assert_vkt_ok(vkt_model_set_params(m, p0));
    const int32_t *tok = fixture_i32(f, "tokens0", &nt);
    vkt_batch b = {.size = 2, .seq_len = 64, .tokens = tok,
                   .labels = fixture_i32(f, "labels0", NULL)};
    float loss;
    assert_vkt_ok(vkt_model_forward(m, &b, &loss));
    fixture_expect_close("loss", &loss, fixture_f32(f, "loss0", NULL), 1, 1e-5);
    check_plan(m);
    assert_vkt_ok(vkt_model_backward(m));
    float *g = malloc(np * 4);
    assert_vkt_ok(vkt_model_get_grads(m, g));
    /* per tensor, so a failure names the layer */
    const float *want = fixture_f32(f, "grads0", NULL);
    uint64_t at = 0;
    for (uint32_t i = 0; i < vkt_model_param_count(m); i++) {
        vkt_param_info pi;
        assert_vkt_ok(vkt_model_param_info(m, i, &pi));
        fixture_expect_close(pi.name, g + at, want + at, pi.numel, 1e-4);
        at += pi.numel;
    }
    size_t ns;
    const float *want_losses = fixture_f32(f, "losses", &ns);
    float losses[8];
    vkt_optim_opts opt = VKT_OPTIM_OPTS_INIT;
    opt.type = VKT_OPTIM_ADAMW;
    opt.weight_decay = 0.01f;
    assert_vkt_ok(vkt_model_zero_grad(m));
    for (size_t s = 0; s < ns; s++) {
        vkt_batch bs = {.size = 2, .seq_len = 64,
                        .tokens = fixture_i32(f, "tokens", NULL) + s * 128,
                        .labels = fixture_i32(f, "labels", NULL) + s * 128};
        assert_vkt_ok(vkt_model_zero_grad(m));
        assert_vkt_ok(vkt_model_forward(m, &bs, &losses[s]));
        assert_vkt_ok(vkt_model_backward(m));
        assert_vkt_ok(vkt_model_step(m, &opt, 1e-3f));
    }
    fixture_expect_close("5 AdamW losses", losses, want_losses, ns, 1e-4);
    vkt_model_memory mem;
    vkt_model_memory_report(m, &mem);
    print_message("  activations: %.2f MiB planned, %.2f MiB without reuse\n",
                  mem.activations_planned / 1048576.0, mem.activations_naive / 1048576.0);
    assert_true(mem.activations_planned < mem.activations_naive);
    free(g);
    vkt_model_destroy(m);
    fixture_free(f);
}

/* ---- dropout ---------------------------------------------------------------- */

#define DG_B 4
#define DG_T 8
#define DG_V 32

static vkt_model *dropout_gpt(vkt_device *dev, float p)
{
    vkt_gpt_opts o = VKT_GPT_OPTS_INIT;
    o.vocab = DG_V;
    o.context = DG_T;
    o.layers = 2;
    o.heads = 2;
    o.channels = 16;
    o.seed = 3;
    o.dropout = p;
    vkt_model *m = NULL;
    assert_vkt_ok(vkt_model_create_gpt(dev, &o, &m));
    return m;
}

/* Forward of sequences [s, s + n) of a fixed batch at first_sample fs (the
 * logits into out); with g, the backward's gradients into g. */
static float dg_run(vkt_model *m, uint32_t s, uint32_t n, uint64_t fs, float *out, float *g)
{
    int32_t tok[DG_B * DG_T], lab[DG_B * DG_T];
    for (int i = 0; i < DG_B * DG_T; i++) {
        tok[i] = (i * 7 + 3) % DG_V;
        lab[i] = (i * 5 + 1) % DG_V;
    }
    vkt_batch b = {.size = n, .seq_len = DG_T, .tokens = tok + s * DG_T, .labels = lab + s * DG_T,
                   .first_sample = fs, .loss_denominator = DG_B * DG_T};
    float loss;
    assert_vkt_ok(vkt_model_zero_grad(m));
    assert_vkt_ok(vkt_model_forward(m, &b, &loss));
    if (out) assert_vkt_ok(vkt_model_get_outputs(m, out));
    if (g) {
        assert_vkt_ok(vkt_model_backward(m));
        assert_vkt_ok(vkt_model_get_grads(m, g));
    }
    return loss;
}

/* Dropout in the GPT (embedding, attention and MLP projections): the graph
 * has 1 + 2·layers dropout nodes; evaluation equals the model without
 * dropout bit for bit (loss, logits, gradients); training differs, repeats
 * for the same (step, first_sample), changes with the step; sequences
 * [2, 4) at first_sample 10 equal those two alone at first_sample 12. */
static void test_gpt_dropout(void **state)
{
    vkt_device *dev = *state;
    vkt_model *m = dropout_gpt(dev, 0.2f), *plain = dropout_gpt(dev, 0.0f);
    uint64_t n = vkt_model_num_params(m);
    size_t no = (size_t)DG_B * DG_T * DG_V;
    float *ga = malloc(n * 4), *gb = malloc(n * 4), *oa = malloc(no * 4), *ob = malloc(no * 4);
    assert_vkt_ok(vkt_model_set_dropout(m, false, 3));
    float le = dg_run(m, 0, DG_B, 10, oa, ga), lp = dg_run(plain, 0, DG_B, 10, ob, gb);
    uint32_t nodes = 0;
    for (uint32_t i = 0; i < m->g.nn; i++) nodes += m->g.n[i].kind == N_DROPOUT;
    assert_int_equal(nodes, 1 + 2 * 2);
    for (uint32_t i = 0; i < plain->g.nn; i++) assert_int_not_equal(plain->g.n[i].kind, N_DROPOUT);
    assert_memory_equal(&le, &lp, 4);
    assert_memory_equal(oa, ob, no * 4);
    assert_memory_equal(ga, gb, n * 4);
    assert_vkt_ok(vkt_model_set_dropout(m, true, 3));
    float l1 = dg_run(m, 0, DG_B, 10, oa, ga), l2 = dg_run(m, 0, DG_B, 10, NULL, gb);
    assert_true(l1 != le);
    assert_memory_equal(&l1, &l2, 4);
    assert_memory_equal(ga, gb, n * 4); /* the backward's mask is the forward's, both times */
    assert_vkt_ok(vkt_model_set_dropout(m, true, 4));
    float l3 = dg_run(m, 0, DG_B, 10, NULL, NULL);
    assert_true(l3 != l1);
    assert_vkt_ok(vkt_model_set_dropout(m, true, 3));
    dg_run(m, 2, 2, 12, ob, NULL);
    assert_memory_equal(oa + no / 2, ob, no / 2 * 4);
    print_message("gpt dropout p=0.2: %u nodes; eval %.6f (= no dropout), step 3 %.6f twice, "
                  "step 4 %.6f; sequences 2..3 alone at first_sample 12 = in the batch\n",
                  nodes, (double)le, (double)l1, (double)l3);
    free(ga), free(gb), free(oa), free(ob);
    vkt_model_destroy(m);
    vkt_model_destroy(plain);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_gpt_against_pytorch),
                                       cmocka_unit_test(test_gpt_dropout)};
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
