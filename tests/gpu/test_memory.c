/* The sub-allocator and buffers: sizes, reuse, fragmentation, limits,
 * out-of-memory, host round trips through every memory kind. */
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu_int.h"
#include "test_gpu.h"

#define MiB (1ull << 20)

static vkt_device *open_with(uint64_t block, uint64_t limit)
{
    vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
    o.validation = VKT_VALIDATION_ON;
    o.block_size = block;
    o.memory_limit = limit;
    vkt_device *dev = NULL;
    assert_vkt_ok(vkt_device_create(&o, &dev));
    return dev;
}

static void test_many_sizes(void **state)
{
    (void)state;
    vkt_device *dev = open_with(8 * MiB, 0);
    static const uint64_t sizes[] = {1, 3, 4, 63, 64, 65, 1000, 4096, 65537, MiB - 1,
                                     3 * MiB, 5 * MiB, 17 * MiB};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    vkt_buffer *b[NS];
    for (int i = 0; i < NS; i++) {
        assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, sizes[i], &b[i]));
        assert_int_equal(vkt_buffer_size(b[i]), sizes[i]);
        assert_int_equal(b[i]->alloc.offset % 64, 0); /* at least the allocator's alignment */
        for (int j = 0; j < i; j++) /* no two buffers overlap */
            if (b[j]->alloc.block == b[i]->alloc.block)
                assert_true(b[j]->alloc.offset + b[j]->alloc.size <= b[i]->alloc.offset ||
                            b[i]->alloc.offset + b[i]->alloc.size <= b[j]->alloc.offset);
    }
    vkt_memory_stats st;
    vkt_device_memory_stats(dev, &st);
    assert_int_equal(st.buffers, NS);
    uint64_t asked = 0;
    for (int i = 0; i < NS; i++) asked += sizes[i];
    assert_true(st.in_use >= asked);
    assert_true(st.reserved >= st.in_use);
    /* Big requests (5 and 17 MiB > half a block) got blocks of their own. */
    assert_true(st.blocks >= 3);
    for (int i = 0; i < NS; i += 2) vkt_buffer_destroy(b[i]);
    for (int i = 1; i < NS; i += 2) vkt_buffer_destroy(b[i]);
    vkt_device_memory_stats(dev, &st);
    assert_int_equal(st.buffers, 0);
    assert_int_equal(st.in_use, 0);
    assert_true(st.blocks <= 1); /* one empty block is kept for reuse */
    tgpu_close(dev);
}

/* Freed space is reused: alloc/free cycles do not grow reserved memory. */
static void test_reuse(void **state)
{
    (void)state;
    vkt_device *dev = open_with(8 * MiB, 0);
    vkt_memory_stats st;
    uint64_t reserved = 0;
    for (int round = 0; round < 50; round++) {
        vkt_buffer *a, *b;
        assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 1 * MiB + (uint64_t)round, &a));
        assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 2 * MiB, &b));
        vkt_buffer_destroy(a);
        vkt_buffer_destroy(b);
        vkt_device_memory_stats(dev, &st);
        if (round == 0) reserved = st.reserved;
        assert_int_equal(st.reserved, reserved);
    }
    assert_int_equal(st.blocks, 1);
    assert_int_equal(st.peak_reserved, 8 * MiB);
    tgpu_close(dev);
}

/* Holes are filled and coalesced: free every other 1 MiB buffer of a full
 * block, a 2 MiB request cannot fit the holes, and once neighbours are freed
 * the merged space takes it without a new block. */
