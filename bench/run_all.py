"""Run every benchmark in turn, each with its default (documented) arguments.

    make bench            # or: .venv/bin/python bench/run_all.py [NAME ...]

Each script prints its own table beside its baseline; docs/performance.md
records the figures and the machine they came from.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("accounting", "core", "pico", "hvt", "net", "host")


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark {unknown[0]!r} (choose from {', '.join(BENCHMARKS)})",
              file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        print(f"== bench_{name}.py", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / f"bench_{name}.py")]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
