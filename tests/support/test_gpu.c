#include "test_gpu.h"

#include <stdlib.h>

vkt_device *tgpu_open(void)
{
    vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
    o.validation = VKT_VALIDATION_ON;
    vkt_device *dev = NULL;
    assert_vkt_ok(vkt_device_create(&o, &dev));
    assert_non_null(dev);
    return dev;
}

void tgpu_close(vkt_device *dev)
{
    uint64_t n = vkt_device_validation_messages(dev);
    vkt_device_destroy(dev);
    if (n) print_error("%llu Vulkan validation message(s), see above\n", (unsigned long long)n);
    assert_int_equal(n, 0);
}

vkt_pipeline *tgpu_pipeline(vkt_device *dev, const char *shader, uint32_t bindings,
                            uint32_t push_size, const uint32_t *spec, uint32_t spec_count)
{
    vkt_pipeline_opts o = VKT_PIPELINE_OPTS_INIT;
    o.shader = shader;
    o.bindings = bindings;
    o.push_size = push_size;
    o.spec = spec;
    o.spec_count = spec_count;
    vkt_pipeline *p = NULL;
    assert_vkt_ok(vkt_pipeline_create(dev, &o, &p));
    return p;
}

int tgpu_group_setup(void **state)
{
    *state = tgpu_open();
    return 0;
}

int tgpu_group_teardown(void **state)
{
    uint64_t n = vkt_device_validation_messages(*state);
    vkt_device_destroy(*state);
    if (n) print_error("%llu Vulkan validation message(s), see above\n", (unsigned long long)n);
    return n ? -1 : 0;
}

static int fail_at, calls;

static void *fail_alloc(void *u, size_t n)
{
    (void)u;
    return ++calls == fail_at ? NULL : malloc(n);
}

static void *fail_realloc(void *u, void *p, size_t n)
{
    (void)u;
    return ++calls == fail_at ? NULL : realloc(p, n);
}

static void plain_free(void *u, void *p)
{
    (void)u;
    free(p);
}

void tgpu_fail_allocation(int n)
{
    static const vkt_allocator a = {fail_alloc, fail_realloc, plain_free, NULL};
    if (n) calls = 0; /* removing keeps the count for tgpu_alloc_calls */
    fail_at = n;
    vkt_set_allocator(n ? &a : NULL);
}

int tgpu_alloc_calls(void) { return calls; }

void tgpu_fill_random(float *v, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v[i] = (float)(x >> 8) / (float)(1u << 23) - 1.0f;
    }
}

/* The Vulkan loader unloads the driver and the validation layer when an
 * instance is destroyed; their never-freed one-time allocations then show up
 * in LeakSanitizer as "<unknown module>" and cannot be matched by the
 * library-name suppressions in tests/lsan.supp. Keeping both loaded for the
 * life of the test process lets the report name them. */
#include <dlfcn.h>
__attribute__((constructor)) static void pin_vulkan_libraries(void)
{
    static const char *libs[] = {"libvulkan_lvp.so", "libVkLayer_khronos_validation.so"};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++)
        dlopen(libs[i], RTLD_NOW | RTLD_NODELETE | RTLD_GLOBAL);
}
