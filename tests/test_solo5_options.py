"""Solo5's monitor command line on `sim boot`, and fuzzed notes through boot."""

from __future__ import annotations

import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hvt import cli, guest_image

from sim.image import Image, ImageError
from sim.libos.personality import BootConfig, BootError
from sim.libos.solo5 import Solo5Options, manifest_from_specs
from sim.bootopts.solo5 import apply_boot_options
from sim.notes import NOTE_ABI, NOTE_MANIFEST

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("opts")
    return {(n, t): guest_image(d, n, t) for n in ("blk", "ping", "hello") for t in ("hvt", "spt")}


def test_apply_consumes_only_solo5_options():
    config = BootConfig()
    rest = apply_boot_options(None, config, ["--block:storage=/x", "--block-sector-size:storage=4096",
                                             "--net:service0=switch", "--net-mac:service0=02:00:00:00:00:09",
                                             "--other"])
    opts = config.options["solo5"]
    assert rest == ["--other"]
    assert opts.blocks == {"storage": "/x"} and opts.sector_sizes == {"storage": 4096}
    assert opts.nets == {"service0": "switch"} and opts.macs == {"service0": bytes([2, 0, 0, 0, 0, 9])}


def _one_error_line(proc, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("sim: boot ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("target", ["hvt", "spt"])
def test_cli_errors(images, tmp_path, target):
    blk, ping = str(images[("blk", target)]), str(images[("ping", target)])
    good = tmp_path / "disk.img"
    good.write_bytes(bytes(8192))
    odd = tmp_path / "odd.img"
    odd.write_bytes(bytes(1000))
    cases = [
        ([blk], "Device 'storage' of type BLOCK_BASIC declared but not attached."),
        ([ping], "Device 'service0' of type NET_BASIC declared but not attached."),
        ([blk, f"--block:storage={good}", f"--block:other={good}"],
         "Device 'other' of type BLOCK_BASIC not declared in manifest."),
        ([blk, f"--block:storage={odd}"], "is not a multiple of the sector size"),
        ([blk, f"--block:storage={good}", "--block-sector-size:storage=1000"],
         "must be a power of two of at least 512"),
        ([blk, f"--block:storage={good}", "--block-sector-size:storage=16384"], "smaller than one"),
        ([blk, f"--block:storage={tmp_path / 'missing.img'}"], "does not exist"),
        ([ping, "--net:service0=tap0"], "unknown network backend"),
        ([ping, "--net:service0=switch", "--net-mac:service0=zz"], "Malformed argument to --net-mac"),
        ([ping, "--net:service0"], "Malformed argument to --net"),
        ([blk, "--mem", "5000"], "--mem"),
    ]
    for argv, needle in cases:
        _one_error_line(cli("boot", *argv), needle)


def test_cli_abi_mismatch(images):
    _one_error_line(cli("boot", str(images[("hello", "spt")]), "--abi", "hvt"),
                    "not for the solo5-hvt target")
    _one_error_line(cli("boot", str(images[("hello", "hvt")]), "--abi", "spt"),
                    "not for the solo5-spt target")


def test_cli_abi_version_mismatch(images, tmp_path):
    data = bytearray(images[("hello", "hvt")].read_bytes())
    at = data.find(struct.pack("<I", NOTE_ABI) + b"Solo5\0")
    assert at > 0
    struct.pack_into("<I", data, at + 4 + 8 + 4, 3)  # version 2 -> 3
    bad = tmp_path / "v3.hvt"
    bad.write_bytes(bytes(data))
    _one_error_line(cli("boot", str(bad)), "version 3")


def test_cli_ping_run_reports(images):
    proc = cli("boot", str(images[("ping", "hvt")]), "--net:service0=switch", "--ping", "10.0.0.2:20")
    assert proc.returncode == 0, proc.stderr
    assert "20 packets transmitted, 20 received" in proc.stderr


# -- fuzz: mutated ABI and manifest notes, booted -------------------------------
def _notes_span(data: bytes) -> tuple[int, int]:
    abi = data.find(struct.pack("<I", NOTE_ABI) + b"Solo5\0")
    mft = data.find(struct.pack("<I", NOTE_MANIFEST) + b"Solo5\0")
    return abi - 8, mft + 12 + 8 + 4 + 8 + 104 * 3


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    from sim.sdk.solo5 import build_app

    d = tmp_path_factory.mktemp("fuzz")
    src = d / "f.c"
    src.write_text("#include <picosim.h>\nint main(void){return 0;}\n")
    path = build_app([src], d / "f.hvt", "hvt", devices=["block:storage", "net:service0"])
    return path.read_bytes()


@settings(max_examples=2200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_notes_through_boot(fuzz_base, data):
    from sim.guest import Guest

    raw = bytearray(fuzz_base)
    start, end = _notes_span(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(start, end - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    abi = data.draw(st.sampled_from([None, "hvt", "spt"]))
    config = BootConfig(mem_bytes=4 << 20, options={"solo5": Solo5Options(
        nets={"service0": "switch"} if data.draw(st.booleans()) else {})})
    try:
        image = Image.from_bytes(bytes(raw), "fuzz.elf")
        guest = Guest(image, config, abi=abi if image.abi != "pico" else None, max_insns=1)
    except (ImageError, BootError):
        return
    guest.close()


def test_manifest_from_specs_rejects_bad_names():
    with pytest.raises(ValueError):
        manifest_from_specs(["disk:x"])
    with pytest.raises(ValueError):
        manifest_from_specs(["block:a", "block:a"])
    with pytest.raises(ValueError):
        manifest_from_specs(["block:" + "x" * 70])


def test_device_options_on_a_pico_image_are_an_error(capsys):
    """A Solo5 device option must not be ignored silently."""
    from sim.cli import main

    assert main(["boot", "hello", "-q", "--block:storage=/nonexistent"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "need a Solo5 (hvt or spt) image" in err


def test_pico_options_on_a_solo5_image_are_an_error(tmp_path, capsys):
    import shutil

    from sim.cli import main

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    from test_hvt import guest_image

    image = str(guest_image(tmp_path, "hello", "hvt"))
    policy = tmp_path / "p.toml"
    policy.write_text('calls = ["*"]\n')
    assert main(["boot", image, "-q", "--policy", str(policy)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--policy is a pico option" in err
