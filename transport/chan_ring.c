/* Frames in a byte ring, shared by the ring channels (shm, verbs): how
 * frames and their padding sit in the ring, the send and receive loops over
 * a channel's own byte movers, and reduce-on-receive straight out of ring
 * memory (channel.h has the declarations). Apart from frame.c so that the
 * frame parser builds (and is fuzzed) without the reduction kernels. */
#include <string.h>
#include <sys/uio.h>

#include "channel.h"
#include "transport_int.h"

/* The padding after a len-byte payload (channel.h says why). */
static size_t pad_of(size_t len) { return (8 - (len & 7)) & 7; }

size_t vkt__ring_write(char *data, size_t cap, uint64_t pos, size_t room,
                       const struct iovec *iov, int niov)
{
    size_t done = 0;
    for (int i = 0; i < niov && room > done; i++) {
        size_t n = iov[i].iov_len < room - done ? iov[i].iov_len : room - done;
        size_t at = (size_t)((pos + done) % cap), first = cap - at < n ? cap - at : n;
        memcpy(data + at, iov[i].iov_base, first);
        memcpy(data, (char *)iov[i].iov_base + first, n - first);
        done += n;
    }
    return done;
}

size_t vkt__ring_read(const char *data, size_t cap, uint64_t pos, size_t avail,
                      const struct iovec *iov, int niov)
{
    size_t done = 0;
    for (int i = 0; i < niov && avail > done; i++) {
        size_t n = iov[i].iov_len < avail - done ? iov[i].iov_len : avail - done;
        size_t at = (size_t)((pos + done) % cap), first = cap - at < n ? cap - at : n;
        memcpy(iov[i].iov_base, data + at, first);
        memcpy((char *)iov[i].iov_base + first, data, n - first);
        done += n;
    }
    return done;
}

size_t vkt__chan_req_reduce(vkt_chan_req *r, const char *data, size_t cap, uint64_t pos,
                            size_t avail)
{
    size_t es = vkt_dtype_size(r->red_dtype), poff = r->off - VKT_CHAN_HDR_BYTES;
    size_t n = avail < r->len - poff ? avail : r->len - poff;
    n -= n % es;
    if (!n) return 0;
    size_t at = (size_t)(pos % cap), first = cap - at < n ? cap - at : n;
    vkt__reduce(r->buf + poff, data + at, r->red_in + poff, first / es, r->red_dtype,
                r->red_op);
    if (n > first)
        vkt__reduce(r->buf + poff + first, data, r->red_in + poff + first, (n - first) / es,
                    r->red_dtype, r->red_op);
    return n;
}

vkt_status vkt__chan_irecv_reduce(vkt_chan *c, vkt_chan_req *r, void *buf, const void *in,
                                  size_t len, vkt_dtype t, vkt_redop op)
{
    VKT_CHECK(c->ops->irecv(c, r, buf, len)); /* clears red_in: set it after */
    r->red_in = in;
    r->red_dtype = t;
    r->red_op = op;
    return VKT_OK;
}

static const char zeros[8]; /* the padding after a frame */

int vkt__ring_send_some(vkt__ring_stream *s, vkt__ring_copy_fn put, void *ch)
{
    int any = 0;
    for (;;) {
        if (s->tx_pad) {
            struct iovec z = {(void *)zeros, s->tx_pad};
            size_t n = put(ch, &z, 1);
            if (!n) return any;
            s->tx_pad -= n;
            any = 1;
            continue;
        }
        if (!s->sq) return any;
        struct iovec iov[2];
        size_t n = put(ch, iov, vkt__frame_iov(s->sq, iov));
        if (!n) return any;
        any = 1;
        s->sq->off += n;
        if (s->sq->off == VKT_CHAN_HDR_BYTES + s->sq->len) {
            s->tx_pad = pad_of(s->sq->len);
            s->sq->done = 1;
            vkt__req_pop(&s->sq, &s->sq_tail);
        }
    }
}

vkt_status vkt__ring_recv_some(vkt__ring_stream *s, vkt__ring_copy_fn get,
                               vkt__ring_reduce_fn reduce, void *ch, int peer, int *any)
{
    for (;;) {
        if (s->rx_skip) {
            char sink[8];
            struct iovec z = {sink, s->rx_skip};
            size_t n = get(ch, &z, 1);
            if (!n) return VKT_OK;
            s->rx_skip -= n;
            *any = 1;
            continue;
        }
        vkt_chan_req *r = s->rq;
        if (!r) return VKT_OK;
        struct iovec iov[2];
        size_t n;
        int niov = vkt__frame_iov(r, iov), fin;
        if (r->red_in && r->off >= VKT_CHAN_HDR_BYTES)
            n = reduce(ch, r);
        else /* a reduced frame's header is read (and checked) on its own */
            n = get(ch, iov, r->red_in ? 1 : niov);
        if (!n) return VKT_OK;
        *any = 1;
        VKT_CHECK(vkt__frame_recv_advance(r, n, peer, &s->recv_seq, &fin));
        if (fin) {
            s->rx_skip = pad_of(r->len);
            vkt__req_pop(&s->rq, &s->rq_tail);
        }
    }
}
