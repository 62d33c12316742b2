/* Compute pipelines from the embedded SPIR-V table, and the on-disk
 * pipeline cache (one file per device UUID, written atomically). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "gpu/gpu_int.h"
#include "vkt_spirv.h"

uint32_t vkt_shader_count(void) { return vkt__spirv_count; }

const char *vkt_shader_name(uint32_t i)
{
    return i < vkt__spirv_count ? vkt__spirv_table[i]->name : NULL;
}

static const vkt__spirv *find_shader(const char *name)
{
    for (uint32_t i = 0; i < vkt__spirv_count; i++)
        if (strcmp(vkt__spirv_table[i]->name, name) == 0) return vkt__spirv_table[i];
    return NULL;
}

static vkt_status make_layouts(vkt_device *dev, vkt_pipeline *p)
{
    VkDescriptorSetLayoutBinding b[32];
    for (uint32_t i = 0; i < p->bindings; i++)
        b[i] = (VkDescriptorSetLayoutBinding){.binding = i,
                                              .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                              .descriptorCount = 1,
                                              .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    VkDescriptorSetLayoutCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = p->bindings,
        .pBindings = b};
    VKT_VK(dev, vkCreateDescriptorSetLayout(dev->device, &dci, NULL, &p->set_layout),
           "vkCreateDescriptorSetLayout");
    VkPushConstantRange pr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = p->push_size};
    VkPipelineLayoutCreateInfo lci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &p->set_layout,
                                      .pushConstantRangeCount = p->push_size ? 1 : 0,
                                      .pPushConstantRanges = &pr};
    VKT_VK(dev, vkCreatePipelineLayout(dev->device, &lci, NULL, &p->layout),
           "vkCreatePipelineLayout");
    return VKT_OK;
}

static vkt_status make_pipeline(vkt_device *dev, vkt_pipeline *p, const vkt__spirv *sh,
                                const vkt_pipeline_opts *o)
{
    VkShaderModuleCreateInfo mci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                    .codeSize = sh->size,
                                    .pCode = sh->code};
    VkShaderModule mod;
    VKT_VK(dev, vkCreateShaderModule(dev->device, &mci, NULL, &mod), "vkCreateShaderModule");
    VkSpecializationMapEntry map[32];
    for (uint32_t i = 0; i < o->spec_count; i++)
        map[i] = (VkSpecializationMapEntry){.constantID = i, .offset = 4 * i, .size = 4};
    VkSpecializationInfo spec = {.mapEntryCount = o->spec_count,
                                 .pMapEntries = map,
                                 .dataSize = 4u * o->spec_count,
                                 .pData = o->spec};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod,
                  .pName = "main",
                  .pSpecializationInfo = o->spec_count ? &spec : NULL},
        .layout = p->layout};
    VkResult r = vkCreateComputePipelines(dev->device, dev->pipeline_cache, 1, &ci, NULL,
                                          &p->pipeline);
    vkDestroyShaderModule(dev->device, mod, NULL);
    if (r != VK_SUCCESS) {
        vkt__vk_error(__FILE__, __LINE__, r, dev->caps.name, "vkCreateComputePipelines");
        return vkt__error_context(vkt__vk_status(r), "shader '%s'", sh->name);
    }
    return VKT_OK;
}

vkt_status vkt_pipeline_create(vkt_device *dev, const vkt_pipeline_opts *o, vkt_pipeline **out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_pipeline_create: out is NULL");
    *out = NULL;
    VKT_FAIL_IF(!dev || dev->magic != VKT_DEVICE_MAGIC || !o, VKT_ERR_INVALID_ARG,
                "vkt_pipeline_create: NULL device or opts");
    VKT_FAIL_IF(o->struct_size < sizeof(uint32_t) || o->struct_size > sizeof *o,
                VKT_ERR_INVALID_ARG,
                "vkt_pipeline_create: initialise opts with VKT_PIPELINE_OPTS_INIT");
    vkt_pipeline_opts full = VKT_PIPELINE_OPTS_INIT;
    memcpy(&full, o, o->struct_size); /* older callers: later fields keep defaults */
    o = &full;
    VKT_FAIL_IF(!o->shader, VKT_ERR_INVALID_ARG, "vkt_pipeline_create: no shader name");
    const vkt__spirv *sh = find_shader(o->shader);
    VKT_FAIL_IF(!sh, VKT_ERR_INVALID_ARG,
                "vkt_pipeline_create: no embedded shader '%s' (this build has %u; "
                "'vktrain info --shaders' lists them)", o->shader, vkt__spirv_count);
    VKT_FAIL_IF(o->bindings != sh->bindings || o->push_size != sh->push_size,
                VKT_ERR_INVALID_ARG,
                "vkt_pipeline_create: shader '%s' has %u bindings and %u push-constant bytes; "
                "opts give %u and %u", o->shader, sh->bindings, sh->push_size, o->bindings,
                o->push_size);
    VKT_FAIL_IF(o->bindings > 32 || o->spec_count > 32 || (o->spec_count && !o->spec),
                VKT_ERR_INVALID_ARG,
                "vkt_pipeline_create: '%s': at most 32 bindings and 32 spec constants",
                o->shader);
    VKT_FAIL_IF(o->push_size % 4 || o->push_size > dev->caps.max_push_constants,
                VKT_ERR_INVALID_ARG,
                "vkt_pipeline_create: '%s': push_size %u must be a multiple of 4 and at most "
                "%u on '%s'", o->shader, o->push_size, dev->caps.max_push_constants,
                dev->caps.name);
    vkt_pipeline *p = vkt_calloc(1, sizeof *p);
    VKT_FAIL_IF(!p, VKT_ERR_NOMEM, "vkt_pipeline_create: out of host memory");
    p->dev = dev;
    p->bindings = o->bindings;
    p->push_size = o->push_size;
    snprintf(p->shader, sizeof p->shader, "%s", o->shader);
    vkt_status st;
    VKT_CHECK_GOTO(st, make_layouts(dev, p), fail);
    VKT_CHECK_GOTO(st, make_pipeline(dev, p, sh, o), fail);
    *out = p;
    return VKT_OK;
