/* vktrain info: every Vulkan device and what it can do. */
#include <getopt.h>
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"

static const char *yn(bool b) { return b ? "yes" : "no"; }

static void uuid_str(const uint8_t u[16], char out[37])
{
    char *p = out;
    for (int i = 0; i < 16; i++) {
        p += sprintf(p, "%02x", u[i]);
        if (i == 3 || i == 5 || i == 7 || i == 9) *p++ = '-';
    }
    *p = '\0';
}

static void bytes(char *buf, size_t cap, uint64_t b)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) v /= 1024, i++;
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void print_device(const vkt_device_caps *c)
{
    char uuid[37], a[32], b[32], d[32];
    uuid_str(c->uuid, uuid);
    printf("[%u] %s  (%s%s)\n", c->index, c->name, vkt_device_type_str(c->type),
           c->is_default ? ", default" : "");
    if (!c->usable) printf("    NOT USABLE: %s\n", c->unusable_reason);
    printf("    driver          %s, %s\n", c->driver_name, c->driver_info);
    printf("    Vulkan          %u.%u.%u   vendor 0x%04x device 0x%04x\n",
           VKT_VK_VERSION_MAJOR(c->api_version), VKT_VK_VERSION_MINOR(c->api_version),
           VKT_VK_VERSION_PATCH(c->api_version), c->vendor_id, c->device_id);
    printf("    uuid            %s\n", uuid);
    printf("    subgroup        %u (min %u, max %u), arithmetic %s, ballot %s\n",
           c->subgroup_size, c->subgroup_min_size, c->subgroup_max_size,
           yn(c->subgroup_arithmetic), yn(c->subgroup_ballot));
    bytes(a, sizeof a, c->max_shared_memory);
    printf("    workgroup       %u invocations, %u x %u x %u; shared memory %s\n",
           c->max_workgroup_invocations, c->max_workgroup_size[0], c->max_workgroup_size[1],
           c->max_workgroup_size[2], a);
    bytes(a, sizeof a, c->max_storage_buffer_range);
    bytes(b, sizeof b, c->max_allocation_size);
    printf("    buffers         storage range %s (offset alignment %llu), max allocation %s, "
           "push constants %u B\n", a, (unsigned long long)c->min_storage_buffer_alignment, b,
           c->max_push_constants);
    printf("    arithmetic      fp16 %s, int8 %s, int16 %s, int64 %s, fp64 %s, fp32 atomics %s\n",
           yn(c->shader_fp16), yn(c->shader_int8), yn(c->shader_int16), yn(c->shader_int64),
           yn(c->shader_fp64), yn(c->fp32_atomic_add));
    printf("    storage types   16-bit %s, 8-bit %s, bf16 %s; cooperative matrix %s\n",
           yn(c->storage_16bit), yn(c->storage_8bit), yn(c->bf16), yn(c->cooperative_matrix));
    if (c->timestamps)
        printf("    timestamps      yes (%.3g ns per tick, %u bits)\n", c->timestamp_period,
               c->timestamp_bits);
    else
        printf("    timestamps      no\n");
    for (uint32_t h = 0; h < c->heap_count; h++) {
        bytes(d, sizeof d, c->heaps[h].size);
        printf("    memory heap %u   %s%s%s\n", h, d, c->heaps[h].device_local ? ", device-local" : "",
               c->heaps[h].host_visible ? ", host-visible" : "");
    }
    printf("    unified memory  %s\n\n", yn(c->unified_memory));
}

