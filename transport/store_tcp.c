/* TCP rendezvous store: a tiny key-value server (one thread per connection,
 * which is plenty for the handful of requests each rank makes at start-up)
 * and its client.
 *
 * Wire protocol, native byte order (the ranks of one job share an ABI):
 *   accept:   server -> 32-byte nonce
 *             client -> {u32 magic "VKST", u32 32} HMAC(key, nonce)
 *             server -> 1 byte: 1 accepted, 0 refused (wrong secret), 2 not
 *                       this protocol (another header; then it closes)
 *   request:  {u32 op, u32 keylen, u64 arg} key [value, arg bytes, for SET]
 *   response: {u32 status, u32 0, u64 val} [value, val bytes, for GET]
 * The hello's fixed header tells bytes from some other program (a port
 * scanner, a misdirected client, another vktrain version) apart from a rank
 * with another secret; such a peer gets answer 2, so a vktrain client of an
 * older or newer build can say "another protocol" instead of "wrong secret".
 *
 * A client thread marks itself done when its connection ends; the acceptor
 * joins, closes and frees done clients before it adds the next one, so junk
 * connections and ranks that come and go cost nothing once they are gone. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport_int.h"

enum { OP_SET = VKT_STORE_OP_SET, OP_GET = VKT_STORE_OP_GET, OP_ADD = VKT_STORE_OP_ADD };
enum { RESP_OK = 0, RESP_NOTFOUND = 1, RESP_BAD = 2 };
enum { HELLO_REFUSED = 0, HELLO_OK = 1, HELLO_OTHER_PROTOCOL = 2 }; /* the answer byte */

#define KEY_MAX 1024u
#define VAL_MAX (1u << 20)
#define HANDSHAKE_S 10.0
#define MAX_CLIENTS 4096
#define JUNK_IDLE_S 0.2         /* counting a non-client's bytes: stop after this quiet */
#define JUNK_MAX_S 1.0          /* ... or this long in all */
#define ACCEPT_BACKOFF_MS 100   /* out of fds: wait this long before accepting again */
#define REAP_EVERY_MS 1000      /* with clients and no new ones, reap this often */

/* The client's answer to the nonce. */
typedef struct hello {
    uint32_t magic, maclen; /* VKT_STORE_HELLO_MAGIC, VKT_AUTH_MAC_BYTES */
    unsigned char mac[VKT_AUTH_MAC_BYTES];
} hello;

typedef struct req_hdr {
    uint32_t op, keylen;
    uint64_t arg;
} req_hdr;
_Static_assert(sizeof(req_hdr) == VKT_STORE_REQ_HDR_BYTES, "store request header size");
typedef struct resp_hdr {
    uint32_t status, pad;
    uint64_t val;
} resp_hdr;

typedef struct kv {
    char *key;
    void *val;
    size_t len;
} kv;

typedef struct client {
    int fd;
    pthread_t thread;
    struct vkt__store_server *srv;
    int done; /* set (under srv->mu) by the thread as it ends: ready to join */
    char peer[64];
} client;

struct vkt__store_server {
    int lfd, wake[2];
    pthread_t acceptor;
    vkt__auth auth;
    pthread_mutex_t mu; /* guards kvs and clients */
    kv *kvs;
    size_t nkv, capkv;
    client *clients[MAX_CLIENTS]; /* live ones, and done ones not yet reaped */
    int nclients;
};

/* -------------------------------------------------------------- requests -- */

vkt_status vkt__store_req_decode(const void *buf, size_t n, vkt__store_req *q, size_t *size)
{
    req_hdr h;
    *size = sizeof h;
    if (n < sizeof h) return VKT_OK;
    memcpy(&h, buf, sizeof h);
    VKT_FAIL_IF(h.op < OP_SET || h.op > OP_ADD, VKT_ERR_CORRUPT,
                "store request: unknown operation %u (1 set, 2 get, 3 add)", h.op);
    VKT_FAIL_IF(h.keylen == 0 || h.keylen > KEY_MAX, VKT_ERR_CORRUPT,
                "store request: a key of %u bytes (keys have 1 to %u)", h.keylen, KEY_MAX);
    VKT_FAIL_IF(h.op == OP_SET && h.arg > VAL_MAX, VKT_ERR_CORRUPT,
                "store request: a value of %llu bytes (at most %u)", (unsigned long long)h.arg,
                VAL_MAX);
    *size = sizeof h + h.keylen + (h.op == OP_SET ? (size_t)h.arg : 0);
    if (n < *size) return VKT_OK;
    const char *key = (const char *)buf + sizeof h;
    /* The server keeps keys as C strings: "a\0b" would silently be "a". */
    VKT_FAIL_IF(memchr(key, '\0', h.keylen), VKT_ERR_CORRUPT,
                "store request: the key holds a NUL byte (keys are text)");
    *q = (vkt__store_req){h.op, h.keylen, h.arg, key, key + h.keylen};
    return VKT_OK;
}

