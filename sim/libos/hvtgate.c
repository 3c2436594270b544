/* hvt hypercalls answered inside the emulator (see hvtgate.py).
 *
 * A port server for the vCPU's gate (sim/cpu/callgate.h). While the gate
 * is open it sees every `out` first and answers, without leaving the
 * emulator, the hypercalls an echo or a busy network loop makes:
 *
 *   WALLTIME   the simulated wall clock of this instruction;
 *   NET_WRITE  the frame is copied into tx[]; Python hands tx[] to the
 *              switch when the run ends (the switch stamps frames with the
 *              step's start time, so that is the same moment);
 *   NET_READ   the next of the frames Python copied from the NIC's queue
 *              before the run, or AGAIN when the queue is empty;
 *   POLL       when a device is ready or the timeout is 0 it returns at
 *              once. Else Python's wait runs the simulation inside this
 *              hook until a frame comes or the time is up (Solo5's tender
 *              waits in its POLL exit the same way), and POLL returns what
 *              is ready then; where the runner cannot wait there, the run
 *              ends right after the `out` (RIP moved to the next
 *              instruction, from the image's table of port-I/O exits) and
 *              Python blocks the guest in simulated time.
 *
 * Anything else, and anything unusual (a pointer outside memory, a bad
 * handle, a frame that does not fit, tx[] full, more frames queued than
 * staged, an `out` missing from the exit table) is declined untouched, so
 * the Python handlers in hvt.py give every diagnosis. A served call is
 * charged the VM exit and counted, as on the Python path.
 *
 * Struct layouts are not written here: Python fills in each field's offset
 * from the hypercall declarations in hvt.py.
 *
 * This is a library of its own (sim/libos/_hvtgate.so): it reaches the gate
 * through callgate.h's types and the function pointers Python hands in.
 */
#include <stdint.h>
#include <string.h>
#include <unicorn/unicorn.h>
#include <unicorn/x86.h>

#include "callgate.h"

#define HG_PORT_BASE 0x500
#define HG_CALLS 64  /* ports 0x500 .. 0x53f */
#define HG_DEVICES 64 /* manifest entries; a device's handle is its index */
#define HG_STAGE 8    /* NIC frames staged per device and run */
#define HG_TX_BYTES 65536
#define HG_STRUCT_MAX 64
#define ETHER_HEADER 14

enum { HG_PYTHON = 0, HG_WALLTIME, HG_NET_WRITE, HG_NET_READ, HG_POLL };
/* Fields whose offsets Python fills in per call, in this order. */
enum { F_NSECS, F_HANDLE, F_DATA, F_LEN, F_RET, F_TIMEOUT, F_READY, F_FIELDS };
enum { RET_OK = 0, RET_AGAIN = 1 };

typedef uc_err (*mem_read_fn)(uc_engine *, uint64_t, void *, size_t);
typedef uc_err (*mem_write_fn)(uc_engine *, uint64_t, const void *, size_t);
typedef uc_err (*reg_fn)(uc_engine *, int, void *);
typedef uint64_t (*now_fn)(struct gate *);
/* Python's wait in place: 0 woken (frames restaged), 1 wait outside the
 * run instead, -1 it raised (and stopped the emulator). */
typedef int (*wait_fn)(uint64_t timeout_ns);

/* Mirrors HgDevice in hvtgate.py: keep the order and types in step. */
struct hg_device {
    const uint8_t *rx; /* copies of the NIC's oldest queued frames, frame i
                          at rx + i * max_frame (Python-owned) */
    uint32_t frame_len[HG_STAGE];
    uint32_t attached;  /* a net device whose NIC exists */
    uint32_t max_frame; /* MTU + Ethernet header */
    uint32_t pending;   /* frames queued in the NIC when staged */
    uint32_t staged;    /* how many of them are in rx */
    uint32_t taken;     /* read by the guest since they were staged */
    uint32_t ready_bit; /* its bit in POLL's ready_set */
};

