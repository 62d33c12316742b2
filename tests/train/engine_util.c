#include "engine_util.h"

#include <math.h>
#include <stdio.h>

vkt_model *eu_model(vkt_device *dev, bool gpt, vkt_dtype t)
{
    return eu_model_dropout(dev, gpt, t, 0.0f);
}

vkt_model *eu_model_dropout(vkt_device *dev, bool gpt, vkt_dtype t, float dropout)
{
    vkt_model *m = NULL;
    if (gpt) {
        vkt_gpt_opts o = VKT_GPT_OPTS_INIT;
        o.vocab = 32;
        o.context = 8;
        o.layers = 2;
        o.heads = 2;
        o.channels = 16;
        o.seed = 5;
        o.dtype = t;
        o.dropout = dropout;
        if (vkt_model_create_gpt(dev, &o, &m) != VKT_OK) return NULL;
    } else {
        static const uint32_t sizes[] = {10, 32, 32, 4};
        vkt_mlp_opts o = VKT_MLP_OPTS_INIT;
        o.layers = 3;
        o.sizes = sizes;
        o.activation = VKT_ACTIVATION_GELU;
        o.seed = 5;
        o.dtype = t;
        o.dropout = dropout;
        if (vkt_model_create_mlp(dev, &o, &m) != VKT_OK) return NULL;
    }
    return m;
}

void eu_mlp_sample(uint64_t i, float *x, int32_t *y)
{
    for (int j = 0; j < 10; j++) x[j] = sinf(0.37f * (float)i + 1.3f * (float)j);
    *y = (int32_t)((i * 7 + 3) % 4);
}

void eu_gpt_sample(uint64_t i, int32_t *tok, int32_t *lab)
{
    for (int t = 0; t < 8; t++) {
        tok[t] = (int32_t)((i * 5 + (uint64_t)t * 3) % 32);
        lab[t] = (int32_t)((i * 5 + (uint64_t)t * 3 + 1) % 32);
    }
}

vkt_batch eu_batch(bool gpt, uint64_t first, uint32_t count, float *x, int32_t *tok, int32_t *y)
{
    for (uint32_t s = 0; s < count; s++) {
        if (gpt) eu_gpt_sample(first + s, tok + s * 8, y + s * 8);
        else eu_mlp_sample(first + s, x + s * 10, y + s);
    }
    if (gpt) return (vkt_batch){.size = count, .tokens = tok, .labels = y, .seq_len = 8};
    return (vkt_batch){.size = count, .inputs = x, .labels = y};
}

vkt_device *eu_device(int rank)
{
    vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
    o.validation = VKT_VALIDATION_ON;
    vkt_device *dev = NULL;
    if (vkt_device_create(&o, &dev) != VKT_OK) {
        RANK_FAIL(rank, "device: %s", vkt_last_error());
        return NULL;
    }
    return dev;
}

int eu_device_close(int rank, vkt_device *dev)
{
    uint64_t n = vkt_device_validation_messages(dev);
    vkt_device_destroy(dev);
    return n ? RANK_FAIL(rank, "%llu validation messages", (unsigned long long)n) : 0;
}

int eu_comm(int rank, int world, const char *dir, vkt_comm_backend b, vkt_comm **out)
{
    *out = NULL;
    if (world == 0) return 0;
    char store[160];
    snprintf(store, sizeof store, "file:%s", dir);
    vkt_comm_opts co = test_opts(rank, world, store, 60);
    co.backend = b;
    if (vkt_comm_create(&co, out) != VKT_OK) return RANK_FAIL(rank, "comm: %s", vkt_last_error());
    return 0;
}
