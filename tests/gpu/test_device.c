/* Device enumeration, selection, capabilities, validation, pipeline cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu/gpu_int.h"
#include "test_gpu.h"

static void test_enumerate(void **state)
{
    (void)state;
    vkt_device_caps *caps = NULL;
    uint32_t n = 0;
    assert_vkt_ok(vkt_device_enumerate(&caps, &n));
    assert_true(n >= 1); /* lavapipe at least */
    int defaults = 0;
    for (uint32_t i = 0; i < n; i++) {
        const vkt_device_caps *c = &caps[i];
        assert_int_equal(c->index, i);
        assert_true(strlen(c->name) > 0);
        defaults += c->is_default;
        if (!c->usable) continue;
        assert_true(c->subgroup_size >= 1);
        assert_true(c->subgroup_min_size <= c->subgroup_size);
        assert_true(c->subgroup_size <= c->subgroup_max_size);
        assert_true(c->max_shared_memory >= 16384); /* Vulkan's required minimum */
        assert_true(c->max_storage_buffer_range >= (1u << 27));
        assert_true(c->max_push_constants >= 128);
        assert_true(c->heap_count >= 1);
        assert_true(c->heaps[0].size > 0);
        print_message("device %u: %s (%s), subgroup %u, storage range %llu, heaps %u\n", i,
                      c->name, vkt_device_type_str(c->type), c->subgroup_size,
                      (unsigned long long)c->max_storage_buffer_range, c->heap_count);
    }
    assert_int_equal(defaults, 1);
    vkt_free(caps);
}

static void test_open_default_and_caps(void **state)
{
    (void)state;
    vkt_device *dev = tgpu_open();
    const vkt_device_caps *c = vkt_device_get_caps(dev);
    assert_true(c->usable);
    assert_true(c->is_default);
    if (c->type == VKT_DEVICE_CPU) { /* lavapipe: facts the kernels rely on */
        assert_true(c->unified_memory);
        assert_true(c->timestamps);
    }
    assert_vkt_ok(vkt_device_wait_idle(dev));
    tgpu_close(dev);
}

/* Index, UUID and name substring all select the same device. */
static void test_select(void **state)
{
    (void)state;
    vkt_device_caps *caps = NULL;
    uint32_t n = 0;
    assert_vkt_ok(vkt_device_enumerate(&caps, &n));
    char idx[16], uuid[40], part[8];
    snprintf(idx, sizeof idx, "%u", caps[0].index);
    char *p = uuid;
    for (int i = 0; i < 16; i++) {
        p += sprintf(p, "%02X", caps[0].uuid[i]);
        if (i == 3) *p++ = '-';
    }
    snprintf(part, sizeof part, "%.4s", caps[0].name);
    for (char *q = part; *q; q++) *q = (char)((*q >= 'a' && *q <= 'z') ? *q - 32 : *q);
    const char *sels[] = {idx, uuid, part};
    for (int i = 0; i < 3; i++) {
        vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
        o.validation = VKT_VALIDATION_ON;
        o.select = sels[i];
        vkt_device *dev = NULL;
        assert_vkt_ok(vkt_device_create(&o, &dev));
        assert_memory_equal(vkt_device_get_caps(dev)->uuid, caps[0].uuid, 16);
        tgpu_close(dev);
    }
    vkt_free(caps);
}

static void test_select_errors(void **state)
{
    (void)state;
    vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
    vkt_device *dev = (vkt_device *)0x1;
    o.select = "no-such-gpu-anywhere";
    assert_int_equal(vkt_device_create(&o, &dev), VKT_ERR_INVALID_ARG);
    assert_null(dev);
    /* The message says what was asked and lists what exists. */
    assert_non_null(strstr(vkt_last_error(), "no-such-gpu-anywhere"));
    assert_non_null(strstr(vkt_last_error(), "0: "));
    o.select = "99";
    assert_int_equal(vkt_device_create(&o, &dev), VKT_ERR_INVALID_ARG);
    o.select = NULL;
    o.struct_size = 1;
    assert_int_equal(vkt_device_create(&o, &dev), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "VKT_DEVICE_OPTS_INIT"));
    assert_int_equal(vkt_device_create(NULL, NULL), VKT_ERR_INVALID_ARG);
    vkt_device_destroy(NULL); /* accepts NULL */
}

/* The validation layer is really on, so a clean run means something: a
 * buffer created with no usage bits (a benign misuse that lavapipe accepts)
 * is reported and counted. */
