"""One guest on its own: the SimPy loop behind ``sim boot``.

The guest runs slice after slice; each slice's simulated time passes on the
environment's clock, and a blocked guest waits (in simulated time only) for
its deadline or for the event that wakes it. A personality may also let
the guest wait inside its slice (``GuestServices.wait_here``, offered here
by :class:`_Waiter`): the simulation's events are then processed from the
vCPU's hook, as a Solo5 tender waits in the vCPU thread, and the vCPU is
not stopped and restarted for the wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import simpy
from simpy.core import StopSimulation

from sim.guest import DEFAULT_SLICE, Guest, Stopped


@dataclass(frozen=True)
class RunResult:
    stopped: Stopped
    t_ns: int
    retired: int
    crossings: int


# The ids of the SimPy processes guest_process runs, while they run: an
# event that would resume one is never processed inside a guest's wait (the
# waits would nest, and the outer guest could not run until the inner woke).
# An id left behind by an abandoned run can only make a later wait decline.
_GUEST_PROCESSES: set[int] = set()
_CLOCK_LIMIT = 1 << 63  # the guest's clock is a 64-bit count of ns
# What env.run(until=...) hangs on its event, and what resumes a process.
_STOP = StopSimulation.callback.__func__
_RESUME = simpy.Process._resume


class _Waiter:
    """``wait_here`` for a guest run by guest_process (see GuestServices).

    The guest waits inside its step, the way Solo5's tender waits in its
    POLL exit handler before it re-enters the VM: the simulation's events
    are processed here, first those due while the guest is still busy (up
    to its own clock), then until ``ready()`` is true or the next event
    lies past the deadline. The guest's clock then moves to that moment. It
    declines (False) before an event that would end env.run() or resume a
    guest's process: those need the guest's own process to wait outside.
    """

    def __init__(self, env: simpy.Environment, guest: Guest):
        self.env = env
        self.services = guest.services
        self.queue = env._queue  # SimPy's heap of (time, priority, id, event)

    def wait_here(self, ready: Callable[[], object] | None, timeout_ns: int,
                  _reason: str = "wait") -> bool:
        env, queue, services = self.env, self.queue, self.services
        step, foreign = env.step, _foreign
        now = services.now()
        while queue:  # first what falls due while the guest is still busy
            head = queue[0]
            if head[0] > now:
                break
            if foreign(head[3]):
                return False
            step()
        woke = now
        if ready is None or not ready():
            deadline = now + timeout_ns
            while True:
                if not queue or queue[0][0] > deadline:
                    if deadline >= _CLOCK_LIMIT:  # a wait for ever: block outside
                        return False
                    woke = deadline
                    break
                if foreign(queue[0][3]):
                    return False
                step()
                if ready is not None and ready():
                    woke = env.now
                    break
        services.clock.step_ns += woke - now
        return True


def _foreign(event: simpy.Event) -> bool:
    """Would processing ``event`` end env.run() or resume a guest's process?"""
    for callback in event.callbacks:
        func = getattr(callback, "__func__", None)  # bound methods: the function
        if func is _RESUME:
            if id(callback.__self__) in _GUEST_PROCESSES:
                return True
        elif func is _STOP:
            return True
    return False


def guest_process(env: simpy.Environment, guest: Guest, slice_insns: int = DEFAULT_SLICE,
                  wait_in_place: bool = True):
    """A SimPy process that runs a guest until it stops; returns its Stopped.

    ``wait_in_place``: a personality that can may let the guest wait inside
    its step (GuestServices.wait_here) instead of ending the step to block.
    """
    process = id(env.active_process)
    _GUEST_PROCESSES.add(process)
    if wait_in_place:
        guest.services.wait_here = _Waiter(env, guest).wait_here
    try:
        return (yield from _run(env, guest, slice_insns))
    finally:
        guest.services.wait_here = None
        _GUEST_PROCESSES.discard(process)


def _run(env: simpy.Environment, guest: Guest, slice_insns: int):
    # The guest's clock is step start + busy (a guest that waited inside
    # its step has its waits in busy, and env.now may already be past the
    # step's start). It resumes once its clock's time has passed and, if it
    # blocked, once its deadline or wake-up event came: at max(busy end,
    # wake-up). The two waits run side by side, each one event.
    while True:
        start = env.now
        step = guest.step(start, slice_insns)
        busy_end = start + step.busy_ns
        if step.exited is not None:
            if busy_end > env.now:
                yield env.timeout(busy_end - env.now)
            return step.exited
        if step.wake is None:
            until = busy_end if step.block_until is None else max(busy_end, step.block_until)
            if until > env.now:
                yield env.timeout(until - env.now)
            continue
        if step.block_until is None:
            yield step.wake
        else:  # whichever comes first (cheaper than a SimPy AnyOf condition)
            yield _first(env, env.timeout(max(0, step.block_until - env.now)), step.wake)
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
