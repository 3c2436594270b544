"""Real emulated guests (bundled examples in Unicorn) on the host model:
EmulatedGuestProcess under rr and cfs, CPU shares, sleeping off-core,
determinism, and scenarios with ``image = "compute"`` groups."""

from __future__ import annotations

import pytest

from sim.experiments.runner import run_scenario
from sim.experiments.scenario import ScenarioError, load_scenario
from sim.host.emulated import open_guest, spawn_emulated
from sim.host.machine import Host
from sim.host.metrics import collect, to_json
from sim.host.units import MS

HELLO_OUT = (b'Hello from picosim!\ncommand line: "hello a b"\n'
             b"argv[0] = hello\nargv[1] = a\nargv[2] = b\n")
COMPUTE_OUT = b"fnv1a64 over 16 KiB x 24 rounds = 3fa69d88bd851de5\n"
# compute 64 KiB x 240 rounds: ~40 ms of CPU at the default 2.6 GHz
LONG = ("64", "240")


def start(host, name, image, args=(), **kw):
    out = bytearray()
    g = open_guest(image, host, name=name, args=args, on_console=out.extend)
    return spawn_emulated(host, g, boot=False, **kw), out


@pytest.mark.parametrize("sched", ["rr", "cfs"])
def test_three_examples_finish_with_their_output(sched):
    h = Host(cores=1, scheduler=sched)
    c, c_out = start(h, "compute", "compute")
    he, he_out = start(h, "hello", "hello", ("a", "b"))
    s, s_out = start(h, "sleep", "sleep")
    h.run(100 * MS)
    h.close()
    for t in (c, he, s):
        assert t.stopped is not None and t.stopped.status == 0, (t.name, t.stopped)
        assert not t.stopped.fault
    assert bytes(c_out) == COMPUTE_OUT
    assert bytes(he_out) == HELLO_OUT
    assert s_out.startswith(b"slept 50000") and s_out.endswith(b" ns\n")
    assert c.crossings > 0 and he.crossings > 0 and s.crossings > 0
    # compute is CPU work (~1 ms); hello and sleep are a few microseconds
    assert 0.5 * MS < c.cpu_ns < 2 * MS
    assert he.cpu_ns < 0.1 * MS and s.cpu_ns < 0.1 * MS
    # sleep spent its 5 ms off-core: it ends after 5 ms having used ~nothing
    assert s.exited_at >= 5 * MS


@pytest.mark.parametrize("sched,params,weights,shares", [
    ("rr", {"slice_ns": 2 * MS}, (1.0, 1.0), (0.5, 0.5)),
    ("cfs", {}, (1.0, 1.0), (0.5, 0.5)),
    ("cfs", {}, (2.0, 1.0), (2 / 3, 1 / 3)),
])
def test_two_emulated_computes_share_one_core(sched, params, weights, shares):
    h = Host(cores=1, scheduler=sched, scheduler_params=params)
    a, _ = start(h, "a", "compute", LONG, weight=weights[0])
    b, _ = start(h, "b", "compute", LONG, weight=weights[1])
    dur = 30 * MS      # both still running (each needs ~40 ms alone)
    h.run(dur)
    res = collect(h, dur)
    h.close()
    assert a.stopped is None and b.stopped is None
    assert a.cpu_ns / dur == pytest.approx(shares[0], abs=0.06)
    assert b.cpu_ns / dur == pytest.approx(shares[1], abs=0.06)
    assert 0.97 <= res["cores"][0]["utilisation"] <= 1.0
    assert a.dispatches >= 3 and b.dispatches >= 3     # they took turns


def test_sleep_waits_off_core_while_compute_runs():
    h = Host(cores=1, scheduler="cfs")
    c, _ = start(h, "compute", "compute", LONG)
    s, out = start(h, "sleep", "sleep")
    dur = 20 * MS
    h.run(dur)
    res = collect(h, dur)
    h.close()
    assert s.stopped is not None and s.stopped.status == 0
    assert out.startswith(b"slept 50")
    # sleep's life = queue wait + CPU + ~5 ms blocked (not queued, not running)
    blocked = s.exited_at - s.wait_ns - s.cpu_ns
    assert 5 * MS <= blocked < 5.2 * MS
    assert s.cpu_ns < 0.1 * MS
    # ...and compute had the core meanwhile: it never idled
    assert res["cores"][0]["utilisation"] > 0.99
    assert c.cpu_ns > 0.99 * dur - s.cpu_ns - res["cores"][0]["switch_ns"]


def _scenario(tmp_path, body: str, name="emu.toml"):
    p = tmp_path / name
    p.write_text(body)
    return p


EMU_SCENARIO = """
[scenario]
name = "emu"
seed = 7
duration_ms = 30

[host]
cores = 1

[scheduler]
name = "cfs"

[[guests]]
name = "compute"
image = "compute"
count = 2
argv = ["64", "240"]

[[guests]]
name = "hello"
image = "hello"
argv = ["a", "b"]
"""


