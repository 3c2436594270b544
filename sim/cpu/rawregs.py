"""Register access through the raw Unicorn library, for the trap hot path.

The 2.1 binding's reg_read/reg_write pick a register class and build Python
objects on every call (~2 us each, docs/architecture.md). Here the library's functions
are called through function objects without ctypes argument conversion, on
arguments converted once: measured on this machine, a batch read of the
seven syscall registers costs 0.33 us (0.8 us with the binding's prototypes,
1.7 us converting the result to a tuple) and one register read 0.24 us.
Only plain 64-bit registers go this way; everything else uses the binding.
"""

from __future__ import annotations

import ctypes

from unicorn import Uc, UcError
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

# Plain 64-bit registers that take the raw path (segments, MSRs, vectors don't).
GPRS = frozenset((X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX,
                  X.UC_X86_REG_RSI, X.UC_X86_REG_RDI, X.UC_X86_REG_RBP, X.UC_X86_REG_RSP,
                  X.UC_X86_REG_R8, X.UC_X86_REG_R9, X.UC_X86_REG_R10, X.UC_X86_REG_R11,
                  X.UC_X86_REG_R12, X.UC_X86_REG_R13, X.UC_X86_REG_R14, X.UC_X86_REG_R15,
                  X.UC_X86_REG_RIP))
SYSCALL_ARG_REGS = (X.UC_X86_REG_RAX, X.UC_X86_REG_RDI, X.UC_X86_REG_RSI, X.UC_X86_REG_RDX,
                    X.UC_X86_REG_R10, X.UC_X86_REG_R8, X.UC_X86_REG_R9)

# The same library the binding loaded, with our own function objects: the
# binding's carry argtypes, whose per-call conversion is the cost we avoid.
_lib = ctypes.CDLL(uclib._name)
_read = _lib.uc_reg_read
_write = _lib.uc_reg_write
_batch = _lib.uc_reg_read_batch
mem_read = _lib.uc_mem_read
mem_write = _lib.uc_mem_write
for _fn in (_read, _write, _batch, mem_read, mem_write):
    _fn.restype = ctypes.c_int
_REG_IDS = {reg: ctypes.c_int(reg) for reg in GPRS}


class RawRegisters:
    def __init__(self, uc: Uc):
        self._uch = ctypes.c_void_p(uc._uch.value)
        self._one = ctypes.c_uint64()
        self._one_ref = ctypes.byref(self._one)
        n = len(SYSCALL_ARG_REGS)
        self._vals = (ctypes.c_uint64 * n)()
        self._ids = (ctypes.c_int * n)(*SYSCALL_ARG_REGS)
        base = ctypes.addressof(self._vals)
        self._ptrs = (ctypes.c_void_p * n)(*(base + 8 * i for i in range(n)))
        self._n = ctypes.c_int(n)

    def read(self, reg: int) -> int:
        status = _read(self._uch, _REG_IDS[reg], self._one_ref)
        if status:
            raise UcError(status)
        return self._one.value

    def write(self, reg: int, value: int) -> None:
        self._one.value = value & 0xFFFF_FFFF_FFFF_FFFF
        status = _write(self._uch, _REG_IDS[reg], self._one_ref)
        if status:
            raise UcError(status)

    def syscall_args(self) -> list[int]:
        """[nr, a0..a5] in the syscall convention: rax; rdi rsi rdx r10 r8 r9."""
        status = _batch(self._uch, self._ids, self._ptrs, self._n)
        if status:
            raise UcError(status)
        return self._vals[:]
