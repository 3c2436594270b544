"""Deterministic instruction accounting for the vCPU.

The emulator runs a guest in slices and must know exactly how many guest
instructions each slice retired (simulated time = instructions x cycles per
instruction / clock), and must end a slice once a budget is used up.
:class:`InstructionCounter` does both with a UC_HOOK_BLOCK hook: each time a
translation block is entered, its instruction count is added to
``retired``. The native hook (``blockcount.c``, built by :func:`build`) gets
a block's count once from ``uc_ctl_request_cache`` (``uc_tb.icount``) and
keeps it in a small C hash table keyed by block address; the Python
fallback is a Python block hook that caches the same per-block count by
address (and capstone, cached by address, checks the last block of a slice,
see finding 3).
Both give identical counts (tests/test_blockcount.py checks this, and checks
both against Unicorn's own exact ``emu_start(count=N)``).

Semantics of a slice (both kinds)
---------------------------------
``arm(budget)`` starts a slice. A block is entered only if it fits:
the hook stops emulation *before* any block for which
``retired + icount > budget``, except that the first block of a slice always
runs so that every slice makes progress. Hence, for every slice,
``retired <= max(budget, size of the slice's first block)``, and ``retired``
is exactly the number of instructions the guest executed, at block
granularity. The slice may end up to one block short of the budget
(``budget_hit`` is then True and RIP is the start of the block not entered,
so the next slice resumes there). The stop cannot be made to land on the
budget itself without single-stepping, which is the slow ``count=`` mode;
no budget is ever overshot. A budget of N therefore means "at most N".

If emulation stops inside a block (a fault, a hook that calls emu_stop, a
hypercall that stops mid-block), ``retired`` still includes the whole
``last_block``. The caller corrects it with :func:`retired_before`:
``retired - last_icount + retired_before(uc, last_block, rip)`` (for a
fault, the faulting instruction and those after it did not retire). Stops
at ``syscall``/``hlt``/``int n`` and at exit addresses end a block there and
need no correction: ``hlt`` counts as retired.

Findings (measured with unicorn 2.1.4 on this 2-core machine; the tests pin
each of them down):

1. A ``uc_emu_stop()`` requested from a block hook takes effect *before*
   that block executes: Unicorn emits the block-hook call ahead of the
   block's exit-request check, so RIP stays at the block start, none of the
   block's effects are visible, and the next ``emu_start`` at RIP re-enters
   it (its hook fires again). With ``mov ecx,1000; l: add rax,rcx; dec ecx;
   jnz l`` (3001 instructions: a 4-instruction first block, then 999
   3-instruction blocks), ``arm(4)`` retired 4 and left RIP at ``l`` with
   rax=1000, rcx=999, the state ``count=4`` gives. For budgets
   1..7, 100 and 2999..3001, every slice's end
   state equalled the ``count=<instructions so far>`` state register for
   register, and the slices summed to 3001 (for 25 random budgets up to
   4000 the native and Python kinds gave identical slices). So the stop is
   exact at block
   boundaries: overshoot 0 (but for an oversized first block), undershoot
   < 1 block (budget 5 gives slices of 4, 3, 3, ...). Landing exactly on
   the budget inside a block would need count= mode or single-stepping;
   not done, by design (see "Semantics").
   A consequence: the hook must not stop when a block uses the budget up
   exactly (that would cancel the block just counted); the next block's
   hook stops instead.
2. Blocks translated before the hook was added carry no hook call and are
   not counted. Running the loop (to its ``hlt``) unhooked, then adding the
   counter and running it again retired 0 instead of 3002; after
   ``uc.ctl_flush_tb()`` it retired 3002. (When the earlier run ended at an
   ``until`` address, Unicorn's own invalidation at that address happened to
   retranslate the blocks and the late counter saw all 3001: whether late
   hooks apply depends on cache history.) Create the counter before the
   first ``emu_start``, or flush the translation cache.
3. Exit addresses (``ctl_exits_enabled``/``ctl_set_exits``, or ``until``):
   a block ends at an exit address and the block at the exit carries no
   block hook, so no instruction is counted past an exit; straight code of
   10 instructions with an exit at the 7th retired 6, the same state as
   ``count=6``. One trap: when the exit falls inside straight-line code,
   Unicorn ends the block with a zero-byte stop pseudo-instruction that
   ``uc_tb.icount`` counts (10 real instructions in 20 bytes reported as
   icount 11). Such a block is always the last of a run, so the counter
   corrects it when ``retired``/``last_icount`` are read (capstone count of
   the block's bytes = icount - 1, cached per block). The budget decision
   uses Unicorn's icount in both kinds, so the two kinds take identical
   decisions; for an exit-cut block that is one instruction conservative.

Speed: see docs/performance.md, "Instruction accounting".
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import unicorn
from unicorn import UC_HOOK_BLOCK

from sim.cpu import native
from sim.cpu.native import available as native_available
from sim.cpu.native import build

__all__ = [
    "AccountingError",
    "InstructionCounter",
    "build",
    "native_available",
    "retired_before",
]

_UNLIMITED = (1 << 64) - 1


class AccountingError(RuntimeError):
    """The native hook could not learn a block's size (should not happen)."""


