/* Whole-file reads and atomic whole-file writes, with errors that name the
 * path and the cause. No Vulkan; used by the config, safetensors and
 * checkpoint-index modules. Not installed. */
#ifndef VKT_FORMATS_FILE_H
#define VKT_FORMATS_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "vktrain/status.h"

/* Read all of path into a new buffer (vkt_malloc'd, one extra NUL byte
 * after the data so text parsers may treat it as a string). Refuses files
 * larger than max_bytes (VKT_ERR_INVALID_ARG naming the size). Returns
 * VKT_ERR_IO (missing, unreadable: the message names path and errno),
 * VKT_ERR_NOMEM. */
vkt_status vkt__file_read(const char *path, uint64_t max_bytes, void **data, size_t *size);

/* One piece of a file written with vkt__file_write_atomic. */
typedef struct vkt_file_part {
    const void *data;
    size_t size;
} vkt_file_part;

/* Write the parts, in order, to path atomically: a temporary file in the
 * same directory, fsync, rename over path, fsync of the directory. A crash
 * at any point leaves either the old file or the new one, never a mix; on
 * failure the temporary file is removed and path is untouched. Returns
 * VKT_ERR_IO naming the path, the step and errno. */
vkt_status vkt__file_write_atomic(const char *path, const vkt_file_part *parts, size_t nparts);

/* fsync the directory that holds path (after a rename into it). */
vkt_status vkt__file_sync_dir(const char *path);

#endif
