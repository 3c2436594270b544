"""Build guest images with the machine's gcc: libc + target start-up + the app.

A target is one row of ``TARGETS``, declared as data: its sources (start-up
code and backend), its linker script, extra flags, and the ABI whose C header
is generated into the build directory (``<abi.name>_abi.h``; never committed).
The libc is the same for every target: it only calls the backend interface of
``include/sdk_backend.h``.

Builds are reproducible: the same sources and gcc give the same bytes,
whatever the build directory (paths in the debug info are remapped).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sim.libos.abi import Abi
from sim.libos.abi_c import c_header

SDK_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = SDK_DIR / "include"
LIBC_SOURCES = ("libc/string.c", "libc/printf.c", "libc/malloc.c", "libc/stdlib.c",
                "libc/start.c")

CFLAGS = (
    "-std=gnu11", "-ffreestanding", "-nostdlib", "-static", "-no-pie", "-fno-pic",
    "-mno-red-zone", "-O2", "-g", "-Wall",
    # Builtins stay on (gcc may inline memcpy and friends, and calls ours
    # otherwise), but it must not turn the libc's own loops into calls to them.
    "-fno-tree-loop-distribute-patterns",
    "-fstack-protector-strong", "-mstack-protector-guard=global",  # no TLS: use __stack_chk_guard
    "-fno-asynchronous-unwind-tables", "-fcf-protection=none",
)
LDFLAGS = (
    "-Wl,--build-id=none", "-Wl,-z,noexecstack", "-Wl,-z,max-page-size=0x1000",
    "-Wl,-z,norelro", "-Wl,--no-dynamic-linker",
)
LIBS = ("-lgcc",)  # gcc's helpers (e.g. 128-bit division), static


class BuildError(Exception):
    """A build failed; the message says why (gcc's diagnostics included)."""


@dataclass(frozen=True)
class Target:
    name: str
    sources: tuple[str, ...]       # start-up and backend, relative to sim/sdk
    linker_script: str             # relative to sim/sdk
    abi: str | None = None         # "module:attribute" of the default Abi, or None
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    doc: str = ""

    def default_abi(self) -> Abi | None:
        if self.abi is None:
            return None
        module, _, attr = self.abi.partition(":")
        return getattr(importlib.import_module(module), attr)


TARGETS: dict[str, Target] = {
    "pico": Target(
        "pico",
        sources=("targets/pico/crt0.S", "targets/pico/backend.c"),
        linker_script="targets/pico/link.ld",
        abi="sim.libos.pico_abi:PICO_ABI",
        doc="picosim's own picoprocess ABI (syscall instruction)",
    ),
    # Solo5: the manifest note comes from sim.sdk.solo5.build_app(devices=[...]).
    **{name: Target(
        name,
        sources=(f"targets/{name}/crt0.S", f"targets/{name}/backend.c",
                 "targets/solo5/mft.c", "targets/solo5/common.c", "targets/solo5/notes.S"),
        linker_script="targets/solo5/link.ld",
        cflags=(f"-DSOLO5_TARGET={nr}", "-mstack-protector-guard=global",
                "-I", str(SDK_DIR / "targets/solo5")),
        doc=f"Solo5 {name} ({how})",
    ) for name, nr, how in (("hvt", 1, "a tiny VM: hypercalls via out"),
                            ("spt", 2, "a seccomp-confined process: Linux syscalls"))},
}


def header_name(abi: Abi) -> str:
    return f"{abi.name.replace('-', '_')}_abi.h"


def write_abi_header(abi: Abi, include_dir: Path) -> Path:
    """Generate ``<abi.name>_abi.h`` into include_dir; returns its path."""
    include_dir.mkdir(parents=True, exist_ok=True)
    path = include_dir / header_name(abi)
    path.write_text(c_header(abi))
    return path


def gcc_version(gcc: str = "gcc") -> str:
    """First line of ``gcc --version``; BuildError without gcc."""
    exe = shutil.which(gcc)
    if exe is None:
        raise BuildError(f"cannot build guest images: {gcc} is not installed")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def build_app(sources: Sequence[Path | str], output: Path | str, target: str = "pico", *,
              abi: Abi | None = None, cflags: Sequence[str] = (),
              workdir: Path | str | None = None, gcc: str = "gcc") -> Path:
    """Compile and link ``sources`` with the SDK into the image ``output``.

    ``abi`` replaces the target's default ABI (a researcher's variant; its
    header is what the backend includes). ``workdir`` keeps the build
    directory (generated header) for inspection; otherwise a temporary one is
    used. Raises BuildError with gcc's diagnostics on failure.
    """
    if target not in TARGETS:
        raise BuildError(f"unknown target {target!r} (known: {', '.join(sorted(TARGETS))})")
    tgt = TARGETS[target]
    srcs = [Path(s).resolve() for s in sources]
    if not srcs:
        raise BuildError("nothing to build: no source files given")
    for s in srcs:
        if not s.is_file():
            raise BuildError(f"source file {s} does not exist")
    exe = shutil.which(gcc)
    if exe is None:
        raise BuildError(f"cannot build guest images: {gcc} is not installed")
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="picosim-build-") as tmp:
        build_dir = Path(workdir).resolve() if workdir is not None else Path(tmp)
        build_dir.mkdir(parents=True, exist_ok=True)
        include = build_dir / "include"
        chosen = abi if abi is not None else tgt.default_abi()
        if chosen is not None:
            write_abi_header(chosen, include)
        # Debug info names paths; remap them so that the bytes do not depend
        # on where the SDK, the app or the build directory live. gcc applies
        # the last matching map, so the most specific (longest) path goes last.
        maps = {build_dir: "/picosim/build", SDK_DIR: "/picosim/sdk"}
        for parent in {s.parent for s in srcs}:
            maps.setdefault(parent, "/picosim/app")
        remap = [f"-ffile-prefix-map={path}={to}"
                 for path, to in sorted(maps.items(), key=lambda m: len(str(m[0])))]
        cmd = [exe, *CFLAGS, *tgt.cflags, *cflags, *remap,
               f"-frandom-seed={output.stem}",
               "-I", str(INCLUDE_DIR), "-I", str(include),
               *LDFLAGS, *tgt.ldflags, "-T", str(SDK_DIR / tgt.linker_script),
               *(str(SDK_DIR / s) for s in tgt.sources),
               *(str(SDK_DIR / s) for s in LIBC_SOURCES),
               *(str(s) for s in srcs),
               *LIBS, "-o", str(output)]
        proc = subprocess.run(cmd, cwd=build_dir, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            output.unlink(missing_ok=True)
            names = ", ".join(s.name for s in srcs)
            raise BuildError(f"gcc failed to build {output.name} from {names} "
                             f"for target {target}:\n{proc.stderr.strip()}")
    return output
