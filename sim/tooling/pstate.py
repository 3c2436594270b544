"""Personality state for snapshots: what a personality needs to go on.

A personality that defines ``save_state() -> dict`` and
``restore_state(dict)`` is saved through them. Otherwise this module knows
the state of the ones in the tree: the common part (the seeded RNG, the
dispatcher's and monitor's counters) and, for pico, its memory map (regions,
vm allocator, page-table bump pointer) and open console handles. A state it
cannot write down (several threads, waiters, open files or channels) is
refused with a SnapshotError saying what, never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sim.tooling.errors import ToolingError


class SnapshotError(ToolingError):
    """The guest cannot be snapshotted now, or the file cannot be resumed."""


def _rng_state(rng: Any) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng(rng: Any, state: list) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def save(personality: Any) -> dict:
    s = personality.s
    state: dict[str, Any] = {"name": personality.name, "rng": _rng_state(s.rng)}
    own = getattr(personality, "save_state", None)
    if own is not None:
        state["own"] = own()
        return state
    d = getattr(personality, "dispatcher", None)
    if d is not None:
        state["dispatcher"] = {"used": dict(d.used), "denied": dict(d.denied),
                               "crossings": d.crossings}
    mon = getattr(personality, "monitor", None)
    if mon is not None:
        state["monitor"] = {"used": dict(mon.used), "denied": dict(mon.denied)}
    if personality.name == "pico":
        state["pico"] = _save_pico(personality)
    elif personality.name not in ("pico",):
        raise SnapshotError(f"snapshots of {personality.name} guests are not supported yet "
                            "(the personality has no save_state)")
    return state


def restore(personality: Any, state: dict) -> None:
    if state.get("name") != personality.name:
        raise SnapshotError(f"snapshot is of a {state.get('name')} guest, "
                            f"not {personality.name}")
    _set_rng(personality.s.rng, state["rng"])
    own = getattr(personality, "restore_state", None)
    if own is not None and "own" in state:
        own(state["own"])
        return
    d = getattr(personality, "dispatcher", None)
    if d is not None and "dispatcher" in state:
        d.used = Counter(state["dispatcher"]["used"])
        d.denied = Counter(state["dispatcher"]["denied"])
        d.crossings = state["dispatcher"]["crossings"]
    mon = getattr(personality, "monitor", None)
    if mon is not None and "monitor" in state:
        mon.used = Counter(state["monitor"]["used"])
        mon.denied = Counter(state["monitor"]["denied"])
    if "pico" in state:
        _restore_pico(personality, state["pico"])


def _save_pico(p: Any) -> dict:
    from sim.libos.pico_streams import ConsoleStream

    if p.sched.alive != 1 or p.sched.current.tid != 1:
        raise SnapshotError("the pico guest runs several threads: snapshots need a single thread")
    if any(p._futex.values()):
        raise SnapshotError("the pico guest has futex waiters: cannot snapshot it now")
    handles = {}
    for h, obj in p.handles.items():
        if not isinstance(obj, ConsoleStream):
            raise SnapshotError(f"the pico guest has handle {h} open on a "
                                f"{type(obj).__name__}: only console handles can be saved")
        handles[str(h)] = obj.flags
    vm = p.vm
    return {
        "regions": [list(span) for span in p.regions._spans],
        "vm": {"used": vm.used, "starts": list(vm._starts), "ends": list(vm._ends),
               **({"prot": _jsonable_prot(vm)} if hasattr(vm, "_prot") else {})},
        "tables_next": p.tables._next,
        "handles": handles,
        "next_handle": p._next_handle,
        "next_tid": p.sched.next_tid,
        "switches": p.sched.switches,
    }


def _jsonable_prot(vm: Any) -> Any:
    prot = vm._prot
    if isinstance(prot, dict):
        return {str(k): v for k, v in prot.items()}
    return list(prot)


def _restore_pico(p: Any, st: dict) -> None:
    from sim.libos.pico_streams import ConsoleStream

    regions = p.regions
    spans = [tuple(span) for span in st["regions"]]
    regions._spans = [(a, b, bool(w)) for a, b, w in spans]
    regions._starts = [a for a, _b, _w in spans]
    vm = p.vm
    vm.used = st["vm"]["used"]
    vm._starts = list(st["vm"]["starts"])
    vm._ends = list(st["vm"]["ends"])
    if "prot" in st["vm"]:
        prot = st["vm"]["prot"]
        vm._prot = {int(k): v for k, v in prot.items()} if isinstance(prot, dict) else list(prot)
    p.tables._next = st["tables_next"]
    p.handles = {int(h): ConsoleStream(p.s.console, flags) for h, flags in st["handles"].items()}
    p._next_handle = st["next_handle"]
    p.sched.next_tid = st["next_tid"]
    p.sched.switches = st["switches"]
