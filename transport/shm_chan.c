/* Shared-memory channel for ranks on one host.
 *
 * The connecting rank (the producer) creates a ring buffer in a memfd and two
 * eventfds, and hands all three to the accepting rank (the consumer) over a
 * unix socket in an abstract namespace, together with the same hello as the
 * tcp channel (HMAC of the listener's token with the job key). After that:
 *   - frames (frame.c) stream through the ring: one memcpy in, one out, no
 *     system call per byte;
 *   - head/tail are single-writer counters with acquire/release ordering;
 *   - "data" and "space" eventfds wake a sleeping peer; waiters sleep in
 *     poll(), never spin, so 8 ranks on 2 cores still make progress;
 *   - the unix socket stays open only to signal death: it turns readable
 *     (EOF) when the peer exits, and the error names that rank. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel.h"

#define RING_MAGIC 0x474e5253u  /* "SRNG" */
#define HELLO_MAGIC 0x534b5456u /* "VTKS" */
#define HELLO_VERSION 1u
#define RING_BYTES (4u << 20)
#define TOKEN_BYTES 16u
#define NAME_BYTES 12u
#define MAX_PENDING 64
#define HELLO_TIMEOUT_S 10.0

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "shared-memory counters must be lock-free");

typedef struct shm_ring {
    _Alignas(64) _Atomic uint64_t head; /* bytes produced; written by the producer only */
    _Alignas(64) _Atomic uint64_t tail; /* bytes consumed; written by the consumer only */
    _Alignas(64) uint32_t magic;
    uint32_t pad;
    uint64_t cap;
    _Alignas(64) char data[];
} shm_ring;

typedef struct hello {
    uint32_t magic, version;
    int32_t rank;
    uint32_t pad;
    unsigned char mac[VKT_AUTH_MAC_BYTES];
} hello;

typedef struct shm_chan {
    vkt_chan base; /* first: a vkt_chan* is a shm_chan* */
    int sock, efd_data, efd_space, producer, checksum;
    shm_ring *ring;
    size_t map_len;
    vkt__ring_stream fs; /* the frames through the ring (frame.c) */
} shm_chan;

typedef struct pending {
    int fd;
    double t0;
} pending;

struct vkt_chan_listener {
    int fd;
    vkt_chan_config cfg;
    unsigned char token[TOKEN_BYTES];
    pending pend[MAX_PENDING];
    int npend;
};

struct vkt_chan_connecting {
    char name[2 * NAME_BYTES + 8];
    unsigned char token[TOKEN_BYTES];
};

/* -------------------------------------------------------------- helpers -- */

vkt_status vkt__shm_host_id(char *buf, size_t cap)
{
    char boot[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f) {
        if (!fgets(boot, sizeof boot, f)) boot[0] = '\0';
        fclose(f);
    }
    boot[strcspn(boot, "\n")] = '\0';
    struct stat st;
    VKT_FAIL_IF(!boot[0] || stat("/proc/self/ns/net", &st) != 0, VKT_ERR_UNSUPPORTED,
                "shared memory: cannot identify this host (no /proc boot_id or net namespace)");
    snprintf(buf, cap, "%s:%llu", boot, (unsigned long long)st.st_ino);
    return VKT_OK;
}

static void hex(char *out, const unsigned char *in, size_t n)
{
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", in[i]);
}

static int unhex(unsigned char *out, const char *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(in + 2 * i, "%2x", &v) != 1) return 0;
        out[i] = (unsigned char)v;
    }
    return 1;
}

/* Abstract unix address "\0vkt-<hex name>" (no file to clean up). */
static socklen_t unix_addr(struct sockaddr_un *sa, const char *name)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path + 1, sizeof sa->sun_path - 1, "vkt-%s", name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void hello_fill(const vkt_chan_config *cfg, const unsigned char *token, int32_t rank,
                       hello *h)
{
    unsigned char msg[TOKEN_BYTES + sizeof rank];
    memcpy(msg, token, TOKEN_BYTES);
    memcpy(msg + TOKEN_BYTES, &rank, sizeof rank);
    *h = (hello){HELLO_MAGIC, HELLO_VERSION, rank, 0, {0}};
    vkt__auth_mac(cfg->auth, msg, sizeof msg, h->mac);
}

static int hello_ok(const vkt_chan_config *cfg, const unsigned char *token, const hello *h)
{
    unsigned char msg[TOKEN_BYTES + sizeof h->rank];
    if (h->magic != HELLO_MAGIC || h->version != HELLO_VERSION) return 0;
    memcpy(msg, token, TOKEN_BYTES);
    memcpy(msg + TOKEN_BYTES, &h->rank, sizeof h->rank);
    return vkt__auth_verify(cfg->auth, msg, sizeof msg, h->mac);
}

