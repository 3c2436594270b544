"""The pico personality: a picoprocess behind the pico ABI.

Memory layout (guest-physical = guest-virtual):

    0x0       - 0xfff      not mapped: NULL faults
    0x1000                 GDT (null, 64-bit code 0x08, data 0x10)
    0x2000                 PML4; further tables from 0x20000 to 0xfffff
    0x10000                boot info (struct pico_boot_info), read-only
    0x100000  - kernel_end the image, with its segments' own permissions
    heap      - stack-64K  read-write, no-execute
    guard page             not mapped: a stack overflow faults
    stack     - mem_size   read-write, no-execute; RSP starts at the top

Code pages are never writable and data pages never executable, so the
monitor's W^X holds for the whole run.
"""

from __future__ import annotations

import bisect
import struct
from typing import Any

from unicorn import x86_const as X

from sim.cpu.memory import GuestMemoryError
from sim.cpu.paging import LARGE, PAGE, Mapping, PageTableBuilder
from sim.cpu.vcpu import Trap
from sim.libos.abi import Abi
from sim.libos.dispatch import Block, Dispatcher, GuestExit, OutBuffer
from sim.libos.personality import BootError, Personality
from sim.libos.pico_abi import BOOT_INFO, PICO_ABI

GDT_BASE = 0x1000
PML4 = 0x2000
BOOT_INFO_ADDR = 0x10000
TABLES_START, TABLES_END = 0x20000, 0x100000
IMAGE_BASE = 0x100000
STACK_BYTES = 256 << 10
MIN_MEM = 2 << 20
MAX_MEM = 3 << 30  # CR3 is cut to 32 bits in Unicorn; keep everything below 4 GiB

# Flat 64-bit code (DPL0, L=1) and data descriptors.
GDT = struct.pack("<3Q", 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF)


