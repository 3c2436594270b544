"""The host: cores, a scheduler, memory, and the mechanism that runs tasks.

A *task* is one schedulable thing (a modelled guest, or one vCPU of an
emulated guest). Its SimPy process asks for a core (``acquire``), runs for at
most the granted slice, reports what it ran (``charge``) and gives the core
back (``release``) when it blocks, exits or its slice ends. The scheduler
(sim/host/schedulers/) only decides; this module switches, charges the
context-switch cost of the incoming task's isolation kind, and preempts.

Time is integer ns: every delay handed to SimPy is an int.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import simpy

from sim.host.profiles import DEFAULT_CLOCK_HZ, IsolationProfile, get_profile
from sim.host.schedulers import Scheduler, make_scheduler
from sim.host.units import GIB

if TYPE_CHECKING:
    from sim.host.timeline import Timeline

RUNNABLE, BLOCKED, EXITED = "runnable", "blocked", "exited"


class Preempt:
    """Interrupt cause: the scheduler wants the core back."""


class Kill:
    """Interrupt cause: the task is stopped (fault injection, host decision)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


PREEMPT = Preempt()


@dataclass(slots=True)
class Grant:
    core: "Core"
    ready_at: int          # work starts here (after the context switch)
    slice_end: int | None  # None: run until blocking


@dataclass(frozen=True, slots=True)
class Stopped:
    """Why a task stopped (same shape as sim.guest.Stopped)."""
    status: int
    reason: str
    fault: bool


class Core:
    __slots__ = ("index", "current", "last", "busy_ns", "overhead_ns", "switches",
                 "run_start", "dispatched_at", "dispatch_seq", "idle", "in_idle_heap")

    def __init__(self, index: int) -> None:
        self.index = index
        self.current: Task | None = None
        self.last: Task | None = None
        self.busy_ns = 0          # guest work
        self.overhead_ns = 0      # context switches
        self.switches = 0
        self.run_start = 0        # start of the current run segment
        self.dispatched_at = 0
        self.dispatch_seq = 0
        self.idle = True
        self.in_idle_heap = True


class Task:
    """One schedulable entity. Scheduler-private fields are plain slots."""

    __slots__ = (
        "host", "index", "name", "group", "profile", "weight", "proc", "kind",
        "core", "last_core", "grant_ev", "ready_at", "in_run", "preempt_pending",
        "interruptible", "state",
        # statistics
        "cpu_ns", "wait_ns", "crossings", "dispatches", "preemptions", "requests",
        "latencies", "created_at", "started_at", "booted_at", "exited_at", "stopped",
        "memory_bytes", "seg_start",
        # scheduler state
        "queued", "qcore", "qseq", "vruntime", "vr_core", "rq_core", "credit", "prio", "active",
        "deadline", "vlag",
    )

    def __init__(self, host: "Host", index: int, name: str, group: str,
                 profile: IsolationProfile, weight: int, kind: str) -> None:
        self.host = host
        self.index = index
        self.name = name
        self.group = group
        self.profile = profile
        self.weight = weight
        self.kind = kind
        self.proc: simpy.Process | None = None
        self.core: Core | None = None
        self.last_core: int | None = None
        self.grant_ev: simpy.Event | None = None
        self.ready_at = 0
        self.in_run = False
        self.preempt_pending = False
        self.interruptible = True
        self.state = "new"
        self.cpu_ns = self.wait_ns = self.crossings = 0
        self.dispatches = self.preemptions = self.requests = 0
        self.latencies: list[int] = []
        self.created_at = host.env.now
        self.started_at: int | None = None
        self.booted_at: int | None = None
        self.exited_at: int | None = None
        self.stopped: Stopped | None = None
        self.memory_bytes = 0
        self.seg_start = 0
        self.queued = False
        self.qcore = 0
        self.qseq = 0


