/* Buffers and host↔device copies. Mappable memory is copied with memcpy;
 * other memory goes through one staging buffer per device and a one-shot
 * command buffer, in chunks of the staging size. */
#include <string.h>

#include "gpu/gpu_int.h"

#define STAGING_SIZE (16ull << 20)

vkt_status vkt_buffer_create(vkt_device *dev, vkt_memory_kind kind, uint64_t size,
                             vkt_buffer **out)
{
    return vkt__buffer_create(dev, kind, size, false, out);
}

vkt_status vkt__buffer_create(vkt_device *dev, vkt_memory_kind kind, uint64_t size, bool internal,
                              vkt_buffer **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_buffer_create: out is NULL");
    *out = NULL;
    VKT_FAIL_IF(!dev || dev->magic != VKT_DEVICE_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_buffer_create: not a device");
    VKT_FAIL_IF(size == 0, VKT_ERR_INVALID_ARG, "vkt_buffer_create: size is 0");
    VKT_FAIL_IF((unsigned)kind > VKT_MEMORY_STAGING, VKT_ERR_INVALID_ARG,
                "vkt_buffer_create: unknown memory kind %d", (int)kind);
    vkt_buffer *b = vkt_calloc(1, sizeof *b);
    VKT_FAIL_IF(!b, VKT_ERR_NOMEM, "vkt_buffer_create: out of host memory");
    b->dev = dev;
    b->size = size;
    b->kind = kind;
    vkt_status st;
    VkBufferCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = size,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VKT_VK_GOTO(dev, st, vkCreateBuffer(dev->device, &ci, NULL, &b->buffer), "vkCreateBuffer",
                fail);
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(dev->device, b->buffer, &req);
    VKT_CHECK_GOTO(st, vkt__mem_alloc(dev, &req, kind, internal, &b->alloc), fail);
    VKT_VK_GOTO(dev, st,
                vkBindBufferMemory(dev->device, b->buffer, b->alloc.memory, b->alloc.offset),
                "vkBindBufferMemory", fail);
    *out = b;
    return VKT_OK;
fail:
    vkt_buffer_destroy(b);
    return st;
}

void vkt_buffer_destroy(vkt_buffer *b)
{
    if (!b) return;
    if (b->buffer) vkDestroyBuffer(b->dev->device, b->buffer, NULL);
    vkt__mem_free(b->dev, &b->alloc);
    vkt_free(b);
}

uint64_t vkt_buffer_size(const vkt_buffer *b) { return b ? b->size : 0; }

void *vkt_buffer_host_ptr(vkt_buffer *b) { return b ? b->alloc.mapped : NULL; }

static vkt_status check_range(const vkt_buffer *b, uint64_t off, uint64_t n, const char *fn)
{
    VKT_FAIL_IF(!b, VKT_ERR_INVALID_ARG, "%s: buffer is NULL", fn);
    VKT_FAIL_IF(off > b->size || n > b->size - off, VKT_ERR_INVALID_ARG,
                "%s: range [%llu, +%llu) is outside the %llu-byte buffer", fn,
                (unsigned long long)off, (unsigned long long)n, (unsigned long long)b->size);
    return VKT_OK;
}

/* Lazily create the transfer objects (under xfer_lock). */
static vkt_status xfer_init(vkt_device *dev)
{
    if (dev->xfer_staging) return VKT_OK;
    VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                   .queueFamilyIndex = dev->queue_family};
    if (!dev->xfer_pool)
        VKT_VK(dev, vkCreateCommandPool(dev->device, &pci, NULL, &dev->xfer_pool),
               "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = dev->xfer_pool,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    if (!dev->xfer_cmd)
        VKT_VK(dev, vkAllocateCommandBuffers(dev->device, &ai, &dev->xfer_cmd),
               "vkAllocateCommandBuffers");
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (!dev->xfer_fence)
        VKT_VK(dev, vkCreateFence(dev->device, &fci, NULL, &dev->xfer_fence), "vkCreateFence");
    vkt_status st = vkt__buffer_create(dev, VKT_MEMORY_STAGING, STAGING_SIZE, true,
                                       &dev->xfer_staging);
    return st == VKT_OK ? VKT_OK
                        : vkt__error_context(st, "creating the 16 MiB staging buffer for "
                                                 "host<->device copies");
}

void vkt__xfer_fini(vkt_device *dev)
{
    vkt_buffer_destroy(dev->xfer_staging);
    dev->xfer_staging = NULL;
    if (dev->xfer_fence) vkDestroyFence(dev->device, dev->xfer_fence, NULL);
    if (dev->xfer_pool) vkDestroyCommandPool(dev->device, dev->xfer_pool, NULL);
    dev->xfer_fence = VK_NULL_HANDLE;
    dev->xfer_pool = VK_NULL_HANDLE;
    dev->xfer_cmd = VK_NULL_HANDLE;
}

/* One blocking copy between the staging buffer and b. */
static vkt_status xfer_copy(vkt_device *dev, vkt_buffer *b, uint64_t off, uint64_t n,
                            bool to_device)
{
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VKT_VK(dev, vkBeginCommandBuffer(dev->xfer_cmd, &bi), "vkBeginCommandBuffer");
    /* The copy reads or overwrites what earlier submissions wrote. */
    VkMemoryBarrier before = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                              .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT |
                                               VK_ACCESS_TRANSFER_WRITE_BIT,
                              .dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT |
                                               VK_ACCESS_TRANSFER_WRITE_BIT};
    vkCmdPipelineBarrier(dev->xfer_cmd,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &before, 0, NULL, 0, NULL);
    VkBufferCopy region = {.srcOffset = to_device ? 0 : off,
                           .dstOffset = to_device ? off : 0,
                           .size = n};
    vkCmdCopyBuffer(dev->xfer_cmd, to_device ? dev->xfer_staging->buffer : b->buffer,
                    to_device ? b->buffer : dev->xfer_staging->buffer, 1, &region);
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_SHADER_READ_BIT};
    vkCmdPipelineBarrier(dev->xfer_cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                         &mb, 0, NULL, 0, NULL);
    VKT_VK(dev, vkEndCommandBuffer(dev->xfer_cmd), "vkEndCommandBuffer");
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &dev->xfer_cmd};
    VKT_CHECK(vkt__queue_submit(dev, &si, dev->xfer_fence));
    VKT_VK(dev, vkWaitForFences(dev->device, 1, &dev->xfer_fence, VK_TRUE, UINT64_MAX),
           "vkWaitForFences (buffer transfer)");
    VKT_VK(dev, vkResetFences(dev->device, 1, &dev->xfer_fence), "vkResetFences");
    return VKT_OK;
}

