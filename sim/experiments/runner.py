"""Run one validated scenario on a fresh Host and return its results.

Results are plain data (see sim/host/metrics.py); the same scenario and seed
give byte-identical ``to_json`` output. Nothing here prints: progress goes
to the optional callback.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from sim.experiments.scenario import Scenario, ScenarioError, image_path, instance_name
from sim.host.density import fit_count, guest_sharing, instance_bytes
from sim.host.emulated import spawn_emulated
from sim.host.machine import Host, Task
from sim.host.metrics import collect
from sim.host.profiles import get_profile
from sim.host.timeline import Timeline
from sim.host.units import MIB, MS, percentile
from sim.host.workload import load_profile, spawn_model, spawn_replay


def open_emulated(image: str, name: str, argv: list[str], host: Host, mem_bytes: int = 0,
                  on_console: Callable[[bytes], None] | None = None):
    """A sim.guest.Guest for ``image`` (the emulated-guest layer), timed like
    ``host``."""
    try:
        from sim.host.emulated import open_guest
        return open_guest(image, host, name=name, args=argv, mem_bytes=mem_bytes,
                          on_console=on_console)
    except ImportError as e:  # pragma: no cover
        raise ScenarioError(f"{image}: emulated guests need sim.guest ({e})") from None


# Console output kept per emulated guest in the results (the tail is cut).
CONSOLE_KEEP = 4096


class Run:
    def __init__(self, sc: Scenario, timeline: Timeline | None = None) -> None:
        self.sc = sc
        d = sc.doc
        h = d["host"]
        self.duration = int(d["scenario"]["duration_ms"] * MS)
        self.host = Host(cores=h["cores"], clock_hz=h["clock_hz"], cpi=h["cpi"],
                         memory_bytes=int(h["memory_mib"] * MIB),
                         scheduler=d["scheduler"]["name"], scheduler_params=d["scheduler"]["params"],
                         seed=d["scenario"]["seed"], timeline=timeline)
        self.timeline = timeline
        self.admission: dict[str, Any] | None = None
        self._replays: dict[str, Any] = {}
        self.consoles: dict[str, bytearray] = {}
        self.emulated: list[Any] = []
        self.sharing: dict[str, Any] | None = None
        adm = d["admission"]
        for g in d["guests"]:
            if adm is not None and g["name"] == adm["group"]:
                continue
            for i in range(g["count"]):
                self.spawn(g, instance_name(g["name"], i, g["count"]), int(g["start_ms"] * MS))
        if adm is not None:
            self.host.env.process(self._admit(adm))
        if d["fault"] is not None:
            self.host.env.process(self._fault(d["fault"]))
        if d["measure"]["sharing_ms"] is not None:
            self.host.env.process(self._sharing(int(d["measure"]["sharing_ms"] * MS)))
        if timeline is not None:
            self.host.env.process(self._sample(int(d["measure"]["sample_ms"] * MS)))

    def spawn(self, g: dict[str, Any], name: str, start_ns: int) -> Task:
        host = self.host
        kw = dict(profile=g["profile"], weight=float(g["weight"]), group=g["name"],
                  start_ns=start_ns, boot=g["boot"], memory_bytes=int(g["memory_mib"] * MIB))
        if g["model"] is not None:
            return spawn_model(host, name, g["model"], g["args"], **kw)
        if g["replay"] is not None:
            p = os.path.join(self.sc.base_dir, g["replay"])
            if p not in self._replays:
                self._replays[p] = load_profile(p)
            return spawn_replay(host, name, self._replays[p], **kw)
        path = image_path(self.sc.base_dir, g["image"])
        if path is None:   # validated already; the file went away since
            raise ScenarioError(f"{self.sc.path}: guests.{g['name']}.image: no such image "
                                f"{g['image']!r}")
        buf = self.consoles[name] = bytearray()

        def keep(data: bytes, buf: bytearray = buf) -> None:
            if len(buf) < CONSOLE_KEEP:
                buf.extend(data[:CONSOLE_KEEP - len(buf)])
        guest = open_emulated(path, name, g["argv"], host, int(g["memory_mib"] * MIB), keep)
        self.emulated.append(guest)
        return spawn_emulated(host, guest, **kw)

    def _fault(self, f: dict[str, Any]):
        env = self.host.env
        yield env.timeout(int(f["at_ms"] * MS))
        by_name = {t.name: t for t in self.host.tasks}
        victim = by_name.get(f["guest"])
        if victim is None:  # a group name: its first instance
            victim = next(t for t in self.host.tasks if t.group == f["guest"])
        self.host.inject_kernel_fault(victim)
        if self.timeline is not None:
            self.timeline.instant(env.now, "kernel fault", {"victim": victim.name})

    def _admit(self, adm: dict[str, Any]):
        """Admit one instance per interval until memory or the latency
        objective runs out."""
        env, host = self.host.env, self.host
        g = next(x for x in self.sc.doc["guests"] if x["name"] == adm["group"])
        interval = int(adm["interval_ms"] * MS)
        window = int((adm["window_ms"] or adm["interval_ms"]) * MS)
        objective = int(adm["p99_ms"] * MS) if adm["p99_ms"] is not None else None
        profile = get_profile(g["profile"])
        need = instance_bytes(profile, int(g["memory_mib"] * MIB))
        admitted: list[Task] = []
        cursors: list[int] = []
        reason = "duration"
        i = 0
        last_check = env.now
        self.admission = state = {
            "group": g["name"], "admitted": 0, "stopped_by": reason, "at_ns": None,
            "memory_fit": fit_count(host.memory_bytes, profile, int(g["memory_mib"] * MIB)),
            "instance_bytes": need}
        while True:
            state["admitted"] = len(admitted)
            if host.memory_used + need > host.memory_bytes:
                reason = "memory"
                break
            if g["count"] and i >= g["count"]:
                reason = "count"
                break
            admitted.append(self.spawn(g, f"{g['name']}-{i}", env.now))
            cursors.append(0)
            i += 1
            yield env.timeout(interval)
            if objective is not None and env.now - last_check >= window:
                last_check = env.now
                recent: list[int] = []
                for k, t in enumerate(admitted):
                    recent.extend(t.latencies[cursors[k]:])
                    cursors[k] = len(t.latencies)
                recent.sort()
                p99 = percentile(recent, 99)
                if p99 is not None and p99 > objective:
                    reason = "latency"
                    break
        state.update(admitted=len(admitted), stopped_by=reason, at_ns=env.now)

    def _sharing(self, at: int):
        """Count identical pages across the emulated guests running at ``at``."""
        yield self.host.env.timeout(at)
        self.sharing = {"at_ns": self.host.env.now, **guest_sharing(self.emulated)}

    def _sample(self, every: int):
        env, host, tl = self.host.env, self.host, self.timeline
        while True:
            busy = sum(1 for c in host.cores if c.current is not None)
            running = sum(1 for t in host.tasks if t.stopped is None and t.started_at is not None)
            tl.counter(env.now, "cores busy", {"busy": busy})
            tl.counter(env.now, "guests", {"running": running})
            tl.counter(env.now, "memory MiB", {"used": host.memory_used // MIB})
            yield env.timeout(every)

    def run(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        host = self.host
        cb = None if progress is None else (lambda t: progress(t, host.events_scheduled()))
        try:
            host.run(self.duration, cb)
        finally:
            host.close()   # emulators are closed even when the run fails
        d = self.sc.doc
        res = collect(host, self.duration, d["measure"]["percentiles"], d["measure"]["per_guest"])
        res["scenario"] = {"name": d["scenario"]["name"], "file": os.path.basename(self.sc.path),
                           "seed": d["scenario"]["seed"], "duration_ns": self.duration}
        res["profiles"] = {p: get_profile(p).as_dict()
                           for p in sorted({g["profile"] for g in d["guests"]})}
        res["admission"] = self.admission
        if self.sharing is not None:
            res["sharing"] = self.sharing
        if self.consoles:
            res["console"] = {n: b.decode("utf-8", "replace") for n, b in self.consoles.items()}
        return res


def run_scenario(sc: Scenario, progress: Callable[[int, int], None] | None = None,
                 timeline: Timeline | None = None) -> dict[str, Any]:
    return Run(sc, timeline).run(progress)


def summary_row(res: dict[str, Any]) -> dict[str, Any]:
    """One flat row of the headline numbers, for tables and sweeps."""
    row: dict[str, Any] = {"scenario": res["scenario"]["name"], "scheduler": res["scheduler"]["name"],
                           "seed": res["scenario"]["seed"]}
    for name, g in res["groups"].items():
        row[f"{name}.n"] = g["count"]
        row[f"{name}.cpu%"] = round(100 * g["cpu_share_mean"], 2)
        if g["requests"]:
            row[f"{name}.rps"] = g["throughput_rps"]
            p99 = g["latency_ns"].get("p99")
            row[f"{name}.p99_ms"] = None if p99 is None else round(p99 / MS, 3)
        if g["boot_ns"]["count"]:
            p99 = g["boot_ns"].get("p99")
            row[f"{name}.boot_p99_ms"] = None if p99 is None else round(p99 / MS, 3)
        if g["crossings"]:
            row[f"{name}.crossings"] = g["crossings"]
        if g["faulted"] or res["faults"]:
            row[f"{name}.alive"] = g["running"]
    if res.get("admission"):
        row["admitted"] = res["admission"]["admitted"]
        row["stopped_by"] = res["admission"]["stopped_by"]
    return row
