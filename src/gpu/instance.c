/* Vulkan instance, the validation layer and its debug messenger. */
#include <stdio.h>
#include <string.h>

#include "gpu/gpu_int.h"

#define VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"

bool vkt__validation_wanted(vkt_validation v)
{
    if (v == VKT_VALIDATION_ON) return true;
    if (v == VKT_VALIDATION_OFF) return false;
    return vkt__env_int("VKT_VALIDATE", 0) != 0;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    vkt_instance *inst = user;
    (void)types;
    atomic_fetch_add(&inst->messages, 1);
    fprintf(stderr, "vktrain: validation %s: %s\n",
            severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? "error" : "warning",
            data->pMessage ? data->pMessage : "(no text)");
    return VK_FALSE; /* never abort the call: we count and report instead */
}

static bool layer_present(const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *props = vkt_calloc(n, sizeof *props);
    if (!props) return false;
    bool found = false;
    if (vkEnumerateInstanceLayerProperties(&n, props) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(props[i].layerName, name) == 0;
    vkt_free(props);
    return found;
}

vkt_status vkt__instance_init(vkt_instance *inst, bool validation)
{
    memset(inst, 0, sizeof *inst);
    atomic_init(&inst->messages, 0);
    VKT_FAIL_IF(validation && !layer_present(VALIDATION_LAYER), VKT_ERR_UNSUPPORTED,
                "Vulkan validation was requested (VKT_VALIDATE=1) but the layer %s is not "
                "installed; install vulkan-validationlayers or unset VKT_VALIDATE",
                VALIDATION_LAYER);

    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "vktrain",
        .pEngineName = "vktrain",
        .apiVersion = VK_API_VERSION_1_2,
    };
    const char *layers[] = {VALIDATION_LAYER};
    const char *exts[] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME};
    VkDebugUtilsMessengerCreateInfoEXT mci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_message,
        .pUserData = inst,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = validation ? &mci : NULL, /* also covers instance create/destroy */
        .pApplicationInfo = &app,
        .enabledLayerCount = validation ? 1 : 0,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = validation ? 1 : 0,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, &inst->instance);
    if (r != VK_SUCCESS) {
        inst->instance = VK_NULL_HANDLE;
        return vkt__vk_error(__FILE__, __LINE__, r, NULL,
                             "vkCreateInstance (is a Vulkan driver installed? "
                             "mesa-vulkan-drivers provides the CPU driver lavapipe)");
    }
    inst->validation = validation;
    if (validation) {
        PFN_vkCreateDebugUtilsMessengerEXT create = (PFN_vkCreateDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(inst->instance, "vkCreateDebugUtilsMessengerEXT");
        r = create ? create(inst->instance, &mci, NULL, &inst->messenger)
                   : VK_ERROR_EXTENSION_NOT_PRESENT;
        if (r != VK_SUCCESS) {
            vkDestroyInstance(inst->instance, NULL);
            inst->instance = VK_NULL_HANDLE;
            return vkt__vk_error(__FILE__, __LINE__, r, NULL, "vkCreateDebugUtilsMessengerEXT");
        }
    }
    return VKT_OK;
}

void vkt__instance_fini(vkt_instance *inst)
{
    if (!inst->instance) return;
    if (inst->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy = (PFN_vkDestroyDebugUtilsMessengerEXT)
            vkGetInstanceProcAddr(inst->instance, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy) destroy(inst->instance, inst->messenger, NULL);
    }
    vkDestroyInstance(inst->instance, NULL);
    inst->instance = VK_NULL_HANDLE;
}
