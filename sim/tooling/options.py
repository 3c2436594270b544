"""Boot options of the researcher tooling, declared to ``sim boot``.

``--timeline FILE``               Chrome/Perfetto timeline (sim.tooling.timeline)
``--snapshot-at N --snapshot-out FILE``
                                  save the guest once N instructions retired
``--record FILE``                 record every input for ``sim replay``
``--gdb PORT``                    wait for GDB on 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sim.argtypes import non_negative_int


def _port(text: str) -> int:
    value = non_negative_int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return value


def add_boot_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("researcher tooling (docs/debugging.md)")
    add_output_options(group)
    group.add_argument("--snapshot-at", type=non_negative_int, metavar="INSNS",
                       help="snapshot the guest at the first slice boundary after INSNS "
                            "instructions (the run goes on); needs --snapshot-out")
    group.add_argument("--snapshot-out", metavar="FILE", help="where --snapshot-at writes")
    group.add_argument("--record", metavar="FILE",
                       help="record the run's inputs (image, seed, arguments, device input) "
                            "so that 'sim replay FILE' repeats it exactly")


def add_output_options(group: Any) -> None:
    """Options shared by boot, resume and replay."""
    group.add_argument("--timeline", metavar="FILE",
                       help="write a Chrome trace event timeline (open it in ui.perfetto.dev)")
    group.add_argument("--gdb", type=_port, metavar="PORT",
                       help="wait for GDB on 127.0.0.1:PORT before running (target remote :PORT)")


def apply_boot_options(args: argparse.Namespace, config: Any, extra: list[str]) -> list[str]:
    from sim.tooling.errors import ToolingError

    at, out = getattr(args, "snapshot_at", None), getattr(args, "snapshot_out", None)
    if (at is None) != (out is None):
        raise ToolingError("--snapshot-at and --snapshot-out go together")
    return extra


def wrap_run(args: argparse.Namespace, guest: Any, run: Callable[[], Any]) -> Callable[[], Any]:
    if getattr(args, "snapshot_at", None) is not None:
        from sim.tooling.snapshotter import Snapshotter

        run = Snapshotter(guest, args.snapshot_at, args.snapshot_out,
                          slice_insns=args.slice).wrap(run)
    if getattr(args, "record", None):
        from sim.tooling.replay import Recorder

        run = Recorder(args, guest).wrap(run)
    if getattr(args, "replay", None) is not None:
        run = _checked_replay(args.replay, guest, run)
    return wrap_output(args, guest, run)


def wrap_output(args: argparse.Namespace, guest: Any, run: Callable[[], Any]) -> Callable[[], Any]:
    if getattr(args, "timeline", None):
        run = _with_timeline(args.timeline, guest, run)
    if getattr(args, "gdb", None):
        from sim.tooling.gdbstub import attach

        run = attach(guest, args.gdb, run, on_listen=None if args.quiet else _say_waiting)
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


def _checked_replay(doc: dict, guest: Any, run: Callable[[], Any]) -> Callable[[], Any]:
    from sim.tooling.replay import check_inputs, check_outcome

    def replayed() -> Any:
        check_inputs(doc, guest)
        result = run()
        check_outcome(doc, result)
        return result

    return replayed


def _say_waiting(port: int) -> None:
    import sys

    print(f"sim: waiting for GDB on 127.0.0.1:{port} (gdb IMAGE -ex 'target remote :{port}')",
          file=sys.stderr, flush=True)
