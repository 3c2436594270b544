"""sim.notes: Solo5 ABI/manifest and Pico manifest payloads, byte for byte."""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import notes as N
from sim.notes import ManifestEntry, NoteError, Solo5Abi, Solo5Manifest


def test_note_constants_spell_their_names():
    assert struct.pack("<I", N.NOTE_ABI) == b"ABI1"
    assert struct.pack("<I", N.NOTE_MANIFEST) == b"MFT1"
    assert struct.pack("<I", N.PICO_NOTE_MANIFEST) == b"PMF1"


def test_build_note_layout_matches_solo5():
    note = N.build_note("Solo5", N.NOTE_ABI, N.solo5_abi_desc(1))
    assert struct.unpack_from("<III", note) == (6, 16, N.NOTE_ABI)
    assert note[12:20] == b"Solo5\0\0\0"  # namesz 6, padded to 8
    assert note[20:] == struct.pack("<4I", 1, 2, 0, 0)  # descriptor 20 bytes in
    odd = N.build_note("Pico", 7, b"abcde")
    assert len(odd) % 4 == 0 and odd[12:17] == b"Pico\0" and odd[20:25] == b"abcde"


def test_abi_parse():
    abi = Solo5Abi.parse(N.solo5_abi_desc(2))
    assert abi == Solo5Abi(2, 2) and abi.target_name == "spt"
    assert Solo5Abi.parse(N.solo5_abi_desc(6)).target_name == "xen"


@pytest.mark.parametrize("desc, words", [
    (N.solo5_abi_desc(1)[:12], "12 bytes"),
    (N.solo5_abi_desc(1) + b"\0\0\0\0", "20 bytes"),
    (N.solo5_abi_desc(9), "unknown target 9"),
    (N.solo5_abi_desc(1, 1), "version 1"),
])
def test_abi_rejects(desc, words):
    with pytest.raises(NoteError, match=words):
        Solo5Abi.parse(desc)


def _sample() -> Solo5Manifest:
    return Solo5Manifest.of(ManifestEntry("rootfs", N.DEVICE_BLOCK),
                            ManifestEntry("service", N.DEVICE_NET))


def test_manifest_layout_is_solo5s():
    raw = _sample().to_bytes()
    assert len(raw) == 4 + 8 + 3 * 104
    assert struct.unpack_from("<II", raw, 4) == (1, 3)
    entry1 = raw[12 + 104:12 + 208]
    assert entry1[:7] == b"rootfs\0" and entry1[67] == 0
    assert struct.unpack_from("<I", entry1, 68) == (N.DEVICE_BLOCK,)
    assert struct.unpack_from("<I", raw, 12 + 68) == (N.RESERVED_FIRST,)


def test_manifest_parse_and_queries():
    m = Solo5Manifest.parse(_sample().to_bytes())
    assert m == _sample()
    assert [d.name for d in m.devices()] == ["rootfs", "service"]
    assert [d.type_name for d in m.entries] == ["RESERVED_FIRST", "BLOCK_BASIC", "NET_BASIC"]
    assert m.index_of("service") == 2
    with pytest.raises(KeyError):
        m.index_of("nope")


def test_filled_copy_round_trips_with_attached():
    m = _sample()
    f = m.filled(1, attached=True, capacity=1 << 20, block_size=512)
    f = f.filled(2, attached=True, mac=b"\x02\0\0\0\0\x01", mtu=1500)
    assert m.entries[1].attached is False  # the original is untouched
    raw = f.to_bytes()
    # byte layout of the filled entries: block union at 72, net union at 72, attached at 96
    e1, e2 = raw[12 + 104:12 + 208], raw[12 + 208:12 + 312]
    assert struct.unpack_from("<QH", e1, 72) == (1 << 20, 512) and e1[96] == 1
    assert e2[72:78] == b"\x02\0\0\0\0\x01" and struct.unpack_from("<H", e2, 78) == (1500,)
    with pytest.raises(NoteError, match="attached"):
        Solo5Manifest.parse(raw)
    assert Solo5Manifest.parse(raw, allow_attached=True) == f
    with pytest.raises(IndexError):
        m.filled(0, attached=True)
    with pytest.raises(TypeError):
        m.filled(1, name="x")


