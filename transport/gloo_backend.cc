// The Gloo backend (see gloo_backend.h): Gloo's own algorithms behind the
// vkt_comm API. This is the only C++ file of libvkt_transport. Its rules:
//  - no C++ exception ever leaves an extern "C" function: each entry point
//    catches everything and turns it into a vkt_status plus a message that
//    names the collective and, where Gloo's text allows, the peer rank;
//  - rendezvous uses the communicator's vkt__store (authenticated), through
//    StoreAdapter below, instead of Gloo's FileStore (which would need a
//    shared directory, know nothing of the job secret, and leave files behind);
//  - Gloo has no bf16 arithmetic and no average: bf16 reductions are refused
//    (comm_api.c checks first), AVG is SUM then a division, as PyTorch does.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allgatherv.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/common/logging.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/reduce_scatter.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/types.h>

extern "C" {
#include "transport_int.h"
}
#include "gloo_backend.h"

struct vkt__gloo {
    std::shared_ptr<gloo::transport::Device> dev;
    std::shared_ptr<gloo::rendezvous::Context> ctx;
    int rank = 0, size = 0;
    std::chrono::milliseconds timeout{0};
    std::vector<std::string> addr; // addr[q]: rank q's Gloo address, for messages
    std::vector<char> scratch;     // reduce-scatter works in place on a copy
    // Gloo's reduce-scatter object for the last (count, dtype, op): built once
    // and run again while they repeat (old-style Gloo algorithms allocate in
    // their constructor and are meant to be reused). Every rank sees the same
    // sequence of calls, so every rank rebuilds at the same points.
    std::unique_ptr<gloo::Algorithm> rs;
    std::vector<int> rs_elems; // each rank's block of the cached reduce-scatter
    // send/recv: messages sent to / received from each rank so far, the
    // slot of the next one (Gloo matches a recv to a send by rank and slot).
    std::vector<uint32_t> sent, recvd;
    vkt_dtype rs_dtype = VKT_DTYPE_F32;
    vkt_redop rs_op = VKT_REDOP_SUM;
};

namespace {

constexpr size_t kStoreValueMax = 1u << 20; // the TCP store's limit

// gloo::rendezvous::Store over vkt__store. Gloo reports store failures as
// exceptions; the vkt status that caused one is kept in st for the caller.
class StoreAdapter : public gloo::rendezvous::Store {
  public:
    StoreAdapter(vkt__store *s, double timeout_s) : s_(s), timeout_s_(timeout_s) {}
    vkt_status st = VKT_OK;

    void set(const std::string &key, const std::vector<char> &data) override
    {
        std::string k = "gloo/" + key;
        check(vkt__store_set(s_, k.c_str(), data.data(), data.size()));
    }

    std::vector<char> get(const std::string &key) override
    {
        std::string k = "gloo/" + key;
        std::vector<char> buf(kStoreValueMax);
        size_t len = 0;
        check(vkt__store_get(s_, k.c_str(), buf.data(), buf.size(), &len));
        buf.resize(len);
        return buf;
    }

    void wait(const std::vector<std::string> &keys) override
    {
        wait(keys, std::chrono::milliseconds((long long)(timeout_s_ * 1000)));
    }

    void wait(const std::vector<std::string> &keys, const std::chrono::milliseconds &t) override
    {
        double end = vkt__now() + (double)t.count() / 1000.0;
        std::vector<char> buf(kStoreValueMax); // try_get wants room for the value
        for (const std::string &key : keys) {
            std::string k = "gloo/" + key;
            size_t len = 0;
            int found = 0, backoff = 1;
            for (;;) {
                check(s_->ops->try_get(s_, k.c_str(), buf.data(), buf.size(), &len, &found));
                if (found) break;
                if (vkt__now() >= end)
                    check(VKT_ERROR(VKT_ERR_TIMEOUT, "%s: Gloo key '%s' did not appear within "
                                    "%.0f s; a rank has not started or failed (check its log)",
                                    s_->desc, k.c_str(), (double)t.count() / 1000.0));
                vkt__sleep_ms(backoff);
                backoff = backoff * 2 > 50 ? 50 : backoff * 2;
            }
        }
    }

