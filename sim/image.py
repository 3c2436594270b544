"""ELF loading and validation: the bottom layer of picosim.

``Image.load(path)`` reads a static x86-64 ELF executable, checks it against
the rules a Solo5 tender applies (and a few more the vCPU layer relies on),
and names the ABI it was built for from its notes. Every rejection is an
``ImageError`` carrying one sentence; no other exception escapes, whatever the
bytes of the file.

How the parsing is split:

* The ELF header and the program header table are bounds-checked here with
  ``struct`` before pyelftools sees them, so that the messages are precise and
  no count read from the file is ever trusted: each loop runs over a table
  already known to lie inside the file.
* pyelftools then parses the ELF header, the bare program headers and the
  section headers. Symbol entries themselves are unpacked in bulk with
  ``struct`` (pyelftools' per-symbol objects are far too slow for the tens of
  thousands of symbols of a MirageOS image).
* Beyond Solo5's rules: empty PT_LOADs are dropped after validation, and two
  segments with different permissions may not share a 4 KiB page (the vCPU
  maps pages with one set of permissions each). Solo5 ABI + Pico manifest, two
  notes of the same kind, or a Solo5 manifest without an ABI note are refused.
  A Solo5 image without a manifest loads (``solo5_manifest`` is None): the
  monitor decides whether that is acceptable.
* Symbols are optional. A missing, truncated or garbled section table (or
  symbol table) just means an image without symbols, never a rejection, even
  when pyelftools itself raises on it.
* Notes: only the first note of each ``PT_NOTE`` segment is read, as Solo5
  does. Their payload formats live in ``sim.notes``.
"""

from __future__ import annotations

import bisect
import heapq
import io
import os
import stat
import struct
from dataclasses import dataclass
from itertools import pairwise

from elftools.common.utils import struct_parse
from elftools.elf.elffile import ELFFile

from sim.notes import (
    NOTE_ABI,
    NOTE_MANIFEST,
    PICO_NOTE_MANIFEST,
    PICO_OWNER,
    SOLO5_OWNER,
    NoteError,
    Solo5Abi,
    Solo5Manifest,
    pico_manifest_text,
)

PAGE = 0x1000
MIN_ADDR = 0x100000  # nothing loads below 1 MiB (Solo5's kernel start)
MAX_ADDR = 1 << 32  # no segment ends above 4 GiB
DEFAULT_MAX_BYTES = 256 << 20

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr
_NHDR = struct.Struct("<III")  # Elf64_Nhdr
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym

ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_NOTE = 1, 4
PN_XNUM = 0xFFFF
PF_X, PF_W, PF_R = 1, 2, 4
STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 1, 2, 3, 4
STB_LOCAL = 0
SHN_UNDEF = 0

_ABI_NAMES = {1: "hvt", 2: "spt"}


class ImageError(Exception):
    """The image cannot be run; the message is one sentence naming the problem."""


def _page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


@dataclass(frozen=True)
class Segment:
    """A PT_LOAD segment; ``index`` is its program header index."""

    index: int
    vaddr: int
    memsz: int
    filesz: int
    offset: int
    align: int
    readable: bool
    writable: bool
    executable: bool
    data: bytes  # the file bytes, len == filesz

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz

    @property
    def aligned_end(self) -> int:
        return _page_up(self.end)

    @property
    def perms(self) -> str:
        return (("r" if self.readable else "-") + ("w" if self.writable else "-")
                + ("x" if self.executable else "-"))

    def __repr__(self) -> str:
        return (f"Segment({self.index}, 0x{self.vaddr:x}-0x{self.end:x}, {self.perms}, "
                f"filesz=0x{self.filesz:x})")


@dataclass(frozen=True)
class Symbol:
    name: str
    addr: int
    size: int
    kind: str  # 'func' | 'object' | 'other'


