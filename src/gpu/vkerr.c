/* VkResult → vkt_status and messages: the one place Vulkan errors are mapped. */
#include "gpu/gpu_int.h"

const char *vkt__vk_result_str(VkResult r)
{
    switch (r) {
#define R(x) case x: return #x;
        R(VK_SUCCESS) R(VK_NOT_READY) R(VK_TIMEOUT) R(VK_EVENT_SET) R(VK_EVENT_RESET)
        R(VK_INCOMPLETE) R(VK_ERROR_OUT_OF_HOST_MEMORY) R(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        R(VK_ERROR_INITIALIZATION_FAILED) R(VK_ERROR_DEVICE_LOST)
        R(VK_ERROR_MEMORY_MAP_FAILED) R(VK_ERROR_LAYER_NOT_PRESENT)
        R(VK_ERROR_EXTENSION_NOT_PRESENT) R(VK_ERROR_FEATURE_NOT_PRESENT)
        R(VK_ERROR_INCOMPATIBLE_DRIVER) R(VK_ERROR_TOO_MANY_OBJECTS)
        R(VK_ERROR_FORMAT_NOT_SUPPORTED) R(VK_ERROR_FRAGMENTED_POOL) R(VK_ERROR_UNKNOWN)
        R(VK_ERROR_OUT_OF_POOL_MEMORY) R(VK_ERROR_INVALID_EXTERNAL_HANDLE)
        R(VK_ERROR_FRAGMENTATION) R(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
        R(VK_PIPELINE_COMPILE_REQUIRED)
#undef R
    default: return "VkResult(unknown)";
    }
}

vkt_status vkt__vk_status(VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return VKT_OK;
    case VK_TIMEOUT:
    case VK_NOT_READY: return VKT_ERR_TIMEOUT;
    case VK_ERROR_OUT_OF_HOST_MEMORY:
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_OUT_OF_POOL_MEMORY:
    case VK_ERROR_FRAGMENTED_POOL:
    case VK_ERROR_FRAGMENTATION:
    case VK_ERROR_TOO_MANY_OBJECTS: return VKT_ERR_NOMEM;
    case VK_ERROR_LAYER_NOT_PRESENT:
    case VK_ERROR_EXTENSION_NOT_PRESENT:
    case VK_ERROR_FEATURE_NOT_PRESENT:
    case VK_ERROR_INCOMPATIBLE_DRIVER:
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return VKT_ERR_UNSUPPORTED;
    default: return VKT_ERR_VULKAN;
    }
}

vkt_status vkt__vk_error(const char *file, int line, VkResult r, const char *device,
                         const char *what)
{
    const char *hint = "";
    switch (r) {
    case VK_ERROR_DEVICE_LOST:
        hint = "; the driver reset the device: check the kernel log and rerun";
        break;
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
        hint = "; lower the batch size or use ZeRO sharding";
        break;
    case VK_ERROR_INCOMPATIBLE_DRIVER:
        hint = "; install a Vulkan 1.2 driver (mesa-vulkan-drivers has lavapipe)";
        break;
    default: break;
    }
    return vkt__error(vkt__vk_status(r), file, line, "%s on '%s' failed: %s%s", what,
                      device && *device ? device : "(no device)", vkt__vk_result_str(r), hint);
}
