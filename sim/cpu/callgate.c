/* The vCPU's syscall gate (see callgate.py), its RDTSC and its out ports.
 *
 * A UC_HOOK_INSN hook on `syscall`. While the gate is open, a call whose
 * number (RAX) the personality registered as a clock read is answered
 * here, inside the emulator, the way Linux's vDSO answers clock_gettime
 * without entering the kernel: RAX gets the simulated time of this very
 * instruction, the call's cost is charged, and the call is counted. Every
 * other syscall goes to the Python callback, which is the vCPU's ordinary
 * trap path.
 *
 * Simulated time here is GuestServices.now() with TimeModel's formula:
 *     now = step_ns + (insn_base + retired) * mult / hz - insn_base_ns + cost_ns
 * with retired read from the instruction counter's state (blockcount.c),
 * so the number is the one the Python side would have computed. (Time of
 * instructions is a difference of the guest's whole count, so where runs
 * and slices end does not change it.)
 *
 * RDTSC is answered here too once Python sets the clock's tsc_hz: the TSC
 * follows simulated time, tsc = now * tsc_hz / 10^9 (TimeModel.ns_to_tsc).
 * Until then it goes to the Python callback.
 *
 * Every `out` enters the gate too. A personality may plug in a native
 * server for its ports (cg_serve_out; hvt's is sim/libos/hvtgate.c); while
 * the gate is open the server sees each `out` first and answers the ones
 * it can. Whatever it declines goes to the Python callback.
 *
 * Like blockcount.c, this file calls no libunicorn symbol directly: the
 * functions it needs are handed in as pointers taken from the binding's own
 * library object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unicorn/unicorn.h>
#include <unicorn/x86.h>

#include "callgate.h"

typedef uc_err (*hook_add_fn)(uc_engine *, uc_hook *, int, void *, void *,
                              uint64_t, uint64_t, ...);
typedef uc_err (*hook_del_fn)(uc_engine *, uc_hook);
typedef uc_err (*reg_fn)(uc_engine *, int, void *);
typedef void (*fallback_fn)(uc_engine *, void *);
typedef uint32_t (*rdtsc_fn)(uc_engine *, void *);
typedef uc_err (*reg_batch_fn)(uc_engine *, int *, void **, int);
typedef void (*out_fallback_fn)(uc_engine *, uint32_t, int, uint32_t, void *);
typedef uc_err (*emu_stop_fn)(uc_engine *);

/* The syscall convention: number in RAX, arguments in RDI RSI RDX R10 R8 R9. */
#define SYSCALL_REGS 7
static int syscall_regs[SYSCALL_REGS] = {UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI,
                                         UC_X86_REG_RDX, UC_X86_REG_R10, UC_X86_REG_R8,
                                         UC_X86_REG_R9};

#define GATE_CALLS 1024 /* call numbers the gate can serve: 0 .. GATE_CALLS-1 */

enum { SERVE_PYTHON = 0, SERVE_MONOTONIC = 1, SERVE_WALL = 2 };

struct gate {
    struct clock *clock;
    const uint64_t *retired; /* the instruction counter's running count */
    uc_engine *uc;
    uc_hook hook;
    uc_hook tsc_hook;
    hook_del_fn hook_del;
    reg_fn reg_read;
    reg_fn reg_write;
    fallback_fn fallback;
    rdtsc_fn tsc_fallback;
    reg_batch_fn read_batch;
    uc_hook out_hook;
    out_fallback_fn out_fallback;
    cg_out_server out_server; /* NULL: every out goes to Python */
    void *out_ctx;
    emu_stop_fn emu_stop;
    void *arg_slots[SYSCALL_REGS]; /* into Python's array: nr, a0..a5 */
    uint8_t kind[GATE_CALLS];
    uint64_t cost[GATE_CALLS];
    uint64_t count[GATE_CALLS];
};

static uint64_t now_ns(const struct clock *c, uint64_t retired)
{
    unsigned __int128 total = (unsigned __int128)c->insn_base + retired;
    uint64_t insn_ns = (uint64_t)(total * c->mult / c->hz);
    /* Modulo 2^64, like the ctypes fields Python writes. */
    return c->step_ns + (insn_ns - c->insn_base_ns) + c->cost_ns;
}

static void syscall_hook(uc_engine *uc, void *ud)
{
    struct gate *g = ud;
    struct clock *c = g->clock;
    if (c->open) {
        uint64_t nr;
        if (g->reg_read(uc, UC_X86_REG_RAX, &nr) == UC_ERR_OK && nr < GATE_CALLS &&
            g->kind[nr] != SERVE_PYTHON) {
            uint64_t value = now_ns(c, *g->retired);
            if (g->kind[nr] == SERVE_WALL)
                value += c->epoch_ns;
            /* Charged after the read, as the Python path does. */
            c->cost_ns += g->cost[nr];
            g->count[nr]++;
            c->served++;
            g->reg_write(uc, UC_X86_REG_RAX, &value);
            return;
        }
    }
    /* Python reads the call number and arguments from its array: one batch
     * read here costs less than one register read from Python. */
    g->read_batch(uc, syscall_regs, g->arg_slots, SYSCALL_REGS);
    g->fallback(uc, NULL);
}