/* Mirrors HgState in hvtgate.py. */
struct hg_state {
    struct gate *gate;
    struct clock *clock;  /* the gate's clock (Python-owned) */
    now_fn now;           /* callgate.c's cg_now, handed in like libunicorn's functions */
    mem_read_fn mem_read;
    mem_write_fn mem_write;
    reg_fn reg_read;
    reg_fn reg_write;
    const uint64_t *exit_at;   /* sorted addresses of the image's in/out instructions */
    const uint64_t *exit_next; /* the address of the instruction after each */
    uint64_t exits;
    uint64_t wait_addr;    /* a POLL that ended the run: its struct, */
    uint64_t wait_timeout; /* its timeout_nsecs */
    uint64_t waiting;      /* and 1 until Python takes it */
    wait_fn wait;          /* NULL: a POLL that waits always ends the run */
    uint64_t mem_size;
    uint64_t exit_ns; /* what a hypercall costs: a VM exit and entry */
    uint64_t served;  /* hypercalls answered here since the last drain */
    uint64_t dirty;   /* frames taken or queued since the last sync */
    uint64_t count[HG_CALLS];
    uint8_t kind[HG_CALLS];
    uint8_t size[HG_CALLS];        /* struct bytes */
    uint16_t off[HG_CALLS][F_FIELDS];
    uint32_t tx_used;   /* bytes of tx[]: records of u32 handle, u32 len, frame */
    uint32_t tx_frames;
    uint8_t tx[HG_TX_BYTES];
    struct hg_device dev[HG_DEVICES];
};

static uint64_t rd64(const uint8_t *s, uint16_t off)
{
    uint64_t v;
    memcpy(&v, s + off, 8);
    return v;
}

static int in_memory(const struct hg_state *h, uint64_t addr, uint64_t len)
{
    return addr <= h->mem_size && len <= h->mem_size - addr;
}

/* OUT fields: hg_serve checked that the whole struct lies in guest
 * memory, so these writes cannot fail. */
static void put32(struct hg_state *h, uc_engine *uc, uint64_t addr, uint16_t off, uint32_t v)
{
    h->mem_write(uc, addr + off, &v, 4);
}

static void put64(struct hg_state *h, uc_engine *uc, uint64_t addr, uint16_t off, uint64_t v)
{
    h->mem_write(uc, addr + off, &v, 8);
}

static struct hg_device *net_device(struct hg_state *h, const uint8_t *s, const uint16_t *off)
{
    uint64_t handle = rd64(s, off[F_HANDLE]);
    if (handle >= HG_DEVICES || !h->dev[handle].attached)
        return NULL;
    return &h->dev[handle];
}

static int walltime(struct hg_state *h, uc_engine *uc, uint64_t addr, const uint8_t *s,
                    const uint16_t *off)
{
    (void)s;
    struct clock *c = h->clock;
    c->cost_ns += h->exit_ns; /* charged first, as on_trap does */
    put64(h, uc, addr, off[F_NSECS], h->now(h->gate) + c->epoch_ns);
    return CG_SERVED;
}

static int net_write(struct hg_state *h, uc_engine *uc, uint64_t addr, const uint8_t *s,
                     const uint16_t *off)
{
    struct hg_device *d = net_device(h, s, off);
    uint64_t data = rd64(s, off[F_DATA]), len = rd64(s, off[F_LEN]);
    if (!d || !in_memory(h, data, len) || len < ETHER_HEADER || len > d->max_frame ||
        len + 8 > HG_TX_BYTES - h->tx_used)
        return CG_DECLINED;
    uint8_t *rec = h->tx + h->tx_used;
    uint32_t head[2] = {(uint32_t)(d - h->dev), (uint32_t)len};
    if (h->mem_read(uc, data, rec + 8, len) != UC_ERR_OK)
        return CG_DECLINED;
    memcpy(rec, head, 8);
    h->tx_used += 8 + (uint32_t)len;
    h->tx_frames++;
    h->dirty++;
    h->clock->cost_ns += h->exit_ns;
    put32(h, uc, addr, off[F_RET], RET_OK);
    return CG_SERVED;
}

