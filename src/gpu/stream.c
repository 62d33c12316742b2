/* Command streams: record once, submit many times.
 *
 * A stream owns a command buffer, the descriptor sets its dispatches bind
 * (allocated while recording, kept until the next begin, so a replay costs
 * one vkQueueSubmit), a timestamp query pool and a timeline semaphore that
 * counts its completed submissions. */
#include <string.h>

#include "gpu/gpu_int.h"

#define SETS_PER_POOL 256
#define DESCRIPTORS_PER_POOL (SETS_PER_POOL * 8)

typedef enum { STREAM_IDLE, STREAM_RECORDING, STREAM_READY } stream_state;

static void memory_barrier(VkCommandBuffer cmd, VkPipelineStageFlags dst_stage,
                           VkAccessFlags dst_access);

struct vkt_stream {
    vkt_device *dev;
    VkCommandPool cmd_pool;
    VkCommandBuffer cmd;
    VkDescriptorPool *pools;
    uint32_t npools, cur_pool;
    VkQueryPool queries;
    uint32_t nstamps;
    bool stamps_valid; /* the recording with these stamps was submitted */
    VkSemaphore done;
    uint64_t submitted; /* value 'done' reaches when all submissions finished */
    stream_state state;
};

static vkt_status add_pool(vkt_stream *s)
{
    vkt_device *dev = s->dev;
    VkDescriptorPool *g = vkt_realloc(s->pools, (s->npools + 1) * sizeof *g);
    VKT_FAIL_IF(!g, VKT_ERR_NOMEM, "out of host memory");
    s->pools = g;
    VkDescriptorPoolSize sz = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, DESCRIPTORS_PER_POOL};
    VkDescriptorPoolCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                     .maxSets = SETS_PER_POOL,
                                     .poolSizeCount = 1,
                                     .pPoolSizes = &sz};
    VKT_VK(dev, vkCreateDescriptorPool(dev->device, &ci, NULL, &s->pools[s->npools]),
           "vkCreateDescriptorPool");
    s->npools++;
    return VKT_OK;
}

static vkt_status create_objects(vkt_stream *s)
{
    vkt_device *dev = s->dev;
    VkCommandPoolCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .queueFamilyIndex = dev->queue_family};
    VKT_VK(dev, vkCreateCommandPool(dev->device, &pci, NULL, &s->cmd_pool),
           "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = s->cmd_pool,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    VKT_VK(dev, vkAllocateCommandBuffers(dev->device, &ai, &s->cmd), "vkAllocateCommandBuffers");
    VkSemaphoreTypeCreateInfo tci = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
                                     .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE};
    VkSemaphoreCreateInfo sci = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &tci};
    VKT_VK(dev, vkCreateSemaphore(dev->device, &sci, NULL, &s->done), "vkCreateSemaphore");
    if (dev->caps.timestamps) {
        VkQueryPoolCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                     .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                     .queryCount = VKT_MAX_TIMESTAMPS};
        VKT_VK(dev, vkCreateQueryPool(dev->device, &qci, NULL, &s->queries),
               "vkCreateQueryPool");
    }
    return add_pool(s);
}

vkt_status vkt_stream_create(vkt_device *dev, vkt_stream **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_stream_create: out is NULL");
    *out = NULL;
    VKT_FAIL_IF(!dev || dev->magic != VKT_DEVICE_MAGIC, VKT_ERR_INVALID_ARG,
                "vkt_stream_create: not a device");
    vkt_stream *s = vkt_calloc(1, sizeof *s);
    VKT_FAIL_IF(!s, VKT_ERR_NOMEM, "vkt_stream_create: out of host memory");
    s->dev = dev;
    vkt_status st = create_objects(s);
    if (st != VKT_OK) {
        vkt_stream_destroy(s);
        return st;
    }
    *out = s;
    return VKT_OK;
}

void vkt_stream_destroy(vkt_stream *s)
{
    if (!s) return;
    VkDevice d = s->dev->device;
    if (s->done && s->submitted) vkt_stream_wait(s, UINT64_MAX);
    for (uint32_t i = 0; i < s->npools; i++) vkDestroyDescriptorPool(d, s->pools[i], NULL);
    vkt_free(s->pools);
    if (s->queries) vkDestroyQueryPool(d, s->queries, NULL);
    if (s->done) vkDestroySemaphore(d, s->done, NULL);
    if (s->cmd_pool) vkDestroyCommandPool(d, s->cmd_pool, NULL);
    vkt_free(s);
}

