/* Device memory: a sub-allocator over large blocks.
 *
 * Each block is one VkDeviceMemory of one memory type, persistently mapped
 * when host-visible. Free space is a sorted array of ranges, coalesced on
 * free; allocation is first fit with alignment. Requests larger than half a
 * block get a block of their own. One empty block per type is kept for
 * reuse; others go back to the driver, so memory that a training run frees
 * between phases is really returned. */
#include <stdio.h>
#include <string.h>

#include "gpu/gpu_int.h"

#define DEFAULT_BLOCK_SIZE (64ull << 20)
#define MIN_ALIGN 64ull

typedef struct range {
    uint64_t offset, size;
} range;

struct vkt_mem_block {
    vkt_mem_block *next;
    VkDeviceMemory memory;
    uint64_t size;
    uint64_t used;
    uint32_t type_index;
    uint32_t nallocs;  /* live allocations: free ranges never exceed nallocs + 1 */
    bool dedicated;
    bool internal;     /* the runtime's own (staging): not in stats or the limit */
    bool unmapped;     /* device memory under VKT_EMULATE_DISCRETE: never mapped */
    void *mapped;
    range *free;
    uint32_t nfree, capfree;
};

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

vkt_status vkt__mem_init(vkt_device *dev, uint64_t block_size, uint64_t limit)
{
    vkt_allocator_state *m = &dev->mem;
    m->block_size = block_size ? block_size : DEFAULT_BLOCK_SIZE;
    if (dev->caps.max_allocation_size && m->block_size > dev->caps.max_allocation_size)
        m->block_size = dev->caps.max_allocation_size;
    m->limit = limit;
    m->unmapped_device = vkt__env_int("VKT_EMULATE_DISCRETE", 0) != 0;
    if (m->unmapped_device) dev->caps.unified_memory = false;
    return VKT_OK;
}

static void block_release(vkt_device *dev, vkt_mem_block *b)
{
    if (b->mapped) vkUnmapMemory(dev->device, b->memory);
    vkFreeMemory(dev->device, b->memory, NULL);
    if (!b->internal) {
        dev->mem.stats.reserved -= b->size;
        dev->mem.stats.blocks--;
    }
    vkt_free(b->free);
    vkt_free(b);
}

void vkt__mem_fini(vkt_device *dev)
{
    vkt_mem_block *b = dev->mem.blocks;
    while (b) {
        vkt_mem_block *next = b->next;
        block_release(dev, b);
        b = next;
    }
    dev->mem.blocks = NULL;
}

vkt_status vkt__mem_pick_type(vkt_device *dev, vkt_memory_kind kind, uint32_t type_bits,
                              uint32_t *type_index)
{
    const VkMemoryPropertyFlags LOCAL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                                VIS = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT,
                                COH = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                CACHED = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
    VkMemoryPropertyFlags need, want, avoid;
    switch (kind) {
    case VKT_MEMORY_DEVICE:
        need = dev->caps.unified_memory ? LOCAL | VIS | COH : LOCAL;
        want = 0;
        avoid = dev->caps.unified_memory ? 0 : VIS; /* keep the BAR window free */
        break;
    case VKT_MEMORY_HOST:
        need = VIS | COH;
        want = 0;
        avoid = 0;
        break;
    case VKT_MEMORY_STAGING:
        /* Coherent always (every device has such a type): the API promises
         * that host writes and device results need no flush or invalidate. */
        need = VIS | COH;
        want = CACHED;
        avoid = 0;
        break;
    default:
        return VKT_ERROR(VKT_ERR_INVALID_ARG, "unknown memory kind %d", (int)kind);
    }
    int best = -1, best_score = -1000;
    for (uint32_t t = 0; t < dev->memprops.memoryTypeCount; t++) {
        VkMemoryPropertyFlags f = dev->memprops.memoryTypes[t].propertyFlags;
        if (!(type_bits & (1u << t)) || (f & need) != need) continue;
        int score = __builtin_popcount(f & want) * 2 - __builtin_popcount(f & avoid);
        if (score > best_score) {
            best = (int)t;
            best_score = score;
        }
    }
    VKT_FAIL_IF(best < 0, VKT_ERR_UNSUPPORTED,
                "device '%s' has no memory type for %s buffers", dev->caps.name,
                kind == VKT_MEMORY_DEVICE ? "device" : kind == VKT_MEMORY_HOST ? "host" : "staging");
    *type_index = (uint32_t)best;
    return VKT_OK;
}

