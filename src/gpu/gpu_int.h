/* Internal structures of the Vulkan runtime (src/gpu). */
#ifndef VKT_GPU_INT_H
#define VKT_GPU_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <vulkan/vulkan.h>

#include "core/core_int.h"
#include "vktrain/gpu.h"

#define VKT_DEVICE_MAGIC 0x564b5444u /* "VKTD" */
#define VKT_MAX_TIMESTAMPS 64

/* ---- VkResult mapping (vkerr.c) ---- */
const char *vkt__vk_result_str(VkResult r);
vkt_status vkt__vk_status(VkResult r);
/* Record "what on 'device': VK_ERROR_…" and return the mapped status. */
vkt_status vkt__vk_error(const char *file, int line, VkResult r, const char *device,
                         const char *what);

/* Run a Vulkan call; on failure record the error and return its status. */
#define VKT_VK(dev, call, what)                                                    \
    do {                                                                           \
        VkResult vkt_vk_r_ = (call);                                               \
        if (vkt_vk_r_ < 0)                                                         \
            return vkt__vk_error(__FILE__, __LINE__, vkt_vk_r_, (dev)->caps.name,  \
                                 (what));                                          \
    } while (0)
#define VKT_VK_GOTO(dev, st, call, what, label)                                    \
    do {                                                                           \
        VkResult vkt_vk_r_ = (call);                                               \
        if (vkt_vk_r_ < 0) {                                                       \
            (st) = vkt__vk_error(__FILE__, __LINE__, vkt_vk_r_, (dev)->caps.name,  \
                                 (what));                                          \
            goto label;                                                            \
        }                                                                          \
    } while (0)

/* ---- instance (instance.c) ---- */
typedef struct vkt_instance {
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger;
    atomic_uint_fast64_t messages; /* validation warnings + errors seen */
    bool validation;
} vkt_instance;

/* Create an instance; with validation the Khronos layer and a messenger that
 * prints and counts every warning and error. inst must stay at a fixed
 * address (the messenger points at it). */
vkt_status vkt__instance_init(vkt_instance *inst, bool validation);
void vkt__instance_fini(vkt_instance *inst);
bool vkt__validation_wanted(vkt_validation v);

/* ---- capabilities (caps.c) ---- */
void vkt__caps_query(VkPhysicalDevice pd, uint32_t index, vkt_device_caps *caps);
bool vkt__has_extension(VkPhysicalDevice pd, const char *name);
/* Parse a device selector and pick one of n devices into *index; on failure
 * the message lists the devices. */
vkt_status vkt__device_pick(const vkt_device_caps *caps, uint32_t n, const char *select,
                            uint32_t *index);

/* ---- memory allocator (memory.c) ---- */
typedef struct vkt_mem_block vkt_mem_block;

typedef struct vkt_allocation {
    vkt_mem_block *block;
    VkDeviceMemory memory;
    uint64_t offset;
    uint64_t size;
    void *mapped; /* host pointer to offset, or NULL; mapped memory is always coherent */
    uint32_t type_index;
} vkt_allocation;

typedef struct vkt_allocator_state {
    pthread_mutex_t lock;
    vkt_mem_block *blocks; /* all blocks, linked */
    uint64_t block_size;
    uint64_t limit;
    vkt_memory_stats stats;
    /* VKT_EMULATE_DISCRETE=1 (tests): device buffers are never mapped, as
     * on a discrete GPU, so a unified device (lavapipe) runs the staging
     * paths; caps.unified_memory reads false. */
    bool unmapped_device;
} vkt_allocator_state;

vkt_status vkt__mem_init(vkt_device *dev, uint64_t block_size, uint64_t limit);
void vkt__mem_fini(vkt_device *dev);
/* Choose a memory type for kind among those allowed by type_bits. */
vkt_status vkt__mem_pick_type(vkt_device *dev, vkt_memory_kind kind, uint32_t type_bits,
                              uint32_t *type_index);
/* internal: the runtime's own memory (the staging buffer), kept out of the
 * user's stats and memory_limit, in a block of its own. */
vkt_status vkt__mem_alloc(vkt_device *dev, const VkMemoryRequirements *req,
                          vkt_memory_kind kind, bool internal, vkt_allocation *out);
void vkt__mem_free(vkt_device *dev, vkt_allocation *a);

/* ---- device ---- */
struct vkt_device {
    uint32_t magic;
    vkt_instance inst;
    VkPhysicalDevice phys;
    VkDevice device;
    VkQueue queue;
    uint32_t queue_family;
    pthread_mutex_t queue_lock; /* VkQueue needs external synchronisation */
    vkt_device_caps caps;
    VkPhysicalDeviceMemoryProperties memprops;
    vkt_allocator_state mem;
    VkPipelineCache pipeline_cache;
    char *pipeline_cache_path; /* NULL: not persisted */
    /* one-shot transfers for upload/download of non-mappable memory */
    pthread_mutex_t xfer_lock;
    VkCommandPool xfer_pool;
    VkCommandBuffer xfer_cmd;
    VkFence xfer_fence;
    vkt_buffer *xfer_staging;
};

struct vkt_buffer {
    vkt_device *dev;
    VkBuffer buffer;
    vkt_allocation alloc;
    uint64_t size;
    vkt_memory_kind kind;
};

struct vkt_pipeline {
    vkt_device *dev;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    VkPipeline pipeline;
    uint32_t bindings;
    uint32_t push_size;
    char shader[64];
};

struct vkt_timeline {
    vkt_device *dev;
    VkSemaphore sem;
};

/* Submit on the device queue under its lock. */
vkt_status vkt__queue_submit(vkt_device *dev, const VkSubmitInfo *info, VkFence fence);

/* ---- pipeline cache persistence (pipeline.c) ---- */
vkt_status vkt__pipeline_cache_open(vkt_device *dev, const char *dir_opt);
void vkt__pipeline_cache_close(vkt_device *dev);

/* ---- buffers and transfers (buffer.c) ---- */
vkt_status vkt__buffer_create(vkt_device *dev, vkt_memory_kind kind, uint64_t size, bool internal,
                              vkt_buffer **out);
void vkt__xfer_fini(vkt_device *dev);

#endif
