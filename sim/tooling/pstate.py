"""Personality state for snapshots: what a personality needs to go on.

Each personality writes down its own state with ``save_state() -> dict``
and takes it back with ``restore_state(dict)``; this module adds the part
every guest has (the seeded RNG). A state a personality cannot write down
(several threads, waiters, open files or channels) is refused with a
SnapshotError saying what, never silently dropped.
"""

from __future__ import annotations

from typing import Any

from sim.libos.personality import StateNotSaveable
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
    if own is None:
        raise SnapshotError(f"snapshots of {personality.name} guests are not supported yet "
                            "(the personality has no save_state)")
    try:
        state["own"] = own()
    except StateNotSaveable as err:
        raise SnapshotError(str(err)) from None
    return state


def restore(personality: Any, state: dict) -> None:
    if state.get("name") != personality.name:
        raise SnapshotError(f"snapshot is of a {state.get('name')} guest, "
                            f"not {personality.name}")
    _set_rng(personality.s.rng, state["rng"])
    own = getattr(personality, "restore_state", None)
    if own is None or "own" not in state:
        raise SnapshotError(f"snapshot has no state for a {personality.name} guest")
    own(state["own"])
