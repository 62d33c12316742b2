/* Framing shared by the byte-stream channels (tcp, shm, verbs): every message
 * is a 32-byte header + payload. The sequence number catches lost or
 * reordered frames (a bug or a confused peer), the optional XXH3-64 checksum
 * catches corruption, and the receiver's expected length catches ranks that
 * disagree about a collective's arguments. (How frames sit in the byte ring
 * of the shm and verbs channels is chan_ring.c.) */
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
