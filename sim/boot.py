"""One guest on its own: the SimPy loop behind ``sim boot``.

The guest runs slice after slice; each slice's simulated time passes on the
environment's clock, and a blocked guest waits (in simulated time only) for
its deadline or for the event that wakes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from sim.guest import DEFAULT_SLICE, Guest, Stopped


@dataclass(frozen=True)
class RunResult:
    stopped: Stopped
    t_ns: int
    retired: int
    crossings: int


def guest_process(env: simpy.Environment, guest: Guest, slice_insns: int = DEFAULT_SLICE):
    """A SimPy process that runs a guest until it stops; returns its Stopped."""
    # The guest resumes once its slice's time has passed and, if it blocked,
    # once its deadline or wake-up event came: at max(busy end, wake-up).
    # Each wait is one event (the waits run side by side, not one after the
    # other), as a guest that blocks does so once per network round trip.
    while True:
        now = env.now
        step = guest.step(now, slice_insns)
        busy_end = now + step.busy_ns
        if step.exited is not None:
            if step.busy_ns:
                yield env.timeout(step.busy_ns)
            return step.exited
        if step.wake is None:
            until = busy_end if step.block_until is None else max(busy_end, step.block_until)
            if until > now:
                yield env.timeout(until - now)
            continue
        if step.block_until is None:
            yield step.wake
        else:  # whichever comes first (cheaper than a SimPy AnyOf condition)
            yield _first(env, env.timeout(max(0, step.block_until - now)), step.wake)
        if env.now < busy_end:  # woken while the slice's time was still passing
            yield env.timeout(busy_end - env.now)


def _first(env: simpy.Environment, *events: simpy.Event) -> simpy.Event:
    done = env.event()

    def fire(_event: simpy.Event) -> None:
        if not done.triggered:
            done.succeed()

    for event in events:
        if event.processed:
            fire(event)
        else:
            event.callbacks.append(fire)
    return done


def run_alone(guest: Guest, slice_insns: int = DEFAULT_SLICE,
              env: simpy.Environment | None = None) -> RunResult:
    env = env or simpy.Environment()
    guest.services.env = env
    proc = env.process(guest_process(env, guest, slice_insns))
    env.run(until=proc)
    return RunResult(proc.value, int(env.now), guest.retired, guest.crossings)
