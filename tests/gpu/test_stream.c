/* Command streams: record once and replay; timeline semaphores waited on
 * from another thread; GPU timestamps; host-signalled waits in a submit. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_gpu.h"

#define N 4099u

typedef struct fixture {
    vkt_device *dev;
    vkt_pipeline *axpy;
    vkt_buffer *x, *y;
    vkt_stream *s;
} fixture;

static void record_axpy(fixture *f, float a)
{
    struct { uint32_t n; float a; } push = {N, a};
    vkt_binding b[2] = {{f->x, 0, 0}, {f->y, 0, 0}};
    assert_vkt_ok(vkt_stream_begin(f->s));
    assert_vkt_ok(vkt_stream_dispatch(f->s, f->axpy, b, 2, &push, 8, (N + 63) / 64, 1, 1));
    assert_vkt_ok(vkt_stream_end(f->s));
}

static void load(fixture *f, float xv, float yv)
{
    float host[N];
    for (uint32_t i = 0; i < N; i++) host[i] = xv * (float)(i % 13);
    assert_vkt_ok(vkt_buffer_upload(f->x, 0, host, sizeof host));
    for (uint32_t i = 0; i < N; i++) host[i] = yv;
    assert_vkt_ok(vkt_buffer_upload(f->y, 0, host, sizeof host));
}

static void expect_y(fixture *f, float xv, float yv, float a, int times)
{
    float y[N];
    assert_vkt_ok(vkt_buffer_download(f->y, 0, y, sizeof y));
    for (uint32_t i = 0; i < N; i++) {
        float want = yv + (float)times * a * xv * (float)(i % 13);
        if (fabsf(y[i] - want) > 1e-4f * (1 + fabsf(want)))
            fail_msg("y[%u] = %g, want %g after %d replays", i, y[i], want, times);
    }
}

/* One recording, many submissions: each replay adds a*x again. */
static void test_replay(void **state)
{
    fixture *f = *state;
    load(f, 0.5f, 1.0f);
    record_axpy(f, 2.0f);
    for (int i = 0; i < 5; i++) assert_vkt_ok(vkt_stream_run(f->s));
    expect_y(f, 0.5f, 1.0f, 2.0f, 5);
    /* queued back to back without waiting in between: in-order execution */
    for (int i = 0; i < 3; i++) assert_vkt_ok(vkt_stream_submit(f->s, NULL));
    assert_vkt_ok(vkt_stream_wait(f->s, UINT64_MAX));
    expect_y(f, 0.5f, 1.0f, 2.0f, 8);
}

typedef struct waiter {
    vkt_timeline *t;
    uint64_t value;
    vkt_status st;
    volatile int woke;
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    w->st = vkt_timeline_wait(w->t, w->value, 20ull * 1000000000ull);
    w->woke = 1;
    return NULL;
}

/* The GPU waits for a host signal (value 1) and then signals value 2; a
 * second thread blocks on value 2. Nothing runs until the host signals. */
static void test_timeline_cross_thread(void **state)
{
    fixture *f = *state;
    load(f, 1.0f, 0.0f);
    record_axpy(f, 1.0f);
    vkt_timeline *t;
    assert_vkt_ok(vkt_timeline_create(f->dev, 0, &t));
    waiter w = {t, 2, VKT_ERR_INTERNAL, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_thread, &w), 0);
    vkt_sync_point wait = {t, 1}, signal = {t, 2};
    vkt_submit_opts so = VKT_SUBMIT_OPTS_INIT;
    so.waits = &wait;
    so.wait_count = 1;
    so.signals = &signal;
    so.signal_count = 1;
    assert_vkt_ok(vkt_stream_submit(f->s, &so));
    usleep(50000);
    assert_int_equal(w.woke, 0); /* still blocked: the GPU waits for the host */
    uint64_t v;
    assert_vkt_ok(vkt_timeline_value(t, &v));
    assert_int_equal(v, 0);
    assert_vkt_ok(vkt_timeline_signal(t, 1));
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.st, VKT_OK);
    assert_vkt_ok(vkt_timeline_value(t, &v));
    assert_int_equal(v, 2);
    assert_vkt_ok(vkt_stream_wait(f->s, UINT64_MAX));
    expect_y(f, 1.0f, 0.0f, 1.0f, 1);
    /* a wait that cannot be satisfied times out with a message */
    assert_int_equal(vkt_timeline_wait(t, 3, 10 * 1000000ull), VKT_ERR_TIMEOUT);
    assert_non_null(strstr(vkt_last_error(), "not reached"));
    /* values only go up */
    assert_int_equal(vkt_timeline_signal(t, 2), VKT_ERR_INVALID_ARG);
    vkt_timeline_destroy(t);
}

