"""Private virtual memory of a picoprocess: vm_alloc, vm_free, vm_protect.

The monitor reserves an area of guest memory (above the boot heap) and maps
nothing there until the guest asks. Allocations are whole 4 KiB pages, first
fit, zeroed, counted against the manifest's memory quota. Pages are never
writable and executable at once (W^X). Every change updates three things
together: the page tables the vCPU walks, the Regions the dispatcher checks
guest pointers against, and the allocation map here.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from sim.cpu.paging import PAGE, Mapping, PageTableBuilder
from sim.libos.dispatch import ArgumentError
from sim.libos.pico_abi import PROT_EXEC, PROT_READ, PROT_WRITE

ALL_PROT = PROT_READ | PROT_WRITE | PROT_EXEC


class VmError(ArgumentError):
    """A memory call that fails with one of the ABI's errors."""


class VirtualMemory:
    def __init__(self, start: int, end: int, quota: int, tables: PageTableBuilder, regions,
                 zero: Callable[[int, int], None], flush: Callable[[bool], None]):
        self.start, self.end = start, end
        self.quota = quota
        self.used = 0
        self.tables = tables
        self.regions = regions
        self._zero = zero
        self._flush = flush  # flush(code_changed): TLB (and translated code)
        # Allocated pages: sorted list of (start, end) runs, and prot per run.
        self._starts: list[int] = []
        self._ends: list[int] = []

    # -- snapshots --------------------------------------------------------
    def save(self) -> dict:
        return {"used": self.used, "starts": list(self._starts), "ends": list(self._ends)}

    def restore(self, state: dict) -> None:
        self.used = state["used"]
        self._starts = list(state["starts"])
        self._ends = list(state["ends"])

    # -- queries ----------------------------------------------------------
    def _find_gap(self, size: int) -> int | None:
        prev = self.start
        for s, e in zip(self._starts, self._ends):
            if s - prev >= size:
                return prev
            prev = e
        return prev if self.end - prev >= size else None

    def _covered(self, addr: int, end: int) -> bool:
        """True when [addr, end) lies in allocated pages."""
        i = bisect.bisect_right(self._starts, addr) - 1
        while addr < end:
            if i < 0 or i >= len(self._starts) or not self._starts[i] <= addr < self._ends[i]:
                return False
            addr = self._ends[i]
            i += 1
        return True

    def _range(self, addr: int, size: int) -> tuple[int, int]:
        if size <= 0 or addr % PAGE or size > self.end - self.start:
            raise VmError("EINVAL", f"range {addr:#x}+{size:#x} is not whole pages")
        end = addr + _page_up(size)
        if addr < self.start or end > self.end or not self._covered(addr, end):
            raise VmError("EINVAL", f"range {addr:#x}-{end:#x} was not allocated by vm_alloc")
        return addr, end

    @staticmethod
    def _check_prot(prot: int) -> None:
        if prot & ~ALL_PROT or not prot & PROT_READ:
            raise VmError("EINVAL", f"protection {prot:#x} must include PROT_READ and no unknown bits")
        if prot & PROT_WRITE and prot & PROT_EXEC:
            raise VmError("EINVAL", "pages are never writable and executable at once (W^X)")

    # -- calls ------------------------------------------------------------
    def alloc(self, size: int, prot: int) -> int:
        self._check_prot(prot)
        if size <= 0 or size > self.end - self.start:
            raise VmError("EINVAL" if size <= 0 else "ENOMEM", f"cannot allocate {size} bytes")
        size = _page_up(size)
        if self.used + size > self.quota:
            raise VmError("ENOMEM", f"vm_alloc of {size} bytes would exceed the memory quota "
                                    f"({self.used} of {self.quota} used)")
        addr = self._find_gap(size)
        if addr is None:
            raise VmError("ENOMEM", f"no free range of {size} bytes in the vm area")
        self._zero(addr, size)
        i = bisect.bisect(self._starts, addr)
        self._starts.insert(i, addr)
        self._ends.insert(i, addr + size)
        self.used += size
        self._map(addr, addr + size, prot)
        return addr

    def free(self, addr: int, size: int) -> None:
        start, end = self._range(addr, size)
        self.tables.unmap(start, end)
        self.regions.remove(start, end)
        # Cut [start, end) out of the runs.
        starts, ends = [], []
        for s, e in zip(self._starts, self._ends):
            if e <= start or s >= end:
                starts.append(s)
                ends.append(e)
                continue
            if s < start:
                starts.append(s)
                ends.append(start)
            if e > end:
                starts.append(end)
                ends.append(e)
        self._starts, self._ends = starts, ends
        self.used -= end - start
        self._flush(True)

    def protect(self, addr: int, size: int, prot: int) -> None:
        self._check_prot(prot)
        start, end = self._range(addr, size)
        self.regions.remove(start, end)
        self._map(start, end, prot)

    def _map(self, start: int, end: int, prot: int) -> None:
        self.tables.map(Mapping(start, end, bool(prot & PROT_WRITE), bool(prot & PROT_EXEC)))
        self.regions.add(start, end, bool(prot & PROT_WRITE))
        self._flush(bool(prot & PROT_EXEC))


def _page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)
