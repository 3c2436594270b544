"""sim.image: real gcc-built images load; each validation rule rejects a patched one."""

import os
import struct

import pytest
from elfbuild import HELLO_C, build_elf, build_with_notes

from sim import notes as N
from sim.image import Image, ImageError

# Elf64_Ehdr field offsets and formats
EH = {"e_type": (16, "<H"), "e_machine": (18, "<H"), "e_entry": (24, "<Q"),
      "e_phoff": (32, "<Q"), "e_shoff": (40, "<Q"), "e_phentsize": (54, "<H"),
      "e_phnum": (56, "<H"), "e_shentsize": (58, "<H"), "e_shnum": (60, "<H"),
      "e_shstrndx": (62, "<H")}
# Elf64_Phdr field offsets and formats
PH = {"p_type": (0, "<I"), "p_flags": (4, "<I"), "p_offset": (8, "<Q"), "p_vaddr": (16, "<Q"),
      "p_filesz": (32, "<Q"), "p_memsz": (40, "<Q"), "p_align": (48, "<Q")}
PT_NULL, PT_LOAD, PT_INTERP, PT_NOTE = 0, 1, 3, 4


def eh(data: bytes, field: str) -> int:
    off, fmt = EH[field]
    return struct.unpack_from(fmt, data, off)[0]


def set_eh(data: bytes, field: str, value: int) -> bytes:
    off, fmt = EH[field]
    b = bytearray(data)
    struct.pack_into(fmt, b, off, value)
    return bytes(b)


def ph(data: bytes, i: int, field: str) -> int:
    off, fmt = PH[field]
    return struct.unpack_from(fmt, data, eh(data, "e_phoff") + 56 * i + off)[0]


def set_ph(data: bytes, i: int, **fields) -> bytes:
    b = bytearray(data)
    for field, value in fields.items():
        off, fmt = PH[field]
        struct.pack_into(fmt, b, eh(data, "e_phoff") + 56 * i + off, value)
    return bytes(b)


def load_index(data: bytes) -> dict[int, int]:
    """PT_LOAD order -> program header index."""
    out = {}
    for i in range(eh(data, "e_phnum")):
        if ph(data, i, "p_type") == PT_LOAD:
            out[len(out)] = i
    return out


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    return build_elf(tmp_path_factory.mktemp("hello"), HELLO_C, name="hello")


@pytest.fixture(scope="module")
def hello_bytes(hello):
    return hello.read_bytes()


@pytest.fixture(scope="module")
def notes_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("notes")


def manifest_desc() -> bytes:
    return N.Solo5Manifest.of(N.ManifestEntry("storage", N.DEVICE_BLOCK),
                              N.ManifestEntry("service0", N.DEVICE_NET)).to_bytes()


def solo5_notes(target: int = 1, version: int = 2) -> tuple[bytes, ...]:
    return (N.build_note("OpenBSD", 1, b"\0" * 4),
            N.build_note("Solo5", N.NOTE_ABI, N.solo5_abi_desc(target, version)),
            N.build_note("Solo5", N.NOTE_MANIFEST, manifest_desc()))


# ------------------------------------------------------------------ real images
def test_gcc_image_is_what_we_asked_for(hello_bytes):
    assert hello_bytes[:4] == b"\x7fELF" and hello_bytes[4] == 2 and hello_bytes[5] == 1
    assert eh(hello_bytes, "e_type") == 2 and eh(hello_bytes, "e_machine") == 62


