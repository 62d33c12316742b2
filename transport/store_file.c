/* File rendezvous store: one file per key in a directory shared by all ranks
 * (NFS, or /tmp for ranks of one host). A value file holds
 * HMAC(key, name || value) followed by the value, so a rank without the job
 * secret can neither forge nor swap entries; writes go to a temporary file
 * that is renamed into place, so readers never see half a value. */
#include <errno.h>
#include <sodium.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport_int.h"

#define FILE_VAL_MAX (64u << 10) /* addresses and counters, not bulk data */

typedef struct file_store {
    vkt__store base;
    vkt__auth auth;
    char dir[512];
} file_store;

/* dir/key with '/' mapped to '%' so keys cannot escape the directory. */
static vkt_status key_path(file_store *f, const char *key, const char *suffix, char *out,
                           size_t cap)
{
    int n = snprintf(out, cap, "%s/", f->dir);
    for (const char *k = key; *k && n < (int)cap - 1; k++) out[n++] = *k == '/' ? '%' : *k;
    VKT_FAIL_IF(n + strlen(suffix) + 1 > cap || !*key, VKT_ERR_INVALID_ARG,
                "file store: key '%s' too long or empty", key);
    strcpy(out + n, suffix);
    return VKT_OK;
}

static void mac_of(file_store *f, const char *key, const void *val, size_t len,
                   unsigned char *mac)
{
    /* HMAC over "key\0value" binds each value to its name. */
    crypto_auth_hmacsha512256_state st;
    crypto_auth_hmacsha512256_init(&st, f->auth.key, sizeof f->auth.key);
    crypto_auth_hmacsha512256_update(&st, (const unsigned char *)key, strlen(key) + 1);
    crypto_auth_hmacsha512256_update(&st, val, len);
    crypto_auth_hmacsha512256_final(&st, mac);
}

/* 1 when all len bytes were written; EINTR and short writes retried. */
static int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

static vkt_status write_file(file_store *f, const char *path, const char *key,
                             const void *val, size_t len)
{
    char tmp[600];
    unsigned char mac[VKT_AUTH_MAC_BYTES];
    unsigned rnd;
    vkt__random(&rnd, sizeof rnd);
    snprintf(tmp, sizeof tmp, "%s/.tmp.%d.%08x", f->dir, (int)getpid(), rnd);
    mac_of(f, key, val, len, mac);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    VKT_FAIL_IF(fd < 0, VKT_ERR_IO, "file store %s: cannot create '%s': %s", f->dir, tmp,
                strerror(errno));
    vkt_status st = VKT_OK;
    if (!write_full(fd, mac, sizeof mac) || !write_full(fd, val, len))
        st = VKT_ERROR(VKT_ERR_IO, "file store %s: cannot write '%s': %s", f->dir, tmp,
                       strerror(errno));
    vkt__close(fd);
    if (st == VKT_OK && rename(tmp, path) != 0)
        st = VKT_ERROR(VKT_ERR_IO, "file store %s: rename to '%s': %s", f->dir, path,
                       strerror(errno));
    if (st != VKT_OK) unlink(tmp);
    return st;
}

static vkt_status file_set(vkt__store *s, const char *key, const void *val, size_t len)
{
    file_store *f = (file_store *)s;
    char path[600];
    VKT_FAIL_IF(len > FILE_VAL_MAX, VKT_ERR_INVALID_ARG, "file store: value too large");
    VKT_CHECK(key_path(f, key, "", path, sizeof path));
    return write_file(f, path, key, val, len);
}

