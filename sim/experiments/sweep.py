"""Sweeps: one scenario over a grid of parameters, run in parallel.

``--param key=v1,v2`` values are parsed as TOML literals (``10`` is an
integer, ``cfs`` a string); keys are dotted paths into the scenario or the
aliases in scenario.ALIASES. Points run on local processes
(concurrent.futures) or on a Dask distributed cluster (``dask://HOST:PORT``).
Every point gets the scenario's own seed, so a point's result does not
depend on where or in which order it ran.
"""

from __future__ import annotations

import itertools
import tomllib
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

from sim.experiments.runner import run_scenario, summary_row
from sim.experiments.scenario import ScenarioError, load_scenario


def parse_param(text: str) -> tuple[str, list[Any]]:
    if "=" not in text:
        raise ScenarioError(f"--param {text!r}: expected KEY=V1,V2,...")
    key, _, vals = text.partition("=")
    key = key.strip()
    out = []
    for v in vals.split(","):
        v = v.strip()
        if not v:
            raise ScenarioError(f"--param {text!r}: empty value")
        try:
            out.append(tomllib.loads(f"x = {v}")["x"])
        except tomllib.TOMLDecodeError:
            out.append(v)
    return key, out


def grid(params: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    keys = [k for k, _ in params]
    return [dict(zip(keys, combo)) for combo in itertools.product(*[v for _, v in params])]


def run_point(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Run one grid point (top level, so it pickles to worker processes)."""
    res = run_scenario(load_scenario(path, overrides))
    return {**{f"param:{k}": v for k, v in overrides.items()}, **summary_row(res)}


def sweep(path: str, params: list[tuple[str, list[Any]]], executor: str = "local",
          workers: int | None = None,
          on_done: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run the grid; rows come back in grid order whatever the executor."""
    points = grid(params)
    for p in points:                      # validate every point before running any
        load_scenario(path, p)
    if executor == "serial":
        rows = []
        for i, p in enumerate(points):
            rows.append(run_point(path, p))
            if on_done:
                on_done(i + 1, len(points))
        return rows
    if executor == "local":
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futs = [ex.submit(run_point, path, p) for p in points]
            rows = []
            for i, f in enumerate(futs):
                rows.append(f.result())
                if on_done:
                    on_done(i + 1, len(points))
            return rows
    if executor.startswith("dask://"):
        try:
            from distributed import Client
        except ImportError:
            raise ScenarioError("--executor dask://: dask[distributed] is not installed "
                                "(pip install 'picosim[dev]')") from None
        rest = executor[len("dask://"):]
        address = rest if "://" in rest else "tcp://" + rest   # dask://HOST:PORT, or a full address
        with Client(address) as client:
            futs = client.map(run_point, [path] * len(points), points, pure=False)
            rows = client.gather(futs)
        if on_done:
            on_done(len(points), len(points))
        return list(rows)
    raise ScenarioError(f"--executor {executor!r}: use local, serial or dask://HOST:PORT")
