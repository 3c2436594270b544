"""`sim run`, `sim sweep` and `sim profile`: scenario commands for the main CLI.

sim/cli.py discovers ``register(subparsers)`` here. Each command returns an
exit status; errors in the scenario raise ScenarioError (one line, printed
by the CLI). This module is CLI code: it writes the progress display and the
results table to stderr/stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

from sim.experiments.runner import run_scenario, summary_row
from sim.experiments.scenario import ScenarioError, load_scenario
from sim.experiments.sweep import parse_param, sweep
from sim.host.metrics import rows_to_csv, to_json
from sim.host.profiles import DEFAULT_CLOCK_HZ
from sim.host.units import MS


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="run a scenario file and print its results",
                              description="Run a TOML scenario on the host model.")
    p.add_argument("scenario", help="scenario file (TOML)")
    p.add_argument("--seed", type=int, default=None, help="override [scenario] seed")
    p.add_argument("--out", default=None,
                   help="results prefix: writes PREFIX.json and PREFIX.csv (default: scenario name)")
    p.add_argument("--timeline", default=None, metavar="FILE",
                   help="write a Chrome trace event file (open in Perfetto)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_run)

    s = subparsers.add_parser("sweep", help="run a scenario over a parameter grid",
                              description="Run a scenario for every combination of --param values.")
    s.add_argument("scenario", help="scenario file (TOML)")
    s.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2",
                   help="parameter and values (repeatable); e.g. scheduler=cfs,credit1")
    s.add_argument("--executor", default="local",
                   help="local (processes, default), serial, or dask://HOST:PORT")
    s.add_argument("--workers", type=int, default=None, help="local worker processes")
    s.add_argument("--out", default=None, help="write the table as PREFIX.json and PREFIX.csv")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    s.set_defaults(func=cmd_sweep)

    pr = subparsers.add_parser(
        "profile", help="run an image emulated and record its behaviour as a profile file",
        description="Run IMAGE alone in Unicorn (no contention) and write what it did -- CPU "
                    "bursts, host crossings, sleeps -- as a profile file that a scenario can "
                    "replay (replay = \"app.profile\") for thousands of modelled copies. "
                    "Guest arguments go after --.")
    pr.add_argument("image", help="ELF image path or bundled example name")
    pr.add_argument("-o", "--output", required=True, metavar="FILE", help="profile file to write")
    pr.add_argument("--clock-mhz", type=int, default=DEFAULT_CLOCK_HZ // 1_000_000,
                    help="guest clock in MHz; use the host's clock_hz of the scenario that will "
                         "replay it (default: %(default)s)")
    pr.add_argument("--cpi", type=float, default=1.0, help="cycles per instruction (default: 1.0)")
    pr.add_argument("--until-ms", type=float, default=10_000.0,
                    help="stop recording at this simulated time if the guest has not exited "
                         "(default: %(default)s)")
    pr.add_argument("--step-insns", type=int, default=1_000_000,
                    help="instructions per emulated step (default: %(default)s)")
    pr.add_argument("--once", action="store_true",
                    help="the replayed guest runs the recording once and exits "
                         "(default: it loops, like a server)")
    pr.add_argument("--seed", type=int, default=0, help="guest seed (default: 0)")
    pr.set_defaults(func=cmd_profile)


def format_table(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, width)),
             "  ".join("-" * w for w in width)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, width)) for row in cells]
    return "\n".join(lines)


def _progress(err: TextIO, total_ns: int):
    """A tqdm bar over simulated time (tqdm: redraws in place on a terminal,
    stays quiet in pipes and logs, rate limits itself)."""
    from tqdm import tqdm

    bar = tqdm(total=round(total_ns / MS, 1), unit="ms", desc="  simulated", file=err,
               disable=not err.isatty(), bar_format="{desc} {n:.1f}/{total} ms {bar} "
               "{elapsed} {postfix}", leave=False)
    state = {"t": 0.0}

    def show(t_ns: int, events: int) -> None:
        t = round(t_ns / MS, 1)
        bar.update(t - state["t"])
        state["t"] = t
        bar.set_postfix_str(f"{events} events", refresh=False)

    show.close = bar.close  # type: ignore[attr-defined]
    return show


def cmd_run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    overrides = {"scenario.seed": args.seed} if args.seed is not None else None
    sc = load_scenario(args.scenario, overrides)
    d = sc.doc
    err.write(f"scenario {sc.name}: {d['host']['cores']} cores, scheduler {d['scheduler']['name']}, "
              f"{sum(g['count'] for g in d['guests'])} guests, seed {d['scenario']['seed']}, "
              f"{d['scenario']['duration_ms']} ms\n")
    timeline = None
    if args.timeline:
        from sim.host.timeline import Timeline
        timeline = Timeline()
    t0 = time.perf_counter()
    total = int(d["scenario"]["duration_ms"] * MS)
    progress = None if args.quiet else _progress(err, total)
    try:
        res = run_scenario(sc, progress, timeline)
    finally:
        if progress:
            progress.close()
    wall = time.perf_counter() - t0
    prefix = args.out or sc.name
    with open(prefix + ".json", "w", encoding="utf-8") as f:
        f.write(to_json(res))
    with open(prefix + ".csv", "w", encoding="utf-8") as f:
        f.write(rows_to_csv(res.get("guests") or []))
    if timeline is not None:
        with open(args.timeline, "w", encoding="utf-8") as f:
            timeline.write(f)
    out.write(format_table([summary_row(res)]) + "\n")
    err.write(f"stopped at {total / MS:.1f} ms simulated (end of scenario) after {wall:.2f} s wall, "
              f"{res['events']} events; results in {prefix}.json, {prefix}.csv\n")
    return 0


def cmd_sweep(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if not args.param:
        raise ScenarioError(f"{args.scenario}: sweep needs at least one --param KEY=V1,V2")
    params = [parse_param(p) for p in args.param]

    from tqdm import tqdm

    bar = tqdm(desc="  points", unit="point", file=err, leave=False,
               disable=args.quiet or not err.isatty())

    def done(i: int, n: int) -> None:
        bar.total = n
        bar.update(i - bar.n)

    try:
        rows = sweep(args.scenario, params, args.executor, args.workers, done)
    finally:
        bar.close()
    out.write(format_table(rows) + "\n")
    if args.out:
        import json
        with open(args.out + ".json", "w", encoding="utf-8") as f:
            f.write(json.dumps(rows, sort_keys=True, indent=1) + "\n")
        with open(args.out + ".csv", "w", encoding="utf-8") as f:
            f.write(rows_to_csv(rows))
    return 0


def cmd_profile(args: argparse.Namespace, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """Record ``args.image`` (guest args in ``args.passthrough``) as a profile."""
    from sim.experiments.scenario import image_path
    from sim.host.emulated import open_guest, record_emulated
    from sim.host.workload import record_profile
    from sim.image import ImageError

    err = err or sys.stderr
    if args.clock_mhz <= 0 or args.cpi <= 0 or args.until_ms <= 0 or args.step_insns <= 0:
        raise ScenarioError("profile: --clock-mhz, --cpi, --until-ms and --step-insns must be "
                            "positive")
    path = image_path(os.getcwd(), args.image)
    if path is None:
        raise ImageError(f"{args.image}: no such image file or bundled example")
    guest_args = [*getattr(args, "extra", []), *getattr(args, "passthrough", [])]
    console = bytearray()
    guest = open_guest(path, name=os.path.basename(path), args=guest_args, seed=args.seed,
                       on_console=console.extend, clock_hz=args.clock_mhz * 1_000_000,
                       cpi=args.cpi)
    t0 = time.perf_counter()
    try:
        steps = record_emulated(guest, until_ns=int(args.until_ms * MS),
                                max_insns=args.step_insns)
        stopped, insns = guest.stopped, guest.retired
    finally:
        guest.close()
    if not steps:
        raise ScenarioError(f"{args.image}: the guest did nothing to record")
    cpu = sum(s[1] for s in steps if s[0] == "run")
    calls = sum(s[1] for s in steps if s[0] == "call")
    waits = sum(s[1] for s in steps if s[0] == "wait")
    ended = (f"exit status {stopped.status} ({stopped.reason})" if stopped is not None
             else f"still running at {args.until_ms:g} ms")
    source = (f"sim profile {guest.image.name} {' '.join(guest_args)}".rstrip()
              + f"; clock {args.clock_mhz} MHz, cpi {args.cpi:g}; {insns} instructions; {ended}")
    loop = not args.once
    if loop and not any(s[0] == "wait" or (s[0] == "run" and s[1] > 0) for s in steps):
        loop = False   # nothing takes time: it cannot loop
    record_profile(steps, args.output, source=source, loop=loop)
    err.write(f"profile: {guest.image.name}: {len(steps)} steps, cpu {cpu} ns, "
              f"{calls} crossings, waits {waits} ns; {ended}; "
              f"{time.perf_counter() - t0:.2f} s wall; {'loops' if loop else 'runs once'}; "
              f"wrote {args.output}\n")
    if stopped is not None and stopped.status != 0:
        err.write(f"profile: note: the guest exited with status {stopped.status}\n")
    return 0
