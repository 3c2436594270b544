"""Guest memory: one block of guest-physical RAM with bound-checked access.

Every guest pointer that crosses into the host goes through ``check`` (or a
read/write that calls it) exactly once, at the personality boundary. A bad
pointer raises ``GuestMemoryError``; personalities turn that into an error
result or a contained guest stop, never a host crash.
"""

from __future__ import annotations

import ctypes
import struct

from unicorn import UC_PROT_ALL, Uc

from sim.cpu.rawregs import mem_read as _raw_mem_read
from sim.cpu.rawregs import mem_write as _raw_mem_write

SMALL_READ = 4096  # reads up to this size skip the binding's per-call buffer


class GuestMemoryError(Exception):
    def __init__(self, addr: int, size: int, reason: str):
        super().__init__(f"guest pointer {addr:#x}+{size} {reason}")
        self.addr = addr
        self.size = size
        self.reason = reason


class GuestMemory:
    """RAM mapped at guest-physical 0 .. size; page tables map it 1:1."""

    def __init__(self, uc: Uc, size: int):
        if size <= 0 or size % 0x1000:
            raise ValueError(f"guest memory size {size} is not a positive multiple of 4 KiB")
        self.uc = uc
        self.size = size
        uc.mem_map(0, size, UC_PROT_ALL)
        # The hypercall-struct path is hot: one handle, one address object and
        # one buffer, converted once. Sizes go as plain ints (at most
        # SMALL_READ, so C's int conversion holds them).
        self._uch = ctypes.c_void_p(uc._uch.value)
        self._addr = ctypes.c_uint64()
        self._buf = ctypes.create_string_buffer(SMALL_READ)
        self._view = memoryview(self._buf).cast("B")

    def check(self, addr: int, size: int) -> None:
        if size < 0 or addr < 0:
            raise GuestMemoryError(addr, size, "is negative")
        if addr + size > self.size:
            raise GuestMemoryError(addr, size, f"is outside guest memory (0x0-{self.size:#x})")

    def read(self, addr: int, size: int) -> bytes:
        self.check(addr, size)
        if size == 0:
            return b""
        if size <= SMALL_READ:
            self._addr.value = addr
            status = _raw_mem_read(self._uch, self._addr, self._buf, size)
            if status:
                raise GuestMemoryError(addr, size, f"could not be read (error {status})")
            return bytes(self._view[:size])  # a copy: the buffer is reused
        return bytes(self.uc.mem_read(addr, size))

    def write(self, addr: int, data: bytes) -> None:
        size = len(data)
        self.check(addr, size)
        if size:
            # The raw call takes a bytes object's buffer as it is (no copy).
            if type(data) is not bytes:
                data = bytes(data)
            self._addr.value = addr
            status = _raw_mem_write(self._uch, self._addr, data, ctypes.c_size_t(size))
            if status:  # pragma: no cover - checked above; keep the reason
                raise GuestMemoryError(addr, size, f"could not be written (error {status})")

    def read_u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def read_u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<Q", value & 0xFFFF_FFFF_FFFF_FFFF))

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<I", value & 0xFFFF_FFFF))

    def read_cstr(self, addr: int, max_len: int) -> bytes:
        """Bytes up to (not including) a NUL, at most max_len of them."""
        out = bytearray()
        while len(out) < max_len:
            chunk = self.read(addr + len(out), min(256, max_len - len(out), self.size - addr - len(out)))
            if not chunk:
                break
            nul = chunk.find(0)
            if nul >= 0:
                out += chunk[:nul]
                return bytes(out)
            out += chunk
        raise GuestMemoryError(addr, max_len, "is not a NUL-terminated string within bounds")
