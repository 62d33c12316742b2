/* Gradient buckets and backward segments, loss scaling, the gradient sum of
 * squares and the scaled step, on the real device:
 * - an MLP with one bucket per layer has one segment per layer, the last
 *   layer's bucket final first, and the same gradients as one segment;
 *   a bucket read as soon as its segment signals already holds its final
 *   gradients;
 * - the GPT's tied wte (used by the first and the last node) is final only
 *   in the last segment;
 * - gradient slots (ZeRO-2): a slot is reused only by a bucket first written
 *   two segments after its previous bucket was final, the tied wte keeps
 *   one slot for the whole backward, fewer slots than buckets, and each
 *   slot's last bucket holds the same gradients as the whole-size buffer;
 * - gather slots (ZeRO-3): every group a segment reads is resident in a
 *   slot, slots are reused two segments after their last reader, fewer
 *   slots than groups, and a forward over hand-filled slots gives the plain
 *   forward's loss bit for bit;
 * - DeepSpeed's shard layout (vkt__nn_relayout into buckets padded to
 *   3 x 64 elements, a binding window of 512 elements) keeps every weight,
 *   puts whole parameters in each bucket, none across a window, and gives
 *   the same loss and gradients bit for bit; over a shard of one piece per
 *   bucket (the middle third of each: rank 1 of 3) Σg² sums those elements
 *   and a step updates exactly them as the whole step does, no others;
 * - loss scale 1024 gives exactly 1024× the gradients (powers of two scale
 *   exactly in binary floating point), grad_scale 1/1024 in the step undoes
 *   it exactly, Σg² matches the host, a NaN input makes Σg² not finite. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"
#include "test_gpu.h"

static const uint32_t sizes[] = {12, 20, 16, 24, 5};
#define LAYERS 4
#define ROWS 9

static vkt_model *mlp(vkt_device *dev)
{
    vkt_mlp_opts o = VKT_MLP_OPTS_INIT;
    o.layers = LAYERS;
    o.sizes = sizes;
    o.activation = VKT_ACTIVATION_GELU;
    o.seed = 7;
    vkt_model *m = NULL;
    assert_vkt_ok(vkt_model_create_mlp(dev, &o, &m));
    return m;
}

typedef struct data {
    float x[ROWS * 12];
    int32_t y[ROWS];
    vkt_batch b;
} data;

static void make_data(data *d)
{
    tgpu_fill_random(d->x, ROWS * 12, 99);
    for (int i = 0; i < ROWS; i++) d->y[i] = (i * 7) % 5;
    d->b = (vkt_batch){.size = ROWS, .inputs = d->x, .labels = d->y};
}

/* Gradients of one forward/backward, in the padded flat layout order
 * (dense, state_dict order). */
static float *grads_of(vkt_model *m, const vkt_batch *b)
{
    size_t n = vkt_model_num_params(m);
    float *g = malloc(n * 4);
    assert_vkt_ok(vkt_model_zero_grad(m));
    assert_vkt_ok(vkt_model_forward(m, b, NULL));
    assert_vkt_ok(vkt_model_backward(m));
    assert_vkt_ok(vkt_model_get_grads(m, g));
    return g;
}

/* Dense index of the first element of parameter p. */
static uint64_t dense_at(const vkt_model *m, uint32_t p)
{
    uint64_t at = 0;
    for (uint32_t i = 0; i < p; i++) {
        vkt_param_info pi;
        vkt_model_param_info(m, i, &pi);
        at += pi.numel;
    }
    return at;
}

