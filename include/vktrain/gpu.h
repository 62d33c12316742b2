/* vktrain — the Vulkan runtime: devices, buffers, compute pipelines, command
 * streams, timeline semaphores.
 *
 * Every object is opaque. Constructors are vkt_<x>_create(…, vkt_<x> **out),
 * return a vkt_status and leave *out NULL on failure with nothing leaked;
 * destructors return void and accept NULL. Objects made from a device must be
 * destroyed before the device. On failure vkt_last_error() holds a message
 * that names the call, the device and the driver's VkResult.
 *
 * Thread safety: a vkt_device may be used from several threads at once
 * (queue submission and the allocator are locked inside). A vkt_stream or a
 * vkt_buffer must not be recorded or mapped by two threads at the same time.
 * vkt_timeline_wait may be called from any thread; that is what it is for. */
#ifndef VKTRAIN_GPU_H
#define VKTRAIN_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vktrain/export.h"
#include "vktrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkt_device vkt_device;
typedef struct vkt_buffer vkt_buffer;
typedef struct vkt_pipeline vkt_pipeline;
typedef struct vkt_stream vkt_stream;
typedef struct vkt_timeline vkt_timeline;

/* ------------------------------------------------------------------------- */
/* Devices and their capabilities                                            */

typedef enum vkt_device_type {
    VKT_DEVICE_OTHER = 0,
    VKT_DEVICE_INTEGRATED = 1,
    VKT_DEVICE_DISCRETE = 2,
    VKT_DEVICE_VIRTUAL = 3,
    VKT_DEVICE_CPU = 4,
} vkt_device_type;

/* Static text: "discrete", "integrated", "virtual", "cpu", "other". */
VKT_API const char *vkt_device_type_str(vkt_device_type t);

#define VKT_MAX_HEAPS 16

/* Parts of a Vulkan version number (without needing vulkan.h). */
#define VKT_VK_VERSION_MAJOR(v) (((uint32_t)(v) >> 22) & 0x7fu)
#define VKT_VK_VERSION_MINOR(v) (((uint32_t)(v) >> 12) & 0x3ffu)
#define VKT_VK_VERSION_PATCH(v) ((uint32_t)(v) & 0xfffu)

typedef struct vkt_heap_info {
    uint64_t size;     /* bytes */
    bool device_local; /* VK_MEMORY_HEAP_DEVICE_LOCAL_BIT */
    bool host_visible; /* some memory type of this heap can be mapped */
} vkt_heap_info;

/* What a device can do, as queried at enumeration. Kernels are chosen from
 * these fields, never from the vendor's name. */
typedef struct vkt_device_caps {
    uint32_t index; /* position in vkt_device_enumerate's list */
    char name[256];
    char driver_name[256]; /* e.g. "llvmpipe", "NVIDIA" */
    char driver_info[256]; /* e.g. "Mesa 22.3.6 (LLVM 15.0.6)" */
    uint32_t vendor_id, device_id;
    uint8_t uuid[16];
    vkt_device_type type;
    uint32_t api_version; /* VK_MAKE_API_VERSION encoding; see VKT_VK_VERSION_* */
    bool usable;          /* meets vktrain's needs (Vulkan 1.2, timeline semaphores) */
    bool is_default;      /* the device vkt_device_create picks without a selector */
    char unusable_reason[128];

    /* compute limits */
    uint32_t subgroup_size;     /* default subgroup size */
    uint32_t subgroup_min_size; /* with subgroup size control, else = subgroup_size */
    uint32_t subgroup_max_size;
    bool subgroup_arithmetic; /* subgroupAdd etc. in compute shaders */
    bool subgroup_ballot;     /* subgroupBroadcast etc. in compute shaders */
    uint32_t max_shared_memory; /* bytes per workgroup */
    uint32_t max_workgroup_invocations;
    uint32_t max_workgroup_size[3];
    uint32_t max_workgroup_count[3];
    uint32_t max_push_constants; /* bytes */
    uint64_t max_storage_buffer_range;     /* bytes one descriptor can see */
    uint64_t min_storage_buffer_alignment; /* offset alignment of a binding */
    uint64_t max_allocation_size;          /* largest single allocation */

    /* arithmetic and storage types */
    bool shader_fp16;   /* float16 arithmetic */
    bool shader_int8;   /* int8 arithmetic */
    bool shader_int16;
    bool shader_int64;
    bool shader_fp64;
    bool storage_16bit; /* 16-bit values in storage buffers */
    bool storage_8bit;
    bool bf16;               /* a native bfloat16 shader type (VK_KHR_shader_bfloat16) */
    bool cooperative_matrix; /* VK_KHR_ or VK_NV_cooperative_matrix */
    bool fp32_atomic_add;    /* VK_EXT_shader_atomic_float on storage buffers */

    /* timing */
    bool timestamps;          /* timestamps on the compute queue */
    double timestamp_period;  /* nanoseconds per tick */
    uint32_t timestamp_bits;  /* valid bits of a timestamp */

    /* memory */
    uint32_t heap_count;
    vkt_heap_info heaps[VKT_MAX_HEAPS];
    bool unified_memory; /* device-local memory the host can map: no staging copies */
} vkt_device_caps;