vkt_status vkt_stream_begin(vkt_stream *s)
{
    VKT_FAIL_IF(!s, VKT_ERR_INVALID_ARG, "vkt_stream_begin: stream is NULL");
    vkt_device *dev = s->dev;
    VKT_FAIL_IF(s->state == STREAM_RECORDING, VKT_ERR_INVALID_USAGE,
                "vkt_stream_begin: already recording; call vkt_stream_end first");
    VKT_CHECK(vkt_stream_wait(s, UINT64_MAX));
    VKT_VK(dev, vkResetCommandPool(dev->device, s->cmd_pool, 0), "vkResetCommandPool");
    for (uint32_t i = 0; i < s->npools; i++)
        VKT_VK(dev, vkResetDescriptorPool(dev->device, s->pools[i], 0), "vkResetDescriptorPool");
    s->cur_pool = 0;
    s->nstamps = 0;
    s->stamps_valid = false;
    /* Simultaneous use: the same recording may be queued again before the
     * previous submission finished (the queue still runs them in order). */
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_SIMULTANEOUS_USE_BIT};
    VKT_VK(dev, vkBeginCommandBuffer(s->cmd, &bi), "vkBeginCommandBuffer");
    if (s->queries) vkCmdResetQueryPool(s->cmd, s->queries, 0, VKT_MAX_TIMESTAMPS);
    /* Order this recording after everything submitted before it, including
     * earlier replays of itself: queue order alone does not make writes of
     * one submission visible to the next. */
    memory_barrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                   VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                       VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    /* Host writes made after the submit, before a semaphore this recording
     * waits on is signalled from the host (ZeRO-3 gathers parameters into
     * slots that way), are not covered by the submit: make them visible. */
    VkMemoryBarrier hb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_HOST_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT};
    vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_HOST_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1,
                         &hb, 0, NULL, 0, NULL);
    s->state = STREAM_RECORDING;
    return VKT_OK;
}

static vkt_status check_recording(const vkt_stream *s, const char *fn)
{
    VKT_FAIL_IF(!s, VKT_ERR_INVALID_ARG, "%s: stream is NULL", fn);
    VKT_FAIL_IF(s->state != STREAM_RECORDING, VKT_ERR_INVALID_USAGE,
                "%s: the stream is not recording; call vkt_stream_begin first", fn);
    return VKT_OK;
}

static vkt_status check_binding(const vkt_stream *s, const vkt_pipeline *p, uint32_t i,
                                const vkt_binding *b, uint64_t *range)
{
    const vkt_device_caps *c = &s->dev->caps;
    VKT_FAIL_IF(!b->buf || b->buf->dev != s->dev, VKT_ERR_INVALID_ARG,
                "vkt_stream_dispatch '%s': binding %u has no buffer of this device", p->shader, i);
    uint64_t size = b->size ? b->size : b->buf->size - (b->offset < b->buf->size ? b->offset : 0);
    VKT_FAIL_IF(b->offset >= b->buf->size || size > b->buf->size - b->offset,
                VKT_ERR_INVALID_ARG,
                "vkt_stream_dispatch '%s': binding %u range [%llu, +%llu) is outside its "
                "%llu-byte buffer", p->shader, i, (unsigned long long)b->offset,
                (unsigned long long)size, (unsigned long long)b->buf->size);
    VKT_FAIL_IF(b->offset % c->min_storage_buffer_alignment, VKT_ERR_INVALID_ARG,
                "vkt_stream_dispatch '%s': binding %u offset %llu is not a multiple of %llu, "
                "the storage-buffer alignment of '%s'", p->shader, i,
                (unsigned long long)b->offset,
                (unsigned long long)c->min_storage_buffer_alignment, c->name);
    VKT_FAIL_IF(size > c->max_storage_buffer_range, VKT_ERR_INVALID_ARG,
                "vkt_stream_dispatch '%s': binding %u spans %llu bytes, more than one "
                "descriptor can see on '%s' (%llu); bind the buffer in windows", p->shader, i,
                (unsigned long long)size, c->name,
                (unsigned long long)c->max_storage_buffer_range);
    *range = size;
    return VKT_OK;
}

