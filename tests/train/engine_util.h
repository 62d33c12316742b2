/* Shared pieces of the engine tests: the small models, the synthetic
 * samples (drawn by global sample index, so any split across ranks sees
 * the same data), a rank's device and communicator. For use inside forked
 * ranks: failures are reported with RANK_FAIL, not cmocka asserts. */
#ifndef VKT_TEST_ENGINE_UTIL_H
#define VKT_TEST_ENGINE_UTIL_H

#include "harness.h"
#include "vktrain/vktrain.h"

/* MLP 10-32-32-4 (GELU) or GPT (vocab 32, context 8, 2 layers, 2 heads,
 * width 16), seed 5, compute dtype t. NULL on failure (vkt_last_error). */
vkt_model *eu_model(vkt_device *dev, bool gpt, vkt_dtype t);
/* The same with dropout probability `dropout` (0: none). */
vkt_model *eu_model_dropout(vkt_device *dev, bool gpt, vkt_dtype t, float dropout);
void eu_mlp_sample(uint64_t i, float *x, int32_t *y);
void eu_gpt_sample(uint64_t i, int32_t *tok, int32_t *lab);
/* Micro-batch of `count` samples starting at global sample `first` into
 * the arrays (x: count*10 floats, tok/y: count*8 ints), as a vkt_batch. */
vkt_batch eu_batch(bool gpt, uint64_t first, uint32_t count, float *x, int32_t *tok, int32_t *y);
/* A device with validation on; NULL on failure (reported). */
vkt_device *eu_device(int rank);
/* 0 when the device had no validation message, else reports and 1. */
int eu_device_close(int rank, vkt_device *dev);
/* A communicator over the file store in dir (world 0: NULL, one process). */
int eu_comm(int rank, int world, const char *dir, vkt_comm_backend b, vkt_comm **out);

#endif
