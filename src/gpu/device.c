/* Device enumeration, creation and destruction; the locked queue. */
#include <stdio.h>
#include <string.h>

#include "gpu/gpu_int.h"

/* Fill caps for every physical device of inst. *out is vkt_malloc'd. */
static vkt_status list_physical(VkInstance inst, VkPhysicalDevice **phys,
                                vkt_device_caps **out, uint32_t *count)
{
    uint32_t n = 0;
    *out = NULL;
    *count = 0;
    if (phys) *phys = NULL;
    VkResult r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    if (r < 0) return vkt__vk_error(__FILE__, __LINE__, r, NULL, "vkEnumeratePhysicalDevices");
    VkPhysicalDevice *pd = vkt_calloc(n ? n : 1, sizeof *pd);
    vkt_device_caps *caps = vkt_calloc(n ? n : 1, sizeof *caps);
    if (!pd || !caps) {
        vkt_free(pd);
        vkt_free(caps);
        return VKT_ERROR(VKT_ERR_NOMEM, "out of host memory listing Vulkan devices");
    }
    r = vkEnumeratePhysicalDevices(inst, &n, pd);
    if (r < 0) {
        vkt_free(pd);
        vkt_free(caps);
        return vkt__vk_error(__FILE__, __LINE__, r, NULL, "vkEnumeratePhysicalDevices");
    }
    for (uint32_t i = 0; i < n; i++) vkt__caps_query(pd[i], i, &caps[i]);
    uint32_t dflt;
    if (n && vkt__device_pick(caps, n, vkt__env_str("VKT_DEVICE"), &dflt) == VKT_OK)
        caps[dflt].is_default = true;
    vkt_clear_error(); /* having no default is not a failure of the listing */
    if (phys) *phys = pd;
    else vkt_free(pd);
    *out = caps;
    *count = n;
    return VKT_OK;
}

vkt_status vkt_device_enumerate(vkt_device_caps **out, uint32_t *count)
{
    VKT_FAIL_IF(!out || !count, VKT_ERR_INVALID_ARG, "vkt_device_enumerate: NULL argument");
    vkt_instance inst;
    VKT_CHECK(vkt__instance_init(&inst, false));
    vkt_status st = list_physical(inst.instance, NULL, out, count);
    vkt__instance_fini(&inst);
    return st;
}

static vkt_status find_compute_queue(vkt_device *dev)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(dev->phys, &n, NULL);
    VkQueueFamilyProperties *q = vkt_calloc(n ? n : 1, sizeof *q);
    VKT_FAIL_IF(!q, VKT_ERR_NOMEM, "out of host memory");
    vkGetPhysicalDeviceQueueFamilyProperties(dev->phys, &n, q);
    int best = -1;
    for (uint32_t i = 0; i < n && best < 0; i++)
        if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) best = (int)i;
    vkt_free(q);
    VKT_FAIL_IF(best < 0, VKT_ERR_UNSUPPORTED, "device '%s' has no compute queue",
                dev->caps.name);
    dev->queue_family = (uint32_t)best;
    return VKT_OK;
}

/* Enable every feature we use that the device has; require timelines. */
static vkt_status create_logical(vkt_device *dev)
{
    const vkt_device_caps *c = &dev->caps;
    VkPhysicalDeviceShaderAtomicFloatFeaturesEXT af = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT,
        .shaderBufferFloat32AtomicAdd = c->fp32_atomic_add};
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .pNext = c->fp32_atomic_add ? &af : NULL,
        .timelineSemaphore = VK_TRUE,
        .shaderFloat16 = c->shader_fp16,
        .shaderInt8 = c->shader_int8,
        .storageBuffer8BitAccess = c->storage_8bit,
    };
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        .pNext = &f12,
        .storageBuffer16BitAccess = c->storage_16bit,
    };
    VkPhysicalDeviceFeatures2 f = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &f11,
        .features = {.shaderInt16 = c->shader_int16,
                     .shaderInt64 = c->shader_int64,
                     .shaderFloat64 = c->shader_fp64},
    };
    const char *exts[1];
    uint32_t next = 0;
    if (c->fp32_atomic_add) exts[next++] = VK_EXT_SHADER_ATOMIC_FLOAT_EXTENSION_NAME;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                   .queueFamilyIndex = dev->queue_family,
                                   .queueCount = 1,
                                   .pQueuePriorities = &prio};
    VkDeviceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                             .pNext = &f,
                             .queueCreateInfoCount = 1,
                             .pQueueCreateInfos = &qci,
                             .enabledExtensionCount = next,
                             .ppEnabledExtensionNames = exts};
    VKT_VK(dev, vkCreateDevice(dev->phys, &ci, NULL, &dev->device), "vkCreateDevice");
    vkGetDeviceQueue(dev->device, dev->queue_family, 0, &dev->queue);
    vkGetPhysicalDeviceMemoryProperties(dev->phys, &dev->memprops);
    return VKT_OK;
}