static vkt_status alloc_set(vkt_stream *s, const vkt_pipeline *p, VkDescriptorSet *set)
{
    for (;;) {
        VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                          .descriptorPool = s->pools[s->cur_pool],
                                          .descriptorSetCount = 1,
                                          .pSetLayouts = &p->set_layout};
        VkResult r = vkAllocateDescriptorSets(s->dev->device, &ai, set);
        if (r == VK_SUCCESS) return VKT_OK;
        if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL)
            return vkt__vk_error(__FILE__, __LINE__, r, s->dev->caps.name,
                                 "vkAllocateDescriptorSets");
        if (s->cur_pool + 1 == s->npools) VKT_CHECK(add_pool(s));
        s->cur_pool++;
    }
}

vkt_status vkt_stream_dispatch(vkt_stream *s, const vkt_pipeline *p, const vkt_binding *bind,
                               uint32_t nbind, const void *push, uint32_t push_size,
                               uint32_t gx, uint32_t gy, uint32_t gz)
{
    VKT_CHECK(check_recording(s, "vkt_stream_dispatch"));
    VKT_FAIL_IF(!p || p->dev != s->dev, VKT_ERR_INVALID_ARG,
                "vkt_stream_dispatch: pipeline is NULL or of another device");
    VKT_FAIL_IF(nbind != p->bindings || (nbind && !bind), VKT_ERR_INVALID_ARG,
                "vkt_stream_dispatch '%s': %u bindings given, the pipeline has %u", p->shader,
                nbind, p->bindings);
    VKT_FAIL_IF(push_size != p->push_size || (push_size && !push), VKT_ERR_INVALID_ARG,
                "vkt_stream_dispatch '%s': %u push-constant bytes given, the pipeline takes %u",
                p->shader, push_size, p->push_size);
    const uint32_t *maxg = s->dev->caps.max_workgroup_count;
    VKT_FAIL_IF(gx == 0 || gy == 0 || gz == 0 || gx > maxg[0] || gy > maxg[1] || gz > maxg[2],
                VKT_ERR_INVALID_ARG,
                "vkt_stream_dispatch '%s': %u×%u×%u workgroups; each must be 1..%u×%u×%u",
                p->shader, gx, gy, gz, maxg[0], maxg[1], maxg[2]);
    VkDescriptorBufferInfo info[32];
    VkWriteDescriptorSet w[32];
    VkDescriptorSet set;
    for (uint32_t i = 0; i < nbind; i++) {
        uint64_t range = 0;
        VKT_CHECK(check_binding(s, p, i, &bind[i], &range));
        info[i] = (VkDescriptorBufferInfo){bind[i].buf->buffer, bind[i].offset, range};
    }
    VKT_CHECK(alloc_set(s, p, &set));
    for (uint32_t i = 0; i < nbind; i++)
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                      .dstSet = set,
                                      .dstBinding = i,
                                      .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                      .pBufferInfo = &info[i]};
    vkUpdateDescriptorSets(s->dev->device, nbind, w, 0, NULL);
    vkCmdBindPipeline(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipeline);
    vkCmdBindDescriptorSets(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, 1, &set, 0,
                            NULL);
    if (push_size)
        vkCmdPushConstants(s->cmd, p->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_size, push);
    vkCmdDispatch(s->cmd, gx, gy, gz);
    return VKT_OK;
}

static void memory_barrier(VkCommandBuffer cmd, VkPipelineStageFlags dst_stage,
                           VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = dst_access};
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

vkt_status vkt_stream_barrier(vkt_stream *s)
{
    VKT_CHECK(check_recording(s, "vkt_stream_barrier"));
    memory_barrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                   VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                       VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    return VKT_OK;
}