/* ---------------------------------------------------------------- server -- */

static kv *kv_find(struct vkt__store_server *s, const char *key)
{
    for (size_t i = 0; i < s->nkv; i++)
        if (strcmp(s->kvs[i].key, key) == 0) return &s->kvs[i];
    return NULL;
}

/* Insert or find key; NULL when out of memory. Caller holds mu. */
static kv *kv_slot(struct vkt__store_server *s, const char *key)
{
    kv *e = kv_find(s, key);
    if (e) return e;
    if (s->nkv == s->capkv) {
        size_t cap = s->capkv ? s->capkv * 2 : 64;
        kv *n = vkt_realloc(s->kvs, cap * sizeof *n);
        if (!n) return NULL;
        s->kvs = n;
        s->capkv = cap;
    }
    e = &s->kvs[s->nkv];
    e->key = vkt_strdup(key);
    if (!e->key) return NULL;
    e->val = NULL;
    e->len = 0;
    s->nkv++;
    return e;
}

/* Count what a client that is no vktrain store client sends (got bytes so
 * far) until it goes quiet or closes, for the log; bounded in time. */
static size_t count_junk(int fd, size_t got)
{
    char sink[4096];
    double end = vkt__now() + JUNK_MAX_S;
    for (;;) {
        double quiet = vkt__now() + JUNK_IDLE_S;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, vkt__ms_left(quiet < end ? quiet : end)) <= 0) return got;
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return got;
        got += (size_t)n;
    }
}

/* Read the client's hello. Returns 1 when it came whole with the right
 * header, 0 when its first bytes are not a vktrain hello (*got: the bytes
 * read, the rest of what it sends included), -1 when the connection ended
 * or timed out first (the error is set). Checked as bytes arrive, so other
 * programs are refused at once even when they send less than a hello. */
static int read_hello(int fd, hello *h, double deadline, size_t *got)
{
    const hello want = {VKT_STORE_HELLO_MAGIC, VKT_AUTH_MAC_BYTES, {0}};
    const size_t head = offsetof(hello, mac);
    *got = 0;
    while (*got < sizeof *h) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, vkt__ms_left(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            VKT_ERROR(VKT_ERR_TIMEOUT, "no hello within %.0f s", HANDSHAKE_S);
            return -1;
        }
        ssize_t n = recv(fd, (char *)h + *got, sizeof *h - *got, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {
            VKT_ERROR(VKT_ERR_REMOTE, "%s", n == 0 ? "it closed the connection"
                                                   : strerror(errno));
            return -1;
        }
        size_t was = *got;
        *got += (size_t)n;
        if (was < head && memcmp(h, &want, *got < head ? *got : head) != 0) {
            *got = count_junk(fd, *got);
            return 0;
        }
    }
    return 1;
}

static int serve_handshake(client *cl)
{
    unsigned char nonce[VKT_AUTH_NONCE_BYTES], ok = HELLO_REFUSED;
    hello h;
    size_t got = 0;
    double deadline = vkt__now() + HANDSHAKE_S;
    vkt__random(nonce, sizeof nonce);
    int r = vkt__net_write_all(cl->fd, nonce, sizeof nonce, deadline, "store client") != VKT_OK
                ? -1
                : read_hello(cl->fd, &h, deadline, &got);
    if (r < 0) {
        fprintf(stderr, "vktrain: store: dropped connection from %s during the handshake: %s\n",
                cl->peer, vkt_last_error());
        return 0;
    }
    if (r == 0) {
        fprintf(stderr, "vktrain: store: refused connection from %s: not a vktrain store client "
                "(%zu bytes that are no handshake; a port scanner or another program?)\n",
                cl->peer, got);
        /* A vktrain client of another build reads this and says so; other
         * programs get one stray byte before the close. */
        unsigned char other = HELLO_OTHER_PROTOCOL;
        (void)vkt__net_write_all(cl->fd, &other, 1, deadline, "store client");
        return 0;
    }
    ok = (unsigned char)vkt__auth_verify(&cl->srv->auth, nonce, sizeof nonce, h.mac);
    if (!ok) /* logged before the answer: the refused rank's report comes after */
        fprintf(stderr, "vktrain: store: refused connection from %s: wrong job secret (it "
                        "is not part of this job, or its VKT_JOB_SECRET differs)\n",
                cl->peer);
    (void)vkt__net_write_all(cl->fd, &ok, 1, deadline, "store client");
    return ok;
}

/* Apply one request under the lock; fills resp and, for GET, a value copy. */
static void apply(struct vkt__store_server *s, const req_hdr *h, const char *key, void *val,
                  resp_hdr *r, void **out, size_t *outlen)
{
    pthread_mutex_lock(&s->mu);
    kv *e = h->op == OP_GET ? kv_find(s, key) : kv_slot(s, key);
    *r = (resp_hdr){RESP_OK, 0, 0};
    if (!e) {
        r->status = h->op == OP_GET ? RESP_NOTFOUND : RESP_BAD;
    } else if (h->op == OP_SET) {
        vkt_free(e->val);
        e->val = val; /* ownership moves into the table */
        e->len = h->arg;
        val = NULL;
    } else if (h->op == OP_GET) {
        *out = vkt_malloc(e->len);
        if (*out) memcpy(*out, e->val, e->len);
        *outlen = e->len;
        r->status = *out ? RESP_OK : RESP_BAD;
        r->val = e->len;
    } else { /* ADD: counters are stored as int64 values */
        int64_t v = 0;
        if (e->len == sizeof v) memcpy(&v, e->val, sizeof v);
        v = (int64_t)((uint64_t)v + h->arg);
        void *nv = e->len == sizeof v ? e->val : vkt_malloc(sizeof v);
        if (nv) {
            if (nv != e->val) vkt_free(e->val);
            memcpy(nv, &v, sizeof v);
            e->val = nv;
            e->len = sizeof v;
        }
        r->status = nv ? RESP_OK : RESP_BAD;
        r->val = (uint64_t)v;
    }
    pthread_mutex_unlock(&s->mu);
    vkt_free(val);
}

/* Serve one request; returns 0 when the connection should close. The
 * header is read first because it gives the request's length; the whole
 * request is then decoded by vkt__store_req_decode, which needs no socket
 * (tests/fuzz/fuzz_store.c drives it with arbitrary bytes). */
static int serve_one(client *cl)
{
    const double forever = 1e300;
    unsigned char head[VKT_STORE_REQ_HDR_BYTES], *msg = NULL;
    char key[KEY_MAX + 1];
    void *val = NULL, *out = NULL;
    size_t size = 0, outlen = 0;
    vkt__store_req q;
    resp_hdr r;
    if (vkt__net_read_all(cl->fd, head, sizeof head, forever, "store client")) return 0;
    int ok = vkt__store_req_decode(head, sizeof head, &q, &size) == VKT_OK;
    if (ok) {
        msg = vkt_malloc(size);
        if (!msg) return 0;
        memcpy(msg, head, sizeof head);
        if (vkt__net_read_all(cl->fd, msg + sizeof head, size - sizeof head,
                              vkt__now() + HANDSHAKE_S, "store client")) {
            vkt_free(msg);
            return 0;
        }
        ok = vkt__store_req_decode(msg, size, &q, &size) == VKT_OK;
    }
    if (!ok) {
        fprintf(stderr, "vktrain: store: malformed request from %s (%s); closing it\n",
                cl->peer, vkt_last_error());
        vkt_free(msg);
        return 0;
    }
    memcpy(key, q.key, q.keylen);
    key[q.keylen] = '\0';
    if (q.op == OP_SET) {
        val = vkt_malloc(q.arg);
        if (val) memcpy(val, q.val, q.arg);
    }
    vkt_free(msg);
    if (q.op == OP_SET && !val) return 0;
    apply(cl->srv, &(req_hdr){q.op, q.keylen, q.arg}, key, val, &r, &out, &outlen);
    ok = vkt__net_write_all(cl->fd, &r, sizeof r, vkt__now() + HANDSHAKE_S,
                            "store client") == VKT_OK;
    if (ok && out)
        ok = vkt__net_write_all(cl->fd, out, outlen, vkt__now() + HANDSHAKE_S,
                                "store client") == VKT_OK;
    vkt_free(out);
    return ok;
}

static void *client_main(void *arg)
{
    client *cl = arg;
    if (serve_handshake(cl))
        while (serve_one(cl)) {
        }
    /* The fd stays open until the acceptor (or stop) joins us, so its number
     * cannot be reused under a concurrent shutdown() from stop. */
    shutdown(cl->fd, SHUT_RDWR);
    pthread_mutex_lock(&cl->srv->mu);
    cl->done = 1;
    pthread_mutex_unlock(&cl->srv->mu);
    return NULL;
}

/* Join, close and free the clients whose threads have ended, keeping the
 * live ones packed at the front. Only the acceptor thread (and stop, after
 * joining it) changes the client list's length, so nothing races with it. */
static void reap_clients(struct vkt__store_server *s)
{
    int keep = 0;
    for (int i = 0; i < s->nclients; i++) {
        client *cl = s->clients[i];
        pthread_mutex_lock(&s->mu);
        int done = cl->done;
        pthread_mutex_unlock(&s->mu);
        if (!done) {
            s->clients[keep++] = cl;
            continue;
        }
        pthread_join(cl->thread, NULL);
        vkt__close(cl->fd);
        vkt_free(cl);
    }
    pthread_mutex_lock(&s->mu);
    s->nclients = keep;
    pthread_mutex_unlock(&s->mu);
}

static void add_client(struct vkt__store_server *s, int fd)
{
    reap_clients(s);
    client *cl = vkt_calloc(1, sizeof *cl);
    if (!cl || s->nclients == MAX_CLIENTS) {
        fprintf(stderr, "vktrain: store: too many connections; dropping one\n");
        vkt_free(cl);
        vkt__close(fd);
        return;
    }
    cl->fd = fd;
    cl->srv = s;
    struct sockaddr_storage ss; /* the peer's address, for the log */
    socklen_t sl = sizeof ss;
    strcpy(cl->peer, "?");
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        (void)getnameinfo((struct sockaddr *)&ss, sl, cl->peer, sizeof cl->peer, NULL, 0,
                          NI_NUMERICHOST);
    if (pthread_create(&cl->thread, NULL, client_main, cl) != 0) {
        vkt__close(fd);
        vkt_free(cl);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->clients[s->nclients++] = cl;
    pthread_mutex_unlock(&s->mu);
}

static void *acceptor_main(void *arg)
{
    struct vkt__store_server *s = arg;
    int backoff = 0, told = 0; /* out of fds: pause accepting; said so once */
    for (;;) {
        /* While backing off, wait for the wake pipe only; otherwise a
         * pending connection would wake us at once and we would spin. */
        struct pollfd p[2] = {{s->wake[0], POLLIN, 0}, {s->lfd, POLLIN, 0}};
        int r = poll(p, backoff ? 1 : 2,
                     backoff ? ACCEPT_BACKOFF_MS : s->nclients ? REAP_EVERY_MS : -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || p[0].revents) break;
        if (r == 0 && !backoff) { /* quiet: free what the last clients left */
            reap_clients(s);
            told = 0; /* the rush is over: a later shortage is news again */
            continue;
        }
        backoff = 0;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            int err = errno;
            reap_clients(s); /* finished clients may free some */
            if (!told)
                fprintf(stderr, "vktrain: store: out of file descriptors (%s) with %d "
                        "connection(s) open; new ranks wait until some close (raise ulimit -n)\n",
                        strerror(err), s->nclients);
            told = backoff = 1;
            continue;
        }
        if (fd < 0) continue;
        vkt__net_tune(fd);
        add_client(s, fd);
    }
    return NULL;
}