class Regions:
    """The guest's mapped ranges and their permissions, for pointer checks."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._spans: list[tuple[int, int, bool]] = []

    def add(self, start: int, end: int, writable: bool) -> None:
        i = bisect.bisect(self._starts, start)
        self._starts.insert(i, start)
        self._spans.insert(i, (start, end, writable))

    def check(self, addr: int, size: int, write: bool) -> None:
        if size == 0:
            return
        if addr < 0 or size < 0 or addr + size > 1 << 47:
            raise GuestMemoryError(addr, size, "overflows the address space")
        i = bisect.bisect(self._starts, addr) - 1
        if i < 0:
            raise GuestMemoryError(addr, size, "is not mapped")
        start, end, writable = self._spans[i]
        if addr >= end:
            raise GuestMemoryError(addr, size, "is not mapped")
        if addr + size > end:
            raise GuestMemoryError(addr, size, "straddles the end of a mapping")
        if write and not writable:
            raise GuestMemoryError(addr, size, "points at read-only memory")

    def check_pointer(self, addr: int, size: int, write: bool) -> None:
        self.check(addr, size, write)


class PicoPersonality(Personality):
    name = "pico"
    abi: Abi = PICO_ABI

    def boot(self) -> None:
        s = self.s
        mem = s.config.mem_bytes
        if not MIN_MEM <= mem <= MAX_MEM:
            raise BootError(f"pico guests need between {MIN_MEM >> 20} and {MAX_MEM >> 20} MiB of memory")
        image = s.image
        stack_base = mem - STACK_BYTES
        heap_start = _page_up(image.kernel_end)
        heap_end = stack_base - PAGE  # guard page below the stack
        if image.kernel_end > heap_end:
            raise BootError(f"image needs {image.kernel_end:#x} bytes but memory is {mem:#x}")
        self.regions = Regions()
        tables = PageTableBuilder(s.mem, PML4, TABLES_START, TABLES_END, nx_enabled=True)
        s.mem.write(GDT_BASE, GDT)
        tables.map(Mapping(BOOT_INFO_ADDR, BOOT_INFO_ADDR + PAGE, writable=False, executable=False))
        self.regions.add(BOOT_INFO_ADDR, BOOT_INFO_ADDR + PAGE, False)
        for seg in image.segments:
            start = seg.vaddr & ~(PAGE - 1)
            s.mem.write(seg.vaddr, seg.data)
            tables.map(Mapping(start, seg.aligned_end, seg.writable, seg.executable))
            self.regions.add(start, seg.aligned_end, seg.writable)
        _map_mixed(tables, heap_start, heap_end)
        self.regions.add(heap_start, heap_end, True)
        tables.map(Mapping(stack_base, mem, writable=True, executable=False))
        self.regions.add(stack_base, mem, True)
        self.tables = tables
        s.mem.write(BOOT_INFO_ADDR, BOOT_INFO.encode(
            {"mem_size": mem, "heap_start": heap_start, "heap_end": heap_end, "stack_top": mem}))
        s.vcpu.enter_long_mode(cr3=PML4, gdt_base=GDT_BASE, gdt_limit=len(GDT) - 1,
                               rip=image.entry, rsp=mem, nx=True)
        s.vcpu.set_reg(X.UC_X86_REG_RDI, BOOT_INFO_ADDR)
        self.cmdline = " ".join(s.config.args).encode() + b"\0"
        self.dispatcher = Dispatcher(self.abi, self.handlers(), s.mem, policy=self.regions)

    # -- traps ---------------------------------------------------------------
    def on_trap(self, trap: Trap) -> bool:
        vcpu = self.s.vcpu
        if trap.kind != "syscall":
            self.pending = GuestExit(139, f"fault: port I/O ({trap.kind} port {trap.port:#x}) "
                                          "is not part of the pico ABI")
            return True
        nr, *args = vcpu.syscall_args()
        served = self.dispatcher.serve(nr, tuple(args))
        if served.call is not None:
            self.s.charge(self.abi.cost_classes[served.call.cost])
        self.trace_call(served)
        result = served.result
        if isinstance(result, int):
            vcpu.set_reg(X.UC_X86_REG_RAX, result & 0xFFFF_FFFF_FFFF_FFFF)
            return False
        self.pending = result
        return True

    def resume(self, block: Block) -> None:
        self.s.vcpu.set_reg(X.UC_X86_REG_RAX, block.resume() & 0xFFFF_FFFF_FFFF_FFFF)

    # -- handlers (one per declared call) -------------------------------------
    def handlers(self) -> dict[str, Any]:
        return {
            "exit": self.call_exit,
            "console_write": self.call_console_write,
            "clock_monotonic": self.call_clock_monotonic,
            "clock_wall": self.call_clock_wall,
            "sleep_until": self.call_sleep_until,
            "random_bytes": self.call_random_bytes,
            "cmdline": self.call_cmdline,
        }

    def call_exit(self, status: int) -> GuestExit:
        return GuestExit(status & 0xFF, "exit")

    def call_console_write(self, buf: bytes, size: int) -> int:
        self.s.emit("dev", "console.write", bytes=size)
        return self.s.console.write(buf)

    def call_clock_monotonic(self) -> int:
        return self.s.now()

    def call_clock_wall(self) -> int:
        return self.s.config.time.wall_ns(self.s.now())

    def call_sleep_until(self, deadline_ns: int) -> int | Block:
        if deadline_ns <= self.s.now():
            return 0
        return Block(until_ns=deadline_ns, resume=lambda: 0, reason="sleep")

    def call_random_bytes(self, buf: OutBuffer, size: int) -> int:
        return buf.write(self.s.rng.randbytes(size))

    def call_cmdline(self, buf: OutBuffer, size: int) -> int:
        buf.write(self.cmdline[:size])
        return len(self.cmdline)


def _page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def _map_mixed(tables: PageTableBuilder, start: int, end: int) -> None:
    """Map [start, end) RW/NX with 2 MiB pages where aligned, 4 KiB elsewhere."""
    big_start = (start + LARGE - 1) & ~(LARGE - 1)
    big_end = end & ~(LARGE - 1)
    if big_start >= big_end:
        tables.map(Mapping(start, end, True, False))
        return
    if start < big_start:
        tables.map(Mapping(start, big_start, True, False))
    tables.map(Mapping(big_start, big_end, True, False), large_pages=True)
    if big_end < end:
        tables.map(Mapping(big_end, end, True, False))
