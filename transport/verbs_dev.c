/* Verbs devices, registration cache and ring pool.
 *
 * One context and protection domain per device port and process, shared by
 * every link of every communicator there (refcounted): a device context
 * costs a uverbs file and kernel memory, and memory registered in one PD can
 * serve any QP of it.
 *
 * Registration cache: the channel moves user bytes through registered rings
 * by copy (one memcpy per side; see transport/README.md "Memory
 * registration"), so the buffers registered are the rings. Each device keeps
 * its registrations in a list keyed by address range; a request for a range
 * inside a registered region with enough access reuses it, and a region is
 * deregistered only when its memory is about to be freed (invalidate) or the
 * device closes. Rings given back by closed links stay registered in a pool
 * and serve the next link of that size (the direct links of a communicator
 * and later communicators made while the device is open), so a link costs
 * no ibv_reg_mr after the first ones. Locked memory therefore never exceeds
 * the most rings open at once.
 *
 * Device: VKT_IB_DEVICE, else the first device with an ACTIVE port. GID
 * index: VKT_IB_GID_INDEX, else on RoCE the first RoCE v2 entry holding an
 * IPv4-mapped address (routable; soft-RoCE puts it at index 1), else the
 * first RoCE v2 entry, else 0. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "verbs_int.h"

struct vb_mr {
    vb_mr *next;
    uintptr_t lo, hi; /* [lo, hi) */
    int access, users;
    struct ibv_mr *mr;
};

static pthread_mutex_t devs_mu = PTHREAD_MUTEX_INITIALIZER;
static vb_dev *devs;
static atomic_ullong n_registered, n_hits, n_live;

/* ------------------------------------------------------------ open/close -- */

static int ipv4_mapped(const union ibv_gid *g)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(g->raw, prefix, sizeof prefix) == 0;
}

/* The GID index to use on dev's port (see the header comment). */
static vkt_status pick_gid(vb_dev *d, const struct ibv_port_attr *pa)
{
    const char *env = getenv("VKT_IB_GID_INDEX");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        VKT_FAIL_IF(*end || v < 0 || v >= pa->gid_tbl_len, VKT_ERR_INVALID_ARG,
                    "VKT_IB_GID_INDEX=%s: %s port %u has GID indices 0..%d", env, d->name,
                    d->port, pa->gid_tbl_len - 1);
        d->gid_index = (int)v;
        return VKT_OK;
    }
    d->gid_index = 0;
    if (!d->ethernet) return VKT_OK;
    int first_v2 = -1;
    for (int i = 0; i < pa->gid_tbl_len; i++) {
        struct ibv_gid_entry e;
        if (ibv_query_gid_ex(d->ctx, d->port, (uint32_t)i, &e, 0) != 0) continue;
        if (e.gid_type != IBV_GID_TYPE_ROCE_V2) continue;
        if (ipv4_mapped(&e.gid)) {
            d->gid_index = i;
            return VKT_OK;
        }
        if (first_v2 < 0) first_v2 = i;
    }
    if (first_v2 >= 0) d->gid_index = first_v2;
    return VKT_OK;
}

/* First ACTIVE port of an open context, or 0. */
static uint8_t active_port(struct ibv_context *ctx, struct ibv_port_attr *pa)
{
    struct ibv_device_attr da;
    if (ibv_query_device(ctx, &da) != 0) return 0;
    for (uint8_t p = 1; p <= da.phys_port_cnt; p++)
        if (ibv_query_port(ctx, p, pa) == 0 && pa->state == IBV_PORT_ACTIVE) return p;
    return 0;
}

/* Find VKT_IB_DEVICE (want) or the first device with an ACTIVE port; opens
 * its context into d (name, port, *pa). */