static vkt_status choose_physical(vkt_device *dev, const char *select)
{
    VkPhysicalDevice *pd = NULL;
    vkt_device_caps *caps = NULL;
    uint32_t n = 0;
    VKT_CHECK(list_physical(dev->inst.instance, &pd, &caps, &n));
    if (!select || !*select) select = vkt__env_str("VKT_DEVICE");
    uint32_t i = 0;
    vkt_status st = vkt__device_pick(caps, n, select, &i);
    if (st == VKT_OK) {
        dev->phys = pd[i];
        dev->caps = caps[i];
    }
    vkt_free(pd);
    vkt_free(caps);
    return st;
}

vkt_status vkt_device_create(const vkt_device_opts *opts, vkt_device **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_device_create: out is NULL");
    *out = NULL;
    vkt_device_opts o = VKT_DEVICE_OPTS_INIT;
    if (opts) {
        VKT_FAIL_IF(opts->struct_size < sizeof(uint32_t) || opts->struct_size > sizeof o,
                    VKT_ERR_INVALID_ARG,
                    "vkt_device_create: opts.struct_size %u is not a known version; "
                    "initialise opts with VKT_DEVICE_OPTS_INIT", opts->struct_size);
        memcpy(&o, opts, opts->struct_size);
    }
    vkt_device *dev = vkt_calloc(1, sizeof *dev);
    VKT_FAIL_IF(!dev, VKT_ERR_NOMEM, "vkt_device_create: out of host memory");
    dev->magic = VKT_DEVICE_MAGIC;
    pthread_mutex_init(&dev->queue_lock, NULL);
    pthread_mutex_init(&dev->xfer_lock, NULL);
    pthread_mutex_init(&dev->mem.lock, NULL);
    vkt_status st;
    VKT_CHECK_GOTO(st, vkt__instance_init(&dev->inst, vkt__validation_wanted(o.validation)),
                   fail);
    VKT_CHECK_GOTO(st, choose_physical(dev, o.select), fail);
    VKT_CHECK_GOTO(st, find_compute_queue(dev), fail);
    VKT_CHECK_GOTO(st, create_logical(dev), fail);
    VKT_CHECK_GOTO(st, vkt__mem_init(dev, o.block_size, o.memory_limit), fail);
    VKT_CHECK_GOTO(st, vkt__pipeline_cache_open(dev, o.pipeline_cache_dir), fail);
    *out = dev;
    return VKT_OK;
fail:
    vkt_device_destroy(dev);
    return st;
}

void vkt_device_destroy(vkt_device *dev)
{
    if (!dev) return;
    if (dev->device) {
        vkDeviceWaitIdle(dev->device);
        vkt__xfer_fini(dev);
        vkt__pipeline_cache_close(dev);
        vkt__mem_fini(dev);
        vkDestroyDevice(dev->device, NULL);
    }
    vkt__instance_fini(&dev->inst);
    pthread_mutex_destroy(&dev->queue_lock);
    pthread_mutex_destroy(&dev->xfer_lock);
    pthread_mutex_destroy(&dev->mem.lock);
    dev->magic = 0;
    vkt_free(dev);
}

const vkt_device_caps *vkt_device_get_caps(const vkt_device *dev)
{
    return dev ? &dev->caps : NULL;
}

uint64_t vkt_device_validation_messages(const vkt_device *dev)
{
    return dev ? atomic_load(&((vkt_device *)dev)->inst.messages) : 0;
}

vkt_status vkt_device_wait_idle(vkt_device *dev)
{
    VKT_FAIL_IF(!dev || dev->magic != VKT_DEVICE_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_device_wait_idle: not a device");
    pthread_mutex_lock(&dev->queue_lock);
    VkResult r = vkQueueWaitIdle(dev->queue);
    pthread_mutex_unlock(&dev->queue_lock);
    if (r < 0) return vkt__vk_error(__FILE__, __LINE__, r, dev->caps.name, "vkQueueWaitIdle");
    return VKT_OK;
}

vkt_status vkt__queue_submit(vkt_device *dev, const VkSubmitInfo *info, VkFence fence)
{
    /* VKT_INJECT_FAULT=device_lost:N (test-only): the N-th submit finds the device lost. */
    if (vkt__fault_hit("device_lost"))
        return vkt__vk_error(__FILE__, __LINE__, VK_ERROR_DEVICE_LOST, dev->caps.name,
                             "vkQueueSubmit");
    pthread_mutex_lock(&dev->queue_lock);
    VkResult r = vkQueueSubmit(dev->queue, 1, info, fence);
    pthread_mutex_unlock(&dev->queue_lock);
    if (r < 0) return vkt__vk_error(__FILE__, __LINE__, r, dev->caps.name, "vkQueueSubmit");
    return VKT_OK;
}