static int net_read(struct hg_state *h, uc_engine *uc, uint64_t addr, const uint8_t *s,
                    const uint16_t *off)
{
    struct hg_device *d = net_device(h, s, off);
    uint64_t data = rd64(s, off[F_DATA]), room = rd64(s, off[F_LEN]);
    if (!d || !in_memory(h, data, room))
        return CG_DECLINED;
    if (d->taken >= d->pending) { /* nothing queued */
        h->clock->cost_ns += h->exit_ns;
        put32(h, uc, addr, off[F_RET], RET_AGAIN);
        return CG_SERVED;
    }
    if (d->taken >= d->staged || d->frame_len[d->taken] > room)
        return CG_DECLINED;
    uint32_t len = d->frame_len[d->taken];
    if (h->mem_write(uc, data, d->rx + (size_t)d->taken * d->max_frame, len) != UC_ERR_OK)
        return CG_DECLINED;
    d->taken++;
    h->dirty++;
    h->clock->cost_ns += h->exit_ns;
    put64(h, uc, addr, off[F_LEN], len);
    put32(h, uc, addr, off[F_RET], RET_OK);
    return CG_SERVED;
}

/* The instruction after the in/out at rip, from the sorted exit table. */
static int exit_after(const struct hg_state *h, uint64_t rip, uint64_t *next)
{
    uint64_t lo = 0, hi = h->exits;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (h->exit_at[mid] < rip)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == h->exits || h->exit_at[lo] != rip)
        return 0;
    *next = h->exit_next[lo];
    return 1;
}

static uint64_t ready_set(const struct hg_state *h)
{
    uint64_t ready = 0;
    for (int i = 0; i < HG_DEVICES; i++) {
        const struct hg_device *d = &h->dev[i];
        if (d->attached && d->taken < d->pending)
            ready |= 1ull << d->ready_bit;
    }
    return ready;
}

static int poll(struct hg_state *h, uc_engine *uc, uint64_t addr, const uint8_t *s,
                const uint16_t *off)
{
    uint64_t ready = ready_set(h);
    uint64_t timeout = rd64(s, off[F_TIMEOUT]);
    if (!ready && timeout != 0) { /* a wait: Python blocks the guest */
        uint64_t rip, next;
        if (h->reg_read(uc, UC_X86_REG_RIP, &rip) != UC_ERR_OK || !exit_after(h, rip, &next))
            return CG_DECLINED;
        h->clock->cost_ns += h->exit_ns;
        if (h->wait) {
            int woken = h->wait(timeout);
            if (woken < 0)
                return CG_SERVED; /* the run ends with Python's exception */
            if (woken == 0) {
                ready = ready_set(h);
                put64(h, uc, addr, off[F_READY], ready);
                put32(h, uc, addr, off[F_RET], (uint32_t)__builtin_popcountll(ready));
                return CG_SERVED;
            }
        }
        if (h->reg_write(uc, UC_X86_REG_RIP, &next) != UC_ERR_OK)
            return CG_SERVED; /* cannot happen: RIP was just read */
        h->wait_addr = addr;
        h->wait_timeout = timeout;
        h->waiting = 1;
        return CG_STOP;
    }
    h->clock->cost_ns += h->exit_ns;
    put64(h, uc, addr, off[F_READY], ready);
    put32(h, uc, addr, off[F_RET], (uint32_t)__builtin_popcountll(ready));
    return CG_SERVED;
}

typedef int (*serve_fn)(struct hg_state *, uc_engine *, uint64_t, const uint8_t *,
                        const uint16_t *);
static const serve_fn serve[] = {
    [HG_WALLTIME] = walltime, [HG_NET_WRITE] = net_write,
    [HG_NET_READ] = net_read, [HG_POLL] = poll,
};

/* The cg_out_server (callgate.h). */
int hg_serve(void *ctx, uc_engine *uc, uint32_t port, int size, uint32_t value)
{
    struct hg_state *h = ctx;
    uint32_t nr = port - HG_PORT_BASE;
    if (size != 4 || port < HG_PORT_BASE || nr >= HG_CALLS)
        return CG_DECLINED;
    uint8_t kind = h->kind[nr];
    if (kind == HG_PYTHON || kind >= sizeof serve / sizeof *serve)
        return CG_DECLINED;
    uint8_t s[HG_STRUCT_MAX];
    uint64_t addr = value; /* EAX: the struct's guest-physical address */
    if (h->size[nr] > HG_STRUCT_MAX || !in_memory(h, addr, h->size[nr]) ||
        h->mem_read(uc, addr, s, h->size[nr]) != UC_ERR_OK)
        return CG_DECLINED;
    int served = serve[kind](h, uc, addr, s, h->off[nr]);
    if (served == CG_DECLINED)
        return CG_DECLINED;
    h->count[nr]++;
    h->served++;
    return served;
}
