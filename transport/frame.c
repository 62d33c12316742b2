/* Framing shared by the byte-stream channels (tcp, shm, verbs): every message
 * is a 32-byte header + payload. The sequence number catches lost or
 * reordered frames (a bug or a confused peer), the optional XXH3-64 checksum
 * catches corruption, and the receiver's expected length catches ranks that
 * disagree about a collective's arguments. The ring channels (shm, verbs)
 * also share here how frames sit in their byte ring and how a receive
 * reduces straight out of it. */
#include <string.h>
#include <sys/uio.h>
#include <xxhash.h>

#include "channel.h"

#define FRAME_MAGIC 0x464b5456u /* "VTKF" */
#define FLAG_CHECKSUM 1u

typedef struct frame_hdr {
    uint32_t magic, flags;
    uint64_t seq, len, xxh;
} frame_hdr;
_Static_assert(sizeof(frame_hdr) == VKT_CHAN_HDR_BYTES, "frame header size");

vkt_status vkt__chan_test(vkt_chan *c, vkt_chan_req *r, int *done)
{
    int moved = 0;
    vkt_status st = c->ops->progress(c, &moved);
    *done = r->done;
    return st;
}

void vkt__req_push(vkt_chan_req **head, vkt_chan_req **tail, vkt_chan_req *r)
{
    r->next = NULL;
    if (*tail)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
}

void vkt__req_pop(vkt_chan_req **head, vkt_chan_req **tail)
{
    *head = (*head)->next;
    if (!*head) *tail = NULL;
}

void vkt__frame_prepare_send(vkt_chan_req *r, uint64_t seq, int checksum, const void *buf,
                             size_t len)
{
    frame_hdr h = {FRAME_MAGIC, checksum ? FLAG_CHECKSUM : 0, seq, len, 0};
    if (checksum) h.xxh = XXH3_64bits(buf, len);
    memcpy(r->hdr, &h, sizeof h);
    r->buf = (char *)buf;
    r->len = len;
    r->off = 0;
    r->done = 0;
}

void vkt__frame_prepare_recv(vkt_chan_req *r, void *buf, size_t len)
{
    r->red_in = NULL;
    r->buf = buf;
    r->len = len;
    r->off = 0;
    r->done = 0;
}

int vkt__frame_iov(vkt_chan_req *r, struct iovec *iov)
{
    int n = 0;
    if (r->off < VKT_CHAN_HDR_BYTES)
        iov[n++] = (struct iovec){r->hdr + r->off, VKT_CHAN_HDR_BYTES - r->off};
    size_t poff = r->off > VKT_CHAN_HDR_BYTES ? r->off - VKT_CHAN_HDR_BYTES : 0;
    if (r->len > poff) iov[n++] = (struct iovec){r->buf + poff, r->len - poff};
    return n;
}

static vkt_status check_header(const vkt_chan_req *r, int peer, uint64_t seq)
{
    frame_hdr h;
    memcpy(&h, r->hdr, sizeof h);
    VKT_FAIL_IF(h.magic != FRAME_MAGIC, VKT_ERR_CORRUPT,
                "recv from rank %d: not a vktrain frame (bad magic 0x%08x); the stream is "
                "corrupt or something else wrote to it", peer, h.magic);
    VKT_FAIL_IF(h.seq != seq, VKT_ERR_CORRUPT,
                "recv from rank %d: frame #%llu arrived where #%llu was expected (lost or "
                "reordered data)", peer, (unsigned long long)h.seq, (unsigned long long)seq);
    VKT_FAIL_IF(h.len != r->len, VKT_ERR_CORRUPT,
                "recv from rank %d: frame #%llu has %llu bytes, expected %zu; the ranks called "
                "different collectives or counts", peer, (unsigned long long)h.seq,
                (unsigned long long)h.len, r->len);
    return VKT_OK;
}

vkt_status vkt__frame_recv_advance(vkt_chan_req *r, size_t n, int peer, uint64_t *seq,
                                   int *finished)
{
    size_t before = r->off;
    r->off += n;
    *finished = 0;
    if (before < VKT_CHAN_HDR_BYTES && r->off >= VKT_CHAN_HDR_BYTES)
        VKT_CHECK(check_header(r, peer, *seq));
    if (r->off < VKT_CHAN_HDR_BYTES + r->len) return VKT_OK;
    frame_hdr h;
    memcpy(&h, r->hdr, sizeof h);
    /* A reduced receive holds the result, not the payload: the ranks agreed
     * at setup not to checksum (comm_link.c checks cfg), so a flag here is a bug. */
    VKT_FAIL_IF((h.flags & FLAG_CHECKSUM) && r->red_in, VKT_ERR_CORRUPT,
                "recv from rank %d: frame #%llu carries a checksum but the ranks agreed on "
                "none", peer, (unsigned long long)h.seq);
    VKT_FAIL_IF((h.flags & FLAG_CHECKSUM) && XXH3_64bits(r->buf, r->len) != h.xxh,
                VKT_ERR_CORRUPT, "recv from rank %d: frame #%llu (%zu bytes) fails its "
                "checksum; data was corrupted in transit", peer, (unsigned long long)h.seq,
                r->len);
    (*seq)++;
    r->done = 1;
    *finished = 1;
    return VKT_OK;
}

/* ------------------------------------------------ frames in a byte ring -- */

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