static void test_mlp_segments(void **state)
{
    vkt_device *dev = *state;
    vkt_model *m = mlp(dev);
    data d;
    make_data(&d);
    float *ref = grads_of(m, &d.b);
    assert_int_equal(vkt_model_backward_segments(m), 1);

    /* One bucket per layer: [weight, bias] of layer l end where layer l+1's
     * weight starts. */
    uint64_t ends[LAYERS];
    for (uint32_t l = 0; l < LAYERS; l++) {
        vkt_param_info pi;
        if (l + 1 < LAYERS) {
            assert_vkt_ok(vkt_model_param_info(m, 2 * (l + 1), &pi));
            ends[l] = pi.offset;
        } else {
            ends[l] = vkt_model_flat_size(m);
        }
    }
    assert_vkt_ok(vkt_model_set_grad_buckets(m, LAYERS, ends));
    vkt_timeline *tl;
    assert_vkt_ok(vkt_timeline_create(dev, 0, &tl));
    size_t n = vkt_model_num_params(m);
    float *g = malloc(n * 4);
    for (int round = 0; round < 3; round++) {
        uint64_t base = 100 * (uint64_t)(round + 1);
        assert_vkt_ok(vkt_model_zero_grad(m));
        assert_vkt_ok(vkt_model_forward(m, &d.b, NULL));
        assert_vkt_ok(vkt_model_backward_submit(m, tl, base));
        assert_int_equal(vkt_model_backward_segments(m), LAYERS);
        /* Buckets finish in reverse layer order, one per segment. */
        for (uint32_t l = 0; l < LAYERS; l++)
            assert_int_equal(vkt_model_bucket_segment(m, l), LAYERS - 1 - l);
        /* The last layer's bucket, read as soon as its segment signals,
         * already has its final values. */
        assert_vkt_ok(vkt_timeline_wait(tl, base + 1, UINT64_MAX));
        assert_vkt_ok(vkt_model_get_grads(m, g));
        uint64_t from = dense_at(m, 2 * (LAYERS - 1));
        assert_memory_equal(g + from, ref + from, (n - from) * 4);
        assert_vkt_ok(vkt_timeline_wait(tl, base + LAYERS, UINT64_MAX));
        assert_vkt_ok(vkt_model_backward_wait(m));
        assert_vkt_ok(vkt_model_get_grads(m, g));
        assert_memory_equal(g, ref, n * 4); /* the same ops in the same order */
    }
    /* Bad bucket lists are refused with a reason. */
    uint64_t bad[2] = {ends[1], ends[0]};
    assert_int_equal(vkt_model_set_grad_buckets(m, 2, bad), VKT_ERR_INVALID_ARG);
    uint64_t short_end[1] = {ends[0]};
    assert_int_equal(vkt_model_set_grad_buckets(m, 1, short_end), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "flat size"));
    /* Back to one segment. */
    assert_vkt_ok(vkt_model_set_grad_buckets(m, 0, NULL));
    float *again = grads_of(m, &d.b);
    assert_int_equal(vkt_model_backward_segments(m), 1);
    assert_memory_equal(again, ref, n * 4);
    free(again);
    free(g);
    free(ref);
    vkt_timeline_destroy(tl);
    vkt_model_destroy(m);
}

/* GPT: a bucket per parameter tensor. The tied wte is written by the head
 * (the last node) and the embedding (the first): final only at the end. */
static void test_gpt_tied_weight(void **state)
{
    vkt_device *dev = *state;
    vkt_gpt_opts o = VKT_GPT_OPTS_INIT;
    o.vocab = 40;
    o.context = 8;
    o.layers = 2;
    o.heads = 2;
    o.channels = 16;
    o.seed = 3;
    vkt_model *m = NULL;
    assert_vkt_ok(vkt_model_create_gpt(dev, &o, &m));
    uint32_t np = vkt_model_param_count(m);
    uint64_t *ends = malloc(np * sizeof *ends);
    for (uint32_t i = 0; i + 1 < np; i++) {
        vkt_param_info pi;
        assert_vkt_ok(vkt_model_param_info(m, i + 1, &pi));
        ends[i] = pi.offset;
    }
    ends[np - 1] = vkt_model_flat_size(m);
    assert_vkt_ok(vkt_model_set_grad_buckets(m, np, ends));
    int32_t tok[2 * 8], lab[2 * 8];
    for (int i = 0; i < 16; i++) {
        tok[i] = (i * 5) % 40;
        lab[i] = (i * 11 + 1) % 40;
    }
    vkt_batch b = {.size = 2, .tokens = tok, .labels = lab, .seq_len = 8};
    assert_vkt_ok(vkt_model_forward(m, &b, NULL));
    assert_vkt_ok(vkt_model_backward(m));
    uint32_t nseg = vkt_model_backward_segments(m);
    assert_true(nseg > 4);
    /* wte (bucket 0) and wpe (bucket 1) finish with the embedding's
     * backward, in the last segment; ln_f (the last two) in the first. */
    assert_int_equal(vkt_model_bucket_segment(m, 0), nseg - 1);
    assert_int_equal(vkt_model_bucket_segment(m, 1), nseg - 1);
    assert_int_equal(vkt_model_bucket_segment(m, np - 1), 0);
    assert_int_equal(vkt_model_bucket_segment(m, np - 2), 0);
    /* Later parameters never finish after earlier ones (wte aside). */
    for (uint32_t i = 2; i + 1 < np; i++)
        assert_true(vkt_model_bucket_segment(m, i) >= vkt_model_bucket_segment(m, i + 1));
    free(ends);
    vkt_model_destroy(m);
}

