"""Density: memory per instance, page sharing, admission.

``count_shared_pages`` measures sharing from real memory contents (emulated
guests' RAM, or guests started from one golden image): pages with identical
contents could be merged by KSM / transparent page sharing. Calibration
point: >30% saved for near-identical VMs, <5% for diverse ones (VMware docs;
Barker ATC'12, calibration.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from sim.host.profiles import IsolationProfile

PAGE = 4096
_ZERO_DIGEST = None


@dataclass(frozen=True)
class Sharing:
    page_size: int
    total_pages: int        # pages across all memories (a short tail counts as a page)
    distinct_pages: int     # distinct contents
    shared_pages: int       # pages that could be dropped: total - distinct
    zero_pages: int         # all-zero pages among the total
    saved_bytes: int

    @property
    def saved_fraction(self) -> float:
        return self.shared_pages / self.total_pages if self.total_pages else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["saved_fraction"] = round(self.saved_fraction, 6)
        return d


class PageCounter:
    """Accumulates pages (from any number of memories, fed in chunks) and
    counts identical contents. Chunks must be whole pages except the last
    one of a memory, which is padded with zeros (what a page-granular
    sharer would see)."""

    def __init__(self, page: int = PAGE, skip_zero: bool = False) -> None:
        if page <= 0:
            raise ValueError(f"page size must be positive, got {page}")
        self.page = page
        self.skip_zero = skip_zero
        self.seen: set[bytes] = set()
        self.total = 0
        self.zero = 0
        self._zero_page = bytes(page)
        self._zero_chunk = b""

    def add(self, mem: bytes | bytearray | memoryview) -> None:
        page, zero_page, seen = self.page, self._zero_page, self.seen
        mv = memoryview(mem).cast("B")
        n = len(mv)
        raw = mem if isinstance(mem, bytes) else mv.tobytes()
        if n % page == 0 and n and raw == self._zeros(n):   # memcmp
            # Untouched RAM (most of a guest): count it without hashing.
            pages = n // page
            self.zero += pages
            if not self.skip_zero:
                seen.add(hashlib.blake2b(zero_page, digest_size=16).digest())
                self.total += pages
            return
        for off in range(0, len(mv), page):
            data = mv[off:off + page].tobytes()
            if len(data) < page:
                data += bytes(page - len(data))
            if data == zero_page:
                self.zero += 1
                if self.skip_zero:
                    continue
            seen.add(hashlib.blake2b(data, digest_size=16).digest())
            self.total += 1

    def _zeros(self, n: int) -> bytes:
        z = self._zero_chunk
        if len(z) != n:
            z = self._zero_chunk = bytes(n)
        return z

    def result(self) -> Sharing:
        shared = self.total - len(self.seen)
        zero = 0 if self.skip_zero else self.zero
        return Sharing(self.page, self.total, len(self.seen), shared, zero, shared * self.page)


def count_shared_pages(memories: Iterable[bytes | bytearray | memoryview],
                       page: int = PAGE, skip_zero: bool = False) -> Sharing:
    """Hash every ``page``-byte page of every memory; count identical ones.

    A last partial page is padded with zeros. With ``skip_zero``, all-zero
    pages are left out entirely (a host never backs untouched guest RAM, so
    counting them as "shared" would flatter every workload)."""
    c = PageCounter(page, skip_zero)
    for mem in memories:
        c.add(mem)
    return c.result()


# Read guest RAM in chunks this big (bounded transient host memory).
READ_CHUNK = 1 << 20


def guest_sharing(guests: Iterable[Any], page: int = PAGE,
                  chunk: int = READ_CHUNK) -> dict[str, Any]:
    """Page sharing measured from the RAM of running emulated guests
    (anything with ``vcpu.mem.read(addr, size)`` and ``vcpu.mem.size``, as
    sim.guest.Guest has); closed guests are skipped and counted. Returns ``all`` (every page, zero pages included:
    what a sharer could merge if all RAM were backed) and ``nonzero``
    (touched, non-zero pages only: the honest figure), both as
    ``Sharing.as_dict()``, plus ``guests`` and ``guest_bytes``."""
    if chunk <= 0 or chunk % page:
        raise ValueError(f"chunk must be a positive multiple of the page size, got {chunk}")
    every = PageCounter(page)
    nonzero = PageCounter(page, skip_zero=True)
    n = size_total = gone = 0
    for g in guests:
        # A guest that exited on a Host has been closed (its Unicorn freed):
        # it holds no memory any more, and reading it would crash Unicorn.
        if getattr(g.vcpu, "_closed", False):
            gone += 1
            continue
        mem = g.vcpu.mem
        n += 1
        size_total += mem.size
        for off in range(0, mem.size, chunk):
            data = mem.read(off, min(chunk, mem.size - off))
            every.add(data)
            nonzero.add(data)
    return {"guests": n, "closed": gone, "guest_bytes": size_total, "page_size": page,
            "all": every.result().as_dict(), "nonzero": nonzero.result().as_dict()}


def instance_bytes(profile: IsolationProfile, guest_bytes: int, shared_fraction: float = 0.0,
                   first: bool = False) -> int:
    """Host memory one more instance costs: the profile's overhead plus the
    guest's memory, of which ``shared_fraction`` is shared with instances
    already running (the first instance pays it all)."""
    if not 0.0 <= shared_fraction <= 1.0:
        raise ValueError(f"shared_fraction must be in [0, 1], got {shared_fraction}")
    private = guest_bytes if first else guest_bytes - int(guest_bytes * shared_fraction)
    return profile.overhead_bytes + private


def fit_count(memory_bytes: int, profile: IsolationProfile, guest_bytes: int,
              shared_fraction: float = 0.0) -> int:
    """How many instances fit in ``memory_bytes`` (memory is the only limit)."""
    first = instance_bytes(profile, guest_bytes, shared_fraction, first=True)
    if first > memory_bytes:
        return 0
    more = instance_bytes(profile, guest_bytes, shared_fraction)
    return 1 + (memory_bytes - first) // more if more else 1 << 62
