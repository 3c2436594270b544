"""Solo5 images from the SDK: the app's declared devices become its manifest.

``build_app(..., devices=["block:storage", "net:service0"])`` builds for the
hvt or spt target like sim.sdk.build.build_app, with a manifest note listing
those devices (the target's notes.S includes ``solo5_manifest.inc`` when the
build puts one on the include path, and declares no devices otherwise).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sim.libos.solo5 import manifest_from_specs
from sim.notes import NOTE_MANIFEST, SOLO5_OWNER, build_note
from sim.sdk.build import build_app as sdk_build


def manifest_note_asm(specs: list[str] | tuple[str, ...]) -> str:
    """Assembler lines holding the manifest note (for the SDK's notes.S)."""
    note = build_note(SOLO5_OWNER, NOTE_MANIFEST, manifest_from_specs(specs).to_bytes())
    lines = [".byte " + ",".join(str(b) for b in note[i:i + 16]) for i in range(0, len(note), 16)]
    return "\n".join(lines) + "\n"


def build_app(sources: list[Any], output: Any, target: str = "hvt", *,
              devices: list[str] | tuple[str, ...] = (), cflags: tuple[str, ...] = (),
              **kwargs: Any) -> Any:
    """sim.sdk.build.build_app for a Solo5 target, with a manifest of ``devices``."""
    with tempfile.TemporaryDirectory(prefix="picosim-mft-") as tmp:
        extra: tuple[str, ...] = ()
        if devices:
            Path(tmp, "solo5_manifest.inc").write_text(manifest_note_asm(devices))
            extra = ("-I", tmp)
        return sdk_build(sources, output, target, cflags=(*extra, *cflags), **kwargs)