/* List every Vulkan device of every vendor that the loader finds.
 * out:   receives an array of *count entries, vkt_free() it.
 * Returns VKT_OK (also with *count 0 when there is no device), VKT_ERR_VULKAN
 * when no Vulkan loader or driver works at all, VKT_ERR_NOMEM. */
VKT_API vkt_status vkt_device_enumerate(vkt_device_caps **out, uint32_t *count);

/* Validation-layer policy for vkt_device_create. */
typedef enum vkt_validation {
    VKT_VALIDATION_ENV = 0, /* on when the environment has VKT_VALIDATE=1 */
    VKT_VALIDATION_OFF = 1,
    VKT_VALIDATION_ON = 2,  /* fails with VKT_ERR_UNSUPPORTED if the layer is missing */
} vkt_validation;

typedef struct vkt_device_opts {
    uint32_t struct_size; /* sizeof(vkt_device_opts); set by VKT_DEVICE_OPTS_INIT */
    /* Which device. NULL or "" → $VKT_DEVICE, else the first discrete GPU, else
     * integrated, else virtual, else the CPU driver (lavapipe). Otherwise a
     * decimal index into vkt_device_enumerate's list, a device UUID (32 hex
     * digits, dashes allowed), or a case-insensitive substring of the name. */
    const char *select;
    vkt_validation validation;
    /* Upper bound on device memory this device's allocator may take, in bytes;
     * 0 = the heap sizes. Requests beyond it fail with VKT_ERR_NOMEM. */
    uint64_t memory_limit;
    /* Size of the blocks the allocator sub-allocates from; 0 = 64 MiB. */
    uint64_t block_size;
    /* Directory of the on-disk pipeline cache. NULL → $VKT_PIPELINE_CACHE_DIR,
     * else $XDG_CACHE_HOME/vktrain, else $HOME/.cache/vktrain. "" disables it. */
    const char *pipeline_cache_dir;
} vkt_device_opts;

#define VKT_DEVICE_OPTS_INIT                                                       \
    {                                                                              \
        sizeof(vkt_device_opts), NULL, VKT_VALIDATION_ENV, 0, 0, NULL              \
    }

/* Open a device. opts may be NULL (all defaults). Blocking.
 * Returns VKT_ERR_INVALID_ARG (no device matches select; the message lists the
 * devices), VKT_ERR_UNSUPPORTED (device lacks Vulkan 1.2 / timeline semaphores,
 * or validation was asked for and the layer is missing), VKT_ERR_VULKAN,
 * VKT_ERR_NOMEM. */
VKT_API vkt_status vkt_device_create(const vkt_device_opts *opts, vkt_device **out);

/* Wait for all work, save the pipeline cache, free everything. Accepts NULL. */
VKT_API void vkt_device_destroy(vkt_device *dev);

/* The device's capabilities; owned by dev, valid until vkt_device_destroy. */
VKT_API const vkt_device_caps *vkt_device_get_caps(const vkt_device *dev);

/* Number of validation-layer warnings and errors this device has seen since
 * it was created (each is also printed to stderr). 0 when validation is off. */
VKT_API uint64_t vkt_device_validation_messages(const vkt_device *dev);

/* Wait until the device is idle. */
VKT_API vkt_status vkt_device_wait_idle(vkt_device *dev);

typedef struct vkt_memory_stats {
    uint64_t reserved;      /* bytes in allocator blocks (what the driver gave us) */
    uint64_t in_use;        /* bytes handed out to live buffers, incl. alignment */
    uint64_t peak_reserved; /* high-water mark of reserved */
    uint32_t blocks;        /* live blocks */
    uint32_t buffers;       /* live buffers */
} vkt_memory_stats;

/* Allocator counters of this device (all memory kinds together). */
VKT_API void vkt_device_memory_stats(const vkt_device *dev, vkt_memory_stats *out);

/* ------------------------------------------------------------------------- */
/* Buffers                                                                   */

typedef enum vkt_memory_kind {
    /* For kernels. Device-local; on unified-memory devices also host-mapped,
     * so uploads and downloads are plain memcpy. */
    VKT_MEMORY_DEVICE = 0,
    /* Host-visible and coherent, readable by kernels: for data the host
     * writes often (batches) or reads often (losses). */
    VKT_MEMORY_HOST = 1,
    /* Host-visible, host-cached where possible: a transfer target for reading
     * results back from a discrete GPU. */
    VKT_MEMORY_STAGING = 2,
} vkt_memory_kind;

