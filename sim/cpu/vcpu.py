"""A virtual CPU: Unicorn x86-64 in long mode, run in bounded slices.

The vCPU knows nothing of ABIs or simulated time. It runs guest code until a
trap (syscall, port I/O), a fault, ``hlt`` or the instruction budget, and
returns an ``Exit`` saying which, with the exact number of instructions
retired. Traps are offered to a handler *inside* the hook, so cheap calls are
served without leaving the emulator; the handler asks for a stop when the
caller must wait or the guest is done.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable

from unicorn import (
    UC_ARCH_X86,
    UC_ERR_EXCEPTION,
    UC_ERR_FETCH_UNMAPPED,
    UC_ERR_INSN_INVALID,
    UC_ERR_READ_UNMAPPED,
    UC_ERR_WRITE_UNMAPPED,
    UC_HOOK_INSN,
    UC_HOOK_INTR,
    UC_MODE_64,
    UC_PROT_ALL,
    Uc,
    UcError,
)
from unicorn import x86_const as X

from sim.cpu import excstate
from sim.cpu.blockcount import InstructionCounter, retired_before
from sim.cpu.callgate import CallGate
from sim.cpu.memory import GuestMemory, GuestMemoryError
from sim.cpu.rawregs import GPRS, RawRegisters

# docs/architecture.md: each Uc reserves a 1 GiB translation buffer unless told; 8 MiB served.
TCG_BUFFER_BYTES = 8 << 20
# emu_start's `until`: address 0, on the never-mapped NULL page. A guest
# that jumps there stops as if it had fetched from it (a #PF, synthesised
# below). A non-canonical `until` was measured to clobber CR2 after a stop.
UNTIL_NULL = 0

VECTOR_NAMES = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
    8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF",
    17: "#AC", 18: "#MC", 19: "#XM", 20: "#VE", 21: "#CP",
}
VECTOR_MEANING = {
    0: "divide error", 3: "breakpoint", 6: "invalid opcode", 13: "general protection",
    14: "page fault", 8: "double fault", 12: "stack fault", 19: "SIMD exception",
}
# Vectors that push an error code on the handler's stack.
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17, 21})
TRAP_VECTORS = frozenset({1, 3, 4})  # RIP already points past the instruction

_thp_disabled = False


def _disable_thp_once() -> None:
    """QEMU asks for a huge page per translation buffer: +2 MiB RSS per guest."""
    global _thp_disabled
    if _thp_disabled:
        return
    _thp_disabled = True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE
    except (OSError, AttributeError):  # not Linux: nothing to save
        pass


class ExitKind(StrEnum):
    TRAP = "trap"        # a served call asked to stop (wait, exit)
    HALT = "halt"        # hlt with nothing to wake the CPU
    FAULT = "fault"      # CPU exception the guest could not handle
    BUDGET = "budget"    # the slice's instruction budget ran out
    DEBUG = "debug"      # a debugger hook stopped before the instruction at rip


class Trap:
    """A trap offered to the handler inside the emulator hook.

    ``rip`` (the trapping instruction) is read on first use: most calls never
    need it, and a register read is a measurable part of a call's cost. It
    is only valid while the handler runs.
    """

    __slots__ = ("kind", "port", "size", "value", "_rip", "_vcpu")

    def __init__(self, kind: str, rip: int | None = None, port: int = 0, size: int = 0,
                 value: int = 0, *, vcpu: "VCPU | None" = None):
        self.kind = kind  # syscall | out | in
        self.port = port
        self.size = size
        self.value = value
        self._rip = rip
        self._vcpu = vcpu

    @property
    def rip(self) -> int:
        if self._rip is None:
            self._rip = self._vcpu.rip if self._vcpu is not None else 0
        return self._rip

    def __repr__(self) -> str:
        return f"Trap({self.kind!r}, rip={self.rip:#x}, port={self.port:#x})"


@dataclass(frozen=True, slots=True)
class Fault:
    vector: int
    rip: int
    cr2: int
    error_code: int
    reason: str

    @property
    def name(self) -> str:
        return VECTOR_NAMES.get(self.vector, f"vector {self.vector}")


@dataclass(slots=True)  # one per run: not frozen, which costs ~1 us to build
class Exit:
    kind: ExitKind
    retired: int
    rip: int
    trap: Trap | None = None
    fault: Fault | None = None


class VCPU:
    def __init__(self, mem_size: int, *, prefer_native: bool = True):
        _disable_thp_once()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_64)
        self.uc.ctl_set_tcg_buffer_size(TCG_BUFFER_BYTES)
        self.mem = GuestMemory(self.uc, mem_size)
        # No exit addresses, and `until` is the never-mapped NULL page: no
        # block is ever cut short, so the counter can skip that correction.
        self.counter = InstructionCounter(self.uc, prefer_native=prefer_native, cut_blocks=False)
        self.raw = RawRegisters(self.uc)
        self._syscall_trap = Trap("syscall", vcpu=self)
        self._out_trap = Trap("out", vcpu=self)
        self.trap_handler: Callable[[Trap], bool] = _no_trap_handler
        self.tsc: Callable[[int], int] = lambda retired: retired
        self._stop_trap: Trap | None = None
        self._pending_vector: int | None = None
        self._pending_cr2 = 0
        self._pending_error: int | None = None
        self._closed = False
        self._debug_stop = False
        self._backing: tuple[object, object] | None = None  # (mmap, ctypes view) of mapped RAM
        excstate.layout()  # probe once per process, before any guest runs
        self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        # Every `syscall`, `rdtsc` and `out` enters the gate: registered clock
        # reads, and the outs a plugged-in port server answers, are served
        # natively; the rest come to _on_syscall, _on_rdtsc and _on_out.
        self.gate = CallGate(self.uc, self.counter, self._on_syscall, self._on_rdtsc,
                             self._on_out)
        # Inside the syscall hook: syscall_args() is [nr, a0..a5] (rax; rdi
        # rsi rdx r10 r8 r9) and syscall_nr() is rax. The native gate has
        # read them already; else they are read from the registers.
        self.syscall_args: Callable[[], list[int]]
        self.syscall_nr: Callable[[], int]
        if self.gate.native:
            regs = self.gate.args
            self.syscall_args = lambda: regs[:]
            self.syscall_nr = lambda: regs[0]
        else:
            raw = self.raw
            self.syscall_args = raw.syscall_args
            self.syscall_nr = lambda: raw.read(X.UC_X86_REG_RAX)
        self.uc.hook_add(UC_HOOK_INSN, self._on_in, aux1=X.UC_X86_INS_IN)

    # -- set-up -----------------------------------------------------------
    def _on_rdtsc(self, uc: Uc, _key: object) -> int:
        value = self.tsc(self.counter.retired)
        raw = self.raw
        raw.write(X.UC_X86_REG_RAX, value & 0xFFFF_FFFF)
        raw.write(X.UC_X86_REG_RDX, (value >> 32) & 0xFFFF_FFFF)
        return 1  # skip the instruction: its result is written

    def enter_long_mode(self, *, cr3: int, gdt_base: int, gdt_limit: int, rip: int, rsp: int,
                        nx: bool, cr0: int = 0x80010033, cr4: int = 0x620,
                        code_selector: int = 0x08, data_selector: int = 0x10) -> None:
        """Load the state a monitor hands its guest: paging on, flat 64-bit segments."""
        w = self.uc.reg_write
        w(X.UC_X86_REG_GDTR, (0, gdt_base, gdt_limit, 0))
        w(X.UC_X86_REG_CR3, cr3)
        w(X.UC_X86_REG_CR4, cr4)
        efer = 0x500 | (0x800 if nx else 0)  # LME|LMA (+NXE)
        w(X.UC_X86_REG_MSR, (0xC0000080, efer))
        w(X.UC_X86_REG_CR0, cr0)
        w(X.UC_X86_REG_CS, code_selector)
        for seg in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS):
            w(seg, data_selector)
        w(X.UC_X86_REG_RFLAGS, 0x2)
        w(X.UC_X86_REG_RSP, rsp)
        w(X.UC_X86_REG_RIP, rip)

    def code_changed(self, start: int, end: int) -> None:
        """The host wrote guest memory in [start, end) that may hold code the
        vCPU has run: drop its translations and block counts. (Unicorn's
        uc_mem_write leaves them in place, so the old code would run on.)"""
        if end > start:
            self.counter.code_changed(start, end)

    # -- registers --------------------------------------------------------
    def reg(self, reg_id: int) -> int:
        if reg_id in GPRS:
            return self.raw.read(reg_id)
        return self.uc.reg_read(reg_id)

    def set_reg(self, reg_id: int, value: int) -> None:
        if reg_id in GPRS:
            self.raw.write(reg_id, value)
        else:
            self.uc.reg_write(reg_id, value)

    @property
    def rip(self) -> int:
        return self.raw.read(X.UC_X86_REG_RIP)

    # -- hooks ------------------------------------------------------------
    def _trap(self, trap: Trap) -> None:
        if self.trap_handler(trap):
            self._stop_trap = trap
            self.uc.emu_stop()

    def _on_syscall(self, uc: Uc, _key: int) -> None:
        # RIP inside the hook is the syscall instruction itself (2 bytes).
        # The hottest path of all: one Trap per vCPU, reused (a handler that
        # keeps it past the hook must copy what it needs).
        trap = self._syscall_trap
        trap._rip = None
        if self.trap_handler(trap):
            self._stop_trap = Trap("syscall", trap.rip)
            uc.emu_stop()

    def _on_out(self, uc: Uc, port: int, size: int, value: int, _key: int) -> None:
        # Every hvt hypercall: one Trap per vCPU, reused like the syscall one.
        trap = self._out_trap
        trap.port, trap.size, trap.value, trap._rip = port, size, value, None
        if self.trap_handler(trap):
            self._stop_trap = Trap("out", trap._rip, port, size, value, vcpu=self)
            uc.emu_stop()

    def _on_in(self, uc: Uc, port: int, size: int, _key: int) -> int:
        self._trap(Trap("in", None, port, size, vcpu=self))
        return 0xFFFF_FFFF

    def _on_interrupt(self, uc: Uc, intno: int, _key: int) -> None:
        # CR2 and the error code are only trustworthy inside the hook.
        self._pending_vector = intno
        self._pending_cr2 = uc.reg_read(X.UC_X86_REG_CR2) if intno == 14 else 0
        self._pending_error = excstate.read_error_code(uc) if intno in ERROR_CODE_VECTORS else 0
        uc.emu_stop()

    # -- running ----------------------------------------------------------
    def run(self, max_insns: int) -> Exit:
        """Run at most about max_insns instructions (whole blocks) from RIP."""
        if self._closed:
            raise RuntimeError("vCPU is closed")
        self._stop_trap = None
        self._pending_vector = None
        self._debug_stop = False
        clock = self.gate.clock
        clock.stopped = 0
        try:
            rip = self._emulate(max_insns)
        except UcError as err:
            fault = _fault_from_error(err, self.rip)
            if fault is None:
                raise
            excstate.clear_in_flight(self.uc)
            return Exit(ExitKind.FAULT, self._retired_before(fault.rip), fault.rip, fault=fault)
        if self._pending_vector is not None:
            excstate.clear_in_flight(self.uc)
            return self._fault_exit(self._pending_vector, rip)
        stop_trap = self._stop_trap
        if stop_trap is not None:
            # A handler that moved RIP past its trap instruction (exact
            # stops after `out`) left the rest of the block unexecuted.
            return Exit(ExitKind.TRAP, self._retired_before(rip), rip, trap=stop_trap)
        if clock.stopped:  # the same, by a native port server (no Trap)
            clock.stopped = 0
            return Exit(ExitKind.TRAP, self._retired_before(rip), rip)
        if self._debug_stop:
            return Exit(ExitKind.DEBUG, self._retired_before(rip), rip)
        retired = self.counter.retired
        if rip == UNTIL_NULL:
            fault = Fault(14, 0, 0, 0x10, "page fault (jump to NULL)")
            return Exit(ExitKind.FAULT, retired, rip, fault=fault)
        if self._just_halted(rip):
            return Exit(ExitKind.HALT, retired, rip)
        return Exit(ExitKind.BUDGET, retired, rip)

    def _emulate(self, max_insns: int) -> int:
        """Emulate from RIP for a slice; returns RIP where it stopped.
        Raises UcError, or what a Python hook raised (the binding's rules)."""
        counter, uc = self.counter, self.uc
        run = counter.run
        if run is None:
            counter.arm(max_insns)
            uc.emu_start(self.rip, UNTIL_NULL)
            return self.rip
        uc._hook_exception = None
        status = run(max_insns, UNTIL_NULL)
        if status:
            if status < 0:
                raise RuntimeError("cannot read the vCPU's RIP")
            raise UcError(status)
        if uc._hook_exception is not None:
            raise uc._hook_exception
        return counter.stop_rip

    def _just_halted(self, rip: int) -> bool:
        try:
            return self.mem.read(rip - 1, 1) == b"\xf4"
        except GuestMemoryError:
            return False

    def _fault_exit(self, vector: int, rip: int) -> Exit:
        # A trap (int3) has retired its instruction; a fault has not.
        retired = self.counter.retired if vector in TRAP_VECTORS else self._retired_before(rip)
        cr2 = self._pending_cr2
        error_code = self._pending_error
        if error_code is None:  # context layout unknown: rebuild it
            error_code = self._error_code(vector, rip, cr2)
        fault = Fault(vector, rip, cr2, error_code, VECTOR_MEANING.get(vector, "exception"))
        return Exit(ExitKind.FAULT, retired, rip, fault=fault)

    def _retired_before(self, rip: int) -> int:
        """Instructions retired in this run when execution stopped before rip.

        The counter adds a block's instructions when the block is entered; a
        stop inside it (fault, debugger, a trap handler that moved RIP) takes
        back those from rip on. A stop at a block's end, or a fault fetching
        a new block, leaves the count as it is.
        """
        retired, block, icount, size = self.counter.head()
        if block <= rip < block + size:
            retired += retired_before(self.uc, block, rip) - icount
        return retired

    def _error_code(self, vector: int, rip: int, cr2: int) -> int:
        # Unicorn reports the vector only; rebuild what the CPU would push.
        if vector != 14:
            return 0
        code = 0
        if cr2 == rip:
            code |= 0x10  # instruction fetch
        elif self.uc.reg_read(X.UC_X86_REG_CR0) & 0x8000_0000:
            code |= self._page_fault_bits(rip)
        if self._page_present(cr2):
            code |= 0x1
        return code

    def _page_fault_bits(self, rip: int) -> int:
        from sim.cpu.disasm import writes_memory  # local: only on the fault path

        try:
            code = self.mem.read(rip, 16)
        except GuestMemoryError:
            return 0
        return 0x2 if writes_memory(code, rip) else 0

    def _page_present(self, addr: int) -> bool:
        cr3 = self.uc.reg_read(X.UC_X86_REG_CR3) & 0x000F_FFFF_FFFF_F000
        table = cr3
        try:
            for shift in (39, 30, 21, 12):
                entry = self.mem.read_u64(table + 8 * ((addr >> shift) & 511))
                if not entry & 1:
                    return False
                if shift in (30, 21) and entry & 0x80:
                    return True
                table = entry & 0x000F_FFFF_FFFF_F000
        except GuestMemoryError:
            return False
        return True

    # -- exceptions through the guest's IDT -------------------------------
    def deliver(self, fault: Fault) -> str | None:
        """Deliver a fault through the guest's IDT, as the CPU would.

        Returns None when delivered, else why it could not be (no IDT, gate
        not present, stack not writable): the caller stops the guest.
        """
        _sel, idt_base, idt_limit, _flags = self.uc.reg_read(X.UC_X86_REG_IDTR)
        if idt_limit == 0:
            return "the guest has no IDT"
        if fault.vector * 16 + 15 > idt_limit:
            return f"the guest's IDT has no entry for vector {fault.vector}"
        try:
            gate = self.mem.read(idt_base + fault.vector * 16, 16)
        except GuestMemoryError:
            return "the guest's IDT lies outside memory"
        lo, sel, ist, attr, mid, hi, _ = struct.unpack("<HHBBHII", gate)
        if not attr & 0x80:
            return f"IDT gate {fault.vector} is not present"
        handler = lo | (mid << 16) | (hi << 32)
        r = self.uc.reg_read
        rsp = r(X.UC_X86_REG_RSP)
        if ist & 7:
            _tsel, tss_base, _tlim, _tfl = r(X.UC_X86_REG_TR)
            try:
                rsp = self.mem.read_u64(tss_base + 0x24 + 8 * ((ist & 7) - 1))
            except GuestMemoryError:
                return "the guest's TSS lies outside memory"
        rsp &= ~0xF
        frame = [r(X.UC_X86_REG_SS), r(X.UC_X86_REG_RSP), r(X.UC_X86_REG_RFLAGS),
                 r(X.UC_X86_REG_CS), fault.rip]
        if fault.vector in ERROR_CODE_VECTORS:
            frame.append(fault.error_code)
        rsp -= 8 * len(frame)
        try:
            self.mem.write(rsp, struct.pack(f"<{len(frame)}Q", *reversed(frame)))
        except GuestMemoryError:
            return "the exception stack lies outside memory"
        if fault.vector == 14:
            self.uc.reg_write(X.UC_X86_REG_CR2, fault.cr2)
        self.uc.reg_write(X.UC_X86_REG_RSP, rsp)
        # Interrupt gates (type 0xE) clear IF; TF is cleared either way.
        flags = r(X.UC_X86_REG_RFLAGS) & ~0x100
        if attr & 0xF == 0xE:
            flags &= ~0x200
        self.uc.reg_write(X.UC_X86_REG_RFLAGS, flags)
        if sel != r(X.UC_X86_REG_CS):
            self.uc.reg_write(X.UC_X86_REG_CS, sel)
        self.uc.reg_write(X.UC_X86_REG_RIP, handler)
        return None

    # -- debugger and snapshots (sim.tooling) ------------------------------
    def debug_stop(self) -> None:
        """From a code hook: stop before the hooked instruction, counted exactly."""
        self._debug_stop = True
        self.uc.emu_stop()

    def save_state(self) -> dict:
        """Every register a guest can change, as JSON-able values."""
        r = self.uc.reg_read
        state: dict = {name: r(reg) for name, reg in _PLAIN_REGS}
        for name, reg in _TABLE_REGS:
            state[name] = list(r(reg))
        state["msr"] = {f"{msr:#x}": r(X.UC_X86_REG_MSR, msr) for msr in SAVED_MSRS}
        state["fp"] = [list(r(getattr(X, f"UC_X86_REG_FP{i}"))) for i in range(8)]
        state["xmm"] = [r(getattr(X, f"UC_X86_REG_XMM{i}")) for i in range(16)]
        return state

    def restore_state(self, state: dict) -> None:
        """Load registers saved by save_state (control registers first)."""
        w = self.uc.reg_write
        for name, reg in _TABLE_REGS:
            w(reg, tuple(state[name]))
        for name in ("cr4", "cr3"):
            w(_REG_BY_NAME[name], state[name])
        for msr, value in state["msr"].items():
            w(X.UC_X86_REG_MSR, (int(msr, 16), value))
        for name, reg in _PLAIN_REGS:
            w(reg, state[name])
        for i, value in enumerate(state["fp"]):
            w(getattr(X, f"UC_X86_REG_FP{i}"), tuple(value))
        for i, value in enumerate(state["xmm"]):
            w(getattr(X, f"UC_X86_REG_XMM{i}"), value)
        w(X.UC_X86_REG_FS_BASE, state["fs_base"])
        w(X.UC_X86_REG_GS_BASE, state["gs_base"])
        self.uc.ctl_flush_tb()

    def map_memory(self, backing, address: int, keep: object = None) -> None:
        """Back guest RAM with host memory at ``address`` (e.g. a MAP_PRIVATE mmap
        of a snapshot: copy-on-write, shared until the guest writes a page).
        ``backing`` and ``keep`` stay alive until close()."""
        size = self.mem.size
        self.uc.mem_unmap(0, size)
        self.uc.mem_map_ptr(0, size, UC_PROT_ALL, address)
        self._backing = (backing, keep)
        self.uc.ctl_flush_tb()

    def close(self) -> None:
        """Free Unicorn now: hooks form reference cycles that GC frees late."""
        if self._closed:
            return
        self._closed = True
        self.gate.close()
        self.counter.close()
        self.trap_handler = _no_trap_handler
        self.tsc = lambda retired: retired
        # The binding's finalizer calls uc_close exactly once; run it now.
        self.uc._Uc__finalizer()
        self.uc._callbacks.clear()
        if self._backing is not None:  # only after Unicorn let go of it
            backing, _keep = self._backing
            self._backing = None
            del _keep
            backing.close()


# Guest misbehaviour Unicorn reports as an error instead of an exception:
# error code -> (vector, what happened). Anything else is a host-side bug.
_ERROR_FAULTS = {
    UC_ERR_INSN_INVALID: (6, "invalid opcode"),
    UC_ERR_READ_UNMAPPED: (14, "page fault (read outside guest memory)"),
    UC_ERR_WRITE_UNMAPPED: (14, "page fault (write outside guest memory)"),
    UC_ERR_FETCH_UNMAPPED: (14, "page fault (fetch outside guest memory)"),
    UC_ERR_EXCEPTION: (13, "unhandled CPU exception"),
}


def _fault_from_error(err: UcError, rip: int) -> Fault | None:
    known = _ERROR_FAULTS.get(err.errno)
    if known is None:
        return None
    vector, reason = known
    return Fault(vector, rip, 0, 0, reason)


def _no_trap_handler(trap: Trap) -> bool:
    return True


# Registers saved in snapshots. Order matters on restore: control registers
# and EFER before the rest; FS/GS bases after their selectors.
_PLAIN_NAMES = ("rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip rflags "
                "cr0 cr2 cr3 cr4 cr8 cs ss ds es fs gs fs_base gs_base "
                "mxcsr fpcw fpsw fptag fip fdp fcs fds fop").split()
_PLAIN_REGS = tuple((n, getattr(X, f"UC_X86_REG_{n.upper()}")) for n in _PLAIN_NAMES
                    if hasattr(X, f"UC_X86_REG_{n.upper()}"))
_REG_BY_NAME = dict(_PLAIN_REGS)
_TABLE_REGS = tuple((n, getattr(X, f"UC_X86_REG_{n.upper()}")) for n in ("gdtr", "idtr", "ldtr", "tr"))
# EFER, STAR, LSTAR, CSTAR, SFMASK, FS/GS base, KERNEL_GS_BASE, TSC_AUX.
SAVED_MSRS = (0xC0000080, 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084,
              0xC0000100, 0xC0000101, 0xC0000102, 0xC0000103)