def test_scenario_with_emulated_images_is_deterministic(tmp_path):
    p = _scenario(tmp_path, EMU_SCENARIO)
    first = run_scenario(load_scenario(p))
    second = run_scenario(load_scenario(p))
    assert to_json(first) == to_json(second)
    g = {r["guest"]: r for r in first["guests"]}
    assert g["hello"]["status"] == 0 and g["hello"]["kind"] == "emulated"
    assert first["console"]["hello"] == HELLO_OUT.decode()
    assert g["compute-0"]["status"] is None           # still running at 30 ms
    shares = [g[f"compute-{i}"]["cpu_share"] for i in range(2)]
    assert sum(shares) > 0.85 and all(0.35 < x < 0.65 for x in shares)  # boots, 6 ms slices
    other = run_scenario(load_scenario(p, {"seed": 8}))
    assert other["scenario"]["seed"] == 8


def test_scenario_image_as_path_relative_to_the_file(tmp_path):
    import shutil

    from sim.examples import resolve
    shutil.copy(resolve("hello"), tmp_path / "mine.elf")
    p = _scenario(tmp_path, EMU_SCENARIO.replace('image = "hello"', 'image = "mine.elf"'))
    res = run_scenario(load_scenario(p))
    assert res["console"]["hello"].startswith("Hello from picosim!")


@pytest.mark.parametrize("change,match", [
    (('image = "hello"', 'image = "no-such.elf"'), r"emu\.toml: guests\[1\]\.image: no such image"),
    (('argv = ["a", "b"]', 'argv = ["a", 2]'), r"emu\.toml: guests\[1\]\.argv: .*string"),
    (('argv = ["a", "b"]', 'argv = "a"'), r"emu\.toml: guests\[1\]\.argv: must be a list"),
    (('argv = ["a", "b"]', 'args = { x = 1 }'), r"emu\.toml: guests\[1\]\.args: an image takes argv"),
])
def test_scenario_image_errors_name_file_and_key(tmp_path, change, match):
    p = _scenario(tmp_path, EMU_SCENARIO.replace(*change))
    with pytest.raises(ScenarioError, match=match):
        load_scenario(p)


def test_scenario_not_an_elf_is_refused(tmp_path):
    (tmp_path / "junk.elf").write_bytes(b"not an elf at all")
    p = _scenario(tmp_path, EMU_SCENARIO.replace('image = "hello"', 'image = "junk.elf"'))
    with pytest.raises(ScenarioError, match=r"emu\.toml: guests\[1\]\.image: "):
        load_scenario(p)


def test_argv_only_for_images(tmp_path):
    p = _scenario(tmp_path, EMU_SCENARIO.replace('image = "hello"', 'model = "idle"'))
    with pytest.raises(ScenarioError, match=r"guests\[1\]\.argv: only an image guest"):
        load_scenario(p)


# -- page sharing measured from real guest memory ---------------------------

def test_identical_guests_share_more_pages_than_different_ones():
    from sim.host.density import guest_sharing
    same = [open_guest("hello", name=f"h{i}") for i in range(4)]
    diff = [open_guest(n, name=n) for n in ("hello", "compute", "sleep", "mt_compute")]
    try:
        for g in same + diff:          # run a little: stacks, heaps, boot info written
            g.step(0, 20_000)
        s, d = guest_sharing(same), guest_sharing(diff)
    finally:
        for g in same + diff:
            g.close()
    assert s["guests"] == d["guests"] == 4 and s["guest_bytes"] == 4 * (64 << 20)
    sn, dn = s["nonzero"], d["nonzero"]
    assert sn["total_pages"] > 0 and dn["total_pages"] > 0
    # 4 identical guests: only one copy of each touched page is needed
    assert sn["saved_fraction"] == pytest.approx(0.75, abs=0.02)
    assert sn["saved_bytes"] == sn["shared_pages"] * 4096
    assert dn["saved_fraction"] < sn["saved_fraction"] - 0.2
    # counting untouched zero pages flatters everything (~100%)
    assert s["all"]["saved_fraction"] > 0.99 and s["all"]["zero_pages"] > 0


def test_scenario_measures_sharing_among_running_guests(tmp_path):
    p = _scenario(tmp_path, """
[scenario]
name = "share"
duration_ms = 3

[host]
cores = 4

[measure]
sharing_ms = 1

[[guests]]
name = "c"
image = "compute"
argv = ["64", "240"]
count = 3
boot = false

[[guests]]
name = "hello"
image = "hello"
boot = false
""")
    res = run_scenario(load_scenario(p))
    sh = res["sharing"]
    assert sh["at_ns"] == 1 * MS
    assert sh["guests"] == 3 and sh["closed"] == 1    # hello exited (and was freed) by 1 ms
    assert sh["nonzero"]["saved_bytes"] > 0
    assert to_json(res) == to_json(run_scenario(load_scenario(p)))
