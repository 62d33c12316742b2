/* Job-secret authentication and the rendezvous store's common front end.
 *
 * The secret never travels: both ends hash it into a 32-byte key and the
 * connecting side proves it by returning HMAC(key, nonce) for a fresh random
 * nonce chosen by the accepting side (libsodium crypto_auth, HMAC-SHA512/256).
 * Without a secret (allow_unauthenticated) the key is all zeros, so a rank
 * with a secret and one without still refuse each other instead of silently
 * mixing jobs. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport_int.h"

#define SECRET_FILE_MAX 4096

/* Read the first line of a secret file that only its owner can access. */
static vkt_status read_secret_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    VKT_FAIL_IF(fd < 0, VKT_ERR_IO, "VKT_JOB_SECRET_FILE '%s': cannot open: %s", path,
                strerror(errno));
    struct stat st;
    vkt_status st_ = VKT_OK;
    if (fstat(fd, &st) != 0) {
        st_ = VKT_ERROR(VKT_ERR_IO, "VKT_JOB_SECRET_FILE '%s': stat: %s", path, strerror(errno));
        goto fail;
    }
    if (st.st_mode & 077) {
        st_ = VKT_ERROR(VKT_ERR_INVALID_USAGE,
                        "VKT_JOB_SECRET_FILE '%s' has mode %03o: group or others can access "
                        "it; run 'chmod 600 %s'",
                        path, (unsigned)(st.st_mode & 0777), path);
        goto fail;
    }
    ssize_t n;
    while ((n = read(fd, buf, cap - 1)) < 0 && errno == EINTR) {
    }
    if (n < 0) {
        st_ = VKT_ERROR(VKT_ERR_IO, "VKT_JOB_SECRET_FILE '%s': read: %s", path, strerror(errno));
        goto fail;
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0])
        st_ = VKT_ERROR(VKT_ERR_INVALID_USAGE, "VKT_JOB_SECRET_FILE '%s' is empty; put the "
                        "job secret on its first line", path);
fail:
    vkt__close(fd);
    return st_;
}

vkt_status vkt__auth_init(vkt__auth *a, const char *secret, int allow_unauth)
{
    char filebuf[SECRET_FILE_MAX];
    memset(a, 0, sizeof *a);
    VKT_FAIL_IF(sodium_init() < 0, VKT_ERR_SYSTEM, "libsodium failed to initialise");
    if (!secret) secret = vkt__env_str("VKT_JOB_SECRET");
    if (!secret) {
        const char *path = vkt__env_str("VKT_JOB_SECRET_FILE");
        if (path) {
            VKT_CHECK(read_secret_file(path, filebuf, sizeof filebuf));
            secret = filebuf;
        }
    }
    if (!secret || !*secret) {
        VKT_FAIL_IF(!allow_unauth, VKT_ERR_INVALID_USAGE,
                    "no job secret: set VKT_JOB_SECRET or VKT_JOB_SECRET_FILE (mode 0600), or "
                    "pass job_secret; to run without one, set allow_unauthenticated");
        fprintf(stderr, "vktrain: warning: running WITHOUT a job secret "
                        "(allow_unauthenticated): any process that can reach this job's "
                        "ports can join it or inject data\n");
        return VKT_OK;
    }
    crypto_generichash(a->key, sizeof a->key, (const unsigned char *)secret, strlen(secret),
                       NULL, 0);
    sodium_memzero(filebuf, sizeof filebuf);
    a->enabled = 1;
    return VKT_OK;
}

void vkt__auth_mac(const vkt__auth *a, const void *msg, size_t len, unsigned char *mac)
{
    _Static_assert(crypto_auth_KEYBYTES == VKT_AUTH_KEY_BYTES, "key size");
    _Static_assert(crypto_auth_BYTES == VKT_AUTH_MAC_BYTES, "mac size");
    crypto_auth(mac, msg, len, a->key);
}

int vkt__auth_verify(const vkt__auth *a, const void *msg, size_t len, const unsigned char *mac)
{
    return crypto_auth_verify(mac, msg, len, a->key) == 0;
}

void vkt__random(void *buf, size_t len)
{
    /* sodium_init() has run in vkt__auth_init before any caller gets here. */
    randombytes_buf(buf, len);
}

/* ------------------------------------------------------------------------- */

vkt_status vkt__store_open(const char *addr, int serve, const vkt__auth *auth,
                           double timeout_s, vkt__store_server **srv_out, vkt__store **out)
{
    char host[256];
    int port;
    *out = NULL;
    *srv_out = NULL;
    VKT_FAIL_IF(!addr, VKT_ERR_INVALID_ARG, "no store address; set store_addr or "
                "MASTER_ADDR and MASTER_PORT");
    if (strncmp(addr, "file:", 5) == 0) {
        const char *dir = addr + 5;
        if (strncmp(dir, "//", 2) == 0) dir += 2;
        return vkt__store_file_open(dir, auth, timeout_s, out);
    }
    if (strncmp(addr, "tcp://", 6) == 0) addr += 6;
    VKT_CHECK(vkt__net_parse_hostport(addr, host, sizeof host, &port));
    if (serve) {
        VKT_FAIL_IF(port == 0, VKT_ERR_INVALID_ARG,
                    "store '%s': the serving rank needs a fixed port", addr);
        VKT_CHECK(vkt__store_tcp_serve(host, port, auth, srv_out, &port));
    }
    vkt_status st = vkt__store_tcp_connect(host, port, auth, timeout_s, out);
    if (st != VKT_OK) {
        vkt__store_tcp_stop(*srv_out);
        *srv_out = NULL;
    }
    return st;
}

vkt_status vkt__store_set(vkt__store *s, const char *key, const void *val, size_t len)
{
    return s->ops->set(s, key, val, len);
}

vkt_status vkt__store_get(vkt__store *s, const char *key, void *buf, size_t cap, size_t *len)
{
    double deadline = vkt__now() + s->timeout_s;
    int backoff = 1, found = 0;
    for (;;) {
        VKT_CHECK(s->ops->try_get(s, key, buf, cap, len, &found));
        if (found) return VKT_OK;
        if (vkt__now() >= deadline) break;
        vkt__sleep_ms(backoff);
        backoff = backoff * 2 > 50 ? 50 : backoff * 2;
    }
    return VKT_ERROR(VKT_ERR_TIMEOUT,
                     "%s: key '%s' did not appear within %.0f s; the rank that should set it "
                     "has not started or failed (check its log, or raise comm_timeout_s)",
                     s->desc, key, s->timeout_s);
}

vkt_status vkt__store_add(vkt__store *s, const char *key, int64_t delta, int64_t *result)
{
    return s->ops->add(s, key, delta, result);
}

void vkt__store_close(vkt__store *s)
{
    if (s) s->ops->close(s);
}