@dataclass(frozen=True)
class Note:
    """The first note of a PT_NOTE segment (``segment`` is its program header index)."""

    owner: str
    type: int
    desc: bytes
    segment: int


class Image:
    """A validated unikernel image. Build with ``Image.load`` or ``Image.from_bytes``."""

    path: str
    name: str
    entry: int
    segments: tuple[Segment, ...]
    symbols: tuple[Symbol, ...]
    notes: tuple[Note, ...]
    kernel_end: int
    abi: str
    solo5_abi: Solo5Abi | None
    solo5_manifest: Solo5Manifest | None
    pico_manifest: str | None
    code_ranges: tuple[tuple[int, int], ...]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Image:
        path = os.fspath(path)
        try:
            # stat first: opening a FIFO would block until someone writes to it
            mode = os.stat(path).st_mode
            if stat.S_ISDIR(mode):
                raise ImageError(f"image {path} is a directory, not an ELF file")
            if not stat.S_ISREG(mode):
                raise ImageError(f"image {path} is not a regular file")
            with open(path, "rb") as f:
                if not _is_regular(f):
                    raise ImageError(f"image {path} is not a regular file")
                data = f.read(max_bytes + 1)
        except ImageError:
            raise
        except OSError as e:
            raise ImageError(f"cannot read image {path}: {e.strerror or e}") from e
        except (ValueError, OverflowError) as e:  # e.g. a NUL in the path
            raise ImageError(f"cannot read image {path!r}: {e}") from e
        return cls.from_bytes(data, path, max_bytes=max_bytes)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<memory>", *,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> Image:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"image data must be bytes, not {type(data).__name__}")
        data = bytes(data)
        if len(data) > max_bytes:
            raise ImageError(f"image is larger than the {max_bytes}-byte limit")
        self = cls.__new__(cls)
        self.path = name
        base = os.path.basename(name)
        self.name = base[:-4] if base.endswith(".elf") and len(base) > 4 else base
        _parse(self, data)
        return self

    def __repr__(self) -> str:
        return (f"Image({self.name!r}, abi={self.abi}, entry=0x{self.entry:x}, "
                f"{len(self.segments)} segments, {len(self.symbols)} symbols)")

    # ------------------------------------------------------------------ queries
    def symbolize(self, addr: int) -> tuple[str, int] | None:
        """(name, offset) of the symbol containing ``addr``, or None.

        A func/object symbol whose range holds ``addr`` wins (the innermost one
        when ranges nest); failing that, the nearest preceding func symbol of
        size 0 in the same segment (hand-written assembly often has no sizes).
        """
        i = bisect.bisect_right(self._range_starts, addr) - 1
        if i >= 0:
            _, end, name, start = self._ranges[i]
            if addr < end:
                return name, addr - start
        j = bisect.bisect_right(self._func_starts, addr) - 1
        if j >= 0:
            start, seg_end, name = self._funcs[j]
            if name is not None and addr < seg_end:
                return name, addr - start
        return None

    def symbol_address(self, name: str) -> int:
        """Address of the symbol called ``name``; KeyError if absent."""
        return self._by_name[name]

    def read(self, addr: int, size: int) -> bytes:
        """Bytes of the loaded image at ``addr`` (file bytes, zeros in bss)."""
        if size < 0:
            raise ImageError(f"cannot read a negative size ({size}) at 0x{addr:x}")
        out = bytearray()
        cur, end = addr, addr + size
        while cur < end:
            i = bisect.bisect_right(self._seg_starts, cur) - 1
            seg = self._sorted[i] if i >= 0 else None
            if seg is None or cur >= seg.end:
                raise ImageError(f"address range 0x{addr:x}-0x{end:x} is not inside the image")
            stop = min(end, seg.end)
            lo, hi = cur - seg.vaddr, stop - seg.vaddr
            chunk = seg.data[lo:hi]
            out += chunk + bytes(hi - lo - len(chunk))
            cur = stop
        return bytes(out)


