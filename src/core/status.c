/* Status texts and the per-thread last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core_int.h"
#include "vktrain/version.h"

#define VKT_ERRMSG_CAP 1024

static _Thread_local char last_error[VKT_ERRMSG_CAP];

const char *vkt_status_str(vkt_status s)
{
    switch (s) {
#define VKT_STATUS_TEXT_(name, value, text) case VKT_##name: return text;
        VKT_STATUS_MAP(VKT_STATUS_TEXT_)
#undef VKT_STATUS_TEXT_
    }
    return "unknown status";
}

const char *vkt_status_name(vkt_status s)
{
    switch (s) {
#define VKT_STATUS_NAME_(name, value, text) case VKT_##name: return #name;
        VKT_STATUS_MAP(VKT_STATUS_NAME_)
#undef VKT_STATUS_NAME_
    }
    return "unknown status";
}

const char *vkt_last_error(void) { return last_error; }

void vkt_clear_error(void) { last_error[0] = '\0'; }

vkt_status vkt__error(vkt_status st, const char *file, int line, const char *fmt, ...)
{
    char msg[VKT_ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (vkt__env_int("VKT_DEBUG", 0))
        snprintf(last_error, sizeof last_error, "%s [%s:%d]", msg, file, line);
    else
        snprintf(last_error, sizeof last_error, "%s", msg);
    return st;
}

vkt_status vkt__error_context(vkt_status st, const char *fmt, ...)
{
    char ctx[256];
    char old[VKT_ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    snprintf(last_error, sizeof last_error, "%s: %s", ctx, old);
    return st;
}

unsigned vkt_version(void) { return VKT_VERSION_NUMBER; }

const char *vkt_version_string(void) { return VKT_VERSION_STRING; }
