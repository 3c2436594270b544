"""The vCPU's syscall gate: clock reads answered inside the emulator.

Every `syscall` a guest executes enters the gate. A call number that a
personality registered with :meth:`CallGate.serve` as a clock read is
answered by the native hook (``callgate.c``) without leaving the emulator,
much as Linux's vDSO answers ``clock_gettime`` without entering the kernel:
RAX gets the simulated time of that instruction, the call's cost is
charged, and the call is counted for the personality (see :meth:`drain`).
Every other call goes to the Python trap path.

Every `out` enters the gate as well, so that a personality can plug in a
native server for its ports (:meth:`CallGate.serve_out`; hvt's is
sim/libos/hvtgate.c). The server answers the `out`s it can while the gate
is open and hands the rest, untouched, to the Python trap path.

Why: a Python hook costs ~0.4 us per call before it does anything
(docs/performance.md, "Pico ABI"), so a call served in Python cannot come
near the cost of a real system call; a clock read is the call guests make
most often and needs nothing from Python.

:class:`Clock` holds the simulated time of the running step (start of the
run, ns charged so far, the time model's ratio). It is the one copy of
those numbers: Python reads and writes it as attributes and the native
hook reads it in place. Without the native library (or when the gate is
closed, as it is while calls are traced) everything takes the Python path
and the results are the same, number for number.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from enum import IntEnum

from unicorn import UC_HOOK_INSN, Uc
from unicorn import x86_const as X
from unicorn.unicorn_py3.arch.intel import (
    HOOK_INSN_CPUID_CFUNC,
    HOOK_INSN_OUT_CFUNC,
    HOOK_INSN_SYSCALL_CFUNC,
)
from unicorn.unicorn_py3.unicorn import uccallback

from sim.cpu import native
from sim.cpu.blockcount import InstructionCounter

GATE_CALLS = 1024  # call numbers the native hook can serve (GATE_CALLS in callgate.c)
_U64 = 1 << 64


class ServeKind(IntEnum):
    """What the gate answers for a call number (values as in callgate.c)."""

    PYTHON = 0  # the Python trap path
    MONOTONIC = 1  # simulated ns since boot
    WALL = 2  # the same plus the wall-clock epoch


class Clock(ctypes.Structure):
    """Simulated time of the running step; mirrors struct clock in callgate.c."""

    _fields_ = [
        ("step_ns", ctypes.c_uint64),  # simulated ns where this run started
        ("cost_ns", ctypes.c_uint64),  # ns charged by calls in this step
        ("mult", ctypes.c_uint64),  # cycles per instruction (milli) x 10**6
        ("hz", ctypes.c_uint64),  # clock rate
        ("epoch_ns", ctypes.c_uint64),  # wall clock at simulated time 0
        ("served", ctypes.c_uint64),  # calls answered natively since drain()
        ("insn_base", ctypes.c_uint64),  # instructions retired before this run
        ("insn_base_ns", ctypes.c_uint64),  # their time: insn_base * mult // hz
        ("tsc_hz", ctypes.c_uint64),  # TSC rate; 0: RDTSC takes the Python path
        ("open", ctypes.c_uint32),  # 0: every call takes the Python path
        ("stopped", ctypes.c_uint32),  # a port server ended the run after its out
    ]


_VP, _U64C = ctypes.c_void_p, ctypes.c_uint64
_SIGNATURES = {
    "cg_new": (_VP, [_VP] * 13),
    "cg_serve_out": (None, [_VP, _VP, _VP]),
    "cg_serve": (ctypes.c_int, [_VP, _U64C, ctypes.c_uint32, _U64C]),
    "cg_drain": (ctypes.c_int, [_VP, _VP]),
    "cg_time_at": (_U64C, [_VP, _U64C]),
    "cg_now": (_U64C, [_VP]),
    "cg_free": (None, [_VP]),
}


class CallGate:
    """Routes a vCPU's syscalls (registered clock reads natively, the rest
    to ``on_syscall(uc, user_data)``, the vCPU's Python trap hook), its
    RDTSC (natively once :meth:`serve_tsc` is called, else ``on_rdtsc``)
    and its `out`s (to a plugged-in native server first, else ``on_out``)."""

    def __init__(self, uc: Uc, counter: InstructionCounter,
                 on_syscall: Callable[[Uc, object], None],
                 on_rdtsc: Callable[[Uc, object], int],
                 on_out: Callable[[Uc, int, int, int, object], None]):
        self._uc = uc
        self._gate: int | None = None
        self._pairs = (ctypes.c_uint64 * (2 * GATE_CALLS))()  # (nr, count) from drain
        self.clock = Clock(hz=1)
        self._fits = False  # set_time found numbers the C hook can hold
        self.served_total = 0  # calls answered natively over the vCPU's life
        # RAX, RDI, RSI, RDX, R10, R8, R9 of the syscall being served in
        # Python, filled by the native hook before it calls on_syscall.
        self.args = (ctypes.c_uint64 * 7)()
        retired = counter.retired_address
        lib = native.bind(_SIGNATURES) if retired is not None else None
        # The binding's decorator: an exception in the Python path is kept,
        # emulation stops, and emu_start raises it. The 2.1 binding refuses
        # UC_X86_INS_RDTSC in hook_add although the C core supports it; its
        # callback has the CPUID shape: (uc, user_data) -> "skip it" flag.
        self._tsc_fallback = uccallback(uc, HOOK_INSN_CPUID_CFUNC)(on_rdtsc)
        if lib is None:
            uc.hook_add(UC_HOOK_INSN, on_syscall, aux1=X.UC_X86_INS_SYSCALL)
            uc._Uc__do_hook_add(UC_HOOK_INSN, self._tsc_fallback, 1, 0,
                                ctypes.c_int(X.UC_X86_INS_RDTSC))
            uc.hook_add(UC_HOOK_INSN, on_out, aux1=X.UC_X86_INS_OUT)
            self.native = False
            self.now = None
            return
        self._fallback = uccallback(uc, HOOK_INSN_SYSCALL_CFUNC)(on_syscall)
        self._out_fallback = uccallback(uc, HOOK_INSN_OUT_CFUNC)(on_out)
        raw = native.uclib()
        gate = lib.cg_new(uc._uch, ctypes.addressof(self.clock), retired, *(native.address(f) for f in (
            raw.uc_hook_add, raw.uc_hook_del, raw.uc_reg_read, raw.uc_reg_write,
            self._fallback, self._tsc_fallback, raw.uc_reg_read_batch)),
            ctypes.addressof(self.args), native.address(self._out_fallback),
            native.address(raw.uc_emu_stop))
        if not gate:
            raise MemoryError("cannot create the vCPU's syscall gate")
        self._lib = lib
        self._gate = gate
        self.native = True
        # Simulated ns at this instruction, by the hook's own formula (the
        # same as GuestServices.now's; tests hold them together). None once
        # closed: the instruction counter it reads is freed with the vCPU.
        self.now: Callable[[], int] | None = functools.partial(lib.cg_now, gate)

    def set_time(self, mult: int, hz: int, epoch_ns: int) -> None:
        """The time model: ns = retired * mult // hz (see TimeModel.insns_to_ns)."""
        self._fits = 0 <= mult < _U64 and 0 < hz < _U64 and 0 <= epoch_ns < _U64
        if self._fits:  # else serve nothing natively: the Python path takes all
            self.clock.mult, self.clock.hz, self.clock.epoch_ns = mult, hz, epoch_ns

    def serve(self, nr: int, kind: ServeKind, cost_ns: int) -> bool:
        """Answer call ``nr`` natively as a clock read costing ``cost_ns``.
        False (and the call stays on the Python path) without the native
        library, for a number out of range or a time model C cannot hold."""
        if self._gate is None or not self._fits:
            return False
        if not (0 <= nr < GATE_CALLS and 0 <= cost_ns < _U64):
            return False
        return self._lib.cg_serve(self._gate, nr, int(kind), cost_ns) == 0

    def serve_tsc(self, tsc_hz: int) -> bool:
        """Answer RDTSC natively: the simulated clock at ``tsc_hz`` ticks per
        second (TimeModel.ns_to_tsc). False when only Python can."""
        if self._gate is None or not self._fits or not 0 < tsc_hz < _U64:
            return False
        self.clock.tsc_hz = tsc_hz
        return True

    @property
    def handle(self) -> int | None:
        """The native gate's address, for native code that plugs into it."""
        return self._gate

    def serve_out(self, server: int, ctx: int) -> bool:
        """Let the native function at ``server`` (a ``cg_out_server``, see
        callgate.h) see every `out` first, with ``ctx``; 0 unplugs it.
        False without the native gate."""
        if self._gate is None:
            return False
        self._lib.cg_serve_out(self._gate, server or None, ctx or None)
        return True

    def drain(self) -> dict[int, int]:
        """Calls answered natively since the last drain, by number."""
        if self._gate is None or not self.clock.served:
            return {}
        pairs = self._pairs
        n = self._lib.cg_drain(self._gate, pairs)
        flat = pairs[:2 * n]
        served = dict(zip(flat[::2], flat[1::2]))
        self.served_total += sum(served.values())
        return served

    def time_at(self, retired: int) -> int:
        """The native formula's ns for ``retired`` instructions (for tests)."""
        if self._gate is None:
            raise RuntimeError("the native gate is not built")
        return self._lib.cg_time_at(self._gate, retired)

    def close(self) -> None:
        if self._gate is not None:
            self.now = None
            self._lib.cg_free(self._gate)
            self._gate = None
