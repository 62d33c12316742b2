/* Capability queries and device selection. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu_int.h"

bool vkt__has_extension(VkPhysicalDevice pd, const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS) return false;
    VkExtensionProperties *e = vkt_calloc(n, sizeof *e);
    if (!e) return false;
    bool found = false;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, e) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++) found = strcmp(e[i].extensionName, name) == 0;
    vkt_free(e);
    return found;
}

static vkt_device_type map_type(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return VKT_DEVICE_INTEGRATED;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return VKT_DEVICE_DISCRETE;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return VKT_DEVICE_VIRTUAL;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return VKT_DEVICE_CPU;
    default: return VKT_DEVICE_OTHER;
    }
}

const char *vkt_device_type_str(vkt_device_type t)
{
    static const char *names[] = {"other", "integrated", "discrete", "virtual", "cpu"};
    return (unsigned)t < 5 ? names[t] : "other";
}

static void query_memory(VkPhysicalDevice pd, vkt_device_caps *c)
{
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    c->heap_count = mp.memoryHeapCount < VKT_MAX_HEAPS ? mp.memoryHeapCount : VKT_MAX_HEAPS;
    uint64_t biggest_local = 0;
    for (uint32_t h = 0; h < c->heap_count; h++) {
        c->heaps[h].size = mp.memoryHeaps[h].size;
        c->heaps[h].device_local = mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT;
        if (c->heaps[h].device_local && c->heaps[h].size > biggest_local)
            biggest_local = c->heaps[h].size;
    }
    const VkMemoryPropertyFlags unified = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                          VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                          VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    for (uint32_t t = 0; t < mp.memoryTypeCount; t++) {
        uint32_t h = mp.memoryTypes[t].heapIndex;
        if (h >= c->heap_count) continue;
        if (mp.memoryTypes[t].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
            c->heaps[h].host_visible = true;
        /* Unified: the main device-local heap is mappable and the device
         * shares the host's memory (integrated GPU or CPU driver). A discrete
         * card with resizable BAR is not unified: host reads of it are slow. */
        if ((mp.memoryTypes[t].propertyFlags & unified) == unified &&
            c->heaps[h].size == biggest_local &&
            (c->type == VKT_DEVICE_INTEGRATED || c->type == VKT_DEVICE_CPU))
            c->unified_memory = true;
    }
}

static void query_features(VkPhysicalDevice pd, vkt_device_caps *c)
{
    VkPhysicalDeviceShaderAtomicFloatFeaturesEXT af = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_ATOMIC_FLOAT_FEATURES_EXT};
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, .pNext = &f12};
    VkPhysicalDeviceFeatures2 f = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                   .pNext = &f11};
    bool has_af = vkt__has_extension(pd, VK_EXT_SHADER_ATOMIC_FLOAT_EXTENSION_NAME);
    if (has_af) f12.pNext = &af;
    vkGetPhysicalDeviceFeatures2(pd, &f);
    c->shader_int16 = f.features.shaderInt16;
    c->shader_int64 = f.features.shaderInt64;
    c->shader_fp64 = f.features.shaderFloat64;
    c->shader_fp16 = f12.shaderFloat16;
    c->shader_int8 = f12.shaderInt8;
    c->storage_16bit = f11.storageBuffer16BitAccess;
    c->storage_8bit = f12.storageBuffer8BitAccess;
    c->fp32_atomic_add = has_af && af.shaderBufferFloat32AtomicAdd;
    c->bf16 = vkt__has_extension(pd, "VK_KHR_shader_bfloat16");
    c->cooperative_matrix = vkt__has_extension(pd, "VK_KHR_cooperative_matrix") ||
                            vkt__has_extension(pd, "VK_NV_cooperative_matrix");
    if (!f12.timelineSemaphore) {
        c->usable = false;
        snprintf(c->unusable_reason, sizeof c->unusable_reason,
                 "no timeline semaphores");
    }
}

static void query_properties(VkPhysicalDevice pd, vkt_device_caps *c)
{
    VkPhysicalDeviceSubgroupSizeControlProperties ssc = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES};
    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceSubgroupProperties sg = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, .pNext = &drv};
    VkPhysicalDeviceProperties2 p = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                     .pNext = &sg};
    bool has_ssc = vkt__has_extension(pd, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME) ||
                   VK_API_VERSION_MINOR(c->api_version) >= 3;
    if (has_ssc) drv.pNext = &ssc;
    vkGetPhysicalDeviceProperties2(pd, &p);
    snprintf(c->driver_name, sizeof c->driver_name, "%s", drv.driverName);
    snprintf(c->driver_info, sizeof c->driver_info, "%s", drv.driverInfo);
    c->subgroup_size = sg.subgroupSize;
    c->subgroup_min_size = has_ssc && ssc.minSubgroupSize ? ssc.minSubgroupSize : sg.subgroupSize;
    c->subgroup_max_size = has_ssc && ssc.maxSubgroupSize ? ssc.maxSubgroupSize : sg.subgroupSize;
    c->subgroup_arithmetic = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                             (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
    c->subgroup_ballot = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                         (sg.supportedOperations & VK_SUBGROUP_FEATURE_BALLOT_BIT);
}