def _is_regular(f) -> bool:
    return stat.S_ISREG(os.fstat(f.fileno()).st_mode)


# ---------------------------------------------------------------------- parsing
def _parse(img: Image, data: bytes) -> None:
    size = len(data)
    if size < 4 or data[:4] != b"\x7fELF":
        raise ImageError("image is not an ELF file (bad magic number)")
    if size < 6:
        raise ImageError(f"image is truncated: the ELF header needs {_EHDR.size} bytes "
                         f"but the file has {size}")
    if data[4] == 1:
        raise ImageError("image is a 32-bit ELF file; picosim runs 64-bit x86-64 images")
    if data[4] != 2:
        raise ImageError(f"image has an invalid ELF class ({data[4]})")
    if data[5] == 2:
        raise ImageError("image is big-endian; x86-64 images are little-endian")
    if data[5] != 1:
        raise ImageError(f"image has an invalid ELF data encoding ({data[5]})")
    if size < _EHDR.size:
        raise ImageError(f"image is truncated: the ELF header needs {_EHDR.size} bytes "
                         f"but the file has {size}")
    (_, e_type, e_machine, _, e_entry, e_phoff, _, _, _, e_phentsize, e_phnum,
     _, _, _) = _EHDR.unpack_from(data)
    if e_machine != EM_X86_64:
        raise ImageError(f"image is for machine {e_machine}, not x86-64 ({EM_X86_64})")
    if e_type == ET_DYN:
        raise ImageError("image is position-independent (ET_DYN), not a static "
                         "executable (ET_EXEC)")
    if e_type != ET_EXEC:
        raise ImageError(f"image has ELF type {e_type}, not a static executable (ET_EXEC)")
    if e_phnum == 0 or e_phoff == 0:
        raise ImageError("image has no program headers")
    if e_phnum == PN_XNUM:
        raise ImageError("image uses extended program header numbering (PN_XNUM), "
                         "which picosim does not support")
    if e_phentsize != _PHDR.size:
        raise ImageError(f"program header entries are {e_phentsize} bytes, not {_PHDR.size}")
    if e_phoff + e_phnum * _PHDR.size > size:
        raise ImageError(f"program header table (0x{e_phoff:x}, {e_phnum} entries) runs past "
                         f"the end of the file ({size} bytes)")

    try:
        elf = ELFFile(io.BytesIO(data))
        # Bare headers, not Segment objects: pyelftools' PT_DYNAMIC segment
        # would go looking through the (optional, maybe broken) section table.
        phdrs = [struct_parse(elf.structs.Elf_Phdr, elf.stream, e_phoff + i * _PHDR.size)
                 for i in range(e_phnum)]
    except Exception as e:  # pyelftools raises many kinds; the bounds are checked
        raise ImageError(f"image headers cannot be parsed ({type(e).__name__}: {e})") from e

    segments: list[Segment] = []
    notes: list[Note] = []
    for i, ph in enumerate(phdrs):
        p_type = ph["p_type"]
        if p_type == "PT_LOAD":
            segments.append(_load_segment(i, ph, data))
        elif p_type == "PT_NOTE":
            _check_file_range(i, ph["p_offset"], ph["p_filesz"], size)
            notes.append(_first_note(i, data[ph["p_offset"]:ph["p_offset"] + ph["p_filesz"]]))
    if not segments:
        raise ImageError("image has no PT_LOAD segments")
    # Empty PT_LOADs load nothing; kept, they would claim a page for themselves.
    segments = [s for s in segments if s.memsz]
    if not segments:
        raise ImageError("image has only empty PT_LOAD segments")
    _check_layout(segments)

    if not any(s.executable and s.vaddr <= e_entry < s.vaddr + s.filesz for s in segments):
        raise ImageError(f"entry point 0x{e_entry:x} is not inside the file bytes of an "
                         "executable segment")

    img.entry = e_entry
    img.segments = tuple(segments)
    img.notes = tuple(notes)
    img.kernel_end = max(s.aligned_end for s in segments)
    img.code_ranges = tuple((s.vaddr, s.end) for s in segments if s.executable)
    img._sorted = tuple(sorted(segments, key=lambda s: s.vaddr))
    img._seg_starts = [s.vaddr for s in img._sorted]
    _interpret_notes(img, notes)
    _index_symbols(img, _read_symbols(elf, data))


