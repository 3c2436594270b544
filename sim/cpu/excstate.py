"""The CPU's exception bookkeeping, which Unicorn leaves behind.

Unicorn reports a CPU exception to a UC_HOOK_INTR callback instead of
delivering it, so QEMU's delivery code, which would clear the "exception in
flight" field and use the error code, never runs. Measured on unicorn 2.1.4:
after one page fault handled this way, the next page fault is reported as a
double fault (#DF) and the one after stops emulation silently (triple
fault); and the hardware error code of a #PF is only visible in the CPU
state. This module finds both fields in the saved CPU context by probing a
throw-away CPU once per process, then reads the error code and clears the
in-flight exception after each fault the monitor has handled.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_64, UC_PROT_ALL, Uc
from unicorn import x86_const as X

CONTEXT_HEADER = 24  # struct uc_context: size_t size; int mode; int arch; void *uc; data[]
_PROBE_ADDR = 0x100000
# mov qword [0x28], 1 with page 0 not present: a write #PF, error code 2.
_PROBE_CODE = bytes.fromhex("48c704252800000001000000") + b"\xf4"


@dataclass(frozen=True)
class ContextLayout:
    error_code: int
    old_exception: int


def _context_bytes(uc: Uc) -> tuple[object, int, bytes]:
    ctx = uc.context_save()
    ptr = ctypes.cast(ctx.context, ctypes.c_void_p).value
    return ctx, ptr + CONTEXT_HEADER, ctypes.string_at(ptr + CONTEXT_HEADER, ctx.size)


def _probe() -> ContextLayout | None:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_tcg_buffer_size(1 << 20)
    uc.mem_map(0, 0x200000, UC_PROT_ALL)
    # Identity-map 0x100000-0x1fffff with one PML4/PDPT/PD/PT chain; page 0 absent.
    uc.mem_write(0x2000, struct.pack("<Q", 0x3000 | 3))
    uc.mem_write(0x3000, struct.pack("<Q", 0x4000 | 3))
    uc.mem_write(0x4000, struct.pack("<Q", 0x5000 | 3))
    uc.mem_write(0x5000 + 8 * 256, b"".join(
        struct.pack("<Q", (_PROBE_ADDR + i * 0x1000) | 3) for i in range(256)))
    uc.mem_write(_PROBE_ADDR, _PROBE_CODE)
    uc.mem_write(0x1000, struct.pack("<3Q", 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF))
    w = uc.reg_write
    w(X.UC_X86_REG_GDTR, (0, 0x1000, 23, 0))
    w(X.UC_X86_REG_CR3, 0x2000)
    w(X.UC_X86_REG_CR4, 0x620)
    w(X.UC_X86_REG_MSR, (0xC0000080, 0x500))
    w(X.UC_X86_REG_CR0, 0x80010033)
    w(X.UC_X86_REG_CS, 0x08)
    _, _, before = _context_bytes(uc)
    after: list[bytes] = []

    def on_intr(uc: Uc, intno: int, _user: object) -> None:
        if intno == 14:
            after.append(_context_bytes(uc)[2])
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_intr)
    uc.emu_start(_PROBE_ADDR, _PROBE_ADDR + len(_PROBE_CODE))
    if not after:
        return None
    fault = after[0]
    error = [o for o in range(0, len(fault) - 3, 4)
             if before[o:o + 4] == b"\0\0\0\0" and fault[o:o + 4] == struct.pack("<i", 2)]
    old = [o for o in range(0, len(fault) - 3, 4)
           if before[o:o + 4] == struct.pack("<i", -1) and fault[o:o + 4] == struct.pack("<i", 14)]
    if len(error) != 1 or len(old) != 1:
        return None
    return ContextLayout(error[0], old[0])


_layout: ContextLayout | None = None
_probed = False


def layout() -> ContextLayout | None:
    global _layout, _probed
    if not _probed:
        _probed = True
        _layout = _probe()
    return _layout


def read_error_code(uc: Uc) -> int | None:
    """The error code of the exception being reported (call inside the hook)."""
    lay = layout()
    if lay is None:
        return None
    _, _, data = _context_bytes(uc)
    return struct.unpack_from("<i", data, lay.error_code)[0] & 0xFFFF_FFFF


def clear_in_flight(uc: Uc) -> None:
    """Forget the reported exception, as QEMU's delivery code would."""
    lay = layout()
    if lay is None:
        return
    ctx, data_ptr, _ = _context_bytes(uc)
    ctypes.memmove(data_ptr + lay.old_exception, struct.pack("<i", -1), 4)
    uc.context_restore(ctx)
