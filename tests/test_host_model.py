"""Host model: schedulers, profiles, faults, density, guests (modelled,
replayed, emulated through a fake Guest). Assertions are on directions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from sim.host.density import count_shared_pages, fit_count
from sim.host.emulated import record_emulated, spawn_emulated
from sim.host.machine import Host
from sim.host.metrics import collect, rows_to_csv, to_json
from sim.host.profiles import PROFILES, get_profile
from sim.host.schedulers import SCHEDULERS, make_scheduler
from sim.host.timeline import Timeline
from sim.host.units import MIB, MS, S, US, percentile
from sim.host.workload import (ProfileError, load_profile, parse_profile, record_profile,
                               spawn_model, spawn_replay)


def two_hogs(sched: str, wa: float = 1.0, wb: float = 1.0, dur: int = 3 * S):
    h = Host(cores=1, scheduler=sched)
    a = spawn_model(h, "a", "hog", weight=wa, boot=False)
    b = spawn_model(h, "b", "hog", weight=wb, boot=False)
    h.run(dur)
    h.flush_accounting()
    return a.cpu_ns / dur, b.cpu_ns / dur


def test_registry_is_a_table_with_sources():
    assert {"fifo", "rr", "cfs", "credit1", "credit2"} <= set(SCHEDULERS)
    for cls in SCHEDULERS.values():
        for p in cls.PARAMS.values():
            assert p.source and p.help
    with pytest.raises(ValueError, match="unknown parameter"):
        make_scheduler("cfs", bogus=1)
    with pytest.raises(KeyError):
        make_scheduler("nope")


def test_rr_two_hogs_share_half():
    a, b = two_hogs("rr")
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("sched", ["cfs", "eevdf", "credit1", "credit2"])
@pytest.mark.parametrize("wa", [2.0, 4.0])
def test_weights_share_the_core(sched, wa):
    a, b = two_hogs(sched, wa, 1.0)
    assert a == pytest.approx(wa / (wa + 1), abs=0.04)
    assert b == pytest.approx(1 / (wa + 1), abs=0.04)


def test_fifo_runs_to_block():
    a, b = two_hogs("fifo")
    assert a > 0.99 and b == 0


def test_credit1_tick_dodger_escapes_accounting():
    shares = {}
    for sched in ("credit1", "credit2", "cfs", "eevdf"):
        h = Host(cores=1, scheduler=sched)
        d = spawn_model(h, "dodger", "tick-dodger", boot=False)
        spawn_model(h, "hog", "hog", boot=False)
        h.run(2 * S)
        h.flush_accounting()
        shares[sched] = d.cpu_ns / (2 * S)
    assert shares["credit1"] > 0.85          # calibration.md: ~95% without ratelimit
    assert shares["credit2"] < 0.6 and shares["cfs"] < 0.6 and shares["eevdf"] < 0.6


def short_requests_next_to_hog(sched: str, **params) -> list[int]:
    h = Host(cores=1, scheduler=sched, seed=3, scheduler_params=params or None)
    web = spawn_model(h, "web", "requests",
                      {"interval_us": 5_000.0, "service_us": 100.0, "service": "fixed"}, boot=False)
    spawn_model(h, "hog", "hog", boot=False)
    h.run(2 * S)
    return sorted(web.latencies)


def test_eevdf_wakeup_waits_at_most_one_slice():
    # EEVDF has no sleeper bonus: a woken task with no lag waits for the
    # running hog's slice to end (RUN_TO_PARITY), never longer. CFS's
    # sleeper placement lets it preempt at once.
    eevdf = short_requests_next_to_hog("eevdf")
    cfs = short_requests_next_to_hog("cfs")
    slice_ns = 700 * US  # base_slice on one core (calibration.md)
    assert max(eevdf) <= slice_ns + 100 * US + 20 * US
    assert percentile(eevdf, 50) > 2 * percentile(cfs, 50)
    # Without RUN_TO_PARITY a woken task with the earlier deadline preempts.
    eager = short_requests_next_to_hog("eevdf", run_to_parity=False)
    assert percentile(eager, 50) < percentile(eevdf, 50)


def p99_next_to_hog(sched: str) -> int:
    h = Host(cores=1, scheduler=sched, seed=3)
    web = spawn_model(h, "web", "requests", {"interval_us": 10_000.0, "service_us": 2_000.0},
                      boot=False)
    spawn_model(h, "hog", "hog", boot=False)
    h.run(5 * S)
    return percentile(sorted(web.latencies), 99)


def test_latency_sensitive_guest_worse_under_credit1():
    c1 = p99_next_to_hog("credit1")
    assert c1 > p99_next_to_hog("credit2")
    assert c1 > p99_next_to_hog("cfs")


def test_time_stays_integer_and_work_is_conserved():
    h = Host(cores=2, scheduler="cfs")
    ts = [spawn_model(h, f"g{i}", "think", {"burst_us": 300.0, "think_us": 700.0}) for i in range(6)]
    h.run(1 * S)
    h.flush_accounting()
    assert type(h.env.now) is int
    busy = sum(c.busy_ns for c in h.cores)
    assert busy == sum(t.cpu_ns for t in ts)
    assert all(c.busy_ns + c.overhead_ns <= S for c in h.cores)


def test_same_seed_same_bytes_different_seed_differs():
    def once(seed):
        h = Host(cores=2, scheduler="credit2", seed=seed)
        for i in range(5):
            spawn_model(h, f"r{i}", "requests", {"interval_us": 3000.0, "calls": 2})
        h.run(500 * MS)
        return to_json(collect(h, 500 * MS))
    assert once(7) == once(7)
    assert once(7) != once(8)


def test_profiles_cite_sources_and_order_as_published():
    for p in PROFILES.values():
        assert p.sources
    uk, pico, vm = get_profile("unikernel"), get_profile("picoprocess"), get_profile("vm")
    assert uk.start_ns < 10 * MS and pico.start_ns < 10 * MS
    assert vm.start_ns > 100 * MS
    mem = 16 * 1024 * MIB
    assert fit_count(mem, uk, 4 * MIB) > 10 * fit_count(mem, vm, 4 * MIB)
    assert fit_count(mem, pico, 4 * MIB) > 10 * fit_count(mem, vm, 4 * MIB)
    assert get_profile("container").shared_kernel and not vm.shared_kernel
    assert uk.attack_surface < get_profile("container").attack_surface


def test_boot_storm_percentiles_grow_with_n():
    def p99(n, prof):
        h = Host(cores=4)
        ts = [spawn_model(h, f"b{i}", "idle", profile=prof) for i in range(n)]
        h.run(60 * S)
        return percentile(sorted(t.booted_at - t.started_at for t in ts), 99)
    assert p99(40, "unikernel") > p99(4, "unikernel")
    assert p99(40, "unikernel") < 100 * MS < p99(40, "vm")


@pytest.mark.parametrize("profile,lost", [("container", 6), ("vm", 1)])
def test_shared_kernel_fault(profile, lost):
    h = Host(cores=2)
    ts = [spawn_model(h, f"t{i}", "think", profile=profile, boot=False) for i in range(6)]

    def inject():
        yield h.env.timeout(100 * MS)
        h.inject_kernel_fault(ts[2])
    h.env.process(inject())
    h.run(300 * MS)
    dead = [t for t in ts if t.stopped is not None]
    assert len(dead) == lost and all(t.stopped.fault for t in dead)
    alive = [t for t in ts if t.stopped is None]
    assert all(t.cpu_ns > 0 for t in alive)
    res = collect(h, 300 * MS)
    assert res["groups"]["t2"]["faulted"] == 1


def test_memory_admission_refuses_when_full():
    h = Host(cores=1, memory_bytes=100 * MIB)
    ts = [spawn_model(h, f"v{i}", "idle", profile="microvm", boot=False, memory_bytes=8 * MIB)
          for i in range(5)]
    h.run(1 * MS)
    admitted = [t for t in ts if t.stopped is None]
    assert len(admitted) == 100 // (33 + 8)
    assert h.memory_used <= h.memory_bytes


def test_count_shared_pages_on_real_bytes():
    golden = bytes(range(256)) * 16 * 8          # 8 pages with the same contents
    a = bytearray(b"A" * 4096 + b"B" * 4096 + bytes(4096))
    b = bytearray(a)
    b[5000] = 0x43                                # second page now differs
    s = count_shared_pages([a, b])
    assert s.total_pages == 6
    assert s.distinct_pages == 4                  # A, B, B', zero
    assert s.shared_pages == 2 and s.zero_pages == 2
    g = count_shared_pages([golden, memoryview(golden)])
    assert g.distinct_pages == 1 and g.saved_bytes == (g.total_pages - 1) * 4096
    tail = count_shared_pages([b"x" * 10, b"x" * 10 + bytes(5)])
    assert tail.total_pages == 2 and tail.distinct_pages == 1


# -- profiles: record, load, replay ---------------------------------------

def test_profile_roundtrip_and_replay(tmp_path):
    p = tmp_path / "app.profile"
    record_profile([("run", 200_000), ("call", 2), ("wait", 800_000),
                    {"op": "request", "ns": 50_000, "calls": 1}], p, source="test")
    prof = load_profile(p)
    assert len(prof.steps) == 4 and prof.loop
    h = Host(cores=1)
    t = spawn_replay(h, "r", prof, boot=False)
    h.run(100 * MS)
    assert t.requests > 50 and t.crossings == 3 * t.requests or t.crossings >= 3 * (t.requests - 1)
    assert 0.15 < t.cpu_ns / (100 * MS) < 0.35


@pytest.mark.parametrize("doc,msg", [
    ({"format": "x"}, "not a picosim-profile"),
    ({"format": "picosim-profile", "version": 9, "steps": []}, "version"),
    ({"format": "picosim-profile", "version": 1, "steps": [{"op": "jump"}]}, "step 0"),
    ({"format": "picosim-profile", "version": 1, "steps": [{"op": "run", "ns": -1}]}, "non-negative"),
    ({"format": "picosim-profile", "version": 1, "steps": [{"op": "call", "n": 1}]}, "takes time"),
])
def test_bad_profiles(doc, msg):
    with pytest.raises(ProfileError, match=msg):
        parse_profile(doc, "p.json")


# -- emulated guests through a fake sim.guest.Guest -------------------------

@dataclass(frozen=True)
class FakeStopped:
    status: int
    reason: str
    fault: bool = False


@dataclass(frozen=True)
class FakeStep:
    insns: int
    busy_ns: int
    crossings: int
    block_until: int | None = None
    wake: Any = None
    exited: FakeStopped | None = None


class FakeGuest:
    """Computes ``work_ns`` in slices, one crossing per step, sleeping
    ``sleep_ns`` every ``period`` steps; exits (or faults) after ``total_ns``."""

    def __init__(self, name, total_ns, ns_per_insn=1, sleep_ns=0, period=0, fault=False):
        self.name, self.left, self.npi = name, total_ns, ns_per_insn
        self.sleep_ns, self.period, self.fault = sleep_ns, period, fault
        self.steps: list[tuple[int, int]] = []
        self.closed = 0

    def step(self, now_ns, max_insns):
        self.steps.append((now_ns, max_insns))
        if self.left <= 0:
            return FakeStep(0, 0, 0, exited=FakeStopped(3 if self.fault else 0,
                                                        "fault" if self.fault else "done", self.fault))
        busy = min(self.left, max_insns * self.npi)
        self.left -= busy
        block = None
        if self.period and len(self.steps) % self.period == 0:
            block = now_ns + busy + self.sleep_ns
        return FakeStep(busy // self.npi, busy, 1, block_until=block)

    def close(self):
        self.closed += 1


def test_emulated_adapter_charges_steps_and_crossings():
    h = Host(cores=1, scheduler="rr")
    g = FakeGuest("emu", 10 * MS)
    t = spawn_emulated(h, g, profile="vm", boot=False)
    h.run(1 * S)
    cross = get_profile("vm").crossing_ns(h.clock_hz)
    assert t.stopped.status == 0 and not t.stopped.fault
    assert t.crossings == len(g.steps) - 1
    assert t.cpu_ns == 10 * MS + t.crossings * cross
    assert all(now == int(now) for now, _ in g.steps)
    assert max(m for _, m in g.steps) <= h.ns_to_insns(100 * US)   # steps capped
    assert g.closed == 1


def test_emulated_guest_shares_core_and_blocks():
    h = Host(cores=1, scheduler="cfs")
    g = FakeGuest("emu", 10 * S, sleep_ns=2 * MS, period=10)
    t = spawn_emulated(h, g, boot=False)
    hog = spawn_model(h, "hog", "hog", boot=False)
    h.run(1 * S)
    h.flush_accounting()
    h.close()
    assert 0.2 < t.cpu_ns / S < 0.6 and hog.cpu_ns > 0.4 * S
    assert g.closed == 1


def test_emulated_fault_is_recorded_and_others_go_on():
    h = Host(cores=1)
    g = FakeGuest("bad", 1 * MS, fault=True)
    t = spawn_emulated(h, g, boot=False)
    ok = spawn_model(h, "ok", "think", boot=False)
    h.run(100 * MS)
    assert t.stopped.fault and t.stopped.status == 3
    assert ok.cpu_ns > 0 and ok.stopped is None


def test_record_emulated_builds_a_replayable_profile(tmp_path):
    g = FakeGuest("emu", 3 * MS, sleep_ns=1 * MS, period=2)
    steps = record_emulated(g, until_ns=S, max_insns=500_000)
    text = record_profile(steps, tmp_path / "e.profile", source="fake")
    assert json.loads(text)["steps"][:2] == [{"op": "run", "ns": 500_000}, {"op": "call", "n": 1}]
    prof = load_profile(tmp_path / "e.profile")
    assert any(op[0] == 3 for op in prof.steps)   # a wait step survived


def test_timeline_is_chrome_trace(tmp_path):
    tl = Timeline()
    h = Host(cores=2, timeline=tl)
    spawn_model(h, "a", "think", boot=False)
    spawn_model(h, "b", "hog", boot=False)
    h.run(50 * MS)
    tl.counter(h.env.now, "x", {"v": 1})
    out = tmp_path / "t.json"
    with open(out, "w") as f:
        tl.write(f)
    doc = json.loads(out.read_text())
    phases = {e["ph"] for e in doc["traceEvents"]}
    assert {"X", "C", "M"} <= phases
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert all(e["dur"] >= 0 for e in xs)


def test_metrics_csv_and_dataframe():
    h = Host(cores=1)
    spawn_model(h, "w", "requests", boot=False)
    h.run(200 * MS)
    res = collect(h, 200 * MS)
    csv_text = rows_to_csv(res["guests"])
    assert csv_text.splitlines()[0].startswith("guest,group,profile")
    pd = pytest.importorskip("pandas")
    from sim.host.metrics import to_dataframe
    df = to_dataframe(res["guests"])
    assert isinstance(df, pd.DataFrame) and df.loc[0, "requests"] == res["groups"]["w"]["requests"]


def test_real_emulated_guest_end_to_end():
    # More in tests/test_host_emulated.py.
    from sim.host.emulated import open_guest
    h = Host(cores=1)
    g = open_guest("compute", h, name="compute")
    t = spawn_emulated(h, g, boot=False)
    hog = spawn_model(h, "hog", "hog", boot=False)
    h.run(2 * S)
    h.close()
    assert t.stopped is not None and t.stopped.status == 0
    assert t.cpu_ns > 0.5 * MS and hog.cpu_ns > 1.9 * S