static vkt_status block_create(vkt_device *dev, uint32_t type, uint64_t size, bool dedicated,
                               bool internal, bool unmapped, vkt_mem_block **out)
{
    vkt_allocator_state *m = &dev->mem;
    uint32_t heap = dev->memprops.memoryTypes[type].heapIndex;
    uint64_t heap_size = dev->memprops.memoryHeaps[heap].size;
    char a[32], b[32], c[32];
    VKT_FAIL_IF(!internal && m->limit && m->stats.reserved + size > m->limit, VKT_ERR_NOMEM,
                "device '%s': allocating %s more would pass the memory limit of %s (%s in use); "
                "raise the limit or use less memory", dev->caps.name,
                vkt__fmt_bytes(a, sizeof a, size), vkt__fmt_bytes(b, sizeof b, m->limit),
                vkt__fmt_bytes(c, sizeof c, m->stats.reserved));
    VKT_FAIL_IF(size > heap_size, VKT_ERR_NOMEM,
                "device '%s': %s is more than its memory heap holds (%s); use a smaller "
                "model or batch, or shard with ZeRO", dev->caps.name,
                vkt__fmt_bytes(a, sizeof a, size), vkt__fmt_bytes(b, sizeof b, heap_size));
    vkt_mem_block *blk = vkt_calloc(1, sizeof *blk);
    VKT_FAIL_IF(!blk, VKT_ERR_NOMEM, "out of host memory");
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                               .allocationSize = size,
                               .memoryTypeIndex = type};
    /* VKT_INJECT_FAULT=oom:N (test-only) fails the N-th allocation as a full device would. */
    VkResult r = vkt__fault_hit("oom") ? VK_ERROR_OUT_OF_DEVICE_MEMORY
                                       : vkAllocateMemory(dev->device, &ai, NULL, &blk->memory);
    if (r != VK_SUCCESS) {
        vkt_free(blk);
        vkt__vk_error(__FILE__, __LINE__, r, dev->caps.name, "vkAllocateMemory");
        return vkt__error_context(vkt__vk_status(r), "allocating %s of device memory (%s in use)",
                                  vkt__fmt_bytes(a, sizeof a, size),
                                  vkt__fmt_bytes(b, sizeof b, m->stats.reserved));
    }
    if (!unmapped &&
        dev->memprops.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
        r = vkMapMemory(dev->device, blk->memory, 0, VK_WHOLE_SIZE, 0, &blk->mapped);
        if (r != VK_SUCCESS) {
            vkFreeMemory(dev->device, blk->memory, NULL);
            vkt_free(blk);
            return vkt__vk_error(__FILE__, __LINE__, r, dev->caps.name, "vkMapMemory");
        }
    }
    blk->free = vkt_malloc(4 * sizeof *blk->free);
    if (!blk->free) {
        if (blk->mapped) vkUnmapMemory(dev->device, blk->memory);
        vkFreeMemory(dev->device, blk->memory, NULL);
        vkt_free(blk);
        return VKT_ERROR(VKT_ERR_NOMEM, "out of host memory");
    }
    blk->capfree = 4;
    blk->free[0] = (range){0, size};
    blk->nfree = 1;
    blk->size = size;
    blk->type_index = type;
    blk->dedicated = dedicated;
    blk->internal = internal;
    blk->unmapped = unmapped;
    /* Append: first fit then prefers older, fuller blocks, so newer ones
     * drain and can be given back. */
    vkt_mem_block **tail = &m->blocks;
    while (*tail) tail = &(*tail)->next;
    *tail = blk;
    if (!internal) {
        m->stats.reserved += size;
        m->stats.blocks++;
        if (m->stats.reserved > m->stats.peak_reserved)
            m->stats.peak_reserved = m->stats.reserved;
    }
    *out = blk;
    return VKT_OK;
}

/* Room for nallocs + 2 free ranges: enough for this take's split and for
 * every later give (each adds at most one range), so freeing never
 * allocates and cannot fail. */
static bool reserve_ranges(vkt_mem_block *b)
{
    if (b->capfree >= b->nallocs + 2) return true;
    uint32_t cap = 2 * (b->nallocs + 2);
    range *g = vkt_realloc(b->free, cap * sizeof *g);
    if (!g) return false;
    b->free = g;
    b->capfree = cap;
    return true;
}

/* First fit; splits the range it takes. Returns false when nothing fits or
 * the range array cannot grow. */