static vkt_model *small_gpt(vkt_device *dev, uint32_t layers)
{
    vkt_gpt_opts o = VKT_GPT_OPTS_INIT;
    o.vocab = 40;
    o.context = 8;
    o.layers = layers;
    o.heads = 2;
    o.channels = 16;
    o.seed = 3;
    vkt_model *m = NULL;
    assert_vkt_ok(vkt_model_create_gpt(dev, &o, &m));
    return m;
}

/* Bucket ends that give every parameter a bucket of its own. */
static uint64_t *per_param_buckets(const vkt_model *m)
{
    uint32_t np = vkt_model_param_count(m);
    uint64_t *ends = malloc(np * sizeof *ends);
    for (uint32_t i = 0; i + 1 < np; i++) {
        vkt_param_info pi;
        assert_vkt_ok(vkt_model_param_info(m, i + 1, &pi));
        ends[i] = pi.offset;
    }
    ends[np - 1] = vkt_model_flat_size(m);
    return ends;
}

static void test_gpt_grad_slots(void **state)
{
    vkt_device *dev = *state;
    vkt_model *ref = small_gpt(dev, 4), *m = small_gpt(dev, 4);
    uint32_t np = vkt_model_param_count(m);
    uint64_t flat = vkt_model_flat_size(m), *ends = per_param_buckets(m);
    int32_t tok[2 * 8], lab[2 * 8];
    for (int i = 0; i < 16; i++) {
        tok[i] = (i * 5) % 40;
        lab[i] = (i * 11 + 1) % 40;
    }
    vkt_batch b = {.size = 2, .tokens = tok, .labels = lab, .seq_len = 8};
    /* the whole-size gradients */
    float *want = malloc(flat * 4);
    assert_vkt_ok(vkt_model_forward(ref, &b, NULL));
    assert_vkt_ok(vkt_model_backward(ref));
    assert_vkt_ok(vkt_buffer_download(ref->grads, 0, want, flat * 4));

    assert_vkt_ok(vkt_model_set_grad_buckets(m, np, ends));
    assert_vkt_ok(vkt__nn_set_grad_slots(m));
    assert_vkt_ok(vkt_model_forward(m, &b, NULL));
    /* a plain backward has no one to reduce the slots: refused */
    assert_int_equal(vkt_model_backward(m), VKT_ERR_INVALID_USAGE);
    assert_non_null(strstr(vkt_last_error(), "vkt_engine_backward"));
    assert_vkt_ok(vkt_model_forward(m, &b, NULL));
    vkt_timeline *tl, *slot_tl;
    assert_vkt_ok(vkt_timeline_create(dev, 0, &tl));
    assert_vkt_ok(vkt_timeline_create(dev, 1u << 20, &slot_tl)); /* every slot free */
    assert_vkt_ok(vkt__nn_backward_submit(m, tl, 0, slot_tl, 0, NULL, 0));
    assert_vkt_ok(vkt_model_backward_wait(m));
    uint32_t nb = m->nbuckets, nseg = m->nseg;
    assert_int_equal(nb, np);
    /* wte: written first by the head, final with the embedding */
    assert_int_equal(m->bucket_first_seg[0], 0);
    assert_int_equal(m->bucket_seg[0], nseg - 1);
    assert_true(m->nslots >= 2);
    assert_true(m->nslots < nb / 2);
    uint32_t *last = malloc(m->nslots * sizeof *last);
    for (uint32_t k = 0; k < m->nslots; k++) last[k] = UINT32_MAX;
    uint64_t sum = 0;
    for (uint32_t a = 0; a < nb; a++) {
        uint32_t k = m->bucket_slot[a];
        assert_true(k < m->nslots);
        assert_true(m->bucket_first_seg[a] <= m->bucket_seg[a]);
        if (last[k] == UINT32_MAX || m->bucket_first_seg[a] > m->bucket_first_seg[last[k]])
            last[k] = a;
        for (uint32_t c = a + 1; c < nb; c++)
            if (m->bucket_slot[c] == k)
                assert_true(m->bucket_seg[a] + 2 <= m->bucket_first_seg[c] ||
                            m->bucket_seg[c] + 2 <= m->bucket_first_seg[a]);
    }
    for (uint32_t k = 0; k < m->nslots; k++) {
        assert_true(last[k] != UINT32_MAX);
        sum += vkt_buffer_size(m->slots[k]) / 4;
        uint32_t a = last[k];
        uint64_t lo = a ? ends[a - 1] : 0;
        float *got = vkt_buffer_host_ptr(m->slots[k]);
        assert_non_null(got);
        assert_memory_equal(got, want + lo, (ends[a] - lo) * 4);
    }
    vkt_model_memory mem;
    vkt_model_memory_report(m, &mem);
    assert_int_equal(mem.grads, (flat + sum) * 4);
    /* the whole-size gradient buffer cannot be read any more */
    assert_int_equal(vkt_model_get_grads(m, want), VKT_ERR_INVALID_USAGE);
    free(last);
    free(want);
    free(ends);
    vkt_timeline_destroy(tl);
    vkt_timeline_destroy(slot_tl);
    vkt_model_destroy(m);
    vkt_model_destroy(ref);
}

