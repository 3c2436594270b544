/* The hvt backend: the SDK's backend interface and the Solo5 devices over
 * hvt hypercalls (outl %eax, %dx with DX = 0x500 + nr, EAX = the address of
 * the call's struct; the monitor fills the OUT fields before the next
 * instruction runs). */
#include "sdk_backend.h"
#include "solo5_dev.h"

#define HC_WALLTIME 1
#define HC_PUTS 2
#define HC_POLL 3
#define HC_BLOCK_WRITE 4
#define HC_BLOCK_READ 5
#define HC_NET_WRITE 6
#define HC_NET_READ 7
#define HC_HALT 8
#define ABORT_STATUS 255
#define TRAP_VECTORS 21

struct boot_info {
    uint64_t mem_size, kernel_end, cpu_cycle_freq, cmdline, mft;
    uint32_t host_features, guest_features;
    uint64_t net_ring;
};
struct hc_walltime { uint64_t nsecs; };
struct hc_puts { const char *data; uint64_t len; };
struct hc_poll { uint64_t timeout_nsecs; uint64_t ready_set; int32_t ret; };
struct hc_block { uint64_t handle, offset; void *data; uint64_t len; int32_t ret; };
struct hc_net { uint64_t handle; void *data; uint64_t len; int32_t ret; };
struct hc_halt { void *cookie; int32_t exit_status; };

static inline void hypercall(unsigned nr, volatile void *arg)
{
    __asm__ volatile("outl %0, %w1"
                     :
                     : "a"((uint32_t)(uintptr_t)arg), "d"(0x500 + nr)
                     : "memory");
}

static uint64_t tsc_freq, tsc_boot;

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

void sdk_backend_write(const char *buf, size_t len)
{
    struct hc_puts p = {buf, len};
    hypercall(HC_PUTS, &p);
}

void sdk_backend_exit(int status)
{
    struct hc_halt h = {0, status};
    hypercall(HC_HALT, &h);
    for (;;)
        __asm__ volatile("hlt");
}

void sdk_backend_abort(void)
{
    static const char msg[] = "Solo5: ABORT: abort() called\n";
    sdk_backend_write(msg, sizeof msg - 1);
    sdk_backend_exit(ABORT_STATUS);
}

uint64_t sdk_backend_clock_ns(void)
{
    unsigned __int128 ticks = rdtsc() - tsc_boot;
    return (uint64_t)(ticks * 1000000000u / tsc_freq);
}

uint64_t sdk_backend_wall_ns(void)
{
    struct hc_walltime w = {0};
    hypercall(HC_WALLTIME, &w);
    return w.nsecs;
}

void s5_yield(uint64_t deadline_ns, uint64_t *ready_set)
{
    uint64_t now = sdk_backend_clock_ns();
    struct hc_poll p = {deadline_ns > now ? deadline_ns - now : 0, 0, 0};
    hypercall(HC_POLL, &p);
    if (ready_set)
        *ready_set = p.ready_set;
}


int s5_block_write(uint64_t handle, uint64_t offset, const void *buf, size_t len)
{
    struct hc_block b = {handle, offset, (void *)buf, len, 0};
    hypercall(HC_BLOCK_WRITE, &b);
    return b.ret;
}

int s5_block_read(uint64_t handle, uint64_t offset, void *buf, size_t len)
{
    struct hc_block b = {handle, offset, buf, len, 0};
    hypercall(HC_BLOCK_READ, &b);
    return b.ret;
}

int s5_net_write(uint64_t handle, const void *buf, size_t len)
{
    struct hc_net n = {handle, (void *)buf, len, 0};
    hypercall(HC_NET_WRITE, &n);
    return n.ret;
}

int s5_net_read(uint64_t handle, void *buf, size_t size, size_t *read)
{
    struct hc_net n = {handle, buf, size, 0};
    hypercall(HC_NET_READ, &n);
    if (n.ret == S5_OK && read)
        *read = n.len;
    return n.ret;
}

/* -- exceptions: our own IDT, as a Solo5 guest has ------------------------- */
struct gate {
    uint16_t off_lo, sel;
    uint8_t ist, type;
    uint16_t off_mid;
    uint32_t off_hi, zero;
};
static struct gate idt[TRAP_VECTORS] __attribute__((aligned(16)));
extern void (*const s5_trap_stubs[TRAP_VECTORS])(void);

static const char *const trap_names[TRAP_VECTORS] = {
    "#DE", "#DB", "#NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE"};

struct trap_frame { uint64_t vector, error, rip, cs, rflags, rsp, ss; };

void s5_hvt_trap(const struct trap_frame *f) __attribute__((noreturn));
__attribute__((no_stack_protector))
void s5_hvt_trap(const struct trap_frame *f)
{
    static const char head[] = "Solo5: trap: type=";
    sdk_backend_write(head, sizeof head - 1);
    const char *name = f->vector < TRAP_VECTORS ? trap_names[f->vector] : "?";
    size_t n = 0;
    while (name[n])
        n++;
    sdk_backend_write(name, n);
    s5_put_hex(" ec=", f->error);
    s5_put_hex(" rip=", f->rip);
    s5_put_hex(" rsp=", f->rsp);
    s5_put_hex(" rflags=", f->rflags);
    if (f->vector == 14) {
        uint64_t cr2;
        __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
        s5_put_hex(" cr2=", cr2);
    }
    static const char tail[] = "\nSolo5: ABORT: guest trap\n";
    sdk_backend_write(tail, sizeof tail - 1);
    sdk_backend_exit(ABORT_STATUS);
}

static void idt_init(void)
{
    for (int v = 0; v < TRAP_VECTORS; v++) {
        uint64_t a = (uint64_t)(uintptr_t)s5_trap_stubs[v];
        idt[v] = (struct gate){(uint16_t)a, 0x08, 0, 0x8e, (uint16_t)(a >> 16),
                               (uint32_t)(a >> 32), 0};
    }
    struct __attribute__((packed)) { uint16_t limit; uint64_t base; } idtr = {
        sizeof idt - 1, (uint64_t)(uintptr_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

#define STACK_RESERVE (128 << 10)
extern char _end[];

void sdk_hvt_start(const struct boot_info *bi) __attribute__((noreturn));
__attribute__((no_stack_protector))
void sdk_hvt_start(const struct boot_info *bi)
{
    idt_init();
    tsc_freq = bi->cpu_cycle_freq;
    tsc_boot = rdtsc();
    s5_manifest = (const struct s5_mft *)(uintptr_t)bi->mft;
    sdk_start(_end, (char *)(uintptr_t)(bi->mem_size - STACK_RESERVE),
              (const char *)(uintptr_t)bi->cmdline);
}
