"""I/O streams of a picoprocess, named by URI.

Schemes:
* ``console:`` the guest's console (write; reads see end of stream);
* ``file:NAME`` a file inside the guest's sandbox directory on the host.
  NAME is relative, made of plain components: ``..``, ``.``, empty parts,
  absolute paths and NUL are refused before anything is opened, and every
  component is opened with O_NOFOLLOW relative to the directory before it,
  so no symlink (inside or escaping) is ever followed and nothing outside
  the sandbox is ever touched;
* ``pipe:NAME`` a one-way byte stream between picoprocesses on the same
  simulated host (open with OPEN_WRITE on one side, OPEN_READ on the other);
* ``chan:NAME`` a two-way connection: stream_listen / stream_accept on one
  side, stream_connect on the other.

Pipes and channels are carried by the ``SimHost`` with a latency and a
bandwidth in simulated time: bytes written at t arrive at
max(t, link free) + size / bandwidth + latency. Each direction holds at
most the host's capacity (64 KiB by default, as a Linux pipe), in flight
and unread together: a write takes what fits (a short count) and a writer
that finds no room waits for the reader (EAGAIN with OPEN_NONBLOCK).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.libos.dispatch import ArgumentError
from sim.libos.pico_abi import (
    KIND_CHANNEL,
    KIND_CONSOLE,
    KIND_EVENT,
    KIND_FILE,
    KIND_LISTENER,
    OPEN_APPEND,
    OPEN_CREATE,
    OPEN_READ,
    OPEN_TRUNCATE,
    OPEN_WRITE,
)

DEFAULT_LATENCY_NS = 5_000          # one hop through the host's loopback
DEFAULT_BANDWIDTH = 10_000_000_000  # bytes/s (memory-to-memory copy)
DEFAULT_CAPACITY = 64 << 10         # bytes a pipe holds, in flight or unread (a Linux pipe's)
MAX_NAME = 255
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class StreamError(ArgumentError):
    """A stream call that fails with one of the ABI's errors."""


# -- the simulated host: names and links ---------------------------------------
class SimHost:
    """What picoprocesses on one simulated host share: pipe and channel names."""

    def __init__(self, latency_ns: int = DEFAULT_LATENCY_NS, bandwidth: int = DEFAULT_BANDWIDTH,
                 capacity: int = DEFAULT_CAPACITY, env: Any = None):
        self.latency_ns = latency_ns
        self.bandwidth = bandwidth
        self.capacity = capacity
        self.env = env
        self.listeners: dict[str, Listener] = {}
        self.pipes: dict[str, ByteQueue] = {}

    def at(self, t_ns: int, action: Callable[[], None]) -> None:
        """Run action at simulated time t_ns (now if there is no SimPy environment)."""
        env = self.env
        if env is None or t_ns <= env.now:
            action()
            return
        ev = env.timeout(t_ns - env.now)
        ev.callbacks.append(lambda _ev: action())


class ByteQueue:
    """One direction of a pipe or channel: bytes in flight, then buffered.

    It holds at most ``host.capacity`` bytes, in flight and unread together:
    a writer that finds it full waits until the reader takes some (so a
    guest that writes to a peer that never reads cannot grow the host)."""

    def __init__(self, host: SimHost):
        self.host = host
        self.buf = bytearray()
        self.eof = False                   # writer closed, and that has arrived
        self.link_free_at = 0
        self.in_flight = 0
        self.peak = 0                      # most bytes ever held: in flight + unread
        self.reader_kick: Callable[[], None] = lambda: None
        self.writer_kicks: list[Callable[[], None]] = []
        self.writers = 0
        self.has_had_writer = False

    def space(self) -> int:
        return self.host.capacity - self.in_flight - len(self.buf)

    def send(self, data: bytes, now_ns: int) -> None:
        """Put data on the link; the caller keeps it within space()."""
        start = max(now_ns, self.link_free_at)
        done = start + len(data) * 1_000_000_000 // self.host.bandwidth
        self.link_free_at = done
        self.in_flight += len(data)
        self.peak = max(self.peak, self.in_flight + len(self.buf))
        self.host.at(done + self.host.latency_ns, lambda: self._arrive(data))

    def close_writer(self, now_ns: int) -> None:
        self.writers -= 1
        if self.writers <= 0:
            t = max(now_ns, self.link_free_at) + self.host.latency_ns
            self.host.at(t, self._arrive_eof)

    def _arrive(self, data: bytes) -> None:
        self.in_flight -= len(data)
        self.buf += data
        self.reader_kick()

    def _arrive_eof(self) -> None:
        if self.writers <= 0:
            self.eof = True
            self.reader_kick()

    def take(self, size: int) -> bytes | None:
        """Up to size bytes; b'' at end of stream; None when the reader must wait."""
        if self.buf:
            out = bytes(self.buf[:size])
            del self.buf[:size]
            for kick in self.writer_kicks:  # room for a waiting writer
                kick()
            return out
        return b"" if self.eof else None


