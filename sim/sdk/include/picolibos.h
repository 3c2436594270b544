/* picolibos.h: the library OS on top of the pico ABI (header-only).
 *
 * Drawbridge's idea: the OS personality lives inside the picoprocess, and
 * reaches the host only through the narrow pico ABI. This header is that
 * personality for SDK apps:
 *   - streams by URI (console:, file: in the sandbox, pipe:, chan:) and a
 *     stdio-like layer (pl_printf to any stream, read/write loops);
 *   - malloc over private virtual memory (pl_vm_heap hands malloc an arena
 *     from vm_alloc, counted against the manifest's memory quota);
 *   - threads (pthread-like create/join), futex mutexes, events, wait_any;
 *   - channels: listen/accept on one guest, connect on another.
 * Every function returns a negative PICO_E* error on failure.
 * Include it after picosim.h; build with the pico target. */
#ifndef PICOLIBOS_H
#define PICOLIBOS_H
#include <picosim.h>
#include "pico_abi.h"

/* Mirrors sim/libos/pico_abi.py (a test checks they agree). */
#define PL_PROT_READ 1
#define PL_PROT_WRITE 2
#define PL_PROT_EXEC 4
#define PL_OPEN_READ 1
#define PL_OPEN_WRITE 2
#define PL_OPEN_CREATE 4
#define PL_OPEN_TRUNCATE 8
#define PL_OPEN_APPEND 16
#define PL_OPEN_NONBLOCK 32

static inline const char *pl_strerror(long err)
{
    switch (err) {
    case PICO_EPERM: return "EPERM (denied by the monitor)";
    case PICO_ENOSYS: return "ENOSYS (no such call)";
    case PICO_EFAULT: return "EFAULT (bad pointer)";
    case PICO_EINVAL: return "EINVAL (invalid argument)";
    case PICO_EBADH: return "EBADH (bad handle)";
    case PICO_ENOMEM: return "ENOMEM (memory quota)";
    case PICO_EAGAIN: return "EAGAIN";
    case PICO_ELIMIT: return "ELIMIT (limit reached)";
    case PICO_ENOENT: return "ENOENT (no such stream)";
    case PICO_ETIMEDOUT: return "ETIMEDOUT";
    case PICO_EEXIST: return "EEXIST";
    case PICO_EPIPE: return "EPIPE (other end closed)";
    case PICO_ENOSPC: return "ENOSPC (no space)";
    default: return err >= 0 ? "OK" : "unknown error";
    }
}

/* ---- streams ------------------------------------------------------------ */
static inline long pl_open(const char *uri, unsigned flags)
{
    return pico_stream_open(uri, strlen(uri), flags);
}

static inline long pl_close(long h)
{
    return pico_handle_close(h);
}

/* Read up to n bytes (blocks until some arrive; 0 at end of stream). */
static inline long pl_read(long h, void *buf, size_t n)
{
    return pico_stream_read(h, buf, n);
}

/* Read exactly n bytes unless the stream ends first; returns bytes read. */
static inline long pl_read_full(long h, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        long r = pico_stream_read(h, (char *)buf + got, n - got);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long)got;
}

/* Write all n bytes; returns n or an error. */
static inline long pl_write(long h, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        long r = pico_stream_write(h, (const char *)buf + done, n - done);
        if (r < 0)
            return r;
        if (r == 0)
            return PICO_EPIPE;
        done += (size_t)r;
    }
    return (long)n;
}

/* printf to a stream (console:, file:, pipe:, chan:), up to 1 KiB a call. */
static inline int pl_printf(long h, const char *fmt, ...) SDK_PRINTF(2, 3);
static inline int pl_printf(long h, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return n;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    long r = pl_write(h, buf, (size_t)n);
    return r < 0 ? (int)r : n;
}

/* Read one line (up to '\n', which is kept) into buf; returns its length,
 * 0 at end of stream. Reads byte by byte: fine for small protocols. */
static inline long pl_read_line(long h, char *buf, size_t size)
{
    size_t n = 0;
    while (n + 1 < size) {
        long r = pico_stream_read(h, buf + n, 1);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        if (buf[n++] == '\n')
            break;
    }
    buf[n] = '\0';
    return (long)n;
}

static inline long pl_file_size(long h)
{
    struct pico_handle_attr a;
    long r = pico_handle_attr(h, &a);
    return r < 0 ? r : (long)a.size;
}

