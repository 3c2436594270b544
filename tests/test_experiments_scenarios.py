"""Scenarios: strict validation, shipped files, determinism, run/sweep commands."""

from __future__ import annotations

import argparse
import glob
import io
import json
import os

import pytest

from sim.experiments import commands
from sim.experiments.runner import run_scenario, summary_row
from sim.experiments.scenario import ScenarioError, load_scenario
from sim.experiments.sweep import parse_param, sweep
from sim.host.metrics import to_json

SHIPPED = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "sim", "scenarios", "*.toml")))

BASE = """
[scenario]
name = "t"
seed = 1
duration_ms = 200

[host]
cores = 2

[[guests]]
name = "web"
count = 2
model = "requests"
[guests.args]
interval_us = 2000.0
"""


def write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def parser():
    p = argparse.ArgumentParser()
    commands.register(p.add_subparsers())
    return p


def test_shipped_scenarios_validate_and_run():
    assert {os.path.basename(p) for p in SHIPPED} >= {
        "noisy-neighbour.toml", "density.toml", "boot-storm.toml", "exit-batching.toml"}
    for path in SHIPPED:
        res = run_scenario(load_scenario(path, {"scenario.duration_ms": 300}))
        assert res["groups"], path


@pytest.mark.parametrize("edit,key,problem", [
    (("[host]\ncores = 2", "[host]\ncores = 0"), "host.cores", ">= 1"),
    (("[host]\ncores = 2", "[host]\ncores = 2\nmemory_mib = -5"), "host.memory_mib", "> 0"),
    (("[host]\ncores = 2", "[host]\ncores = \"two\""), "host.cores", "must be an integer"),
    (("[host]\ncores = 2", "[host]\ncores = 2\ncolour = 1"), "host.colour", "unknown key"),
    (("seed = 1", "seed = true"), "scenario.seed", "must be an integer"),
    (("interval_us = 2000.0", "interval_us = 2000.0\nbogus = 1"), "guests[0].args", "unknown argument"),
    (("model = \"requests\"", "image = \"missing.elf\""), "guests[0].image", "no such image"),
    (("model = \"requests\"", "model = \"requests\"\nimage = \"x.elf\""), "guests[0]", "exactly one"),
    (("count = 2", "count = 2\nprofile = \"vmm\""), "guests[0].profile", "not one of"),
    (("[host]", "[hosts]"), "hosts", "unknown section"),
])
def test_bad_scenarios_name_file_key_problem(tmp_path, edit, key, problem):
    text = BASE.replace(*edit, 1)
    assert text != BASE
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    msg = str(e.value)
    assert "\n" not in msg and path in msg and key in msg and problem in msg


def test_bad_scheduler_param_and_missing_replay(tmp_path):
    p = write(tmp_path, BASE + '\n[scheduler]\nname = "cfs"\n[scheduler.params]\nlatency = 3\n')
    with pytest.raises(ScenarioError, match="scheduler.params: .*unknown parameter 'latency'"):
        load_scenario(p)
    p = write(tmp_path, BASE.replace('model = "requests"', 'replay = "nope.profile"')
              .replace("[guests.args]\ninterval_us = 2000.0\n", ""))
    with pytest.raises(ScenarioError, match=r"guests\[0\].replay: .*cannot read"):
        load_scenario(p)


def test_nothing_runs_on_bad_input(tmp_path):
    p = write(tmp_path, BASE.replace("cores = 2", "cores = 0"))
    args = parser().parse_args(["run", p, "--out", str(tmp_path / "r"), "--quiet"])
    with pytest.raises(ScenarioError):
        args.func(args)
    assert not list(tmp_path.glob("r.*"))


def test_same_scenario_and_seed_byte_identical(tmp_path):
    p = write(tmp_path, BASE)
    a = to_json(run_scenario(load_scenario(p)))
    b = to_json(run_scenario(load_scenario(p)))
    assert a == b
    c = to_json(run_scenario(load_scenario(p, {"seed": 2})))
    assert c != a


def test_run_command_writes_results_and_timeline(tmp_path):
    p = write(tmp_path, BASE)
    out, err = io.StringIO(), io.StringIO()
    args = parser().parse_args(["run", p, "--out", str(tmp_path / "r"),
                                "--timeline", str(tmp_path / "t.json")])
    assert args.func(args, out, err) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["groups"]["web"]["count"] == 2
    assert (tmp_path / "r.csv").read_text().startswith("guest,")
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert "web.rps" in out.getvalue() and "events" in err.getvalue()
    assert "stopped at" in err.getvalue()


def test_sweep_grid_serial_and_local(tmp_path):
    p = write(tmp_path, BASE)
    params = [parse_param("scheduler=cfs,credit2"), parse_param("guests=1,3")]
    rows = sweep(p, params, "serial")
    assert [(r["param:scheduler"], r["param:guests"]) for r in rows] == [
        ("cfs", 1), ("cfs", 3), ("credit2", 1), ("credit2", 3)]
    assert [r["web.n"] for r in rows] == [1, 3, 1, 3]
    local = sweep(p, params, "local", workers=2)
    assert local == rows
    out = io.StringIO()
    args = parser().parse_args(["sweep", p, "--param", "scheduler=cfs,credit1", "--quiet",
                                "--executor", "serial", "--out", str(tmp_path / "sw")])
    assert args.func(args, out, io.StringIO()) == 0
    assert "credit1" in out.getvalue() and (tmp_path / "sw.csv").exists()


def test_sweep_refuses_bad_points_before_running(tmp_path):
    p = write(tmp_path, BASE)
    with pytest.raises(ScenarioError, match="host.cores"):
        sweep(p, [parse_param("cores=2,0")], "serial")
    with pytest.raises(ScenarioError, match="executor"):
        sweep(p, [parse_param("cores=2")], "carrier-pigeon")


def test_sweep_on_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask[distributed] not installed")
    p = write(tmp_path, BASE)
    params = [parse_param("scheduler=cfs,credit2")]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        rows = sweep(p, params, f"dask://{cluster.scheduler_address}")
    assert rows == sweep(p, params, "serial")


def test_noisy_neighbour_direction():
    path = [p for p in SHIPPED if p.endswith("noisy-neighbour.toml")][0]
    p99 = {}
    for s in ("cfs", "credit1", "credit2"):
        row = summary_row(run_scenario(load_scenario(path, {"scheduler": s})))
        p99[s] = row["web.p99_ms"]
    assert p99["credit1"] > p99["cfs"] and p99["credit1"] > p99["credit2"]


def test_density_and_fault_scenarios_direction():
    dens = [p for p in SHIPPED if p.endswith("density.toml")][0]
    admitted = {}
    for prof in ("vm", "unikernel", "picoprocess"):
        res = run_scenario(load_scenario(dens, {"profile": prof, "scenario.duration_ms": 1500}))
        admitted[prof] = res["admission"]["memory_fit"]
    assert admitted["unikernel"] > 5 * admitted["vm"] and admitted["picoprocess"] > 5 * admitted["vm"]
    fault = [p for p in SHIPPED if p.endswith("shared-kernel-fault.toml")][0]
    alive = {prof: run_scenario(load_scenario(fault, {"profile": prof}))["groups"]["tenant"]["running"]
             for prof in ("container", "vm")}
    assert alive == {"container": 0, "vm": 9}
