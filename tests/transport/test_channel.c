/* Unit tests of the TCP channel in one process: setup that never blocks,
 * framed transfers (tcp and shm), reduce-on-receive over shm, and every
 * malformed input refused with a clear error
 * (garbage on the listening port, a wrong secret, bad magic, sequence,
 * length or checksum). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "channel.h"
#include "harness.h"

static const vkt_channel_ops *ops = &vkt__tcp_channel;

typedef struct pair {
    vkt__auth auth;
    vkt_chan_config cfg0, cfg1;
    vkt_chan_listener *l;
    char addr[VKT_CHAN_ADDR_MAX];
    vkt_chan *tx, *rx; /* rank 1 -> rank 0 */
} pair;

static void listen_pair(pair *p, int checksum)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(vkt__auth_init(&p->auth, TEST_SECRET, 0), VKT_OK);
    p->cfg0 = (vkt_chan_config){0, checksum, &p->auth};
    p->cfg1 = (vkt_chan_config){1, checksum, &p->auth};
    assert_int_equal(ops->listen(&p->cfg0, "127.0.0.1", &p->l, p->addr, sizeof p->addr), VKT_OK);
}

/* Drive connect and accept until both are done (bounded). */
static void connect_pair(pair *p, const vkt_chan_config *cc)
{
    vkt_chan_connecting *cs = NULL;
    int peer = -1;
    double end = vkt__now() + 5;
    while ((!p->tx || !p->rx) && vkt__now() < end) {
        if (!p->tx) assert_int_equal(ops->connect(cc, p->addr, 0, &cs, &p->tx), VKT_OK);
        if (!p->rx) assert_int_equal(ops->accept(p->l, &p->rx, &peer), VKT_OK);
        vkt__sleep_ms(1);
    }
    assert_non_null(p->tx);
    assert_non_null(p->rx);
    assert_int_equal(peer, cc->rank);
}

/* Progress both ends until r finishes or fails; returns the status. */
static vkt_status drive(pair *p, vkt_chan_req *r)
{
    double end = vkt__now() + 5;
    int done = 0;
    while (!done && vkt__now() < end) {
        int moved = 0;
        if (p->tx) VKT_CHECK(ops->progress(p->tx, &moved));
        VKT_CHECK(ops->test(p->rx, r, &done)); /* r may belong to either end */
        done |= r->done;
        if (!done && !moved) vkt__sleep_ms(1);
    }
    return done ? VKT_OK : VKT_ERR_TIMEOUT;
}

static void close_pair(pair *p)
{
    ops->close(p->tx);
    ops->close(p->rx);
    ops->close_listener(p->l);
}

static void transfer(void)
{
    pair p;
    listen_pair(&p, 1);
    assert_non_null(strchr(p.addr, ops == &vkt__tcp_channel ? '/' : '|')); /* has a token */
    connect_pair(&p, &p.cfg1);
    enum { N = 3 << 20 };
    char *src = malloc(N), *dst = malloc(N);
    for (size_t i = 0; i < N; i++) src[i] = (char)(i * 31 + 7);
    vkt_chan_req s[3], r[3];
    const size_t lens[3] = {0, 1, N};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(ops->isend(p.tx, &s[k], src, lens[k]), VKT_OK);
        assert_int_equal(ops->irecv(p.rx, &r[k], dst, lens[k]), VKT_OK);
    }
    for (int k = 0; k < 3; k++) {
        assert_int_equal(drive(&p, &r[k]), VKT_OK);
        assert_int_equal(drive(&p, &s[k]), VKT_OK);
    }
    assert_memory_equal(src, dst, N);
    free(src);
    free(dst);
    close_pair(&p);
}

static void test_transfer(void **state)
{
    (void)state;
    ops = &vkt__tcp_channel;
    transfer();
}

/* The shm ring is 4 MiB: a 3 MiB frame after two small ones wraps around. */
static void test_transfer_shm(void **state)
{
    (void)state;
    ops = &vkt__shm_channel;
    transfer();
    transfer();
    ops = &vkt__tcp_channel;
}

