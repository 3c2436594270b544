"""Helpers for the pico tests: build SDK apps with a manifest, run them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sim.boot import run_alone
from sim.guest import Guest
from sim.image import Image
from sim.libos.personality import BootConfig
from sim.trace import ListSink, Tracer

EXAMPLES = Path(__file__).resolve().parent.parent / "sim" / "examples"
# Until the SDK's pico target says so itself: the canary lives in a global.
CFLAGS = ("-mstack-protector-guard=global",)

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


def build(tmp: Path, source: str | Path, name: str, policy: str | None = None,
          cflags: tuple[str, ...] = (), **kw) -> Path:
    """Build C text (str) or a source file (Path) into tmp/name.elf, with a side policy."""
    from sim.sdk.build import build_app

    if isinstance(source, Path):
        src = source
    else:
        src = tmp / f"{name}.c"
        src.write_text(source)
    out = build_app([src], tmp / f"{name}.elf", cflags=(*CFLAGS, *cflags), **kw)
    if policy is not None:
        (tmp / f"{name}.policy.toml").write_text(policy)
    return out


def run(image: Path, *args: str, options: dict | None = None, slice_insns: int = 1_000_000,
        kinds=("call",)):
    out = bytearray()
    sink = ListSink()
    tracer = Tracer(kinds, [sink])
    config = BootConfig(args=(Path(image).stem, *args), options=dict(options or {}))
    guest = Guest(Image.load(image), config, tracer=tracer, on_console=out.extend)
    try:
        result = run_alone(guest, slice_insns=slice_insns)
    finally:
        guest.close()
    return result, bytes(out), sink, guest