class Host:
    """A machine: ``cores`` cores at ``clock_hz``, ``memory_bytes`` of RAM,
    one scheduler, one SimPy environment in integer ns, one seed."""

    def __init__(self, *, cores: int = 4, clock_hz: int = DEFAULT_CLOCK_HZ, cpi: float = 1.0,
                 memory_bytes: int = 64 * GIB, scheduler: str | Scheduler = "cfs",
                 scheduler_params: dict[str, Any] | None = None, seed: int = 0,
                 timeline: "Timeline | None" = None) -> None:
        if cores < 1:
            raise ValueError(f"a host needs at least one core, got {cores}")
        if clock_hz <= 0 or cpi <= 0 or memory_bytes <= 0:
            raise ValueError("clock_hz, cpi and memory_bytes must be positive")
        self.env = simpy.Environment(initial_time=0)
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock_hz = int(clock_hz)
        self.cpi = cpi
        self.memory_bytes = int(memory_bytes)
        self.memory_used = 0
        self.cores = [Core(i) for i in range(cores)]
        self._idle_heap = list(range(cores))
        if isinstance(scheduler, str):
            scheduler = make_scheduler(scheduler, **(scheduler_params or {}))
        elif scheduler_params:
            raise ValueError("scheduler_params given with a scheduler instance")
        self.sched = scheduler
        self.tasks: list[Task] = []
        self._names: set[str] = set()
        self.timeline = timeline
        self.faults: list[dict[str, Any]] = []
        self.closers: list[Callable[[], None]] = []   # emulators to close at the end
        self.sched.attach(self)

    def close(self) -> None:
        """Close what guests hold outside the simulation (Unicorn instances)."""
        closers, self.closers = self.closers, []
        for c in closers:
            c()

    # -- conversions -------------------------------------------------------
    def insns_to_ns(self, insns: int) -> int:
        return int(insns * self.cpi * 1_000_000_000 // self.clock_hz)

    def ns_to_insns(self, ns: int) -> int:
        return int(ns * self.clock_hz // (self.cpi * 1_000_000_000))

    def guest_rng(self, name: str) -> random.Random:
        """A random stream for one guest, fixed by (seed, name) only, so
        adding a guest does not change the others' draws."""
        return random.Random(f"{self.seed}/{name}")

    # -- tasks -------------------------------------------------------------
    def new_task(self, name: str, *, group: str | None = None,
                 profile: IsolationProfile | str = "unikernel", weight: float = 1.0,
                 kind: str = "modelled") -> Task:
        if name in self._names:
            raise ValueError(f"duplicate guest name {name!r}")
        if weight <= 0:
            raise ValueError(f"guest {name!r}: weight must be positive, got {weight}")
        if isinstance(profile, str):
            profile = get_profile(profile)
        w = max(1, int(round(weight * self.sched.unit_weight)))
        t = Task(self, len(self.tasks), name, group or name, profile, w, kind)
        self._names.add(name)
        self.tasks.append(t)
        self.sched.admit(t)
        return t

    def switch_ns(self, t: Task) -> int:
        return t.profile.switch_ns(self.clock_hz)

    # -- idle cores --------------------------------------------------------
    def take_idle(self, prefer: int | None) -> Core | None:
        """An idle core (``prefer`` if it is idle), now reserved, or None."""
        if prefer is not None:
            c = self.cores[prefer]
            if c.idle:
                c.idle = False
                return c
        h = self._idle_heap
        while h:
            i = heapq.heappop(h)
            c = self.cores[i]
            c.in_idle_heap = False
            if c.idle:
                c.idle = False
                return c
        return None

    def _go_idle(self, core: Core) -> None:
        core.idle = True
        if not core.in_idle_heap:
            core.in_idle_heap = True
            heapq.heappush(self._idle_heap, core.index)

    # -- the mechanism -----------------------------------------------------
    def acquire(self, t: Task) -> Grant | None:
        """``t`` is runnable. Returns a grant if it got a core at once; else
        the caller waits on a fresh ``t.grant_ev``, which yields the grant."""
        now = self.env.now
        t.ready_at = now
        t.state = RUNNABLE
        core = self.sched.enqueue(t, now)
        if core.current is None:
            core.idle = False
            return self._dispatch(core, t)
        delay = self.sched.preempt_delay(t, core.current, core, now)
        if delay == 0:
            self.preempt(core)
        elif delay is not None:
            self.env.timeout(delay).callbacks.append(
                _DelayedPreempt(self, core, core.dispatch_seq))
        return None

    def _dispatch(self, core: Core, caller: Task | None) -> Grant | None:
        now = self.env.now
        t = self.sched.pick(core, now)
        if t is None:
            core.current = None
            self._go_idle(core)
            return None
        core.idle = False
        core.current = t
        t.core = core
        t.last_core = core.index
        t.state = "running"
        t.preempt_pending = False
        cs = 0
        if core.last is not t:
            cs = self.switch_ns(t)
            core.overhead_ns += cs
            core.switches += 1
        core.dispatch_seq += 1
        core.dispatched_at = now
        core.run_start = now + cs
        t.wait_ns += now - t.ready_at
        t.dispatches += 1
        sl = self.sched.slice_ns(t, core, now)
        g = Grant(core, now + cs, None if sl is None else now + cs + sl)
        if t is caller:
            return g
        ev = t.grant_ev
        t.grant_ev = None
        ev.succeed(g)
        return None

    def charge(self, t: Task, start: int, end: int) -> None:
        """``t`` did guest work on its core from ``start`` to ``end``."""
        if end <= start:
            return
        core = t.core
        ran = end - start
        t.cpu_ns += ran
        core.busy_ns += ran
        self.sched.charge(t, core, start, end)
        if self.timeline is not None:
            self.timeline.slice(core.index, t, start, end)

    def flush_accounting(self) -> None:
        """Charge the part of every in-flight run segment up to now (call
        before reading counters; the segment's end charges the rest)."""
        now = self.env.now
        for c in self.cores:
            t = c.current
            if t is not None and t.in_run and now > t.seg_start:
                start = t.seg_start
                t.seg_start = now
                self.charge(t, start, now)

    def release(self, t: Task, state: str) -> Grant | None:
        """``t`` gives its core back. With ``state`` RUNNABLE it may get the
        core straight back (returned grant) or must wait on ``t.grant_ev``
        (it is queued already: do not ``acquire`` again)."""
        now = self.env.now
        core = t.core
        t.core = None
        core.current = None
        core.last = t
        t.state = state
        if state == RUNNABLE:
            t.ready_at = now
            self.sched.requeue(t, core, now)
            # Queued now: if another task gets the core, ``t`` waits on this
            # event (and must not acquire again, which would queue it twice).
            t.grant_ev = self.env.event()
            g = self._dispatch(core, t)
            if g is not None:
                t.grant_ev = None
            return g
        if state == BLOCKED:
            self.sched.block(t, core, now)
        else:
            self.sched.remove(t)
        self._dispatch(core, None)
        return None

    def cancel(self, t: Task) -> None:
        """``t`` stops while it is not on a core (queued or blocked)."""
        self.sched.remove(t)
        t.grant_ev = None
        t.state = EXITED

    def preempt(self, core: Core) -> None:
        t = core.current
        if t is None or t.preempt_pending:
            return
        t.preempt_pending = True
        t.preemptions += 1
        if t.in_run and t.interruptible:
            t.proc.interrupt(PREEMPT)

    # -- stopping tasks ----------------------------------------------------
    def stop(self, t: Task, status: int, reason: str, fault: bool) -> None:
        """Record that ``t`` stopped (its process calls this on the way out)."""
        if t.stopped is None:
            t.stopped = Stopped(status, reason, fault)
            t.exited_at = self.env.now
            self.memory_used -= t.memory_bytes
            t.memory_bytes = 0

    def kill(self, t: Task, reason: str) -> None:
        """Stop ``t`` from outside (its process unwinds at once)."""
        if t.stopped is not None or t.proc is None or not t.proc.is_alive:
            return
        self.stop(t, 1, reason, True)
        t.proc.interrupt(Kill(reason))

    def inject_kernel_fault(self, victim: Task, reason: str = "kernel fault injected") -> list[Task]:
        """A fault in ``victim``'s kernel. A shared kernel (container) takes
        every tenant on it down; a private one (vm, unikernel...) only
        ``victim``. Returns the tasks stopped."""
        if victim.profile.shared_kernel:
            hit = [t for t in self.tasks if t.profile.shared_kernel and t.stopped is None]
        else:
            hit = [victim] if victim.stopped is None else []
        self.faults.append({"t_ns": self.env.now, "victim": victim.name,
                            "shared_kernel": victim.profile.shared_kernel,
                            "stopped": [t.name for t in hit]})
        for t in hit:
            self.kill(t, reason if t is victim else f"{reason} (shared kernel, via {victim.name})")
        return hit

    # -- memory ------------------------------------------------------------
    def reserve_memory(self, t: Task, nbytes: int) -> bool:
        """Admit ``nbytes`` for ``t`` if they fit; False when memory is full."""
        if self.memory_used + nbytes > self.memory_bytes:
            return False
        self.memory_used += nbytes
        t.memory_bytes += nbytes
        return True

    # -- running -----------------------------------------------------------
    def run(self, until_ns: int, progress: Callable[[int], None] | None = None,
            chunks: int = 50) -> None:
        """Run the simulation to ``until_ns`` (progress called between chunks)."""
        until_ns = int(until_ns)
        if progress is None:
            self.env.run(until=until_ns)
            return
        step = max(1, until_ns // chunks)
        t = self.env.now
        while t < until_ns:
            t = min(until_ns, t + step)
            self.env.run(until=t)
            progress(t)

    def events_scheduled(self) -> int:
        """How many SimPy events were scheduled so far (for benchmarks)."""
        eid = self.env._eid  # itertools.count; its repr holds the next id
        return int(repr(eid)[6:-1])


class _DelayedPreempt:
    """Preempt ``core`` later, if it still runs the same dispatch."""

    __slots__ = ("host", "core", "seq")

    def __init__(self, host: Host, core: Core, seq: int) -> None:
        self.host, self.core, self.seq = host, core, seq

    def __call__(self, _event: simpy.Event) -> None:
        if self.core.dispatch_seq == self.seq and self.core.current is not None:
            self.host.preempt(self.core)