fail:
    vkt_pipeline_destroy(p);
    return st;
}

void vkt_pipeline_destroy(vkt_pipeline *p)
{
    if (!p) return;
    VkDevice d = p->dev->device;
    if (p->pipeline) vkDestroyPipeline(d, p->pipeline, NULL);
    if (p->layout) vkDestroyPipelineLayout(d, p->layout, NULL);
    if (p->set_layout) vkDestroyDescriptorSetLayout(d, p->set_layout, NULL);
    vkt_free(p);
}

/* ---- pipeline cache on disk ------------------------------------------- */

/* Our file wraps the driver's blob: a magic, its size and a checksum, so a
 * truncated or damaged file is dropped here instead of reaching the driver. */
typedef struct cache_file_header {
    char magic[8]; /* "VKTPC001" */
    uint64_t size;
    uint64_t xxh64;
} cache_file_header;

static const char CACHE_MAGIC[8] = {'V', 'K', 'T', 'P', 'C', '0', '0', '1'};

static char *cache_dir(const char *opt)
{
    if (opt) return *opt ? vkt_strdup(opt) : NULL;
    const char *e = vkt__env_str("VKT_PIPELINE_CACHE_DIR");
    if (e) return vkt_strdup(e);
    const char *base = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char buf[4096];
    if (base && *base) snprintf(buf, sizeof buf, "%s/vktrain", base);
    else if (home && *home) snprintf(buf, sizeof buf, "%s/.cache/vktrain", home);
    else return NULL;
    return vkt_strdup(buf);
}

static void mkdir_p(const char *dir)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

