"""The scheduler interface and the registry of schedulers.

A scheduler is a policy only: it decides which runnable task a core runs
next, for how long, what running costs each task, and whether a task that
wakes up should preempt the one running. The Host (sim/host/machine.py) owns
the mechanism: cores, grants, context-switch costs, interrupts.

Each scheduler lives in its own module, declares its parameters with their
defaults and sources in ``PARAMS`` and registers itself with ``@register``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from sim.host.machine import Core, Host, Task


@dataclass(frozen=True)
class Param:
    default: Any
    help: str
    source: str
    minimum: float | None = 0


SCHEDULERS: dict[str, type["Scheduler"]] = {}


def register(cls: type["Scheduler"]) -> type["Scheduler"]:
    """Add a scheduler class to the registry; refuses duplicate names."""
    if cls.name in SCHEDULERS:
        raise ValueError(f"scheduler {cls.name!r} registered twice")
    SCHEDULERS[cls.name] = cls
    return cls


class Scheduler:
    name: ClassVar[str] = "base"
    # Weight of a task of relative weight 1.0 in this scheduler's units.
    unit_weight: ClassVar[int] = 1
    PARAMS: ClassVar[dict[str, Param]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise ValueError(
                f"scheduler {self.name!r}: unknown parameter {unknown[0]!r} "
                f"(known: {', '.join(sorted(self.PARAMS)) or 'none'})")
        self.params: dict[str, Any] = {}
        for key, spec in self.PARAMS.items():
            value = params.get(key, spec.default)
            if type(value) is not type(spec.default) and not (
                    isinstance(spec.default, int) and isinstance(value, int)
                    and not isinstance(value, bool)):
                raise ValueError(f"scheduler {self.name!r}: parameter {key!r} must be "
                                 f"{type(spec.default).__name__}, got {value!r}")
            if spec.minimum is not None and value < spec.minimum:
                raise ValueError(f"scheduler {self.name!r}: parameter {key!r} must be "
                                 f">= {spec.minimum}, got {value!r}")
            self.params[key] = value
        self.host: Host | None = None

    # -- lifecycle ---------------------------------------------------------
    def attach(self, host: "Host") -> None:
        self.host = host
        self.ncores = len(host.cores)

    def admit(self, t: "Task") -> None:
        """A new task joins (before it first becomes runnable)."""

    # -- queueing ----------------------------------------------------------
    def enqueue(self, t: "Task", now: int) -> "Core":
        """``t`` woke up: queue it and return the core it was queued for."""
        raise NotImplementedError

    def requeue(self, t: "Task", core: "Core", now: int) -> None:
        """``t`` was running on ``core`` and is still runnable (slice over)."""
        raise NotImplementedError

    def pick(self, core: "Core", now: int) -> "Task | None":
        """Remove and return the task ``core`` runs next (None: go idle)."""
        raise NotImplementedError

    def slice_ns(self, t: "Task", core: "Core", now: int) -> int | None:
        """How long ``t`` may run before the scheduler looks again (None: until it blocks)."""
        return None

    def charge(self, t: "Task", core: "Core", start: int, end: int) -> None:
        """``t`` ran on ``core`` from ``start`` to ``end``."""

    def block(self, t: "Task", core: "Core", now: int) -> None:
        """``t`` stopped running because it blocked."""

    def remove(self, t: "Task") -> None:
        """``t`` exited or was killed (it may still be queued)."""
        t.queued = False

    def preempt_delay(self, woken: "Task", running: "Task", core: "Core", now: int) -> int | None:
        """Should ``woken`` preempt ``running``? None: no; else after this many ns."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


class PerCoreScheduler(Scheduler):
    """Per-core run queues, wake-up on an idle core when there is one, and an
    idle core steals from the nearest non-empty queue (work conserving, like
    Linux's idle balance and credit1's work stealing)."""

    def attach(self, host: "Host") -> None:
        super().attach(host)
        self._queued = 0
        self._next_home = 0
        self._init_queues(self.ncores)

    # Subclasses provide the queue structure.
    def _init_queues(self, n: int) -> None:
        raise NotImplementedError

    def _push(self, core: "Core", t: "Task", now: int, woken: bool) -> None:
        raise NotImplementedError

    def _pop(self, core: "Core", now: int) -> "Task | None":
        raise NotImplementedError

    def _qlen(self, core_index: int) -> int:
        raise NotImplementedError

    def _migrate(self, t: "Task", src: "Core", dst: "Core") -> None:
        """``t`` moves from ``src``'s queue to ``dst`` (normalise its clock)."""

    def place(self, t: "Task") -> "Core":
        host = self.host
        idle = host.take_idle(t.last_core)
        if idle is not None:
            return idle
        if t.last_core is None:
            t.last_core = self._next_home
            self._next_home = (self._next_home + 1) % self.ncores
        return host.cores[t.last_core]

    def enqueue(self, t: "Task", now: int) -> "Core":
        core = self.place(t)
        self._push(core, t, now, True)
        t.queued = True
        self._queued += 1
        return core

    def requeue(self, t: "Task", core: "Core", now: int) -> None:
        self._push(core, t, now, False)
        t.queued = True
        self._queued += 1

    def pick(self, core: "Core", now: int) -> "Task | None":
        t = self._pop(core, now) if self._qlen(core.index) else None
        if t is None and self._queued:
            # Idle balance: steal the next task of the nearest non-empty
            # queue, scanning from the next core on (cheap and reproducible).
            n, me, qlen = self.ncores, core.index, self._qlen
            for k in range(1, n):
                i = me + k
                if i >= n:
                    i -= n
                if qlen(i):
                    src = self.host.cores[i]
                    t = self._pop(src, now)
                    if t is not None:
                        self._migrate(t, src, core)
                        break
        if t is not None:
            t.queued = False
            self._queued -= 1
        return t

    def remove(self, t: "Task") -> None:
        if t.queued:
            # Lazy deletion: the queue skips dead tasks when it pops them.
            t.queued = False
            self._queued -= 1


class FifoQueues:
    """Helper: one deque per core with lazy deletion of dead tasks."""

    def __init__(self, n: int) -> None:
        self.q = [deque() for _ in range(n)]
        self.live = [0] * n

    def push(self, i: int, t: "Task") -> None:
        self.q[i].append(t)
        self.live[i] += 1

    def pop(self, i: int) -> "Task | None":
        q = self.q[i]
        while q:
            t = q.popleft()
            if t.queued:
                self.live[i] -= 1
                return t
        return None

    def forget(self, i: int) -> None:
        self.live[i] -= 1