  private:
    void check(vkt_status rc)
    {
        if (rc == VKT_OK) return;
        st = rc;
        throw gloo::IoException(vkt_last_error());
    }
    vkt__store *s_;
    double timeout_s_;
};

const char *kind_name(vkt__gloo_kind k)
{
    static const char *const names[] = {"allreduce (ring)", "reduce_scatter (halving-doubling)",
                                        "allgather (ring)", "broadcast (one-to-all)",
                                        "barrier (all-to-one)", "reduce",
                                        "allgatherv", "reduce_scatterv (halving-doubling)",
                                        "send", "recv"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

// ------------------------------------------------------------------ errors --

// Which rank Gloo's message is about: Gloo names peers by address only.
int peer_in(const vkt__gloo *g, const std::string &what)
{
    for (int q = 0; q < (int)g->addr.size(); q++)
        if (q != g->rank && !g->addr[q].empty() && what.find(g->addr[q]) != std::string::npos)
            return q;
    return -1;
}

vkt_status io_error(const vkt__gloo *g, const char *op, const std::string &what)
{
    int timed_out = what.find("imed out") != std::string::npos;
    int peer = peer_in(g, what);
    char who[48] = "a peer";
    if (peer >= 0) snprintf(who, sizeof who, "peer rank %d", peer);
    if (timed_out)
        return VKT_ERROR(VKT_ERR_TIMEOUT, "gloo %s: %s sent nothing for %lld ms (%s); check "
                         "that rank's log or raise comm_timeout_s", op, who,
                         (long long)g->timeout.count(), what.c_str());
    return VKT_ERROR(VKT_ERR_REMOTE, "gloo %s: the connection to %s failed (%s); the peer "
                     "died or closed its communicator: check its log", op, who, what.c_str());
}

// The one place C++ exceptions stop. Called from inside a catch block.
vkt_status from_exception(const vkt__gloo *g, const char *op)
{
    try {
        throw;
    } catch (const std::bad_alloc &) {
        return VKT_ERROR(VKT_ERR_NOMEM, "gloo %s: out of memory", op);
    } catch (const gloo::IoException &e) {
        return io_error(g, op, e.what());
    } catch (const gloo::EnforceNotMet &e) {
        return VKT_ERROR(VKT_ERR_INTERNAL, "gloo %s: Gloo rejected the call: %s; please "
                         "report this with the arguments", op, e.what());
    } catch (const std::exception &e) {
        return VKT_ERROR(VKT_ERR_INTERNAL, "gloo %s: %s", op, e.what());
    } catch (...) {
        return VKT_ERROR(VKT_ERR_INTERNAL, "gloo %s: unknown C++ exception", op);
    }
}

// -------------------------------------------------------------- algorithms --

using ReduceFn = void (*)(void *, const void *, const void *, size_t);

template <typename T> ReduceFn reduce_func(vkt_redop op)
{
    if (op == VKT_REDOP_MAX) return static_cast<ReduceFn>(&gloo::max<T>);
    if (op == VKT_REDOP_MIN) return static_cast<ReduceFn>(&gloo::min<T>);
    return static_cast<ReduceFn>(&gloo::sum<T>); // SUM, and AVG before its division
}

template <typename T> const gloo::ReductionFunction<T> *reduction(vkt_redop op)
{
    if (op == VKT_REDOP_MAX) return gloo::ReductionFunction<T>::max;
    if (op == VKT_REDOP_MIN) return gloo::ReductionFunction<T>::min;
    return gloo::ReductionFunction<T>::sum;
}

void barrier(vkt__gloo *g, uint32_t tag)
{
    gloo::BarrierOptions o(g->ctx);
    o.setTag(tag);
    o.setTimeout(g->timeout);
    gloo::barrier(o);
}

template <typename T> void allreduce(vkt__gloo *g, const vkt__gloo_op *p)
{
    gloo::AllreduceOptions o(g->ctx);
    if (p->sendbuf != p->recvbuf)
        o.setInput<T>(static_cast<T *>(const_cast<void *>(p->sendbuf)), p->count);
    o.setOutput<T>(static_cast<T *>(p->recvbuf), p->count);
    o.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    o.setReduceFunction(reduce_func<T>(p->op));
    o.setTag((uint32_t)p->seq);
    o.setTimeout(g->timeout);
    gloo::allreduce(o);
}

// Gloo's halving-doubling reduce-scatter cannot take an empty block (measured
// with libgloo 0.5 at 3 ranks: counts {big, 0, big} hang, {0, 1, 7} leave the
// context so that every later collective is seconds slower). With a zero
// count the v form runs Gloo's ring all-reduce over a copy of the whole
// buffer and keeps this rank's block: twice the traffic, but Gloo's own code.
template <typename T>
void reduce_scatter_by_allreduce(vkt__gloo *g, const vkt__gloo_op *p,
                                 const std::vector<int> &elems, size_t total)
{
    size_t off = 0;
    for (int q = 0; q < g->rank; q++) off += (size_t)elems[(size_t)q];
    if (g->scratch.size() < total * sizeof(T)) g->scratch.resize(total * sizeof(T));
    T *buf = reinterpret_cast<T *>(g->scratch.data());
    gloo::AllreduceOptions o(g->ctx);
    o.setInput<T>(static_cast<T *>(const_cast<void *>(p->sendbuf)), total);
    o.setOutput<T>(buf, total);
    o.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
    o.setReduceFunction(reduce_func<T>(p->op));
    o.setTag((uint32_t)p->seq);
    o.setTimeout(g->timeout);
    gloo::allreduce(o);
    std::memmove(p->recvbuf, buf + off, (size_t)elems[(size_t)g->rank] * sizeof(T));
}

// Gloo's reduce-scatter is an old-style algorithm object: it reduces in place
// in one buffer of all the blocks (int counts) and leaves this rank's block at
// the front. Our sendbuf is const, so it works on a copy. The v form passes
// each rank's count; the plain one count for every rank.
template <typename T> void reduce_scatter(vkt__gloo *g, const vkt__gloo_op *p)
{
    std::vector<int> elems((size_t)g->size, (int)p->count);
    size_t total = p->count * (size_t)g->size;
    if (p->counts) {
        total = p->count; // the v forms carry the sum
        for (int q = 0; q < g->size; q++) elems[(size_t)q] = (int)p->counts[q];
    }
    size_t bytes = total * sizeof(T);
    if (std::find(elems.begin(), elems.end(), 0) != elems.end())
        return reduce_scatter_by_allreduce<T>(g, p, elems, total);
    if (!g->rs || g->rs_elems != elems || g->rs_dtype != p->dtype || g->rs_op != p->op ||
        g->scratch.size() < bytes) {
        g->rs.reset();
        if (g->scratch.size() < bytes) g->scratch.resize(bytes);
        T *buf = reinterpret_cast<T *>(g->scratch.data());
        g->rs.reset(new gloo::ReduceScatterHalvingDoubling<T>(
            g->ctx, std::vector<T *>{buf}, (int)total, elems, reduction<T>(p->op)));
        g->rs_elems = elems;
        g->rs_dtype = p->dtype;
        g->rs_op = p->op;
    }
    std::memcpy(g->scratch.data(), p->sendbuf, bytes);
    g->rs->run();
    std::memmove(p->recvbuf, g->scratch.data(), (size_t)elems[(size_t)g->rank] * sizeof(T));
}

// Gloo's reduce needs an output on every rank (scratch off the root).
template <typename T> void reduce(vkt__gloo *g, const vkt__gloo_op *p)
{
    gloo::ReduceOptions o(g->ctx);
    T *out = static_cast<T *>(p->recvbuf);
    if (g->rank != p->root) {
        if (g->scratch.size() < p->count * sizeof(T)) g->scratch.resize(p->count * sizeof(T));
        out = reinterpret_cast<T *>(g->scratch.data());
    }
    if (p->sendbuf != out) o.setInput<T>(static_cast<T *>(const_cast<void *>(p->sendbuf)), p->count);
    o.setOutput<T>(out, p->count);
    o.setRoot(p->root);
    o.setReduceFunction(reduce_func<T>(p->op));
    o.setTag((uint32_t)p->seq);
    o.setTimeout(g->timeout);
    gloo::reduce(o);
}

void allgatherv(vkt__gloo *g, const vkt__gloo_op *p, size_t es)
{
    gloo::AllgathervOptions o(g->ctx);
    std::vector<size_t> bytes((size_t)g->size);
    size_t off = 0;
    for (int q = 0; q < g->size; q++) {
        bytes[(size_t)q] = p->counts[q] * es;
        if (q < g->rank) off += bytes[(size_t)q];
    }
    char *mine = static_cast<char *>(p->recvbuf) + off;
    if (p->sendbuf != mine)
        o.setInput<char>(static_cast<char *>(const_cast<void *>(p->sendbuf)),
                         bytes[(size_t)g->rank]);
    o.setOutput<char>(static_cast<char *>(p->recvbuf), bytes);
    o.setTag((uint32_t)p->seq);
    o.setTimeout(g->timeout);
    gloo::allgatherv(o);
}

// Point-to-point on Gloo's unbound buffers. Slots are per ordered pair and
// message number, under a prefix none of Gloo's collectives use.
constexpr uint8_t kP2PSlotPrefix = 0x70;

void send_recv(vkt__gloo *g, const vkt__gloo_op *p, size_t es)
{
    size_t bytes = p->count * es;
    char zero = 0; // Gloo wants a buffer even for an empty message
    void *ptr = bytes ? (p->kind == VKT_GLOO_SEND ? const_cast<void *>(p->sendbuf) : p->recvbuf)
                      : &zero;
    auto buf = g->ctx->createUnboundBuffer(ptr, bytes);
    size_t q = (size_t)p->root;
    bool done;
    if (p->kind == VKT_GLOO_SEND) {
        buf->send(p->root, gloo::Slot::build(kP2PSlotPrefix, g->sent[q]++));
        done = buf->waitSend(g->timeout);
    } else {
        buf->recv(p->root, gloo::Slot::build(kP2PSlotPrefix, g->recvd[q]++));
        done = buf->waitRecv(g->timeout);
    }
    // false: the wait was aborted, and the buffer must not be trusted
    if (!done)
        throw gloo::IoException(p->kind == VKT_GLOO_SEND ? "gloo send aborted"
                                                         : "gloo recv aborted");
}

void allgather(vkt__gloo *g, const vkt__gloo_op *p, size_t es)
{
    gloo::AllgatherOptions o(g->ctx);
    size_t block = p->count * es;
    char *mine = static_cast<char *>(p->recvbuf) + (size_t)g->rank * block;
    if (p->sendbuf != mine) // no input: Gloo takes this rank's block from the output
        o.setInput<char>(static_cast<char *>(const_cast<void *>(p->sendbuf)), block);
    o.setOutput<char>(static_cast<char *>(p->recvbuf), block * (size_t)g->size);
    o.setTag((uint32_t)p->seq);
    o.setTimeout(g->timeout);
    gloo::allgather(o);
}

void broadcast(vkt__gloo *g, const vkt__gloo_op *p, size_t es)
{
    gloo::BroadcastOptions o(g->ctx);
    o.setOutput<char>(static_cast<char *>(p->recvbuf), p->count * es);
    o.setRoot(p->root);
    o.setTag((uint32_t)p->seq);
    o.setTimeout(g->timeout);
    gloo::broadcast(o);
}

template <typename T> void reduce_typed(vkt__gloo *g, const vkt__gloo_op *p)
{
    if (p->kind == VKT_GLOO_ALLREDUCE)
        allreduce<T>(g, p);
    else if (p->kind == VKT_GLOO_REDUCE)
        reduce<T>(g, p);
    else
        reduce_scatter<T>(g, p);
}

// Dispatch on the collective and the element type; throws what Gloo throws.
void run_op(vkt__gloo *g, const vkt__gloo_op *p)
{
    size_t es = vkt_dtype_size(p->dtype);
    if (p->kind == VKT_GLOO_SEND || p->kind == VKT_GLOO_RECV) return send_recv(g, p, es);
    if (p->kind == VKT_GLOO_BARRIER || p->count == 0) // count 0 still synchronizes
        return barrier(g, (uint32_t)p->seq);
    if (p->kind == VKT_GLOO_ALLGATHER) return allgather(g, p, es);
    if (p->kind == VKT_GLOO_ALLGATHERV) return allgatherv(g, p, es);
    if (p->kind == VKT_GLOO_BROADCAST) return broadcast(g, p, es);
    switch (p->dtype) {
    case VKT_DTYPE_F32: return reduce_typed<float>(g, p);
    case VKT_DTYPE_F16: return reduce_typed<gloo::float16>(g, p);
    case VKT_DTYPE_F64: return reduce_typed<double>(g, p);
    case VKT_DTYPE_I32: return reduce_typed<int32_t>(g, p);
    case VKT_DTYPE_I64: return reduce_typed<int64_t>(g, p);
    default: throw gloo::InvalidOperationException("no Gloo reduction for this dtype");
    }
}

// Publish this rank's Gloo address and read everyone's (for messages).
vkt_status learn_addresses(vkt__gloo *g, vkt__store *s)
{
    char key[48], buf[256];
    size_t len = 0;
    const std::string mine = g->ctx->getPair((g->rank + 1) % g->size)->address().str();
    snprintf(key, sizeof key, "gloo/addr/%d", g->rank);
    VKT_CHECK(vkt__store_set(s, key, mine.data(), mine.size()));
    g->addr.assign((size_t)g->size, std::string());
    for (int q = 0; q < g->size; q++) {
        snprintf(key, sizeof key, "gloo/addr/%d", q);
        VKT_CHECK(vkt__store_get(s, key, buf, sizeof buf, &len));
        g->addr[(size_t)q].assign(buf, len);
    }
    return VKT_OK;
}

// Gloo writes to its sockets without MSG_NOSIGNAL, so a peer that dies turns
// into SIGPIPE, which kills this process before Gloo can throw. Ignore it
// process-wide, but only where nobody has installed a handler.
void ignore_sigpipe()
{
    struct sigaction old = {}, ign = {};
    ign.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL &&
        !(old.sa_flags & SA_SIGINFO))
        sigaction(SIGPIPE, &ign, nullptr);
}

vkt_status connect_mesh(vkt__gloo *g, vkt__store *s, const char *host, double timeout_s)
{
    ignore_sigpipe();
    StoreAdapter store(s, timeout_s);
    try {
        gloo::transport::tcp::attr attr;
        attr.hostname = host;
        g->dev = gloo::transport::tcp::CreateDevice(attr);
        g->ctx = std::make_shared<gloo::rendezvous::Context>(g->rank, g->size);
        g->ctx->setTimeout(g->timeout);
        g->ctx->connectFullMesh(store, g->dev);
    } catch (...) {
        if (store.st != VKT_OK) return store.st; // the store's own message stands
        return vkt__error_context(from_exception(g, "rendezvous"),
                                  "connecting Gloo's TCP device on %s", host);
    }
    return VKT_OK;
}

} // namespace

extern "C" {

int vkt__gloo_built(void) { return 1; }

int vkt__gloo_reduces(vkt_dtype t) { return t != VKT_DTYPE_BF16 && vkt_dtype_size(t) != 0; }

vkt_status vkt__gloo_create(vkt__store *s, int rank, int size, const char *host,
                            double timeout_s, vkt__gloo **out)
{
    *out = nullptr;
    vkt__gloo *g = new (std::nothrow) vkt__gloo;
    VKT_FAIL_IF(!g, VKT_ERR_NOMEM, "gloo: out of memory");
    g->rank = rank;
    g->size = size;
    g->timeout = std::chrono::milliseconds((long long)(timeout_s * 1000));
    try {
        g->sent.assign((size_t)size, 0);
        g->recvd.assign((size_t)size, 0);
    } catch (...) {
        delete g;
        return VKT_ERROR(VKT_ERR_NOMEM, "gloo: out of memory");
    }
    vkt_status st = connect_mesh(g, s, host ? host : "127.0.0.1", timeout_s);
    if (st == VKT_OK) {
        try {
            st = learn_addresses(g, s);
        } catch (...) {
            st = from_exception(g, "rendezvous");
        }
    }
    if (st != VKT_OK) {
        vkt__gloo_destroy(g);
        return st;
    }
    *out = g;
    return VKT_OK;
}

vkt_status vkt__gloo_run(vkt__gloo *g, const vkt__gloo_op *p)
{
    const char *name = kind_name(p->kind);
    int reduces = p->kind == VKT_GLOO_ALLREDUCE || p->kind == VKT_GLOO_REDUCE_SCATTER ||
                  p->kind == VKT_GLOO_REDUCE || p->kind == VKT_GLOO_REDUCE_SCATTERV;
    VKT_FAIL_IF(reduces && !vkt__gloo_reduces(p->dtype),
                VKT_ERR_UNSUPPORTED, "gloo %s: Gloo cannot reduce %s; use f32, f16, f64, i32 "
                "or i64, or another backend", name, vkt_dtype_name(p->dtype));
    size_t limit = (size_t)INT32_MAX / vkt_dtype_size(p->dtype) / (size_t)g->size;
    if (p->kind == VKT_GLOO_REDUCE_SCATTERV) limit *= (size_t)g->size; // count is the sum
    VKT_FAIL_IF((p->kind == VKT_GLOO_REDUCE_SCATTER || p->kind == VKT_GLOO_REDUCE_SCATTERV) &&
                    p->count > limit, VKT_ERR_UNSUPPORTED,
                "gloo %s: Gloo's reduce-scatter counts bytes in an int; %zu elements per rank "
                "is too many (at most %zu); use another backend", name, p->count, limit);
    try {
        run_op(g, p);
    } catch (...) {
        return from_exception(g, name);
    }
    if (p->op == VKT_REDOP_AVG && p->count) { // Gloo has no average: SUM, then divide
        if (p->kind == VKT_GLOO_ALLREDUCE || p->kind == VKT_GLOO_REDUCE_SCATTER)
            vkt__scale_avg(p->recvbuf, p->count, p->dtype, g->size);
        else if (p->kind == VKT_GLOO_REDUCE && g->rank == p->root)
            vkt__scale_avg(p->recvbuf, p->count, p->dtype, g->size);
        else if (p->kind == VKT_GLOO_REDUCE_SCATTERV)
            vkt__scale_avg(p->recvbuf, p->counts[g->rank], p->dtype, g->size);
    }
    return VKT_OK;
}

void vkt__gloo_close(vkt__gloo *g)
{
    if (!g || !g->ctx) return;
    try {
        g->ctx->closeConnections();
    } catch (...) { // closing is best effort: the peers time out otherwise
    }
}

void vkt__gloo_destroy(vkt__gloo *g)
{
    if (!g) return;
    try {
        g->rs.reset();
        g->ctx.reset();
        g->dev.reset();
    } catch (...) { // a destructor that throws would terminate; keep going
    }
    delete g;
}

} // extern "C"
