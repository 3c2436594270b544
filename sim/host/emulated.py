"""Emulated guests: a real Unicorn guest (sim/guest.py) as a host-model task.

The adapter only relies on this interface (provided by sim/guest.py)::

    guest.name: str
    guest.step(now_ns, max_insns) -> Step   # insns, busy_ns, crossings,
                                            # block_until, wake, exited
    guest.close() -> None

A step is atomic: the guest's instructions have already run when SimPy sees
the step, so an emulated task is never interrupted mid-step; a preemption
takes effect at the end of the current step. Steps are capped at
``max_step_ns`` worth of instructions so that this delay stays short.
"""

from __future__ import annotations

from typing import Any

from sim.host.machine import BLOCKED, RUNNABLE, Host, Task
from sim.host.units import US
from sim.host.workload import GuestProcess

# Longest step before the scheduler looks again: 100 us of instructions.
# Measured in docs/performance.md ("Instruction accounting"): slices down to ~100k instructions (~40 us at 2.6 GHz)
# cost little in Unicorn with the native counter, so 100 us keeps preemption
# latency well under a CFS min_granularity (0.75 ms).
DEFAULT_MAX_STEP_NS = 100 * US


class EmulatedGuestProcess(GuestProcess):
    """Runs ``guest`` (sim.guest.Guest-like) under the host's scheduler."""

    def __init__(self, host: Host, task: Task, guest: Any, *,
                 max_step_ns: int = DEFAULT_MAX_STEP_NS, **kw: Any) -> None:
        self.guest = guest
        self.max_step_ns = int(max_step_ns)
        self.steps = 0
        self.insns = 0
        self._closed = False
        task.interruptible = False
        host.closers.append(self.close)
        super().__init__(host, task, **kw)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.guest.close()

    def body(self):
        host, t, env = self.host, self.task, self.host.env
        while True:
            if self.grant is None:
                yield from self._get_core()
            g = self.grant
            now = env.now
            if g.ready_at > now:               # pay the context switch first
                yield env.timeout(g.ready_at - now)
                now = env.now
            budget = self.max_step_ns
            if g.slice_end is not None:
                budget = min(budget, g.slice_end - now)
            if budget <= 0:
                self.grant = host.release(t, RUNNABLE)
                continue
            max_insns = max(1, host.ns_to_insns(budget))
            step = self.guest.step(now, max_insns)
            self.steps += 1
            self.insns += step.insns
            cost = int(step.busy_ns) + step.crossings * self.crossing_ns
            if cost < 0:
                raise ValueError(f"guest {t.name}: step reported negative busy_ns {step.busy_ns}")
            if cost:
                t.seg_start = now
                t.in_run = True
                yield env.timeout(cost)
                t.in_run = False
                host.charge(t, t.seg_start, now + cost)
            t.crossings += step.crossings
            if step.exited is not None:
                st = step.exited
                host.stop(t, st.status, st.reason, st.fault)
                return
            blocked = step.block_until is not None or step.wake is not None
            if blocked and (step.block_until is None or step.block_until > env.now):
                self.grant = None
                host.release(t, BLOCKED)
                waits = []
                if step.block_until is not None:
                    waits.append(env.timeout(step.block_until - env.now))
                if step.wake is not None:
                    waits.append(step.wake)
                yield env.any_of(waits) if len(waits) > 1 else waits[0]
                continue
            if t.preempt_pending or (g.slice_end is not None and env.now >= g.slice_end):
                self.grant = host.release(t, RUNNABLE)


def guest_time(host_or_clock: Any, cpi: float | None = None):
    """The guest-side TimeModel matching a host's clock and CPI, so that the
    instructions a step retires cost the same simulated time in the guest
    (its clock, TSC, sleeps) as on the host model's cores."""
    from sim.devices.clock import TimeModel
    if isinstance(host_or_clock, Host):
        clock_hz, cpi = host_or_clock.clock_hz, host_or_clock.cpi
    else:
        clock_hz = int(host_or_clock)
    return TimeModel(clock_hz=int(clock_hz), cycles_per_insn_milli=int(round((cpi or 1.0) * 1000)))


def open_guest(image: Any, host: Host | None = None, *, name: str | None = None,
               args: tuple[str, ...] | list[str] = (), mem_bytes: int = 0, seed: int | None = None,
               on_console: Any = None, clock_hz: int | None = None, cpi: float = 1.0,
               max_insns: int | None = None) -> Any:
    """A ``sim.guest.Guest`` for ``image`` (a bundled example name, a path or
    an ``Image``), timed like ``host`` and attached to its SimPy environment.
    ``args`` are the guest's arguments after argv[0] (the image name)."""
    from pathlib import Path

    from sim.examples import resolve
    from sim.guest import DEFAULT_MAX_INSNS, Guest
    from sim.image import Image
    from sim.libos.personality import BootConfig
    if not isinstance(image, Image):
        image = Image.load(resolve(image) if isinstance(image, str) else Path(image))
    if host is not None:
        time = guest_time(host)
        seed = host.seed if seed is None else seed
    else:
        from sim.host.profiles import DEFAULT_CLOCK_HZ
        time = guest_time(clock_hz or DEFAULT_CLOCK_HZ, cpi)
    cfg = BootConfig(args=(image.name, *map(str, args)), seed=seed or 0, time=time)
    if mem_bytes:
        cfg.mem_bytes = int(mem_bytes)
    return Guest(image, cfg, name=name or image.name, on_console=on_console,
                 env=host.env if host is not None else None,
                 max_insns=max_insns or DEFAULT_MAX_INSNS)


def spawn_emulated(host: Host, guest: Any, *, profile: str = "unikernel", weight: float = 1.0,
                   group: str | None = None, start_ns: int = 0, boot: bool = True,
                   memory_bytes: int = 0, max_step_ns: int = DEFAULT_MAX_STEP_NS) -> Task:
    t = host.new_task(guest.name, group=group, profile=profile, weight=weight, kind="emulated")
    EmulatedGuestProcess(host, t, guest, start_ns=start_ns, boot=boot,
                         memory_bytes=memory_bytes, max_step_ns=max_step_ns)
    return t


def record_emulated(guest: Any, *, until_ns: int, max_insns: int = 1_000_000,
                    clock_hz: int | None = None) -> list[tuple]:
    """Run ``guest`` alone (no contention) and return its behaviour as profile
    steps (for ``record_profile``): run busy_ns, call crossings, wait until
    its deadline. A wait with no deadline (woken by an event) ends the
    recording. Closes nothing: the caller owns ``guest``."""
    from sim.host.workload import compress_steps
    now = 0
    steps: list[tuple] = []
    while now < until_ns:
        s = guest.step(now, max_insns)
        if s.busy_ns:
            steps.append(("run", int(s.busy_ns)))
            now += int(s.busy_ns)
        if s.crossings:
            steps.append(("call", s.crossings))
        if s.exited is not None:
            break
        if s.block_until is not None and s.block_until > now:
            steps.append(("wait", s.block_until - now))
            now = s.block_until
        elif s.block_until is None and s.wake is not None:
            break
        if not s.busy_ns and not s.crossings and (s.block_until is None or s.block_until <= now):
            raise RuntimeError(f"guest {guest.name}: a step made no progress")
    return compress_steps(steps)
