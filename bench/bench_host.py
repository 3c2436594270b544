"""Host-model benchmark: simulated events per wall second.

Default run (issue 5 target: < 60 s wall on the 2-core dev machine):
10,000 modelled guests, 10 s simulated, CFS, 64 cores. Each guest is a
closed loop: exponential CPU bursts (mean 500 us) then exponential think
times (mean 100 ms), one host call per burst -- about 78% of 64 cores busy.

    .venv/bin/python bench/bench_host.py [--guests N] [--cores C] [--seconds S]
                                        [--scheduler NAME] [--burst-us B] [--think-us T]

``--emulated N`` (default 100) also runs N real emulated ``hello`` guests at
once (issue 5: host memory per idle emulated guest < 4 MiB): VmRSS before
and after creating N Guests (after one warm-up guest, so shared libraries
and caches are not counted), then all N on one Host until they exit, then
VmRSS after closing them. ``--only modelled|emulated`` runs one part.
The machine's load average is printed: other work on it slows wall times.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from sim.host.machine import Host  # noqa: E402
from sim.host.units import MS, S  # noqa: E402
from sim.host.workload import spawn_model  # noqa: E402


def vm_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_emulated(n: int, cores: int, image: str = "hello") -> None:
    import gc

    from sim.host.emulated import open_guest, spawn_emulated
    open_guest(image).close()                 # warm-up: libraries, caches
    gc.collect()
    rss0 = vm_rss_kib()
    t0 = time.perf_counter()
    h = Host(cores=cores, scheduler="cfs", seed=1)
    outs = [bytearray() for _ in range(n)]
    guests = [open_guest(image, h, name=f"e{i}", args=("x",), on_console=outs[i].extend)
              for i in range(n)]
    t1 = time.perf_counter()
    rss1 = vm_rss_kib()
    tasks = [spawn_emulated(h, g, boot=False) for g in guests]
    h.run(1000 * MS)
    t2 = time.perf_counter()
    rss2 = vm_rss_kib()
    h.close()                                 # closes every guest's Unicorn
    del guests
    gc.collect()
    rss3 = vm_rss_kib()
    try:   # glibc keeps freed arenas; give them back to show nothing leaked
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    rss4 = vm_rss_kib()
    ok = sum(1 for t in tasks if t.stopped is not None and t.stopped.status == 0)
    same = len({bytes(o) for o in outs}) == 1
    end = max((t.exited_at or 0) for t in tasks)
    print(f"emulated: {n} x {image} on {cores} cores (cfs): create {t1 - t0:.2f} s "
          f"({1000 * (t1 - t0) / n:.1f} ms/guest), run to exit {t2 - t1:.2f} s wall, "
          f"{ok}/{n} exited 0, identical output {same}, last exit at {end / MS:.3f} ms simulated")
    print(f"emulated: VmRSS {rss0 / 1024:.1f} MiB before, {rss1 / 1024:.1f} MiB with {n} idle "
          f"guests (+{(rss1 - rss0) / 1024 / n:.2f} MiB each), {rss2 / 1024:.1f} MiB after they "
          f"ran, {rss3 / 1024:.1f} MiB after close, {rss4 / 1024:.1f} MiB after malloc_trim "
          f"(+{(rss4 - rss0) / 1024:.1f} MiB kept)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guests", type=int, default=10_000)
    ap.add_argument("--cores", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--scheduler", default="cfs")
    ap.add_argument("--burst-us", type=float, default=500.0)
    ap.add_argument("--think-us", type=float, default=100_000.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--emulated", type=int, default=100, help="emulated hello guests at once")
    ap.add_argument("--emulated-cores", type=int, default=4)
    ap.add_argument("--only", choices=("modelled", "emulated"), default=None)
    a = ap.parse_args()
    la = os.getloadavg()
    print(f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs")
    if a.only != "modelled" and a.emulated > 0:
        bench_emulated(a.emulated, a.emulated_cores)
    if a.only == "emulated":
        return 0
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
    la = os.getloadavg()
    print(f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
