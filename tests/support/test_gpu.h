/* Test support: open the real default device (lavapipe here) with the
 * validation layer on, and fail the test on any validation message. */
#ifndef VKT_TEST_GPU_H
#define VKT_TEST_GPU_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "vktrain/vktrain.h"

/* Assert a vkt_status is VKT_OK, printing vkt_last_error() otherwise. */
#define assert_vkt_ok(expr)                                                        \
    do {                                                                           \
        vkt_status st_ = (expr);                                                   \
        if (st_ != VKT_OK) print_error("%s -> %s: %s\n", #expr, vkt_status_name(st_), \
                                       vkt_last_error());                          \
        assert_int_equal(st_, VKT_OK);                                             \
    } while (0)

/* Device with validation on; any validation message fails at close. */
vkt_device *tgpu_open(void);
void tgpu_close(vkt_device *dev);

/* Pipeline of an embedded shader with workgroup size spec[0] and more specs. */
vkt_pipeline *tgpu_pipeline(vkt_device *dev, const char *shader, uint32_t bindings,
                            uint32_t push_size, const uint32_t *spec, uint32_t spec_count);

/* cmocka group setup/teardown: *state = tgpu_open(); teardown fails the
 * group if the validation layer said anything. */
int tgpu_group_setup(void **state);
int tgpu_group_teardown(void **state);

/* Install an allocator whose fail_at-th call (counting from 1) fails;
 * tgpu_alloc_calls() tells how many calls were made. fail_at 0 removes it. */
void tgpu_fail_allocation(int fail_at);
int tgpu_alloc_calls(void);

/* Deterministic pseudo-random floats in [-1, 1) (xorshift; seed != 0). */
void tgpu_fill_random(float *v, size_t n, uint32_t seed);

#endif
