"""Block device: file and memory backing, whole-block checks, durability, cost model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.devices.block import BlockDevice, BlockError, BlockLatency

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def image(tmp_path: Path, size: int = 4 * MiB, name: str = "disk.img") -> Path:
    path = tmp_path / name
    path.write_bytes(bytes(size))
    return path


def test_file_round_trip(tmp_path):
    path = image(tmp_path)
    with BlockDevice.open("storage", path) as dev:
        assert (dev.name, dev.block_size, dev.capacity, dev.blocks) == (
            "storage",
            512,
            4 * MiB,
            8192,
        )
        pattern = bytes(range(256)) * 4  # two blocks
        dev.write(1024, pattern)
        assert dev.read(1024, 1024) == pattern
        assert dev.read(0, 512) == bytes(512)
        dev.write(4 * MiB - 512, b"\xab" * 512)  # the last block
        dev.flush()
        assert dev.stats() == {
            "reads": 2,
            "writes": 2,
            "bytes_read": 1536,
            "bytes_written": 1536,
            "flushes": 1,
        }
    data = path.read_bytes()
    assert data[1024:2048] == pattern
    assert data[-512:] == b"\xab" * 512
    assert len(data) == 4 * MiB


def test_larger_block_size(tmp_path):
    path = image(tmp_path, 64 * 1024)
    with BlockDevice.open("big", path, block_size=4096) as dev:
        assert dev.blocks == 16
        dev.write(4096, b"x" * 4096)
        with pytest.raises(BlockError, match="whole 4096-byte blocks"):
            dev.read(512, 4096)


@pytest.mark.parametrize(
    "offset,length,msg",
    [
        (1, 512, "not whole"),
        (0, 100, "not whole"),
        (512, 513, "not whole"),
        (-512, 512, "negative"),
        (0, -512, "negative"),
        (4 * MiB, 512, "past the end"),
        (4 * MiB - 512, 1024, "past the end"),
        (1 << 62, 512, "past the end"),
    ],
)
def test_range_and_alignment_errors(tmp_path, offset, length, msg):
    with BlockDevice.open("storage", image(tmp_path)) as dev:
        with pytest.raises(BlockError, match=msg):
            dev.read(offset, length)
        if length >= 0:  # a write's length is its data's
            with pytest.raises(BlockError, match=msg):
                dev.write(offset, bytes(length))
        assert dev.stats()["reads"] == dev.stats()["writes"] == 0


def test_zero_length_is_a_no_op(tmp_path):
    with BlockDevice.open("storage", image(tmp_path)) as dev:
        assert dev.read(512, 0) == b""
        dev.write(512, b"")


def test_open_errors(tmp_path):
    with pytest.raises(BlockError, match="does not exist"):
        BlockDevice.open("storage", tmp_path / "missing.img")
    with pytest.raises(BlockError, match="not a regular file"):
        BlockDevice.open("storage", tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(BlockError, match="not a regular file"):  # and does not hang
        BlockDevice.open("storage", fifo)
    odd = tmp_path / "odd.img"
    odd.write_bytes(bytes(1000))
    with pytest.raises(BlockError, match="not a multiple of the sector size"):
        BlockDevice.open("storage", odd)
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    with pytest.raises(BlockError, match="smaller than one 512-byte block"):
        BlockDevice.open("storage", empty)
    for bad in (0, 256, 1000, 768, -512, "512", 512.0, True):
        with pytest.raises(BlockError, match="not a power of two of at least 512"):
            BlockDevice.open("storage", image(tmp_path), block_size=bad)
    six_k = image(tmp_path, 6144, "six.img")
    with pytest.raises(
        BlockError, match=r"\(6144 bytes\) is not a multiple of the sector size \(4096\)"
    ):
        BlockDevice.open("storage", six_k, block_size=4096)


def test_errors_are_one_sentence(tmp_path):
    with pytest.raises(BlockError) as info:
        BlockDevice.open("storage", tmp_path / "missing.img")
    text = str(info.value)
    assert "\n" not in text and text.endswith(".") and text.count(". ") == 0


def test_read_only_file_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can open a read-only file for writing")
    path = image(tmp_path)
    path.chmod(0o444)
    with pytest.raises(BlockError, match="cannot open .* for reading and writing"):
        BlockDevice.open("storage", path)


def test_write_persisted_without_clean_close(tmp_path):
    """A write that returned is in the file even if the process dies at once."""
    path = image(tmp_path)
    child = (
        "import os, signal, sys\n"
        "from sim.devices.block import BlockDevice\n"
        "dev = BlockDevice.open('storage', sys.argv[1])\n"
        "dev.write(8192, b'\\x5a' * 1024)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child, str(path)], check=False, cwd=ROOT, capture_output=True
    )
    assert proc.returncode == -9, proc.stderr
    # Another handle, in this process, sees the data.
    with BlockDevice.open("again", path) as dev:
        assert dev.read(8192, 1024) == b"\x5a" * 1024
        assert dev.read(0, 8192) == bytes(8192)


def test_write_visible_to_another_handle_before_close(tmp_path):
    path = image(tmp_path)
    writer = BlockDevice.open("w", path)
    writer.write(512, b"q" * 512)
    with open(path, "rb") as f:
        f.seek(512)
        assert f.read(512) == b"q" * 512
    writer.close()
    writer.close()  # harmless
    with pytest.raises(RuntimeError, match="closed"):
        writer.read(0, 512)


def test_in_memory():
    dev = BlockDevice.in_memory("mem", 8192, data=b"hello")
    assert dev.read(0, 512)[:6] == b"hello\0"
    dev.write(7680, b"z" * 512)
    assert dev.read(7680, 512) == b"z" * 512
    with pytest.raises(BlockError, match="past the end"):
        dev.read(8192, 512)
    with pytest.raises(BlockError, match="not a multiple"):
        BlockDevice.in_memory("mem", 1000)
    with pytest.raises(BlockError, match="do not fit"):
        BlockDevice.in_memory("mem", 512, data=bytes(513))


def test_latency_cost():
    lat = BlockLatency()
    assert (lat.per_request_ns, lat.per_byte_ps) == (20_000, 500)
    assert lat.cost_ns(0) == 20_000
    assert lat.cost_ns(512) == 20_000 + 256  # 512 B x 0.5 ns
    assert lat.cost_ns(4 * MiB) == 20_000 + 2_097_152  # 4 MiB at 2 GB/s ~ 2.1 ms
    assert BlockLatency(1000, 333).cost_ns(3) == 1000 + 1  # 999 ps rounds up to 1 ns
    assert isinstance(lat.cost_ns(12345), int)
    dev = BlockDevice.in_memory("m", 4096, latency=BlockLatency(per_request_ns=7, per_byte_ps=1000))
    assert dev.cost_ns(512) == 7 + 512
    for field_name in ("per_request_ns", "per_byte_ps"):
        assert BlockLatency.__dataclass_fields__[field_name].metadata["help"]
    with pytest.raises(ValueError):
        BlockLatency(per_request_ns=-1)
    with pytest.raises(ValueError):
        BlockLatency(per_byte_ps=0.5)


def test_save_restore_memory():
    dev = BlockDevice.in_memory("m", 4096)
    dev.write(0, b"a" * 512)
    state = dev.save()
    dev.write(0, b"b" * 512)
    dev.write(512, b"c" * 512)
    dev.restore(state)
    assert dev.read(0, 1024) == b"a" * 512 + bytes(512)
    assert dev.writes == 1 and dev.reads == 1
    other = BlockDevice.in_memory("m", 8192)
    with pytest.raises(BlockError, match="geometry"):
        other.restore(state)


def test_save_restore_file(tmp_path):
    path = image(tmp_path)
    with BlockDevice.open("storage", path) as dev:
        state = dev.save()
        assert state["kind"] == "file" and state["path"] == str(path)
        dev.restore(state)
        with pytest.raises(BlockError, match="memory snapshot into a file device"):
            dev.restore(BlockDevice.in_memory("storage", 4 * MiB).save())
        other = image(tmp_path, 4 * MiB, "other.img")
        with (
            BlockDevice.open("storage", other) as dev2,
            pytest.raises(BlockError, match="snapshot is of"),
        ):
            dev2.restore(state)
        with open(path, "ab") as f:
            f.write(bytes(512))
        with pytest.raises(BlockError, match="is now"):
            dev.restore(state)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(-2, 40), st.integers(-1, 4), st.binary(max_size=1)),
        max_size=30,
    )
)
def test_matches_a_bytearray_model(ops):
    """Random whole/partial-block requests: the device agrees with a plain bytearray."""
    size, bs = 16 * 512, 512
    dev = BlockDevice.in_memory("m", size)
    model = bytearray(size)
    for is_write, block, nblocks, fill in ops:
        offset, length = block * bs + (3 if block == 40 else 0), nblocks * bs
        if is_write:
            length = max(length, 0)
        ok = (
            offset >= 0
            and length >= 0
            and offset % bs == 0
            and offset < size
            and offset + length <= size
        )
        if is_write:
            data = (fill or b"\x01") * length
            if ok:
                dev.write(offset, data)
                model[offset : offset + length] = data
            else:
                with pytest.raises(BlockError):
                    dev.write(offset, data)
        elif ok:
            assert dev.read(offset, length) == bytes(model[offset : offset + length])
        else:
            with pytest.raises(BlockError):
                dev.read(offset, length)
