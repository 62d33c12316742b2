/* TCP channel: framed messages over one non-blocking socket per direction.
 *
 * Frames are built and checked by frame.c; this file moves their bytes with
 * sendmsg/readv, never blocking, and reports a closed peer by rank.
 *
 * Setup: the listener publishes "ip:port/token" through the (authenticated)
 * store; a connecting rank sends a hello {magic, version, rank,
 * HMAC(job key, token || rank)}, so only members of this job that read the
 * token can attach, and garbage on the port is dropped and logged. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "channel.h"

#define HELLO_MAGIC 0x484b5456u /* "VTKH" */
#define HELLO_VERSION 1u
#define TOKEN_BYTES 16u
#define MAX_PENDING 64
#define HELLO_TIMEOUT_S 10.0

typedef struct hello {
    uint32_t magic, version;
    int32_t rank;
    uint32_t pad;
    unsigned char mac[VKT_AUTH_MAC_BYTES];
} hello;

typedef struct tcp_chan {
    vkt_chan base; /* first: a vkt_chan* is a tcp_chan* */
    int fd, rank, checksum;
    uint64_t send_seq, recv_seq;
    vkt_chan_req *sq, *sq_tail, *rq, *rq_tail;
} tcp_chan;

typedef struct pending {
    int fd;
    size_t off;
    double t0;
    hello h;
} pending;

struct vkt_chan_listener {
    int fd;
    vkt_chan_config cfg;
    unsigned char token[TOKEN_BYTES];
    pending pend[MAX_PENDING];
    int npend;
};

struct vkt_chan_connecting {
    int fd, connected;
    size_t off;
    hello h;
};

#define HELLO_MSG_BYTES (TOKEN_BYTES + sizeof(int32_t))

/* The authenticated message of a hello: token || rank. */
static void hello_msg(const unsigned char *token, int32_t rank, unsigned char *msg)
{
    memcpy(msg, token, TOKEN_BYTES);
    memcpy(msg + TOKEN_BYTES, &rank, sizeof rank);
}

static void hello_mac(const vkt_chan_config *cfg, const unsigned char *token, int32_t rank,
                      unsigned char *mac)
{
    unsigned char msg[HELLO_MSG_BYTES];
    hello_msg(token, rank, msg);
    vkt__auth_mac(cfg->auth, msg, sizeof msg, mac);
}

static vkt_status new_chan(const vkt_chan_config *cfg, int fd, int peer, vkt_chan **out)
{
    tcp_chan *c = vkt_calloc(1, sizeof *c);
    if (!c) {
        vkt__close(fd);
        return VKT_ERROR(VKT_ERR_NOMEM, "tcp channel: out of memory");
    }
    c->base.ops = &vkt__tcp_channel;
    c->base.peer = peer;
    c->fd = fd;
    c->rank = cfg->rank;
    c->checksum = cfg->checksum;
    vkt__net_tune(fd);
    *out = &c->base;
    return VKT_OK;
}

/* ------------------------------------------------------------------ setup -- */

static vkt_status tcp_listen(const vkt_chan_config *cfg, const char *host,
                             vkt_chan_listener **out, char *addr, size_t cap)
{
    vkt_status st;
    int port;
    vkt_chan_listener *l = vkt_calloc(1, sizeof *l);
    *out = NULL;
    VKT_FAIL_IF(!l, VKT_ERR_NOMEM, "tcp channel: out of memory");
    l->cfg = *cfg;
    VKT_CHECK_GOTO(st, vkt__net_listen(host, 0, &l->fd, &port), fail);
    VKT_CHECK_GOTO(st, vkt__net_set_nonblock(l->fd), fail);
    vkt__random(l->token, sizeof l->token);
    int n = snprintf(addr, cap, strchr(host, ':') ? "[%s]:%d/" : "%s:%d/", host, port);
    for (unsigned i = 0; i < TOKEN_BYTES && n + 3 < (int)cap; i++)
        n += snprintf(addr + n, cap - (size_t)n, "%02x", l->token[i]);
    *out = l;
    return VKT_OK;
fail:
    vkt__close(l->fd);
    vkt_free(l);
    return st;
}

/* Check a completed hello; returns the peer rank or -1 (and logs). */
static int check_hello(vkt_chan_listener *l, pending *p)
{
    unsigned char msg[HELLO_MSG_BYTES];
    const char *why = NULL;
    if (p->h.magic != HELLO_MAGIC)
        why = "not a vktrain hello (garbage, or another program)";
    else if (p->h.version != HELLO_VERSION)
        why = "different vktrain transport version";
    else {
        hello_msg(l->token, p->h.rank, msg);
        if (!vkt__auth_verify(l->cfg.auth, msg, sizeof msg, p->h.mac))
            why = "wrong job secret or stale address";
    }
    if (!why) return p->h.rank;
    fprintf(stderr, "vktrain: rank %d: refused a channel connection: %s\n", l->cfg.rank, why);
    return -1;
}

