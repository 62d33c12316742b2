/* vktrain — symbol export macro. The library is built with -fvisibility=hidden;
 * only declarations marked VKT_API are part of the ABI. */
#ifndef VKTRAIN_EXPORT_H
#define VKTRAIN_EXPORT_H

#if defined(VKT_BUILDING_LIBRARY) && defined(__GNUC__)
#define VKT_API __attribute__((visibility("default")))
#else
#define VKT_API
#endif

#endif