static void query_timestamps(VkPhysicalDevice pd, const VkPhysicalDeviceLimits *l,
                             vkt_device_caps *c)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties *q = vkt_calloc(n, sizeof *q);
    if (!q) return;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, q);
    for (uint32_t i = 0; i < n; i++) {
        if (!(q[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
        c->timestamp_bits = q[i].timestampValidBits;
        break;
    }
    vkt_free(q);
    c->timestamps = c->timestamp_bits > 0 && l->timestampPeriod > 0;
    c->timestamp_period = l->timestampPeriod;
}

void vkt__caps_query(VkPhysicalDevice pd, uint32_t index, vkt_device_caps *c)
{
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(pd, &p);
    memset(c, 0, sizeof *c);
    c->index = index;
    snprintf(c->name, sizeof c->name, "%s", p.deviceName);
    c->vendor_id = p.vendorID;
    c->device_id = p.deviceID;
    c->type = map_type(p.deviceType);
    c->api_version = p.apiVersion;
    const VkPhysicalDeviceLimits *l = &p.limits;
    c->max_shared_memory = l->maxComputeSharedMemorySize;
    c->max_workgroup_invocations = l->maxComputeWorkGroupInvocations;
    for (int i = 0; i < 3; i++) {
        c->max_workgroup_size[i] = l->maxComputeWorkGroupSize[i];
        c->max_workgroup_count[i] = l->maxComputeWorkGroupCount[i];
    }
    c->max_push_constants = l->maxPushConstantsSize;
    c->max_storage_buffer_range = l->maxStorageBufferRange;
    c->min_storage_buffer_alignment = l->minStorageBufferOffsetAlignment;
    query_memory(pd, c);
    query_timestamps(pd, l, c);
    if (VK_API_VERSION_MAJOR(p.apiVersion) == 1 && VK_API_VERSION_MINOR(p.apiVersion) < 2) {
        snprintf(c->unusable_reason, sizeof c->unusable_reason,
                 "Vulkan %u.%u; vktrain needs 1.2", VK_API_VERSION_MAJOR(p.apiVersion),
                 VK_API_VERSION_MINOR(p.apiVersion));
        return; /* the 1.2 query structs below are not valid on this device */
    }
    c->usable = true;
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceIDProperties id = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES,
                                       .pNext = &m3};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                      .pNext = &id};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    memcpy(c->uuid, id.deviceUUID, 16);
    c->max_allocation_size = m3.maxMemoryAllocationSize;
    query_properties(pd, c);
    query_features(pd, c);
}

/* ---- selection -------------------------------------------------------- */

/* 32 hex digits, dashes ignored → 16 bytes; false if not a UUID. */
static bool parse_uuid(const char *s, uint8_t out[16])
{
    int nd = 0;
    for (; *s; s++) {
        if (*s == '-') continue;
        if (!isxdigit((unsigned char)*s) || nd >= 32) return false;
        int v = isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10);
        if (nd % 2 == 0) out[nd / 2] = (uint8_t)(v << 4);
        else out[nd / 2] |= (uint8_t)v;
        nd++;
    }
    return nd == 32;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return true;
    return n == 0;
}

static int pick_default(const vkt_device_caps *caps, uint32_t n)
{
    static const vkt_device_type order[] = {VKT_DEVICE_DISCRETE, VKT_DEVICE_INTEGRATED,
                                            VKT_DEVICE_VIRTUAL, VKT_DEVICE_CPU,
                                            VKT_DEVICE_OTHER};
    for (int o = 0; o < 5; o++)
        for (uint32_t i = 0; i < n; i++)
            if (caps[i].usable && caps[i].type == order[o]) return (int)i;
    return -1;
}

static void list_devices(char *buf, size_t cap, const vkt_device_caps *caps, uint32_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%u: %s (%s)", i ? ", " : "", i,
                                 caps[i].name, vkt_device_type_str(caps[i].type));
}

vkt_status vkt__device_pick(const vkt_device_caps *caps, uint32_t n, const char *select,
                            uint32_t *index)
{
    char list[512];
    list_devices(list, sizeof list, caps, n);
    VKT_FAIL_IF(n == 0, VKT_ERR_UNSUPPORTED,
                "no Vulkan device found; install a Vulkan driver (mesa-vulkan-drivers "
                "provides lavapipe, a CPU device)");
    if (!select || !*select) {
        int i = pick_default(caps, n);
        VKT_FAIL_IF(i < 0, VKT_ERR_UNSUPPORTED,
                    "no usable Vulkan device among: %s (device 0: %s); update the driver",
                    list, caps[0].unusable_reason);
        *index = (uint32_t)i;
        return VKT_OK;
    }
    char *end;
    long idx = strtol(select, &end, 10);
    uint8_t uuid[16];
    int found = -1;
    if (*end == '\0' && end != select) {
        found = idx >= 0 && idx < (long)n ? (int)idx : -1;
    } else if (parse_uuid(select, uuid)) {
        for (uint32_t i = 0; i < n && found < 0; i++)
            if (memcmp(caps[i].uuid, uuid, 16) == 0) found = (int)i;
    } else {
        for (uint32_t i = 0; i < n && found < 0; i++)
            if (contains_nocase(caps[i].name, select)) found = (int)i;
    }
    VKT_FAIL_IF(found < 0, VKT_ERR_INVALID_ARG,
                "device '%s' matches no Vulkan device; give an index, a UUID or part of a "
                "name from: %s (see 'vktrain info')", select, list);
    VKT_FAIL_IF(!caps[found].usable, VKT_ERR_UNSUPPORTED, "device %d '%s' cannot run vktrain: %s",
                found, caps[found].name, caps[found].unusable_reason);
    *index = (uint32_t)found;
    return VKT_OK;
}
