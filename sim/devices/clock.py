"""Time as the guest sees it, derived from simulated time only.

Nothing here reads the host's clock: the wall clock is a fixed epoch plus
simulated nanoseconds, and the TSC ticks at the host model's clock rate.
"""

from __future__ import annotations

from dataclasses import dataclass

# 2026-01-01T00:00:00Z: a fixed, documented epoch keeps runs reproducible.
DEFAULT_EPOCH_NS = 1_767_225_600 * 1_000_000_000


@dataclass(frozen=True)
class TimeModel:
    """How instructions become nanoseconds (host parameters)."""

    clock_hz: int = 3_000_000_000
    cycles_per_insn_milli: int = 1000  # CPI x 1000, integer to stay exact
    epoch_ns: int = DEFAULT_EPOCH_NS

    @property
    def ns_ratio(self) -> tuple[int, int]:
        """(mult, div): insns_to_ns(n) == n * mult // div."""
        return self.cycles_per_insn_milli * 1_000_000, self.clock_hz

    def insns_to_ns(self, insns: int) -> int:
        return insns * self.cycles_per_insn_milli * 1_000_000 // self.clock_hz

    def insns_to_ns_range(self, first: int, count: int, base_ns: int) -> list[int]:
        """base_ns + insns_to_ns(k) for k = first .. first+count-1 (trace hot path)."""
        mult, hz = self.ns_ratio
        return [base_ns + k * mult // hz for k in range(first, first + count)]

    def ns_to_tsc(self, ns: int) -> int:
        return ns * self.clock_hz // 1_000_000_000

    def wall_ns(self, now_ns: int) -> int:
        return self.epoch_ns + now_ns
