/* libFuzzer target: the DeepSpeed JSON config parser (vkt_config_parse).
 * Input: one byte choosing the world size (1..4), then the JSON text. A
 * config that parses must satisfy the batch identity, and its
 * vkt_config_to_json text must parse back to the same numbers. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "vktrain/alloc.h"
#include "vktrain/config.h"

static void check_resolved(const vkt_config *c, uint32_t world)
{
    FUZZ_CHECK(c->world_size == world && c->rank_batch);
    FUZZ_CHECK(c->gradient_accumulation_steps >= 1 && c->zero.stage <= 3);
    uint64_t sum = 0;
    for (uint32_t r = 0; r < world; r++) {
        FUZZ_CHECK(c->rank_batch[r] >= 1);
        if (c->train_micro_batch_size_per_gpu)
            FUZZ_CHECK(c->rank_batch[r] == c->train_micro_batch_size_per_gpu);
        sum += c->rank_batch[r];
    }
    FUZZ_CHECK(c->train_batch_size == sum * c->gradient_accumulation_steps);
    for (uint32_t i = 0; i < c->device_count; i++) FUZZ_CHECK(c->devices[i] && c->devices[i][0]);
    for (uint32_t i = 0; i < c->warning_count; i++) FUZZ_CHECK(c->warnings[i]);
}

static void check_round_trip(const vkt_config *c, const vkt_config_opts *opts)
{
    char *text = NULL;
    FUZZ_CHECK(vkt_config_to_json(c, &text) == VKT_OK && text);
    vkt_config *d = NULL;
    FUZZ_CHECK(vkt_config_parse(text, strlen(text), opts, &d) == VKT_OK);
    FUZZ_CHECK(d->train_batch_size == c->train_batch_size &&
               d->train_micro_batch_size_per_gpu == c->train_micro_batch_size_per_gpu &&
               d->gradient_accumulation_steps == c->gradient_accumulation_steps);
    FUZZ_CHECK(d->optimizer.type == c->optimizer.type && d->optimizer.lr == c->optimizer.lr);
    FUZZ_CHECK(d->scheduler.kind == c->scheduler.kind && d->zero.stage == c->zero.stage);
    FUZZ_CHECK(d->fp16 == c->fp16 && d->bf16 == c->bf16 && d->seed == c->seed);
    FUZZ_CHECK(d->device_count == c->device_count && d->backend == c->backend);
    vkt_config_destroy(d);
    vkt_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    vkt_config_opts opts = VKT_CONFIG_OPTS_INIT;
    opts.world_size = 1 + data[0] % 4;
    vkt_config *c = NULL;
    vkt_status st = vkt_config_parse((const char *)data + 1, size - 1, &opts, &c);
    if (st != VKT_OK) {
        FUZZ_CHECK_FAILED(st);
        FUZZ_CHECK(c == NULL);
        return 0;
    }
    check_resolved(c, opts.world_size);
    check_round_trip(c, &opts);
    vkt_config_destroy(c);
    return 0;
}
