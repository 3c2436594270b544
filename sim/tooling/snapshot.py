"""Snapshots: a running guest saved to a file, and guests started from one.

File layout (little-endian)::

    0   8  magic  b"PICOSNAP"
    8   4  format version (FORMAT_VERSION)
    12  4  header length H
    16  H  header: UTF-8 JSON (image hash, boot config, simulated time,
           instructions retired, vCPU registers, console, devices,
           personality state)
    ... zero padding to a 4 KiB boundary (offset in the header: mem_offset)
    M   N  guest RAM, byte for byte (all-zero pages are left as holes)

The memory image is page-aligned so that a guest can be started from it
with ``mmap(MAP_PRIVATE)`` + Unicorn's ``mem_map_ptr``: many guests resumed
from one snapshot share its pages copy-on-write, and each pays only for the
pages it writes (see docs/debugging.md for measured RSS).

A snapshot is taken between two slices while the guest is runnable; the
resumed guest starts its next slice exactly where the saved one would
have, so it gives the same remaining trace.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.tooling import pstate
from sim.tooling.pstate import SnapshotError

MAGIC = b"PICOSNAP"
FORMAT_VERSION = 1
PAGE = 4096
_PREFIX = struct.Struct("<8sII")
MAX_HEADER = 64 << 20


def image_digest(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _config_state(config: Any) -> dict:
    options = {}
    from sim.libos.solo5 import Solo5Options

    for key, value in config.options.items():
        if isinstance(value, Solo5Options):  # device options: names, paths, sizes, MACs
            if value.block_devices:
                raise SnapshotError("in-memory block devices cannot be snapshotted")
            options[key] = {"__solo5__": {
                "blocks": value.blocks, "sector_sizes": value.sector_sizes,
                "nets": value.nets, "macs": {k: v.hex() for k, v in value.macs.items()}}}
            continue
        if type(value).__name__ == "SimHost":  # pico's host: parameters only when idle
            if value.listeners or value.pipes:
                raise SnapshotError("the pico host has open pipes or listeners: cannot "
                                    "snapshot it now")
            options[key] = {"__simhost__": [value.latency_ns, value.bandwidth, value.capacity]}
            continue
        try:
            json.dumps(value)
        except TypeError:
            raise SnapshotError(f"boot option {key!r} holds a {type(value).__name__}, which a "
                                "snapshot cannot record") from None
        options[key] = value
    t = config.time
    return {"mem_bytes": config.mem_bytes, "args": list(config.args), "seed": config.seed,
            "clock_hz": t.clock_hz, "cycles_per_insn_milli": t.cycles_per_insn_milli,
            "epoch_ns": t.epoch_ns, "options": options}


def boot_config(state: dict) -> Any:
    from sim.devices.clock import TimeModel
    from sim.libos.personality import BootConfig

    return BootConfig(mem_bytes=state["mem_bytes"], args=tuple(state["args"]), seed=state["seed"],
                      time=TimeModel(clock_hz=state["clock_hz"],
                                     cycles_per_insn_milli=state["cycles_per_insn_milli"],
                                     epoch_ns=state["epoch_ns"]),
                      options={k: _option(v) for k, v in state["options"].items()})


def _option(value: Any) -> Any:
    if isinstance(value, dict) and "__solo5__" in value:
        from sim.libos.solo5 import Solo5Options

        st = value["__solo5__"]
        return Solo5Options(blocks=dict(st["blocks"]), sector_sizes=dict(st["sector_sizes"]),
                            nets=dict(st["nets"]),
                            macs={k: bytes.fromhex(v) for k, v in st["macs"].items()})
    if isinstance(value, dict) and "__simhost__" in value:
        from sim.libos.pico_streams import SimHost

        return SimHost(*value["__simhost__"])
    return value


def save(guest: Any, path: str | os.PathLike, t_ns: int, extra: dict | None = None) -> dict:
    """Write ``guest`` (between slices, at simulated time t_ns) to ``path``."""
    if guest.stopped is not None:
        raise SnapshotError("the guest has already stopped")
    if getattr(guest, "_blocked", None) is not None:
        raise SnapshotError("the guest is waiting: snapshots are taken while it can run")
    devices = {}
    for name, dev in guest.services.devices.items():
        saver = getattr(dev, "save", None)
        if saver is None:
            raise SnapshotError(f"device {name!r} cannot save its state")
        devices[name] = saver()
    header = {
        "format": "picosim-snapshot",
        "image": {"path": str(Path(guest.image.path).resolve()),
                  "sha256": image_digest(guest.image.path)},
        "abi": guest.personality.name,
        "name": guest.name,
        "config": _config_state(guest.config),
        "max_insns": guest.max_insns,
        "t_ns": t_ns,
        "retired": guest.retired,
        "crossings": guest.crossings,
        "vcpu": guest.vcpu.save_state(),
        "console": guest.console.save(),
        "devices": devices,
        "personality": pstate.save(guest.personality),
        "extra": extra or {},
    }
    blob = json.dumps(header, sort_keys=True).encode()
    # Room for the "mem_offset" key itself, then round up to a page.
    mem_offset = -(-(_PREFIX.size + len(blob) + 64) // PAGE) * PAGE
    header["mem_offset"] = mem_offset
    blob = json.dumps(header, sort_keys=True).encode()
    size = guest.vcpu.mem.size
    tmp = Path(f"{path}.tmp{os.getpid()}")
    with open(tmp, "wb") as out:
        out.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(blob)))
        out.write(blob)
        zero = bytes(PAGE)
        chunk = 1 << 20
        for base in range(0, size, chunk):
            data = guest.vcpu.mem.read(base, min(chunk, size - base))
            for off in range(0, len(data), PAGE):
                page = data[off:off + PAGE]
                if page != zero:
                    out.seek(mem_offset + base + off)
                    out.write(page)
        out.truncate(mem_offset + size)
    os.replace(tmp, path)
    return header


@dataclass
class Snapshot:
    path: Path
    header: dict

    @property
    def mem_offset(self) -> int:
        return self.header["mem_offset"]

    @property
    def mem_bytes(self) -> int:
        return self.header["config"]["mem_bytes"]


def load(path: str | os.PathLike) -> Snapshot:
    """Read and check a snapshot's header; SnapshotError for anything wrong."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise SnapshotError(f"{p}: not a picosim snapshot (file too short)")
            magic, version, hlen = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise SnapshotError(f"{p}: not a picosim snapshot (bad magic)")
            if version != FORMAT_VERSION:
                raise SnapshotError(f"{p}: snapshot format version {version}, this picosim "
                                    f"reads version {FORMAT_VERSION}")
            if hlen > MAX_HEADER:
                raise SnapshotError(f"{p}: corrupt snapshot (header of {hlen} bytes)")
            blob = f.read(hlen)
            size = os.fstat(f.fileno()).st_size
    except OSError as err:
        raise SnapshotError(f"{p}: cannot read snapshot ({err.strerror})") from None
    if len(blob) < hlen:
        raise SnapshotError(f"{p}: truncated snapshot (header cut short)")
    try:
        header = json.loads(blob)
        if header.get("format") != "picosim-snapshot":
            raise ValueError
        need = header["mem_offset"] + header["config"]["mem_bytes"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SnapshotError(f"{p}: corrupt snapshot header") from None
    if size < need:
        raise SnapshotError(f"{p}: truncated snapshot ({size} of {need} bytes)")
    return Snapshot(p, header)


def resume(snap: Snapshot, *, tracer: Any = None, on_console: Any = None,
           name: str | None = None, share_memory: bool = True) -> Any:
    """A Guest continuing from ``snap``; its run starts at snap.header['t_ns'].

    With ``share_memory`` the guest's RAM is a MAP_PRIVATE mapping of the
    file (copy-on-write); otherwise it is copied into the guest's own RAM.
    """
    from sim.guest import Guest
    from sim.image import Image
    from sim.trace import NULL_TRACER

    h = snap.header
    image_path = Path(h["image"]["path"])
    try:
        digest = image_digest(image_path)
    except OSError:
        raise SnapshotError(f"{snap.path}: its image {image_path} is gone") from None
    if digest != h["image"]["sha256"]:
        raise SnapshotError(f"{snap.path}: its image {image_path} has changed since the snapshot")
    image = Image.load(image_path)
    guest = Guest(image, boot_config(h["config"]), name=name or h["name"], abi=h["abi"],
                  tracer=tracer or NULL_TRACER, on_console=on_console, max_insns=h["max_insns"])
    try:
        _load_memory(guest, snap, share_memory)
        guest.vcpu.restore_state(h["vcpu"])
        guest.console.restore(h["console"])
        for dev_name, dev_state in h["devices"].items():
            dev = guest.services.devices.get(dev_name)
            if dev is None:
                raise SnapshotError(f"{snap.path}: device {dev_name!r} does not exist on resume")
            dev.restore(dev_state)
        pstate.restore(guest.personality, h["personality"])
        guest.retired = h["retired"]
        guest.crossings = h["crossings"]
        guest.now_ns = h["t_ns"]
    except BaseException:
        guest.close()
        raise
    return guest


def _load_memory(guest: Any, snap: Snapshot, share: bool) -> None:
    size = snap.mem_bytes
    if guest.vcpu.mem.size != size:
        raise SnapshotError(f"{snap.path}: memory size mismatch")
    with open(snap.path, "rb") as f:
        if share:
            mm = mmap.mmap(f.fileno(), size, flags=mmap.MAP_PRIVATE,
                           prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=snap.mem_offset)
            import ctypes

            view = (ctypes.c_char * size).from_buffer(mm)
            guest.vcpu.map_memory(mm, ctypes.addressof(view), keep=view)
            return
        f.seek(snap.mem_offset)
        chunk = 1 << 20
        for base in range(0, size, chunk):
            guest.vcpu.mem.write(base, f.read(min(chunk, size - base)))
