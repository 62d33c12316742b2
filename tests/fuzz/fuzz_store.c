/* libFuzzer target: the TCP rendezvous store's request decoder
 * (vkt__store_req_decode, what the server runs on every request). Input: a
 * byte stream of requests, decoded one after another as the server reads
 * them: first the header alone, then the whole request. A request that
 * decodes must lie inside the bytes it came from, with a key of 1..1024
 * bytes free of NUL and, for SET, a value of at most 1 MiB. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "transport_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    while (size > 0) {
        vkt__store_req q;
        size_t need = 0;
        vkt_status st = vkt__store_req_decode(data, size < VKT_STORE_REQ_HDR_BYTES ? size :
                                              VKT_STORE_REQ_HDR_BYTES, &q, &need);
        if (st != VKT_OK) {
            FUZZ_CHECK_FAILED(st);
            return 0;
        }
        FUZZ_CHECK(need >= VKT_STORE_REQ_HDR_BYTES);
        if (size < need) return 0; /* the server would wait for the rest */
        size_t whole = 0;
        st = vkt__store_req_decode(data, size, &q, &whole);
        if (st != VKT_OK) {
            FUZZ_CHECK_FAILED(st);
            return 0;
        }
        FUZZ_CHECK(whole == need);
        FUZZ_CHECK(q.op >= VKT_STORE_OP_SET && q.op <= VKT_STORE_OP_ADD);
        FUZZ_CHECK(q.keylen >= 1 && q.keylen <= 1024 && !memchr(q.key, 0, q.keylen));
        FUZZ_CHECK(q.key == (const char *)data + VKT_STORE_REQ_HDR_BYTES);
        size_t vlen = q.op == VKT_STORE_OP_SET ? (size_t)q.arg : 0;
        FUZZ_CHECK(vlen <= (1u << 20));
        FUZZ_CHECK((const uint8_t *)q.val + vlen == data + need);
        data += need;
        size -= need;
    }
    return 0;
}
