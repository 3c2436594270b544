"""Modelled guests: workloads from distributions or replayed profiles.

A workload is an iterator of *ops* (tuples, first item an op code):

=========================  ==================================================
``(RUN, ns)``              CPU burst of ``ns`` on a core
``(CALL, n)``              ``n`` host crossings (each costs the profile's
                           crossing time on the core)
``(IO, n)``                ``n`` I/O round trips: crossings plus a wait of
                           the profile's I/O latency each
``(WAIT, ns)``             block for ``ns``
``(UNTIL, t_ns)``          block until absolute time ``t_ns``
``(RUN_UNTIL, t_ns)``      run until absolute time ``t_ns`` (however much
                           CPU that turns out to be)
``(REQ, arrival, ns, n)``  a request arriving at ``arrival`` needing ``ns``
                           of CPU and ``n`` crossings; its latency is
                           completion - arrival
=========================  ==================================================

Random draws come from the guest's own ``random.Random`` (seeded from the
run's seed and the guest's name), never the global one.

Profile files (``sim profile image.elf -o app.profile``) are JSON::

    {"format": "picosim-profile", "version": 1, "source": "...", "loop": true,
     "steps": [{"op": "run", "ns": 12000}, {"op": "call", "n": 1},
               {"op": "wait", "ns": 1000000}, {"op": "request", "ns": 50000, "calls": 2}]}

``record_profile`` writes one, ``load_profile`` reads and checks one.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import simpy

from sim.host.machine import BLOCKED, EXITED, PREEMPT, RUNNABLE, Host, Kill, Task
from sim.host.units import US

RUN, CALL, IO, WAIT, UNTIL, RUN_UNTIL, REQ = range(7)
FOREVER = 1 << 62

PROFILE_FORMAT = "picosim-profile"
PROFILE_VERSION = 1


class ProfileError(ValueError):
    """A profile file that cannot be replayed (message names file and step)."""


# ---------------------------------------------------------------------------
# Profile files
# ---------------------------------------------------------------------------

_STEP_FIELDS = {"run": ("ns",), "call": ("n",), "wait": ("ns",), "request": ("ns", "calls"),
                "io": ("n",)}


def _step_to_op(step: Any, where: str) -> tuple:
    if isinstance(step, (list, tuple)):
        if not step or step[0] not in _STEP_FIELDS:
            raise ProfileError(f"{where}: unknown step {step!r}")
        names = _STEP_FIELDS[step[0]]
        step = {"op": step[0], **dict(zip(names, step[1:]))}
    if not isinstance(step, dict) or step.get("op") not in _STEP_FIELDS:
        raise ProfileError(f"{where}: a step must be an object with op in "
                           f"{sorted(_STEP_FIELDS)}, got {step!r}")
    op = step["op"]
    names = _STEP_FIELDS[op]
    extra = sorted(set(step) - {"op", *names})
    if extra:
        raise ProfileError(f"{where}: unknown key {extra[0]!r} in {op!r} step")
    vals = []
    for n in names:
        v = step.get(n, 0 if n == "calls" else None)
        if type(v) is not int or v < 0:
            raise ProfileError(f"{where}: {op!r} step needs {n!r} as a non-negative integer, got {v!r}")
        vals.append(v)
    if op == "run":
        return (RUN, vals[0])
    if op == "call":
        return (CALL, vals[0])
    if op == "io":
        return (IO, vals[0])
    if op == "wait":
        return (WAIT, vals[0])
    return (REQ, None, vals[0], vals[1])  # arrival: when the step is reached


@dataclass(frozen=True)
class Profile:
    steps: tuple[tuple, ...]
    loop: bool = True
    source: str = ""
    path: str = ""


def load_profile(path: str | os.PathLike) -> Profile:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ProfileError(f"{path}: cannot read profile: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ProfileError(f"{path}: not JSON: {e.msg} at line {e.lineno}") from None
    return parse_profile(doc, path)


def parse_profile(doc: Any, path: str = "<profile>") -> Profile:
    if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"{path}: not a {PROFILE_FORMAT} document")
    if doc.get("version") != PROFILE_VERSION:
        raise ProfileError(f"{path}: unsupported version {doc.get('version')!r} "
                           f"(this build reads {PROFILE_VERSION})")
    unknown = sorted(set(doc) - {"format", "version", "source", "loop", "steps"})
    if unknown:
        raise ProfileError(f"{path}: unknown key {unknown[0]!r}")
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ProfileError(f"{path}: 'steps' must be a non-empty list")
    ops = tuple(_step_to_op(s, f"{path}: step {i}") for i, s in enumerate(steps))
    loop = doc.get("loop", True)
    if not isinstance(loop, bool):
        raise ProfileError(f"{path}: 'loop' must be true or false")
    if loop and not any(op[0] in (WAIT, REQ) or (op[0] == RUN and op[1] > 0) for op in ops):
        raise ProfileError(f"{path}: a looping profile needs at least one step that takes time")
    return Profile(ops, loop, str(doc.get("source", "")), path)


def record_profile(steps: Iterable[Any], path: str | os.PathLike | None = None, *,
                   source: str = "", loop: bool = True) -> str:
    """Write ``steps`` (dicts like ``{"op": "run", "ns": 5}`` or tuples like
    ``("run", 5)``) as a profile document; returns the JSON text. Steps are
    checked as ``load_profile`` would check them."""
    norm = []
    for i, s in enumerate(steps):
        op = _step_to_op(s, f"step {i}")
        if op[0] == RUN:
            norm.append({"op": "run", "ns": op[1]})
        elif op[0] == CALL:
            norm.append({"op": "call", "n": op[1]})
        elif op[0] == IO:
            norm.append({"op": "io", "n": op[1]})
        elif op[0] == WAIT:
            norm.append({"op": "wait", "ns": op[1]})
        else:
            norm.append({"op": "request", "ns": op[2], "calls": op[3]})
    doc = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "source": source,
           "loop": loop, "steps": norm}
    parse_profile(doc)  # refuse to write what could not be read back
    head = json.dumps({k: doc[k] for k in ("format", "version", "source", "loop")})[:-1]
    text = head + ', "steps": [\n' + ",\n".join(json.dumps(s) for s in norm) + "\n]}\n"
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text


def compress_steps(steps: Iterable[tuple]) -> list[tuple]:
    """Merge neighbouring steps of the same kind (run+run, call+call...)."""
    out: list[tuple] = []
    for s in steps:
        if out and s[0] == out[-1][0] and s[0] in ("run", "call", "wait"):
            out[-1] = (s[0], out[-1][1] + s[1])
        elif not (s[0] in ("run", "call", "wait") and s[1] == 0):
            out.append(tuple(s))
    return out


# ---------------------------------------------------------------------------
# Models: name -> generator, with parameters, defaults and help
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelParam:
    default: Any
    help: str
    minimum: float | None = 0
    choices: tuple = ()


@dataclass
class WorkloadContext:
    now: Callable[[], int]
    crossing_ns: int
    io_ns: int


@dataclass(frozen=True)
class Model:
    name: str
    make: Callable[[random.Random, dict, WorkloadContext], Iterator[tuple]]
    params: dict[str, ModelParam] = field(default_factory=dict)
    help: str = ""

    def check_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults, refuse unknown keys, wrong types and impossible values."""
        unknown = sorted(set(args) - set(self.params))
        if unknown:
            raise ValueError(f"unknown argument {unknown[0]!r} for model {self.name!r} "
                             f"(known: {', '.join(sorted(self.params)) or 'none'})")
        out = {}
        for k, p in self.params.items():
            v = args.get(k, p.default)
            want = type(p.default)
            ok = type(v) is want or (want is float and type(v) is int)
            if not ok:
                raise ValueError(f"argument {k!r} of model {self.name!r} must be "
                                 f"{want.__name__}, got {v!r}")
            if p.choices and v not in p.choices:
                raise ValueError(f"argument {k!r} of model {self.name!r} must be one of "
                                 f"{', '.join(map(str, p.choices))}, got {v!r}")
            if p.minimum is not None and not isinstance(v, (str, bool)) and v < p.minimum:
                raise ValueError(f"argument {k!r} of model {self.name!r} must be "
                                 f">= {p.minimum}, got {v!r}")
            out[k] = v
        return out