static bool block_take(vkt_mem_block *b, uint64_t size, uint64_t align, uint64_t *offset)
{
    if (!reserve_ranges(b)) return false;
    for (uint32_t i = 0; i < b->nfree; i++) {
        range r = b->free[i];
        uint64_t at = align_up(r.offset, align);
        if (at + size > r.offset + r.size) continue;
        uint64_t head = at - r.offset, tail = r.offset + r.size - (at + size);
        if (head && tail) {
            memmove(&b->free[i + 2], &b->free[i + 1], (b->nfree - i - 1) * sizeof(range));
            b->free[i] = (range){r.offset, head};
            b->free[i + 1] = (range){at + size, tail};
            b->nfree++;
        } else if (head) {
            b->free[i] = (range){r.offset, head};
        } else if (tail) {
            b->free[i] = (range){at + size, tail};
        } else {
            memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof(range));
            b->nfree--;
        }
        b->used += size;
        b->nallocs++;
        *offset = at;
        return true;
    }
    return false;
}

/* Give [offset, offset+size) back, merging with its neighbours. Never
 * allocates: block_take reserved the room. */
static void block_give(vkt_mem_block *b, uint64_t offset, uint64_t size)
{
    uint32_t i = 0;
    while (i < b->nfree && b->free[i].offset < offset) i++;
    bool merge_prev = i > 0 && b->free[i - 1].offset + b->free[i - 1].size == offset;
    bool merge_next = i < b->nfree && offset + size == b->free[i].offset;
    if (merge_prev && merge_next) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], (b->nfree - i - 1) * sizeof(range));
        b->nfree--;
    } else if (merge_prev) {
        b->free[i - 1].size += size;
    } else if (merge_next) {
        b->free[i].offset = offset;
        b->free[i].size += size;
    } else {
        memmove(&b->free[i + 1], &b->free[i], (b->nfree - i) * sizeof(range));
        b->free[i] = (range){offset, size};
        b->nfree++;
    }
    b->used -= size;
    b->nallocs--;
}

vkt_status vkt__mem_alloc(vkt_device *dev, const VkMemoryRequirements *req,
                          vkt_memory_kind kind, bool internal, vkt_allocation *out)
{
    uint32_t type;
    VKT_CHECK(vkt__mem_pick_type(dev, kind, req->memoryTypeBits, &type));
    uint64_t align = req->alignment > MIN_ALIGN ? req->alignment : MIN_ALIGN;
    uint64_t size = align_up(req->size, align);
    vkt_allocator_state *m = &dev->mem;
    vkt_status st = VKT_OK;
    pthread_mutex_lock(&m->lock);
    vkt_mem_block *b = NULL;
    uint64_t off = 0;
    bool dedicated = internal || size > m->block_size / 2;
    bool unmapped = m->unmapped_device && kind == VKT_MEMORY_DEVICE;
    for (b = dedicated ? NULL : m->blocks; b; b = b->next)
        if (b->type_index == type && b->unmapped == unmapped && !b->dedicated &&
            block_take(b, size, align, &off))
            break;
    if (!b) {
        st = block_create(dev, type, dedicated ? size : m->block_size, dedicated, internal,
                          unmapped, &b);
        if (st == VKT_OK && !block_take(b, size, align, &off))
            st = VKT_ERROR(VKT_ERR_NOMEM, "out of host memory");
    }
    if (st == VKT_OK) {
        *out = (vkt_allocation){.block = b, .memory = b->memory, .offset = off, .size = size,
                                .mapped = b->mapped ? (char *)b->mapped + off : NULL,
                                .type_index = type};
        if (!internal) {
            m->stats.in_use += size;
            m->stats.buffers++;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return st;
}

/* Unlink b from the block list. */
static void block_unlink(vkt_allocator_state *m, vkt_mem_block *b)
{
    for (vkt_mem_block **p = &m->blocks; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            return;
        }
}

void vkt__mem_free(vkt_device *dev, vkt_allocation *a)
{
    if (!a->block) return;
    vkt_allocator_state *m = &dev->mem;
    pthread_mutex_lock(&m->lock);
    vkt_mem_block *b = a->block;
    block_give(b, a->offset, a->size);
    if (!b->internal) {
        m->stats.in_use -= a->size;
        m->stats.buffers--;
    }
    if (b->used == 0) {
        bool keep = !b->dedicated;
        for (vkt_mem_block *o = m->blocks; o && keep; o = o->next)
            if (o != b && o->type_index == b->type_index && o->unmapped == b->unmapped &&
                o->used == 0 && !o->dedicated)
                keep = false; /* one empty block of this type is enough */
        if (!keep) {
            block_unlink(m, b);
            block_release(dev, b);
        }
    }
    pthread_mutex_unlock(&m->lock);
    memset(a, 0, sizeof *a);
}

void vkt_device_memory_stats(const vkt_device *dev, vkt_memory_stats *out)
{
    vkt_device *d = (vkt_device *)dev;
    pthread_mutex_lock(&d->mem.lock);
    *out = d->mem.stats;
    pthread_mutex_unlock(&d->mem.lock);
}