def test_load_plain_image(hello):
    img = Image.load(hello)
    assert img.name == "hello" and img.path == str(hello)
    assert img.abi == "pico" and img.solo5_abi is None and img.solo5_manifest is None
    assert img.pico_manifest is None
    assert img.entry == img.symbol_address("_start")
    assert all(s.vaddr >= 0x100000 for s in img.segments)
    assert [s.index for s in img.segments] == sorted(s.index for s in img.segments)
    assert not any(s.writable and s.executable for s in img.segments)
    code = [s for s in img.segments if s.executable]
    assert img.code_ranges == tuple((s.vaddr, s.end) for s in code)
    assert any(lo <= img.entry < hi for lo, hi in img.code_ranges)
    assert img.kernel_end == max(s.aligned_end for s in img.segments)
    assert img.kernel_end % 0x1000 == 0
    for s in img.segments:
        assert len(s.data) == s.filesz and s.aligned_end % 0x1000 == 0


def test_symbols_and_symbolize(hello):
    img = Image.load(hello)
    kinds = {s.name: s.kind for s in img.symbols}
    assert kinds["_start"] == "func" and kinds["add"] == "func"
    assert kinds["message"] == "object" and kinds["buffer"] == "object"
    start = img.symbol_address("_start")
    assert img.symbolize(start) == ("_start", 0)
    assert img.symbolize(start + 3) == ("_start", 3)
    buf = img.symbol_address("buffer")
    assert img.symbolize(buf + 8191) == ("buffer", 8191)
    assert img.symbolize(buf + 8192) is None or img.symbolize(buf + 8192)[0] != "buffer"
    # bare_label has size 0: it claims what follows it, up to the next function
    label = img.symbol_address("bare_label")
    assert img.symbolize(label + 2) == ("bare_label", 2)
    assert img.symbolize(0x1000) is None
    with pytest.raises(KeyError):
        img.symbol_address("no_such_symbol")


def test_read_gives_file_bytes_and_zero_bss(hello):
    img = Image.load(hello)
    msg = img.symbol_address("message")
    assert img.read(msg, 18) == b"hello from picosim"
    counter = img.symbol_address("counter")
    assert img.read(counter, 4) == struct.pack("<i", 7)
    assert img.read(img.symbol_address("buffer") + 100, 16) == bytes(16)
    assert img.read(msg, 0) == b""
    with pytest.raises(ImageError, match="not inside the image"):
        img.read(0x1000, 4)
    last = max(img.segments, key=lambda s: s.end)
    with pytest.raises(ImageError, match="not inside the image"):
        img.read(last.end - 2, 4)


def test_from_bytes_matches_load(hello, hello_bytes):
    a, b = Image.load(hello), Image.from_bytes(hello_bytes, "x/hello.elf")
    assert b.name == "hello" and b.path == "x/hello.elf"
    assert (a.entry, a.segments, a.symbols, a.notes) == (b.entry, b.segments, b.symbols, b.notes)
    assert Image.from_bytes(bytearray(hello_bytes)).name == "<memory>"


def test_solo5_hvt_image(notes_dir):
    img = Image.load(build_with_notes(notes_dir, *solo5_notes(1), name="hvt"))
    assert img.abi == "hvt" and img.solo5_abi == N.Solo5Abi(1, 2)
    assert [d.name for d in img.solo5_manifest.devices()] == ["storage", "service0"]
    assert [(n.owner, n.type) for n in img.notes] == [
        ("OpenBSD", 1), ("Solo5", N.NOTE_ABI), ("Solo5", N.NOTE_MANIFEST)]
    assert [n.segment for n in img.notes] == [3, 4, 5]
    assert img.symbolize(img.entry + 1) == ("_start", 1)


def test_solo5_spt_image(notes_dir):
    img = Image.load(build_with_notes(notes_dir, *solo5_notes(2), name="spt"))
    assert img.abi == "spt" and img.solo5_abi.target_name == "spt"


def test_pico_manifest_image(notes_dir):
    toml = 'name = "hello"\nmemory_mib = 4\n'
    note = N.build_note("Pico", N.PICO_NOTE_MANIFEST, toml.encode())
    img = Image.load(build_with_notes(notes_dir, note, name="pico"))
    assert img.abi == "pico" and img.pico_manifest == toml and img.solo5_abi is None


