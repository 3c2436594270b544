"""``sim boot`` and ``sim inspect``: one image, from the command line.

The run echoes its parameters first and ends with one line saying when
(simulated time, instructions retired) and why it stopped. Guest console
output goes to stdout; the echo, the summary and (by default) the trace go
to stderr so that stdout holds exactly what the guest printed.

Features that add boot options (Solo5 devices, debugging, snapshots) declare
themselves in BOOT_OPTION_MODULES: each has ``add_boot_options(parser)`` and
``apply_boot_options(args, config, extra) -> extra`` (it consumes the extra
arguments it understands) and may provide ``wrap_run(args, guest, run)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sim.argtypes import non_negative_int, positive_int
from sim.devices.clock import TimeModel
from sim.image import Image
from sim.libos.personality import BootConfig

BOOT_OPTION_MODULES: tuple[str, ...] = (
    "sim.bootopts.solo5",
    "sim.tooling.options",
    "sim.bootopts.pico",
)


def _option_modules() -> list[Any]:
    modules = []
    for name in BOOT_OPTION_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):
                raise
    return modules


def _trace_kinds(text: str) -> frozenset[str]:
    from sim.trace import parse_kinds

    try:
        return parse_kinds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{err}; write --trace=KINDS, or put the image before a bare --trace") from None


def register(sub: argparse._SubParsersAction) -> None:
    from sim.trace import SELECTABLE_KINDS

    boot = sub.add_parser(
        "boot", help="boot an ELF image and run it to completion",
        description="Boot a unikernel or picoprocess image and exit with its status. "
                    "Arguments after -- go to the guest.")
    boot.add_argument("image", help="path to an ELF image, or a bundled example name (hello, ...)")
    boot.add_argument("guest_args", nargs="*", help="guest command line (after --)")
    boot.add_argument("--trace", nargs="?", const=frozenset(SELECTABLE_KINDS), type=_trace_kinds,
                      metavar="KINDS", help="trace insn,call,dev (default: all of them)")
    boot.add_argument("--trace-format", choices=("text", "jsonl"), default="text",
                      help="trace as aligned text or JSON Lines (default: text)")
    boot.add_argument("--trace-out", metavar="FILE", help="write the trace here instead of stderr")
    boot.add_argument("--max-insns", type=positive_int, default=2_000_000_000, metavar="N",
                      help="runaway guard: stop after N instructions (default: 2e9)")
    boot.add_argument("--mem", type=positive_int, default=None, metavar="MiB",
                      help="guest memory in MiB (default: pico 64, hvt 512, spt 2 ... per ABI)")
    boot.add_argument("--seed", type=non_negative_int, default=0, help="seed of the run (default 0)")
    boot.add_argument("--abi", choices=None, default=None, metavar="ABI",
                      help="force a personality (pico, hvt, spt) instead of the image's notes")
    boot.add_argument("--slice", type=positive_int, default=1_000_000, metavar="N",
                      help="instructions per scheduling slice (default 1,000,000)")
    boot.add_argument("--clock-mhz", type=positive_int, default=3000,
                      help="simulated core clock in MHz (default 3000)")
    boot.add_argument("-q", "--quiet", action="store_true",
                      help="no parameter echo or summary line")
    for module in _option_modules():
        module.add_boot_options(boot)
    boot.set_defaults(func=boot_command, accepts_extra=True)

    inspect = sub.add_parser("inspect", help="describe an image: segments, symbols, notes, ABI")
    inspect.add_argument("image", help="path or bundled example name")
    inspect.set_defaults(func=inspect_command)


def resolve_image(name: str) -> Path:
    path = Path(name)
    if path.exists() or "/" in name or name.endswith(".elf"):
        return path
    try:
        from sim.examples import resolve
    except ImportError:
        return path
    return resolve(name)


DEFAULT_MEM_MIB = {"pico": 64, "hvt": 512, "spt": 2}


def boot_config(args: argparse.Namespace, image: Image) -> BootConfig:
    abi = args.abi or image.abi
    mem_mib = args.mem if args.mem is not None else DEFAULT_MEM_MIB.get(abi, 64)
    return BootConfig(mem_bytes=mem_mib << 20, args=tuple([image.name, *args.guest_args,
                                                               *getattr(args, "passthrough", [])]),
                      seed=args.seed, time=TimeModel(clock_hz=args.clock_mhz * 1_000_000))


def boot_command(args: argparse.Namespace) -> int:
    from sim.boot import run_alone
    from sim.cli import UsageError
    from sim.guest import Guest
    from sim.trace import JsonlSink, TextSink, Tracer

    image = Image.load(resolve_image(args.image))
    config = boot_config(args, image)
    extra = list(args.extra)
    modules = _option_modules()
    for module in modules:
        extra = module.apply_boot_options(args, config, extra)
    if extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    abi = args.abi or image.abi
    if not args.quiet:
        guest_args = " ".join(config.args[1:])
        print(f"sim: boot {image.path} abi={abi} mem={config.mem_bytes >> 20}MiB "
              f"seed={config.seed} max-insns={args.max_insns} slice={args.slice} "
              f"clock={args.clock_mhz}MHz trace={','.join(sorted(args.trace or [])) or 'off'} "
              f"args={guest_args!r}", file=sys.stderr)
    with ExitStack() as stack:
        sinks = []
        if args.trace:
            stream = sys.stderr
            if args.trace_out:
                stream = stack.enter_context(open(args.trace_out, "w", encoding="utf-8"))
            sink_cls = JsonlSink if args.trace_format == "jsonl" else TextSink
            sinks.append(sink_cls(stream))
        tracer = Tracer(args.trace or (), sinks)
        stack.callback(tracer.close)
        guest = Guest(image, config, abi=abi, tracer=tracer, on_console=_echo_console,
                      max_insns=args.max_insns)
        stack.callback(guest.close)
        run = lambda: run_alone(guest, slice_insns=args.slice)  # noqa: E731
        for module in modules:
            wrap = getattr(module, "wrap_run", None)
            if wrap is not None:
                run = wrap(args, guest, run)
        result = run()
        sys.stdout.flush()
        if not args.quiet:
            print(summary_line(result, guest), file=sys.stderr)
        return result.stopped.status


def summary_line(result: Any, guest: Any) -> str:
    ms = result.t_ns / 1e6
    used = getattr(guest.personality, "surface_summary", lambda: "")()
    tail = f"; {used}" if used else ""
    native = guest.vcpu.gate.served_total + guest.personality.native_calls()
    calls = f"{result.crossings} host calls" + (f" ({native} answered in the vCPU)" if native else "")
    return (f"sim: stopped at t={result.t_ns}ns ({ms:.3f} ms simulated) after "
            f"{result.retired} instructions and {calls}: "
            f"{result.stopped.reason}, exit status {result.stopped.status}{tail}")


def _echo_console(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def inspect_command(args: argparse.Namespace) -> int:
    from sim.libos.registry import PERSONALITIES

    image = Image.load(resolve_image(args.image))
    out = sys.stdout
    print(f"image      {image.path}", file=out)
    print(f"entry      {image.entry:#x}" + _at(image, image.entry), file=out)
    print(f"kernel_end {image.kernel_end:#x}", file=out)
    print("segments", file=out)
    for seg in image.segments:
        perms = seg.perms
        print(f"  {seg.vaddr:#010x}-{seg.end:#010x} {perms} filesz={seg.filesz:#x} "
              f"memsz={seg.memsz:#x} align={seg.align:#x}", file=out)
    print(f"symbols    {len(image.symbols)}", file=out)
    print("notes", file=out)
    for note in image.notes:
        print(f"  {note.owner} type={note.type:#x} size={len(note.desc)}", file=out)
    if image.solo5_abi is not None:
        print(f"solo5 abi  target={image.solo5_abi.target_name} version={image.solo5_abi.version}",
              file=out)
    if image.solo5_manifest is not None:
        print("manifest", file=out)
        for entry in image.solo5_manifest.devices():
            print(f"  {entry.name} {entry.type_name}", file=out)
        if not image.solo5_manifest.devices():
            print("  (no devices)", file=out)
    if image.pico_manifest is not None:
        print("pico manifest", file=out)
        for line in image.pico_manifest.strip().splitlines():
            print(f"  {line}", file=out)
    runner = PERSONALITIES.get(image.abi)
    print(f"personality {image.abi}" + ("" if runner else " (not available)"), file=out)
    return 0


def _at(image: Image, addr: int) -> str:
    where = image.symbolize(addr)
    return f" ({where[0]}+{where[1]:#x})" if where else ""
