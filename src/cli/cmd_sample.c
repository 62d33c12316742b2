/* vktrain sample: generate text from a language model that `vktrain train
 * --model gpt --ckpt-dir DIR` saved.
 *
 *   vktrain sample DIR [--prompt TEXT] [--tokens N] [--temperature T]
 *                      [--top-k K] [--seed S] [--device SEL]
 *
 * Reads DIR/model.json (the model's shape) and DIR's latest checkpoint
 * (the fp32 master weights, gathered from every rank's shard whatever
 * world size and ZeRO stage wrote them), then samples one token at a time:
 * each step runs the forward over the last `context` tokens and draws the
 * next token from the last position's softmax. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core_int.h"
#include "formats/ckpt_index.h"

typedef struct sample_opts {
    const char *dir, *prompt, *device;
    uint32_t tokens, top_k;
    double temperature;
    uint64_t seed;
} sample_opts;

static void usage(FILE *f)
{
    fprintf(f, "usage: vktrain sample DIR [--prompt TEXT] [--tokens N] [--temperature T]\n"
               "                      [--top-k K] [--seed S] [--device SEL]\n\n"
               "Generates text from the latest checkpoint in DIR of a byte-level GPT trained\n"
               "by 'vktrain train --model gpt --ckpt-dir DIR'. Defaults: 400 tokens,\n"
               "temperature 0.8, top-k 40, prompt \"\\n\" (a new line), seed 1.\n");
}

static int parse(int argc, char **argv, sample_opts *o)
{
    static const struct option lo[] = {
        {"prompt", 1, 0, 'p'}, {"tokens", 1, 0, 'n'}, {"temperature", 1, 0, 't'},
        {"top-k", 1, 0, 'k'},  {"seed", 1, 0, 's'},   {"device", 1, 0, 'd'},
        {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    *o = (sample_opts){.prompt = "\n", .tokens = 400, .top_k = 40, .temperature = 0.8, .seed = 1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end = NULL;
        uint64_t v = 0;
        switch (c) {
        case 'h': usage(stdout); return -1;
        case 'p': o->prompt = optarg; continue;
        case 'd': o->device = optarg; continue;
        case 't':
            o->temperature = strtod(optarg, &end);
            if (end == optarg || *end || !(o->temperature > 0 && o->temperature <= 100))
                return cli_usage_error("sample", "--temperature takes a number above 0 and at "
                                       "most 100, not '%s'", optarg);
            continue;
        case 'n': case 'k': case 's': break;
        default: return cli_usage_error("sample", "unknown option (see --help)");
        }
        const char *name = c == 'n' ? "tokens" : c == 'k' ? "top-k" : "seed";
        uint64_t cap = c == 's' ? UINT64_MAX : c == 'n' ? 1000000 : 65536;
        if (cli_parse_u64("sample", name, optarg, 0, cap, &v)) return 2;
        if (c == 'n') o->tokens = (uint32_t)v;
        else if (c == 'k') o->top_k = (uint32_t)v;
        else o->seed = v;
    }
    if (optind != argc - 1) return cli_usage_error("sample", "give one checkpoint directory");
    o->dir = argv[optind];
    if (!*o->prompt) return cli_usage_error("sample", "--prompt must not be empty");
    return 0;
}

/* DIR/model.json → GPT options. Its "dropout" is not read: sampling is
 * evaluation, and a model built without dropout drops nothing. */
static int read_shape(const char *dir, vkt_gpt_opts *g)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/model.json", dir);
    json_error_t err;
    json_t *o = json_load_file(path, 0, &err);
    const char *kind = NULL;
    int v = 0, c = 0, l = 0, h = 0, ch = 0;
    int bad = !o || json_unpack(o, "{s:s, s:i, s:i, s:i, s:i, s:i}", "model", &kind, "vocab", &v,
                                "context", &c, "layers", &l, "heads", &h, "channels", &ch);
    bool gpt = !bad && !strcmp(kind, "gpt");
    json_decref(o);
    if (bad)
        return cli_fail(VKT_ERROR(VKT_ERR_CORRUPT, "%s: %s; it is written by 'vktrain train "
                                  "--model gpt --ckpt-dir %s'", path,
                                  o ? "not a GPT's model description" : err.text, dir), "sample");
    if (!gpt || v <= 0 || c <= 1 || l <= 0 || h <= 0 || ch <= 0)
        return cli_fail(VKT_ERROR(VKT_ERR_INVALID_ARG, "%s: describes no GPT (only language "
                                  "models can be sampled)", path), "sample");
    g->vocab = (uint32_t)v, g->context = (uint32_t)c, g->layers = (uint32_t)l;
    g->heads = (uint32_t)h, g->channels = (uint32_t)ch;
    return 0;
}