static vkt_status new_chan(const vkt_chan_config *cfg, int peer, int producer, int sock,
                           const int efd[2], shm_ring *ring, size_t map_len, vkt_chan **out)
{
    shm_chan *c = vkt_calloc(1, sizeof *c);
    VKT_FAIL_IF(!c, VKT_ERR_NOMEM, "shm channel: out of memory");
    c->base.ops = &vkt__shm_channel;
    c->base.peer = peer;
    c->sock = sock;
    c->efd_data = efd[0];
    c->efd_space = efd[1];
    c->producer = producer;
    c->checksum = cfg->checksum;
    c->ring = ring;
    c->map_len = map_len;
    *out = &c->base;
    return VKT_OK;
}

/* ---------------------------------------------------------------- setup -- */

static vkt_status shm_listen(const vkt_chan_config *cfg, const char *host,
                             vkt_chan_listener **out, char *addr, size_t cap)
{
    char hostid[128], name[2 * NAME_BYTES + 1], tok[2 * TOKEN_BYTES + 1];
    unsigned char raw[NAME_BYTES];
    struct sockaddr_un sa;
    *out = NULL;
    VKT_CHECK(vkt__shm_host_id(hostid, sizeof hostid));
    vkt_chan_listener *l = vkt_calloc(1, sizeof *l);
    VKT_FAIL_IF(!l, VKT_ERR_NOMEM, "shm channel: out of memory");
    l->cfg = *cfg;
    vkt__random(raw, sizeof raw);
    vkt__random(l->token, sizeof l->token);
    hex(name, raw, sizeof raw);
    hex(tok, l->token, sizeof l->token);
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&sa, unix_addr(&sa, name)) != 0 ||
        listen(l->fd, 128) != 0) {
        vkt_status st = VKT_ERROR(VKT_ERR_SYSTEM, "shm channel: cannot listen on a unix "
                                  "socket: %s", strerror(errno));
        vkt__close(l->fd);
        vkt_free(l);
        return st;
    }
    snprintf(addr, cap, "%s|%s|%s", hostid, name, tok);
    *out = l;
    return VKT_OK;
}

/* Map a ring from a received memfd and check it; NULL when unusable. */
static shm_ring *map_ring(int memfd, size_t *len)
{
    struct stat st;
    if (fstat(memfd, &st) != 0 || (size_t)st.st_size <= sizeof(shm_ring)) return NULL;
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (p == MAP_FAILED) return NULL;
    shm_ring *r = p;
    if (r->magic != RING_MAGIC || r->cap != (size_t)st.st_size - sizeof(shm_ring)) {
        munmap(p, (size_t)st.st_size);
        return NULL;
    }
    *len = (size_t)st.st_size;
    return r;
}

/* Receive hello + 3 fds on a pending connection: 1 done (channel made),
 * 0 not yet, -1 dropped. */
static int take_hello(vkt_chan_listener *l, pending *p, vkt_chan **out, int *peer)
{
    hello h;
    int fds[3] = {-1, -1, -1};
    char cbuf[CMSG_SPACE(sizeof fds)];
    struct iovec iov = {&h, sizeof h};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    ssize_t n;
    while ((n = recvmsg(p->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return vkt__now() - p->t0 > HELLO_TIMEOUT_S ? -1 : 0;
    struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&m) : NULL;
    if (cm && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof fds))
        memcpy(fds, CMSG_DATA(cm), sizeof fds);
    const char *why = NULL;
    shm_ring *ring = NULL;
    size_t len = 0;
    if (n != (ssize_t)sizeof h || fds[2] < 0)
        why = "not a vktrain shm hello";
    else if (!hello_ok(&l->cfg, l->token, &h))
        why = "wrong job secret or stale address";
    else if (!(ring = map_ring(fds[0], &len)))
        why = "unusable ring buffer";
    vkt__close(fds[0]);
    if (why) {
        fprintf(stderr, "vktrain: rank %d: refused a shm connection: %s\n", l->cfg.rank, why);
        vkt__close(fds[1]);
        vkt__close(fds[2]);
        return -1;
    }
    *peer = h.rank;
    if (new_chan(&l->cfg, h.rank, 0, p->fd, fds + 1, ring, len, out) != VKT_OK) {
        munmap(ring, len);
        vkt__close(fds[1]);
        vkt__close(fds[2]);
        return -1;
    }
    return 1;
}

static vkt_status shm_accept(vkt_chan_listener *l, vkt_chan **out, int *peer)
{
    *out = NULL;
    while (l->npend < MAX_PENDING) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        l->pend[l->npend++] = (pending){fd, vkt__now()};
    }
    for (int i = 0; i < l->npend; i++) {
        pending p = l->pend[i];
        int rc = take_hello(l, &p, out, peer);
        if (rc == 0) continue;
        l->pend[i--] = l->pend[--l->npend];
        if (rc < 0) vkt__close(p.fd);
        if (rc > 0) return VKT_OK;
    }
    return VKT_OK;
}