static json_t *device_json(const vkt_device_caps *c)
{
    char uuid[37];
    uuid_str(c->uuid, uuid);
    json_t *heaps = json_array();
    for (uint32_t h = 0; h < c->heap_count; h++)
        json_array_append_new(heaps, json_pack("{s:I, s:b, s:b}", "size", (json_int_t)c->heaps[h].size,
                                               "device_local", c->heaps[h].device_local,
                                               "host_visible", c->heaps[h].host_visible));
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:b, s:b, s:s}", "index",
        (json_int_t)c->index, "name", c->name, "type", vkt_device_type_str(c->type),
        "driver_name", c->driver_name, "driver_info", c->driver_info, "vendor_id",
        (json_int_t)c->vendor_id, "device_id", (json_int_t)c->device_id, "uuid", uuid,
        "api_version", "", "usable", c->usable, "default", c->is_default, "unusable_reason",
        c->unusable_reason);
    char api[32];
    snprintf(api, sizeof api, "%u.%u.%u", VKT_VK_VERSION_MAJOR(c->api_version),
             VKT_VK_VERSION_MINOR(c->api_version), VKT_VK_VERSION_PATCH(c->api_version));
    json_object_set_new(o, "api_version", json_string(api));
    json_object_set_new(o, "subgroup", json_pack("{s:I, s:I, s:I, s:b, s:b}", "size",
        (json_int_t)c->subgroup_size, "min", (json_int_t)c->subgroup_min_size, "max",
        (json_int_t)c->subgroup_max_size, "arithmetic", c->subgroup_arithmetic, "ballot",
        c->subgroup_ballot));
    json_object_set_new(o, "limits", json_pack(
        "{s:I, s:I, s:[I,I,I], s:[I,I,I], s:I, s:I, s:I, s:I}", "max_shared_memory",
        (json_int_t)c->max_shared_memory, "max_workgroup_invocations",
        (json_int_t)c->max_workgroup_invocations, "max_workgroup_size",
        (json_int_t)c->max_workgroup_size[0], (json_int_t)c->max_workgroup_size[1],
        (json_int_t)c->max_workgroup_size[2], "max_workgroup_count",
        (json_int_t)c->max_workgroup_count[0], (json_int_t)c->max_workgroup_count[1],
        (json_int_t)c->max_workgroup_count[2], "max_push_constants",
        (json_int_t)c->max_push_constants, "max_storage_buffer_range",
        (json_int_t)c->max_storage_buffer_range, "min_storage_buffer_alignment",
        (json_int_t)c->min_storage_buffer_alignment, "max_allocation_size",
        (json_int_t)c->max_allocation_size));
    json_object_set_new(o, "features", json_pack(
        "{s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b, s:b}", "fp16", c->shader_fp16, "int8",
        c->shader_int8, "int16", c->shader_int16, "int64", c->shader_int64, "fp64",
        c->shader_fp64, "storage_16bit", c->storage_16bit, "storage_8bit", c->storage_8bit,
        "bf16", c->bf16, "cooperative_matrix", c->cooperative_matrix, "fp32_atomic_add",
        c->fp32_atomic_add));
    json_object_set_new(o, "timestamps", json_pack("{s:b, s:f, s:I}", "supported", c->timestamps,
        "period_ns", c->timestamp_period, "valid_bits", (json_int_t)c->timestamp_bits));
    json_object_set_new(o, "memory", json_pack("{s:o, s:b}", "heaps", heaps, "unified",
                                               c->unified_memory));
    return o;
}

#ifdef VKT_HAVE_ENGINE
/* transport/verbs_chan.c (in libvktrain with the transport): one line per
 * RDMA device port; VKT_ERR_UNSUPPORTED without libibverbs-dev. */
vkt_status vkt__verbs_describe(char *out, size_t cap);

/* RDMA devices for backend verbs, when libibverbs is built in. */
static void print_rdma(void)
{
    char buf[2048];
    vkt_status st = vkt__verbs_describe(buf, sizeof buf);
    if (st == VKT_ERR_UNSUPPORTED && strstr(vkt_last_error(), "not built in")) return;
    if (st != VKT_OK)
        printf("RDMA devices (backend verbs): none usable: %s\n", vkt_last_error());
    else
        printf("RDMA devices (backend verbs):\n%s", buf[0] ? buf : "none\n");
}
#endif

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: vktrain info [--json] [--shaders]\n\n"
               "Lists every Vulkan device the loader finds, of any vendor, with the\n"
               "capabilities vktrain chooses kernels by. The default device (the one\n"
               "vktrain uses without --device or VKT_DEVICE) is marked.\n\n"
               "  --json      one JSON object: {\"version\", \"devices\": [...]}\n"
               "  --shaders   also list the compute shaders embedded in this build\n");
    return code;
}

int cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"shaders", no_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool as_json = false, shaders = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') as_json = true;
        else if (c == 's') shaders = true;
        else if (c == 'h') return usage(stdout, 0);
        else return usage(stderr, 2);
    }
    if (optind < argc) return cli_usage_error("info", "unexpected argument '%s'", argv[optind]);
    vkt_device_caps *caps = NULL;
    uint32_t n = 0;
    vkt_status st = vkt_device_enumerate(&caps, &n);
    if (st != VKT_OK) return cli_fail(st, "cannot list Vulkan devices");
    if (as_json) {
        json_t *root = json_pack("{s:s, s:[]}", "version", vkt_version_string(), "devices");
        json_t *arr = json_object_get(root, "devices");
        for (uint32_t i = 0; i < n; i++) json_array_append_new(arr, device_json(&caps[i]));
        if (shaders) {
            json_t *sh = json_array();
            for (uint32_t i = 0; i < vkt_shader_count(); i++)
                json_array_append_new(sh, json_string(vkt_shader_name(i)));
            json_object_set_new(root, "shaders", sh);
        }
        json_dumpf(root, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(root);
    } else {
        printf("vktrain %s: %u Vulkan device%s\n\n", vkt_version_string(), n, n == 1 ? "" : "s");
        for (uint32_t i = 0; i < n; i++) print_device(&caps[i]);
        if (n == 0)
            printf("No Vulkan device. Install a driver; mesa-vulkan-drivers provides lavapipe.\n");
        if (shaders) {
            printf("embedded shaders (%u):", vkt_shader_count());
            for (uint32_t i = 0; i < vkt_shader_count(); i++) printf(" %s", vkt_shader_name(i));
            printf("\n");
        }
#ifdef VKT_HAVE_ENGINE
        print_rdma();
#endif
    }
    vkt_free(caps);
    return 0;
}
