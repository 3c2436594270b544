"""Mutated and truncated ELF files: only ImageError may escape, and quickly."""

import struct

import pytest
from elfbuild import HELLO_C, build_elf, build_with_notes, notes_asm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import notes as N
from sim.image import Image, ImageError

EXTREMES = [0, 1, 2, 3, 4, 7, 56, 64, 0x1000, 0x100000, 0xFFFF, 0x10000, 2**31, 2**32 - 1,
            2**32, 2**63, 2**64 - 1]

# Header fields worth aiming at: (offset, size) in the ELF header, and in a phdr.
EH_FIELDS = [(4, 1), (5, 1), (16, 2), (18, 2), (24, 8), (32, 8), (40, 8), (54, 2), (56, 2),
             (58, 2), (60, 2), (62, 2)]
PH_FIELDS = [(0, 4), (4, 4), (8, 8), (16, 8), (32, 8), (40, 8), (48, 8)]
NOTE_FIELDS = [(0, 4), (4, 4), (8, 4)]  # namesz, descsz, type


class Seeds(tuple):
    """The seed images (a short repr keeps hypothesis' failure reports readable)."""

    def __repr__(self) -> str:
        return f"<{len(self)} seed images of {[len(s) for s in self]} bytes>"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Real images: a plain one, and a Solo5-style one with three note segments."""
    d = tmp_path_factory.mktemp("fuzz")
    plain = build_elf(d, HELLO_C, name="plain").read_bytes()
    manifest = N.Solo5Manifest.of(N.ManifestEntry("disk", N.DEVICE_BLOCK),
                                  N.ManifestEntry("net", N.DEVICE_NET)).to_bytes()
    solo5 = build_with_notes(d, N.build_note("OpenBSD", 1, b"\0" * 4),
                             N.build_note("Solo5", N.NOTE_ABI, N.solo5_abi_desc(1)),
                             N.build_note("Solo5", N.NOTE_MANIFEST, manifest),
                             name="solo5").read_bytes()
    assert notes_asm  # re-exported helper is importable
    return Seeds((plain, solo5))


def _targets(data: bytes) -> list[tuple[int, int]]:
    """(file offset, size) of every header field worth overwriting in ``data``."""
    out = list(EH_FIELDS)
    phoff, phnum = struct.unpack_from("<QH", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    for i in range(min(phnum, 16)):
        base = phoff + 56 * i
        if base + 56 > len(data):
            break
        out += [(base + off, size) for off, size in PH_FIELDS]
        p_type, _, p_offset = struct.unpack_from("<IIQ", data, base)
        if p_type == 4:
            out += [(p_offset + off, size) for off, size in NOTE_FIELDS]
    return out


@st.composite
def mutations(draw):
    """A recipe: which seed, then up to 8 edits (applied in _apply).

    Positions start past e_ident because hypothesis favours small numbers and the
    identification bytes (aimed at by "field" edits and tested on their own)
    would otherwise absorb most of the edits."""
    seed = draw(st.integers(0, 1))
    edits = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["field", "field", "field", "flip", "byte", "cut", "splice"]))
        if kind == "field":
            edits.append(("field", draw(st.integers(0, 10**6)),
                          draw(st.one_of(st.sampled_from(EXTREMES), st.integers(0, 2**64 - 1),
                                         st.integers(-64, 64)))))
        elif kind == "flip":
            edits.append(("flip", draw(st.integers(16, 10**6)), draw(st.integers(0, 7))))
        elif kind == "byte":
            edits.append(("byte", draw(st.integers(16, 10**6)), draw(st.integers(0, 255))))
        elif kind == "cut":
            edits.append(("cut", draw(st.integers(1, 10**6))))
        else:
            edits.append(("splice", draw(st.integers(16, 10**6)), draw(st.binary(max_size=64))))
    return seed, edits


def _apply(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for edit in edits:
        if not b:
            break
        if edit[0] == "field":
            if len(b) < 64:
                continue
            targets = _targets(bytes(b))
            off, size = targets[edit[1] % len(targets)]
            old = int.from_bytes(b[off:off + size], "little") if off + size <= len(b) else 0
            # small values nudge the field (off by a few), others replace it
            value = old + edit[2] if -64 <= edit[2] <= 64 else edit[2]
            value %= 1 << (8 * size)
            if off + size <= len(b):
                b[off:off + size] = value.to_bytes(size, "little")
        elif edit[0] == "flip":
            b[edit[1] % len(b)] ^= 1 << edit[2]
        elif edit[0] == "byte":
            b[edit[1] % len(b)] = edit[2]
        elif edit[0] == "cut":
            del b[edit[1] % (len(b) + 1):]
        else:
            at = edit[1] % (len(b) + 1)
            b[at:at + len(edit[2])] = edit[2]
    return bytes(b)


@settings(max_examples=2000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations())
def test_mutated_images_only_raise_image_error(seeds, recipe):
    seed, edits = recipe
    data = _apply(seeds[seed], edits)
    try:
        img = Image.from_bytes(data)
    except ImageError as e:
        msg = str(e)
        assert msg and "\n" not in msg
    else:
        # whatever loads must answer its queries without surprises
        assert img.abi in ("hvt", "spt", "pico")
        img.symbolize(img.entry)
        for s in img.symbols[:4]:
            img.symbolize(s.addr)
        try:
            img.read(img.entry, 16)
        except ImageError:
            pass


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 1), st.integers(0, 100_000))
def test_truncated_images_only_raise_image_error(seeds, seed, cut):
    data = seeds[seed]
    try:
        Image.from_bytes(data[:cut % (len(data) + 1)])
    except ImageError:
        pass


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_image_error(junk):
    for data in (junk, b"\x7fELF\x02\x01\x01" + junk):
        with pytest.raises(ImageError):
            Image.from_bytes(data)