def test_only_first_note_of_a_segment_is_read(notes_dir):
    # both notes land in one PT_NOTE segment: the ABI note, second, is never seen
    both = N.build_note("OpenBSD", 1, b"\0" * 4) + N.build_note(
        "Solo5", N.NOTE_ABI, N.solo5_abi_desc(3))
    img = Image.load(build_with_notes(notes_dir, both, name="first"))
    assert img.abi == "pico" and [n.owner for n in img.notes] == ["OpenBSD"]


@pytest.mark.parametrize("notes, words", [
    (solo5_notes(3), "built for the solo5-virtio target, which picosim does not run"),
    (solo5_notes(6), "solo5-xen target"),
    (solo5_notes(1, 3), "Solo5 ABI version 3 is not supported"),
    (solo5_notes(9), "unknown target 9"),
    (solo5_notes(1)[:1] + solo5_notes(1)[2:], "manifest note but no Solo5 ABI note"),
    (solo5_notes(1) + solo5_notes(2)[1:2], "two Solo5 ABI notes"),
    (solo5_notes(1) + (N.build_note("Pico", N.PICO_NOTE_MANIFEST, b"x=1"),),
     "both a Solo5 ABI note and a Pico manifest note"),
    ((N.build_note("Pico", N.PICO_NOTE_MANIFEST, b"\xff"),), "not valid UTF-8"),
    ((N.build_note("Solo5", N.NOTE_MANIFEST, manifest_desc()[:-4]),
      N.build_note("Solo5", N.NOTE_ABI, N.solo5_abi_desc(1))), "note in segment 3 is invalid"),
])
def test_bad_notes(notes_dir, notes, words):
    path = build_with_notes(notes_dir, *notes, name="bad")
    with pytest.raises(ImageError, match=words):
        Image.load(path)


def test_truncated_notes(notes_dir):
    data = build_with_notes(notes_dir, *solo5_notes(1), name="trunc").read_bytes()
    abi_ph = 4
    assert ph(data, abi_ph, "p_type") == PT_NOTE
    for patched, words in [
        (set_ph(data, abi_ph, p_filesz=8), "less than a 12-byte note header"),
        (set_ph(data, abi_ph, p_filesz=16), "owner name"),
        (set_ph(data, abi_ph, p_filesz=30), "16-byte descriptor"),
    ]:
        with pytest.raises(ImageError, match=f"note in segment {abi_ph} is truncated.*{words}"):
            Image.from_bytes(patched)
    b = bytearray(data)
    struct.pack_into("<I", b, ph(data, abi_ph, "p_offset"), 0xFFFFFFFF)  # namesz
    with pytest.raises(ImageError, match="truncated"):
        Image.from_bytes(bytes(b))
    struct.pack_into("<II", b, ph(data, abi_ph, "p_offset"), 6, 0xFFFFFFFF)  # descsz
    with pytest.raises(ImageError, match="truncated"):
        Image.from_bytes(bytes(b))
    with pytest.raises(ImageError, match=f"segment {abi_ph} is truncated"):
        Image.from_bytes(set_ph(data, abi_ph, p_offset=len(data) - 4))


# ------------------------------------------------------------------ rejections
def _swap_ph(data: bytes, i: int, j: int) -> bytes:
    base = eh(data, "e_phoff")
    b = bytearray(data)
    a_, b_ = b[base + 56 * i:base + 56 * i + 56], b[base + 56 * j:base + 56 * j + 56]
    b[base + 56 * i:base + 56 * i + 56], b[base + 56 * j:base + 56 * j + 56] = b_, a_
    return bytes(b)


def _no_loads(data: bytes) -> bytes:
    for i in load_index(data).values():
        data = set_ph(data, i, p_type=PT_NULL)
    return data


def _all_loads(data: bytes, **fields) -> bytes:
    for i in load_index(data).values():
        data = set_ph(data, i, **fields)
    return data