static inline long pl_delete(const char *uri)
{
    return pico_stream_delete(uri, strlen(uri));
}

/* Channels between picoprocesses of one simulated host. */
static inline long pl_listen(const char *uri)
{
    return pico_stream_listen(uri, strlen(uri));
}

static inline long pl_accept(long listener)
{
    return pico_stream_accept(listener);
}

static inline long pl_connect(const char *uri)
{
    return pico_stream_connect(uri, strlen(uri));
}

/* ---- memory --------------------------------------------------------------- */
static inline void *pl_vm_alloc(size_t size)
{
    long r = pico_vm_alloc(size, PL_PROT_READ | PL_PROT_WRITE);
    return r < 0 ? NULL : (void *)r;
}

/* Hand malloc an arena of `bytes` from vm_alloc (call first thing in main,
 * before any malloc: earlier blocks are forgotten). Returns 0 or an error. */
static inline long pl_vm_heap(size_t bytes)
{
    long r = pico_vm_alloc(bytes, PL_PROT_READ | PL_PROT_WRITE);
    if (r < 0)
        return r;
    sdk_heap_init((void *)r, (char *)r + bytes);
    return 0;
}

/* ---- threads and synchronisation ------------------------------------------ */
#define PL_STACK_BYTES (64 * 1024)

typedef struct {
    long handle;
    void *stack;
} pl_thread_t;

struct pl_thread_start {
    void (*fn)(void *);
    void *arg;
};

static inline void pl_thread_entry(struct pl_thread_start *st) __attribute__((noreturn, used));
static inline void pl_thread_entry(struct pl_thread_start *st)
{
    st->fn(st->arg);
    pico_thread_exit(0);
    for (;;)
        __asm__ volatile("hlt");
}

/* Start fn(arg) on a new thread with a 64 KiB stack from vm_alloc. */
static inline long pl_thread_create(pl_thread_t *t, void (*fn)(void *), void *arg)
{
    char *stack = pl_vm_alloc(PL_STACK_BYTES);
    if (!stack)
        return PICO_ENOMEM;
    /* The start record lives at the top of the new stack. */
    struct pl_thread_start *st =
        (struct pl_thread_start *)(stack + PL_STACK_BYTES - sizeof *st);
    st->fn = fn;
    st->arg = arg;
    uintptr_t top = ((uintptr_t)st - 64) & ~(uintptr_t)15;
    long h = pico_thread_create((uint64_t)(uintptr_t)pl_thread_entry, (uint64_t)(uintptr_t)st,
                                top);
    if (h < 0) {
        pico_vm_free((uint64_t)(uintptr_t)stack, PL_STACK_BYTES);
        return h;
    }
    t->handle = h;
    t->stack = stack;
    return 0;
}

/* Wait for a thread to end; returns its exit status and frees its stack. */
static inline long pl_thread_join(pl_thread_t *t)
{
    pico_handle_t h = t->handle;
    long r = pico_wait_any(&h, sizeof h, 0);
    if (r < 0)
        return r;
    struct pico_handle_attr a;
    r = pico_handle_attr(h, &a);
    pico_handle_close(h);
    pico_vm_free((uint64_t)(uintptr_t)t->stack, PL_STACK_BYTES);
    return r < 0 ? r : a.status;
}

/* A futex mutex: 0 free, 1 locked, 2 locked with waiters. */
typedef struct {
    uint32_t state;
} pl_mutex_t;
#define PL_MUTEX_INIT {0}

static inline void pl_mutex_lock(pl_mutex_t *m)
{
    uint32_t c = 0;
    if (__atomic_compare_exchange_n(&m->state, &c, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    if (c != 2)
        c = __atomic_exchange_n(&m->state, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        pico_futex_wait((uint64_t)(uintptr_t)&m->state, 2, 0);
        c = __atomic_exchange_n(&m->state, 2, __ATOMIC_ACQUIRE);
    }
}

static inline void pl_mutex_unlock(pl_mutex_t *m)
{
    if (__atomic_fetch_sub(&m->state, 1, __ATOMIC_RELEASE) != 1) {
        __atomic_store_n(&m->state, 0, __ATOMIC_RELEASE);
        pico_futex_wake((uint64_t)(uintptr_t)&m->state, 1);
    }
}

#endif /* PICOLIBOS_H */