# -- handle objects ---------------------------------------------------------------
class Stream:
    kind = 0
    flags = 0

    def read(self, size: int) -> bytes | None:
        raise StreamError("EINVAL", "this stream cannot be read")

    def write(self, data: bytes, now_ns: int) -> int:
        raise StreamError("EINVAL", "this stream cannot be written")

    def signaled(self) -> bool:
        return False

    def attr(self) -> dict[str, int]:
        return {"kind": self.kind, "flags": self.flags}

    def close(self, now_ns: int = 0) -> None:
        pass


class ConsoleStream(Stream):
    kind = KIND_CONSOLE

    def __init__(self, console, flags: int):
        self.console = console
        self.flags = flags

    def read(self, size: int) -> bytes:
        return b""

    def write(self, data: bytes, now_ns: int) -> int:
        return self.console.write(data)

    def signaled(self) -> bool:
        return True


class FileStream(Stream):
    kind = KIND_FILE

    def __init__(self, fd: int, flags: int, max_bytes: int):
        self.fd = fd
        self.flags = flags
        self.pos = 0
        self.max_bytes = max_bytes

    def read(self, size: int) -> bytes:
        if not self.flags & OPEN_READ:
            raise StreamError("EINVAL", "file not opened for reading")
        data = os.pread(self.fd, size, self.pos)
        self.pos += len(data)
        return data

    def write(self, data: bytes, now_ns: int) -> int:
        if not self.flags & OPEN_WRITE:
            raise StreamError("EINVAL", "file not opened for writing")
        if self.flags & OPEN_APPEND:
            self.pos = os.fstat(self.fd).st_size
        if self.pos + len(data) > self.max_bytes:
            raise StreamError("ENOSPC", f"file would exceed the manifest's file_bytes "
                                        f"({self.max_bytes})")
        n = os.pwrite(self.fd, data, self.pos)
        self.pos += n
        return n

    def seek(self, offset: int) -> None:
        if offset > self.max_bytes:
            raise StreamError("EINVAL", f"offset {offset} beyond file_bytes")
        self.pos = offset

    def signaled(self) -> bool:
        return True

    def attr(self) -> dict[str, int]:
        size = os.fstat(self.fd).st_size
        return {"kind": self.kind, "flags": self.flags, "size": size, "offset": self.pos,
                "readable": max(0, size - self.pos)}

    def close(self, now_ns: int = 0) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class PipeEnd(Stream):
    """A pipe's read or write end, or one side of a channel (both)."""

    def __init__(self, kind: int, flags: int, rx: ByteQueue | None, tx: ByteQueue | None):
        self.kind = kind
        self.flags = flags
        self.rx = rx
        self.tx = tx

    def read(self, size: int) -> bytes | None:
        if self.rx is None:
            raise StreamError("EINVAL", "this end cannot be read")
        return self.rx.take(size)

    def write(self, data: bytes, now_ns: int) -> int | None:
        """Bytes written (as many as there is room for); None when full."""
        if self.tx is None:
            raise StreamError("EINVAL", "this end cannot be written")
        if self.tx.eof or self.tx.writers <= 0:
            raise StreamError("EPIPE", "the other end is closed")
        if not data:
            return 0
        n = min(len(data), self.tx.space())
        if n <= 0:
            return None
        self.tx.send(bytes(data[:n]), now_ns)
        return n

    def signaled(self) -> bool:
        return self.rx is not None and (bool(self.rx.buf) or self.rx.eof)

    def attr(self) -> dict[str, int]:
        rx = self.rx
        return {"kind": self.kind, "flags": self.flags,
                "readable": len(rx.buf) if rx else 0, "status": int(bool(rx and rx.eof and not rx.buf))}

    def close(self, now_ns: int = 0) -> None:
        if self.tx is not None:
            self.tx.close_writer(now_ns)
            self.tx = None
        if self.rx is not None:
            # Nobody reads any more: writers get EPIPE.
            self.rx.eof = True
            self.rx.reader_kick = lambda: None
            self.rx = None


class Listener(Stream):
    kind = KIND_LISTENER

    def __init__(self, host: SimHost, name: str, kick: Callable[[], None]):
        self.host = host
        self.name = name
        self.pending: deque[PipeEnd] = deque()
        self.kick = kick
        self.closed = False

    def connect(self, now_ns: int, client_kick: Callable[[], None]) -> PipeEnd:
        up, down = ByteQueue(self.host), ByteQueue(self.host)
        up.writers = down.writers = 1
        client = PipeEnd(KIND_CHANNEL, OPEN_READ | OPEN_WRITE, rx=down, tx=up)
        server = PipeEnd(KIND_CHANNEL, OPEN_READ | OPEN_WRITE, rx=up, tx=down)
        down.reader_kick = client_kick
        up.writer_kicks.append(client_kick)

        def arrive() -> None:
            if self.closed:
                server.close(now_ns)
                return
            self.pending.append(server)
            self.kick()

        self.host.at(now_ns + self.host.latency_ns, arrive)
        return client

    def signaled(self) -> bool:
        return bool(self.pending)

    def attr(self) -> dict[str, int]:
        return {"kind": self.kind, "readable": len(self.pending)}

    def close(self, now_ns: int = 0) -> None:
        self.closed = True
        if self.host.listeners.get(self.name) is self:
            del self.host.listeners[self.name]
        while self.pending:
            self.pending.popleft().close(now_ns)