/* Every group a node of a pass reads resides in a slot during the node's
 * segment, and a slot goes to a later residence only two segments after
 * its last reader. seg_of: each node's segment in this pass. */
static void check_residences(const vkt_model *m, const nn_gather *g, uint32_t n,
                             const uint32_t *seg_of)
{
    for (uint32_t i = 0; i < m->g.nn; i++) {
        uint32_t groups[VKT_NN_MAX_IO], ng = vkt__nn_node_groups(m, &m->g.n[i], groups);
        for (uint32_t j = 0; j < ng; j++) {
            bool found = false;
            for (uint32_t r = 0; r < n; r++)
                found = found || (g[r].group == groups[j] && g[r].first <= seg_of[i] &&
                                  seg_of[i] <= g[r].last);
            if (!found) fail_msg("node %u (segment %u) reads group %u, not resident", i,
                                 seg_of[i], groups[j]);
        }
    }
    for (uint32_t a = 0; a < n; a++) {
        assert_true(g[a].slot < m->ngslots);
        uint64_t lo = g[a].group ? m->bucket_ends[g[a].group - 1] : 0;
        assert_true(vkt_buffer_size(m->gslots[g[a].slot]) >=
                    (m->bucket_ends[g[a].group] - lo) * 4);
        for (uint32_t c = a + 1; c < n; c++)
            if (g[c].slot == g[a].slot)
                assert_true(g[a].last + 2 <= g[c].first || g[c].last + 2 <= g[a].first);
    }
}

/* ZeRO-3 on one process: the gather plan of both passes, and a forward
 * whose groups are "gathered" by hand (copied from the whole copy into the
 * slots, as the engine's all-gather would) gives the plain forward's loss
 * bit for bit. */
