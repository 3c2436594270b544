"""Writing frames to a standard pcap file, nanosecond variant.

The classic libpcap format (global header, then a 16-byte header per
record) with magic 0xa1b23c4d, which says the second timestamp field counts
nanoseconds: simulated time is integer nanoseconds, so timestamps stay
exact. Link type 1 (Ethernet). tcpdump, tshark, Wireshark and scapy read it.
Written little-endian, as libpcap does on x86.
"""

from __future__ import annotations

import os
import struct
from typing import Self

MAGIC_NS = 0xA1B23C4D
VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
SNAPLEN = 262_144  # tcpdump's default: nothing this simulator sends is cut

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_BUFFER = 1 << 20


class PcapWriter:
    """Append Ethernet frames with nanosecond timestamps to a new pcap file.

    ``epoch_ns`` is added to every timestamp: 0 (the default) makes a
    record's time equal to simulated time since the run began; pass the
    time model's epoch to line captures up with the guest's wall clock.
    """

    def __init__(self, path: str | os.PathLike, *, epoch_ns: int = 0, snaplen: int = SNAPLEN):
        if snaplen <= 0:
            raise ValueError(f"A pcap snap length must be positive, not {snaplen}.")
        self.path = os.fspath(path)
        self.epoch_ns = epoch_ns
        self.snaplen = snaplen
        self.frames = 0
        # A large buffer: one write system call per ~10,000 echo frames, not per 80.
        self._file = open(self.path, "wb", buffering=_BUFFER)  # noqa: SIM115 - closed by close()
        self._file.write(_GLOBAL.pack(MAGIC_NS, *VERSION, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def write(self, time_ns: int, frame: bytes) -> None:
        """One record: ``frame`` seen at simulated time ``time_ns``."""
        if self._file.closed:
            raise RuntimeError(f"pcap file {self.path} is closed.")
        ts = self.epoch_ns + time_ns
        if ts < 0:
            raise ValueError(f"A pcap timestamp cannot be negative ({ts} ns).")
        sec, nsec = divmod(ts, 1_000_000_000)
        n = len(frame)
        if n > self.snaplen:
            kept = self.snaplen
            frame = frame[:kept]
        else:
            kept = n
        self._file.write(_RECORD.pack(sec, nsec, kept, n) + frame)
        self.frames += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