static void test_timestamps(void **state)
{
    fixture *f = *state;
    if (!vkt_device_get_caps(f->dev)->timestamps) {
        print_message("device has no compute timestamps: checked that recording one fails\n");
        assert_vkt_ok(vkt_stream_begin(f->s));
        assert_int_equal(vkt_stream_timestamp(f->s, NULL), VKT_ERR_UNSUPPORTED);
        assert_vkt_ok(vkt_stream_end(f->s));
        return;
    }
    struct { uint32_t n; float a; } push = {N, 1.0f};
    vkt_binding b[2] = {{f->x, 0, 0}, {f->y, 0, 0}};
    uint32_t slot[3];
    double t[3];
    assert_vkt_ok(vkt_stream_begin(f->s));
    assert_vkt_ok(vkt_stream_timestamp(f->s, &slot[0]));
    for (int i = 0; i < 20; i++) {
        assert_vkt_ok(vkt_stream_dispatch(f->s, f->axpy, b, 2, &push, 8, (N + 63) / 64, 1, 1));
        assert_vkt_ok(vkt_stream_barrier(f->s));
    }
    assert_vkt_ok(vkt_stream_timestamp(f->s, &slot[1]));
    assert_vkt_ok(vkt_stream_timestamp(f->s, &slot[2]));
    assert_vkt_ok(vkt_stream_end(f->s));
    /* not submitted yet: nothing to read */
    assert_int_equal(vkt_stream_timestamps(f->s, t, 3), VKT_ERR_INVALID_USAGE);
    assert_vkt_ok(vkt_stream_run(f->s));
    assert_vkt_ok(vkt_stream_timestamps(f->s, t, 3));
    print_message("20 dispatches between timestamps: %.1f us\n", t[1] * 1e6);
    assert_int_equal(slot[0], 0);
    assert_int_equal(slot[2], 2);
    assert_true(t[0] == 0.0);
    assert_true(t[1] > 0.0 && t[1] < 10.0);
    assert_true(t[2] >= t[1]);
    assert_int_equal(vkt_stream_timestamps(f->s, t, 4), VKT_ERR_INVALID_ARG);
}

/* Copies and fills inside a stream, ordered by barriers. */
static void test_copy_and_fill(void **state)
{
    fixture *f = *state;
    assert_vkt_ok(vkt_stream_begin(f->s));
    assert_vkt_ok(vkt_stream_fill(f->s, f->x, 0, N * 4, 0x3f800000u)); /* 1.0f */
    assert_vkt_ok(vkt_stream_barrier(f->s));
    assert_vkt_ok(vkt_stream_copy(f->s, f->x, 0, f->y, 0, N * 4));
    assert_int_equal(vkt_stream_copy(f->s, f->x, 0, f->x, 8, 16), VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_stream_fill(f->s, f->x, 2, 8, 0), VKT_ERR_INVALID_ARG);
    assert_vkt_ok(vkt_stream_end(f->s));
    assert_vkt_ok(vkt_stream_run(f->s));
    float y[N];
    assert_vkt_ok(vkt_buffer_download(f->y, 0, y, sizeof y));
    for (uint32_t i = 0; i < N; i++) assert_true(y[i] == 1.0f);
}

/* Many dispatches in one recording outgrow the first descriptor pool. */
static void test_many_dispatches(void **state)
{
    fixture *f = *state;
    load(f, 1.0f, 0.0f);
    struct { uint32_t n; float a; } push = {N, 0.5f};
    vkt_binding b[2] = {{f->x, 0, 0}, {f->y, 0, 0}};
    assert_vkt_ok(vkt_stream_begin(f->s));
    for (int i = 0; i < 600; i++) {
        assert_vkt_ok(vkt_stream_dispatch(f->s, f->axpy, b, 2, &push, 8, (N + 63) / 64, 1, 1));
        assert_vkt_ok(vkt_stream_barrier(f->s));
    }
    assert_vkt_ok(vkt_stream_end(f->s));
    assert_vkt_ok(vkt_stream_run(f->s));
    expect_y(f, 1.0f, 0.0f, 0.5f, 600);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dev = tgpu_open();
    uint32_t spec[2] = {64, 1};
    f->axpy = tgpu_pipeline(f->dev, "axpy_f32", 2, 8, spec, 2);
    assert_vkt_ok(vkt_buffer_create(f->dev, VKT_MEMORY_DEVICE, N * 4, &f->x));
    assert_vkt_ok(vkt_buffer_create(f->dev, VKT_MEMORY_DEVICE, N * 4, &f->y));
    assert_vkt_ok(vkt_stream_create(f->dev, &f->s));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    vkt_stream_destroy(f->s);
    vkt_buffer_destroy(f->x);
    vkt_buffer_destroy(f->y);
    vkt_pipeline_destroy(f->axpy);
    uint64_t n = vkt_device_validation_messages(f->dev);
    vkt_device_destroy(f->dev);
    free(f);
    return n ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_timeline_cross_thread),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_copy_and_fill),
        cmocka_unit_test(test_many_dispatches),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
