"""`sim profile`: record a real emulated run, replay it as modelled guests
(1,000 copies), and check the replay matches the emulated run."""

from __future__ import annotations

import json

import pytest

from sim.cli import main
from sim.experiments.runner import run_scenario
from sim.experiments.scenario import load_scenario
from sim.host.workload import load_profile


def record(tmp_path, monkeypatch, *argv):
    monkeypatch.chdir(tmp_path)
    return main(["profile", *argv])


def test_profile_command_writes_a_loadable_profile(tmp_path, monkeypatch, capsys):
    assert record(tmp_path, monkeypatch, "compute", "-o", "c.profile", "--", "16", "24") == 0
    err = capsys.readouterr().err
    assert "compute: " in err and "exit status 0" in err and "wrote c.profile" in err
    prof = load_profile(tmp_path / "c.profile")
    assert prof.loop is True
    doc = json.loads((tmp_path / "c.profile").read_text())
    assert doc["source"].startswith("sim profile compute 16 24; clock 2600 MHz")
    assert {s["op"] for s in doc["steps"]} <= {"run", "call", "wait"}


def test_profile_of_sleep_has_its_wait(tmp_path, monkeypatch):
    assert record(tmp_path, monkeypatch, "sleep", "-o", "s.profile", "--once") == 0
    prof = load_profile(tmp_path / "s.profile")
    assert prof.loop is False
    doc = json.loads((tmp_path / "s.profile").read_text())
    waits = [s["ns"] for s in doc["steps"] if s["op"] == "wait"]
    assert len(waits) == 1 and 4_900_000 < waits[0] <= 5_000_000


def test_profile_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    assert record(tmp_path, monkeypatch, "no-such-image", "-o", "x.profile") == 2
    err = capsys.readouterr().err
    assert err.startswith("sim: error: no-such-image:") and err.count("\n") == 1
    assert not (tmp_path / "x.profile").exists()


SCENARIO = """
[scenario]
name = "replay"
seed = 3
duration_ms = 40

[host]
cores = 64

[[guests]]
name = "emulated"
image = "{image}"
argv = {argv}
boot = false

[[guests]]
name = "copies"
replay = "app.profile"
count = 1000
boot = false
"""


@pytest.mark.parametrize("image,argv", [("compute", ["16", "24"]), ("sleep", [])])
def test_replayed_copies_match_the_emulated_run(tmp_path, monkeypatch, image, argv):
    assert record(tmp_path, monkeypatch, image, "-o", "app.profile", "--once", "--", *argv) == 0
    steps = json.loads((tmp_path / "app.profile").read_text())["steps"]
    p = tmp_path / "s.toml"
    p.write_text(SCENARIO.format(image=image, argv=json.dumps(argv)))
    res = run_scenario(load_scenario(p))
    rows = {r["guest"]: r for r in res["guests"]}
    emu = rows["emulated"]
    assert emu["status"] == 0 and emu["kind"] == "emulated"
    copies = [r for r in res["guests"] if r["group"] == "copies"]
    assert len(copies) == 1000
    # Granularity: the profile stores whole ns per step, and the emulated run
    # on the host rounds instructions to ns once per step (<= 100 us each).
    slack = len(steps) + emu["cpu_ns"] // 100_000 + 2
    for r in copies:
        assert r["status"] == 0 and r["stopped"] == "finished"
        assert r["crossings"] == emu["crossings"]
        assert abs(r["cpu_ns"] - emu["cpu_ns"]) <= slack
    if image == "sleep":
        assert all(r["cpu_ns"] < 10_000 for r in copies)
