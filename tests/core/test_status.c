/* Status codes, per-thread last error, allocation hooks, version. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/core_int.h"
#include "vktrain/vktrain.h"

static void test_status_names(void **state)
{
    (void)state;
    assert_int_equal(VKT_OK, 0);
    assert_string_equal(vkt_status_str(VKT_OK), "success");
    assert_string_equal(vkt_status_name(VKT_ERR_TIMEOUT), "ERR_TIMEOUT");
    assert_string_equal(vkt_status_str(VKT_ERR_NOMEM), "out of memory");
    /* Pinned numbering: codes are only ever appended. */
    assert_int_equal(VKT_ERR_INVALID_ARG, 1);
    assert_int_equal(VKT_ERR_CORRUPT, 10);
    assert_int_equal(VKT_ERR_INTERNAL, 11);
    assert_int_equal(VKT_ERR_NUMERIC, 12);
    for (int s = 0; s <= VKT_ERR_NUMERIC; s++) {
        assert_non_null(vkt_status_str((vkt_status)s));
        assert_string_not_equal(vkt_status_str((vkt_status)s), "unknown status");
    }
    assert_string_equal(vkt_status_str((vkt_status)999), "unknown status");
}

static void *other_thread(void *arg)
{
    (void)arg;
    VKT_ERROR(VKT_ERR_IO, "error in the other thread");
    return strdup(vkt_last_error());
}

static void test_last_error_is_per_thread(void **state)
{
    (void)state;
    vkt_clear_error();
    assert_string_equal(vkt_last_error(), "");
    assert_int_equal(VKT_ERROR(VKT_ERR_INVALID_ARG, "bad value %d", 42), VKT_ERR_INVALID_ARG);
    assert_string_equal(vkt_last_error(), "bad value 42");
    pthread_t t;
    void *msg;
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    assert_int_equal(pthread_join(t, &msg), 0);
    assert_string_equal(msg, "error in the other thread");
    free(msg);
    assert_string_equal(vkt_last_error(), "bad value 42"); /* untouched by the other thread */
    vkt__error_context(VKT_ERR_INVALID_ARG, "rank %d", 3);
    assert_string_equal(vkt_last_error(), "rank 3: bad value 42");
}

/* An allocator that fails the Nth call. */
static int alloc_countdown;
static void *failing_alloc(void *u, size_t n)
{
    (void)u;
    return --alloc_countdown == 0 ? NULL : malloc(n);
}
static void *failing_realloc(void *u, void *p, size_t n)
{
    (void)u;
    return --alloc_countdown == 0 ? NULL : realloc(p, n);
}
static void plain_free(void *u, void *p)
{
    (void)u;
    free(p);
}

static void test_allocator_hook(void **state)
{
    (void)state;
    vkt_allocator a = {failing_alloc, failing_realloc, plain_free, NULL};
    vkt_set_allocator(&a);
    alloc_countdown = 2;
    char *s1 = vkt_strdup("first");
    char *s2 = vkt_strdup("second"); /* the 2nd allocation fails */
    vkt_set_allocator(NULL);
    assert_non_null(s1);
    assert_null(s2);
    assert_string_equal(s1, "first");
    vkt_free(s1);
    vkt_free(NULL);
    assert_null(vkt_calloc(SIZE_MAX / 2, 4)); /* overflow is refused, not wrapped */
    void *z = vkt_malloc(0);
    assert_non_null(z);
    vkt_free(z);
}

static void test_version(void **state)
{
    (void)state;
    assert_int_equal(vkt_version(), VKT_VERSION_NUMBER);
    assert_string_equal(vkt_version_string(), VKT_VERSION_STRING);
}

static void test_fmt_bytes(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(vkt__fmt_bytes(b, sizeof b, 512), "512 B");
    assert_string_equal(vkt__fmt_bytes(b, sizeof b, 3ull << 29), "1.5 GiB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_last_error_is_per_thread),
        cmocka_unit_test(test_allocator_hook),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_fmt_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
