"""Metrics: per guest, per group and per core, as plain data.

``collect`` reads the counters the host keeps on its tasks and cores and
returns a JSON-ready dict of integers (and a few rounded ratios), so the
same scenario and seed give byte-identical output. Exporters write it as
JSON, CSV (one row per guest) or a pandas DataFrame when pandas is present.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable, Sequence

from sim.host.machine import Host, Task
from sim.host.units import percentile

DEFAULT_PERCENTILES = (50, 90, 99)


def _pkey(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


def _dist(values: list[int], pcts: Sequence[float]) -> dict[str, Any]:
    v = sorted(values)
    out: dict[str, Any] = {"count": len(v)}
    for p in pcts:
        out[_pkey(p)] = percentile(v, p)
    out["max"] = v[-1] if v else None
    out["mean"] = (sum(v) // len(v)) if v else None
    return out


def guest_row(t: Task, duration_ns: int, pcts: Sequence[float]) -> dict[str, Any]:
    lat = sorted(t.latencies)
    row: dict[str, Any] = {
        "guest": t.name, "group": t.group, "profile": t.profile.name, "kind": t.kind,
        "weight": t.weight, "cpu_ns": t.cpu_ns, "wait_ns": t.wait_ns,
        "cpu_share": round(t.cpu_ns / duration_ns, 6) if duration_ns else 0.0,
        "crossings": t.crossings, "dispatches": t.dispatches, "preemptions": t.preemptions,
        "requests": t.requests,
        "throughput_rps": round(t.requests * 1_000_000_000 / duration_ns, 3) if duration_ns else 0.0,
        "boot_ns": (t.booted_at - t.started_at) if t.booted_at is not None else None,
        "memory_bytes": t.memory_bytes,
        "stopped": t.stopped.reason if t.stopped else None,
        "fault": bool(t.stopped and t.stopped.fault),
        "status": t.stopped.status if t.stopped else None,
    }
    for p in pcts:
        row[f"latency_{_pkey(p)}_ns"] = percentile(lat, p)
    return row


def collect(host: Host, duration_ns: int, pcts: Sequence[float] = DEFAULT_PERCENTILES,
            per_guest: bool = True) -> dict[str, Any]:
    pcts = tuple(pcts)
    host.flush_accounting()
    groups: dict[str, dict[str, Any]] = {}
    members: dict[str, list[Task]] = {}
    for t in host.tasks:
        members.setdefault(t.group, []).append(t)
    for name, ts in members.items():
        lat: list[int] = []
        boots = []
        for t in ts:
            lat.extend(t.latencies)
            if t.booted_at is not None:
                boots.append(t.booted_at - t.started_at)
        cpu = sum(t.cpu_ns for t in ts)
        reqs = sum(t.requests for t in ts)
        groups[name] = {
            "count": len(ts), "profile": ts[0].profile.name,
            "cpu_ns": cpu,
            "cpu_share_mean": round(cpu / duration_ns / len(ts), 6) if duration_ns else 0.0,
            "wait_ns_mean": sum(t.wait_ns for t in ts) // len(ts),
            "crossings": sum(t.crossings for t in ts),
            "requests": reqs,
            "throughput_rps": round(reqs * 1_000_000_000 / duration_ns, 3) if duration_ns else 0.0,
            "latency_ns": _dist(lat, pcts),
            "boot_ns": _dist(boots, pcts),
            "running": sum(1 for t in ts if t.stopped is None and t.started_at is not None),
            "booted": len(boots),
            "faulted": sum(1 for t in ts if t.stopped and t.stopped.fault),
            "not_admitted": sum(1 for t in ts if t.stopped and t.stopped.reason.startswith("not admitted")),
            "memory_bytes": sum(t.memory_bytes for t in ts),
        }
    cores = [{
        "core": c.index, "busy_ns": c.busy_ns, "switch_ns": c.overhead_ns, "switches": c.switches,
        "utilisation": round((c.busy_ns + c.overhead_ns) / duration_ns, 6) if duration_ns else 0.0,
    } for c in host.cores]
    out: dict[str, Any] = {
        "duration_ns": duration_ns,
        "host": {"cores": len(host.cores), "clock_hz": host.clock_hz, "cpi": host.cpi,
                 "memory_bytes": host.memory_bytes, "memory_used_bytes": host.memory_used,
                 "seed": host.seed},
        "scheduler": host.sched.describe(),
        "groups": groups,
        "cores": cores,
        "faults": host.faults,
        "events": host.events_scheduled(),
    }
    if per_guest:
        out["guests"] = [guest_row(t, duration_ns, pcts) for t in host.tasks]
    return out


def to_json(results: dict[str, Any]) -> str:
    """Canonical JSON: sorted keys, fixed separators, trailing newline."""
    return json.dumps(results, sort_keys=True, indent=1, separators=(",", ": ")) + "\n"


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    rows = list(rows)
    if not rows:
        return ""
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()


def to_dataframe(rows: Iterable[dict[str, Any]]):
    """A pandas DataFrame of ``rows`` (raises ImportError without pandas)."""
    import pandas as pd  # optional: the 'lab' extra
    return pd.DataFrame(list(rows))
