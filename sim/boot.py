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
    while True:
        step = guest.step(env.now, slice_insns)
        if step.busy_ns:
            yield env.timeout(step.busy_ns)
        if step.exited is not None:
            return step.exited
        if step.wake is None:
            if step.block_until is not None:
                yield env.timeout(max(0, step.block_until - env.now))
        elif step.block_until is None:
            yield step.wake
        else:  # whichever comes first (cheaper than a SimPy AnyOf condition)
            yield _first(env, env.timeout(max(0, step.block_until - env.now)), step.wake)


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