@dataclass(eq=False)
class EventObject:
    manual_reset: bool
    set_: bool
    kind: int = field(default=KIND_EVENT, init=False)

    def signaled(self) -> bool:
        return self.set_

    def consume(self) -> None:
        if not self.manual_reset:
            self.set_ = False

    def attr(self) -> dict[str, int]:
        return {"kind": KIND_EVENT, "status": int(self.set_)}

    def close(self, now_ns: int = 0) -> None:
        pass


# -- the sandbox --------------------------------------------------------------------
class Sandbox:
    """A host directory the guest's file: URIs live in; nothing outside is touched."""

    def __init__(self, root: str | Path | None):
        self._given = Path(root) if root is not None else None
        self._root: Path | None = None
        self._made = False

    @property
    def root(self) -> Path:
        if self._root is None:
            if self._given is not None:
                self._given.mkdir(parents=True, exist_ok=True)
                self._root = self._given
            else:
                self._root = Path(tempfile.mkdtemp(prefix="picosim-sandbox-"))
                self._made = True
        return self._root

    @staticmethod
    def parts(name: str) -> list[str]:
        if not name or len(name) > 1024:
            raise StreamError("EINVAL", "file: needs a name of 1 to 1024 bytes")
        if name.startswith("/") or "\\" in name or "\0" in name:
            raise StreamError("EPERM", f"file:{name} is not a relative sandbox path")
        parts = name.split("/")
        for p in parts:
            if p in ("", ".", ".."):
                raise StreamError("EPERM", f"file:{name} has a '{p or '//'}' component: "
                                           "it could leave the sandbox")
            if len(p) > MAX_NAME or not _NAME.match(p):
                raise StreamError("EINVAL", f"file:{name}: component {p[:32]!r} has characters "
                                            "outside [A-Za-z0-9_.-]")
        return parts

    def _walk(self, parts: list[str], create_dirs: bool) -> int:
        """An fd of the directory holding the last part (caller closes it)."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for p in parts[:-1]:
                if create_dirs:
                    try:
                        os.mkdir(p, 0o700, dir_fd=fd)
                    except FileExistsError:
                        pass
                nxt = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    def open(self, name: str, flags: int) -> int:
        parts = self.parts(name)
        mode = {OPEN_READ: os.O_RDONLY, OPEN_WRITE: os.O_WRONLY}.get(
            flags & (OPEN_READ | OPEN_WRITE), os.O_RDWR)
        if not flags & (OPEN_READ | OPEN_WRITE):
            raise StreamError("EINVAL", "open a file with OPEN_READ and/or OPEN_WRITE")
        os_flags = mode | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
        if flags & OPEN_CREATE:
            os_flags |= os.O_CREAT
        if flags & OPEN_TRUNCATE and flags & OPEN_WRITE:
            os_flags |= os.O_TRUNC
        try:
            dfd = self._walk(parts, bool(flags & OPEN_CREATE))
            try:
                # O_TRUNC is applied only after the regular-file check below.
                fd = os.open(parts[-1], os_flags & ~os.O_TRUNC, 0o600, dir_fd=dfd)
            finally:
                os.close(dfd)
        except FileNotFoundError:
            raise StreamError("ENOENT", f"file:{name} does not exist") from None
        except OSError as err:
            raise StreamError("EPERM", f"file:{name} cannot be opened "
                                       f"({os.strerror(err.errno or 0)})") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            os.close(fd)
            raise StreamError("EPERM", f"file:{name} is not a plain file of the sandbox")
        if os_flags & os.O_TRUNC:
            os.ftruncate(fd, 0)
        return fd

    def delete(self, name: str) -> None:
        parts = self.parts(name)
        try:
            dfd = self._walk(parts, False)
            try:
                st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise StreamError("EPERM", f"file:{name} is not a plain file")
                os.unlink(parts[-1], dir_fd=dfd)
            finally:
                os.close(dfd)
        except FileNotFoundError:
            raise StreamError("ENOENT", f"file:{name} does not exist") from None
        except OSError as err:
            raise StreamError("EPERM", f"file:{name} cannot be removed "
                                       f"({os.strerror(err.errno or 0)})") from None

    def cleanup(self) -> None:
        if self._made and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
