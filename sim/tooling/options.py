"""Boot options of the researcher tooling, declared to ``sim boot``.

``--timeline FILE``  Chrome/Perfetto timeline of the run (sim.tooling.timeline)
"""

from __future__ import annotations

import argparse
from typing import Any, Callable


def add_boot_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("researcher tooling")
    group.add_argument("--timeline", metavar="FILE",
                       help="write a Chrome trace event timeline (open it in ui.perfetto.dev)")


def apply_boot_options(args: argparse.Namespace, config: Any, extra: list[str]) -> list[str]:
    return extra


def wrap_run(args: argparse.Namespace, guest: Any, run: Callable[[], Any]) -> Callable[[], Any]:
    if getattr(args, "timeline", None):
        run = _with_timeline(args.timeline, guest, run)
    return run


def _with_timeline(path: str, guest: Any, run: Callable[[], Any]) -> Callable[[], Any]:
    from sim.tooling.timeline import TimelineRecorder, TimelineSink

    def timed() -> Any:
        with open(path, "w", encoding="utf-8") as stream:
            sink = TimelineSink(stream, guest.name)
            TimelineRecorder(guest, sink)
            try:
                return run()
            finally:
                sink.close()

    return timed
