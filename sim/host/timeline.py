"""Chrome trace event files (open in Perfetto or chrome://tracing).

Cores are threads of process 1 ("cores"), guests threads of process 2
("guests"); each run segment is an ``X`` (complete) slice on both, counters
are ``C`` events. Timestamps are microseconds with ns precision, written as
fixed-point text so output is identical from run to run.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

CORES_PID, GUESTS_PID, HOST_PID = 1, 2, 3


def _us(ns: int) -> str:
    return f"{ns // 1000}.{ns % 1000:03d}"


class Timeline:
    def __init__(self, max_events: int = 2_000_000) -> None:
        self._lines: list[str] = []
        self._threads: dict[tuple[int, int], str] = {}
        self.max_events = max_events
        self.dropped = 0

    def _add(self, line: str) -> None:
        if len(self._lines) >= self.max_events:
            self.dropped += 1
            return
        self._lines.append(line)

    def slice(self, core: int, task: Any, start: int, end: int) -> None:
        name = json.dumps(task.name)
        self._threads.setdefault((CORES_PID, core), f"core {core}")
        self._threads.setdefault((GUESTS_PID, task.index), task.name)
        ts, dur = _us(start), _us(end - start)
        self._add(f'{{"ph":"X","pid":{CORES_PID},"tid":{core},"ts":{ts},"dur":{dur},'
                  f'"name":{name},"cat":"run"}}')
        self._add(f'{{"ph":"X","pid":{GUESTS_PID},"tid":{task.index},"ts":{ts},"dur":{dur},'
                  f'"name":"core {core}","cat":"run"}}')

    def instant(self, t_ns: int, name: str, args: dict[str, Any] | None = None) -> None:
        self._add(f'{{"ph":"i","s":"g","pid":{HOST_PID},"tid":0,"ts":{_us(t_ns)},'
                  f'"name":{json.dumps(name)},"args":{json.dumps(args or {}, sort_keys=True)}}}')

    def counter(self, t_ns: int, name: str, values: dict[str, int]) -> None:
        self._add(f'{{"ph":"C","pid":{HOST_PID},"tid":0,"ts":{_us(t_ns)},'
                  f'"name":{json.dumps(name)},"args":{json.dumps(values, sort_keys=True)}}}')

    def write(self, f: TextIO) -> None:
        meta = [f'{{"ph":"M","pid":{p},"tid":0,"name":"process_name","args":{{"name":"{n}"}}}}'
                for p, n in ((CORES_PID, "cores"), (GUESTS_PID, "guests"), (HOST_PID, "host"))]
        for (pid, tid), name in sorted(self._threads.items()):
            meta.append(f'{{"ph":"M","pid":{pid},"tid":{tid},"name":"thread_name",'
                        f'"args":{{"name":{json.dumps(name)}}}}}')
        f.write('{"displayTimeUnit":"ns","traceEvents":[\n')
        f.write(",\n".join(meta + self._lines))
        f.write("\n]}\n")