static vkt_status staged(vkt_buffer *b, uint64_t off, void *host, uint64_t n, bool up)
{
    vkt_device *dev = b->dev;
    vkt_status st = VKT_OK;
    pthread_mutex_lock(&dev->xfer_lock);
    VKT_CHECK_GOTO(st, xfer_init(dev), out);
    vkt_allocation *sa = &dev->xfer_staging->alloc;
    for (uint64_t done = 0; done < n && st == VKT_OK;) {
        uint64_t chunk = n - done < STAGING_SIZE ? n - done : STAGING_SIZE;
        if (up) memcpy(sa->mapped, (const char *)host + done, chunk);
        VKT_CHECK_GOTO(st, xfer_copy(dev, b, off + done, chunk, up), out);
        if (!up) memcpy((char *)host + done, sa->mapped, chunk);
        done += chunk;
    }
out:
    pthread_mutex_unlock(&dev->xfer_lock);
    return st;
}

vkt_status vkt_buffer_upload(vkt_buffer *b, uint64_t off, const void *src, uint64_t n)
{
    VKT_CHECK(check_range(b, off, n, "vkt_buffer_upload"));
    if (n == 0) return VKT_OK;
    VKT_FAIL_IF(!src, VKT_ERR_INVALID_ARG, "vkt_buffer_upload: src is NULL");
    if (b->alloc.mapped) { /* coherent: visible to the next submit */
        memcpy((char *)b->alloc.mapped + off, src, n);
        return VKT_OK;
    }
    return staged(b, off, (void *)src, n, true);
}

vkt_status vkt_buffer_download(vkt_buffer *b, uint64_t off, void *dst, uint64_t n)
{
    VKT_CHECK(check_range(b, off, n, "vkt_buffer_download"));
    if (n == 0) return VKT_OK;
    VKT_FAIL_IF(!dst, VKT_ERR_INVALID_ARG, "vkt_buffer_download: dst is NULL");
    if (b->alloc.mapped) {
        memcpy(dst, (char *)b->alloc.mapped + off, n);
        return VKT_OK;
    }
    return staged(b, off, dst, n, false);
}
