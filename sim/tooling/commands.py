"""``sim resume`` and ``sim replay``: runs that start from a file.

``sim resume SNAPSHOT`` continues a guest saved by ``sim boot --snapshot-at``;
``sim replay RECORD`` repeats a run recorded by ``sim boot --record``.
Both take the output options of ``sim boot`` (trace, timeline, gdb).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from typing import Any


def _output_options(parser: argparse.ArgumentParser) -> None:
    from sim.bootcmd import _trace_kinds
    from sim.tooling.options import add_output_options
    from sim.trace import SELECTABLE_KINDS

    parser.add_argument("--trace", nargs="?", const=frozenset(SELECTABLE_KINDS), type=_trace_kinds,
                        metavar="KINDS", help="trace insn,call,dev (default: all of them)")
    parser.add_argument("--trace-format", choices=("text", "jsonl"), default="text",
                        help="trace as aligned text or JSON Lines (default: text)")
    parser.add_argument("--trace-out", metavar="FILE", help="write the trace here, not stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="no echo or summary line")
    add_output_options(parser)


def register(sub: argparse._SubParsersAction) -> None:
    resume = sub.add_parser("resume", help="continue a guest from a snapshot file",
                            description="Continue a guest saved by 'sim boot --snapshot-at N "
                                        "--snapshot-out FILE'; the rest of its run is the same "
                                        "as if it had never stopped.")
    resume.add_argument("snapshot", help="snapshot file")
    resume.add_argument("--slice", type=int, default=None, metavar="N",
                        help="instructions per slice (default: the snapshotted run's)")
    resume.add_argument("--copy-memory", action="store_true",
                        help="copy guest memory instead of mapping the file copy-on-write")
    _output_options(resume)
    resume.set_defaults(func=resume_command)

    replay = sub.add_parser("replay", help="repeat a run recorded with 'sim boot --record'",
                            description="Repeat a recorded run from its record alone and check "
                                        "that it ends the same way.")
    replay.add_argument("record", help="record file")
    replay.add_argument("--pcap", metavar="FILE",
                        help="write the frames crossing the virtual switch as pcap")
    _output_options(replay)
    replay.set_defaults(func=replay_command)


def _tracer(args: argparse.Namespace, stack: ExitStack) -> Any:
    from sim.trace import JsonlSink, TextSink, Tracer

    sinks = []
    if args.trace:
        stream = sys.stderr
        if args.trace_out:
            stream = stack.enter_context(open(args.trace_out, "w", encoding="utf-8"))  # noqa: SIM115
        sinks.append((JsonlSink if args.trace_format == "jsonl" else TextSink)(stream))
    tracer = Tracer(args.trace or (), sinks)
    stack.callback(tracer.close)
    return tracer


def resume_command(args: argparse.Namespace) -> int:
    import simpy

    from sim.boot import run_alone
    from sim.bootcmd import _echo_console, summary_line
    from sim.tooling import snapshot
    from sim.tooling.options import wrap_output

    snap = snapshot.load(args.snapshot)
    h = snap.header
    slice_insns = args.slice or h["extra"].get("slice", 1_000_000)
    if not args.quiet:
        print(f"sim: resume {snap.path} image={h['image']['path']} at t={h['t_ns']}ns after "
              f"{h['retired']} instructions slice={slice_insns}", file=sys.stderr)
    with ExitStack() as stack:
        tracer = _tracer(args, stack)
        guest = snapshot.resume(snap, tracer=tracer, on_console=_echo_console,
                                share_memory=not args.copy_memory)
        stack.callback(guest.close)
        env = simpy.Environment(initial_time=h["t_ns"])
        run = wrap_output(args, guest, lambda: run_alone(guest, slice_insns, env=env))
        result = run()
        sys.stdout.flush()
        if not args.quiet:
            print(summary_line(result, guest), file=sys.stderr)
        return result.stopped.status


def replay_command(args: argparse.Namespace) -> int:
    from sim.bootcmd import boot_command
    from sim.bootcmd import register as register_boot
    from sim.tooling import replay

    doc = replay.load(args.record)
    with replay.temp_dir() as work:
        image = replay.image_for(doc, work)
        parser = argparse.ArgumentParser(prog="sim")
        register_boot(parser.add_subparsers(dest="command"))
        boot_args, extra = parser.parse_known_args(["boot", image, *doc["boot"]])
        boot_args.passthrough = list(doc["guest_args"])
        boot_args.extra = extra
        for key in ("trace", "trace_format", "trace_out", "quiet", "timeline", "gdb", "pcap"):
            setattr(boot_args, key, getattr(args, key))
        boot_args.replay = doc
        return boot_command(boot_args)
