/* Timeline semaphores: a 64-bit counter the GPU and host threads can signal
 * and wait on. */
#include "gpu/gpu_int.h"

vkt_status vkt_timeline_create(vkt_device *dev, uint64_t initial, vkt_timeline **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_timeline_create: out is NULL");
    *out = NULL;
    VKT_FAIL_IF(!dev || dev->magic != VKT_DEVICE_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_timeline_create: not a device");
    vkt_timeline *t = vkt_calloc(1, sizeof *t);
    VKT_FAIL_IF(!t, VKT_ERR_NOMEM, "vkt_timeline_create: out of host memory");
    t->dev = dev;
    VkSemaphoreTypeCreateInfo tci = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
                                     .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE,
                                     .initialValue = initial};
    VkSemaphoreCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &tci};
    VkResult r = vkCreateSemaphore(dev->device, &ci, NULL, &t->sem);
    if (r != VK_SUCCESS) {
        vkt_free(t);
        return vkt__vk_error(__FILE__, __LINE__, r, dev->caps.name, "vkCreateSemaphore");
    }
    *out = t;
    return VKT_OK;
}

void vkt_timeline_destroy(vkt_timeline *t)
{
    if (!t) return;
    vkDestroySemaphore(t->dev->device, t->sem, NULL);
    vkt_free(t);
}

vkt_status vkt_timeline_signal(vkt_timeline *t, uint64_t value)
{
    VKT_FAIL_IF(!t, VKT_ERR_INVALID_ARG, "vkt_timeline_signal: timeline is NULL");
    uint64_t now;
    VKT_CHECK(vkt_timeline_value(t, &now));
    VKT_FAIL_IF(value <= now, VKT_ERR_INVALID_ARG,
                "vkt_timeline_signal: value %llu is not above the current %llu",
                (unsigned long long)value, (unsigned long long)now);
    VkSemaphoreSignalInfo si = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO,
                                .semaphore = t->sem,
                                .value = value};
    VKT_VK(t->dev, vkSignalSemaphore(t->dev->device, &si), "vkSignalSemaphore");
    return VKT_OK;
}

vkt_status vkt_timeline_wait(vkt_timeline *t, uint64_t value, uint64_t timeout_ns)
{
    VKT_FAIL_IF(!t, VKT_ERR_INVALID_ARG, "vkt_timeline_wait: timeline is NULL");
    VkSemaphoreWaitInfo wi = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
                              .semaphoreCount = 1,
                              .pSemaphores = &t->sem,
                              .pValues = &value};
    VkResult r = vkWaitSemaphores(t->dev->device, &wi, timeout_ns);
    VKT_FAIL_IF(r == VK_TIMEOUT, VKT_ERR_TIMEOUT,
                "vkt_timeline_wait: value %llu not reached within %.3f s",
                (unsigned long long)value, (double)timeout_ns * 1e-9);
    if (r < 0) return vkt__vk_error(__FILE__, __LINE__, r, t->dev->caps.name, "vkWaitSemaphores");
    return VKT_OK;
}

vkt_status vkt_timeline_value(vkt_timeline *t, uint64_t *value)
{
    VKT_FAIL_IF(!t || !value, VKT_ERR_INVALID_ARG, "vkt_timeline_value: NULL argument");
    VKT_VK(t->dev, vkGetSemaphoreCounterValue(t->dev->device, t->sem, value),
           "vkGetSemaphoreCounterValue");
    return VKT_OK;
}