/* A buffer of size bytes (size > 0), sub-allocated from a device block.
 * opts.memory_limit and vkt_device_memory_stats cover the buffers callers
 * create; the runtime's own 16 MiB staging buffer (made on the first
 * upload/download of memory the host cannot map) is not counted.
 * A buffer may be larger than caps.max_storage_buffer_range: bind it in
 * windows (vkt_binding.offset/.size). Contents are undefined until written.
 * Returns VKT_ERR_INVALID_ARG (size 0), VKT_ERR_NOMEM (device memory or the
 * opts.memory_limit exhausted; the message says how much is in use),
 * VKT_ERR_VULKAN. */
VKT_API vkt_status vkt_buffer_create(vkt_device *dev, vkt_memory_kind kind, uint64_t size,
                                     vkt_buffer **out);
VKT_API void vkt_buffer_destroy(vkt_buffer *buf);
VKT_API uint64_t vkt_buffer_size(const vkt_buffer *buf);

/* Host pointer to the buffer's memory, valid until the buffer is destroyed;
 * NULL for device memory that the host cannot map (use upload/download).
 * Writes are visible to the next submitted work; results of work are visible
 * after its completion was waited for. */
VKT_API void *vkt_buffer_host_ptr(vkt_buffer *buf);

/* Copy n bytes from host memory into the buffer at offset (blocking; goes
 * through a staging buffer when the memory is not mappable). The caller must
 * make sure no submitted work uses the range. n == 0 is a no-op.
 * Returns VKT_ERR_INVALID_ARG when the range exceeds the buffer. */
VKT_API vkt_status vkt_buffer_upload(vkt_buffer *buf, uint64_t offset, const void *src,
                                     uint64_t n);
/* Copy n bytes from the buffer at offset into host memory (blocking). */
VKT_API vkt_status vkt_buffer_download(vkt_buffer *buf, uint64_t offset, void *dst,
                                       uint64_t n);

/* ------------------------------------------------------------------------- */
/* Compute pipelines from the shaders embedded in the library                */

/* Number of embedded shader variants and the name of the i-th one
 * (static storage; NULL when i is out of range). */
VKT_API uint32_t vkt_shader_count(void);
VKT_API const char *vkt_shader_name(uint32_t i);

typedef struct vkt_pipeline_opts {
    uint32_t struct_size; /* set by VKT_PIPELINE_OPTS_INIT */
    const char *shader;   /* embedded shader variant, e.g. "axpy_f32" */
    uint32_t bindings;    /* storage buffers at set 0, bindings 0..bindings-1 */
    uint32_t push_size;   /* bytes of push constants (≤ caps.max_push_constants) */
    /* Specialization constants: spec[i] is given to constant_id i as 32 bits.
     * By convention constant_id 0..2 are the workgroup size (local_size_x_id). */
    const uint32_t *spec;
    uint32_t spec_count;
} vkt_pipeline_opts;

#define VKT_PIPELINE_OPTS_INIT                                                     \
    {                                                                              \
        sizeof(vkt_pipeline_opts), NULL, 0, 0, NULL, 0                             \
    }

/* Compile a pipeline (through the device's pipeline cache). Blocking.
 * Returns VKT_ERR_INVALID_ARG (unknown shader; too many push bytes),
 * VKT_ERR_VULKAN, VKT_ERR_NOMEM. */
VKT_API vkt_status vkt_pipeline_create(vkt_device *dev, const vkt_pipeline_opts *opts,
                                       vkt_pipeline **out);
VKT_API void vkt_pipeline_destroy(vkt_pipeline *p);

/* ------------------------------------------------------------------------- */
/* Command streams: record once, replay many times                           */

/* One storage-buffer binding: size bytes from offset (size 0 = to the end of
 * the buffer). offset must be a multiple of caps.min_storage_buffer_alignment
 * and size at most caps.max_storage_buffer_range. */
typedef struct vkt_binding {
    vkt_buffer *buf;
    uint64_t offset;
    uint64_t size;
} vkt_binding;

/* Host-side wait or signal of a timeline semaphore value in a submit. */
typedef struct vkt_sync_point {
    vkt_timeline *timeline;
    uint64_t value;
} vkt_sync_point;

typedef struct vkt_submit_opts {
    uint32_t struct_size; /* set by VKT_SUBMIT_OPTS_INIT */
    const vkt_sync_point *waits; /* the GPU waits for these before starting */
    uint32_t wait_count;
    const vkt_sync_point *signals; /* signalled when this submission completes */
    uint32_t signal_count;
} vkt_submit_opts;

#define VKT_SUBMIT_OPTS_INIT                                                       \
    {                                                                              \
        sizeof(vkt_submit_opts), NULL, 0, NULL, 0                                  \
    }