static vkt_status find_device(const char *want, vb_dev *d, struct ibv_port_attr *pa)
{
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    VKT_FAIL_IF(!list, VKT_ERR_UNSUPPORTED, "verbs: %s%s%scannot list RDMA devices: %s (no "
                "RDMA support in this kernel, or rdma-core's drivers are missing)",
                want ? "no device " : "", want ? want : "", want ? " (VKT_IB_DEVICE): " : "",
                strerror(errno));
    char seen[256] = "";
    size_t sl = 0;
    for (int i = 0; i < n && !d->ctx; i++) {
        const char *name = ibv_get_device_name(list[i]);
        sl += (size_t)snprintf(seen + sl, sl < sizeof seen ? sizeof seen - sl : 0, "%s%s",
                               i ? ", " : "", name);
        if (sl >= sizeof seen) sl = sizeof seen - 1;
        if (want && strcmp(want, name) != 0) continue;
        struct ibv_context *ctx = ibv_open_device(list[i]);
        if (!ctx) continue;
        uint8_t port = active_port(ctx, pa);
        if (!port) {
            ibv_close_device(ctx);
            if (want) {
                ibv_free_device_list(list);
                return VKT_ERROR(VKT_ERR_UNSUPPORTED, "verbs: device %s (VKT_IB_DEVICE) has "
                                 "no ACTIVE port; check its link (ibv_devinfo)", want);
            }
            continue;
        }
        d->ctx = ctx;
        d->port = port;
        snprintf(d->name, sizeof d->name, "%s", name);
    }
    ibv_free_device_list(list);
    VKT_FAIL_IF(!d->ctx && want, VKT_ERR_UNSUPPORTED, "verbs: no RDMA device named %s "
                "(VKT_IB_DEVICE); devices here: %s", want, n ? seen : "none");
    VKT_FAIL_IF(!d->ctx, VKT_ERR_UNSUPPORTED, "verbs: no RDMA device with an ACTIVE port "
                "(devices: %s); use backend tcp, or bring a port up", n ? seen : "none");
    return VKT_OK;
}

static void dev_close(vb_dev *d)
{
    while (d->free_rings) {
        vb_ring *r = d->free_rings;
        d->free_rings = r->next; /* its use was dropped by ring_put */
        (void)vkt__vb_mr_invalidate(d, r->mem, r->bytes);
        munmap(r->mem, r->bytes);
        vkt_free(r);
    }
    while (d->mrs) { /* regions of memory the device outlived (none today) */
        vb_mr *m = d->mrs;
        d->mrs = m->next;
        ibv_dereg_mr(m->mr);
        atomic_fetch_sub(&n_live, 1);
        vkt_free(m);
    }
    if (d->pd) ibv_dealloc_pd(d->pd);
    if (d->ctx) ibv_close_device(d->ctx);
    pthread_mutex_destroy(&d->mu);
    vkt_free(d);
}

static vkt_status dev_open(const char *want, vb_dev **out)
{
    struct ibv_port_attr pa;
    vb_dev *d = vkt_calloc(1, sizeof *d);
    VKT_FAIL_IF(!d, VKT_ERR_NOMEM, "verbs: out of memory");
    pthread_mutex_init(&d->mu, NULL);
    vkt_status st = find_device(want, d, &pa);
    if (st == VKT_OK) {
        d->ethernet = pa.link_layer == IBV_LINK_LAYER_ETHERNET;
        d->mtu = pa.active_mtu;
        d->lid = pa.lid;
        st = pick_gid(d, &pa);
    }
    if (st == VKT_OK && ibv_query_gid(d->ctx, d->port, d->gid_index, &d->gid) != 0)
        st = VKT_ERROR(VKT_ERR_SYSTEM, "verbs: %s port %u: cannot read GID %d", d->name,
                       d->port, d->gid_index);
    if (st == VKT_OK && !(d->pd = ibv_alloc_pd(d->ctx)))
        st = VKT_ERROR(VKT_ERR_SYSTEM, "verbs: %s: cannot allocate a protection domain",
                       d->name);
    if (st != VKT_OK) {
        dev_close(d);
        return st;
    }
    *out = d;
    return VKT_OK;
}

vkt_status vkt__vb_dev_get(vb_dev **out)
{
    const char *want = getenv("VKT_IB_DEVICE");
    if (want && !*want) want = NULL;
    *out = NULL;
    pthread_mutex_lock(&devs_mu);
    vb_dev *d = devs;
    /* Without VKT_IB_DEVICE, a device opened by the same search (the first
     * with an ACTIVE port) is the one it would find again. */
    while (d && (want ? strcmp(d->name, want) != 0 : !d->searched)) d = d->next;
    vkt_status st = VKT_OK;
    if (d) {
        d->refs++;
    } else if ((st = dev_open(want, &d)) == VKT_OK) {
        d->refs = 1;
        d->searched = !want;
        d->next = devs;
        devs = d;
    }
    pthread_mutex_unlock(&devs_mu);
    *out = st == VKT_OK ? d : NULL;
    return st;
}

