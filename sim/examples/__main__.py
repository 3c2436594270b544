"""python -m sim.examples [--rebuild]: list the bundled examples, or rebuild them."""

import argparse
import sys

from sim.examples import EXAMPLES, PREBUILT, rebuild, resolve
from sim.sdk.build import BuildError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.examples", description=__doc__)
    parser.add_argument("--rebuild", action="store_true",
                        help=f"rebuild every prebuilt image into {PREBUILT}")
    args = parser.parse_args(argv)
    if args.rebuild:
        try:
            built = rebuild()
        except BuildError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        for name, path in built.items():
            print(f"{name:12} {path} ({path.stat().st_size} bytes)")
        return 0
    for name, ex in EXAMPLES.items():
        state = "prebuilt" if resolve(name).exists() else "not built"
        print(f"{name:12} {ex.description} [{state}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