static void test_fragmentation(void **state)
{
    (void)state;
    vkt_device *dev = open_with(8 * MiB, 0);
    vkt_buffer *b[8];
    for (int i = 0; i < 8; i++) assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, MiB, &b[i]));
    vkt_memory_stats st;
    vkt_device_memory_stats(dev, &st);
    assert_int_equal(st.blocks, 1);
    for (int i = 0; i < 8; i += 2) {
        vkt_buffer_destroy(b[i]);
        b[i] = NULL;
    }
    vkt_buffer *big;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 2 * MiB, &big));
    vkt_device_memory_stats(dev, &st);
    assert_int_equal(st.blocks, 2); /* no 2 MiB hole in the first block */
    vkt_buffer_destroy(big);
    vkt_buffer_destroy(b[1]); /* now [0,3) MiB is one coalesced hole */
    b[1] = NULL;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 3 * MiB, &big));
    assert_ptr_equal(big->alloc.block, b[3]->alloc.block); /* the first block's merged hole */
    assert_int_equal(big->alloc.offset, 0);
    vkt_device_memory_stats(dev, &st);
    assert_int_equal(st.blocks, 2);
    assert_int_equal(st.reserved, 16 * MiB);
    vkt_buffer_destroy(big);
    for (int i = 0; i < 8; i++) vkt_buffer_destroy(b[i]);
    tgpu_close(dev);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    vkt_device *dev = open_with(4 * MiB, 16 * MiB);
    vkt_buffer *b[64];
    int n = 0;
    vkt_status st = VKT_OK;
    while (n < 64 && (st = vkt_buffer_create(dev, VKT_MEMORY_DEVICE, MiB, &b[n])) == VKT_OK) n++;
    assert_int_equal(st, VKT_ERR_NOMEM);
    assert_int_equal(n, 16);
    assert_non_null(strstr(vkt_last_error(), "memory limit"));
    print_message("OOM message: %s\n", vkt_last_error());
    vkt_buffer_destroy(b[--n]);
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, MiB, &b[n++]));
    while (n) vkt_buffer_destroy(b[--n]);
    /* A request larger than the whole heap is refused with a clear error. */
    vkt_buffer *huge = NULL;
    vkt_device *d2 = open_with(0, 0);
    const vkt_device_caps *c = vkt_device_get_caps(d2);
    uint64_t heap = 0;
    for (uint32_t h = 0; h < c->heap_count; h++)
        if (c->heaps[h].size > heap) heap = c->heaps[h].size;
    assert_int_equal(vkt_buffer_create(d2, VKT_MEMORY_DEVICE, heap + MiB, &huge), VKT_ERR_NOMEM);
    assert_null(huge);
    print_message("huge message: %s\n", vkt_last_error());
    assert_int_equal(vkt_buffer_create(d2, VKT_MEMORY_DEVICE, 0, &huge), VKT_ERR_INVALID_ARG);
    tgpu_close(d2);
    tgpu_close(dev);
}

static void round_trip(vkt_device *dev, vkt_memory_kind kind, uint64_t size)
{
    vkt_buffer *b;
    assert_vkt_ok(vkt_buffer_create(dev, kind, size, &b));
    unsigned char *in = malloc(size), *out = malloc(size);
    for (uint64_t i = 0; i < size; i++) in[i] = (unsigned char)(i * 7 + kind);
    assert_vkt_ok(vkt_buffer_upload(b, 0, in, size));
    memset(out, 0, size);
    assert_vkt_ok(vkt_buffer_download(b, 0, out, size));
    assert_memory_equal(in, out, size);
    if (size > 8) { /* partial, unaligned ranges */
        assert_vkt_ok(vkt_buffer_download(b, 3, out, size - 5));
        assert_memory_equal(in + 3, out, size - 5);
    }
    assert_int_equal(vkt_buffer_download(b, size - 1, out, 2), VKT_ERR_INVALID_ARG);
    assert_vkt_ok(vkt_buffer_upload(b, size, in, 0)); /* n == 0 is a no-op */
    free(in);
    free(out);
    vkt_buffer_destroy(b);
}

static void test_round_trip_all_kinds(void **state)
{
    (void)state;
    vkt_device *dev = tgpu_open();
    for (int k = VKT_MEMORY_DEVICE; k <= VKT_MEMORY_STAGING; k++) {
        round_trip(dev, (vkt_memory_kind)k, 1);
        round_trip(dev, (vkt_memory_kind)k, 4099);
        round_trip(dev, (vkt_memory_kind)k, 3 * MiB + 5);
    }
    tgpu_close(dev);
}

/* The staging path (for device memory the host cannot map, as on discrete
 * GPUs) is exercised here even though lavapipe's memory is mappable: the
 * buffer's mapping is hidden so upload/download must copy on the GPU. */
static void test_staged_copies(void **state)
{
    (void)state;
    vkt_device *dev = tgpu_open();
    uint64_t size = 40 * MiB + 12; /* more than the 16 MiB staging buffer: chunked */
    vkt_buffer *b;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, size, &b));
    void *saved = b->alloc.mapped;
    b->alloc.mapped = NULL;
    uint32_t *in = malloc(size), *out = malloc(size);
    for (uint64_t i = 0; i < size / 4; i++) in[i] = (uint32_t)(i * 2654435761u);
    vkt_memory_stats before, after;
    vkt_device_memory_stats(dev, &before);
    assert_vkt_ok(vkt_buffer_upload(b, 0, in, size));
    assert_memory_equal((char *)saved, in, size); /* the GPU copy really landed */
    vkt_device_memory_stats(dev, &after); /* the runtime's staging buffer is not counted */
    assert_int_equal(after.buffers, before.buffers);
    assert_int_equal(after.reserved, before.reserved);
    memset(out, 0, size);
    assert_vkt_ok(vkt_buffer_download(b, 0, out, size));
    assert_memory_equal(in, out, size);
    b->alloc.mapped = saved;
    free(in);
    free(out);
    vkt_buffer_destroy(b);
    tgpu_close(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_sizes),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_round_trip_all_kinds),
        cmocka_unit_test(test_staged_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