static vkt_status read_value(file_store *f, const char *key, const char *path, void *buf,
                             size_t cap, size_t *len, int *found)
{
    unsigned char data[VKT_AUTH_MAC_BYTES + FILE_VAL_MAX], mac[VKT_AUTH_MAC_BYTES];
    *found = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return VKT_OK;
    VKT_FAIL_IF(fd < 0, VKT_ERR_IO, "file store: cannot open '%s': %s", path, strerror(errno));
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, data + n, sizeof data - n)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        n += (size_t)r;
    }
    vkt__close(fd);
    VKT_FAIL_IF(r < 0 || n < VKT_AUTH_MAC_BYTES, VKT_ERR_CORRUPT,
                "file store: '%s' is truncated or unreadable", path);
    size_t vl = n - VKT_AUTH_MAC_BYTES;
    mac_of(f, key, data + VKT_AUTH_MAC_BYTES, vl, mac);
    VKT_FAIL_IF(memcmp(mac, data, sizeof mac) != 0, VKT_ERR_REMOTE,
                "file store: '%s' is not signed with this job's secret; another job (or a "
                "rank with a different VKT_JOB_SECRET) wrote it; use an empty directory",
                path);
    VKT_FAIL_IF(vl > cap, VKT_ERR_CORRUPT, "file store: '%s' holds %zu bytes, expected at "
                "most %zu", path, vl, cap);
    memcpy(buf, data + VKT_AUTH_MAC_BYTES, vl);
    *len = vl;
    *found = 1;
    return VKT_OK;
}

static vkt_status file_try_get(vkt__store *s, const char *key, void *buf, size_t cap,
                               size_t *len, int *found)
{
    file_store *f = (file_store *)s;
    char path[600];
    VKT_CHECK(key_path(f, key, "", path, sizeof path));
    return read_value(f, key, path, buf, cap, len, found);
}

static vkt_status file_add(vkt__store *s, const char *key, int64_t delta, int64_t *result)
{
    file_store *f = (file_store *)s;
    char path[600], lpath[610];
    VKT_CHECK(key_path(f, key, "", path, sizeof path));
    VKT_CHECK(key_path(f, key, ".lock", lpath, sizeof lpath));
    int lfd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    VKT_FAIL_IF(lfd < 0, VKT_ERR_IO, "file store: cannot open '%s': %s", lpath, strerror(errno));
    /* Non-blocking lock with retries: a stopped holder must not hang us. */
    double deadline = vkt__now() + s->timeout_s;
    vkt_status st = VKT_OK;
    while (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        if (vkt__now() >= deadline) {
            st = VKT_ERROR(VKT_ERR_TIMEOUT, "file store: '%s' stayed locked for %.0f s; a "
                           "rank holding it is stuck", lpath, s->timeout_s);
            goto out;
        }
        vkt__sleep_ms(1);
    }
    int64_t v = 0;
    size_t len = 0;
    int found = 0;
    VKT_CHECK_GOTO(st, read_value(f, key, path, &v, sizeof v, &len, &found), unlock);
    v = (int64_t)((uint64_t)v + (uint64_t)delta);
    VKT_CHECK_GOTO(st, write_file(f, path, key, &v, sizeof v), unlock);
    *result = v;
unlock:
    flock(lfd, LOCK_UN);
out:
    vkt__close(lfd);
    return st;
}

static void file_close(vkt__store *s) { vkt_free(s); }

static const vkt__store_ops file_ops = {file_set, file_try_get, file_add, file_close};

vkt_status vkt__store_file_open(const char *dir, const vkt__auth *auth, double timeout_s,
                                vkt__store **out)
{
    *out = NULL;
    VKT_FAIL_IF(!*dir || strlen(dir) >= 400, VKT_ERR_INVALID_ARG,
                "file store: directory name empty or too long");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return VKT_ERROR(VKT_ERR_IO, "file store: cannot create directory '%s': %s", dir,
                         strerror(errno));
    file_store *f = vkt_calloc(1, sizeof *f);
    VKT_FAIL_IF(!f, VKT_ERR_NOMEM, "file store: out of memory");
    f->base.ops = &file_ops;
    f->base.timeout_s = timeout_s;
    snprintf(f->base.desc, sizeof f->base.desc, "file store %s", dir);
    f->auth = *auth;
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    *out = &f->base;
    return VKT_OK;
}
