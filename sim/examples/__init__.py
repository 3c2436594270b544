"""Bundled example guests: sources, and prebuilt images for machines without gcc.

``resolve("hello")`` names the prebuilt image of a bundled example; any other
argument is taken as a path. ``rebuild()`` (or ``python -m sim.examples
--rebuild``) rebuilds every prebuilt image from source; builds are
reproducible, so a rebuild with the same gcc changes no bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREBUILT = HERE / "prebuilt"
GCC_VERSION_FILE = "GCC_VERSION"  # in the prebuilt dir: which gcc built the images


@dataclass(frozen=True)
class Example:
    source: str      # file name in sim/examples
    target: str      # SDK target (sim.sdk.build.TARGETS)
    description: str

    @property
    def path(self) -> Path:
        return HERE / self.source


EXAMPLES: dict[str, Example] = {
    "hello": Example("hello.c", "pico", "prints a greeting, its command line and each argument"),
    "compute": Example("compute.c", "pico",
                       "FNV-1a checksum over a buffer: compute [KIB [ROUNDS]]"),
    "fault_null": Example("fault_null.c", "pico", "writes through a NULL pointer (page fault)"),
    "fault_div0": Example("fault_div0.c", "pico", "divides an integer by zero (#DE)"),
    "stack_smash": Example("stack_smash.c", "pico",
                           "overflows a stack buffer; the stack protector exits 134"),
    "sleep": Example("sleep.c", "pico", "sleeps 5 ms and prints the elapsed monotonic time"),
    "mt_compute": Example("mt_compute.c", "pico",
                          "threads hash slices of a buffer under a futex mutex: [THREADS [KIB]]"),
    "filecopy": Example("filecopy.c", "pico", "writes a file in its sandbox, copies and checks it"),
    "kv_server": Example("kv_server.c", "pico", "key-value server on chan:kv (run with --peer kv_client)"),
    "kv_client": Example("kv_client.c", "pico", "load generator for kv_server: [REQUESTS]"),
    "forbidden": Example("forbidden.c", "pico", "tries forbidden things and reports each denial"),
}


def prebuilt_path(name: str, out_dir: Path = PREBUILT) -> Path:
    return Path(out_dir) / f"{name}.elf"


def resolve(name_or_path: str | Path) -> Path:
    """The prebuilt image of a bundled example, or else the path as given."""
    if isinstance(name_or_path, str) and name_or_path in EXAMPLES:
        return prebuilt_path(name_or_path)
    return Path(name_or_path)


def build(name: str, output: Path, **kwargs) -> Path:
    """Build one bundled example from source (BuildError without gcc)."""
    from sim.sdk.build import build_app

    ex = EXAMPLES[name]
    return build_app([ex.path], output, ex.target, **kwargs)


def rebuild(out_dir: Path = PREBUILT) -> dict[str, Path]:
    """Rebuild every bundled example into out_dir; records the gcc used."""
    from sim.sdk.build import gcc_version

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    built = {name: build(name, prebuilt_path(name, out_dir)) for name in EXAMPLES}
    (out_dir / GCC_VERSION_FILE).write_text(gcc_version() + "\n")
    return built
