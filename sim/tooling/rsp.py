"""The GDB remote serial protocol: framing, checksums, escapes.

Only transport lives here (sim.tooling.gdbstub gives the packets meaning).
A packet is ``$data#cs`` with cs the modulo-256 sum of data as two hex
digits; the receiver answers ``+`` (good) or ``-`` (send it again). A lone
``\\x03`` byte asks a running target to stop.
"""

from __future__ import annotations

import select
import socket

INTERRUPT = "\x03"
MAX_PACKET = 0x4000
MAX_NAKS = 8  # a peer that keeps garbling packets is dropped


class Disconnected(Exception):
    """The debugger went away (EOF, reset, or too many bad packets)."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def frame(data: str | bytes) -> bytes:
    raw = data.encode("latin-1") if isinstance(data, str) else data
    out = bytearray()
    for b in raw:  # escape the bytes that mean something in the framing
        if b in b"#$}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return b"$" + bytes(out) + b"#%02x" % checksum(bytes(out))


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                break
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


class Connection:
    """One debugger connection: reads packets, writes replies, acks both ways."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.naks = 0
        self.closed = False

    def _fill(self, timeout: float | None) -> bool:
        if self.closed:
            raise Disconnected("connection closed")
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return False
        try:
            chunk = self.sock.recv(4096)
        except OSError as err:
            self.close()
            raise Disconnected(str(err)) from None
        if not chunk:
            self.close()
            raise Disconnected("debugger closed the connection")
        self.buf += chunk
        return True

    def poll_interrupt(self) -> bool:
        """Non-blocking: True if the debugger sent ^C while the guest ran."""
        while self._fill(0):
            if INTERRUPT.encode() in self.buf:
                i = self.buf.index(INTERRUPT.encode())
                del self.buf[: i + 1]
                return True
            if len(self.buf) > MAX_PACKET:  # junk while running: drop it
                self.buf.clear()
        return False

    def read_packet(self) -> str:
        """The next well-formed packet's payload (blocks); ^C comes back as INTERRUPT."""
        while True:
            while True:
                # Skip acks and line noise up to a packet start or ^C.
                start = -1
                for i, b in enumerate(self.buf):
                    if b == 0x24:  # $
                        start = i
                        break
                    if b == 0x03:
                        del self.buf[: i + 1]
                        return INTERRUPT
                if start < 0:
                    self.buf.clear()
                else:
                    del self.buf[:start]
                    end = self.buf.find(b"#")
                    if end >= 0 and len(self.buf) >= end + 3:
                        break
                    if len(self.buf) > MAX_PACKET * 2:  # no end in sight: resync
                        del self.buf[:1]
                        continue
                self._fill(None)
            end = self.buf.find(b"#")
            body = bytes(self.buf[1:end])
            cs_text = bytes(self.buf[end + 1:end + 3])
            del self.buf[: end + 3]
            try:
                good = int(cs_text, 16) == checksum(body)
            except ValueError:
                good = False
            if not good:
                self.naks += 1
                self._send(b"-")
                if self.naks > MAX_NAKS:
                    self.close()
                    raise Disconnected("too many corrupt packets")
                continue
            self.naks = 0
            self._send(b"+")
            return unescape(body).decode("latin-1")

    def _send(self, data: bytes) -> None:
        if self.closed:
            raise Disconnected("connection closed")
        try:
            self.sock.sendall(data)
        except OSError as err:
            self.close()
            raise Disconnected(str(err)) from None

    def reply(self, data: str | bytes) -> None:
        """Send a packet; resend on '-', give up after MAX_NAKS."""
        packet = frame(data)
        for _ in range(MAX_NAKS):
            self._send(packet)
            ack = self._wait_ack()
            if ack:
                return
        self.close()
        raise Disconnected("debugger keeps rejecting our packets")

    def _wait_ack(self) -> bool:
        while True:
            while self.buf and self.buf[0] not in b"+-$\x03":
                del self.buf[:1]
            if self.buf:
                b = self.buf[0]
                if b in b"+-":
                    del self.buf[:1]
                    return b == 0x2B
                return True  # a new packet instead of an ack: gdb in no-ack mood
            if not self._fill(10.0):
                return True  # no ack within 10 s: assume received, do not hang

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass
