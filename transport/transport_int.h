/* Internal interfaces of libvkt_transport shared between its files: clocks and
 * socket helpers (net.c), job-secret authentication and the rendezvous store
 * (store*.c), reductions (reduce.c). Not installed. */
#ifndef VKT_TRANSPORT_INT_H
#define VKT_TRANSPORT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/core_int.h"
#include "vktrain/comm.h"

/* ------------------------------------------------------------------------- */
/* Clock and sockets (net.c). Deadlines are absolute CLOCK_MONOTONIC seconds. */

double vkt__now(void);
/* Milliseconds left until deadline for poll(): 0 when passed, capped. */
int vkt__ms_left(double deadline);
void vkt__sleep_ms(int ms);

/* Split "host:port" / "[v6]:port" into host (cap bytes) and port. */
vkt_status vkt__net_parse_hostport(const char *s, char *host, size_t cap, int *port);
/* Bind and listen on host:port (port 0 = ephemeral); *port_out = bound port. */
vkt_status vkt__net_listen(const char *host, int port, int *fd_out, int *port_out);
/* Connect to host:port, retrying refused/unreachable with backoff until the
 * deadline. what names the target for messages ("store", "rank 3"). */
vkt_status vkt__net_connect(const char *host, int port, double deadline, const char *what,
                            int *fd_out);
/* Read/write exactly len bytes before the deadline; EINTR retried. A closed
 * peer is VKT_ERR_REMOTE, a passed deadline VKT_ERR_TIMEOUT. */
vkt_status vkt__net_read_all(int fd, void *buf, size_t len, double deadline, const char *what);
vkt_status vkt__net_write_all(int fd, const void *buf, size_t len, double deadline,
                              const char *what);
/* The local IP address of a connected socket as text (to publish). */
vkt_status vkt__net_local_ip(int fd, char *buf, size_t cap);
/* A non-loopback IPv4 address of this host (its name's), else "127.0.0.1". */
vkt_status vkt__net_default_ip(char *buf, size_t cap);
void vkt__net_tune(int fd); /* TCP_NODELAY, big buffers; best effort */
vkt_status vkt__net_set_nonblock(int fd);
void vkt__close(int fd); /* close, ignoring EINTR; accepts -1 */

/* ------------------------------------------------------------------------- */
/* Job secret and authentication (store.c) */

#define VKT_AUTH_KEY_BYTES 32u
#define VKT_AUTH_NONCE_BYTES 32u
#define VKT_AUTH_MAC_BYTES 32u

typedef struct vkt__auth {
    int enabled;                             /* 0: unauthenticated (all-zero key) */
    unsigned char key[VKT_AUTH_KEY_BYTES];   /* hash of the job secret */
} vkt__auth;

/* Resolve the secret from opts / VKT_JOB_SECRET / VKT_JOB_SECRET_FILE and
 * derive the key. No secret and !allow_unauth: VKT_ERR_INVALID_USAGE. */
vkt_status vkt__auth_init(vkt__auth *a, const char *secret, int allow_unauth);
/* mac = HMAC-SHA512/256(key, msg). */
void vkt__auth_mac(const vkt__auth *a, const void *msg, size_t len, unsigned char *mac);
int vkt__auth_verify(const vkt__auth *a, const void *msg, size_t len, const unsigned char *mac);
void vkt__random(void *buf, size_t len);

/* ------------------------------------------------------------------------- */
/* Rendezvous store (store.c dispatches to store_tcp.c / store_file.c) */

typedef struct vkt__store vkt__store;
typedef struct vkt__store_server vkt__store_server;

typedef struct vkt__store_ops {
    vkt_status (*set)(vkt__store *s, const char *key, const void *val, size_t len);
    /* Non-blocking lookup: *found = 0 when the key is absent. */
    vkt_status (*try_get)(vkt__store *s, const char *key, void *buf, size_t cap, size_t *len,
                          int *found);
    vkt_status (*add)(vkt__store *s, const char *key, int64_t delta, int64_t *result);
    void (*close)(vkt__store *s);
} vkt__store_ops;
/* TCP: a call that fails part-way (timeout, connection error) closes the
 * connection, and every later call fails at once with that status ("store
 * connection to ADDR lost after an earlier error (...)"): a late reply must
 * never answer the next request. */

struct vkt__store {
    const vkt__store_ops *ops;
    double timeout_s; /* default deadline of each call */
    char desc[160];   /* "tcp store 127.0.0.1:29500" for messages */
    char local_ip[64];/* TCP: our address on the connection to the store */
};

/* Open the store named by addr ("host:port", "tcp://host:port", "file:/dir").
 * For a TCP store, serve != 0 also starts the server on this process. */
vkt_status vkt__store_open(const char *addr, int serve, const vkt__auth *auth,
                           double timeout_s, vkt__store_server **srv_out, vkt__store **out);
vkt_status vkt__store_set(vkt__store *s, const char *key, const void *val, size_t len);
/* Wait until key exists (backoff 1..50 ms) or timeout_s passes. */
vkt_status vkt__store_get(vkt__store *s, const char *key, void *buf, size_t cap, size_t *len);
vkt_status vkt__store_add(vkt__store *s, const char *key, int64_t delta, int64_t *result);
void vkt__store_close(vkt__store *s);

/* TCP store (store_tcp.c). */
vkt_status vkt__store_tcp_serve(const char *host, int port, const vkt__auth *auth,
                                vkt__store_server **out, int *port_out);
void vkt__store_tcp_stop(vkt__store_server *srv);
vkt_status vkt__store_tcp_connect(const char *host, int port, const vkt__auth *auth,
                                  double timeout_s, vkt__store **out);
/* The client's hello, after the server's nonce: {u32 VKT_STORE_HELLO_MAGIC,
 * u32 VKT_AUTH_MAC_BYTES} then HMAC(key, nonce). A client whose first bytes
 * differ is logged as no vktrain store client and answered 2 (a vktrain
 * client of another build then reports "another protocol"), one with a
 * wrong HMAC as a wrong job secret (answer 0). */
#define VKT_STORE_HELLO_MAGIC 0x54534b56u /* "VKST" */
/* A TCP store request: {u32 op, u32 keylen, u64 arg} key [value, arg bytes,
 * for SET]. The server reads the header, then the rest, and decodes both
 * with vkt__store_req_decode, which needs no socket (tests/fuzz drives it). */
#define VKT_STORE_REQ_HDR_BYTES 16u
enum { VKT_STORE_OP_SET = 1, VKT_STORE_OP_GET = 2, VKT_STORE_OP_ADD = 3 };
typedef struct vkt__store_req {
    uint32_t op;     /* VKT_STORE_OP_* */
    uint32_t keylen; /* 1..1024 bytes, none of them NUL */
    uint64_t arg;    /* SET: value bytes (at most 1 MiB); ADD: the delta */
    const char *key; /* keylen bytes inside the decoded buffer (no terminator) */
    const void *val; /* SET: arg bytes inside the decoded buffer */
} vkt__store_req;
/* Decode the request at the front of buf (n bytes so far). *size receives
 * its total length (VKT_STORE_REQ_HDR_BYTES while the header is short);
 * once n >= *size, *q is filled, pointing into buf. VKT_ERR_CORRUPT naming
 * the fault for a bad op, key length or value length, or a NUL in the key. */
vkt_status vkt__store_req_decode(const void *buf, size_t n, vkt__store_req *q, size_t *size);
/* Local IP of the client's connection to the store ("" for non-TCP stores). */
const char *vkt__store_local_ip(const vkt__store *s);
/* File store (store_file.c). */
vkt_status vkt__store_file_open(const char *dir, const vkt__auth *auth, double timeout_s,
                                vkt__store **out);

/* ------------------------------------------------------------------------- */
/* Reductions (reduce.c): dst[i] = a[i] op b[i]; dst may alias a or b.
 * AVG is reduced as SUM here; the caller divides once at the end. */
void vkt__reduce(void *dst, const void *a, const void *b, size_t n, vkt_dtype t,
                 vkt_redop op);
/* buf[i] /= divisor for AVG (in place). */
void vkt__scale_avg(void *buf, size_t n, vkt_dtype t, int divisor);
float vkt__f16_to_f32(uint16_t h);
uint16_t vkt__f32_to_f16(float f);
float vkt__bf16_to_f32(uint16_t h);
uint16_t vkt__f32_to_bf16(float f);

#endif
