/* vktrain — status codes and error messages.
 *
 * Every public function that can fail returns a vkt_status. VKT_OK is 0; the
 * other codes say whose fault a failure is (the caller's, the system's, the
 * driver's, a remote peer's, or ours). The numbering is pinned: codes are only
 * ever appended.
 *
 * When a call fails it also leaves a message for the calling thread, read with
 * vkt_last_error(): what failed, why, and what to do about it, e.g.
 *   "vkt_buffer_create: 3.0 GiB device-local buffer on 'llvmpipe': exceeds the
 *    largest heap (2.0 GiB); use a smaller batch or another device". */
#ifndef VKTRAIN_STATUS_H
#define VKTRAIN_STATUS_H

#include "vktrain/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One row per code: XX(NAME, value, static text). */
#define VKT_STATUS_MAP(XX)                                                         \
    XX(OK, 0, "success")                                                           \
    XX(ERR_INVALID_ARG, 1, "invalid argument")                                     \
    XX(ERR_INVALID_USAGE, 2, "invalid usage (call order or object state)")         \
    XX(ERR_NOMEM, 3, "out of memory")                                              \
    XX(ERR_IO, 4, "input/output error")                                            \
    XX(ERR_SYSTEM, 5, "operating-system call failed")                              \
    XX(ERR_VULKAN, 6, "Vulkan driver error")                                       \
    XX(ERR_UNSUPPORTED, 7, "not supported by this device or build")               \
    XX(ERR_REMOTE, 8, "a remote peer failed or misbehaved")                        \
    XX(ERR_TIMEOUT, 9, "timed out")                                                \
    XX(ERR_CORRUPT, 10, "corrupt or malformed data")                               \
    XX(ERR_INTERNAL, 11, "internal error in vktrain (please report)")                \
    XX(ERR_NUMERIC, 12, "numerical failure training cannot recover from")

typedef enum vkt_status {
#define VKT_STATUS_ENUM_(name, value, text) VKT_##name = value,
    VKT_STATUS_MAP(VKT_STATUS_ENUM_)
#undef VKT_STATUS_ENUM_
} vkt_status;

/* Static, human-readable text for a code ("out of memory"). Never NULL: an
 * unknown code gives "unknown status". Thread-safe. */
VKT_API const char *vkt_status_str(vkt_status s);

/* The code's name without prefix ("ERR_NOMEM"); static; never NULL. */
VKT_API const char *vkt_status_name(vkt_status s);

/* The detailed message of the last failure on the calling thread, or "" when
 * no call on this thread has failed yet. The text is owned by the library and
 * stays valid until the next vktrain call on the same thread. A successful call
 * does not clear it. */
VKT_API const char *vkt_last_error(void);

/* Forget the calling thread's last error (vkt_last_error() returns ""). */
VKT_API void vkt_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