/* Read more of pending hello i; returns 1 complete, 0 not yet, -1 dropped. */
static int read_hello(vkt_chan_listener *l, pending *p)
{
    for (;;) {
        ssize_t n = recv(p->fd, (char *)&p->h + p->off, sizeof p->h - p->off, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return vkt__now() - p->t0 > HELLO_TIMEOUT_S ? -1 : 0;
        if (n <= 0) return -1;
        p->off += (size_t)n;
        if (p->off == sizeof p->h) return 1;
    }
}

static vkt_status tcp_accept(vkt_chan_listener *l, vkt_chan **out, int *peer)
{
    *out = NULL;
    while (l->npend < MAX_PENDING) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break; /* EAGAIN: nobody waiting */
        l->pend[l->npend++] = (pending){fd, 0, vkt__now(), {0, 0, 0, 0, {0}}};
    }
    for (int i = 0; i < l->npend; i++) {
        pending *p = &l->pend[i];
        int rc = read_hello(l, p), rank = -1;
        if (rc == 0) continue;
        if (rc == 1) rank = check_hello(l, p);
        int fd = p->fd;
        l->pend[i--] = l->pend[--l->npend];
        if (rank < 0) {
            vkt__close(fd);
            continue;
        }
        *peer = rank;
        return new_chan(&l->cfg, fd, rank, out);
    }
    return VKT_OK;
}

static vkt_status start_connect(const vkt_chan_config *cfg, const char *addr, int peer,
                                vkt_chan_connecting **state)
{
    char host[VKT_CHAN_ADDR_MAX], hp[VKT_CHAN_ADDR_MAX];
    unsigned char token[TOKEN_BYTES];
    int port;
    const char *slash = strrchr(addr, '/');
    VKT_FAIL_IF(!slash || strlen(slash + 1) != 2 * TOKEN_BYTES ||
                    (size_t)(slash - addr) >= sizeof hp,
                VKT_ERR_CORRUPT, "rank %d published a malformed channel address '%s'", peer, addr);
    memcpy(hp, addr, (size_t)(slash - addr));
    hp[slash - addr] = '\0';
    for (unsigned i = 0; i < TOKEN_BYTES; i++) {
        unsigned v;
        VKT_FAIL_IF(sscanf(slash + 1 + 2 * i, "%2x", &v) != 1, VKT_ERR_CORRUPT,
                    "rank %d published a malformed channel token", peer);
        token[i] = (unsigned char)v;
    }
    VKT_CHECK(vkt__net_parse_hostport(hp, host, sizeof host, &port));
    struct addrinfo hints = {0}, *res = NULL;
    char pbuf[16];
    hints.ai_socktype = SOCK_STREAM;
    snprintf(pbuf, sizeof pbuf, "%d", port);
    VKT_FAIL_IF(getaddrinfo(host, pbuf, &hints, &res) != 0, VKT_ERR_IO,
                "cannot resolve rank %d's address '%s'", peer, hp);
    vkt_chan_connecting *s = vkt_calloc(1, sizeof *s);
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS)
        err = errno;
    freeaddrinfo(res);
    if (!s || err) {
        vkt__close(fd);
        vkt_free(s);
        return VKT_ERROR(s ? VKT_ERR_REMOTE : VKT_ERR_NOMEM,
                         "rank %d: connect to rank %d at %s: %s", cfg->rank, peer, hp,
                         s ? strerror(err) : "out of memory");
    }
    s->fd = fd;
    s->h = (hello){HELLO_MAGIC, HELLO_VERSION, cfg->rank, 0, {0}};
    hello_mac(cfg, token, cfg->rank, s->h.mac);
    *state = s;
    return VKT_OK;
}

