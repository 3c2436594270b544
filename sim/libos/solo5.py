"""What the Solo5 hvt and spt personalities share: devices and the manifest.

A Solo5 image declares its devices in a manifest note; the monitor's command
line attaches each one (``--block:NAME=PATH``, ``--net:NAME=SPEC``). Here the
options are checked against the manifest with Solo5's messages, the devices
are opened, and the manifest copy the guest sees is filled in (attached,
capacity and block size, MAC and MTU, host fd). Both personalities then look
devices up by manifest index, which is also the guest's handle.

Also here: finding every port-I/O instruction of an image (for exact stops,
see docs/architecture.md on ``out`` stops). Building Solo5 images with a
manifest is the SDK's: sim.sdk.solo5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import capstone

from sim.image import Image
from sim.libos.personality import BootError
from sim.notes import (
    DEVICE_BLOCK,
    DEVICE_NET,
    DEVICE_TYPE_NAMES,
    ManifestEntry,
    NoteError,
    Solo5Manifest,
)

# Return codes of every Solo5 call (solo5_result_t).
OK, AGAIN, EINVAL, EUNSPEC = 0, 1, 2, 3

DEFAULT_MTU = 1500
ETHER_HEADER = 14
NET_BACKENDS = ("switch",)
OPTIONS_KEY = "solo5"
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass
class Solo5Options:
    """The monitor's device options, by device name (from the command line)."""

    blocks: dict[str, str] = field(default_factory=dict)        # name -> backing file
    sector_sizes: dict[str, int] = field(default_factory=dict)  # name -> block size
    nets: dict[str, str] = field(default_factory=dict)          # name -> backend spec
    macs: dict[str, bytes] = field(default_factory=dict)        # name -> 6-byte MAC
    block_devices: dict[str, Any] = field(default_factory=dict)  # name -> BlockDevice (tests)


def options_of(config: Any) -> Solo5Options:
    opts = config.options.get(OPTIONS_KEY)
    if opts is None:
        opts = Solo5Options()
        config.options[OPTIONS_KEY] = opts
    return opts


def parse_mac(name: str, text: str) -> bytes:
    if not _MAC.match(text):
        raise BootError(f"Malformed argument to --net-mac:{name}: '{text}' is not xx:xx:xx:xx:xx:xx")
    return bytes(int(part, 16) for part in text.split(":"))


def parse_sector_size(name: str, text: str) -> int:
    try:
        size = int(text, 10)
    except ValueError:
        size = -1
    if size < 512 or size & (size - 1):
        raise BootError(f"Malformed argument to --block-sector-size:{name}: '{text}' must be a "
                        "power of two of at least 512")
    return size


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


@dataclass
class NetPort:
    """A manifest net device; its NIC exists once the port is connected to a switch."""

    name: str
    index: int
    mac: bytes
    mtu: int
    spec: str
    nic: Any = None


@dataclass
class Attached:
    manifest: Solo5Manifest                     # the filled-in copy
    devices: dict[int, Any]                     # manifest index -> BlockDevice | NetPort

    def close(self) -> None:
        for dev in self.devices.values():
            close = getattr(dev, "close", None)
            if close is not None:
                close()


def check_target(image: Image, want: str) -> None:
    """The image's Solo5 ABI note must name this target (--abi can force another)."""
    abi = image.solo5_abi
    if abi is None:
        raise BootError(f"{image.name}: not a Solo5 image (no Solo5 ABI note); "
                        f"it cannot run on the solo5-{want} target")
    if abi.target_name != want:
        raise BootError(f"{image.name}: ABI target mismatch: image is for solo5-"
                        f"{abi.target_name}, not for the solo5-{want} target")
    if abi.version != 2:  # pragma: no cover - sim.notes refuses other versions already
        raise BootError(f"{image.name}: ABI version mismatch: {abi.version}, monitor is 2")


def check_memory(image: Image, mem: int, min_mem: int, max_mem: int, align: int = 1) -> int:
    """--mem within the target's range, and the image inside it once rounded
    down to the target's alignment; returns the rounded size."""
    if not min_mem <= mem <= max_mem:
        raise BootError(f"--mem={mem >> 20}: guest memory must be between "
                        f"{min_mem >> 20} and {max_mem >> 20} MiB")
    mem &= ~(align - 1)
    if image.kernel_end > mem or image.entry >= mem:
        raise BootError(f"{image.name}: image ends at {image.kernel_end:#x}, beyond guest "
                        f"memory ({mem:#x}); give more --mem")
    return mem


