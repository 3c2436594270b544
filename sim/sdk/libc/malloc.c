/* The heap: a first-fit free list over one arena, kept in address order so
 * that free() can merge a block with its neighbours.
 *
 * Every block starts with a 16-byte header holding its total size (header
 * included, a multiple of 16) and, while free, the next free block; while
 * allocated, the second word holds a magic number so that free() can catch
 * pointers it never handed out and double frees. Payloads are 16-aligned.
 * malloc and free hold the backend's heap lock: pico threads share the heap
 * and may be preempted anywhere. */
#include "picosim.h"
#include "sdk_backend.h"

#define ALIGN 16
#define MAGIC_USED 0x5d1c0ffee0ddba11ULL

struct block {
    size_t size;            /* bytes, header included */
    union {
        struct block *next; /* free: next free block, by address */
        uint64_t magic;     /* allocated: MAGIC_USED */
    };
};

_Static_assert(sizeof(struct block) == ALIGN, "block header is 16 bytes");

static struct block *free_list;
static char *arena_start, *arena_end;

static void heap_panic(const char *what, void *p)
{
    printf("malloc: %s (%p)\n", what, p);
    abort();
}

void sdk_heap_init(void *start, void *end)
{
    uintptr_t s = ((uintptr_t)start + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
    uintptr_t e = (uintptr_t)end & ~(uintptr_t)(ALIGN - 1);
    free_list = NULL;
    arena_start = arena_end = (char *)s;
    if (e <= s || e - s < 2 * ALIGN)
        return;
    arena_end = (char *)e;
    free_list = (struct block *)s;
    free_list->size = e - s;
    free_list->next = NULL;
}

static void *take(size_t need)
{
    struct block **link = &free_list;
    for (struct block *b = free_list; b; link = &b->next, b = b->next) {
        if (b->size < need)
            continue;
        if (b->size - need >= 2 * ALIGN) { /* split: the tail stays free */
            struct block *rest = (struct block *)((char *)b + need);
            rest->size = b->size - need;
            rest->next = b->next;
            *link = rest;
            b->size = need;
        } else {
            *link = b->next;
        }
        b->magic = MAGIC_USED;
        return b + 1;
    }
    return NULL;
}

void *malloc(size_t size)
{
    if (size == 0)
        size = 1;
    if (size > (size_t)(arena_end - arena_start))
        return NULL;
    size_t need = (size + sizeof(struct block) + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    sdk_backend_heap_lock();
    void *p = take(need);
    sdk_backend_heap_unlock();
    return p;
}

static struct block *header_of(void *p)
{
    struct block *b = (struct block *)p - 1;
    if ((char *)b < arena_start || (char *)p >= arena_end || ((uintptr_t)p & (ALIGN - 1)))
        heap_panic("pointer outside the heap", p);
    if (b->magic != MAGIC_USED)
        heap_panic("pointer not allocated (double free?)", p);
    return b;
}

static void give_back(struct block *b)
{
    struct block *prev = NULL, *next = free_list;
    while (next && next < b) {
        prev = next;
        next = next->next;
    }
    b->next = next;
    if (next && (char *)b + b->size == (char *)next) { /* merge with the next */
        b->size += next->size;
        b->next = next->next;
    }
    if (prev && (char *)prev + prev->size == (char *)b) { /* and the previous */
        prev->size += b->size;
        prev->next = b->next;
    } else if (prev) {
        prev->next = b;
    } else {
        free_list = b;
    }
}

void free(void *p)
{
    if (!p)
        return;
    sdk_backend_heap_lock();
    give_back(header_of(p));
    sdk_backend_heap_unlock();
}

void *calloc(size_t n, size_t size)
{
    if (size && n > (size_t)-1 / size)
        return NULL;
    void *p = malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *realloc(void *p, size_t size)
{
    if (!p)
        return malloc(size);
    if (size == 0) {
        free(p);
        return NULL;
    }
    sdk_backend_heap_lock();
    size_t have = header_of(p)->size - sizeof(struct block);
    sdk_backend_heap_unlock();
    if (size <= have)
        return p;
    void *q = malloc(size);
    if (q) {
        memcpy(q, p, have);
        free(p);
    }
    return q;
}

void sdk_heap_stats(size_t *free_bytes, size_t *largest_block)
{
    size_t total = 0, largest = 0;
    sdk_backend_heap_lock();
    for (struct block *b = free_list; b; b = b->next) {
        size_t payload = b->size - sizeof(struct block);
        total += payload;
        if (payload > largest)
            largest = payload;
    }
    sdk_backend_heap_unlock();
    if (free_bytes)
        *free_bytes = total;
    if (largest_block)
        *largest_block = largest;
}
