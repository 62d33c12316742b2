/* Shared between ckpt_index.c (the index) and ckpt_dir.c (the directory). */
#ifndef VKT_FORMATS_CKPT_INT_H
#define VKT_FORMATS_CKPT_INT_H

#include "formats/ckpt_index.h"

/* Check the index's consistency (see vkt__ckpt_index_read); failures are
 * `code` with messages that start with `where`. */
vkt_status vkt__ckpt_check_index(const vkt_ckpt_index *x, vkt_status code, const char *where);

/* index.json text for x (malloc'd by jansson: release with free()). Returns
 * VKT_ERR_INVALID_ARG when a state field is not valid JSON, VKT_ERR_NOMEM. */
vkt_status vkt__ckpt_index_format(const vkt_ckpt_index *x, char **text);

#endif