def attach(image: Image, config: Any, first_fd: int = 3) -> Attached:
    """Check the options against the manifest, open the devices, fill the copy.

    ``first_fd`` numbers the host fds (spt shows them to the guest in
    ``hostfd``); devices get consecutive fds in manifest order.
    """
    opts = options_of(config)
    manifest = image.solo5_manifest or Solo5Manifest.of()
    declared = {e.name: e for e in manifest.devices()}
    for kind, names in ((DEVICE_BLOCK, opts.blocks), (DEVICE_BLOCK, opts.sector_sizes),
                        (DEVICE_NET, opts.nets), (DEVICE_NET, opts.macs)):
        for name in names:
            entry = declared.get(name)
            if entry is None or entry.type != kind:
                raise BootError(f"Device '{name}' of type {DEVICE_TYPE_NAMES[kind]} "
                                "not declared in manifest.")
    for name, size in opts.sector_sizes.items():
        if name not in opts.blocks:
            raise BootError(f"--block-sector-size:{name} given but --block:{name} is not")
    for name, spec in opts.nets.items():
        if spec.split(":", 1)[0] not in NET_BACKENDS:
            raise BootError(f"--net:{name}={spec}: unknown network backend "
                            f"(picosim offers: {', '.join(NET_BACKENDS)})")
    devices: dict[int, Any] = {}
    opened: list[Any] = []
    rng_macs = _MacSource(config.seed)
    fd = first_fd
    try:
        for index, entry in enumerate(manifest.entries[1:], start=1):
            if entry.type == DEVICE_BLOCK:
                dev = _open_block(opts, entry)
                opened.append(dev)
                devices[index] = dev
                manifest = manifest.filled(index, attached=True, capacity=dev.capacity,
                                           block_size=dev.block_size, hostfd=fd)
            else:
                if entry.name not in opts.nets:
                    raise BootError(f"Device '{entry.name}' of type NET_BASIC declared but "
                                    "not attached.")
                mac = opts.macs.get(entry.name) or rng_macs.next()
                devices[index] = NetPort(entry.name, index, mac, DEFAULT_MTU, opts.nets[entry.name])
                manifest = manifest.filled(index, attached=True, mac=mac, mtu=DEFAULT_MTU,
                                           hostfd=fd)
            fd += 1
    except BaseException:
        for dev in opened:
            dev.close()
        raise
    return Attached(manifest, devices)


def _open_block(opts: Solo5Options, entry: ManifestEntry) -> Any:
    from sim.devices.block import BlockDevice, BlockError

    name = entry.name
    if name in opts.block_devices:
        return opts.block_devices[name]
    if name not in opts.blocks:
        raise BootError(f"Device '{name}' of type BLOCK_BASIC declared but not attached.")
    try:
        return BlockDevice.open(name, opts.blocks[name], opts.sector_sizes.get(name, 512))
    except BlockError as err:
        raise BootError(str(err)) from None


class _MacSource:
    """Locally administered unicast MACs, from the run's seed (reproducible)."""

    def __init__(self, seed: int):
        import random

        self.rng = random.Random(f"solo5-mac-{seed}")

    def next(self) -> bytes:
        raw = bytearray(self.rng.randbytes(6))
        raw[0] = (raw[0] | 0x02) & 0xFE
        return bytes(raw)


# -- exact stops after port I/O --------------------------------------------------
_PORT_IO_OPCODES = tuple(bytes([op]) for op in (0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF))


def port_io_exits(image: Image) -> dict[int, int]:
    """Address of every in/out instruction of the image's executable segments,
    mapped to the address of the instruction after it.

    A linear sweep with capstone; capstone stops at undecodable bytes, where
    the sweep skips a byte and goes on. An address that is not really an
    instruction start costs nothing: the guest never reaches it.
    """
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    exits: dict[int, int] = {}
    for seg in image.segments:
        if not seg.executable:
            continue
        code = seg.data
        base = seg.vaddr
        if not any(op in code for op in _PORT_IO_OPCODES):
            continue
        offset = 0
        while offset < len(code):
            end = offset
            for addr, size, mnem, _ops in cs.disasm_lite(code[offset:], base + offset):
                if mnem in ("out", "in"):
                    exits[addr] = addr + size
                end = addr - base + size
            offset = end if end > offset else offset + 1
    return exits


# -- the SDK's manifest note -----------------------------------------------------
def manifest_from_specs(specs: list[str] | tuple[str, ...]) -> Solo5Manifest:
    """``["block:storage", "net:service0"]`` -> a manifest declaring them."""
    entries = []
    for spec in specs:
        kind, _, name = spec.partition(":")
        types = {"block": DEVICE_BLOCK, "net": DEVICE_NET}
        if kind not in types or not name:
            raise ValueError(f"device {spec!r} is not block:NAME or net:NAME")
        entries.append(ManifestEntry(name, types[kind]))
    try:
        manifest = Solo5Manifest.of(*entries)
        Solo5Manifest.parse(manifest.to_bytes())  # names unique, fields fit
    except NoteError as err:
        raise ValueError(str(err)) from None
    return manifest
