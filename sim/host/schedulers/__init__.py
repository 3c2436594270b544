"""Pluggable schedulers: ``SCHEDULERS`` maps a name to its class.

Each module registers itself on import (``@register``); adding a scheduler
is one new module plus one import line here.
"""

from __future__ import annotations

from typing import Any

from sim.host.schedulers.base import SCHEDULERS, Param, Scheduler, register
from sim.host.schedulers import fifo, rr, cfs, eevdf, credit1, credit2  # noqa: F401  (registration)


def make_scheduler(name: str, **params: Any) -> Scheduler:
    try:
        cls = SCHEDULERS[name]
    except KeyError:
        raise KeyError(f"unknown scheduler {name!r} (known: {', '.join(SCHEDULERS)})") from None
    return cls(**params)


__all__ = ["SCHEDULERS", "Param", "Scheduler", "make_scheduler", "register"]