def _patched(raw: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


E1 = 12 + 104  # first device entry


@pytest.mark.parametrize("mutate, words", [
    (lambda r: r[:10], "too short"),
    (lambda r: _patched(r, 4, "<I", 2), "version 2"),
    (lambda r: _patched(r, 8, "<I", 0), "0 entries"),
    (lambda r: _patched(r, 8, "<I", 65), "65 entries"),
    (lambda r: _patched(r, 8, "<I", 2), "must be 216 bytes"),
    (lambda r: r + b"\0" * 4, "not 324"),
    (lambda r: _patched(r, 12 + 68, "<I", 1), "entry 0"),
    (lambda r: _patched(r, 12, "<B", ord("a")), "entry 0"),
    (lambda r: _patched(r, E1 + 67, "<B", ord("a")), "not NUL-terminated"),
    (lambda r: _patched(r, E1, "<B", 0xFF), "not valid UTF-8"),
    (lambda r: _patched(r, E1, "<B", 0), "empty name"),
    (lambda r: _patched(r, E1 + 68, "<I", 3), "unknown device type 3"),
    (lambda r: _patched(r, E1 + 68, "<I", N.RESERVED_FIRST), "unknown device type"),
    (lambda r: _patched(r, E1 + 96, "<B", 1), "attached"),
    (lambda r: _patched(r, E1 + 96, "<B", 2), "attached"),
    (lambda r: r[:E1 + 104] + r[E1:E1 + 104], "twice"),
])
def test_manifest_rejects(mutate, words):
    raw = _sample().to_bytes()
    with pytest.raises(NoteError, match=words):
        Solo5Manifest.parse(mutate(raw))


def test_manifest_to_bytes_refuses_what_parse_could_not_return():
    with pytest.raises(NoteError):
        Solo5Manifest.of(ManifestEntry("x" * 68, N.DEVICE_BLOCK)).to_bytes()
    with pytest.raises(NoteError):
        Solo5Manifest.of(ManifestEntry("n", N.DEVICE_NET, capacity=1)).to_bytes()
    with pytest.raises(NoteError):
        Solo5Manifest.of(ManifestEntry("b", N.DEVICE_BLOCK, mtu=1)).to_bytes()
    with pytest.raises(NoteError):
        Solo5Manifest.of(ManifestEntry("b", N.DEVICE_BLOCK, block_size=1 << 16)).to_bytes()
    with pytest.raises(NoteError):
        Solo5Manifest.of(ManifestEntry("n", N.DEVICE_NET, mac=b"\1")).to_bytes()
    with pytest.raises(NoteError):
        Solo5Manifest.of(*[ManifestEntry(f"d{i}", 1) for i in range(64)]).to_bytes()


def test_pico_manifest_text():
    assert N.pico_manifest_text(b'name = "hello"\n\0\0\0') == 'name = "hello"\n'
    assert N.pico_manifest_text("é = 1".encode()) == "é = 1"
    with pytest.raises(NoteError, match="UTF-8"):
        N.pico_manifest_text(b"\xff\xfe")
    with pytest.raises(NoteError, match="NUL"):
        N.pico_manifest_text(b"a\0b")


# ------------------------------------------------------------------ hypothesis
names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                       blacklist_categories=("Cs",)),
                min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 67)


@st.composite
def entries(draw, name):
    attached = draw(st.booleans())
    hostfd = draw(st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        return ManifestEntry(name, N.DEVICE_BLOCK, capacity=draw(st.integers(0, 2**64 - 1)),
                             block_size=draw(st.integers(0, 0xFFFF)), hostfd=hostfd,
                             attached=attached)
    return ManifestEntry(name, N.DEVICE_NET, mac=draw(st.binary(min_size=6, max_size=6)),
                         mtu=draw(st.integers(0, 0xFFFF)), hostfd=hostfd, attached=attached)


@st.composite
def manifests(draw):
    device_names = draw(st.lists(names, max_size=63, unique=True))
    return Solo5Manifest.of(*[draw(entries(n)) for n in device_names])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_manifest_round_trip(m):
    raw = m.to_bytes()
    assert len(raw) == 12 + 104 * len(m.entries)
    assert Solo5Manifest.parse(raw, allow_attached=True) == m
    if not any(e.attached for e in m.entries):
        assert Solo5Manifest.parse(raw) == m


@st.composite
def mutated_manifests(draw):
    raw = bytearray(draw(manifests()).to_bytes())
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "word", "cut", "grow"]))
        if kind == "flip" and raw:
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "word" and len(raw) >= 4:
            i = draw(st.integers(0, len(raw) - 4))
            raw[i:i + 4] = struct.pack("<I", draw(st.sampled_from(
                [0, 1, 2, 3, 63, 64, 65, 1 << 30, 0xFFFFFFFF])))
        elif kind == "cut":
            del raw[draw(st.integers(0, len(raw))):]
        elif kind == "grow":
            raw += draw(st.binary(max_size=120))
    return bytes(raw)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated_manifests(), st.binary(max_size=400)))
def test_manifest_parse_only_raises_note_error(desc):
    for allow in (False, True):
        try:
            m = Solo5Manifest.parse(desc, allow_attached=allow)
        except NoteError as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert Solo5Manifest.parse(m.to_bytes(), allow_attached=True) == m


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_abi_parse_only_raises_note_error(desc):
    try:
        Solo5Abi.parse(desc)
    except NoteError:
        pass