/* Read and check the cache file; returns a vkt_malloc'd blob or NULL. */
static void *cache_read(const vkt_device *dev, const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cache_file_header h;
    void *blob = NULL;
    if (fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, CACHE_MAGIC, 8) != 0 ||
        h.size < sizeof(VkPipelineCacheHeaderVersionOne) || h.size > (1ull << 30))
        goto out;
    blob = vkt_malloc(h.size);
    if (!blob || fread(blob, 1, h.size, f) != h.size || XXH64(blob, h.size, 0) != h.xxh64)
        goto bad;
    VkPipelineCacheHeaderVersionOne vh;
    memcpy(&vh, blob, sizeof vh);
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(dev->phys, &p);
    if (vh.vendorID != p.vendorID || vh.deviceID != p.deviceID ||
        memcmp(vh.pipelineCacheUUID, p.pipelineCacheUUID, VK_UUID_SIZE) != 0)
        goto bad; /* another driver version: start afresh */
    *size = h.size;
    goto out;
bad:
    vkt_free(blob);
    blob = NULL;
out:
    fclose(f);
    return blob;
}

vkt_status vkt__pipeline_cache_open(vkt_device *dev, const char *dir_opt)
{
    char *dir = cache_dir(dir_opt);
    void *blob = NULL;
    size_t size = 0;
    if (dir) {
        char path[4200];
        char hex[33];
        for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", dev->caps.uuid[i]);
        snprintf(path, sizeof path, "%s/pipelines-%s.bin", dir, hex);
        dev->pipeline_cache_path = vkt_strdup(path);
        blob = cache_read(dev, path, &size);
        vkt_free(dir);
    }
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                     .initialDataSize = size,
                                     .pInitialData = blob};
    VkResult r = vkCreatePipelineCache(dev->device, &ci, NULL, &dev->pipeline_cache);
    vkt_free(blob);
    if (r != VK_SUCCESS)
        return vkt__vk_error(__FILE__, __LINE__, r, dev->caps.name, "vkCreatePipelineCache");
    return VKT_OK;
}

/* Write the cache atomically: temp file, fsync, rename. Failure to save a
 * cache costs only compile time next run, so it is reported under VKT_DEBUG
 * and otherwise ignored. */
static void cache_write(vkt_device *dev)
{
    size_t size = 0;
    if (vkGetPipelineCacheData(dev->device, dev->pipeline_cache, &size, NULL) != VK_SUCCESS ||
        size == 0)
        return;
    void *blob = vkt_malloc(size);
    if (!blob) return;
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dev->pipeline_cache_path, (long)getpid());
    char *slash = strrchr(tmp, '/');
    if (slash) {
        *slash = '\0';
        mkdir_p(tmp);
        *slash = '/';
    }
    int fd = -1;
    if (vkGetPipelineCacheData(dev->device, dev->pipeline_cache, &size, blob) != VK_SUCCESS)
        goto out;
    cache_file_header h = {.size = size, .xxh64 = XXH64(blob, size, 0)};
    memcpy(h.magic, CACHE_MAGIC, 8);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto out;
    bool ok = write(fd, &h, sizeof h) == (ssize_t)sizeof h &&
              write(fd, blob, size) == (ssize_t)size && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, dev->pipeline_cache_path) != 0) {
        unlink(tmp);
        if (vkt__env_int("VKT_DEBUG", 0))
            fprintf(stderr, "vktrain: could not save pipeline cache %s: %s\n",
                    dev->pipeline_cache_path, strerror(errno));
    }
out:
    vkt_free(blob);
}

void vkt__pipeline_cache_close(vkt_device *dev)
{
    if (dev->pipeline_cache) {
        if (dev->pipeline_cache_path) cache_write(dev);
        vkDestroyPipelineCache(dev->device, dev->pipeline_cache, NULL);
        dev->pipeline_cache = VK_NULL_HANDLE;
    }
    vkt_free(dev->pipeline_cache_path);
    dev->pipeline_cache_path = NULL;
}