MODELS: dict[str, Model] = {}


def model(name: str, help: str, **params: ModelParam):
    def deco(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} declared twice")
        MODELS[name] = Model(name, fn, params, help)
        return fn
    return deco


def _draw(rng: random.Random, mean_ns: int, dist: str) -> int:
    if dist == "fixed" or mean_ns == 0:
        return mean_ns
    return max(1, int(rng.expovariate(1.0 / mean_ns)))


@model("hog", "a CPU-bound loop that never blocks")
def _hog(rng, a, ctx):
    while True:
        yield (RUN, FOREVER)


@model("idle", "boots, then sleeps for ever (density, boot storms)")
def _idle(rng, a, ctx):
    yield (WAIT, FOREVER)


@model("requests", "open-loop requests: Poisson arrivals, CPU service, host calls",
       interval_us=ModelParam(10_000.0, "mean time between arrivals", 0.001),
       service_us=ModelParam(1_000.0, "mean CPU per request"),
       service=ModelParam("exp", "service time distribution", None, ("exp", "fixed")),
       calls=ModelParam(0, "host calls per request"),
       batch=ModelParam(1, "calls coalesced into one crossing", 1),
       io=ModelParam(False, "each crossing is an I/O round trip (waits for I/O latency)", None))
def _requests(rng, a, ctx):
    mean_gap = int(a["interval_us"] * US)
    mean_service = int(a["service_us"] * US)
    crossings = -(-a["calls"] // a["batch"])
    t = ctx.now()
    while True:
        t += max(1, int(rng.expovariate(1.0 / mean_gap)))
        demand = _draw(rng, mean_service, a["service"])
        if a["io"] and crossings:
            yield (REQ, t, 0, 0)          # arrival marker for the latency clock
            yield (RUN, demand)
            yield (IO, crossings)
            yield (REQ, None, 0, -1)      # completion marker
        else:
            yield (REQ, t, demand, crossings)


@model("think", "closed loop: a CPU burst, host calls, then a think time",
       burst_us=ModelParam(1_000.0, "mean CPU burst"),
       think_us=ModelParam(10_000.0, "mean think (blocked) time"),
       calls=ModelParam(0, "host calls per burst"))
def _think(rng, a, ctx):
    burst, think = int(a["burst_us"] * US), int(a["think_us"] * US)
    while True:
        yield (RUN, _draw(rng, burst, "exp"))
        if a["calls"]:
            yield (CALL, a["calls"])
        yield (WAIT, _draw(rng, think, "exp"))


@model("tick-dodger", "runs until just before each scheduler tick, sleeps across it "
       "(the credit1 accounting exploit)",
       period_us=ModelParam(10_000.0, "tick period to dodge (credit1: 10 ms)", 1),
       margin_us=ModelParam(500.0, "how long before the tick to yield"))
def _dodger(rng, a, ctx):
    period, margin = int(a["period_us"] * US), int(a["margin_us"] * US)
    while True:
        now = ctx.now()
        tick = (now // period + 1) * period
        if now < tick - margin:
            yield (RUN_UNTIL, tick - margin)
        yield (UNTIL, tick + 1)


def replay_ops(profile: Profile, ctx: WorkloadContext) -> Iterator[tuple]:
    while True:
        for op in profile.steps:
            if op[0] == REQ:
                yield (REQ, ctx.now(), op[2], op[3])
            else:
                yield op
        if not profile.loop:
            return


# ---------------------------------------------------------------------------
# Guest processes
# ---------------------------------------------------------------------------

class GuestProcess:
    """What every guest process shares: start, boot, core handling, stop."""

    def __init__(self, host: Host, task: Task, *, start_ns: int = 0, boot: bool = True,
                 memory_bytes: int = 0) -> None:
        self.host = host
        self.task = task
        self.start_ns = int(start_ns)
        self.boot = boot
        self.guest_memory = int(memory_bytes)
        self.grant = None
        self.crossing_ns = task.profile.crossing_ns(host.clock_hz)
        self.io_ns = task.profile.io_ns(host.clock_hz)
        task.proc = host.env.process(self._main())

    # The guest body; subclasses implement it as a generator.
    def body(self):
        raise NotImplementedError
        yield

    def _main(self):
        host, t, env = self.host, self.task, self.host.env
        try:
            if self.start_ns > env.now:
                yield env.timeout(self.start_ns - env.now)
            t.started_at = env.now
            need = t.profile.overhead_bytes + self.guest_memory
            if not host.reserve_memory(t, need):
                host.stop(t, 1, "not admitted: host memory full", False)
                t.state = EXITED
                host.sched.remove(t)
                return
            if self.boot:
                yield from self._cpu(t.profile.start_ns)
                t.booted_at = env.now
            yield from self.body()
            host.stop(t, 0, "finished", False)
        except simpy.Interrupt as irq:
            if not isinstance(irq.cause, Kill):
                raise
        finally:
            self.close()
        self.grant = None
        if t.core is not None:      # on a core, or granted one not yet taken up
            t.in_run = False
            host.release(t, EXITED)
        elif t.state != EXITED:
            host.cancel(t)

    def close(self) -> None:
        """Release resources held outside the simulation (emulators)."""

    def _get_core(self):
        """Generator: wait for a core; leaves the grant in self.grant."""
        t = self.task
        if t.grant_ev is not None:
            # release(RUNNABLE) queued us already and gave the core away.
            g = yield t.grant_ev
        else:
            g = self.host.acquire(t)
            if g is None:
                t.grant_ev = ev = self.host.env.event()
                g = yield ev
        self.grant = g

    def _cpu(self, ns: int, deadline: int | None = None):
        """Generator: do ``ns`` of work (or work until ``deadline``)."""
        host, t, env = self.host, self.task, self.host.env
        while True:
            if deadline is not None:
                ns = deadline - env.now
            if ns <= 0:
                return
            if self.grant is None:
                yield from self._get_core()
            g = self.grant
            now = env.now
            start = g.ready_at if g.ready_at > now else now
            end = start + ns
            if g.slice_end is not None and end > g.slice_end:
                end = g.slice_end
            if end <= now and g.slice_end is not None:
                self.grant = host.release(t, RUNNABLE)
                continue
            if deadline is not None and end > deadline:
                end = max(deadline, start)
            t.seg_start = start
            t.in_run = True
            try:
                yield env.timeout(end - now)
            except simpy.Interrupt as irq:
                t.in_run = False
                now = env.now
                if now > start:
                    host.charge(t, t.seg_start, now)
                    ns -= now - start
                if irq.cause is PREEMPT:
                    self.grant = host.release(t, RUNNABLE)
                    continue
                raise
            t.in_run = False
            host.charge(t, t.seg_start, end)
            ns -= end - start
            if ns > 0 or (deadline is not None and env.now < deadline):
                # slice over with work left
                self.grant = host.release(t, RUNNABLE)

    def _block(self, until: int):
        """Generator: give the core up and sleep until ``until``."""
        if self.grant is not None:
            self.grant = None
            self.host.release(self.task, BLOCKED)
        env = self.host.env
        if until > env.now:
            yield env.timeout(until - env.now)


class ModelledGuestProcess(GuestProcess):
    """A guest whose behaviour is an iterator of ops (see module doc)."""

    def __init__(self, host: Host, task: Task, ops: Callable[[WorkloadContext], Iterator[tuple]],
                 **kw: Any) -> None:
        self._make_ops = ops
        super().__init__(host, task, **kw)

    def body(self):
        t, env = self.task, self.host.env
        ctx = WorkloadContext(lambda: env.now, self.crossing_ns, self.io_ns)
        cross, io_ns = self.crossing_ns, self.io_ns
        pending_arrival = None
        for op in self._make_ops(ctx):
            code = op[0]
            if code == RUN:
                yield from self._cpu(op[1])
            elif code == REQ:
                arrival, demand, n = op[1], op[2], op[3]
                if n < 0:  # completion marker of a split request
                    t.requests += 1
                    t.latencies.append(env.now - pending_arrival)
                    continue
                if arrival is not None and arrival > env.now:
                    yield from self._block(arrival)
                if demand == 0 and n == 0:
                    pending_arrival = arrival
                    continue
                yield from self._cpu(demand + n * cross)
                t.crossings += n
                t.requests += 1
                t.latencies.append(env.now - (arrival if arrival is not None else env.now))
            elif code == WAIT:
                yield from self._block(env.now + op[1])
            elif code == UNTIL:
                yield from self._block(op[1])
            elif code == CALL:
                yield from self._cpu(op[1] * cross)
                t.crossings += op[1]
            elif code == IO:
                for _ in range(op[1]):
                    yield from self._cpu(cross)
                    t.crossings += 1
                    yield from self._block(env.now + io_ns)
            elif code == RUN_UNTIL:
                yield from self._cpu(0, deadline=op[1])
            else:
                raise ValueError(f"guest {t.name}: unknown op {op!r}")


def spawn_model(host: Host, name: str, model_name: str, args: dict[str, Any] | None = None, *,
                profile: str = "unikernel", weight: float = 1.0, group: str | None = None,
                start_ns: int = 0, boot: bool = True, memory_bytes: int = 0) -> Task:
    """Create a modelled guest from the ``MODELS`` table."""
    m = MODELS[model_name]
    a = m.check_args(args or {})
    t = host.new_task(name, group=group, profile=profile, weight=weight)
    rng = host.guest_rng(name)
    ModelledGuestProcess(host, t, lambda ctx: m.make(rng, a, ctx), start_ns=start_ns,
                         boot=boot, memory_bytes=memory_bytes)
    return t


def spawn_replay(host: Host, name: str, prof: Profile, *, profile: str = "unikernel",
                 weight: float = 1.0, group: str | None = None, start_ns: int = 0,
                 boot: bool = True, memory_bytes: int = 0) -> Task:
    """Create a guest that replays a recorded profile."""
    t = host.new_task(name, group=group, profile=profile, weight=weight)
    ModelledGuestProcess(host, t, lambda ctx: replay_ops(prof, ctx), start_ns=start_ns,
                         boot=boot, memory_bytes=memory_bytes)
    return t
