"""Time units and small numeric helpers for the host model.

Simulated time is integer nanoseconds everywhere (docs/architecture.md, "Determinism"). These
helpers convert human units to ns and compute percentiles without floats
leaking into the simulated clock.
"""

from __future__ import annotations

from typing import Sequence

NS = 1
US = 1_000
MS = 1_000_000
S = 1_000_000_000
KIB = 1024
MIB = 1024 * 1024
GIB = 1024 * MIB


def ns_of(value: float, unit: int) -> int:
    """``value`` (in ``unit`` ns) rounded to an integer number of ns."""
    return int(round(value * unit))


def percentile(sorted_values: Sequence[int], p: float) -> int | None:
    """Nearest-rank percentile of an already sorted sequence (None if empty).

    Nearest rank keeps the answer one of the observed values, so results
    stay integers and byte-identical between runs.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = -(-int(round(p * n * 1000)) // 100_000)  # ceil(p/100 * n) in integers
    return sorted_values[min(max(rank, 1), n) - 1]


def cycles_to_ns(cycles: int, clock_hz: int) -> int:
    """Integer ns for ``cycles`` at ``clock_hz`` (rounded to nearest)."""
    return (cycles * S + clock_hz // 2) // clock_hz