vkt_status vkt_stream_copy(vkt_stream *s, vkt_buffer *src, uint64_t soff, vkt_buffer *dst,
                           uint64_t doff, uint64_t size)
{
    VKT_CHECK(check_recording(s, "vkt_stream_copy"));
    VKT_FAIL_IF(!src || !dst || size == 0 || soff > src->size || size > src->size - soff ||
                    doff > dst->size || size > dst->size - doff,
                VKT_ERR_INVALID_ARG, "vkt_stream_copy: %llu bytes from %llu to %llu do not fit "
                "the buffers", (unsigned long long)size, (unsigned long long)soff,
                (unsigned long long)doff);
    VKT_FAIL_IF(src == dst && soff < doff + size && doff < soff + size, VKT_ERR_INVALID_ARG,
                "vkt_stream_copy: source and destination ranges overlap");
    VkBufferCopy r = {soff, doff, size};
    vkCmdCopyBuffer(s->cmd, src->buffer, dst->buffer, 1, &r);
    return VKT_OK;
}

vkt_status vkt_stream_fill(vkt_stream *s, vkt_buffer *buf, uint64_t off, uint64_t size,
                           uint32_t word)
{
    VKT_CHECK(check_recording(s, "vkt_stream_fill"));
    VKT_FAIL_IF(!buf || size == 0 || off % 4 || size % 4 || off > buf->size ||
                    size > buf->size - off,
                VKT_ERR_INVALID_ARG, "vkt_stream_fill: %llu bytes at %llu: both must be "
                "multiples of 4 inside the buffer", (unsigned long long)size,
                (unsigned long long)off);
    vkCmdFillBuffer(s->cmd, buf->buffer, off, size, word);
    return VKT_OK;
}

vkt_status vkt_stream_timestamp(vkt_stream *s, uint32_t *slot)
{
    VKT_CHECK(check_recording(s, "vkt_stream_timestamp"));
    VKT_FAIL_IF(!s->queries, VKT_ERR_UNSUPPORTED, "device '%s' has no compute timestamps",
                s->dev->caps.name);
    VKT_FAIL_IF(s->nstamps == VKT_MAX_TIMESTAMPS, VKT_ERR_INVALID_USAGE,
                "vkt_stream_timestamp: at most %d timestamps per recording", VKT_MAX_TIMESTAMPS);
    vkCmdWriteTimestamp(s->cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, s->queries, s->nstamps);
    if (slot) *slot = s->nstamps;
    s->nstamps++;
    return VKT_OK;
}

vkt_status vkt_stream_end(vkt_stream *s)
{
    VKT_CHECK(check_recording(s, "vkt_stream_end"));
    /* Results must be readable by the host once the submission is waited for. */
    memory_barrier(s->cmd, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    s->state = STREAM_IDLE; /* a failed end leaves a stream that must be begun anew */
    VKT_VK(s->dev, vkEndCommandBuffer(s->cmd), "vkEndCommandBuffer");
    s->state = STREAM_READY;
    return VKT_OK;
}

vkt_status vkt_stream_submit(vkt_stream *s, const vkt_submit_opts *o)
{
    VKT_FAIL_IF(!s, VKT_ERR_INVALID_ARG, "vkt_stream_submit: stream is NULL");
    VKT_FAIL_IF(s->state != STREAM_READY, VKT_ERR_INVALID_USAGE,
                "vkt_stream_submit: nothing recorded; call begin, record, end first");
    vkt_submit_opts opts = VKT_SUBMIT_OPTS_INIT;
    if (o) {
        VKT_FAIL_IF(o->struct_size < sizeof(uint32_t) || o->struct_size > sizeof opts,
                    VKT_ERR_INVALID_ARG,
                    "vkt_stream_submit: initialise opts with VKT_SUBMIT_OPTS_INIT");
        memcpy(&opts, o, o->struct_size);
    }
    o = &opts;
    VKT_FAIL_IF(o->wait_count > 16 || o->signal_count > 15, VKT_ERR_INVALID_ARG,
                "vkt_stream_submit: at most 16 waits and 15 signals");
    VkSemaphore ws[16], ss[16];
    uint64_t wv[16], sv[16];
    VkPipelineStageFlags wstage[16];
    for (uint32_t i = 0; i < o->wait_count; i++) {
        VKT_FAIL_IF(!o->waits[i].timeline, VKT_ERR_INVALID_ARG, "vkt_stream_submit: wait %u "
                    "has no timeline", i);
        ws[i] = o->waits[i].timeline->sem;
        wv[i] = o->waits[i].value;
        wstage[i] = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    }
    for (uint32_t i = 0; i < o->signal_count; i++) {
        VKT_FAIL_IF(!o->signals[i].timeline, VKT_ERR_INVALID_ARG, "vkt_stream_submit: signal "
                    "%u has no timeline", i);
        ss[i] = o->signals[i].timeline->sem;
        sv[i] = o->signals[i].value;
    }
    ss[o->signal_count] = s->done;
    sv[o->signal_count] = s->submitted + 1;
    VkTimelineSemaphoreSubmitInfo ti = {.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
                                        .waitSemaphoreValueCount = o->wait_count,
                                        .pWaitSemaphoreValues = wv,
                                        .signalSemaphoreValueCount = o->signal_count + 1,
                                        .pSignalSemaphoreValues = sv};
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .pNext = &ti,
                       .waitSemaphoreCount = o->wait_count,
                       .pWaitSemaphores = ws,
                       .pWaitDstStageMask = wstage,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &s->cmd,
                       .signalSemaphoreCount = o->signal_count + 1,
                       .pSignalSemaphores = ss};
    VKT_CHECK(vkt__queue_submit(s->dev, &si, VK_NULL_HANDLE));
    s->submitted++;
    s->stamps_valid = true;
    return VKT_OK;
}