def _check_file_range(i: int, offset: int, filesz: int, size: int) -> None:
    if offset + filesz > size:
        raise ImageError(f"segment {i} is truncated: its file bytes 0x{offset:x}-"
                         f"0x{offset + filesz:x} run past the end of the file ({size} bytes)")


def _load_segment(i: int, ph, data: bytes) -> Segment:
    vaddr, memsz, filesz = ph["p_vaddr"], ph["p_memsz"], ph["p_filesz"]
    offset, align, flags = ph["p_offset"], ph["p_align"], ph["p_flags"]
    if filesz > memsz:
        raise ImageError(f"segment {i} has more file bytes (0x{filesz:x}) than memory "
                         f"bytes (0x{memsz:x})")
    _check_file_range(i, offset, filesz, len(data))
    if align & (align - 1):
        raise ImageError(f"segment {i} has alignment 0x{align:x}, which is not a power of two")
    if align > 1 and vaddr % align != offset % align:
        raise ImageError(f"segment {i} has address 0x{vaddr:x} and file offset 0x{offset:x} "
                         f"that disagree modulo its alignment 0x{align:x}")
    if vaddr < MIN_ADDR:
        raise ImageError(f"segment {i} starts at 0x{vaddr:x}, below the 1 MiB minimum "
                         f"(0x{MIN_ADDR:x})")
    if _page_up(vaddr + memsz) > MAX_ADDR:
        raise ImageError(f"segment {i} ends at 0x{vaddr + memsz:x}, above the 4 GiB limit")
    if flags & PF_W and flags & PF_X:
        raise ImageError(f"segment {i} is both writable and executable")
    return Segment(index=i, vaddr=vaddr, memsz=memsz, filesz=filesz, offset=offset,
                   align=align, readable=bool(flags & PF_R), writable=bool(flags & PF_W),
                   executable=bool(flags & PF_X), data=data[offset:offset + filesz])


def _check_layout(segments: list[Segment]) -> None:
    def span(s: Segment) -> str:
        return f"0x{s.vaddr:x}-0x{s.end:x}"

    by_addr = sorted(segments, key=lambda s: (s.vaddr, s.index))
    for prev, cur in pairwise(by_addr):
        if cur.vaddr < prev.end:
            first, second = sorted((prev, cur), key=lambda s: s.index)
            raise ImageError(f"segment {second.index} ({span(second)}) overlaps segment "
                             f"{first.index} ({span(first)})")
        # The vCPU maps 4 KiB pages with one set of permissions each.
        if cur.vaddr & ~(PAGE - 1) < prev.aligned_end and cur.perms != prev.perms:
            raise ImageError(f"segments {prev.index} ({prev.perms}) and {cur.index} "
                             f"({cur.perms}) share a 4 KiB page with different permissions")
    for prev, cur in pairwise(segments):
        if cur.vaddr < prev.vaddr:
            raise ImageError(f"segment {cur.index} (0x{cur.vaddr:x}) comes after segment "
                             f"{prev.index} (0x{prev.vaddr:x}) but program headers must be "
                             "in ascending address order")


