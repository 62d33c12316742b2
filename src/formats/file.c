/* Whole-file reads and atomic writes (see file.h). */
#include "formats/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core_int.h"

vkt_status vkt__file_read(const char *path, uint64_t max_bytes, void **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    VKT_FAIL_IF(fd < 0, VKT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    vkt_status st = VKT_OK;
    if (fstat(fd, &sb) != 0) {
        st = VKT_ERROR(VKT_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = VKT_ERROR(VKT_ERR_IO, "%s is not a regular file", path);
    } else if ((uint64_t)sb.st_size > max_bytes) {
        st = VKT_ERROR(VKT_ERR_INVALID_ARG, "%s is %lld bytes, more than the %llu this reader accepts",
                       path, (long long)sb.st_size, (unsigned long long)max_bytes);
    }
    char *buf = NULL;
    size_t n = st == VKT_OK ? (size_t)sb.st_size : 0, got = 0;
    if (st == VKT_OK && !(buf = vkt_malloc(n + 1)))
        st = VKT_ERROR(VKT_ERR_NOMEM, "no memory to read %s (%zu bytes)", path, n);
    while (st == VKT_OK && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            st = VKT_ERROR(VKT_ERR_IO, "cannot read %s: %s", path,
                           r < 0 ? strerror(errno) : "file shrank while being read");
        else
            got += (size_t)r;
    }
    close(fd);
    if (st != VKT_OK) {
        vkt_free(buf);
        return st;
    }
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return VKT_OK;
}

vkt_status vkt__file_sync_dir(const char *path)
{
    char copy[4096];
    VKT_FAIL_IF(strlen(path) >= sizeof copy, VKT_ERR_INVALID_ARG, "path too long: %s", path);
    strcpy(copy, path);
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    VKT_FAIL_IF(fd < 0, VKT_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    VKT_FAIL_IF(r != 0 && e != EINVAL, VKT_ERR_IO, "cannot fsync directory %s: %s", dir,
                strerror(e));
    return VKT_OK;
}

static bool write_all(int fd, const void *data, size_t size)
{
    const char *p = data;
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        size -= (size_t)w;
    }
    return true;
}

vkt_status vkt__file_write_atomic(const char *path, const vkt_file_part *parts, size_t nparts)
{
    char tmp[4200];
    VKT_FAIL_IF(strlen(path) + 32 >= sizeof tmp, VKT_ERR_INVALID_ARG, "path too long: %s", path);
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    VKT_FAIL_IF(fd < 0, VKT_ERR_IO, "cannot create a temporary file next to %s: %s", path,
                strerror(errno));
    const char *step = NULL;
    for (size_t i = 0; i < nparts && !step; i++)
        if (!write_all(fd, parts[i].data, parts[i].size)) step = "write";
    if (!step && fchmod(fd, 0644) != 0) step = "chmod";
    if (!step && fsync(fd) != 0) step = "fsync";
    int e = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        e = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename";
        e = errno;
    }
    if (step) {
        unlink(tmp);
        return VKT_ERROR(VKT_ERR_IO, "cannot write %s (%s failed: %s); the previous file, if any, is unchanged",
                         path, step, strerror(e));
    }
    return vkt__file_sync_dir(path);
}
