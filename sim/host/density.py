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


def count_shared_pages(memories: Iterable[bytes | bytearray | memoryview],
                       page: int = PAGE) -> Sharing:
    """Hash every ``page``-byte page of every memory; count identical ones.

    A last partial page is padded with zeros (what a page-granular sharer
    would see)."""
    if page <= 0:
        raise ValueError(f"page size must be positive, got {page}")
    seen: set[bytes] = set()
    total = zero = 0
    zero_page = bytes(page)
    for mem in memories:
        mv = memoryview(mem).cast("B")
        for off in range(0, len(mv), page):
            chunk = mv[off:off + page]
            data = chunk.tobytes()
            if len(data) < page:
                data += bytes(page - len(data))
            if data == zero_page:
                zero += 1
            seen.add(hashlib.blake2b(data, digest_size=16).digest())
            total += 1
    shared = total - len(seen)
    return Sharing(page, total, len(seen), shared, zero, shared * page)


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