vkt_status vkt__store_tcp_serve(const char *host, int port, const vkt__auth *auth,
                                vkt__store_server **out, int *port_out)
{
    vkt_status st = VKT_OK;
    struct vkt__store_server *s = vkt_calloc(1, sizeof *s);
    *out = NULL;
    VKT_FAIL_IF(!s, VKT_ERR_NOMEM, "tcp store: out of memory");
    s->lfd = s->wake[0] = s->wake[1] = -1;
    s->auth = *auth;
    pthread_mutex_init(&s->mu, NULL);
    VKT_CHECK_GOTO(st, vkt__net_listen(host, port, &s->lfd, port_out), fail);
    if (pipe2(s->wake, O_CLOEXEC) != 0) {
        st = VKT_ERROR(VKT_ERR_SYSTEM, "tcp store: pipe: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->acceptor, NULL, acceptor_main, s) != 0) {
        st = VKT_ERROR(VKT_ERR_SYSTEM, "tcp store: cannot start its thread");
        goto fail;
    }
    *out = s;
    return VKT_OK;
fail:
    vkt__close(s->lfd);
    vkt__close(s->wake[0]);
    vkt__close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    vkt_free(s);
    return vkt__error_context(st, "rank 0 serving the rendezvous store on %s:%d", host, port);
}

void vkt__store_tcp_stop(vkt__store_server *s)
{
    if (!s) return;
    char b = 1;
    while (write(s->wake[1], &b, 1) < 0 && errno == EINTR) {
    }
    pthread_join(s->acceptor, NULL);
    /* No new clients now; wake each client thread out of its read and join. */
    for (int i = 0; i < s->nclients; i++) shutdown(s->clients[i]->fd, SHUT_RDWR);
    for (int i = 0; i < s->nclients; i++) {
        pthread_join(s->clients[i]->thread, NULL);
        vkt__close(s->clients[i]->fd);
        vkt_free(s->clients[i]);
    }
    for (size_t i = 0; i < s->nkv; i++) {
        vkt_free(s->kvs[i].key);
        vkt_free(s->kvs[i].val);
    }
    vkt_free(s->kvs);
    vkt__close(s->lfd);
    vkt__close(s->wake[0]);
    vkt__close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    vkt_free(s);
}

/* ---------------------------------------------------------------- client -- */

typedef struct tcp_store {
    vkt__store base;
    int fd;             /* -1 once lost */
    pthread_mutex_t mu; /* one request at a time on the connection */
    char addr[80];      /* host:port, for messages */
    vkt_status lost;    /* why fd is -1: the failed request's status... */
    char lost_why[256]; /* ... and its message */
} tcp_store;

/* A request that failed part-way (timed out, or its reply came short) leaves
 * the stream out of step: a late reply would be read as the answer to the
 * next request. So the connection is closed and later calls fail at once. */
static void lose_connection(tcp_store *t, vkt_status st)
{
    t->lost = st;
    snprintf(t->lost_why, sizeof t->lost_why, "%s", vkt_last_error());
    vkt__close(t->fd);
    t->fd = -1;
}

/* Send a request and read the response header (and GET's value). Errors
 * that leave the stream in step (a value too large for buf, a failure the
 * server reports) keep the connection; any I/O error loses it. */
static vkt_status roundtrip(tcp_store *t, uint32_t op, const char *key, uint64_t arg,
                            const void *val, resp_hdr *r, void *buf, size_t cap, size_t *len)
{
    size_t kl = strlen(key);
    VKT_FAIL_IF(kl == 0 || kl > KEY_MAX, VKT_ERR_INVALID_ARG, "store key '%s': bad length", key);
    req_hdr h = {op, (uint32_t)kl, arg};
    double deadline = vkt__now() + t->base.timeout_s;
    const char *what = t->base.desc;
    vkt_status st = VKT_OK;
    pthread_mutex_lock(&t->mu);
    if (t->fd < 0) {
        st = VKT_ERROR(t->lost, "store connection to %s lost after an earlier error (%s); "
                       "this rank cannot use the store any more", t->addr, t->lost_why);
        pthread_mutex_unlock(&t->mu);
        return st;
    }
    VKT_CHECK_GOTO(st, vkt__net_write_all(t->fd, &h, sizeof h, deadline, what), lost);
    VKT_CHECK_GOTO(st, vkt__net_write_all(t->fd, key, kl, deadline, what), lost);
    if (op == OP_SET)
        VKT_CHECK_GOTO(st, vkt__net_write_all(t->fd, val, arg, deadline, what), lost);
    VKT_CHECK_GOTO(st, vkt__net_read_all(t->fd, r, sizeof *r, deadline, what), lost);
    if (op == OP_GET && r->status == RESP_OK) {
        if (r->val > cap) {
            /* Drain the value so the connection stays in step for later calls. */
            char sink[256];
            for (uint64_t left = r->val; left > 0 && st == VKT_OK;) {
                size_t n = left < sizeof sink ? (size_t)left : sizeof sink;
                st = vkt__net_read_all(t->fd, sink, n, deadline, what);
                left -= n;
            }
            if (st != VKT_OK) goto lost;
            st = VKT_ERROR(VKT_ERR_CORRUPT, "%s: value of '%s' has %llu bytes, expected "
                           "at most %zu", what, key, (unsigned long long)r->val, cap);
            goto out;
        }
        VKT_CHECK_GOTO(st, vkt__net_read_all(t->fd, buf, r->val, deadline, what), lost);
        *len = r->val;
    }
    if (r->status == RESP_BAD)
        st = VKT_ERROR(VKT_ERR_REMOTE, "%s: the server failed '%s' (out of memory?)", what, key);
out:
    pthread_mutex_unlock(&t->mu);
    return st;
lost:
    lose_connection(t, st);
    pthread_mutex_unlock(&t->mu);
    return st;
}

static vkt_status tcp_set(vkt__store *s, const char *key, const void *val, size_t len)
{
    resp_hdr r;
    VKT_FAIL_IF(len > VAL_MAX, VKT_ERR_INVALID_ARG, "store value for '%s' too large", key);
    return roundtrip((tcp_store *)s, OP_SET, key, len, val, &r, NULL, 0, NULL);
}

static vkt_status tcp_try_get(vkt__store *s, const char *key, void *buf, size_t cap,
                              size_t *len, int *found)
{
    resp_hdr r;
    VKT_CHECK(roundtrip((tcp_store *)s, OP_GET, key, 0, NULL, &r, buf, cap, len));
    *found = r.status == RESP_OK;
    return VKT_OK;
}

static vkt_status tcp_add(vkt__store *s, const char *key, int64_t delta, int64_t *result)
{
    resp_hdr r;
    VKT_CHECK(roundtrip((tcp_store *)s, OP_ADD, key, (uint64_t)delta, NULL, &r, NULL, 0, NULL));
    *result = (int64_t)r.val;
    return VKT_OK;
}

static void tcp_close(vkt__store *s)
{
    tcp_store *t = (tcp_store *)s;
    vkt__close(t->fd);
    pthread_mutex_destroy(&t->mu);
    vkt_free(t);
}

static const vkt__store_ops tcp_ops = {tcp_set, tcp_try_get, tcp_add, tcp_close};

static vkt_status client_handshake(tcp_store *t, const vkt__auth *auth, double deadline)
{
    unsigned char nonce[VKT_AUTH_NONCE_BYTES], ok = HELLO_REFUSED;
    hello h = {VKT_STORE_HELLO_MAGIC, VKT_AUTH_MAC_BYTES, {0}};
    const char *what = t->base.desc;
    VKT_CHECK(vkt__net_read_all(t->fd, nonce, sizeof nonce, deadline, what));
    vkt__auth_mac(auth, nonce, sizeof nonce, h.mac);
    VKT_CHECK(vkt__net_write_all(t->fd, &h, sizeof h, deadline, what));
    vkt_status st = vkt__net_read_all(t->fd, &ok, 1, deadline, what);
    VKT_FAIL_IF(st == VKT_OK && ok == HELLO_OTHER_PROTOCOL, VKT_ERR_REMOTE,
                "the store at %s speaks another protocol (another vktrain version?); run the "
                "same vktrain build on every rank", t->addr);
    VKT_FAIL_IF(st != VKT_OK || ok != HELLO_OK, VKT_ERR_REMOTE,
                "%s refused this rank's job secret; give every rank the same VKT_JOB_SECRET "
                "(or all none, with allow_unauthenticated)", what);
    return VKT_OK;
}

vkt_status vkt__store_tcp_connect(const char *host, int port, const vkt__auth *auth,
                                  double timeout_s, vkt__store **out)
{
    vkt_status st;
    tcp_store *t = vkt_calloc(1, sizeof *t);
    *out = NULL;
    VKT_FAIL_IF(!t, VKT_ERR_NOMEM, "tcp store: out of memory");
    t->fd = -1;
    t->base.ops = &tcp_ops;
    t->base.timeout_s = timeout_s;
    snprintf(t->base.desc, sizeof t->base.desc, "tcp store %s:%d", host, port);
    snprintf(t->addr, sizeof t->addr, "%s:%d", host, port);
    pthread_mutex_init(&t->mu, NULL);
    double deadline = vkt__now() + timeout_s;
    VKT_CHECK_GOTO(st, vkt__net_connect(host, port, deadline, t->base.desc, &t->fd), fail);
    VKT_CHECK_GOTO(st, client_handshake(t, auth, deadline), fail);
    VKT_CHECK_GOTO(st, vkt__net_local_ip(t->fd, t->base.local_ip, sizeof t->base.local_ip),
                   fail);
    *out = &t->base;
    return VKT_OK;
fail:
    vkt__close(t->fd);
    pthread_mutex_destroy(&t->mu);
    vkt_free(t);
    return st;
}

const char *vkt__store_local_ip(const vkt__store *s) { return s->local_ip; }