static void test_gpt_gather_plan(void **state)
{
    vkt_device *dev = *state;
    vkt_model *ref = small_gpt(dev, 4), *m = small_gpt(dev, 4);
    uint32_t np = vkt_model_param_count(m);
    uint64_t flat = vkt_model_flat_size(m), *ends = per_param_buckets(m);
    int32_t tok[2 * 8], lab[2 * 8];
    for (int i = 0; i < 16; i++) {
        tok[i] = (i * 3) % 40;
        lab[i] = (i * 7 + 2) % 40;
    }
    vkt_batch b = {.size = 2, .tokens = tok, .labels = lab, .seq_len = 8};
    float want, got;
    assert_vkt_ok(vkt_model_forward(ref, &b, &want));
    assert_vkt_ok(vkt_model_set_grad_buckets(m, np, ends));
    assert_vkt_ok(vkt__nn_set_grad_slots(m));
    assert_vkt_ok(vkt__nn_set_gather_mode(m));
    assert_int_equal(vkt_model_forward(m, &b, NULL), VKT_ERR_INVALID_USAGE);
    assert_non_null(strstr(vkt_last_error(), "ZeRO-3"));
    assert_vkt_ok(vkt__nn_forward_begin(m, &b)); /* records and plans */
    /* the forward's plan */
    uint32_t *seg_of = calloc(m->g.nn, sizeof *seg_of);
    bool *cut = calloc(m->g.nn, sizeof *cut);
    assert_vkt_ok(vkt__nn_forward_cuts(m, cut));
    for (uint32_t i = 1; i < m->g.nn; i++) seg_of[i] = seg_of[i - 1] + cut[i];
    assert_int_equal(seg_of[m->g.nn - 1] + 1, m->nfseg);
    assert_true(m->nfseg > 4);
    check_residences(m, m->fgath, m->nfgath, seg_of);
    /* fewer slots than groups: the memory ZeRO-3 saves */
    assert_true(m->ngslots >= 2 && m->ngslots < np / 2);
    /* the backward's plan (segment ends include the gather cuts) */
    assert_vkt_ok(vkt__nn_plan_segments(m, cut));
    for (uint32_t k = 0, seg = 0; k < m->g.nn; k++) {
        uint32_t i = m->g.nn - 1 - k;
        seg_of[i] = seg;
        seg += cut[i];
    }
    check_residences(m, m->bgath, m->nbgath, seg_of);
    /* run the forward, gathering each segment's groups by hand */
    vkt_timeline *tl, *gtl;
    assert_vkt_ok(vkt_timeline_create(dev, 0, &tl));
    assert_vkt_ok(vkt_timeline_create(dev, 0, &gtl));
    assert_vkt_ok(vkt__nn_forward_submit(m, tl, 0, gtl, 0));
    const float *copy = vkt_buffer_host_ptr(m->copy);
    assert_non_null(copy);
    for (uint32_t s = 0; s < m->nfseg; s++) {
        if (s >= 2) assert_vkt_ok(vkt_timeline_wait(tl, s - 1, UINT64_MAX)); /* s-2 done */
        for (uint32_t r = 0; r < m->nfgath; r++) {
            const nn_gather *g = &m->fgath[r];
            if (g->first != s) continue;
            uint64_t lo = g->group ? ends[g->group - 1] : 0;
            memcpy(vkt_buffer_host_ptr(m->gslots[g->slot]), copy + lo, (ends[g->group] - lo) * 4);
        }
        assert_vkt_ok(vkt_timeline_signal(gtl, s + 1));
    }
    assert_vkt_ok(vkt__nn_forward_end(m, &b, &got));
    assert_memory_equal(&got, &want, sizeof got);
    vkt_model_memory mem;
    vkt_model_memory_report(m, &mem);
    assert_int_equal(mem.params, (flat + m->gslot_len) * 4);
    vkt_timeline_destroy(tl);
    vkt_timeline_destroy(gtl);
    free(seg_of);
    free(cut);
    free(ends);
    vkt_model_destroy(m);
    vkt_model_destroy(ref);
}

/* The flat offset of dense element i. */
static uint64_t flat_of(const vkt_model *m, uint64_t i)
{
    for (uint32_t p = 0;; p++) {
        vkt_param_info pi;
        vkt_model_param_info(m, p, &pi);
        if (i < pi.numel) return pi.offset + i;
        i -= pi.numel;
    }
}