static vkt_status parse_addr(const char *addr, int peer, vkt_chan_connecting *s)
{
    char mine[128];
    VKT_CHECK(vkt__shm_host_id(mine, sizeof mine));
    const char *a = strchr(addr, '|'), *b = a ? strchr(a + 1, '|') : NULL;
    VKT_FAIL_IF(!a || !b || (size_t)(b - a - 1) != 2 * NAME_BYTES ||
                strlen(b + 1) != 2 * TOKEN_BYTES || !unhex(s->token, b + 1, TOKEN_BYTES),
                VKT_ERR_CORRUPT, "rank %d published a malformed shm address '%s'", peer, addr);
    VKT_FAIL_IF((size_t)(a - addr) != strlen(mine) || strncmp(addr, mine, strlen(mine)) != 0,
                VKT_ERR_INVALID_USAGE, "rank %d runs on another host (or network namespace), "
                "so shared memory cannot reach it; use backend tcp or auto", peer);
    memcpy(s->name, a + 1, 2 * NAME_BYTES);
    s->name[2 * NAME_BYTES] = '\0';
    return VKT_OK;
}

/* Make the ring (memfd) and eventfds, and send them with the hello. */
static vkt_status hand_over(const vkt_chan_config *cfg, int sock, const unsigned char *token,
                            int peer, vkt_chan **out)
{
    size_t len = sizeof(shm_ring) + RING_BYTES;
    int memfd = memfd_create("vkt-shm-ring", MFD_CLOEXEC);
    int efd[2] = {eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
    void *p = MAP_FAILED;
    vkt_status st = VKT_OK;
    if (memfd < 0 || efd[0] < 0 || efd[1] < 0 || ftruncate(memfd, (off_t)len) != 0 ||
        (p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0)) == MAP_FAILED) {
        st = VKT_ERROR(VKT_ERR_SYSTEM, "shm channel to rank %d: cannot create the ring: %s",
                       peer, strerror(errno));
        goto fail;
    }
    shm_ring *ring = p;
    ring->magic = RING_MAGIC;
    ring->cap = RING_BYTES;
    hello h;
    hello_fill(cfg, token, cfg->rank, &h);
    int fds[3] = {memfd, efd[0], efd[1]};
    char cbuf[CMSG_SPACE(sizeof fds)];
    struct iovec iov = {&h, sizeof h};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    ssize_t n;
    while ((n = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)sizeof h) {
        st = VKT_ERROR(VKT_ERR_REMOTE, "shm channel to rank %d: hello failed: %s", peer,
                       n < 0 ? strerror(errno) : "short write");
        goto fail;
    }
    vkt__close(memfd);
    return new_chan(cfg, peer, 1, sock, efd, ring, len, out);
fail:
    if (p != MAP_FAILED) munmap(p, len);
    vkt__close(memfd);
    vkt__close(efd[0]);
    vkt__close(efd[1]);
    return st;
}

static vkt_status shm_connect(const vkt_chan_config *cfg, const char *addr, int peer,
                              vkt_chan_connecting **state, vkt_chan **out)
{
    *out = NULL;
    if (!*state) {
        vkt_chan_connecting *s = vkt_calloc(1, sizeof *s);
        VKT_FAIL_IF(!s, VKT_ERR_NOMEM, "shm channel: out of memory");
        vkt_status st = parse_addr(addr, peer, s);
        if (st != VKT_OK) {
            vkt_free(s);
            return st;
        }
        *state = s;
    }
    struct sockaddr_un sa;
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    VKT_FAIL_IF(sock < 0, VKT_ERR_SYSTEM, "socket(AF_UNIX): %s", strerror(errno));
    if (connect(sock, (struct sockaddr *)&sa, unix_addr(&sa, (*state)->name)) != 0) {
        int err = errno;
        vkt__close(sock);
        if (err == EAGAIN || err == EINTR) return VKT_OK; /* backlog full: try again */
        return VKT_ERROR(VKT_ERR_REMOTE, "rank %d: shm connect to rank %d: %s", cfg->rank,
                         peer, strerror(err));
    }
    vkt_status st = hand_over(cfg, sock, (*state)->token, peer, out);
    if (st != VKT_OK) vkt__close(sock);
    vkt_free(*state);
    *state = NULL;
    return st;
}

static void shm_abort_connect(vkt_chan_connecting *s) { vkt_free(s); }

static void shm_close_listener(vkt_chan_listener *l)
{
    if (!l) return;
    for (int i = 0; i < l->npend; i++) vkt__close(l->pend[i].fd);
    vkt__close(l->fd);
    vkt_free(l);
}

