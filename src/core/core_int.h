/* Internal helpers shared by every vktrain module: error recording,
 * propagation macros, cached environment parameters. Not installed. */
#ifndef VKT_CORE_INT_H
#define VKT_CORE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "vktrain/alloc.h"
#include "vktrain/dtype.h"
#include "vktrain/status.h"

#if defined(__GNUC__)
#define VKT_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define VKT_PRINTF(fmt_idx, arg_idx)
#endif

/* Record a failure for vkt_last_error() and return st. file/line go into the
 * message only when VKT_DEBUG is set; users see the sentence, developers the
 * location. */
vkt_status vkt__error(vkt_status st, const char *file, int line, const char *fmt, ...)
    VKT_PRINTF(4, 5);

/* Prefix the current thread's last error with "ctx: " (adds context while a
 * failure propagates upwards, e.g. which device). Returns st. */
vkt_status vkt__error_context(vkt_status st, const char *fmt, ...) VKT_PRINTF(2, 3);

#define VKT_ERROR(st, ...) vkt__error((st), __FILE__, __LINE__, __VA_ARGS__)

/* Fail with st and a message when cond holds. */
#define VKT_FAIL_IF(cond, st, ...)                                                 \
    do {                                                                           \
        if (cond) return VKT_ERROR((st), __VA_ARGS__);                             \
    } while (0)

/* Propagate a failing status. */
#define VKT_CHECK(expr)                                                            \
    do {                                                                           \
        vkt_status vkt_check_st_ = (expr);                                         \
        if (vkt_check_st_ != VKT_OK) return vkt_check_st_;                         \
    } while (0)

/* Propagate to a cleanup label: st = expr; on failure goto label. */
#define VKT_CHECK_GOTO(st, expr, label)                                            \
    do {                                                                           \
        (st) = (expr);                                                             \
        if ((st) != VKT_OK) goto label;                                            \
    } while (0)

/* "Cannot happen": fatal in debug builds, VKT_ERR_INTERNAL in release. */
#ifdef NDEBUG
#define VKT_ASSERT(cond)                                                           \
    do {                                                                           \
        if (!(cond))                                                               \
            return VKT_ERROR(VKT_ERR_INTERNAL, "internal check failed: %s", #cond); \
    } while (0)
#else
#include <assert.h>
#define VKT_ASSERT(cond) assert(cond)
#endif

/* Environment parameters, read once per process and cached (NCCL_PARAM).
 * The string getter returns NULL when unset or empty. */
int64_t vkt__env_int(const char *name, int64_t deflt);
const char *vkt__env_str(const char *name);

/* TEST-ONLY fault injection (VKT_INJECT_FAULT, see fault.c): true on the
 * configured pass through point what ("oom", "device_lost"), where the
 * caller then fails as if the real fault happened; vkt__fault_point(where)
 * sends this process SIGKILL / SIGSTOP there ("kill_<where>:N"). */
bool vkt__fault_hit(const char *what);
void vkt__fault_point(const char *where);

/* Convert n elements between f32 and a floating type t (f32, f16, bf16),
 * rounding to nearest even as the shaders do. to_f32 may convert in place
 * (dst == src); from_f32 may too. */
void vkt__dtype_from_f32(vkt_dtype t, void *dst, const float *src, size_t n);
void vkt__dtype_to_f32(vkt_dtype t, float *dst, const void *src, size_t n);

/* Human-readable byte count ("1.5 GiB") into buf; returns buf. */
const char *vkt__fmt_bytes(char *buf, size_t cap, uint64_t bytes);

#endif