static void test_refuses_garbage_and_wrong_secret(void **state)
{
    (void)state;
    pair p;
    listen_pair(&p, 0);
    char host[64], hp[VKT_CHAN_ADDR_MAX];
    int port;
    snprintf(hp, sizeof hp, "%s", p.addr);
    *strchr(hp, '/') = '\0';
    assert_int_equal(vkt__net_parse_hostport(hp, host, sizeof host, &port), VKT_OK);
    int fd;
    assert_int_equal(vkt__net_connect(host, port, vkt__now() + 2, "listener", &fd), VKT_OK);
    char junk[sizeof(uint32_t) * 4 + VKT_AUTH_MAC_BYTES];
    memset(junk, 'x', sizeof junk);
    assert_int_equal(vkt__net_write_all(fd, junk, sizeof junk, vkt__now() + 2, "l"), VKT_OK);
    vkt_chan *ch = NULL;
    int peer = -1;
    for (int i = 0; i < 200 && !ch; i++) {
        assert_int_equal(ops->accept(p.l, &ch, &peer), VKT_OK);
        vkt__sleep_ms(1);
    }
    assert_null(ch); /* dropped and logged */
    char buf[8];
    struct pollfd pf = {fd, POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_int_equal(read(fd, buf, sizeof buf), 0); /* the listener closed it */
    vkt__close(fd);
    /* A rank with another secret is refused the same way. */
    vkt__auth other;
    assert_int_equal(vkt__auth_init(&other, "another-job", 0), VKT_OK);
    vkt_chan_config bad = {1, 0, &other};
    vkt_chan_connecting *cs = NULL;
    vkt_chan *tx = NULL;
    for (int i = 0; i < 200 && !tx; i++) {
        assert_int_equal(ops->connect(&bad, p.addr, 0, &cs, &tx), VKT_OK);
        vkt__sleep_ms(1);
    }
    assert_non_null(tx); /* the hello went out; the listener must refuse it */
    for (int i = 0; i < 100 && !ch; i++) {
        assert_int_equal(ops->accept(p.l, &ch, &peer), VKT_OK);
        vkt__sleep_ms(1);
    }
    assert_null(ch);
    ops->abort_connect(cs);
    ops->close(tx);
    close_pair(&p);
}

/* Write a raw frame header on the sending socket to fake a broken peer. */
typedef struct raw_hdr {
    uint32_t magic, flags;
    uint64_t seq, len, xxh;
} raw_hdr;

static void expect_corrupt(raw_hdr h, size_t expect_len, const char *needle)
{
    pair p;
    listen_pair(&p, 0);
    connect_pair(&p, &p.cfg1);
    /* Forge a header directly on the sender's socket. */
    struct pollfd pf[VKT_CHAN_MAX_POLLFDS];
    ops->poll_fds(p.tx, pf);
    int fd = pf[0].fd;
    char payload[64] = {0};
    assert_int_equal(vkt__net_write_all(fd, &h, sizeof h, vkt__now() + 2, "raw"), VKT_OK);
    size_t plen = h.len < 64 ? h.len : 64;
    assert_int_equal(vkt__net_write_all(fd, payload, plen, vkt__now() + 2, "raw"), VKT_OK);
    ops->close(p.tx);
    p.tx = NULL;
    vkt_chan_req r;
    char buf[64];
    assert_int_equal(ops->irecv(p.rx, &r, buf, expect_len), VKT_OK);
    assert_int_equal(drive(&p, &r), VKT_ERR_CORRUPT);
    if (!strstr(vkt_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", vkt_last_error(), needle);
    assert_non_null(strstr(vkt_last_error(), "rank 1"));
    close_pair(&p);
}

static void test_refuses_bad_frames(void **state)
{
    (void)state;
    const uint32_t magic = 0x464b5456u;
    expect_corrupt((raw_hdr){0xdeadbeef, 0, 0, 8, 0}, 8, "bad magic");
    expect_corrupt((raw_hdr){magic, 0, 5, 8, 0}, 8, "#5 arrived where #0");
    expect_corrupt((raw_hdr){magic, 0, 0, 16, 0}, 8, "has 16 bytes, expected 8");
    expect_corrupt((raw_hdr){magic, 1, 0, 8, 12345}, 8, "checksum");
}

static void peer_closed(void)
{
    pair p;
    listen_pair(&p, 0);
    connect_pair(&p, &p.cfg1);
    ops->close(p.tx);
    p.tx = NULL;
    vkt_chan_req r;
    char buf[8];
    assert_int_equal(ops->irecv(p.rx, &r, buf, 8), VKT_OK);
    assert_int_equal(drive(&p, &r), VKT_ERR_REMOTE);
    assert_non_null(strstr(vkt_last_error(), "rank 1 closed"));
    close_pair(&p);
}

static void test_peer_closed(void **state)
{
    (void)state;
    ops = &vkt__tcp_channel;
    peer_closed();
    ops = &vkt__shm_channel;
    peer_closed();
    ops = &vkt__tcp_channel;
}

/* Reduce-on-receive in one process (the shared code of chan_ring.c:
 * vkt__chan_req_reduce, vkt__ring_recv_some): frames of odd element counts
 * in f32, f16 and i32, six queued at a time (about 4.4 MiB, more than the
 * 4 MiB shm ring holds, so the receiver reduces them in pieces), for three
 * rounds, so frames and their padding cross the ring's end several times.
 * Every element is checked: received + red_in, exact for these small
 * integers in every dtype. */
enum { NRED = 6 };

static double red_sent(size_t i, int k) { return (double)((i * 7 + (size_t)k) % 13) - 6; }
static double red_in_val(size_t i, int k) { return (double)((i * 3 + (size_t)k) % 11) - 5; }

static void test_shm_irecv_reduce_wraps(void **state)
{
    (void)state;
    static const vkt_dtype types[3] = {VKT_DTYPE_F32, VKT_DTYPE_F16, VKT_DTYPE_I32};
    static const size_t counts[3] = {262143, 300007, 150001}; /* odd: padded frames */
    pair p;
    ops = &vkt__shm_channel;
    listen_pair(&p, 0); /* no checksums: they do not mix with irecv_reduce */
    connect_pair(&p, &p.cfg1);
    char *src[NRED], *in[NRED], *dst[NRED];
    vkt_chan_req s[NRED], r[NRED];
    size_t total = 0;
    for (int round = 0; round < 3; round++) {
        for (int j = 0; j < NRED; j++) {
            int k = round * NRED + j;
            vkt_dtype t = types[j % 3];
            size_t n = counts[j % 3] + (size_t)(2 * round), len = n * vkt_dtype_size(t);
            src[j] = malloc(len);
            in[j] = malloc(len);
            dst[j] = malloc(len);
            assert_true(src[j] && in[j] && dst[j]);
            for (size_t i = 0; i < n; i++) {
                tv_set(src[j], i, t, red_sent(i, k));
                tv_set(in[j], i, t, red_in_val(i, k));
            }
            memset(dst[j], 0x55, len);
            assert_int_equal(ops->isend(p.tx, &s[j], src[j], len), VKT_OK);
            assert_int_equal(ops->irecv_reduce(p.rx, &r[j], dst[j], in[j], len, t,
                                               VKT_REDOP_SUM), VKT_OK);
            total += len;
        }
        for (int j = 0; j < NRED; j++) {
            int k = round * NRED + j;
            vkt_dtype t = types[j % 3];
            size_t n = counts[j % 3] + (size_t)(2 * round), wrong = 0;
            assert_int_equal(drive(&p, &r[j]), VKT_OK);
            assert_int_equal(drive(&p, &s[j]), VKT_OK);
            for (size_t i = 0; i < n; i++)
                wrong += tv_get(dst[j], i, t) != red_sent(i, k) + red_in_val(i, k);
            if (wrong) fail_msg("round %d frame %d (dtype %d): %zu of %zu wrong", round, j,
                                (int)t, wrong, n);
            free(src[j]);
            free(in[j]);
            free(dst[j]);
        }
    }
    assert_true(total > 3 * (4u << 20)); /* the ring wrapped at least three times */
    close_pair(&p);
    ops = &vkt__tcp_channel;
}

/* shm: a rank with another secret is refused; one on "another host" (a
 * forged host id) is told to use tcp. */
static void test_shm_refusals(void **state)
{
    (void)state;
    pair p;
    ops = &vkt__shm_channel;
    listen_pair(&p, 0);
    vkt__auth other;
    assert_int_equal(vkt__auth_init(&other, "another-job", 0), VKT_OK);
    vkt_chan_config bad = {1, 0, &other};
    vkt_chan_connecting *cs = NULL;
    vkt_chan *tx = NULL, *ch = NULL;
    int peer;
    for (int i = 0; i < 100 && !tx; i++)
        assert_int_equal(ops->connect(&bad, p.addr, 0, &cs, &tx), VKT_OK);
    assert_non_null(tx);
    for (int i = 0; i < 50 && !ch; i++) {
        assert_int_equal(ops->accept(p.l, &ch, &peer), VKT_OK);
        vkt__sleep_ms(1);
    }
    assert_null(ch);
    ops->close(tx);
    char forged[VKT_CHAN_ADDR_MAX];
    snprintf(forged, sizeof forged, "elsewhere:1%s", strchr(p.addr, '|'));
    cs = NULL;
    tx = NULL;
    assert_int_equal(ops->connect(&p.cfg1, forged, 0, &cs, &tx), VKT_ERR_INVALID_USAGE);
    assert_non_null(strstr(vkt_last_error(), "another host"));
    ops->abort_connect(cs);
    close_pair(&p);
    ops = &vkt__tcp_channel;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer),
        cmocka_unit_test(test_transfer_shm),
        cmocka_unit_test(test_shm_irecv_reduce_wraps),
        cmocka_unit_test(test_shm_refusals),
        cmocka_unit_test(test_refuses_garbage_and_wrong_secret),
        cmocka_unit_test(test_refuses_bad_frames),
        cmocka_unit_test(test_peer_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
