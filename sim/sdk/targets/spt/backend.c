/* The spt backend: the SDK's backend interface and the Solo5 devices over
 * the nine Linux system calls the spt seccomp policy admits. */
#include "sdk_backend.h"
#include "solo5_dev.h"

#define SYS_read 0
#define SYS_write 1
#define SYS_pread64 17
#define SYS_pwrite64 18
#define SYS_arch_prctl 158
#define SYS_clock_gettime 228
#define SYS_exit_group 231
#define SYS_epoll_pwait 281
#define SYS_timerfd_settime 286
#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1
#define TFD_TIMER_ABSTIME 1
#define EAGAIN 11
#define ABORT_STATUS 255
#define MAX_EVENTS 64

struct boot_info {
    uint64_t mem_size, kernel_end, cmdline, mft;
    int32_t epollfd, timerfd;
};
struct timespec { int64_t sec, nsec; };
struct itimerspec { struct timespec interval, value; };
struct __attribute__((packed)) epoll_event { uint32_t events; uint64_t data; };

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sys3(nr, a, b, c) sys6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)

static int epollfd, timerfd;
static uint64_t mono_boot;

static uint64_t clock_of(int clock)
{
    struct timespec ts;
    sys3(SYS_clock_gettime, clock, &ts, 0);
    return (uint64_t)ts.sec * 1000000000u + (uint64_t)ts.nsec;
}

void sdk_backend_write(const char *buf, size_t len)
{
    while (len) {
        long n = sys3(SYS_write, 1, buf, len);
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

void sdk_backend_exit(int status)
{
    sys3(SYS_exit_group, status, 0, 0);
    for (;;)
        ;
}

void sdk_backend_abort(void)
{
    static const char msg[] = "Solo5: ABORT: abort() called\n";
    sdk_backend_write(msg, sizeof msg - 1);
    sdk_backend_exit(ABORT_STATUS);
}

uint64_t sdk_backend_clock_ns(void)
{
    return clock_of(CLOCK_MONOTONIC) - mono_boot;
}

uint64_t sdk_backend_wall_ns(void)
{
    return clock_of(CLOCK_REALTIME);
}

void s5_yield(uint64_t deadline_ns, uint64_t *ready_set)
{
    struct itimerspec it = {{0, 0}, {0, 0}};
    uint64_t abs = mono_boot + deadline_ns;
    it.value.sec = (int64_t)(abs / 1000000000u);
    it.value.nsec = (int64_t)(abs % 1000000000u);
    if (it.value.sec == 0 && it.value.nsec == 0)
        it.value.nsec = 1; /* zero would disarm the timer */
    uint64_t ready = 0;
    sys6(SYS_timerfd_settime, timerfd, TFD_TIMER_ABSTIME, (long)&it, 0, 0, 0);
    struct epoll_event ev[MAX_EVENTS];
    long n = sys6(SYS_epoll_pwait, epollfd, (long)ev, MAX_EVENTS, -1, 0, 8);
    for (long i = 0; i < n; i++) {
        if ((int)ev[i].data == timerfd || !s5_manifest)
            continue;
        for (uint32_t d = 1; d < s5_manifest->entries; d++)
            if (s5_manifest->e[d].hostfd == ev[i].data)
                ready |= 1ull << d;
    }
    if (ready_set)
        *ready_set = ready;
}


static const struct s5_mft_entry *dev(uint64_t handle, uint32_t type)
{
    if (!s5_manifest || handle == 0 || handle >= s5_manifest->entries)
        return 0;
    const struct s5_mft_entry *e = &s5_manifest->e[handle];
    return e->type == type && e->attached ? e : 0;
}

/* One block per system call: that is what the seccomp policy admits. */
static int block_io(long nr, uint64_t handle, uint64_t offset, void *buf, size_t len)
{
    const struct s5_mft_entry *e = dev(handle, S5_DEV_BLOCK);
    if (!e)
        return S5_EINVAL;
    uint64_t bs = e->u.block.block_size;
    if (offset % bs || len % bs || offset + len > e->u.block.capacity || offset + len < offset)
        return S5_EINVAL;
    for (size_t done = 0; done < len; done += bs) {
        long n = sys6(nr, (long)e->hostfd, (long)((char *)buf + done), (long)bs,
                      (long)(offset + done), 0, 0);
        if (n != (long)bs)
            return S5_EUNSPEC;
    }
    return S5_OK;
}

int s5_block_write(uint64_t handle, uint64_t offset, const void *buf, size_t len)
{
    return block_io(SYS_pwrite64, handle, offset, (void *)buf, len);
}

int s5_block_read(uint64_t handle, uint64_t offset, void *buf, size_t len)
{
    return block_io(SYS_pread64, handle, offset, buf, len);
}

int s5_net_write(uint64_t handle, const void *buf, size_t len)
{
    const struct s5_mft_entry *e = dev(handle, S5_DEV_NET);
    if (!e)
        return S5_EINVAL;
    long n = sys3(SYS_write, e->hostfd, buf, len);
    return n == (long)len ? S5_OK : S5_EINVAL;
}

int s5_net_read(uint64_t handle, void *buf, size_t size, size_t *read)
{
    const struct s5_mft_entry *e = dev(handle, S5_DEV_NET);
    if (!e)
        return S5_EINVAL;
    long n = sys3(SYS_read, e->hostfd, buf, size);
    if (n == -EAGAIN)
        return S5_AGAIN;
    if (n < 0)
        return S5_EUNSPEC;
    if (read)
        *read = (size_t)n;
    return S5_OK;
}

#define STACK_RESERVE (128 << 10)
extern char _end[];

void sdk_spt_start(const struct boot_info *bi) __attribute__((noreturn));
__attribute__((no_stack_protector))
void sdk_spt_start(const struct boot_info *bi)
{
    epollfd = bi->epollfd;
    timerfd = bi->timerfd;
    mono_boot = clock_of(CLOCK_MONOTONIC);
    s5_manifest = (const struct s5_mft *)(uintptr_t)bi->mft;
    sdk_start(_end, (char *)(uintptr_t)(bi->mem_size - STACK_RESERVE),
              (const char *)(uintptr_t)bi->cmdline);
}
