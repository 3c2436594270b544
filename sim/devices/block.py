"""A block device: whole blocks at byte offsets, backed by a file or by memory.

Like every device it sees only offsets and bytes, never guest addresses: the
personality checks the guest's pointers and hands over plain data.

Durability promise: a write the guest was told succeeded is in the backing
file when the run ends, even if the guest (or the simulator) stops abruptly
afterwards. So writes go straight through to the file with ``os.pwrite``
(into the host kernel's page cache, which survives the process); ``flush``
adds an ``fsync`` for durability against a host crash as well.

Costs are a model, not a measurement: ``BlockLatency.cost_ns`` says how many
simulated nanoseconds a request takes; the caller charges them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Self


class BlockError(ValueError):
    """A bad block request or backing file, described in one sentence."""


@dataclass(frozen=True)
class BlockLatency:
    """Simulated cost of one block request: a fixed part plus a per-byte part."""

    per_request_ns: int = field(
        default=20_000,
        metadata={
            "help": "fixed cost of one request in ns (submission, device, completion); "
            "20 us is the order of a queue-depth-1 4 KiB read on a datacentre NVMe SSD",
        },
    )
    per_byte_ps: int = field(
        default=500,
        metadata={
            "help": "transfer cost per byte in picoseconds; 500 ps/byte is 2 GB/s, "
            "a PCIe 3.0 x4 NVMe SSD's sequential rate",
        },
    )

    def __post_init__(self) -> None:
        for name in ("per_request_ns", "per_byte_ps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"BlockLatency.{name} must be a non-negative integer, not {value!r}."
                )

    def cost_ns(self, nbytes: int) -> int:
        """Simulated ns for one request moving ``nbytes`` (transfer part rounded up)."""
        if nbytes < 0:
            raise ValueError(f"A request cannot move {nbytes} bytes.")
        return self.per_request_ns + -(-nbytes * self.per_byte_ps // 1000)


def _check_block_size(block_size: object) -> int:
    if (
        not isinstance(block_size, int)
        or isinstance(block_size, bool)
        or block_size < 512
        or block_size & (block_size - 1)
    ):
        raise BlockError(f"Block size {block_size!r} is not a power of two of at least 512 bytes.")
    return block_size


class BlockDevice:
    """A fixed-size array of blocks; reads and writes take whole blocks only.

    Build one with ``open`` (a file) or ``in_memory``. ``read`` and ``write``
    raise ``BlockError`` for a request that is not whole blocks inside the
    device (a personality answers EINVAL); using a closed device is a host
    bug and raises ``RuntimeError``.
    """

    def __init__(
        self,
        name: str,
        block_size: int,
        capacity: int,
        *,
        latency: BlockLatency,
        fd: int | None = None,
        path: str | None = None,
        memory: bytearray | None = None,
    ):
        # Use open() or in_memory(); this constructor trusts its arguments.
        self.name = name
        self.block_size = block_size
        self.capacity = capacity
        self.latency = latency
        self.path = path
        self._fd = fd
        self._memory = memory
        self._closed = False
        self.reads = 0
        self.writes = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.flushes = 0

    # -- construction -----------------------------------------------------

    @classmethod
    def open(
        cls,
        name: str,
        path: str | os.PathLike,
        block_size: int = 512,
        latency: BlockLatency = BlockLatency(),
    ) -> BlockDevice:
        """A device backed by the regular file at ``path``, opened read-write."""
        block_size = _check_block_size(block_size)
        path = os.fspath(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise BlockError(
                f"Block device '{name}': backing file {path} does not exist."
            ) from None
        except OSError as e:
            raise BlockError(f"Block device '{name}': cannot stat {path}: {e.strerror}.") from None
        # Checked before opening: opening a FIFO would block the simulator.
        if not stat.S_ISREG(st.st_mode):
            raise BlockError(f"Block device '{name}': {path} is not a regular file.")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise BlockError(
                f"Block device '{name}': cannot open {path} for reading and writing: {e.strerror}."
            ) from None
        try:
            st = os.fstat(fd)  # the file actually opened, not the one stat()ed
            if not stat.S_ISREG(st.st_mode):
                raise BlockError(f"Block device '{name}': {path} is not a regular file.")
            cls._check_capacity(name, path, st.st_size, block_size)
        except BaseException:
            os.close(fd)
            raise
        return cls(name, block_size, st.st_size, latency=latency, fd=fd, path=path)

    @classmethod
    def in_memory(
        cls,
        name: str,
        capacity: int,
        block_size: int = 512,
        data: bytes | None = None,
        latency: BlockLatency = BlockLatency(),
    ) -> BlockDevice:
        """A device held in memory, zero-filled or starting from ``data``."""
        block_size = _check_block_size(block_size)
        if not isinstance(capacity, int) or isinstance(capacity, bool):
            raise BlockError(f"Block device '{name}': capacity {capacity!r} is not an integer.")
        cls._check_capacity(name, "in-memory image", capacity, block_size)
        memory = bytearray(capacity)
        if data is not None:
            if len(data) > capacity:
                raise BlockError(
                    f"Block device '{name}': {len(data)} bytes of data do not fit in {capacity} bytes."
                )
            memory[: len(data)] = data
        return cls(name, block_size, capacity, latency=latency, memory=memory)

    @staticmethod
    def _check_capacity(name: str, what: str, size: int, block_size: int) -> None:
        if size < block_size:
            raise BlockError(
                f"Block device '{name}': {what} is {size} bytes, smaller than one "
                f"{block_size}-byte block."
            )
        if size % block_size:
            raise BlockError(
                f"Block device '{name}': backing file size ({size} bytes) is not a multiple "
                f"of the sector size ({block_size})."
            )

    # -- I/O ----------------------------------------------------------------

    @property
    def blocks(self) -> int:
        return self.capacity // self.block_size

    @property
    def closed(self) -> bool:
        return self._closed

    def check(self, offset: int, length: int) -> None:
        """Raise BlockError unless [offset, offset+length) is whole blocks inside the device.

        A zero-length request at an aligned offset inside the device is
        accepted and moves nothing.
        """
        bs = self.block_size
        if not isinstance(offset, int) or not isinstance(length, int):
            raise BlockError(f"Block device '{self.name}': offset and length must be integers.")
        if offset < 0 or length < 0:
            raise BlockError(
                f"Block device '{self.name}': negative offset {offset} or length {length}."
            )
        if offset % bs or length % bs:
            raise BlockError(
                f"Block device '{self.name}': offset {offset} and length {length} are not "
                f"whole {bs}-byte blocks."
            )
        if offset + length > self.capacity or offset >= self.capacity:
            raise BlockError(
                f"Block device '{self.name}': {length} bytes at offset {offset} go past the "
                f"end of the device ({self.capacity} bytes)."
            )

    def _live(self) -> None:
        if self._closed:
            raise RuntimeError(f"Block device '{self.name}' is closed.")

    def read(self, offset: int, length: int) -> bytes:
        """The ``length`` bytes at ``offset`` (whole blocks, inside the device)."""
        self._live()
        self.check(offset, length)
        if self._memory is not None:
            data = bytes(self._memory[offset : offset + length])
        else:
            parts = []
            done = 0
            while done < length:
                chunk = os.pread(self._fd, length - done, offset + done)
                if not chunk:
                    # The file shrank under us: a host-side problem, not the guest's.
                    raise OSError(
                        f"Block device '{self.name}': {self.path} ended at byte {offset + done}."
                    )
                parts.append(chunk)
                done += len(chunk)
            data = b"".join(parts)
        self.reads += 1
        self.bytes_read += length
        return data

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``offset``; in the backing file before this returns."""
        self._live()
        view = memoryview(data).cast("B")
        length = len(view)
        self.check(offset, length)
        if self._memory is not None:
            self._memory[offset : offset + length] = view
        else:
            done = 0
            while done < length:
                done += os.pwrite(self._fd, view[done:], offset + done)
        self.writes += 1
        self.bytes_written += length

    def cost_ns(self, nbytes: int) -> int:
        """Simulated cost of one request of ``nbytes`` under this device's latency model."""
        return self.latency.cost_ns(nbytes)

    def flush(self) -> None:
        """Make written data durable (fsync for a file; nothing to do in memory)."""
        self._live()
        if self._fd is not None:
            os.fsync(self._fd)
        self.flushes += 1

    def close(self) -> None:
        """Flush and release the backing file; closing twice is harmless."""
        if self._closed:
            return
        try:
            if self._fd is not None:
                os.fsync(self._fd)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path if self._memory is None else "memory"
        return (
            f"BlockDevice({self.name!r}, {where}, {self.blocks} x {self.block_size} bytes"
            f"{', closed' if self._closed else ''})"
        )

    # -- snapshots ------------------------------------------------------------

    def stats(self) -> dict:
        return {
            "reads": self.reads,
            "writes": self.writes,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "flushes": self.flushes,
        }

    def save(self) -> dict:
        """State as plain data.

        An in-memory device saves its content. A file-backed device saves
        the path and geometry only: the file is the content, and a snapshot
        of a run that wrote to it is only restorable against that same file.
        """
        state = {
            "name": self.name,
            "block_size": self.block_size,
            "capacity": self.capacity,
            "stats": self.stats(),
        }
        if self._memory is not None:
            state["kind"] = "memory"
            state["data"] = bytes(self._memory).hex()
        else:
            state["kind"] = "file"
            state["path"] = self.path
        return state

    def restore(self, state: dict) -> None:
        """Return to a saved state; BlockError if it does not fit this device."""
        self._live()
        kind = "memory" if self._memory is not None else "file"
        if state.get("kind") != kind:
            raise BlockError(
                f"Block device '{self.name}': cannot restore a {state.get('kind')} snapshot "
                f"into a {kind} device."
            )
        if state["block_size"] != self.block_size or state["capacity"] != self.capacity:
            raise BlockError(
                f"Block device '{self.name}': snapshot geometry {state['capacity']} bytes x "
                f"{state['block_size']} does not match {self.capacity} x {self.block_size}."
            )
        if kind == "memory":
            data = bytes.fromhex(state["data"])
            if len(data) != self.capacity:
                raise BlockError(f"Block device '{self.name}': snapshot data has the wrong size.")
            self._memory[:] = data
        else:
            if os.path.realpath(state["path"]) != os.path.realpath(self.path):
                raise BlockError(
                    f"Block device '{self.name}': snapshot is of {state['path']}, not {self.path}."
                )
            size = os.fstat(self._fd).st_size
            if size != self.capacity:
                raise BlockError(
                    f"Block device '{self.name}': {self.path} is now {size} bytes, "
                    f"not {self.capacity}."
                )
        for key in self.stats():
            setattr(self, key, int(state["stats"][key]))
