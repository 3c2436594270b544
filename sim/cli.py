"""The ``sim`` command: a thin shell over subcommand modules.

Each feature module declares its subcommands with ``register(subparsers)``;
this file only lists the modules, parses, and turns the errors users can
cause into one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# One row per module that contributes subcommands.
COMMAND_MODULES = (
    "sim.bootcmd",          # boot, inspect
    "sim.libos.commands",   # abi list|header|doc
    "sim.sdk.commands",     # build
    "sim.experiments.commands",  # run, sweep, profile
    "sim.tooling.commands",      # resume, replay
)

USAGE_ERROR = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from sim.image import ImageError
    from sim.libos.abi import AbiError
    from sim.libos.personality import BootError

    errors: list[type[BaseException]] = [UsageError, ImageError, BootError, AbiError]
    for mod_name, cls_name in (("sim.tooling.errors", "ToolingError"),
                               ("sim.experiments.scenario", "ScenarioError"),
                               ("sim.sdk.build", "BuildError")):
        try:
            errors.append(getattr(importlib.import_module(mod_name), cls_name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sim",
        description="picosim: boot, trace and measure unikernels and picoprocesses.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:  # everything after -- belongs to the guest, untouched
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.passthrough = passthrough
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.func(args))
    except _user_errors() as err:
        print(f"sim: error: {err}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("sim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