class _State(ctypes.Structure):
    # Mirrors the public head of struct bc_state in blockcount.c.
    _fields_ = [
        ("retired", ctypes.c_uint64),
        ("budget", ctypes.c_uint64),
        ("last_block", ctypes.c_uint64),
        ("last_icount", ctypes.c_uint64),
        ("lookups", ctypes.c_uint64),
        ("last_size", ctypes.c_uint64),
        ("budget_hit", ctypes.c_uint32),
        ("error", ctypes.c_uint32),
        ("rip", ctypes.c_uint64),
    ]


_VP, _U64 = ctypes.c_void_p, ctypes.c_uint64
_SIGNATURES = {
    "bc_new": (ctypes.POINTER(_State), [_VP] * 5),
    "bc_arm": (None, [_VP, _U64]),
    "bc_set_runner": (None, [_VP, _VP, _VP]),
    "bc_run": (ctypes.c_int, [_VP, _U64, _U64]),
    "bc_forget": (ctypes.c_int, [_VP, _U64, _U64]),
    "bc_code_changed": (ctypes.c_int, [_VP, _U64, _U64]),
    "bc_cached": (ctypes.c_int64, [_VP, _U64]),
    "bc_free": (None, [_VP]),
}


def _disassembler():
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = False
    return md


def _count_insns(md, code: bytes, address: int) -> int:
    n = 0
    used = 0
    for _addr, size, _m, _o in md.disasm_lite(code, address):
        n += 1
        used += size
    # Bytes capstone cannot decode are one instruction to Unicorn (it
    # translated them into an #UD raise that ends the block).
    return n + (1 if used < len(code) else 0)


def retired_before(uc: unicorn.Uc, block_addr: int, fault_rip: int) -> int:
    """Instructions of the block at block_addr that lie before fault_rip.

    After a stop inside a block (e.g. a fault at fault_rip), the exact count
    for the slice is ``retired - last_icount + retired_before(...)``.
    """
    if fault_rip < block_addr:
        raise ValueError("fault_rip is before the block")
    if fault_rip == block_addr:
        return 0
    code = bytes(uc.mem_read(block_addr, fault_rip - block_addr))
    n = 0
    for addr, _size, _m, _o in _disassembler().disasm_lite(code, block_addr):
        if addr >= fault_rip:
            break
        n += 1
    return n


