/* Robustness of the runtime: every host allocation failure in a create or a
 * dispatch is a clean VKT_ERR_NOMEM (ASan checks nothing leaks), and one
 * device serves several threads at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "test_gpu.h"

/* Everything a short job does, from buffers to a recorded dispatch. */
static vkt_status job(vkt_device *dev)
{
    vkt_buffer *x = NULL, *y = NULL;
    vkt_pipeline *p = NULL;
    vkt_stream *s = NULL;
    vkt_timeline *t = NULL;
    uint32_t spec[2] = {64, 1};
    vkt_pipeline_opts o = VKT_PIPELINE_OPTS_INIT;
    o.shader = "axpy_f32";
    o.bindings = 2;
    o.push_size = 8;
    o.spec = spec;
    o.spec_count = 2;
    struct { uint32_t n; float a; } push = {256, 2.0f};
    vkt_status st = vkt_buffer_create(dev, VKT_MEMORY_DEVICE, 1024, &x);
    if (st == VKT_OK) st = vkt_buffer_create(dev, VKT_MEMORY_HOST, 1024, &y);
    if (st == VKT_OK) st = vkt_pipeline_create(dev, &o, &p);
    if (st == VKT_OK) st = vkt_stream_create(dev, &s);
    if (st == VKT_OK) st = vkt_timeline_create(dev, 0, &t);
    if (st == VKT_OK) st = vkt_stream_begin(s);
    vkt_binding b[2] = {{x, 0, 0}, {y, 0, 0}};
    for (int i = 0; i < 300 && st == VKT_OK; i++) /* outgrows the first descriptor pool */
        st = vkt_stream_dispatch(s, p, b, 2, &push, sizeof push, 4, 1, 1);
    if (st == VKT_OK) st = vkt_stream_end(s);
    if (st == VKT_OK) st = vkt_stream_run(s);
    vkt_timeline_destroy(t);
    vkt_stream_destroy(s);
    vkt_pipeline_destroy(p);
    vkt_buffer_destroy(x);
    vkt_buffer_destroy(y);
    return st;
}

static void test_alloc_failures(void **state)
{
    vkt_device *dev = *state;
    int failures = 0;
    for (int fail_at = 1; fail_at < 2000; fail_at++) {
        tgpu_fail_allocation(fail_at);
        vkt_status st = job(dev);
        tgpu_fail_allocation(0);
        if (tgpu_alloc_calls() < fail_at) {
            assert_int_equal(st, VKT_OK);
            break;
        }
        assert_int_equal(st, VKT_ERR_NOMEM);
        failures++;
    }
    print_message("a short job failed cleanly at each of %d allocations\n", failures);
    assert_true(failures >= 5);
    vkt_memory_stats ms;
    vkt_device_memory_stats(dev, &ms);
    assert_int_equal(ms.buffers, 0);
}

typedef struct worker {
    vkt_device *dev;
    int id;
    vkt_status st;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    w->st = VKT_OK;
    for (int i = 0; i < 5 && w->st == VKT_OK; i++) w->st = job(w->dev);
    return NULL;
}

static void test_threads_share_a_device(void **state)
{
    vkt_device *dev = *state;
    enum { T = 4 };
    pthread_t th[T];
    worker w[T];
    for (int i = 0; i < T; i++) {
        w[i] = (worker){dev, i, VKT_ERR_INTERNAL};
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].st, VKT_OK);
    }
    vkt_memory_stats ms;
    vkt_device_memory_stats(dev, &ms);
    assert_int_equal(ms.buffers, 0);
    assert_int_equal(ms.in_use, 0);
}



int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_threads_share_a_device),
    };
    return cmocka_run_group_tests(tests, tgpu_group_setup, tgpu_group_teardown);
}
