"""A Chrome trace event (Perfetto) timeline of one guest's run.

Rows (threads of one process named after the guest):

* ``vCPU``: one X slice per scheduling slice the guest ran, and one per
  wait (``blocked: sleep``) between slices;
* ``calls``: one X slice per host call, from the trap to the end of its
  service (the call's cost as charged in simulated time);
* ``devices``, ``events``: instants for device activity, monitor decisions,
  faults and the exit.

All times are simulated: integer nanoseconds, written as microseconds
(``ns / 1000``, the unit Chrome expects). The float is a pure function of
the integer, so two runs with the same inputs give the same bytes.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from sim.trace import Event, Tracer

PID = 1
TID_VCPU, TID_CALLS, TID_DEVICES, TID_EVENTS = 1, 2, 3, 4
THREADS = {TID_VCPU: "vCPU", TID_CALLS: "calls", TID_DEVICES: "devices", TID_EVENTS: "events"}
# What the timeline asks of the tracer (no per-instruction events).
TIMELINE_KINDS = frozenset({"call", "dev", "fault", "exit", "monitor", "note"})


def _us(ns: int) -> float:
    return ns / 1000


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class TimelineSink:
    """A trace sink that writes Chrome trace event JSON when closed.

    ``call_started(ns)`` and ``slice_ran/blocked`` are fed by
    :class:`TimelineRecorder`; plain trace events arrive through ``write``.
    """

    def __init__(self, stream: TextIO, guest: str = "guest", close_stream: bool = False):
        self.stream = stream
        self.guest = guest
        self._close_stream = close_stream
        self._events: list[dict[str, Any]] = []
        self._call_start: int | None = None
        self._closed = False

    # -- fed by the recorder ----------------------------------------------
    def call_started(self, ns: int) -> None:
        self._call_start = ns

    def slice_ran(self, start_ns: int, busy_ns: int, insns: int, crossings: int) -> None:
        self._events.append({"name": "run", "cat": "vcpu", "ph": "X", "ts": _us(start_ns),
                             "dur": _us(busy_ns), "pid": PID, "tid": TID_VCPU,
                             "args": {"insns": insns, "host_calls": crossings}})

    def blocked(self, start_ns: int, end_ns: int, reason: str) -> None:
        if end_ns > start_ns:
            self._events.append({"name": f"blocked: {reason}", "cat": "wait", "ph": "X",
                                 "ts": _us(start_ns), "dur": _us(end_ns - start_ns),
                                 "pid": PID, "tid": TID_VCPU, "args": {}})

    # -- Sink protocol ----------------------------------------------------
    def write(self, event: Event) -> None:
        fields = _jsonable(event.fields)
        args = {"insn": event.insn, **fields}
        if event.kind == "call":
            start = self._call_start if self._call_start is not None else event.t_ns
            self._call_start = None
            self._events.append({"name": event.name, "cat": "call", "ph": "X", "ts": _us(start),
                                 "dur": _us(max(0, event.t_ns - start)), "pid": PID,
                                 "tid": TID_CALLS, "args": args})
            return
        if event.kind == "insn":
            return  # far too many for a timeline
        tid = TID_DEVICES if event.kind == "dev" else TID_EVENTS
        scope = "g" if event.kind == "exit" else "t"
        self._events.append({"name": f"{event.kind}: {event.name}", "cat": event.kind,
                             "ph": "i", "s": scope, "ts": _us(event.t_ns), "pid": PID,
                             "tid": tid, "args": args})

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        meta = [{"name": "process_name", "ph": "M", "pid": PID, "tid": 0,
                 "args": {"name": self.guest}}]
        meta += [{"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": n}}
                 for tid, n in THREADS.items()]
        meta += [{"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid,
                  "args": {"sort_index": tid}} for tid in THREADS]
        out = self.stream
        out.write('{"displayTimeUnit": "ns", "otherData": {"clock": "simulated"},\n')
        out.write(' "traceEvents": [\n')
        rows = meta + self._events
        for i, ev in enumerate(rows):
            out.write("  " + json.dumps(ev, sort_keys=True) + (",\n" if i + 1 < len(rows) else "\n"))
        out.write(" ]}\n")
        out.flush()
        if self._close_stream:
            out.close()


class TeeTracer(Tracer):
    """The guest's tracer plus extra sinks that want their own kinds."""

    def __init__(self, inner: Tracer, sinks: list[tuple[Any, frozenset[str]]]):
        super().__init__()
        self.inner = inner
        self.extra = sinks
        self.sinks = list(inner.sinks)
        self.kinds = inner.kinds.union(*(k for _s, k in sinks))

    def emit(self, event: Event) -> None:
        self.inner.emit(event)
        for sink, kinds in self.extra:
            if event.kind in kinds:
                sink.write(event)

    def close(self) -> None:
        self.inner.close()
        for sink, _kinds in self.extra:
            sink.close()