class InstructionCounter:
    """Counts retired guest instructions per slice and enforces a budget.

    Create it before the first ``emu_start`` on ``uc`` (blocks translated
    earlier carry no hook and would not be counted). ``kind`` is 'native'
    when the C hook is built and loads (and ``prefer_native``), else
    'python'. See the module docstring for the exact semantics.
    """

    def __init__(self, uc: unicorn.Uc, *, prefer_native: bool = True, cut_blocks: bool = True):
        # cut_blocks=False: the caller promises no exit or `until` address
        # inside code, so no block is ever cut and reads skip the correction.
        self._cut_blocks = cut_blocks
        self._uc = uc
        self._st = None
        self._c = None
        self._hook = None
        self._md = _disassembler()
        self._real: dict[tuple[int, int], int] = {}  # (addr, size) -> capstone count
        self._retired = 0
        self._budget = _UNLIMITED
        self._last_block = _UNLIMITED
        self._last_icount = 0
        self._last_size = 0
        self._budget_hit = False
        lib = native.bind(_SIGNATURES) if prefer_native else None
        if lib is not None:
            raw = native.uclib()
            st = lib.bc_new(uc._uch, *(native.address(f) for f in (
                raw.uc_ctl, raw.uc_emu_stop, raw.uc_hook_add, raw.uc_hook_del)))
            if not st:
                raise MemoryError("cannot create the native instruction counter")
            lib.bc_set_runner(st, native.address(raw.uc_emu_start), native.address(raw.uc_reg_read))
            self._lib = lib
            self._st = st
            self._c = st.contents  # one view of the shared struct, read on every trap
            self.run = self._run_native
            self.kind = "native"
        else:
            self._sizes: dict[int, tuple[int, int]] = {}  # addr -> (bytes, icount)
            self._hook = uc.hook_add(UC_HOOK_BLOCK, self._on_block)
            self.kind = "python"

    # -- the Python fallback's hook: same rules as block_hook in the C file.
    # It adds Unicorn's own count (uc_tb.icount) like the native hook, so
    # that both take the same budget decisions; the capstone count of the
    # block's bytes is what _cut_fix checks it against.
    def _on_block(self, uc, address, size, _user_data):
        entry = self._sizes.get(address)
        if entry is None or entry[0] != size:
            tb = uc.ctl_request_cache(address)
            entry = (size, tb[1])
            self._sizes[address] = entry
        n = entry[1]
        if self._retired > 0 and self._retired + n > self._budget:
            self._budget_hit = True
            uc.emu_stop()
            return
        self._retired += n
        self._last_block = address
        self._last_icount = n
        self._last_size = size

    def _cut_fix(self, block: int, size: int, icount: int) -> int:
        """1 if the block was cut short by an exit address, else 0.

        When an exit (or the ``until`` address) falls inside straight-line
        code, Unicorn ends the block there with a zero-byte stop
        pseudo-instruction that uc_tb.icount counts: the block's bytes hold
        one instruction fewer than icount. Such a block is always the last
        one of a run, so it is corrected when the slice is read.
        """
        if icount == 0 or block == _UNLIMITED:
            return 0
        key = (block, size)
        real = self._real.get(key)
        if real is None:
            code = bytes(self._uc.mem_read(block, size)) if size else b""
            real = self._real[key] = _count_insns(self._md, code, block)
        return 1 if real == icount - 1 else 0

    def _head(self) -> tuple[int, int, int, int, bool]:
        """(retired, last_block, last_icount, last_size, budget_hit) raw."""
        c = self._c
        if c is not None:
            if c.error:
                self._check()
            return c.retired, c.last_block, c.last_icount, c.last_size, bool(c.budget_hit)
        return (
            self._retired,
            self._last_block,
            self._last_icount,
            self._last_size,
            self._budget_hit,
        )

    def _check(self) -> None:
        if self._st is not None and self._st.contents.error:
            raise AccountingError(
                f"native counter failed to size a block (code {self._st.contents.error})"
            )

    # run(budget, until) -> status: arm, then emulate from RIP (one native
    # call); None for the Python counter, whose caller arms and starts.
    run: Callable[[int, int], int] | None = None

    def _run_native(self, budget: int, until: int) -> int:
        """arm(budget) and emulate from RIP until a stop; returns
        uc_emu_start's status (-1: RIP could not be read). ``stop_rip`` is
        where emulation stopped."""
        if budget < 1:
            raise ValueError("budget must be at least 1 instruction")
        return self._lib.bc_run(self._st, min(budget, _UNLIMITED), until)

    @property
    def stop_rip(self) -> int:
        """RIP where the last ``run`` stopped (native counter only)."""
        return self._c.rip

    def head(self) -> tuple[int, int, int, int]:
        """(retired, last_block, last_icount, last_size) in one read, for a
        caller that corrects a stop inside the last block."""
        retired, block, icount, size, _ = self._head()
        if self._cut_blocks:
            fix = self._cut_fix(block, size, icount)
            return retired - fix, block, icount - fix, size
        return retired, block, icount, size

    def arm(self, budget: int) -> None:
        """Start a slice: retired = 0; stop before exceeding budget (>= 1)."""
        if budget < 1:
            raise ValueError("budget must be at least 1 instruction")
        budget = min(budget, _UNLIMITED)
        if self._st is not None:
            self._lib.bc_arm(self._st, budget)
        elif self._hook is not None:
            self._retired = 0
            self._budget = budget
            self._budget_hit = False
            self._last_block = _UNLIMITED
            self._last_icount = 0
            self._last_size = 0
        else:
            raise RuntimeError("counter is closed")

    @property
    def retired(self) -> int:
        """Instructions in blocks entered during this slice."""
        c = self._c
        if c is not None and not self._cut_blocks and not c.error:
            return c.retired  # the hot path: read on every call that tells time
        retired, block, icount, size, _ = self._head()
        if not self._cut_blocks:
            return retired
        return retired - self._cut_fix(block, size, icount)

    @property
    def retired_address(self) -> int | None:
        """Where the native hook keeps ``retired`` (for other native hooks
        that tell time), or None for the Python counter or when blocks may
        be cut (then ``retired`` needs a correction only Python makes)."""
        if self._c is None or self._cut_blocks:
            return None
        return ctypes.addressof(self._c)  # retired is the struct's first field

    @property
    def last_block(self) -> int:
        """Start of the most recently entered block (2**64-1 if none yet)."""
        return self._head()[1]

    @property
    def last_size(self) -> int:
        """Bytes of last_block (0 if none yet)."""
        return self._head()[3]

    @property
    def last_icount(self) -> int:
        """Instructions of last_block that are in its bytes (0 if none yet)."""
        _, block, icount, size, _ = self._head()
        if not self._cut_blocks:
            return icount
        return icount - self._cut_fix(block, size, icount)

    @property
    def budget_hit(self) -> bool:
        """The hook stopped emulation because the next block did not fit."""
        return self._head()[4]

    @property
    def lookups(self) -> int:
        """Blocks sized so far (uc_ctl_request_cache calls or disassemblies)."""
        if self._st is not None:
            return self._st.contents.lookups
        return len(self._sizes)

    def code_changed(self, start: int, end: int) -> None:
        """The host wrote [start, end), which may hold code that ran: drop
        Unicorn's translations there and the counts of blocks starting there."""
        if self._st is not None:
            status = self._lib.bc_code_changed(self._st, start, end)
            if status == -1:
                raise MemoryError("cannot rebuild the block table")
            if status:
                raise unicorn.UcError(status)
            for k in [k for k in self._real if start <= k[0] < end]:
                del self._real[k]
            return
        self._uc.ctl_remove_cache(start, end)
        self.forget(start, end)

    def forget(self, start: int, end: int) -> None:
        """Drop cached block sizes for blocks starting in [start, end).

        Call it when guest code in that range changes (together with
        ``uc.ctl_remove_cache(start, end)``, which this does not do).
        """
        if self._st is not None:
            if self._lib.bc_forget(self._st, start, end) != 0:
                raise MemoryError("cannot rebuild the block table")
        elif self._hook is not None:
            for a in [a for a in self._sizes if start <= a < end]:
                del self._sizes[a]
        for k in [k for k in self._real if start <= k[0] < end]:
            del self._real[k]

    def close(self) -> None:
        """Remove the hook and free native state. Idempotent. The last
        slice stays readable, corrected now: the correction reads guest
        memory, which may be gone by the time it is read."""
        if self._st is None and self._hook is None:
            return
        retired, block, icount, size, hit = self._head()
        fix = self._cut_fix(block, size, icount) if self._cut_blocks else 0
        if self._st is not None:
            self._c = None
            self._lib.bc_free(self._st)
            self._st = None
        else:
            self._uc.hook_del(self._hook)
            self._hook = None
        self._sizes = {}
        self._cut_blocks = False
        self._retired, self._last_block, self._last_icount, self._last_size, self._budget_hit = (
            retired - fix, block, icount - fix, size, hit)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

