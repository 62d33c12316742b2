/* The op library's shared machinery (internal): a per-device context that
 * picks the kernel family, caches pipelines by (shader, spec constants), and
 * turns tensor views into bindings.
 *
 * Conventions for every op (see STYLE.md):
 *  - src/ops/<op>.c holds vkt_op_<op>_fwd/_bwd side by side: outputs first,
 *    then inputs, then dims; shapes in comments (B, T, C, V ...).
 *  - Ops only *record* into a vkt_stream; they never submit or wait.
 *  - Backward ops accumulate into gradients (+=); zeroing is explicit.
 *  - Launchers check shapes and views before recording, and fail with a
 *    message naming the op and the bad argument.
 *  - A view is bound as an aligned window of its buffer plus an element
 *    offset in push constants, so views need no particular alignment and
 *    buffers larger than maxStorageBufferRange work (a view must not
 *    straddle a window: the parameter layout guarantees that). */
#ifndef VKT_OPS_INT_H
#define VKT_OPS_INT_H

#include <stdbool.h>

#include "core/core_int.h"
#include "vktrain/dtype.h"
#include "vktrain/gpu.h"

typedef enum vkt_kernel_family {
    VKT_KERNELS_CPU = 0, /* lavapipe-style: no shared memory, uniform loads, runs */
    VKT_KERNELS_GPU = 1, /* shared-memory tiling, subgroups, coop. matrix where present */
    VKT_KERNELS_AUTO = 2,
} vkt_kernel_family;

typedef struct vkt_ops vkt_ops;

/* family AUTO: $VKT_KERNELS (cpu|gpu) if set, else CPU for a CPU device and
 * GPU otherwise. */
vkt_status vkt__ops_create(vkt_device *dev, vkt_kernel_family family, vkt_ops **out);
void vkt__ops_destroy(vkt_ops *ops);
vkt_kernel_family vkt__ops_family(const vkt_ops *ops);
vkt_device *vkt__ops_device(const vkt_ops *ops);
const char *vkt__kernel_family_str(vkt_kernel_family f);

/* The pipeline for (shader, spec[0..nspec)), created on first use and owned
 * by ops (valid until vkt__ops_destroy). */
vkt_status vkt__ops_pipeline(vkt_ops *ops, const char *shader, uint32_t bindings,
                             uint32_t push_size, const uint32_t *spec, uint32_t nspec,
                             const vkt_pipeline **out);

/* A tensor view: data starts at byte offset of buf. */
typedef struct vkt_tref {
    vkt_buffer *buf;
    uint64_t offset; /* bytes; a multiple of the element size */
} vkt_tref;

/* Binding for `bytes` bytes of view t: an aligned window of the buffer that
 * contains them, and the view's first element (of elem_size bytes) relative
 * to the window start. Fails with a message naming `what` when the view is
 * outside its buffer or does not fit one window. */
vkt_status vkt__ops_bind(const vkt_ops *ops, vkt_tref t, uint64_t bytes, uint32_t elem_size,
                         const char *what, vkt_binding *b, uint32_t *first);

/* t is a training dtype (f32, f16, bf16) the device can store: 16-bit
 * types need storage_16bit. Errors name op. */
vkt_status vkt__ops_check_dtype(const vkt_ops *ops, vkt_dtype t, const char *op);

/* How an elementwise kernel covers n elements: workgroup size and run
 * length (the shader's spec constants 0 and 1), and elements per dispatch
 * (launchers loop when n is larger, shifting their offsets). */
typedef struct vkt_split {
    uint32_t wg, run;
    uint64_t per_dispatch;
} vkt_split;

vkt_split vkt__ops_split(const vkt_ops *ops);

/* Number of workgroups for count elements under split sp. */
uint32_t vkt__ops_groups(vkt_split sp, uint64_t count);

#endif
