"""Round robin: FIFO order with a fixed time slice.

Default slice 100 ms: Linux SCHED_RR's RR_TIMESLICE (include/linux/sched/rt.h,
100 * HZ / 1000); calibration.md has no RR figure.
"""

from __future__ import annotations

from sim.host.schedulers.base import Param
from sim.host.schedulers.fifo import Fifo
from sim.host.schedulers.base import register
from sim.host.units import MS


@register
class RoundRobin(Fifo):
    name = "rr"
    PARAMS = {
        "slice_ns": Param(100 * MS, "time slice", "Linux RR_TIMESLICE, include/linux/sched/rt.h", 1),
    }

    def slice_ns(self, t, core, now):
        return self.params["slice_ns"]