def _code(data):  # program header index of the executable PT_LOAD
    return next(i for i in load_index(data).values() if ph(data, i, "p_flags") & 1)


def _rw(data):  # program header index of the writable PT_LOAD
    return next(i for i in load_index(data).values() if ph(data, i, "p_flags") & 2)


def _after_code(data):  # the PT_LOAD following the code one (read-only data)
    return _code(data) + 1


REJECTIONS = [
    ("magic", lambda d: b"\x7fELG" + d[4:], "not an ELF file"),
    ("empty", lambda d: b"", "not an ELF file"),
    ("short header", lambda d: d[:40], "truncated: the ELF header needs 64 bytes"),
    ("32-bit", lambda d: d[:4] + b"\x01" + d[5:], "32-bit"),
    ("bad class", lambda d: d[:4] + b"\x07" + d[5:], "invalid ELF class"),
    ("big-endian", lambda d: d[:5] + b"\x02" + d[6:], "big-endian"),
    ("machine", lambda d: set_eh(d, "e_machine", 3), "machine 3, not x86-64"),
    ("ET_DYN", lambda d: set_eh(d, "e_type", 3), "ET_DYN"),
    ("ET_REL", lambda d: set_eh(d, "e_type", 1), "ELF type 1, not a static executable"),
    ("no phdrs", lambda d: set_eh(d, "e_phnum", 0), "no program headers"),
    ("phoff 0", lambda d: set_eh(d, "e_phoff", 0), "no program headers"),
    ("PN_XNUM", lambda d: set_eh(d, "e_phnum", 0xFFFF), "PN_XNUM"),
    ("phentsize", lambda d: set_eh(d, "e_phentsize", 32), "entries are 32 bytes, not 56"),
    ("phoff", lambda d: set_eh(d, "e_phoff", len(d) - 60), "runs past the end of the file"),
    ("phnum", lambda d: set_eh(d, "e_phnum", 2000), "runs past the end of the file"),
    ("phoff huge", lambda d: set_eh(d, "e_phoff", 2**64 - 8), "runs past the end"),
    ("no PT_LOAD", _no_loads, "no PT_LOAD segments"),
    ("empty PT_LOADs", lambda d: _all_loads(d, p_memsz=0, p_filesz=0), "only empty PT_LOAD"),
    ("entry in data", lambda d: set_eh(d, "e_entry", ph(d, _rw(d), "p_vaddr")),
     "entry point 0x.* is not inside the file bytes of an executable segment"),
    ("entry nowhere", lambda d: set_eh(d, "e_entry", 0), "entry point 0x0 is not inside"),
    ("filesz>memsz", lambda d: set_ph(d, _code(d), p_filesz=ph(d, _code(d), "p_memsz") + 1),
     "more file bytes .* than memory bytes"),
    ("truncated file", lambda d: d[:ph(d, _rw(d), "p_offset") + 1],
     "segment .* is truncated: its file bytes"),
    ("offset beyond", lambda d: set_ph(d, _code(d), p_offset=2**63), "is truncated"),
    ("align 3", lambda d: set_ph(d, _code(d), p_align=3), "alignment 0x3, which is not a power"),
    ("align odd", lambda d: set_ph(d, _code(d), p_align=0x3000), "not a power of two"),
    ("congruence", lambda d: set_ph(d, _code(d), p_vaddr=ph(d, _code(d), "p_vaddr") + 0x10),
     "disagree modulo its alignment 0x1000"),
    ("below 1 MiB", lambda d: set_ph(d, load_index(d)[0], p_vaddr=0x1000),
     "starts at 0x1000, below the 1 MiB minimum"),
    ("above 4 GiB", lambda d: set_ph(d, _rw(d), p_memsz=1 << 33), "above the 4 GiB limit"),
    ("huge vaddr", lambda d: set_ph(d, _rw(d), p_vaddr=2**64 - 0x1000 + ph(d, _rw(d), "p_vaddr") % 0x1000),
     "above the 4 GiB"),
    ("overlap", lambda d: set_ph(d, _after_code(d), p_vaddr=ph(d, _code(d), "p_vaddr")),
     r"segment (\d) \(0x101000-0x[0-9a-f]+\) overlaps segment (\d) \(0x101000-0x10102d\)"),
    ("W+X", lambda d: set_ph(d, _code(d), p_flags=7), "both writable and executable"),
    ("W+X data", lambda d: set_ph(d, _rw(d), p_flags=7), "both writable and executable"),
    ("not ascending", lambda d: _swap_ph(d, _code(d), _after_code(d)),
     "must be in ascending address order"),
    ("shared page", lambda d: set_ph(d, _after_code(d), p_vaddr=0x101040,
                                     p_offset=ph(d, _after_code(d), "p_offset") + 0x40),
     "share a 4 KiB page with different permissions"),
]