vkt_status vkt_stream_wait(vkt_stream *s, uint64_t timeout_ns)
{
    VKT_FAIL_IF(!s, VKT_ERR_INVALID_ARG, "vkt_stream_wait: stream is NULL");
    if (s->submitted == 0) return VKT_OK;
    VkSemaphoreWaitInfo wi = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
                              .semaphoreCount = 1,
                              .pSemaphores = &s->done,
                              .pValues = &s->submitted};
    VkResult r = vkWaitSemaphores(s->dev->device, &wi, timeout_ns);
    VKT_FAIL_IF(r == VK_TIMEOUT, VKT_ERR_TIMEOUT,
                "vkt_stream_wait: work on '%s' did not finish within %.3f s", s->dev->caps.name,
                (double)timeout_ns * 1e-9);
    if (r < 0) return vkt__vk_error(__FILE__, __LINE__, r, s->dev->caps.name, "vkWaitSemaphores");
    return VKT_OK;
}

vkt_status vkt_stream_run(vkt_stream *s)
{
    VKT_CHECK(vkt_stream_submit(s, NULL));
    return vkt_stream_wait(s, UINT64_MAX);
}

vkt_status vkt_stream_timestamps(vkt_stream *s, double *out, uint32_t n)
{
    VKT_FAIL_IF(!s || (n && !out), VKT_ERR_INVALID_ARG, "vkt_stream_timestamps: NULL argument");
    VKT_FAIL_IF(n > s->nstamps, VKT_ERR_INVALID_ARG,
                "vkt_stream_timestamps: %u asked, %u recorded", n, s->nstamps);
    if (n == 0) return VKT_OK;
    VKT_FAIL_IF(!s->stamps_valid, VKT_ERR_INVALID_USAGE,
                "vkt_stream_timestamps: the recording was not submitted yet; submit it and "
                "wait for the stream first");
    VKT_CHECK(vkt_stream_wait(s, UINT64_MAX)); /* WAIT_BIT on unfinished work can hang */
    uint64_t ticks[VKT_MAX_TIMESTAMPS];
    VKT_VK(s->dev, vkGetQueryPoolResults(s->dev->device, s->queries, 0, n, sizeof ticks, ticks,
                                         sizeof ticks[0],
                                         VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
           "vkGetQueryPoolResults");
    uint64_t mask = s->dev->caps.timestamp_bits >= 64 ? ~0ull
                                                      : (1ull << s->dev->caps.timestamp_bits) - 1;
    for (uint32_t i = 0; i < n; i++)
        out[i] = (double)((ticks[i] - ticks[0]) & mask) * s->dev->caps.timestamp_period * 1e-9;
    return VKT_OK;
}
