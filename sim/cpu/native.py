"""The vCPU's native hooks: one small shared library, built from C sources
beside this file with the machine's gcc (``make native``).

* ``blockcount.c``: exact instruction accounting (sim/cpu/blockcount.py);
* ``callgate.c``: clock calls answered inside the emulator, and the plug
  for a personality's native port server (sim/cpu/callgate.py);
* ``sim/libos/hvtgate.c``: hvt's port server, the network hypercalls
  answered inside the emulator (sim/libos/hvtgate.py). It plugs into the
  gate through ``callgate.h`` only.

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
SOURCES = (_HERE / "blockcount.c", _HERE / "callgate.c", _HERE.parent / "libos" / "hvtgate.c")
HEADERS = (_HERE / "callgate.h",)
_EXT = sysconfig.get_config_var("SHLIB_SUFFIX") or ".so"
LIBRARY = _HERE / f"_native{_EXT}"

_lib: ctypes.CDLL | None = None


def build(force: bool = False) -> Path:
    """Compile the sources into sim/cpu/_native.<so>; return its path.

    Raises FileNotFoundError without gcc and CalledProcessError on a
    compile error.
    """
    newest = max(src.stat().st_mtime for src in (*SOURCES, *HEADERS))
    if not force and LIBRARY.exists() and LIBRARY.stat().st_mtime >= newest:
        return LIBRARY
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FileNotFoundError("gcc not found: cannot build the vCPU's native hooks")
    include = Path(unicorn.__file__).resolve().parent / "include"
    tmp = LIBRARY.with_name(f"{LIBRARY.stem}.{os.getpid()}.tmp{_EXT}")
    cmd = [gcc, "-O2", "-shared", "-fPIC", "-Wall", "-I", str(include), "-I", str(_HERE),
           *map(str, SOURCES), "-o", str(tmp)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    os.replace(tmp, LIBRARY)  # atomic: a concurrent loader never sees half a file
    return LIBRARY


def _stale() -> bool:
    """The library is older than a source beside it (say after a pull): its
    functions may not be the ones the Python side calls."""
    try:
        built = LIBRARY.stat().st_mtime
        return any(src.stat().st_mtime > built for src in (*SOURCES, *HEADERS))
    except FileNotFoundError:  # an install without the sources
        return False


def load() -> ctypes.CDLL | None:
    """The library, loaded once; None when it has not been built. A stale
    one is rebuilt first, or not used (the Python hooks serve) when that
    cannot be done here."""
    global _lib
    if _lib is None and LIBRARY.exists():
        if _stale():
            try:
                build()
            except (OSError, subprocess.CalledProcessError):
                return None
        _lib = ctypes.CDLL(str(LIBRARY))
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