def add_sink(guest: Any, sink: Any, kinds: frozenset[str]) -> None:
    """Route ``kinds`` of a built guest's events to ``sink`` as well."""
    tee = TeeTracer(guest.tracer, [(sink, kinds)])
    guest.tracer = tee
    guest.services.tracer = tee


class TimelineRecorder:
    """Feeds a TimelineSink from a guest: slices, waits and call start times."""

    def __init__(self, guest: Any, sink: TimelineSink):
        self.guest = guest
        self.sink = sink
        self._wait_from: int | None = None
        self._wait_reason = "wait"
        # Waits inside the running step: (start, end, insns, crossings, reason).
        self._waits: list[tuple[int, int, int, int, str]] = []
        self._watcher: Any = None
        add_sink(guest, sink, TIMELINE_KINDS)
        services = guest.services
        vcpu = guest.vcpu
        inner_trap = vcpu.trap_handler

        def on_trap(trap: Any) -> bool:
            sink.call_started(services.now())
            return inner_trap(trap)

        vcpu.trap_handler = on_trap
        inner_step = guest.step

        def step(now_ns: int, max_insns: int = 1_000_000) -> Any:
            if self._wait_from is not None:
                sink.blocked(self._wait_from, now_ns, self._wait_reason)
                self._wait_from = None
            self._watch_waits()
            before, crossings_before = guest.retired, guest.crossings
            self._waits = []
            result = inner_step(now_ns, max_insns)
            # A slice with waits inside it (sim.boot's wait in place) is
            # drawn as runs with the waits between them.
            t, insns, crossings = now_ns, before, crossings_before
            for start, end, insns_at, crossings_at, reason in self._waits:
                sink.slice_ran(t, start - t, insns_at - insns, crossings_at - crossings)
                sink.blocked(start, end, reason)
                t, insns, crossings = end, insns_at, crossings_at
            end_ns = now_ns + result.busy_ns
            if end_ns > t or guest.retired != insns:
                sink.slice_ran(t, end_ns - t, guest.retired - insns, guest.crossings - crossings)
            if result.exited is None and (result.block_until is not None or result.wake is not None):
                self._wait_from = now_ns + result.busy_ns
                blocked = getattr(guest, "_blocked", None)
                self._wait_reason = getattr(blocked, "reason", "wait")
            return result

        guest.step = step

    def _watch_waits(self) -> None:
        """Note each wait in place of the coming step (the runner installs
        GuestServices.wait_here when it starts the guest)."""
        services = self.guest.services
        inner = services.wait_here
        if inner is None or inner is self._watcher:
            return
        guest = self.guest

        def wait_here(ready: Any, timeout_ns: int, reason: str = "wait") -> bool:
            start, insns, crossings = services.now(), services.retired(), guest.crossings
            woke = inner(ready, timeout_ns, reason)
            if woke:
                self._waits.append((start, services.now(), insns, crossings, reason))
            return woke

        self._watcher = services.wait_here = wait_here