def _first_note(i: int, raw: bytes) -> Note:
    """The first note of PT_NOTE segment ``i`` whose file bytes are ``raw``."""
    if len(raw) < _NHDR.size:
        raise ImageError(f"note in segment {i} is truncated: the segment holds {len(raw)} "
                         f"bytes, less than a {_NHDR.size}-byte note header")
    namesz, descsz, type_ = _NHDR.unpack_from(raw)
    desc_at = _NHDR.size + ((namesz + 3) & ~3)
    if _NHDR.size + namesz > len(raw):
        raise ImageError(f"note in segment {i} is truncated: its {namesz}-byte owner name "
                         f"does not fit the segment's {len(raw)} bytes")
    if desc_at + descsz > len(raw):
        raise ImageError(f"note in segment {i} is truncated: its {descsz}-byte descriptor "
                         f"does not fit the segment's {len(raw)} bytes")
    name = raw[_NHDR.size:_NHDR.size + namesz].split(b"\0", 1)[0]
    owner = name.decode("utf-8", "backslashreplace")
    return Note(owner=owner, type=type_, desc=raw[desc_at:desc_at + descsz], segment=i)


def _interpret_notes(img: Image, notes: list[Note]) -> None:
    kinds = {(SOLO5_OWNER, NOTE_ABI): "Solo5 ABI", (SOLO5_OWNER, NOTE_MANIFEST): "Solo5 manifest",
             (PICO_OWNER, PICO_NOTE_MANIFEST): "Pico manifest"}
    found: dict[str, Note] = {}
    for note in notes:
        kind = kinds.get((note.owner, note.type))
        if kind is None:
            continue  # other owners (OpenBSD, GNU, ...) and unknown types are kept, not read
        if kind in found:
            raise ImageError(f"image has two {kind} notes (segments {found[kind].segment} "
                             f"and {note.segment})")
        found[kind] = note
    img.solo5_abi = img.solo5_manifest = img.pico_manifest = None
    try:
        if "Solo5 ABI" in found:
            note = found["Solo5 ABI"]
            img.solo5_abi = Solo5Abi.parse(note.desc)
        if "Solo5 manifest" in found:
            note = found["Solo5 manifest"]
            img.solo5_manifest = Solo5Manifest.parse(note.desc)
        if "Pico manifest" in found:
            note = found["Pico manifest"]
            img.pico_manifest = pico_manifest_text(note.desc)
    except NoteError as e:
        raise ImageError(f"note in segment {note.segment} is invalid: {e}") from e

    if img.solo5_abi is None:
        if img.solo5_manifest is not None:
            raise ImageError("image has a Solo5 manifest note but no Solo5 ABI note")
        img.abi = "pico"
        return
    if img.pico_manifest is not None:
        raise ImageError("image carries both a Solo5 ABI note and a Pico manifest note")
    target = img.solo5_abi.target
    if target not in _ABI_NAMES:
        raise ImageError(f"image is built for the solo5-{img.solo5_abi.target_name} target, "
                         "which picosim does not run")
    img.abi = _ABI_NAMES[target]


# ---------------------------------------------------------------------- symbols
def _read_symbols(elf: ELFFile, data: bytes) -> list[tuple[int, str, int, str, bool]]:
    """Symbols from SHT_SYMTAB (else SHT_DYNSYM); () if the tables are unusable."""
    try:
        return _read_symbols_unchecked(elf, data)
    except Exception:  # noqa: BLE001 - symbols are optional: a broken table means none
        return []