static bool in_pieces(const nn_piece *pieces, uint32_t n, uint64_t f)
{
    for (uint32_t k = 0; k < n; k++)
        if (f >= pieces[k].flat && f < pieces[k].flat + pieces[k].count) return true;
    return false;
}

static void test_relayout_and_pieces(void **state)
{
    vkt_device *dev = *state;
    vkt_model *m = mlp(dev);
    data d;
    make_data(&d);
    size_t n = vkt_model_num_params(m);
    float *p0 = malloc(n * 4), *p1 = malloc(n * 4), *pr = malloc(n * 4), loss0, loss1;
    assert_vkt_ok(vkt_model_get_params(m, p0));
    assert_vkt_ok(vkt_model_forward(m, &d.b, &loss0));
    float *g0 = grads_of(m, &d.b);

    /* buckets {W0 b0 W1}, {b1 W2 b2}, {W3 b3}; 3 ranks of 64-element parts;
     * a window shorter than W2 (384 elements) is refused */
    const uint32_t first[3] = {0, 3, 6};
    uint64_t ends[3];
    assert_int_equal(vkt__nn_relayout(m, 3, first, 192, 320, ends), VKT_ERR_UNSUPPORTED);
    assert_vkt_ok(vkt__nn_relayout(m, 3, first, 192, 512, ends));
    assert_int_equal(ends[2], vkt_model_flat_size(m));
    for (uint32_t k = 0; k < 3; k++) {
        uint64_t lo = k ? ends[k - 1] : 0;
        assert_true(ends[k] > lo && ends[k] % 192 == 0);
        for (uint32_t p = first[k]; p < (k < 2 ? first[k + 1] : 8); p++) {
            vkt_param_info pi;
            assert_vkt_ok(vkt_model_param_info(m, p, &pi));
            assert_true(pi.offset >= lo && pi.offset + pi.numel <= ends[k] && pi.offset % 64 == 0);
            assert_true(pi.offset / 512 == (pi.offset + pi.numel - 1) / 512);
        }
    }
    assert_vkt_ok(vkt_model_get_params(m, p1));
    assert_memory_equal(p0, p1, n * 4);
    assert_vkt_ok(vkt_model_forward(m, &d.b, &loss1));
    assert_true(loss1 == loss0);
    float *g1 = grads_of(m, &d.b);
    assert_memory_equal(g0, g1, n * 4);

    /* The reference: the whole step on a model of the first layout. */
    vkt_optim_opts o = VKT_OPTIM_OPTS_INIT;
    o.type = VKT_OPTIM_ADAMW;
    o.weight_decay = 0.01f;
    vkt_model *ref = mlp(dev);
    free(grads_of(ref, &d.b));
    assert_vkt_ok(vkt_model_step(ref, &o, 0.01f));
    assert_vkt_ok(vkt_model_get_params(ref, pr));

    nn_piece pieces[3];
    uint64_t total = 0;
    for (uint32_t k = 0; k < 3; k++) {
        uint64_t lo = k ? ends[k - 1] : 0, part = (ends[k] - lo) / 3;
        pieces[k] = (nn_piece){lo + part, 0, part};
        total += part;
    }
    nn_piece bad[2] = {pieces[1], pieces[0]};
    assert_int_equal(vkt__nn_set_shard(m, 2, bad, false), VKT_ERR_INVALID_ARG);
    assert_vkt_ok(vkt__nn_set_shard(m, 3, pieces, false));
    assert_int_equal(m->shard_len, total);
    double sumsq = 0, host = 0;
    assert_vkt_ok(vkt_model_grad_sumsq(m, &sumsq));
    for (uint64_t i = 0; i < n; i++)
        if (in_pieces(pieces, 3, flat_of(m, i))) host += (double)g1[i] * g1[i];
    assert_true(host > 0 && fabs(sumsq - host) <= 1e-5 * host);
    assert_vkt_ok(vkt_model_step(m, &o, 0.01f));
    assert_vkt_ok(vkt_model_get_params(m, p1));
    uint64_t inside = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t f = flat_of(m, i);
        bool mine = in_pieces(pieces, 3, f);
        inside += mine;
        if (mine ? p1[i] != pr[i] : p1[i] != p0[i])
            fail_msg("element %llu (flat %llu, %s the shard): %g, want %g", (unsigned long long)i,
                     (unsigned long long)f, mine ? "in" : "outside", (double)p1[i],
                     (double)(mine ? pr[i] : p0[i]));
    }
    assert_true(inside > 0 && inside < n);
    /* once the optimizer has state, neither the shard nor the layout moves */
    assert_int_equal(vkt__nn_set_shard(m, 3, pieces, false), VKT_ERR_INVALID_USAGE);
    assert_int_equal(vkt__nn_relayout(m, 3, first, 192, 512, ends), VKT_ERR_INVALID_USAGE);
    free(p0);
    free(p1);
    free(pr);
    free(g0);
    free(g1);
    vkt_model_destroy(ref);
    vkt_model_destroy(m);
}

