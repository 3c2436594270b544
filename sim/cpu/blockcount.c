/* Native instruction accounting for picosim's vCPU (see blockcount.py).
 *
 * A UC_HOOK_BLOCK callback adds each entered translation block's
 * instruction count to a per-slice counter and asks Unicorn to stop
 * before the first block that would take the slice over its budget.
 * A block's count comes from uc_ctl_request_cache (uc_tb.icount), asked
 * once per block address and then kept in a small open-addressing hash
 * table keyed by address (and checked against the block's byte size, so
 * a block retranslated with another shape is looked up again).
 *
 * Linking: this file calls no libunicorn symbol directly. The Python
 * binding has already loaded libunicorn.so.2 with RTLD_LOCAL, so its
 * symbols are not visible to a library loaded later, and linking against
 * the wheel's copy would depend on the loader recognising the very same
 * file. Instead Python passes the addresses of uc_ctl, uc_emu_stop,
 * uc_hook_add and uc_hook_del taken from the binding's own library
 * object: we are certain to call into the instance that owns the engine,
 * and the .so needs only the unicorn headers to build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicorn/unicorn.h>
#include <unicorn/x86.h>

typedef uc_err (*ctl_fn)(uc_engine *, uc_control_type, ...);
typedef uc_err (*stop_fn)(uc_engine *);
typedef uc_err (*hook_add_fn)(uc_engine *, uc_hook *, int, void *, void *,
                              uint64_t, uint64_t, ...);
typedef uc_err (*hook_del_fn)(uc_engine *, uc_hook);
typedef uc_err (*emu_start_fn)(uc_engine *, uint64_t, uint64_t, uint64_t, size_t);
typedef uc_err (*reg_read_fn)(uc_engine *, int, void *);

struct entry {
    uint64_t addr;   /* block start; EMPTY when the slot is free */
    uint32_t size;   /* block size in bytes, as the hook reports it */
    uint32_t icount; /* instructions in the block */
};

#define EMPTY UINT64_MAX

/* The first fields are mirrored by a ctypes Structure in blockcount.py:
 * keep their order and types in step. */
struct bc_state {
    uint64_t retired;     /* instructions in blocks entered this slice */
    uint64_t budget;      /* slice budget; UINT64_MAX when unarmed */
    uint64_t last_block;  /* address of the last block entered */
    uint64_t last_icount; /* its instruction count */
    uint64_t lookups;     /* uc_ctl_request_cache calls so far */
    uint64_t last_size;   /* its size in bytes */
    uint32_t budget_hit;  /* the hook stopped emulation for the budget */
    uint32_t error;       /* a uc_ctl error code, 0 if none */
    uint64_t rip;         /* where the last bc_run started, then where it stopped */
    /* private */
    uc_engine *uc;
    uc_hook hook;
    ctl_fn ctl;
    stop_fn stop;
    hook_del_fn hook_del;
    emu_start_fn emu_start;
    reg_read_fn reg_read;
    struct entry *tab;
    size_t cap; /* power of two */
    size_t used;
};

static size_t slot_of(uint64_t addr, size_t cap)
{
    uint64_t h = addr * 0x9E3779B97F4A7C15ull; /* Fibonacci hashing */
    return (size_t)(h >> 32) & (cap - 1);
}

static int table_init(struct bc_state *st, size_t cap)
{
    st->tab = malloc(cap * sizeof *st->tab);
    if (!st->tab)
        return -1;
    for (size_t i = 0; i < cap; i++)
        st->tab[i].addr = EMPTY;
    st->cap = cap;
    st->used = 0;
    return 0;
}

static void table_put(struct bc_state *st, uint64_t addr, uint32_t size,
                      uint32_t icount);

/* Rehash into a table of capacity cap, dropping entries in [lo, hi). */
static int table_rebuild(struct bc_state *st, size_t cap, uint64_t lo,
                         uint64_t hi)
{
    struct entry *old = st->tab;
    size_t oldcap = st->cap;
    if (table_init(st, cap) != 0) {
        st->tab = old;
        st->cap = oldcap;
        return -1;
    }
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].addr == EMPTY)
            continue;
        if (old[i].addr >= lo && old[i].addr < hi)
            continue;
        table_put(st, old[i].addr, old[i].size, old[i].icount);
    }
    free(old);
    return 0;
}

static void table_put(struct bc_state *st, uint64_t addr, uint32_t size,
                      uint32_t icount)
{
    if (2 * (st->used + 1) > st->cap)
        table_rebuild(st, st->cap * 2, 1, 0); /* empty range: keep all */
    size_t i = slot_of(addr, st->cap);
    while (st->tab[i].addr != EMPTY && st->tab[i].addr != addr)
        i = (i + 1) & (st->cap - 1);
    if (st->tab[i].addr == EMPTY)
        st->used++;
    st->tab[i].addr = addr;
    st->tab[i].size = size;
    st->tab[i].icount = icount;
}

