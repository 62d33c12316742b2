/* A buffer larger than maxStorageBufferRange (128 MiB on lavapipe), bound in
 * windows: every element is written by a kernel through the right window,
 * and a single binding that spans too much is refused with a message. */
#include <stdlib.h>
#include <string.h>

#include "test_gpu.h"

static void test_windows(void **state)
{
    (void)state;
    vkt_device *dev = tgpu_open();
    const vkt_device_caps *c = vkt_device_get_caps(dev);
    uint64_t range = c->max_storage_buffer_range;
    if (range > (256ull << 20)) range = 256ull << 20; /* keep big GPUs' runs short */
    uint64_t window = range / 4 * 4;                   /* whole uint32 elements */
    window -= window % c->min_storage_buffer_alignment;
    uint64_t size = window + window / 2 + 4096 + 12;   /* 1.5 windows and a ragged end */
    uint64_t elems = size / 4;
    print_message("buffer %llu MiB, window %llu MiB, %llu elements\n",
                  (unsigned long long)(size >> 20), (unsigned long long)(window >> 20),
                  (unsigned long long)elems);
    vkt_buffer *buf;
    assert_vkt_ok(vkt_buffer_create(dev, VKT_MEMORY_DEVICE, size, &buf));
    uint32_t spec[2] = {64, 64};
    vkt_pipeline *p = tgpu_pipeline(dev, "iota_u32", 1, 8, spec, 2);
    vkt_stream *s;
    assert_vkt_ok(vkt_stream_create(dev, &s));
    assert_vkt_ok(vkt_stream_begin(s));
    int windows = 0;
    for (uint64_t off = 0; off < elems * 4; off += window, windows++) {
        uint64_t bytes = elems * 4 - off < window ? elems * 4 - off : window;
        vkt_binding b = {buf, off, bytes};
        struct { uint32_t n, base; } push = {(uint32_t)(bytes / 4), (uint32_t)(off / 4)};
        uint32_t per_group = 64 * 64;
        assert_vkt_ok(vkt_stream_dispatch(s, p, &b, 1, &push, 8,
                                          (push.n + per_group - 1) / per_group, 1, 1));
    }
    /* One binding of the whole buffer is more than a descriptor can see. */
    vkt_binding all = {buf, 0, 0};
    struct { uint32_t n, base; } push = {1, 0};
    assert_int_equal(vkt_stream_dispatch(s, p, &all, 1, &push, 8, 1, 1, 1), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "windows"));
    assert_vkt_ok(vkt_stream_end(s));
    assert_vkt_ok(vkt_stream_run(s));
    assert_int_equal(windows, 2);
    uint32_t *host = malloc(size);
    assert_non_null(host);
    assert_vkt_ok(vkt_buffer_download(buf, 0, host, elems * 4));
    for (uint64_t i = 0; i < elems; i++)
        if (host[i] != (uint32_t)i) fail_msg("element %llu = %u", (unsigned long long)i, host[i]);
    free(host);
    vkt_stream_destroy(s);
    vkt_pipeline_destroy(p);
    vkt_buffer_destroy(buf);
    tgpu_close(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_windows)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
