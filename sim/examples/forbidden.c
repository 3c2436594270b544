/* forbidden: tries what its manifest forbids and reports each denial.
 * Every attempt must fail with the expected error; the exit status is the
 * number of attempts that did not (0 = the monitor held everywhere). */
#include <picolibos.h>

static int failures;

static void expect(const char *what, long got, long want)
{
    int ok = got == want;
    printf("%-48s -> %-32s %s\n", what, got >= 0 ? "allowed" : pl_strerror(got),
           ok ? "denied as expected" : "UNEXPECTED");
    if (!ok)
        failures++;
}

static uint32_t gate;

static void sleeper(void *arg)
{
    (void)arg;
    while (__atomic_load_n(&gate, __ATOMIC_ACQUIRE) == 0)
        pico_futex_wait((uint64_t)(uintptr_t)&gate, 0, 0);
}

int main(void)
{
    expect("open file:../escape.txt", pl_open("file:../escape.txt", PL_OPEN_WRITE | PL_OPEN_CREATE),
           PICO_EPERM);
    expect("open file:/etc/passwd", pl_open("file:/etc/passwd", PL_OPEN_READ), PICO_EPERM);
    expect("open file:a/./../../b", pl_open("file:a/./../../b", PL_OPEN_READ), PICO_EPERM);
    expect("connect chan:secret (not in uris)", pl_connect("chan:secret"), PICO_EPERM);
    expect("listen chan:kv (call not in manifest)", pl_listen("chan:kv"), PICO_EPERM);
    expect("open pipe:x (not in uris)", pl_open("pipe:x", PL_OPEN_WRITE), PICO_EPERM);
    expect("vm_alloc 1 MiB (quota 512 KiB)", pico_vm_alloc(1 << 20, PL_PROT_READ | PL_PROT_WRITE),
           PICO_ENOMEM);
    long p = pico_vm_alloc(4096, PL_PROT_READ | PL_PROT_WRITE);
    expect("vm_protect to write+execute (W^X)", pico_vm_protect(p, 4096, 7), PICO_EINVAL);
    expect("console_write from outside memory", pico_console_write((void *)(1ULL << 40), 16),
           PICO_EFAULT);
    expect("console_write straddling the NULL page", pico_console_write((void *)0xff0, 32),
           PICO_EFAULT);
    expect("unknown call number 999", __pico_syscall0(999), PICO_ENOSYS);
    expect("close a handle never opened", pl_close(12345), PICO_EBADH);

    /* A thread bomb: the manifest allows 4 threads in all. */
    pl_thread_t t[8];
    int started = 0;
    long r = 0;
    while (started < 8 && (r = pl_thread_create(&t[started], sleeper, NULL)) == 0)
        started++;
    printf("thread bomb: started %d threads before the limit\n", started);
    expect("thread_create past the thread limit", r, PICO_ELIMIT);
    __atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
    pico_futex_wake((uint64_t)(uintptr_t)&gate, 100);
    for (int i = 0; i < started; i++)
        pl_thread_join(&t[i]);

    long ok = pl_open("file:notes.txt", PL_OPEN_WRITE | PL_OPEN_CREATE);
    printf("%-48s -> %s\n", "open file:notes.txt (allowed)", ok >= 0 ? "allowed" : pl_strerror(ok));
    if (ok < 0)
        failures++;
    printf("forbidden: %d unexpected outcome(s)\n", failures);
    return failures;
}