/* ------------------------------------------------------------ data path --
 * The frames themselves are moved by vkt__ring_send_some / _recv_some
 * (frame.c) through these three, which keep the ring's counters. */

/* Copy up to the free space from iov into the ring; returns bytes copied. */
static size_t ring_put(void *ch, const struct iovec *iov, int niov)
{
    shm_ring *r = ((shm_chan *)ch)->ring;
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t done = vkt__ring_write(r->data, r->cap, head, (size_t)(r->cap - (head - tail)), iov,
                                  niov);
    atomic_store_explicit(&r->head, head + done, memory_order_release);
    return done;
}

/* Copy up to the available bytes from the ring into iov; returns bytes. */
static size_t ring_get(void *ch, const struct iovec *iov, int niov)
{
    shm_ring *r = ((shm_chan *)ch)->ring;
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t done = vkt__ring_read(r->data, r->cap, tail, (size_t)(head - tail), iov, niov);
    atomic_store_explicit(&r->tail, tail + done, memory_order_release);
    return done;
}

/* Reduce as many whole received elements as the ring holds straight into
 * r->buf; returns the bytes consumed. */
static size_t reduce_from_ring(void *ch, vkt_chan_req *r)
{
    shm_ring *ring = ((shm_chan *)ch)->ring;
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    size_t n = vkt__chan_req_reduce(r, ring->data, ring->cap, tail, (size_t)(head - tail));
    if (n) atomic_store_explicit(&ring->tail, tail + n, memory_order_release);
    return n;
}

static void efd_drain(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR) {
    }
}

static void efd_kick(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

static vkt_status shm_isend(vkt_chan *ch, vkt_chan_req *r, const void *buf, size_t len)
{
    shm_chan *c = (shm_chan *)ch;
    VKT_FAIL_IF(!c->producer, VKT_ERR_INTERNAL, "shm channels only send from the connecting side");
    vkt__frame_prepare_send(r, c->fs.send_seq++, c->checksum, buf, len);
    vkt__req_push(&c->fs.sq, &c->fs.sq_tail, r);
    return VKT_OK;
}

static vkt_status shm_irecv(vkt_chan *ch, vkt_chan_req *r, void *buf, size_t len)
{
    shm_chan *c = (shm_chan *)ch;
    VKT_FAIL_IF(c->producer, VKT_ERR_INTERNAL, "shm channels only receive on the accepting side");
    vkt__frame_prepare_recv(r, buf, len);
    vkt__req_push(&c->fs.rq, &c->fs.rq_tail, r);
    return VKT_OK;
}

/* The peer's end of the unix socket closed: it exited or died. */
static int peer_gone(const shm_chan *c)
{
    char b;
    ssize_t n = recv(c->sock, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static vkt_status shm_progress(vkt_chan *ch, int *moved)
{
    shm_chan *c = (shm_chan *)ch;
    int any = 0;
    efd_drain(c->producer ? c->efd_space : c->efd_data); /* before looking: no lost wake-up */
    if (c->producer)
        any = vkt__ring_send_some(&c->fs, ring_put, c);
    else
        VKT_CHECK(vkt__ring_recv_some(&c->fs, ring_get, reduce_from_ring, c, c->base.peer, &any));
    if (any) efd_kick(c->producer ? c->efd_data : c->efd_space);
    *moved |= any;
    VKT_FAIL_IF(!any && (c->fs.sq || c->fs.rq) && peer_gone(c), VKT_ERR_REMOTE,
                "rank %d closed its connection (it exited or failed; check its log)",
                c->base.peer);
    return VKT_OK;
}

static int shm_poll_fds(const vkt_chan *ch, struct pollfd *p)
{
    const shm_chan *c = (const shm_chan *)ch;
    short ev = (short)(c->fs.sq || c->fs.rq ? POLLIN : 0);
    p[0] = (struct pollfd){c->producer ? c->efd_space : c->efd_data, ev, 0};
    p[1] = (struct pollfd){c->sock, ev, 0};
    return 2;
}

static void shm_close(vkt_chan *ch)
{
    shm_chan *c = (shm_chan *)ch;
    if (!c) return;
    munmap(c->ring, c->map_len);
    vkt__close(c->sock);
    vkt__close(c->efd_data);
    vkt__close(c->efd_space);
    vkt_free(c);
}

const vkt_channel_ops vkt__shm_channel = {
    .version = VKT_CHANNEL_OPS_VERSION,
    .name = "shm",
    .listen = shm_listen,
    .connect = shm_connect,
    .accept = shm_accept,
    .isend = shm_isend,
    .irecv = shm_irecv,
    .irecv_reduce = vkt__chan_irecv_reduce,
    .progress = shm_progress,
    .test = vkt__chan_test,
    .poll_fds = shm_poll_fds,
    .close = shm_close,
    .close_listener = shm_close_listener,
    .abort_connect = shm_abort_connect,
};