@pytest.mark.parametrize("mutate, words", [r[1:] for r in REJECTIONS],
                         ids=[r[0] for r in REJECTIONS])
def test_rejections(hello_bytes, mutate, words):
    bad = mutate(hello_bytes)
    with pytest.raises(ImageError, match=words) as info:
        Image.from_bytes(bad)
    msg = str(info.value)
    assert msg and "\n" not in msg and msg.count(". ") == 0


def test_layout_of_the_fixture_is_what_the_rejections_assume(hello_bytes):
    loads = load_index(hello_bytes)
    assert len(loads) == 4 and ph(hello_bytes, _code(hello_bytes), "p_vaddr") == 0x101000
    assert ph(hello_bytes, _after_code(hello_bytes), "p_type") == PT_LOAD


def test_max_bytes_and_file_errors(hello, tmp_path):
    with pytest.raises(ImageError, match="larger than the 1000-byte limit"):
        Image.load(hello, max_bytes=1000)
    with pytest.raises(ImageError, match="larger than"):
        Image.from_bytes(hello.read_bytes(), max_bytes=1000)
    with pytest.raises(ImageError, match="cannot read image .*No such file"):
        Image.load(tmp_path / "missing.elf")
    with pytest.raises(ImageError, match="is a directory"):
        Image.load(tmp_path)
    with pytest.raises(ImageError, match="not a regular file"):
        Image.load("/dev/null")
    with pytest.raises(ImageError, match="cannot read image"):
        Image.load("a\0b")
    fifo = tmp_path / "fifo.elf"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        Image.load(fifo)  # must not block waiting for a writer


def test_broken_section_table_means_no_symbols(hello_bytes):
    for patched in (set_eh(hello_bytes, "e_shoff", 2**64 - 1),
                    set_eh(hello_bytes, "e_shoff", len(hello_bytes) - 10),
                    set_eh(hello_bytes, "e_shentsize", 12),
                    set_eh(hello_bytes, "e_shstrndx", 999),
                    set_eh(hello_bytes, "e_shnum", 0)):
        img = Image.from_bytes(patched)
        assert img.symbols == () and img.symbolize(img.entry) is None
    assert Image.from_bytes(hello_bytes).symbols  # the unpatched image has them


def test_empty_load_segments_are_dropped(hello_bytes):
    ro = _after_code(hello_bytes)  # read-only data, which _start does not need to load
    img = Image.from_bytes(set_ph(hello_bytes, ro, p_memsz=0, p_filesz=0))
    assert ro not in [s.index for s in img.segments]
    assert len(img.segments) == len(Image.from_bytes(hello_bytes).segments) - 1


def test_pt_interp_is_ignored(hello_bytes):
    phnum = eh(hello_bytes, "e_phnum")
    spare = next(i for i in range(phnum) if ph(hello_bytes, i, "p_type") not in (PT_LOAD,))
    img = Image.from_bytes(set_ph(hello_bytes, spare, p_type=PT_INTERP, p_offset=2**40))
    assert img.entry == Image.from_bytes(hello_bytes).entry
