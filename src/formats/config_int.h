/* Private parts of the config module (vktrain/config.h): the parse context,
 * typed getters that name the key path in every error, the tables of known
 * and not-supported keys. No Vulkan. Not installed. */
#ifndef VKT_FORMATS_CONFIG_INT_H
#define VKT_FORMATS_CONFIG_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/core_int.h"
#include "vktrain/config.h"

/* One parse: where warnings go and what to call the source in messages. */
typedef struct vkt__cfg_ctx {
    vkt_config *cfg;    /* warnings are appended to cfg->warnings */
    FILE *warn_stream;  /* also printed here when not NULL */
    const char *source; /* "ds_config.json" */
} vkt__cfg_ctx;

/* Record a warning (and print it when asked). VKT_ERR_NOMEM only. */
vkt_status vkt__cfg_warn(vkt__cfg_ctx *c, const char *fmt, ...) VKT_PRINTF(2, 3);

/* "parent.key" (or "key" at the top) into buf; returns buf. */
const char *vkt__cfg_path(char *buf, size_t cap, const char *parent, const char *key);

/* Typed getters. parent is the path of obj ("" at the top). An absent key or
 * a JSON null leaves *out alone and sets *given (when not NULL) to false. A
 * wrong type, a value out of [min, max] or "auto" fails with
 * VKT_ERR_INVALID_ARG naming the path, the value and what is accepted.
 * Integers accept integral reals (5e8), as DeepSpeed does. */
vkt_status vkt__cfg_bool(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                         bool *out, bool *given);
vkt_status vkt__cfg_uint(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                         uint64_t min, uint64_t max, uint64_t *out, bool *given);
vkt_status vkt__cfg_real(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                         double min, double max, double *out, bool *given);
/* A string; *out points into obj (valid while the JSON tree lives). */
vkt_status vkt__cfg_str(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                        const char **out, bool *given);
/* An object (a section); absent or null: *out = NULL. */
vkt_status vkt__cfg_object(vkt__cfg_ctx *c, json_t *obj, const char *parent, const char *key,
                           json_t **out);

/* Fail with "source: path = value: expected <what>". */
vkt_status vkt__cfg_bad(vkt__cfg_ctx *c, const char *path, json_t *value, const char *what);

/* Go over the members of obj (path parent): a member listed in known[] is
 * left to the caller; one in the not-supported table is warned about or
 * fails, as its row says; anything else is an unknown-key warning with a
 * "did you mean" when a known key (or a key of another section) is close.
 * known is NULL-terminated. */
vkt_status vkt__cfg_check_keys(vkt__cfg_ctx *c, json_t *obj, const char *parent,
                               const char *const *known);

/* Levenshtein distance with transpositions, case-insensitive (for tests). */
unsigned vkt__cfg_edit_distance(const char *a, const char *b);

#endif
