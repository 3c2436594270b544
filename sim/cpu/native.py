"""The vCPU's native hooks: one small shared library, built from C sources
beside this file with the machine's gcc (``make native``).

* ``blockcount.c``: exact instruction accounting (sim/cpu/blockcount.py);
* ``callgate.c``: clock calls answered inside the emulator, and the plug
  for a personality's native port server (sim/cpu/callgate.py).

Layers above may build their own native code with :func:`build_library`
and :func:`load_library` (hvt's port server does: sim/libos/hvtgate.py);
they reach the gate through ``callgate.h`` and function pointers only.

All are optional: without the library the vCPU uses Python hooks that give
the same results, more slowly. The library needs only the unicorn headers
that ship in the wheel: libunicorn's functions are handed to it as pointers
at run time (see the top of blockcount.c), so nothing is linked against the
wheel's libunicorn.so.2.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import unicorn

_HERE = Path(__file__).resolve().parent
SOURCES = (_HERE / "blockcount.c", _HERE / "callgate.c")
HEADERS = (_HERE / "callgate.h",)
INCLUDE = _HERE  # where callgate.h is, for native code above this layer
EXT = sysconfig.get_config_var("SHLIB_SUFFIX") or ".so"
LIBRARY = _HERE / f"_native{EXT}"

_lib: ctypes.CDLL | None = None


def build(force: bool = False) -> Path:
    """Compile the sources into sim/cpu/_native.<so>; return its path.

    Raises FileNotFoundError without gcc and CalledProcessError on a
    compile error.
    """
    return build_library(SOURCES, HEADERS, LIBRARY, force)


def build_library(sources: tuple[Path, ...], headers: tuple[Path, ...], library: Path,
                  force: bool = False) -> Path:
    """Compile ``sources`` into the shared library ``library`` unless it is
    newer than every source and header; return its path."""
    newest = max(src.stat().st_mtime for src in (*sources, *headers))
    if not force and library.exists() and library.stat().st_mtime >= newest:
        return library
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FileNotFoundError(f"gcc not found: cannot build {library.name}")
    include = Path(unicorn.__file__).resolve().parent / "include"
    tmp = library.with_name(f"{library.stem}.{os.getpid()}.tmp{EXT}")
    cmd = [gcc, "-O2", "-shared", "-fPIC", "-Wall", "-I", str(include), "-I", str(INCLUDE),
           *map(str, sources), "-o", str(tmp)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    os.replace(tmp, library)  # atomic: a concurrent loader never sees half a file
    return library


def _stale() -> bool:
    return stale(SOURCES, HEADERS, LIBRARY)


def stale(sources: tuple[Path, ...], headers: tuple[Path, ...], library: Path) -> bool:
    """The library is older than a source beside it (say after a pull): its
    functions may not be the ones the Python side calls."""
    try:
        built = library.stat().st_mtime
        return any(src.stat().st_mtime > built for src in (*sources, *headers))
    except FileNotFoundError:  # an install without the sources
        return False


def load_library(sources: tuple[Path, ...], headers: tuple[Path, ...],
                 library: Path) -> ctypes.CDLL | None:
    """``library`` loaded, rebuilt first when stale; None when it is not
    built, or stale and cannot be rebuilt here (the Python path serves)."""
    if not library.exists():
        return None
    if stale(sources, headers, library):
        try:
            build_library(sources, headers, library)
        except (OSError, subprocess.CalledProcessError):
            return None
    return ctypes.CDLL(str(library))


def load() -> ctypes.CDLL | None:
    """The library, loaded once; None when it has not been built. A stale
    one is rebuilt first, or not used (the Python hooks serve) when that
    cannot be done here."""
    global _lib
    if _lib is None:
        _lib = load_library(SOURCES, HEADERS, LIBRARY)
    return _lib


def bind(signatures: dict[str, tuple[Any, list[Any]]]) -> ctypes.CDLL | None:
    """The library with the given functions' (restype, argtypes) set; None
    when it has not been built."""
    lib = load()
    if lib is not None:
        for name, (restype, argtypes) in signatures.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
    return lib


def available() -> bool:
    """True if the native library is built and loads."""
    try:
        return load() is not None
    except OSError:
        return False


def uclib() -> ctypes.CDLL:
    """The binding's own handle on libunicorn: the instance that owns every Uc."""
    from unicorn.unicorn_py3 import unicorn as _binding

    return _binding.uclib


def address(fn: object) -> int:
    """A ctypes function's address, to hand to the library."""
    return ctypes.cast(fn, ctypes.c_void_p).value or 0


def _main(argv: list[str]) -> int:
    if argv[1:] == ["--build"]:
        print(f"built {build(force=True)}")
        return 0
    print("usage: python -m sim.cpu.native --build", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