static void test_validation_catches_misuse(void **state)
{
    (void)state;
    vkt_device *dev = tgpu_open();
    VkBufferCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = 256,
                             .usage = 0, /* VUID-VkBufferCreateInfo-usage-requiredbitmask */
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkBuffer b = VK_NULL_HANDLE;
    if (vkCreateBuffer(dev->device, &ci, NULL, &b) == VK_SUCCESS)
        vkDestroyBuffer(dev->device, b, NULL);
    uint64_t n = vkt_device_validation_messages(dev);
    print_message("validation messages after the misuse: %llu (expected > 0)\n",
                  (unsigned long long)n);
    assert_true(n > 0);
    vkt_device_destroy(dev);
}

/* The pipeline's bindings and push size are checked against what the SPIR-V
 * declares, before the driver sees a mismatch. */
static void test_pipeline_checked_against_shader(void **state)
{
    (void)state;
    vkt_device *dev = tgpu_open();
    vkt_pipeline_opts o = VKT_PIPELINE_OPTS_INIT;
    uint32_t spec[2] = {64, 1};
    o.shader = "axpy_f32";
    o.bindings = 2;
    o.push_size = 4; /* the shader's block is 8 bytes */
    o.spec = spec;
    o.spec_count = 2;
    vkt_pipeline *p = (vkt_pipeline *)0x1;
    assert_int_equal(vkt_pipeline_create(dev, &o, &p), VKT_ERR_INVALID_ARG);
    assert_null(p);
    assert_non_null(strstr(vkt_last_error(), "has 2 bindings and 8 push-constant bytes"));
    o.push_size = 8;
    o.bindings = 1;
    assert_int_equal(vkt_pipeline_create(dev, &o, &p), VKT_ERR_INVALID_ARG);
    o.bindings = 2;
    o.struct_size = offsetof(vkt_pipeline_opts, spec); /* an older caller: no spec fields */
    assert_vkt_ok(vkt_pipeline_create(dev, &o, &p));
    vkt_pipeline_destroy(p);
    tgpu_close(dev);
}

static int count_files(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -1 '%s' 2>/dev/null | grep -c '^pipelines-.*\\.bin$'", dir);
    FILE *f = popen(cmd, "r");
    int n = 0;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = 0;
        pclose(f);
    }
    return n;
}

/* The pipeline cache is written on destroy, read on the next create, and a
 * damaged file is ignored rather than handed to the driver. */
static void test_pipeline_cache_persisted(void **state)
{
    (void)state;
    char dir[] = "/tmp/vkt_pcache_XXXXXX";
    assert_non_null(mkdtemp(dir));
    for (int round = 0; round < 3; round++) {
        vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
        o.validation = VKT_VALIDATION_ON;
        o.pipeline_cache_dir = dir;
        vkt_device *dev = NULL;
        assert_vkt_ok(vkt_device_create(&o, &dev));
        uint32_t spec[2] = {64, 4};
        vkt_pipeline *p = tgpu_pipeline(dev, "axpy_f32", 2, 8, spec, 2);
        vkt_pipeline_destroy(p);
        tgpu_close(dev);
        assert_int_equal(count_files(dir), 1);
        if (round == 1) { /* damage the file: the next open must still work */
            char cmd[600];
            snprintf(cmd, sizeof cmd, "for f in '%s'/pipelines-*.bin; do "
                     "printf 'garbage' | dd of=\"$f\" bs=1 seek=40 conv=notrunc 2>/dev/null; done",
                     dir);
            assert_int_equal(system(cmd), 0);
        }
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Every host allocation failure during create is a clean VKT_ERR_NOMEM
 * (ASan checks that nothing leaks on any of these paths). */
static void test_create_alloc_failures(void **state)
{
    (void)state;
    int failures = 0;
    for (int fail_at = 1; fail_at < 200; fail_at++) {
        tgpu_fail_allocation(fail_at);
        vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
        o.validation = VKT_VALIDATION_OFF;
        o.pipeline_cache_dir = "";
        vkt_device *dev = NULL;
        vkt_status st = vkt_device_create(&o, &dev);
        vkt_device_destroy(dev);
        tgpu_fail_allocation(0);
        if (tgpu_alloc_calls() < fail_at) { /* all allocations passed: done */
            assert_int_equal(st, VKT_OK);
            break;
        }
        /* A failed allocation either fails the create cleanly, or was in an
         * optional query that degrades (e.g. an extension list). */
        assert_true(st == VKT_OK || st == VKT_ERR_NOMEM);
        if (st != VKT_OK) {
            assert_null(dev);
            failures++;
        }
    }
    print_message("device create survived %d injected allocation failures\n", failures);
    assert_true(failures > 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enumerate),
        cmocka_unit_test(test_open_default_and_caps),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_select_errors),
        cmocka_unit_test(test_validation_catches_misuse),
        cmocka_unit_test(test_pipeline_checked_against_shader),
        cmocka_unit_test(test_pipeline_cache_persisted),
        cmocka_unit_test(test_create_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