static void test_loss_scale_and_sumsq(void **state)
{
    vkt_device *dev = *state;
    vkt_model *m = mlp(dev);
    data d;
    make_data(&d);
    size_t n = vkt_model_num_params(m);
    float *ref = grads_of(m, &d.b);
    double host = 0, dev_sumsq = 0;
    for (size_t i = 0; i < n; i++) host += (double)ref[i] * ref[i];
    assert_vkt_ok(vkt_model_grad_sumsq(m, &dev_sumsq));
    assert_true(fabs(dev_sumsq - host) <= 1e-5 * host);

    assert_int_equal(vkt_model_set_loss_scale(m, 0.0f), VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_model_set_loss_scale(m, INFINITY), VKT_ERR_INVALID_ARG);
    assert_vkt_ok(vkt_model_set_loss_scale(m, 1024.0f));
    float *scaled = grads_of(m, &d.b);
    for (size_t i = 0; i < n; i++) assert_true(scaled[i] == 1024.0f * ref[i]);
    double s2;
    assert_vkt_ok(vkt_model_grad_sumsq(m, &s2));
    assert_true(fabs(s2 - 1024.0 * 1024.0 * host) <= 1e-5 * 1024.0 * 1024.0 * host);

    /* Step with the scale undone == step on the unscaled gradients. */
    vkt_optim_opts o = VKT_OPTIM_OPTS_INIT;
    o.momentum = 0.9f;
    float *p0 = malloc(n * 4), *pa = malloc(n * 4), *pb = malloc(n * 4);
    assert_vkt_ok(vkt_model_get_params(m, p0));
    assert_vkt_ok(vkt_model_step_scaled(m, &o, 0.1f, 1.0f / 1024.0f));
    assert_vkt_ok(vkt_model_get_params(m, pa));
    vkt_model *m2 = mlp(dev);
    assert_vkt_ok(vkt_model_set_params(m2, p0));
    free(grads_of(m2, &d.b));
    assert_vkt_ok(vkt_model_step(m2, &o, 0.1f));
    assert_vkt_ok(vkt_model_get_params(m2, pb));
    assert_memory_equal(pa, pb, n * 4);
    assert_int_equal(vkt_model_step_scaled(m2, &o, 0.1f, NAN), VKT_ERR_INVALID_ARG);

    /* An overflow (here a NaN in the data) shows as a non-finite Σg². */
    d.x[5] = NAN;
    free(grads_of(m, &d.b));
    assert_vkt_ok(vkt_model_grad_sumsq(m, &s2));
    assert_false(isfinite(s2));
    free(p0);
    free(pa);
    free(pb);
    free(ref);
    free(scaled);
    vkt_model_destroy(m2);
    vkt_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_segments),
        cmocka_unit_test(test_gpt_tied_weight),
        cmocka_unit_test(test_gpt_grad_slots),
        cmocka_unit_test(test_gpt_gather_plan),
        cmocka_unit_test(test_relayout_and_pieces),
        cmocka_unit_test(test_loss_scale_and_sumsq),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