void vkt__vb_dev_put(vb_dev *d)
{
    if (!d) return;
    pthread_mutex_lock(&devs_mu);
    int last = --d->refs == 0;
    if (last)
        for (vb_dev **p = &devs; *p; p = &(*p)->next)
            if (*p == d) {
                *p = d->next;
                break;
            }
    pthread_mutex_unlock(&devs_mu);
    if (last) dev_close(d);
}

int vkt__verbs_usable(void)
{
    vb_dev *d = NULL;
    if (vkt__vb_dev_get(&d) != VKT_OK) {
        vkt_clear_error();
        return 0;
    }
    vkt__vb_dev_put(d);
    return 1;
}

vkt_status vkt__verbs_describe(char *out, size_t cap)
{
    int n = 0;
    size_t used = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    out[0] = '\0';
    VKT_FAIL_IF(!list, VKT_ERR_UNSUPPORTED, "cannot list RDMA devices: %s", strerror(errno));
    for (int i = 0; i < n && used < cap; i++) {
        struct ibv_context *ctx = ibv_open_device(list[i]);
        struct ibv_device_attr da;
        if (!ctx || ibv_query_device(ctx, &da) != 0) {
            used += (size_t)snprintf(out + used, cap - used, "%s: cannot open\n",
                                     ibv_get_device_name(list[i]));
            if (ctx) ibv_close_device(ctx);
            continue;
        }
        for (uint8_t p = 1; p <= da.phys_port_cnt && used < cap; p++) {
            struct ibv_port_attr pa;
            if (ibv_query_port(ctx, p, &pa) != 0) continue;
            used += (size_t)snprintf(out + used, cap - used, "%s port %u: %s, %s, mtu %d\n",
                                     ibv_get_device_name(list[i]), p,
                                     ibv_port_state_str(pa.state),
                                     pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE"
                                                                              : "InfiniBand",
                                     128 << pa.active_mtu);
        }
        ibv_close_device(ctx);
    }
    ibv_free_device_list(list);
    return VKT_OK;
}

/* ---------------------------------------------------- registration cache -- */

/* ibv_reg_mr failed: ENOMEM/EPERM almost always mean the locked-memory limit. */
static vkt_status reg_error(const vb_dev *d, size_t len, int err)
{
    if (err == ENOMEM || err == EPERM || err == EAGAIN)
        return VKT_ERROR(VKT_ERR_SYSTEM, "verbs: %s: cannot register %zu bytes of memory "
                         "(ibv_reg_mr: %s): the locked-memory limit (ulimit -l) is the likely "
                         "cause; raise it to unlimited (ulimit -l unlimited, or memlock "
                         "unlimited in /etc/security/limits.conf, LimitMEMLOCK=infinity for "
                         "systemd, --ulimit memlock=-1 for docker), or lower "
                         "VKT_IB_RING_BYTES (each link registers two rings)",
                         d->name, len, strerror(err));
    return VKT_ERROR(VKT_ERR_SYSTEM, "verbs: %s: cannot register %zu bytes of memory "
                     "(ibv_reg_mr: %s)", d->name, len, strerror(err));
}

vkt_status vkt__vb_mr_get(vb_dev *d, void *addr, size_t len, int access, struct ibv_mr **out)
{
    uintptr_t lo = (uintptr_t)addr, hi = lo + len;
    *out = NULL;
    pthread_mutex_lock(&d->mu);
    for (vb_mr *m = d->mrs; m; m = m->next)
        if (m->lo <= lo && hi <= m->hi && (m->access & access) == access) {
            m->users++;
            *out = m->mr;
            pthread_mutex_unlock(&d->mu);
            atomic_fetch_add(&n_hits, 1);
            return VKT_OK;
        }
    vb_mr *m = vkt_calloc(1, sizeof *m);
    struct ibv_mr *mr = m ? ibv_reg_mr(d->pd, addr, len, access) : NULL;
    int err = errno;
    if (mr) {
        *m = (vb_mr){d->mrs, lo, hi, access, 1, mr};
        d->mrs = m;
        *out = mr;
    }
    pthread_mutex_unlock(&d->mu);
    if (!m) return VKT_ERROR(VKT_ERR_NOMEM, "verbs: out of memory");
    if (!mr) {
        vkt_free(m);
        return reg_error(d, len, err);
    }
    atomic_fetch_add(&n_registered, 1);
    atomic_fetch_add(&n_live, 1);
    return VKT_OK;
}

