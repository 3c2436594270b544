"""Scenario files: TOML describing a host, a scheduler, guests and what to
measure, checked strictly before anything runs.

Every problem raises ``ScenarioError`` whose message is one line naming the
file, the key and the problem: unknown keys, wrong types, impossible values
(zero cores, negative memory), a missing image or profile file.

    [scenario]  name, description, seed, duration_ms
    [host]      cores, clock_hz, cpi, memory_mib
    [scheduler] name, [scheduler.params] (the scheduler's own PARAMS)
    [[guests]]  name, count, profile, weight, one of model/replay/image,
                [guests.args] (the model's parameters), start_ms, boot, memory_mib,
                argv (an emulated image's arguments, a list of strings)

``image`` is an ELF path (relative to the scenario file) or the name of a
bundled example (``image = "compute"``); each instance runs the real image
in Unicorn. ``memory_mib`` is charged to host memory; for an image it is
also the guest's RAM (0: the personality's default, charged as such).
    [measure]   percentiles, per_guest, sample_ms, sharing_ms (when to count identical
                4 KiB pages across the emulated guests still running)
    [fault]     at_ms, guest           (inject a kernel fault)
    [admission] group, interval_ms, p99_ms, window_ms
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass
from typing import Any

from sim.host.profiles import DEFAULT_CLOCK_HZ, PROFILES
from sim.host.schedulers import SCHEDULERS
from sim.host.workload import MODELS, ProfileError, load_profile


class ScenarioError(ValueError):
    """A scenario that cannot run; the message names file, key and problem."""


@dataclass(frozen=True)
class F:
    """One field: type, default (REQUIRED if none), bounds, choices."""
    type: type | tuple
    default: Any = None
    required: bool = False
    min: float | None = None
    gt: float | None = None
    max: float | None = None
    choices: tuple | None = None


NUM = (int, float)

SECTIONS: dict[str, dict[str, F]] = {
    "scenario": {
        "name": F(str, required=True),
        "description": F(str, ""),
        "seed": F(int, 0, min=0),
        "duration_ms": F(NUM, required=True, gt=0),
    },
    "host": {
        "cores": F(int, 4, min=1),
        "clock_hz": F(int, DEFAULT_CLOCK_HZ, min=1),   # profiles.py: Unikraft table 1
        "cpi": F(NUM, 1.0, gt=0),
        "memory_mib": F(NUM, 65536, gt=0),
    },
    "scheduler": {
        "name": F(str, "cfs", choices=tuple(SCHEDULERS)),
        "params": F(dict, {}),
    },
    "measure": {
        "percentiles": F(list, [50, 90, 99]),
        "per_guest": F(bool, True),
        "sample_ms": F(NUM, 10, gt=0),
        "sharing_ms": F(NUM, None, min=0),
    },
    "fault": {
        "at_ms": F(NUM, required=True, min=0),
        "guest": F(str, required=True),
    },
    "admission": {
        "group": F(str, required=True),
        "interval_ms": F(NUM, required=True, gt=0),
        "p99_ms": F(NUM, None, gt=0),
        "window_ms": F(NUM, None, gt=0),
    },
}

GUEST: dict[str, F] = {
    "name": F(str, required=True),
    "count": F(int, 1, min=0),
    "profile": F(str, "unikernel", choices=tuple(PROFILES)),
    "weight": F(NUM, 1.0, gt=0),
    "model": F(str, None, choices=tuple(MODELS)),
    "replay": F(str, None),
    "image": F(str, None),
    "args": F(dict, {}),
    "argv": F(list, []),
    "start_ms": F(NUM, 0, min=0),
    "boot": F(bool, True),
    "memory_mib": F(NUM, 0, min=0),
}

REQUIRED_SECTIONS = ("scenario",)


def _typename(t) -> str:
    if t is NUM:
        return "a number"
    return {str: "a string", int: "an integer", bool: "true or false", dict: "a table",
            list: "a list"}.get(t, getattr(t, "__name__", str(t)))


def _check_fields(where: str, key: str, table: Any, schema: dict[str, F]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ScenarioError(f"{where}: {key}: must be a table")
    for k in table:
        if k not in schema:
            raise ScenarioError(f"{where}: {key}.{k}: unknown key (known: {', '.join(schema)})")
    out: dict[str, Any] = {}
    for k, f in schema.items():
        full = f"{key}.{k}"
        if k not in table:
            if f.required:
                raise ScenarioError(f"{where}: {full}: missing (required)")
            out[k] = copy.deepcopy(f.default)
            continue
        v = table[k]
        types = f.type if isinstance(f.type, tuple) else (f.type,)
        if isinstance(v, bool) and bool not in types or not isinstance(v, types):
            raise ScenarioError(f"{where}: {full}: must be {_typename(f.type)}, got {v!r}")
        if f.choices is not None and v not in f.choices:
            raise ScenarioError(f"{where}: {full}: {v!r} is not one of {', '.join(f.choices)}")
        if f.min is not None and v < f.min:
            raise ScenarioError(f"{where}: {full}: must be >= {f.min:g}, got {v!r}")
        if f.gt is not None and v <= f.gt:
            raise ScenarioError(f"{where}: {full}: must be > {f.gt:g}, got {v!r}")
        out[k] = v
    return out


@dataclass
class Scenario:
    path: str
    base_dir: str
    doc: dict[str, Any]   # validated, defaults filled

    @property
    def name(self) -> str:
        return self.doc["scenario"]["name"]


def load_scenario(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, override (sweep parameters) and validate a scenario file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    for k, v in (overrides or {}).items():
        apply_override(raw, k, v, path)
    return validate(raw, path)


ALIASES = {"scheduler": "scheduler.name", "guests": "guests.*.count", "profile": "guests.*.profile",
           "cores": "host.cores", "seed": "scenario.seed", "duration_ms": "scenario.duration_ms"}


def apply_override(doc: dict[str, Any], key: str, value: Any, where: str = "<override>") -> None:
    """Set ``key`` (dotted path, ``*`` for every list item; see ALIASES)."""
    parts = ALIASES.get(key, key).split(".")

    def walk(node: Any, i: int, trail: str) -> None:
        p = parts[i]
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = range(len(node)) if p == "*" else None
            if idx is None:
                if not p.isdigit() or int(p) >= len(node):
                    raise ScenarioError(f"{where}: {key}: no item {p!r} at {trail or 'top'}")
                idx = [int(p)]
            for j in idx:
                if last:
                    node[j] = value
                else:
                    walk(node[j], i + 1, f"{trail}[{j}]")
            return
        if not isinstance(node, dict):
            raise ScenarioError(f"{where}: {key}: {trail} is not a table")
        if last:
            node[p] = value
        else:
            walk(node.setdefault(p, {}), i + 1, f"{trail}.{p}" if trail else p)

    walk(doc, 0, "")


def validate(raw: dict[str, Any], path: str) -> Scenario:
    where = path
    for k in raw:
        if k not in SECTIONS and k != "guests":
            raise ScenarioError(f"{where}: {k}: unknown section "
                                f"(known: {', '.join([*SECTIONS, 'guests'])})")
    doc: dict[str, Any] = {}
    for name, schema in SECTIONS.items():
        if name in raw:
            doc[name] = _check_fields(where, name, raw[name], schema)
        elif name in REQUIRED_SECTIONS:
            raise ScenarioError(f"{where}: [{name}]: missing section")
        elif name in ("fault", "admission"):
            doc[name] = None
        else:
            doc[name] = _check_fields(where, name, {}, schema)
    base = os.path.dirname(os.path.abspath(path))

    # scheduler parameters: the scheduler's own table decides
    sch = doc["scheduler"]
    try:
        SCHEDULERS[sch["name"]](**sch["params"])
    except (ValueError, TypeError) as e:
        raise ScenarioError(f"{where}: scheduler.params: {e}") from None

    pcts = doc["measure"]["percentiles"]
    for p in pcts:
        if isinstance(p, bool) or not isinstance(p, NUM) or not 0 < p <= 100:
            raise ScenarioError(f"{where}: measure.percentiles: {p!r} is not in (0, 100]")

    guests = raw.get("guests")
    if not isinstance(guests, list) or not guests:
        raise ScenarioError(f"{where}: guests: at least one [[guests]] table is required")
    names = set()
    doc["guests"] = []
    for i, g in enumerate(guests):
        key = f"guests[{i}]"
        gd = _check_fields(where, key, g, GUEST)
        if gd["name"] in names:
            raise ScenarioError(f"{where}: {key}.name: duplicate group name {gd['name']!r}")
        names.add(gd["name"])
        kinds = [k for k in ("model", "replay", "image") if gd[k] is not None]
        if len(kinds) != 1:
            raise ScenarioError(f"{where}: {key}: exactly one of model, replay, image is needed "
                                f"(got {', '.join(kinds) or 'none'})")
        if gd["model"] is not None:
            try:
                gd["args"] = MODELS[gd["model"]].check_args(gd["args"])
            except ValueError as e:
                raise ScenarioError(f"{where}: {key}.args: {e}") from None
        elif gd["replay"] is not None:
            if gd["args"]:
                raise ScenarioError(f"{where}: {key}.args: a replayed profile takes no arguments")
            p = os.path.join(base, gd["replay"])
            try:
                load_profile(p)
            except ProfileError as e:
                raise ScenarioError(f"{where}: {key}.replay: {e}") from None
        else:
            p = image_path(base, gd["image"])
            if p is None:
                raise ScenarioError(f"{where}: {key}.image: no such image file or bundled "
                                    f"example {gd['image']!r}")
            for a in gd["argv"]:
                if not isinstance(a, str):
                    raise ScenarioError(f"{where}: {key}.argv: every argument must be a string, "
                                        f"got {a!r}")
            if gd["args"]:
                raise ScenarioError(f"{where}: {key}.args: an image takes argv = [...], not args")
            try:
                from sim.image import Image, ImageError
            except ImportError as e:  # pragma: no cover
                raise ScenarioError(f"{where}: {key}.image: emulated guests need sim.image ({e})")
            try:
                Image.load(p)
            except ImageError as e:
                raise ScenarioError(f"{where}: {key}.image: {e}") from None
        if gd["argv"] and gd["image"] is None:
            raise ScenarioError(f"{where}: {key}.argv: only an image guest takes argv")
        doc["guests"].append(gd)

    fault = doc["fault"]
    if fault is not None and fault["guest"] not in _instance_names(doc["guests"]) | names:
        raise ScenarioError(f"{where}: fault.guest: no guest or group named {fault['guest']!r}")
    adm = doc["admission"]
    if adm is not None and adm["group"] not in names:
        raise ScenarioError(f"{where}: admission.group: no group named {adm['group']!r}")
    return Scenario(path, base, doc)


def image_path(base: str, image: str) -> str | None:
    """An image key: a file relative to the scenario's directory (or
    absolute), else a bundled example's prebuilt image; None if neither."""
    p = os.path.join(base, image)
    if os.path.isfile(p):
        return p
    try:
        from sim.examples import EXAMPLES, prebuilt_path
    except ImportError:  # pragma: no cover
        return None
    if image in EXAMPLES and prebuilt_path(image).is_file():
        return str(prebuilt_path(image))
    return None


def instance_name(group: str, i: int, count: int) -> str:
    return group if count == 1 else f"{group}-{i}"


def _instance_names(groups: list[dict[str, Any]]) -> set[str]:
    return {instance_name(g["name"], i, g["count"]) for g in groups for i in range(g["count"])}