static vkt_status tcp_connect(const vkt_chan_config *cfg, const char *addr, int peer,
                              vkt_chan_connecting **state, vkt_chan **out)
{
    *out = NULL;
    if (!*state) VKT_CHECK(start_connect(cfg, addr, peer, state));
    vkt_chan_connecting *s = *state;
    if (!s->connected) {
        struct pollfd p = {s->fd, POLLOUT, 0};
        if (poll(&p, 1, 0) <= 0) return VKT_OK;
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        VKT_FAIL_IF(err, VKT_ERR_REMOTE, "rank %d: connect to rank %d at %s: %s", cfg->rank,
                    peer, addr, strerror(err));
        s->connected = 1;
    }
    while (s->off < sizeof s->h) {
        ssize_t n = send(s->fd, (char *)&s->h + s->off, sizeof s->h - s->off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return VKT_OK;
        VKT_FAIL_IF(n < 0, VKT_ERR_REMOTE, "rank %d: hello to rank %d: %s", cfg->rank, peer,
                    strerror(errno));
        s->off += (size_t)n;
    }
    int fd = s->fd;
    vkt_free(s);
    *state = NULL;
    return new_chan(cfg, fd, peer, out);
}

static void tcp_abort_connect(vkt_chan_connecting *s)
{
    if (!s) return;
    vkt__close(s->fd);
    vkt_free(s);
}

static void tcp_close_listener(vkt_chan_listener *l)
{
    if (!l) return;
    for (int i = 0; i < l->npend; i++) vkt__close(l->pend[i].fd);
    vkt__close(l->fd);
    vkt_free(l);
}

/* ------------------------------------------------------------- data path -- */

static vkt_status tcp_isend(vkt_chan *ch, vkt_chan_req *r, const void *buf, size_t len)
{
    tcp_chan *c = (tcp_chan *)ch;
    vkt__frame_prepare_send(r, c->send_seq++, c->checksum, buf, len);
    vkt__req_push(&c->sq, &c->sq_tail, r);
    return VKT_OK;
}

static vkt_status tcp_irecv(vkt_chan *ch, vkt_chan_req *r, void *buf, size_t len)
{
    tcp_chan *c = (tcp_chan *)ch;
    vkt__frame_prepare_recv(r, buf, len);
    vkt__req_push(&c->rq, &c->rq_tail, r);
    return VKT_OK;
}

static vkt_status send_progress(tcp_chan *c, int *moved)
{
    while (c->sq) {
        vkt_chan_req *r = c->sq;
        struct iovec iov[2];
        struct msghdr m = {0};
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)vkt__frame_iov(r, iov);
        ssize_t n = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return VKT_OK;
        VKT_FAIL_IF(n < 0, VKT_ERR_REMOTE, "send to rank %d failed: %s (rank %d died or "
                    "closed its connection; check its log)", c->base.peer, strerror(errno),
                    c->base.peer);
        *moved = 1;
        r->off += (size_t)n;
        if (r->off == VKT_CHAN_HDR_BYTES + r->len) {
            r->done = 1;
            vkt__req_pop(&c->sq, &c->sq_tail);
        }
    }
    return VKT_OK;
}

static vkt_status recv_progress(tcp_chan *c, int *moved)
{
    while (c->rq) {
        vkt_chan_req *r = c->rq;
        struct iovec iov[2];
        int niov = vkt__frame_iov(r, iov), fin;
        /* Reading header and payload together is safe: a wrong header fails
         * the collective anyway, and the iovecs never reach past this frame. */
        ssize_t n = readv(c->fd, iov, niov);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return VKT_OK;
        VKT_FAIL_IF(n == 0, VKT_ERR_REMOTE,
                    "rank %d closed its connection (it exited or failed; check its log)",
                    c->base.peer);
        VKT_FAIL_IF(n < 0, VKT_ERR_REMOTE, "recv from rank %d failed: %s (it died or closed "
                    "its connection; check its log)", c->base.peer, strerror(errno));
        *moved = 1;
        VKT_CHECK(vkt__frame_recv_advance(r, (size_t)n, c->base.peer, &c->recv_seq, &fin));
        if (fin) vkt__req_pop(&c->rq, &c->rq_tail);
    }
    return VKT_OK;
}

static vkt_status tcp_progress(vkt_chan *ch, int *moved)
{
    tcp_chan *c = (tcp_chan *)ch;
    VKT_CHECK(send_progress(c, moved));
    return recv_progress(c, moved);
}

static int tcp_poll_fds(const vkt_chan *ch, struct pollfd *p)
{
    const tcp_chan *c = (const tcp_chan *)ch;
    p->fd = c->fd;
    p->events = (short)((c->sq ? POLLOUT : 0) | (c->rq ? POLLIN : 0));
    p->revents = 0;
    return 1;
}

static void tcp_close(vkt_chan *ch)
{
    tcp_chan *c = (tcp_chan *)ch;
    if (!c) return;
    vkt__close(c->fd);
    vkt_free(c);
}

const vkt_channel_ops vkt__tcp_channel = {
    .version = VKT_CHANNEL_OPS_VERSION,
    .name = "tcp",
    .listen = tcp_listen,
    .connect = tcp_connect,
    .accept = tcp_accept,
    .isend = tcp_isend,
    .irecv = tcp_irecv,
    .irecv_reduce = NULL /* reduces through the staging buffer */,
    .progress = tcp_progress,
    .test = vkt__chan_test,
    .poll_fds = tcp_poll_fds,
    .close = tcp_close,
    .close_listener = tcp_close_listener,
    .abort_connect = tcp_abort_connect,
};
