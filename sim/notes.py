"""Formats of the ELF note payloads picosim understands (no ELF parsing here).

Two owners matter: ``Solo5`` (the ABI note and the device manifest, laid out
exactly as Solo5 v0.12 lays them out: the Solo5 hvt spec, section 1)
and ``Pico`` (our own manifest: UTF-8 TOML text). ``sim.image`` finds the
notes in an image and hands their descriptors to the parsers below; a parser
raises ``NoteError`` with one sentence, which the image layer turns into an
``ImageError``.

All integers are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

SOLO5_OWNER = "Solo5"
PICO_OWNER = "Pico"

NOTE_ABI = 0x31494241  # "ABI1"
NOTE_MANIFEST = 0x3154464D  # "MFT1"
PICO_NOTE_MANIFEST = 0x3146_4D50  # "PMF1"

SOLO5_TARGETS = {1: "hvt", 2: "spt", 3: "virtio", 4: "muen", 5: "genode", 6: "xen"}
SOLO5_ABI_VERSION = 2

DEVICE_BLOCK = 1
DEVICE_NET = 2
RESERVED_FIRST = 1 << 30
DEVICE_TYPE_NAMES = {DEVICE_BLOCK: "BLOCK_BASIC", DEVICE_NET: "NET_BASIC",
                     RESERVED_FIRST: "RESERVED_FIRST"}

MANIFEST_VERSION = 1
MANIFEST_MAX_ENTRIES = 64
MANIFEST_PAD = 4  # the descriptor starts with 4 bytes so that the manifest is 8-aligned
MANIFEST_HEADER = 8  # u32 version, u32 entries
ENTRY_SIZE = 104
NAME_SIZE = 68  # name[68], byte 67 always NUL

_ABI = struct.Struct("<4I")
_MFT_HEADER = struct.Struct("<II")
# name[68], u32 type, 16-byte union, u64 hostfd, u8 attached, 7 bytes padding
_ENTRY = struct.Struct("<68sI16sQB7x")
_BLOCK = struct.Struct("<QH6x")  # capacity, block_size
_NET = struct.Struct("<6sH8x")  # mac, mtu
assert _ENTRY.size == ENTRY_SIZE and _BLOCK.size == _NET.size == 16

_NO_MAC = b"\0" * 6


class NoteError(ValueError):
    """A note descriptor is malformed; the message is one sentence."""


def _align4(n: int) -> int:
    return (n + 3) & ~3


def build_note(owner: str, type: int, desc: bytes) -> bytes:
    """ELF note bytes (Elf64_Nhdr, name and descriptor each padded to 4 bytes)."""
    name = owner.encode() + b"\0"
    return (struct.pack("<III", len(name), len(desc), type)
            + name.ljust(_align4(len(name)), b"\0")
            + bytes(desc).ljust(_align4(len(desc)), b"\0"))


def solo5_abi_desc(target: int, version: int = SOLO5_ABI_VERSION) -> bytes:
    """The 16-byte descriptor of a Solo5 ABI note."""
    return _ABI.pack(target, version, 0, 0)


@dataclass(frozen=True)
class Solo5Abi:
    target: int
    version: int

    @property
    def target_name(self) -> str:
        return SOLO5_TARGETS.get(self.target, f"unknown-{self.target}")

    @classmethod
    def parse(cls, desc: bytes) -> Solo5Abi:
        if len(desc) != _ABI.size:
            raise NoteError(f"Solo5 ABI note descriptor is {len(desc)} bytes, not {_ABI.size}")
        target, version, _, _ = _ABI.unpack(desc)
        if target not in SOLO5_TARGETS:
            raise NoteError(f"Solo5 ABI note names unknown target {target}")
        if version != SOLO5_ABI_VERSION:
            raise NoteError(f"Solo5 ABI version {version} is not supported "
                            f"(picosim implements version {SOLO5_ABI_VERSION})")
        return cls(target, version)


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    type: int
    capacity: int = 0
    block_size: int = 0
    mac: bytes = _NO_MAC
    mtu: int = 0
    hostfd: int = 0
    attached: bool = False

    @property
    def type_name(self) -> str:
        return DEVICE_TYPE_NAMES.get(self.type, f"UNKNOWN_{self.type}")

    def to_bytes(self) -> bytes:
        """The 104-byte entry; NoteError if a field does not fit its slot."""
        name = self.name.encode()
        if len(name) >= NAME_SIZE or b"\0" in name:
            raise NoteError(f"device name {self.name!r} does not fit the manifest's "
                            f"{NAME_SIZE - 1}-byte NUL-free name field")
        try:
            if self.type == DEVICE_NET:
                if self.capacity or self.block_size:
                    raise NoteError(f"net device {self.name!r} has block fields set")
                if len(self.mac) != 6:
                    raise NoteError(f"net device {self.name!r} has a {len(self.mac)}-byte MAC")
                union = _NET.pack(bytes(self.mac), self.mtu)
            else:
                if self.mac != _NO_MAC or self.mtu:
                    raise NoteError(f"{self.type_name} entry {self.name!r} has net fields set")
                union = _BLOCK.pack(self.capacity, self.block_size)
            return _ENTRY.pack(name, self.type, union, self.hostfd, int(bool(self.attached)))
        except struct.error as e:
            raise NoteError(f"manifest entry {self.name!r} has a field out of range ({e})") from e


_RESERVED_ENTRY = ManifestEntry("", RESERVED_FIRST)
_FILLABLE = frozenset({"attached", "capacity", "block_size", "mac", "mtu", "hostfd"})


@dataclass(frozen=True)
class Solo5Manifest:
    version: int
    entries: tuple[ManifestEntry, ...]

    @classmethod
    def of(cls, *devices: ManifestEntry) -> Solo5Manifest:
        """A version-1 manifest: the reserved entry 0 followed by ``devices``."""
        return cls(MANIFEST_VERSION, (_RESERVED_ENTRY, *devices))

    @classmethod
    def parse(cls, desc: bytes, *, allow_attached: bool = False) -> Solo5Manifest:
        """Parse a manifest note descriptor (4 pad bytes, header, entries).

        ``allow_attached`` accepts entries already marked attached: a copy the
        monitor filled in, as opposed to one read from an image file.
        """
        desc = bytes(desc)
        body = len(desc) - MANIFEST_PAD
        if body < MANIFEST_HEADER:
            raise NoteError(f"Solo5 manifest descriptor is {len(desc)} bytes, too short "
                            f"for its {MANIFEST_PAD + MANIFEST_HEADER}-byte header")
        version, count = _MFT_HEADER.unpack_from(desc, MANIFEST_PAD)
        if version != MANIFEST_VERSION:
            raise NoteError(f"Solo5 manifest version {version} is not supported "
                            f"(picosim reads version {MANIFEST_VERSION})")
        if not 1 <= count <= MANIFEST_MAX_ENTRIES:
            raise NoteError(f"Solo5 manifest has {count} entries, outside 1..{MANIFEST_MAX_ENTRIES}")
        expected = MANIFEST_HEADER + ENTRY_SIZE * count
        if body != expected:
            raise NoteError(f"Solo5 manifest with {count} entries must be {expected} bytes "
                            f"after its padding, not {body}")
        entries: list[ManifestEntry] = []
        seen: set[str] = set()
        base = MANIFEST_PAD + MANIFEST_HEADER
        for i in range(count):
            raw_name, type_, union, hostfd, attached = _ENTRY.unpack_from(desc, base + i * ENTRY_SIZE)
            if raw_name[-1] != 0:
                raise NoteError(f"Solo5 manifest entry {i} has a name that is not NUL-terminated")
            try:
                name = raw_name.split(b"\0", 1)[0].decode("utf-8")
            except UnicodeDecodeError:
                raise NoteError(f"Solo5 manifest entry {i} has a name that is not valid UTF-8") \
                    from None
            if attached not in (0, 1) or (attached and not allow_attached):
                raise NoteError(f"Solo5 manifest entry {i} is marked attached in the file")
            if i == 0:
                if type_ != RESERVED_FIRST or name:
                    raise NoteError("Solo5 manifest entry 0 is not the reserved, unnamed entry")
            else:
                if type_ not in (DEVICE_BLOCK, DEVICE_NET):
                    raise NoteError(f"Solo5 manifest entry {i} has unknown device type {type_}")
                if not name:
                    raise NoteError(f"Solo5 manifest entry {i} has an empty name")
                if name in seen:
                    raise NoteError(f"Solo5 manifest names device {name!r} twice")
                seen.add(name)
            if type_ == DEVICE_NET:
                mac, mtu = _NET.unpack(union)
                entry = ManifestEntry(name, type_, mac=mac, mtu=mtu, hostfd=hostfd,
                                      attached=bool(attached))
            else:
                capacity, block_size = _BLOCK.unpack(union)
                entry = ManifestEntry(name, type_, capacity=capacity, block_size=block_size,
                                      hostfd=hostfd, attached=bool(attached))
            entries.append(entry)
        return cls(version, tuple(entries))

    def to_bytes(self) -> bytes:
        """The descriptor bytes; ``parse(m.to_bytes()) == m`` (pass
        ``allow_attached=True`` when entries are attached)."""
        if not 1 <= len(self.entries) <= MANIFEST_MAX_ENTRIES:
            raise NoteError(f"Solo5 manifest has {len(self.entries)} entries, "
                            f"outside 1..{MANIFEST_MAX_ENTRIES}")
        try:
            header = _MFT_HEADER.pack(self.version, len(self.entries))
        except struct.error as e:
            raise NoteError(f"Solo5 manifest version {self.version} is out of range") from e
        return (b"\0" * MANIFEST_PAD + header
                + b"".join(entry.to_bytes() for entry in self.entries))

    def devices(self) -> tuple[ManifestEntry, ...]:
        return self.entries[1:]

    def index_of(self, name: str) -> int:
        """Manifest index of the device called ``name`` (first device is 1)."""
        for i, entry in enumerate(self.entries[1:], start=1):
            if entry.name == name:
                return i
        raise KeyError(name)

    def filled(self, index: int, **changes) -> Solo5Manifest:
        """A copy with device ``index`` updated (attached, capacity, block_size,
        mac, mtu, hostfd): what the monitor writes back into guest memory."""
        if not 1 <= index < len(self.entries):
            raise IndexError(f"manifest has no device at index {index}")
        unknown = set(changes) - _FILLABLE
        if unknown:
            raise TypeError(f"cannot fill manifest field(s) {', '.join(sorted(unknown))}")
        entries = list(self.entries)
        entries[index] = replace(entries[index], **changes)
        return replace(self, entries=tuple(entries))


def pico_manifest_text(desc: bytes) -> str:
    """The TOML text of a Pico manifest note (trailing NUL padding stripped)."""
    text = bytes(desc).rstrip(b"\0")
    if b"\0" in text:
        raise NoteError("Pico manifest note contains a NUL byte inside its text")
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("Pico manifest note is not valid UTF-8") from None
