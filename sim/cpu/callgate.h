/* What native code above the vCPU (a personality's port server, built as
 * a library of its own) may use of the gate: the running step's clock,
 * read in place, and the types of a port server. It calls cg_now through
 * a pointer Python hands it. */
#ifndef PICOSIM_CALLGATE_H
#define PICOSIM_CALLGATE_H

#include <stdint.h>
#include <unicorn/unicorn.h>

/* Simulated time of the running step. It lives in Python-owned memory
 * (callgate.py's Clock mirrors it: keep the order and types in step), so
 * Python reads and writes it as plain attributes and it outlives the gate. */
struct clock {
    uint64_t step_ns;  /* simulated ns at the start of this run */
    uint64_t cost_ns;  /* ns charged by calls in this step */
    uint64_t mult;     /* cycles per instruction x 1000 x 1000000 */
    uint64_t hz;       /* clock rate */
    uint64_t epoch_ns; /* wall clock at simulated time 0 */
    uint64_t served;   /* calls answered here since the last drain */
    uint64_t insn_base;    /* instructions the guest retired before this run */
    uint64_t insn_base_ns; /* insn_base * mult / hz */
    uint64_t tsc_hz;       /* TSC rate; 0: RDTSC goes to Python */
    uint32_t open;     /* 0: every call goes to Python */
    uint32_t stopped;  /* a port server stopped the run after its `out` */
};

struct gate;

/* A native server for `out`: returns CG_DECLINED to hand the instruction
 * to Python untouched, CG_SERVED if it answered it (results written, cost
 * charged), CG_STOP if it answered it and the run must end there: it has
 * moved RIP past the instruction, and the gate stops the emulator and
 * sets clock->stopped. */
enum { CG_DECLINED = 0, CG_SERVED = 1, CG_STOP = 2 };
typedef int (*cg_out_server)(void *ctx, uc_engine *uc, uint32_t port, int size,
                             uint32_t value);

/* Simulated ns at this instruction (GuestServices.now()). */
uint64_t cg_now(struct gate *g);

#endif
