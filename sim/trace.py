"""Typed trace events and the sinks that render them.

Library code only emits events; the CLI and notebooks choose sinks. Every
event carries the same stable keys so that JSON Lines stay diff-able across
runs: ``t_ns`` (simulated time), ``insn`` (instructions retired by that guest
so far), ``guest``, ``kind`` and ``name``, then kind-specific fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, TextIO

# The trace kinds a user can ask for with --trace=...; other kinds (exit,
# fault, monitor) are always emitted when tracing is on at all.
SELECTABLE_KINDS = ("insn", "call", "dev")
ALWAYS_KINDS = ("fault", "exit", "monitor", "note")


@dataclass(frozen=True, slots=True)
class Event:
    t_ns: int
    insn: int
    guest: str
    kind: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "t_ns": self.t_ns,
            "insn": self.insn,
            "guest": self.guest,
            "kind": self.kind,
            "name": self.name,
            **self.fields,
        }


class Sink(Protocol):
    def write(self, event: Event) -> None: ...
    def close(self) -> None: ...


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return hex(value) if abs(value) >= 4096 else str(value)
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_fmt_value(v)}" for k, v in value.items()) + "}"
    return str(value) if not isinstance(value, str) else repr(value)


def format_text(event: Event) -> str:
    """One line per event, columns aligned for reading in a terminal."""
    head = f"{event.t_ns:>12}ns {event.insn:>10} {event.guest:<8} "
    f = event.fields
    if event.kind == "insn":
        return f"{head}{f['where']:<28} {f['bytes']:<24} {f['asm']}"
    if event.kind == "call":
        args = ", ".join(f"{k}={_fmt_value(v)}" for k, v in f.get("args", {}).items())
        out = f.get("out")
        tail = f" out={_fmt_value(out)}" if out else ""
        return f"{head}call {event.name}({args}) = {_fmt_value(f.get('result'))}{tail}"
    rest = " ".join(f"{k}={_fmt_value(v)}" for k, v in f.items())
    return f"{head}{event.kind} {event.name} {rest}".rstrip()


class _StreamSink:
    """A sink writing lines to a text stream; subclasses choose the format.

    ``write_insns`` is the hot path of --trace=insn: a block's instructions
    in one write, the per-address part of each line formatted once
    (``_insn_tail``). Each subclass spells its per-line format inline in that
    loop: a method call per line cost 20% of the trace's speed.
    """

    def __init__(self, stream: TextIO, close_stream: bool = False):
        self.stream = stream
        self._close = close_stream
        self._insn_tails: dict[int, str] = {}

    def write(self, event: Event) -> None:
        self.stream.write(self._format(event) + "\n")

    def close(self) -> None:
        self.stream.flush()
        if self._close:
            self.stream.close()


class TextSink(_StreamSink):
    _format = staticmethod(format_text)

    @staticmethod
    def _insn_tail(fields: dict) -> str:
        return f"{fields['where']:<28} {fields['bytes']:<24} {fields['asm']}\n"

    def write_insns(self, guest: str, times: list[int], first: int,
                    insns: list[tuple[int, dict]]) -> None:
        tails, head, out = self._insn_tails, f" {guest:<8} ", []
        for i, (addr, fields) in enumerate(insns):
            tail = tails.get(addr) or tails.setdefault(addr, self._insn_tail(fields))
            out.append("%12dns %10d%s%s" % (times[i], first + i, head, tail))
        self.stream.write("".join(out))


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    raise TypeError(f"cannot encode {type(value).__name__} in a trace event")


class JsonlSink(_StreamSink):
    """JSON Lines; instruction lines are the same bytes write(Event) would give."""

    @staticmethod
    def _format(event: Event) -> str:
        return json.dumps(event.as_dict(), default=_json_default)

    @staticmethod
    def _insn_tail(fields: dict) -> str:
        return json.dumps({"kind": "insn", "name": "exec", **fields})[1:] + "\n"

    def write_insns(self, guest: str, times: list[int], first: int,
                    insns: list[tuple[int, dict]]) -> None:
        tails, head, out = self._insn_tails, f', "guest": {json.dumps(guest)}, ', []
        for i, (addr, fields) in enumerate(insns):
            tail = tails.get(addr) or tails.setdefault(addr, self._insn_tail(fields))
            out.append(f'{{"t_ns": {times[i]}, "insn": {first + i}{head}{tail}')
        self.stream.write("".join(out))


class ListSink:
    """Keeps events in memory: for tests and notebooks."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def write(self, event: Event) -> None:
        self.events.append(event)

    def write_insns(self, guest: str, times: list[int], first: int,
                    insns: list[tuple[int, dict]]) -> None:
        for i, (_addr, fields) in enumerate(insns):
            self.events.append(Event(times[i], first + i, guest, "insn", "exec", fields))

    def close(self) -> None:
        pass

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


class Tracer:
    """Routes events to sinks; cheap to ask whether a kind is wanted."""

    def __init__(self, kinds: Iterable[str] = (), sinks: Iterable[Sink] = ()):
        self.sinks: list[Sink] = list(sinks)
        self.kinds = frozenset(kinds) | (frozenset(ALWAYS_KINDS) if self.sinks else frozenset())

    def wants(self, kind: str) -> bool:
        return kind in self.kinds

    def emit(self, event: Event) -> None:
        if event.kind in self.kinds:
            for sink in self.sinks:
                sink.write(event)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


NULL_TRACER = Tracer()


def parse_kinds(spec: str | None) -> frozenset[str]:
    """``--trace`` value to the set of kinds; empty or None means all."""
    if not spec:
        return frozenset(SELECTABLE_KINDS)
    kinds = frozenset(k.strip() for k in spec.split(",") if k.strip())
    unknown = kinds - set(SELECTABLE_KINDS)
    if unknown:
        raise ValueError(
            f"unknown trace kind {sorted(unknown)[0]!r} (choose from {', '.join(SELECTABLE_KINDS)})"
        )
    return kinds