void vkt__vb_mr_put(vb_dev *d, struct ibv_mr *mr)
{
    if (!mr) return;
    pthread_mutex_lock(&d->mu);
    for (vb_mr *m = d->mrs; m; m = m->next)
        if (m->mr == mr) {
            m->users--;
            break;
        }
    pthread_mutex_unlock(&d->mu);
}

vkt_status vkt__vb_mr_invalidate(vb_dev *d, void *addr, size_t len)
{
    uintptr_t lo = (uintptr_t)addr, hi = lo + len;
    int busy = 0;
    pthread_mutex_lock(&d->mu);
    for (vb_mr **p = &d->mrs; *p;) {
        vb_mr *m = *p;
        if (m->hi <= lo || hi <= m->lo) {
            p = &m->next;
            continue;
        }
        busy |= m->users > 0; /* deregistered anyway: the memory is going */
        *p = m->next;
        ibv_dereg_mr(m->mr);
        atomic_fetch_sub(&n_live, 1);
        vkt_free(m);
    }
    pthread_mutex_unlock(&d->mu);
    VKT_FAIL_IF(busy, VKT_ERR_INTERNAL, "verbs: %s: memory at %p was freed while a link still "
                "used its registration", d->name, addr);
    return VKT_OK;
}

void vkt__vb_mr_stats(uint64_t *registered, uint64_t *hits, uint64_t *live)
{
    *registered = atomic_load(&n_registered);
    *hits = atomic_load(&n_hits);
    *live = atomic_load(&n_live);
}

/* ------------------------------------------------------------ ring pool -- */

vkt_status vkt__vb_ring_bytes(size_t *out)
{
    int64_t v = vkt__env_int("VKT_IB_RING_BYTES", VB_RING_DEFAULT);
    VKT_FAIL_IF(v < VB_RING_MIN || v > VB_RING_MAX || v % 4096, VKT_ERR_INVALID_ARG,
                "VKT_IB_RING_BYTES=%lld: use a multiple of 4096 from %u to %u (default %u)",
                (long long)v, VB_RING_MIN, VB_RING_MAX, VB_RING_DEFAULT);
    *out = (size_t)v;
    return VKT_OK;
}

vkt_status vkt__vb_ring_get(vb_dev *d, size_t bytes, vb_ring **out)
{
    vb_ring *r = NULL;
    *out = NULL;
    pthread_mutex_lock(&d->mu);
    for (vb_ring **p = &d->free_rings; *p; p = &(*p)->next)
        if ((*p)->bytes == bytes) {
            r = *p;
            *p = r->next;
            break;
        }
    pthread_mutex_unlock(&d->mu);
    if (!r) {
        r = vkt_calloc(1, sizeof *r);
        VKT_FAIL_IF(!r, VKT_ERR_NOMEM, "verbs: out of memory");
        void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
            vkt_free(r);
            return VKT_ERROR(VKT_ERR_NOMEM, "verbs: %s: cannot map a ring of %zu bytes: %s",
                             d->name, bytes, strerror(errno));
        }
        r->mem = mem;
        r->bytes = bytes;
    }
    /* Receivers and senders share the pool, so every ring is registered for
     * remote write too; a pooled ring's lookup is then a hit. */
    vkt_status st = vkt__vb_mr_get(d, r->mem, bytes,
                                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &r->mr);
    if (st != VKT_OK) {
        munmap(r->mem, r->bytes);
        vkt_free(r);
        return st;
    }
    r->next = NULL;
    *out = r;
    return VKT_OK;
}

void vkt__vb_ring_put(vb_dev *d, vb_ring *r)
{
    if (!r) return;
    vkt__vb_mr_put(d, r->mr);
    pthread_mutex_lock(&d->mu);
    r->next = d->free_rings;
    d->free_rings = r;
    pthread_mutex_unlock(&d->mu);
}
