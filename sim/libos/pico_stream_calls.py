"""The pico ABI's stream calls (URIs console:, file:, pipe:, chan:), as handlers.

A mixin of PicoPersonality: opening, reading, writing, closing and the
listen/accept/connect form of channels. The stream objects themselves are
sim.libos.pico_streams.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from sim.cpu.memory import GuestMemoryError
from sim.libos.dispatch import ArgumentError, OutBuffer, OutStruct
from sim.libos.pico_abi import (
    KIND_PIPE,
    OPEN_APPEND,
    OPEN_CREATE,
    OPEN_NONBLOCK,
    OPEN_READ,
    OPEN_TRUNCATE,
    OPEN_WRITE,
)
from sim.libos.pico_streams import (
    ByteQueue,
    ConsoleStream,
    FileStream,
    Listener,
    PipeEnd,
    Stream,
    StreamError,
)
from sim.libos.pico_threads import Thread, Wait

OPEN_FLAGS = OPEN_READ | OPEN_WRITE | OPEN_CREATE | OPEN_TRUNCATE | OPEN_APPEND | OPEN_NONBLOCK


class StreamCalls:
    """Handlers for the streams family; ``self`` is the PicoPersonality."""

    def stream_handlers(self) -> dict[str, Any]:
        return {
            "stream_open": self.call_stream_open,
            "stream_read": self.call_stream_read,
            "stream_write": self.call_stream_write,
            "handle_close": self.call_handle_close,
            "handle_attr": self.call_handle_attr,
            "stream_seek": self.call_stream_seek,
            "stream_listen": self.call_stream_listen,
            "stream_accept": self.call_stream_accept,
            "stream_connect": self.call_stream_connect,
            "stream_delete": self.call_stream_delete,
        }

    def _scheme(self, uri: str) -> tuple[str, str]:
        scheme, sep, rest = uri.partition(":")
        if not sep:
            raise ArgumentError("EINVAL", f"{uri!r} is not a URI (scheme:name)")
        return scheme, rest

    def _refuse_stream(self, call: str, err: ArgumentError) -> None:
        if err.error == "EPERM":
            self.monitor.refuse(call, str(err))

    def call_stream_open(self, uri: str, uri_len: int, flags: int) -> int:
        if flags & ~OPEN_FLAGS:
            raise ArgumentError("EINVAL", f"unknown open flags {flags:#x}")
        scheme, name = self._scheme(uri)
        if scheme == "console":
            return self._new_handle(ConsoleStream(self.s.console, flags or OPEN_WRITE))
        if scheme == "file":
            self._handle_room()  # ELIMIT before opening anything on the host
            try:
                fd = self.sandbox.open(name, flags)
            except StreamError as err:
                self._refuse_stream("stream_open", err)
                raise
            return self._new_handle(FileStream(fd, flags, self.policy.file_bytes))
        if scheme == "pipe":
            self._chan_name(uri, name)
            rw = flags & (OPEN_READ | OPEN_WRITE)
            if rw not in (OPEN_READ, OPEN_WRITE):
                raise ArgumentError("EINVAL", "open a pipe with exactly one of OPEN_READ, OPEN_WRITE")
            q = self.host.pipes.get(name)
            if q is None:
                q = self.host.pipes[name] = ByteQueue(self.host)
            if rw == OPEN_WRITE:
                h = self._new_handle(PipeEnd(KIND_PIPE, flags, rx=None, tx=q))
                q.writers += 1
                q.has_had_writer = True
                q.writer_kicks.append(self.kick)
                return h
            h = self._new_handle(PipeEnd(KIND_PIPE, flags, rx=q, tx=None))
            q.reader_kick = self.kick
            return h
        raise ArgumentError("EINVAL", f"stream_open does not serve {scheme}: URIs "
                                      "(console:, file:, pipe:; chan: uses stream_connect)")

    @staticmethod
    def _chan_name(uri: str, name: str) -> None:
        if not 1 <= len(name) <= 64 or not all(c.isalnum() or c in "_-." for c in name):
            raise ArgumentError("EINVAL", f"{uri!r}: names are 1-64 characters of [A-Za-z0-9_.-]")

    def call_stream_read(self, handle: int, buf: OutBuffer, size: int) -> int | Wait:
        st = self._obj(handle, Stream)
        data = st.read(size)
        if data is not None:
            return buf.write(data)
        if st.flags & OPEN_NONBLOCK:
            return self.error("EAGAIN")

        def attempt() -> int | None:
            got = st.read(size)
            if got is None:
                return None
            self.regions.check(buf.addr, len(got), write=True)
            return buf.write(got)

        return self._wait_on(st, handle, "read", attempt)

    def call_stream_write(self, handle: int, buf: bytes, size: int) -> int | Wait:
        st = self._obj(handle, Stream)
        self.s.emit("dev", "stream.write", handle=handle, bytes=size)
        try:
            done = st.write(buf, self.s.now())
        except OSError as err:
            raise ArgumentError("ENOSPC", f"host refused the write: {os.strerror(err.errno or 0)}") from None
        if done is not None:
            return done
        if st.flags & OPEN_NONBLOCK:
            return self.error("EAGAIN")

        # A full pipe or channel: wait for room.
        return self._wait_on(st, handle, "write", lambda: st.write(buf, self.s.now()))

    def _wait_on(self, st: Stream, handle: int, reason: str,
                 attempt: Callable[[], int | None]) -> Wait:
        """Wait until attempt() has a result (None: not yet), or the handle
        is closed; errors become the call's result."""
        def poll() -> int | None:
            if self.handles.get(handle) is not st:
                return self.error("EBADH")
            try:
                return attempt()
            except ArgumentError as err:
                return self.error(err.error)
            except GuestMemoryError:
                return self.error("EFAULT")

        return Wait(reason, poll=poll, external=isinstance(st, PipeEnd))

    def call_handle_close(self, handle: int) -> int:
        obj = self._obj(handle)
        if obj is not None and not isinstance(obj, Thread):
            obj.close(self.s.now())
        del self.handles[handle]
        if isinstance(obj, Thread) and obj.handle == handle:
            obj.handle = 0
        return 0

    def call_handle_attr(self, handle: int, attr: OutStruct) -> int:
        obj = self._obj(handle)
        attr.set(**{"kind": 0, "flags": 0, "size": 0, "offset": 0, "readable": 0, "status": 0,
                    **obj.attr()})
        return 0

    def call_stream_seek(self, handle: int, offset: int) -> int:
        self._obj(handle, FileStream).seek(offset)
        return 0

    def _listen_name(self, uri: str) -> str:
        scheme, name = self._scheme(uri)
        if scheme != "chan":
            raise ArgumentError("EINVAL", f"{uri!r}: listen and connect take chan: URIs")
        self._chan_name(uri, name)
        return name

    def call_stream_listen(self, uri: str, uri_len: int) -> int:
        name = self._listen_name(uri)
        if name in self.host.listeners:
            raise ArgumentError("EEXIST", f"{uri!r} already has a listener")
        lst = Listener(self.host, name, self.kick)
        h = self._new_handle(lst)
        self.host.listeners[name] = lst
        return h

    def _accept(self, lst: Listener) -> int:
        conn = lst.pending.popleft()
        assert conn.rx is not None and conn.tx is not None
        conn.rx.reader_kick = self.kick
        conn.tx.writer_kicks.append(self.kick)
        try:
            return self._new_handle(conn)
        except ArgumentError:
            conn.close(self.s.now())
            raise

    def call_stream_accept(self, handle: int) -> int | Wait:
        lst = self._obj(handle, Listener)
        if lst.pending:
            return self._accept(lst)

        def poll() -> int | None:
            if self.handles.get(handle) is not lst:
                return self.error("EBADH")
            if not lst.pending:
                return None
            try:
                return self._accept(lst)
            except ArgumentError as err:
                return self.error(err.error)

        return Wait("accept", poll=poll, external=True)

    def call_stream_connect(self, uri: str, uri_len: int) -> int:
        name = self._listen_name(uri)
        lst = self.host.listeners.get(name)
        if lst is None:
            raise ArgumentError("ENOENT", f"nobody listens on {uri!r}")
        h = self._new_handle(None)
        self.handles[h] = lst.connect(self.s.now(), self.kick)
        return h

    def call_stream_delete(self, uri: str, uri_len: int) -> int:
        scheme, name = self._scheme(uri)
        if scheme != "file":
            raise ArgumentError("EINVAL", "only file: streams can be deleted")
        try:
            self.sandbox.delete(name)
        except StreamError as err:
            self._refuse_stream("stream_delete", err)
            raise
        return 0