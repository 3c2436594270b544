/* The pico backend: the SDK's backend interface on the pico ABI's calls
 * (pico_abi.h is generated from sim/libos/pico_abi.py at build time). */
#include "picolibos.h"
#include "sdk_backend.h"

#define PICO_ABORT_STATUS 134 /* 128 + SIGABRT, as a shell reports abort() */

void sdk_backend_write(const char *buf, size_t len)
{
    while (len) {
        long n = pico_console_write(buf, len);
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

void sdk_backend_exit(int status)
{
    pico_exit(status);
    for (;;)
        __asm__ volatile("hlt");
}

void sdk_backend_abort(void)
{
    sdk_backend_exit(PICO_ABORT_STATUS);
}

uint64_t sdk_backend_clock_ns(void)
{
    return (uint64_t)pico_clock_monotonic();
}

uint64_t sdk_backend_wall_ns(void)
{
    return (uint64_t)pico_clock_wall();
}

void sdk_backend_sleep_ns(uint64_t ns)
{
    pico_sleep_until(sdk_backend_clock_ns() + ns);
}

int sdk_backend_random(void *buf, size_t len)
{
    long n = pico_random_bytes(buf, len);
    return n < 0 ? (int)n : 0;
}

/* Threads are preempted at any slice end, inside malloc too. */
static pl_mutex_t heap_mutex = PL_MUTEX_INIT;

void sdk_backend_heap_lock(void)
{
    pl_mutex_lock(&heap_mutex);
}

void sdk_backend_heap_unlock(void)
{
    pl_mutex_unlock(&heap_mutex);
}

static char cmdline[4096];

void sdk_pico_start(const struct pico_boot_info *boot) __attribute__((noreturn));

__attribute__((no_stack_protector))
void sdk_pico_start(const struct pico_boot_info *boot)
{
    long n = pico_cmdline(cmdline, sizeof cmdline);
    if (n <= 0)
        cmdline[0] = '\0';
    cmdline[sizeof cmdline - 1] = '\0'; /* a longer command line is cut */
    sdk_start((void *)boot->heap_start, (void *)boot->heap_end, cmdline);
}