static uint32_t icount_of(struct bc_state *st, uint64_t addr, uint32_t size)
{
    size_t i = slot_of(addr, st->cap);
    while (st->tab[i].addr != EMPTY) {
        if (st->tab[i].addr == addr && st->tab[i].size == size)
            return st->tab[i].icount;
        if (st->tab[i].addr == addr)
            break; /* same start, other shape: ask again */
        i = (i + 1) & (st->cap - 1);
    }
    uc_tb tb;
    memset(&tb, 0, sizeof tb);
    st->lookups++;
    uc_err err = st->ctl(st->uc, UC_CTL_READ_WRITE(UC_CTL_TB_REQUEST_CACHE, 2),
                         addr, &tb);
    if (err != UC_ERR_OK || tb.size != size) {
        /* Should not happen: the block is the one being run. Record it so
         * the Python side can raise, and stop the guest. */
        if (!st->error)
            st->error = err != UC_ERR_OK ? (uint32_t)err : 0xFFFFu;
        return 0;
    }
    table_put(st, addr, size, tb.icount);
    return tb.icount;
}

static void block_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct bc_state *st = ud;
    (void)uc;
    uint32_t n = icount_of(st, addr, size);
    if (st->error) {
        st->stop(st->uc);
        return;
    }
    /* Unicorn emits the block hook before the block's exit-request check,
     * so a stop asked for here happens before the block's first
     * instruction: the block is not entered and is not counted. The first
     * block of a slice always runs, so every slice makes progress. */
    if (st->retired > 0 && st->retired + n > st->budget) {
        st->budget_hit = 1;
        st->stop(st->uc);
        return;
    }
    st->retired += n;
    st->last_block = addr;
    st->last_icount = n;
    st->last_size = size;
    /* No stop here even when the budget is now used up: a stop asked for
     * now would cancel this very block (see above). The next block's hook
     * finds that it does not fit and stops there. */
}

struct bc_state *bc_new(uc_engine *uc, void *ctl, void *stop, void *hook_add,
                        void *hook_del)
{
    struct bc_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    if (table_init(st, 256) != 0) {
        free(st);
        return NULL;
    }
    st->uc = uc;
    st->ctl = (ctl_fn)ctl;
    st->stop = (stop_fn)stop;
    st->hook_del = (hook_del_fn)hook_del;
    st->budget = UINT64_MAX;
    st->last_block = UINT64_MAX;
    /* begin > end: the hook covers every address. */
    uc_err err = ((hook_add_fn)hook_add)(uc, &st->hook, UC_HOOK_BLOCK,
                                         (void *)block_hook, st, 1, 0);
    if (err != UC_ERR_OK) {
        free(st->tab);
        free(st);
        return NULL;
    }
    return st;
}

void bc_arm(struct bc_state *st, uint64_t budget)
{
    st->retired = 0;
    st->budget = budget;
    st->budget_hit = 0;
    st->last_block = UINT64_MAX;
    st->last_icount = 0;
    st->last_size = 0;
}

/* What bc_run calls: libunicorn's uc_emu_start and uc_reg_read. */
void bc_set_runner(struct bc_state *st, void *emu_start, void *reg_read)
{
    st->emu_start = (emu_start_fn)emu_start;
    st->reg_read = (reg_read_fn)reg_read;
}

/* One slice from RIP: arm the budget, emulate until a stop, and leave in
 * st->rip where it stopped. One call from Python instead of four (read
 * RIP, arm, start, read RIP). Returns uc_emu_start's status; -1 when RIP
 * cannot be read. */
int bc_run(struct bc_state *st, uint64_t budget, uint64_t until)
{
    if (st->reg_read(st->uc, UC_X86_REG_RIP, &st->rip) != UC_ERR_OK)
        return -1;
    bc_arm(st, budget);
    uc_err err = st->emu_start(st->uc, st->rip, until, 0, 0);
    if (st->reg_read(st->uc, UC_X86_REG_RIP, &st->rip) != UC_ERR_OK && err == UC_ERR_OK)
        return -1;
    return (int)err;
}

int bc_forget(struct bc_state *st, uint64_t lo, uint64_t hi)
{
    return table_rebuild(st, st->cap, lo, hi);
}

/* The host wrote guest memory in [lo, hi): drop Unicorn's translations
 * there (uc_mem_write keeps them) and the counts of blocks that start there,
 * rebuilding the table only when there are some. One call from Python
 * instead of two, and no rebuild for the usual write over plain data.
 * Returns uc_ctl's status, or -1 when the table cannot be rebuilt. */
int bc_code_changed(struct bc_state *st, uint64_t lo, uint64_t hi)
{
    uc_err err = st->ctl(st->uc, UC_CTL_WRITE(UC_CTL_TB_REMOVE_CACHE, 2), lo, hi);
    if (err != UC_ERR_OK)
        return (int)err;
    for (size_t i = 0; i < st->cap; i++)
        if (st->tab[i].addr != EMPTY && st->tab[i].addr >= lo && st->tab[i].addr < hi)
            return table_rebuild(st, st->cap, lo, hi);
    return 0;
}

/* Instruction count of a cached block, or -1 if not cached. */
int64_t bc_cached(struct bc_state *st, uint64_t addr)
{
    size_t i = slot_of(addr, st->cap);
    while (st->tab[i].addr != EMPTY) {
        if (st->tab[i].addr == addr)
            return st->tab[i].icount;
        i = (i + 1) & (st->cap - 1);
    }
    return -1;
}

void bc_free(struct bc_state *st)
{
    if (!st)
        return;
    st->hook_del(st->uc, st->hook);
    free(st->tab);
    free(st);
}
