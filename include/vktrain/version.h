/* vktrain — version numbers.
 *
 * Versions with the same major number are ABI compatible. The macros give the
 * version the program was compiled against; vkt_version() gives the version of
 * the library it runs with. */
#ifndef VKTRAIN_VERSION_H
#define VKTRAIN_VERSION_H

#include "vktrain/export.h"

#define VKT_VERSION_MAJOR 0
#define VKT_VERSION_MINOR 1
#define VKT_VERSION_PATCH 0
#define VKT_VERSION_NUMBER \
    (VKT_VERSION_MAJOR * 10000 + VKT_VERSION_MINOR * 100 + VKT_VERSION_PATCH)
#define VKT_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns VKT_VERSION_NUMBER of the library that is running. Thread-safe. */
VKT_API unsigned vkt_version(void);
/* Returns "MAJOR.MINOR.PATCH" of the running library; static storage. */
VKT_API const char *vkt_version_string(void);

#ifdef __cplusplus
}
#endif
#endif
