"""The ``sim build`` subcommand: compile C sources with the guest SDK.

    sim build app.c [more.c ...] -o app.elf [--target pico] [--abi-module FILE]

``--abi-module`` names a Python file defining ``ABI = <sim.libos.abi.Abi>``:
the image is built against that ABI's generated header instead of the
target's own (a researcher's variant ABI).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.libos.abi import Abi, AbiError
from sim.sdk.build import TARGETS, BuildError, build_app


def load_abi(path: str | Path) -> Abi:
    """The ``ABI`` defined by the Python file at path; BuildError otherwise."""
    from sim.libos.abi_module import load_abi_module

    try:
        return load_abi_module(path).abi
    except AbiError as e:
        raise BuildError(str(e)) from e


def _cmd_build(args: argparse.Namespace) -> int:
    try:
        abi = load_abi(args.abi_module) if args.abi_module else None
        out = build_app(args.sources, args.output, args.target, abi=abi,
                        cflags=tuple(args.cflag or ()), workdir=args.workdir)
    except BuildError as e:
        print(f"sim build: {e}", file=sys.stderr)
        return 1
    print(f"built {out} ({out.stat().st_size} bytes, target {args.target})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build", help="compile C sources with the guest SDK into an image",
        description="Compile C sources with the guest SDK (libc, start-up code, "
                    "generated ABI header) into a bootable ELF image.")
    p.add_argument("sources", nargs="+", type=Path, metavar="SOURCE.c",
                   help="C (or assembly) sources of the app; one defines main()")
    p.add_argument("-o", "--output", type=Path, required=True, help="image to write")
    p.add_argument("--target", choices=sorted(TARGETS), default="pico",
                   help="guest target (default: pico)")
    p.add_argument("--abi-module", metavar="FILE",
                   help="Python file defining ABI = <Abi> to build against instead "
                        "of the target's own ABI")
    p.add_argument("--cflag", action="append", metavar="FLAG",
                   help="extra compiler flag (repeatable), e.g. --cflag=-DDEBUG")
    p.add_argument("--workdir", type=Path,
                   help="keep the build directory (generated header) here")
    p.set_defaults(func=_cmd_build)
