/* libFuzzer target: the stream channels' frame decoder (transport/frame.c).
 * Input: a control byte (bit 0: a reduced receive, which must refuse
 * checksummed frames), then records of {u8 chunk, u16 expected length}
 * that say how many bytes arrive per step and what each receive expects,
 * then the stream itself. Bytes are moved the way tcp_chan.c moves them
 * (vkt__frame_iov, copy, vkt__frame_recv_advance). A finished frame must
 * be exactly the header plus the expected payload, and a checksummed one
 * must match its checksum. Frames the sender side writes must decode. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <xxhash.h>

#include "channel.h"
#include "fuzz_util.h"

#define NREC 8
#define MAXLEN 4096

static void check_sender_round_trip(const uint8_t *data, size_t size, uint64_t seq)
{
    vkt_chan_req s, r;
    static char buf[MAXLEN];
    size_t len = size < MAXLEN ? size : MAXLEN;
    vkt__frame_prepare_send(&s, seq, (int)(size & 1), data, len);
    vkt__frame_prepare_recv(&r, buf, len);
    memcpy(r.hdr, s.hdr, sizeof r.hdr);
    memcpy(buf, data, len);
    int fin = 0;
    uint64_t want = seq;
    FUZZ_CHECK(vkt__frame_recv_advance(&r, VKT_CHAN_HDR_BYTES + len, 0, &want, &fin) == VKT_OK);
    FUZZ_CHECK(fin && r.done && want == seq + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 + 3 * NREC) return 0;
    int reduced = data[0] & 1;
    const uint8_t *rec = data + 1, *in = data + 1 + 3 * NREC;
    size_t left = size - 1 - 3 * NREC;
    check_sender_round_trip(in, left, data[0]);
    static char payload[MAXLEN];
    static const char red_in[1] = {0};
    uint64_t seq = 0;
    for (int f = 0; f < NREC && left > 0; f++) {
        size_t chunk = 1 + rec[3 * f], len = (rec[3 * f + 1] | rec[3 * f + 2] << 8) % MAXLEN;
        vkt_chan_req r;
        vkt__frame_prepare_recv(&r, payload, len);
        if (reduced) r.red_in = red_in;
        int finished = 0;
        while (!finished && left > 0) {
            struct iovec iov[2];
            int n = vkt__frame_iov(&r, iov);
            FUZZ_CHECK(n >= 1 && n <= 2);
            size_t moved = 0;
            for (int i = 0; i < n && moved < chunk && left > 0; i++) {
                size_t k = iov[i].iov_len;
                if (k > chunk - moved) k = chunk - moved;
                if (k > left) k = left;
                memcpy(iov[i].iov_base, in, k);
                in += k;
                left -= k;
                moved += k;
            }
            uint64_t before = seq;
            vkt_status st = vkt__frame_recv_advance(&r, moved, 1, &seq, &finished);
            if (st != VKT_OK) {
                FUZZ_CHECK_FAILED(st);
                return 0;
            }
            FUZZ_CHECK(r.off <= VKT_CHAN_HDR_BYTES + len);
            if (finished) {
                uint32_t flags;
                uint64_t xxh;
                memcpy(&flags, r.hdr + 4, sizeof flags);
                memcpy(&xxh, r.hdr + 24, sizeof xxh);
                FUZZ_CHECK(r.done && r.off == VKT_CHAN_HDR_BYTES + len && seq == before + 1);
                FUZZ_CHECK(!(flags & 1) || (!reduced && XXH3_64bits(payload, len) == xxh));
            }
        }
    }
    return 0;
}
