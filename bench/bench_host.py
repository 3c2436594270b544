"""Host-model benchmark: simulated events per wall second.

Default run (issue 5 target: < 60 s wall on the 2-core dev machine):
10,000 modelled guests, 10 s simulated, CFS, 64 cores. Each guest is a
closed loop: exponential CPU bursts (mean 500 us) then exponential think
times (mean 100 ms), one host call per burst -- about 78% of 64 cores busy.

    .venv/bin/python bench/bench_host.py [--guests N] [--cores C] [--seconds S]
                                        [--scheduler NAME] [--burst-us B] [--think-us T]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from sim.host.machine import Host  # noqa: E402
from sim.host.units import S  # noqa: E402
from sim.host.workload import spawn_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=10_000)
    ap.add_argument("--cores", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--scheduler", default="cfs")
    ap.add_argument("--burst-us", type=float, default=500.0)
    ap.add_argument("--think-us", type=float, default=100_000.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t0 = time.perf_counter()
    h = Host(cores=a.cores, scheduler=a.scheduler, seed=a.seed)
    for i in range(a.guests):
        spawn_model(h, f"g{i}", "think", {"burst_us": a.burst_us, "think_us": a.think_us,
                                          "calls": 1}, profile="unikernel", boot=False)
    t1, c1 = time.perf_counter(), time.process_time()
    h.run(int(a.seconds * S))
    t2, c2 = time.perf_counter(), time.process_time()
    h.flush_accounting()
    events = h.events_scheduled()
    busy = sum(c.busy_ns for c in h.cores) / (a.cores * a.seconds * S)
    bursts = sum(t.dispatches for t in h.tasks)
    print(f"scheduler={a.scheduler} cores={a.cores} guests={a.guests} simulated={a.seconds} s")
    print(f"setup {t1 - t0:.2f} s, run {t2 - t1:.2f} s wall ({c2 - c1:.2f} s CPU of this process)")
    print(f"{events} SimPy events, {events / (t2 - t1):,.0f} events/s; "
          f"{bursts} dispatches, {bursts / (t2 - t1):,.0f} dispatches/s")
    print(f"core utilisation {100 * busy:.1f}%, switches {sum(c.switches for c in h.cores)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