static void out_hook(uc_engine *uc, uint32_t port, int size, uint32_t value, void *ud)
{
    struct gate *g = ud;
    if (g->clock->open && g->out_server) {
        int served = g->out_server(g->out_ctx, uc, port, size, value);
        if (served == CG_STOP) {
            g->clock->stopped = 1;
            g->emu_stop(uc);
        }
        if (served != CG_DECLINED)
            return;
    }
    g->out_fallback(uc, port, size, value, NULL);
}

/* Returns 1: Unicorn skips the instruction, whose result we wrote. */
static uint32_t rdtsc_hook(uc_engine *uc, void *ud)
{
    struct gate *g = ud;
    struct clock *c = g->clock;
    if (!c->tsc_hz)
        return g->tsc_fallback(uc, NULL);
    unsigned __int128 ticks = (unsigned __int128)now_ns(c, *g->retired) * c->tsc_hz;
    uint64_t tsc = (uint64_t)(ticks / 1000000000u);
    uint64_t lo = tsc & 0xFFFFFFFFu, hi = tsc >> 32;
    g->reg_write(uc, UC_X86_REG_RAX, &lo);
    g->reg_write(uc, UC_X86_REG_RDX, &hi);
    return 1;
}

struct gate *cg_new(uc_engine *uc, struct clock *clock,
                    const uint64_t *retired, void *hook_add,
                    void *hook_del, void *reg_read, void *reg_write,
                    void *fallback, void *tsc_fallback, void *read_batch,
                    uint64_t *args, void *out_fallback, void *emu_stop)
{
    struct gate *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->clock = clock;
    g->retired = retired;
    g->uc = uc;
    g->hook_del = (hook_del_fn)hook_del;
    g->reg_read = (reg_fn)reg_read;
    g->reg_write = (reg_fn)reg_write;
    g->fallback = (fallback_fn)fallback;
    g->tsc_fallback = (rdtsc_fn)tsc_fallback;
    g->read_batch = (reg_batch_fn)read_batch;
    g->out_fallback = (out_fallback_fn)out_fallback;
    g->emu_stop = (emu_stop_fn)emu_stop;
    for (int i = 0; i < SYSCALL_REGS; i++)
        g->arg_slots[i] = &args[i];
    uc_err err = ((hook_add_fn)hook_add)(uc, &g->hook, UC_HOOK_INSN,
                                         (void *)syscall_hook, g, 1, 0,
                                         UC_X86_INS_SYSCALL);
    if (err != UC_ERR_OK) {
        free(g);
        return NULL;
    }
    err = ((hook_add_fn)hook_add)(uc, &g->tsc_hook, UC_HOOK_INSN, (void *)rdtsc_hook, g,
                                  1, 0, UC_X86_INS_RDTSC);
    if (err != UC_ERR_OK) {
        g->hook_del(uc, g->hook);
        free(g);
        return NULL;
    }
    err = ((hook_add_fn)hook_add)(uc, &g->out_hook, UC_HOOK_INSN, (void *)out_hook, g,
                                  1, 0, UC_X86_INS_OUT);
    if (err != UC_ERR_OK) {
        g->hook_del(uc, g->hook);
        g->hook_del(uc, g->tsc_hook);
        free(g);
        return NULL;
    }
    return g;
}

/* Serve call nr here as a clock read of the given kind (SERVE_PYTHON
 * hands it back to Python). Returns -1 for a number out of range. */
int cg_serve(struct gate *g, uint64_t nr, uint32_t kind, uint64_t cost_ns)
{
    if (nr >= GATE_CALLS || kind > SERVE_WALL)
        return -1;
    g->kind[nr] = (uint8_t)kind;
    g->cost[nr] = cost_ns;
    return 0;
}

/* Let server(ctx, ...) see every `out` first while the gate is open;
 * NULL unplugs it. */
void cg_serve_out(struct gate *g, void *server, void *ctx)
{
    g->out_server = (cg_out_server)server;
    g->out_ctx = ctx;
}

uint64_t cg_now(struct gate *g)
{
    return now_ns(g->clock, *g->retired);
}

/* Move the per-call counts out as (nr, count) pairs into out[0 .. 2 *
 * GATE_CALLS) and clear them; returns the number of pairs. */
int cg_drain(struct gate *g, uint64_t *out)
{
    int pairs = 0;
    for (size_t nr = 0; nr < GATE_CALLS; nr++) {
        if (g->count[nr]) {
            out[2 * pairs] = nr;
            out[2 * pairs + 1] = g->count[nr];
            pairs++;
            g->count[nr] = 0;
        }
    }
    g->clock->served = 0;
    return pairs;
}

/* now_ns for a given instruction count: lets tests hold the formula to
 * TimeModel's. */
uint64_t cg_time_at(struct gate *g, uint64_t retired)
{
    return now_ns(g->clock, retired);
}

void cg_free(struct gate *g)
{
    if (!g)
        return;
    g->hook_del(g->uc, g->hook);
    g->hook_del(g->uc, g->tsc_hook);
    g->hook_del(g->uc, g->out_hook);
    free(g);
}