def _read_symbols_unchecked(elf: ELFFile, data: bytes) -> list[tuple[int, str, int, str, bool]]:
    """(addr, name, size, kind, is_global) of each defined, named symbol, sorted."""
    size = len(data)
    shoff, shnum, shentsize = elf["e_shoff"], elf["e_shnum"], elf["e_shentsize"]
    if shoff == 0 or shnum == 0 or shentsize != 64 or shoff + shnum * 64 > size:
        return []
    headers = [elf.get_section(i).header for i in range(shnum)]
    table = next((h for h in headers if h["sh_type"] == "SHT_SYMTAB"), None)
    if table is None:
        table = next((h for h in headers if h["sh_type"] == "SHT_DYNSYM"), None)
    if table is None or table["sh_entsize"] != _SYM.size or not table["sh_link"] < shnum:
        return []
    strtab = headers[table["sh_link"]]
    if strtab["sh_type"] != "SHT_STRTAB":
        return []
    s_off, s_size = table["sh_offset"], table["sh_size"] - table["sh_size"] % _SYM.size
    t_off, t_size = strtab["sh_offset"], strtab["sh_size"]
    if s_off + s_size > size or t_off + t_size > size:
        return []
    strings = data[t_off:t_off + t_size]
    out = set()
    for st_name, st_info, _, st_shndx, st_value, st_size in _SYM.iter_unpack(
            data[s_off:s_off + s_size]):
        stype = st_info & 0xF
        if st_shndx == SHN_UNDEF or stype in (STT_SECTION, STT_FILE) or st_name >= len(strings):
            continue
        end = strings.find(b"\0", st_name)
        raw = strings[st_name:end if end >= 0 else len(strings)]
        if not raw:
            continue
        kind = "func" if stype == STT_FUNC else "object" if stype == STT_OBJECT else "other"
        out.add((st_value, raw.decode("utf-8", "replace"), st_size, kind,
                 (st_info >> 4) != STB_LOCAL))
    return sorted(out)


def _index_symbols(img: Image, raw: list[tuple[int, str, int, str, bool]]) -> None:
    """Set img.symbols and build the tables behind symbolize() and symbol_address()."""
    img.symbols = tuple(dict.fromkeys(Symbol(name, addr, size, kind)
                                      for addr, name, size, kind, _ in raw))
    # Names: a global definition wins over a local one of the same name.
    by_name: dict[str, int] = {}
    for addr, name, _, _, is_global in raw:
        if is_global:
            by_name.setdefault(name, addr)
    for addr, name, _, _, _ in raw:
        by_name.setdefault(name, addr)
    img._by_name = by_name

    # Sized func/object symbols, flattened into disjoint ranges: each stretch of
    # addresses belongs to the innermost (latest-starting) symbol covering it.
    sized = sorted((s for s in img.symbols if s.kind in ("func", "object") and s.size > 0),
                   key=lambda s: (s.addr, -s.size, s.kind != "func", s.name))
    bounds = sorted({s.addr for s in sized} | {s.addr + s.size for s in sized})
    ranges: list[tuple[int, int, str, int]] = []  # (lo, hi, name, symbol start)
    heap: list[tuple[int, int, int, str]] = []  # (-start, order, end, name)
    k = 0
    for lo, hi in pairwise(bounds):
        while k < len(sized) and sized[k].addr <= lo:
            s = sized[k]
            heapq.heappush(heap, (-s.addr, k, s.addr + s.size, s.name))
            k += 1
        while heap and heap[0][2] <= lo:  # lazily drop symbols that ended
            heapq.heappop(heap)
        if not heap:
            continue
        start, name = -heap[0][0], heap[0][3]
        last = ranges[-1] if ranges else None
        if last and last[1] == lo and last[2] == name and last[3] == start:
            ranges[-1] = (last[0], hi, name, start)
        else:
            ranges.append((lo, hi, name, start))
    img._ranges = ranges
    img._range_starts = [r[0] for r in ranges]

    # Nearest preceding func symbol; only size-0 ones may claim what follows them,
    # and only up to the end of their segment.
    funcs: dict[int, tuple[int, int, str | None]] = {}
    for s in sorted(img.symbols, key=lambda s: (s.addr, s.name)):
        if s.kind != "func":
            continue
        seg = next((g for g in img._sorted if g.vaddr <= s.addr < g.end), None)
        if s.size > 0:
            funcs[s.addr] = (s.addr, 0, None)  # a sized func blocks size-0 fallbacks
        elif seg is not None and s.addr not in funcs:
            funcs[s.addr] = (s.addr, seg.end, s.name)
    img._funcs = [funcs[a] for a in sorted(funcs)]
    img._func_starts = sorted(funcs)