/* The checkpoint's fp32 master weights into the model. */
static vkt_status load_weights(const char *dir, vkt_model *m)
{
    char step_dir[4096];
    vkt_ckpt_index *x = NULL;
    VKT_CHECK(vkt__ckpt_open(dir, step_dir, sizeof step_dir, &x));
    uint64_t n = vkt_model_num_params(m), at = 0;
    float *flat = vkt_malloc((x->flat_length ? x->flat_length : 1) * sizeof *flat);
    float *dense = vkt_malloc(n * sizeof *dense);
    vkt_status st = flat && dense ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "out of memory");
    uint32_t np = vkt_model_param_count(m);
    if (st == VKT_OK && x->nparams != np)
        st = VKT_ERROR(VKT_ERR_INVALID_ARG, "%s holds %zu tensors, the model of model.json has "
                       "%u: the two do not belong together", step_dir, x->nparams, np);
    if (st == VKT_OK) st = vkt__ckpt_load_flat(step_dir, x, VKT_CKPT_MASTER, flat);
    for (uint32_t i = 0; st == VKT_OK && i < np; i++) {
        vkt_param_info pi;
        st = vkt_model_param_info(m, i, &pi);
        if (st == VKT_OK && (x->params[i].numel != pi.numel || strcmp(x->params[i].name, pi.name)))
            st = VKT_ERROR(VKT_ERR_INVALID_ARG, "%s: tensor %u is '%s' with %" PRIu64
                           " elements, the model's is '%s' with %" PRIu64, step_dir, i,
                           x->params[i].name, x->params[i].numel, pi.name, pi.numel);
        if (st == VKT_OK) memcpy(dense + at, flat + x->params[i].offset, pi.numel * sizeof *flat);
        at += pi.numel;
    }
    if (st == VKT_OK) st = vkt_model_set_params(m, dense);
    vkt_free(flat);
    vkt_free(dense);
    vkt__ckpt_index_free(x);
    return st;
}

static double uniform01(uint64_t *s)
{
    *s += 0x9E3779B97F4A7C15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

/* Draw from softmax(logits / t) restricted to the k largest. */
static uint32_t draw(const float *logits, uint32_t v, const sample_opts *o, uint64_t *rng,
                     double *p)
{
    uint32_t k = o->top_k && o->top_k < v ? o->top_k : v;
    float kth = -INFINITY;
    if (k < v) { /* the k-th largest logit, by partial selection on a copy */
        float *c = (float *)p; /* p has room for v doubles */
        memcpy(c, logits, v * sizeof *c);
        for (uint32_t i = 0; i < k; i++) {
            uint32_t best = i;
            for (uint32_t q = i + 1; q < v; q++)
                if (c[q] > c[best]) best = q;
            float t = c[i];
            c[i] = c[best], c[best] = t;
        }
        kth = c[k - 1];
    }
    float mx = -INFINITY;
    for (uint32_t i = 0; i < v; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (uint32_t i = 0; i < v; i++)
        z += p[i] = logits[i] >= kth ? exp((logits[i] - mx) / o->temperature) : 0.0;
    double u = uniform01(rng) * z;
    for (uint32_t i = 0; i < v; i++)
        if ((u -= p[i]) <= 0 && p[i] > 0) return i;
    return 0;
}

static vkt_status generate(vkt_model *m, const vkt_gpt_opts *g, const sample_opts *o)
{
    uint32_t t = g->context, v = g->vocab;
    size_t plen = strlen(o->prompt);
    int32_t *tok = vkt_calloc(t, sizeof *tok), *lab = vkt_calloc(t, sizeof *lab);
    float *out = vkt_malloc((size_t)t * v * sizeof *out);
    double *p = vkt_malloc(v * sizeof *p);
    uint8_t *hist = vkt_malloc(plen + o->tokens);
    vkt_status st = tok && lab && out && p && hist ? VKT_OK : VKT_ERROR(VKT_ERR_NOMEM, "out of memory");
    size_t len = plen;
    if (st == VKT_OK) memcpy(hist, o->prompt, plen);
    fputs(o->prompt, stdout);
    uint64_t rng = o->seed;
    for (uint32_t n = 0; st == VKT_OK && n < o->tokens; n++) {
        /* The last (up to) t tokens, left-aligned: causal attention makes the
         * positions after them irrelevant to the last one's logits. */
        size_t first = len > t ? len - t : 0, used = len - first;
        for (uint32_t i = 0; i < t; i++) tok[i] = i < used ? hist[first + i] : 0;
        vkt_batch b = {.size = 1, .tokens = tok, .labels = lab, .seq_len = t};
        st = vkt_model_forward(m, &b, NULL);
        if (st == VKT_OK) st = vkt_model_get_outputs(m, out);
        if (st != VKT_OK) break;
        uint32_t next = draw(out + (used - 1) * v, v, o, &rng, p);
        hist[len++] = (uint8_t)next;
        putchar((int)next);
        fflush(stdout);
    }
    putchar('\n');
    vkt_free(tok);
    vkt_free(lab);
    vkt_free(out);
    vkt_free(p);
    vkt_free(hist);
    return st;
}

int cmd_sample(int argc, char **argv)
{
    sample_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    vkt_gpt_opts g = VKT_GPT_OPTS_INIT;
    if (read_shape(o.dir, &g)) return 1;
    if (g.vocab != 256)
        return cli_fail(VKT_ERROR(VKT_ERR_UNSUPPORTED, "%s: the model's vocabulary has %u tokens; "
                                  "sample prints bytes, so it needs a byte-level model (256)",
                                  o.dir, g.vocab), "sample");
    vkt_device *dev = NULL;
    vkt_model *m = NULL;
    if (cli_open_device(o.device, &dev)) return 1;
    vkt_status st = vkt_model_create_gpt(dev, &g, &m);
    if (st == VKT_OK) st = load_weights(o.dir, m);
    if (st == VKT_OK) st = generate(m, &g, &o);
    vkt_model_destroy(m);
    vkt_device_destroy(dev);
    return st == VKT_OK ? 0 : cli_fail(st, "sample");
}
