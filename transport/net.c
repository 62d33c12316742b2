/* Clocks and blocking-with-deadline socket helpers used by the store and by
 * channel setup. The data path (tcp_chan.c) uses non-blocking sockets and
 * poll() on the progress thread instead. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport_int.h"

double vkt__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int vkt__ms_left(double deadline)
{
    double left = deadline - vkt__now();
    if (left <= 0) return 0;
    if (left > 1e6) return 1000000000;
    return (int)(left * 1000.0) + 1;
}

void vkt__sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void vkt__close(int fd)
{
    /* Linux closes the descriptor even when close() reports EINTR; retrying
     * could close a descriptor another thread has just opened. */
    if (fd >= 0) (void)close(fd);
}

vkt_status vkt__net_parse_hostport(const char *s, char *host, size_t cap, int *port)
{
    VKT_FAIL_IF(!s || !*s, VKT_ERR_INVALID_ARG, "empty address; expected HOST:PORT");
    const char *colon = strrchr(s, ':');
    VKT_FAIL_IF(!colon, VKT_ERR_INVALID_ARG, "address '%s' has no port; expected HOST:PORT", s);
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [v6]:port */
        h++;
        hl -= 2;
    }
    VKT_FAIL_IF(hl == 0 || hl >= cap, VKT_ERR_INVALID_ARG,
                "address '%s': bad host part; expected HOST:PORT", s);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    VKT_FAIL_IF(*end || end == colon + 1 || p < 0 || p > 65535, VKT_ERR_INVALID_ARG,
                "address '%s': port must be 0..65535", s);
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return VKT_OK;
}

static vkt_status resolve(const char *host, int port, int passive, struct addrinfo **res)
{
    struct addrinfo hints;
    char pbuf[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    snprintf(pbuf, sizeof pbuf, "%d", port);
    int rc = getaddrinfo(host, pbuf, &hints, res);
    VKT_FAIL_IF(rc != 0, VKT_ERR_IO, "cannot resolve '%s': %s; check the host name", host,
                gai_strerror(rc));
    return VKT_OK;
}

void vkt__net_tune(int fd)
{
    int one = 1, big = 4 << 20;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
}

vkt_status vkt__net_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    VKT_FAIL_IF(fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0, VKT_ERR_SYSTEM,
                "fcntl(O_NONBLOCK): %s", strerror(errno));
    return VKT_OK;
}

vkt_status vkt__net_listen(const char *host, int port, int *fd_out, int *port_out)
{
    struct addrinfo *res = NULL;
    *fd_out = -1;
    VKT_CHECK(resolve(host, port, 1, &res));
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 512) == 0) break;
        err = errno;
        vkt__close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    VKT_FAIL_IF(fd < 0, err == EADDRINUSE ? VKT_ERR_IO : VKT_ERR_SYSTEM,
                "cannot listen on %s:%d: %s; pick another port or address", host, port,
                strerror(err));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return VKT_OK;
}

/* One connect attempt bounded by the deadline. 0 ok, else errno. */
static int try_connect(const struct addrinfo *ai, double deadline, int *fd_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return errno;
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int rc;
            while ((rc = poll(&p, 1, vkt__ms_left(deadline))) < 0 && errno == EINTR) {
            }
            socklen_t el = sizeof err;
            if (rc == 0)
                err = ETIMEDOUT;
            else
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        }
    }
    int fl = fcntl(fd, F_GETFL);
    if (!err && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) err = errno;
    if (err) {
        vkt__close(fd);
        return err;
    }
    *fd_out = fd;
    return 0;
}

vkt_status vkt__net_connect(const char *host, int port, double deadline, const char *what,
                            int *fd_out)
{
    struct addrinfo *res = NULL;
    *fd_out = -1;
    VKT_CHECK(resolve(host, port, 0, &res));
    int backoff = 10, err = 0;
    for (;;) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            err = try_connect(ai, deadline, fd_out);
            if (!err) break;
        }
        if (!err || vkt__now() >= deadline) break;
        /* The server may simply not be up yet: retry with backoff. */
        vkt__sleep_ms(backoff < vkt__ms_left(deadline) ? backoff : vkt__ms_left(deadline));
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
    freeaddrinfo(res);
    VKT_FAIL_IF(err, VKT_ERR_TIMEOUT,
                "cannot connect to %s at %s:%d before the deadline: %s; check that it is "
                "running and reachable, or raise comm_timeout_s",
                what, host, port, strerror(err));
    vkt__net_tune(*fd_out);
    return VKT_OK;
}

static vkt_status wait_fd(int fd, short ev, double deadline, const char *what, const char *op)
{
    struct pollfd p = {fd, ev, 0};
    int rc;
    while ((rc = poll(&p, 1, vkt__ms_left(deadline))) < 0 && errno == EINTR) {
    }
    VKT_FAIL_IF(rc < 0, VKT_ERR_SYSTEM, "%s: poll: %s", what, strerror(errno));
    VKT_FAIL_IF(rc == 0, VKT_ERR_TIMEOUT,
                "%s: %s timed out; the peer is stuck or gone (raise comm_timeout_s or "
                "check its log)",
                what, op);
    return VKT_OK;
}

vkt_status vkt__net_read_all(int fd, void *buf, size_t len, double deadline, const char *what)
{
    char *p = buf;
    while (len > 0) {
        VKT_CHECK(wait_fd(fd, POLLIN, deadline, what, "read"));
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        VKT_FAIL_IF(n == 0, VKT_ERR_REMOTE, "%s closed the connection", what);
        VKT_FAIL_IF(n < 0, VKT_ERR_REMOTE, "%s: read failed: %s", what, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return VKT_OK;
}

vkt_status vkt__net_write_all(int fd, const void *buf, size_t len, double deadline,
                              const char *what)
{
    const char *p = buf;
    while (len > 0) {
        VKT_CHECK(wait_fd(fd, POLLOUT, deadline, what, "write"));
        ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        VKT_FAIL_IF(n < 0, VKT_ERR_REMOTE, "%s: write failed: %s", what, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return VKT_OK;
}

vkt_status vkt__net_local_ip(int fd, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    VKT_FAIL_IF(getsockname(fd, (struct sockaddr *)&ss, &sl) != 0, VKT_ERR_SYSTEM,
                "getsockname: %s", strerror(errno));
    const void *a = ss.ss_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    VKT_FAIL_IF(!inet_ntop(ss.ss_family, a, buf, (socklen_t)cap), VKT_ERR_SYSTEM,
                "inet_ntop: %s", strerror(errno));
    return VKT_OK;
}

vkt_status vkt__net_default_ip(char *buf, size_t cap)
{
    /* The address this host's name resolves to, skipping loopback: what peers
     * on other hosts can usually reach. */
    char name[256];
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(buf, cap, "127.0.0.1");
    if (gethostname(name, sizeof name) != 0 || getaddrinfo(name, NULL, &hints, &res) != 0)
        return VKT_OK;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
        if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127) continue;
        inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)cap);
        break;
    }
    freeaddrinfo(res);
    return VKT_OK;
}