VKT_API vkt_status vkt_stream_create(vkt_device *dev, vkt_stream **out);
/* Waits for the stream's submitted work, then frees it. Accepts NULL. */
VKT_API void vkt_stream_destroy(vkt_stream *s);

/* Start recording; throws away what was recorded before. The stream must not
 * have work in flight (waits for it if it has). */
VKT_API vkt_status vkt_stream_begin(vkt_stream *s);
/* Record a dispatch of groups_x × groups_y × groups_z workgroups. push may be
 * NULL when the pipeline has no push constants; push_size must equal the
 * pipeline's. Bindings are checked against the device limits now, so a bad
 * window fails here, not inside the driver. */
VKT_API vkt_status vkt_stream_dispatch(vkt_stream *s, const vkt_pipeline *p,
                                       const vkt_binding *bindings, uint32_t binding_count,
                                       const void *push, uint32_t push_size, uint32_t groups_x,
                                       uint32_t groups_y, uint32_t groups_z);
/* Make all earlier shader and transfer writes visible to later commands. */
VKT_API vkt_status vkt_stream_barrier(vkt_stream *s);
/* Copy size bytes between buffers (ranges must not overlap when src == dst). */
VKT_API vkt_status vkt_stream_copy(vkt_stream *s, vkt_buffer *src, uint64_t src_offset,
                                   vkt_buffer *dst, uint64_t dst_offset, uint64_t size);
/* Fill size bytes (multiple of 4) at offset (multiple of 4) with a 32-bit word. */
VKT_API vkt_status vkt_stream_fill(vkt_stream *s, vkt_buffer *buf, uint64_t offset,
                                   uint64_t size, uint32_t word);
/* Record a GPU timestamp once all earlier commands finished. *slot receives
 * its index for vkt_stream_timestamps. VKT_ERR_UNSUPPORTED without
 * caps.timestamps; at most 64 per recording. */
VKT_API vkt_status vkt_stream_timestamp(vkt_stream *s, uint32_t *slot);
VKT_API vkt_status vkt_stream_end(vkt_stream *s);

/* Submit the recording (again). opts may be NULL. Does not wait. The same
 * recording may be submitted again before the earlier submission finished;
 * the queue runs them in order. */
VKT_API vkt_status vkt_stream_submit(vkt_stream *s, const vkt_submit_opts *opts);
/* Wait until everything submitted on this stream finished, at most
 * timeout_ns (UINT64_MAX: no limit). VKT_ERR_TIMEOUT when it did not. */
VKT_API vkt_status vkt_stream_wait(vkt_stream *s, uint64_t timeout_ns);
/* submit + wait without limit. */
VKT_API vkt_status vkt_stream_run(vkt_stream *s);
/* After the last submission completed: seconds of each recorded timestamp
 * relative to the first one, into out[0..n). n at most the number recorded. */
VKT_API vkt_status vkt_stream_timestamps(vkt_stream *s, double *out, uint32_t n);

/* ------------------------------------------------------------------------- */
/* Timeline semaphores: cross-queue and cross-thread synchronisation         */

VKT_API vkt_status vkt_timeline_create(vkt_device *dev, uint64_t initial, vkt_timeline **out);
VKT_API void vkt_timeline_destroy(vkt_timeline *t);
/* Signal value from the host (must be larger than the current value). */
VKT_API vkt_status vkt_timeline_signal(vkt_timeline *t, uint64_t value);
/* Block until the counter reaches value or timeout_ns passes (VKT_ERR_TIMEOUT).
 * Callable from any thread. */
VKT_API vkt_status vkt_timeline_wait(vkt_timeline *t, uint64_t value, uint64_t timeout_ns);
VKT_API vkt_status vkt_timeline_value(vkt_timeline *t, uint64_t *value);

/* ------------------------------------------------------------------------- */
/* Self-check                                                                */

typedef struct vkt_selftest_result {
    double axpy_max_abs_err;   /* y = a·x + y on 1 Mi floats vs. a C loop */
    double sum_rel_err;        /* sum reduction of 1 Mi floats vs. a double C sum */
    double dispatch_us;        /* submit + wait of one empty dispatch, median */
    uint64_t validation_messages; /* during this selftest */
    bool completed;               /* all kernels ran: the numbers above are real */
} vkt_selftest_result;

/* Run a few real kernels on dev and compare them with C. Returns VKT_OK when
 * all results are within tolerance and the validation layer (if on) said
 * nothing during the run, VKT_ERR_VULKAN (with the numbers in the message)
 * when the driver got something wrong. validation_messages counts only the
 * messages of this run. */
VKT_API vkt_status vkt_device_selftest(vkt_device *dev, vkt_selftest_result *out);

#ifdef __cplusplus
}
#endif
#endif
