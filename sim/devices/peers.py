"""A built-in network peer: answers ARP and ICMP echo, and can ping.

It attaches to a switch like a guest's NIC, with its own MAC and IPv4
address (10.0.0.1 by default; Solo5's network tests put the guest at
10.0.0.2). Frames are encoded here with ``struct``: Ethernet II, ARP for
IPv4 over Ethernet (RFC 826), IPv4 with a 20-byte header (RFC 791) and ICMP
echo (RFC 792), with the ones'-complement checksum of RFC 1071. The peer
answers at once: no processing time, so a round trip is the network's alone.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

import simpy

from sim.devices.net import BROADCAST, ETH_HEADER, NetError, Switch, mac_str

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ARP_REQUEST, ARP_REPLY = 1, 2
IPPROTO_ICMP = 1
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
DEFAULT_TTL = 64

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_ICMP_ECHO = struct.Struct("!BBHHH")
_PAYLOAD_FILL = bytes(range(8, 256)) * 270  # after the 8-byte time stamp, as ping fills
_ECHO_HEAD = struct.Struct("!6s6sH" "BBHHHBBH4s4s" "BBHHH")  # Ethernet + IPv4 + ICMP echo: 42 bytes


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``.

    The ones'-complement sum of 16-bit words is the data, read as one big
    integer, modulo 0xffff (2**16 is 1 modulo 0xffff), except that a
    non-zero sum is never 0 but 0xffff: one big-int remainder instead of a
    Python loop over words.
    """
    if len(data) % 2:
        data = bytes(data) + b"\0"
    whole = int.from_bytes(data, "big")
    total = whole % 0xFFFF
    if total == 0 and whole:
        total = 0xFFFF
    return ~total & 0xFFFF


def _verifies(data: bytes) -> bool:
    """``checksum(data) == 0``: what a receiver checks, in fewer steps."""
    # checksum() pads an odd length with a zero byte, which multiplies the
    # sum by 256: that cannot change whether it is 0 modulo 0xffff.
    whole = int.from_bytes(data, "big")
    return whole % 0xFFFF == 0 and whole != 0


def _icmp_checksum(kind: int, ident: int, seq: int, data: bytes) -> int:
    """``checksum`` of an ICMP echo message, from its header fields and data."""
    padded = data + b"\0" if len(data) % 2 else data
    total = ((kind << 8) + ident + seq + int.from_bytes(padded, "big")) % 0xFFFF
    if total == 0:  # a sum of 0 or 0xffff: only checksum() can tell which
        return checksum(_ICMP_ECHO.pack(kind, 0, 0, ident, seq) + data)
    return ~total & 0xFFFF


def _reply_checksum(request_csum: int) -> int | None:
    """The ICMP checksum of the echo reply to a request that passed its checksum.

    The reply's ICMP message is the request's with the type 8 turned into 0
    and a new checksum: the request's words sum to 0 (mod 0xffff), so the
    reply's sum is minus the two words that changed (RFC 1624), with no pass
    over the data. None in the one case where that sum cannot tell
    ``checksum``'s 0 from 0xffff (the caller then sums the message).
    """
    total = -((ICMP_ECHO_REQUEST << 8) + request_csum) % 0xFFFF
    return None if total == 0 else ~total & 0xFFFF


def ip_bytes(ip: str | bytes) -> bytes:
    if isinstance(ip, bytes) and len(ip) == 4:
        return ip
    try:
        return ipaddress.IPv4Address(ip).packed
    except ValueError:
        raise NetError(f"{ip!r} is not an IPv4 address.") from None


def ip_str(ip: bytes) -> str:
    return str(ipaddress.IPv4Address(ip))


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return _ETH.pack(dst, src, ethertype) + payload


def arp(op: int, sender_mac: bytes, sender_ip: bytes, target_mac: bytes, target_ip: bytes) -> bytes:
    """An ARP packet for IPv4 over Ethernet (28 bytes)."""
    return _ARP.pack(1, ETHERTYPE_IPV4, 6, 4, op, sender_mac, sender_ip, target_mac, target_ip)


def ipv4(
    src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, ttl: int = DEFAULT_TTL
) -> bytes:
    """An IPv4 packet with a 20-byte header, DF set, checksum filled in."""
    header = _IPV4.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, ttl, proto, 0, src, dst)
    csum = checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def icmp_echo(kind: int, ident: int, seq: int, data: bytes) -> bytes:
    """An ICMP echo request (8) or reply (0), checksum filled in."""
    body = _ICMP_ECHO.pack(kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF) + data
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


@dataclass
class PingResults:
    """What one ``ping`` saw; times are simulated nanoseconds."""

    target: str
    count: int
    size: int
    sent: int = 0
    received: int = 0
    duplicates: int = 0
    rtts_ns: list[int] = field(default_factory=list)
    replied_seqs: list[int] = field(default_factory=list)
    unreachable: bool = False  # ARP never resolved the target
    done: bool = False

    @property
    def loss(self) -> float:
        """Fraction of echo requests without a reply (1.0 if none could be sent)."""
        if self.sent == 0:
            return 1.0
        return 1.0 - self.received / self.sent

    @property
    def lost_seqs(self) -> list[int]:
        replied = set(self.replied_seqs)
        return [seq for seq in range(1, self.sent + 1) if seq not in replied]

    def summary(self) -> str:
        """One line in the style of ping's statistics."""
        if self.unreachable:
            return (
                f"0 packets transmitted, 0 received, 100% packet loss "
                f"({self.target}: ARP got no answer, destination host unreachable)"
            )
        pct = f"{self.loss * 100:.4g}%"
        line = f"{self.sent} packets transmitted, {self.received} received"
        if self.duplicates:
            line += f", +{self.duplicates} duplicates"
        line += f", {pct} packet loss"
        if self.rtts_ns:
            lo = min(self.rtts_ns) / 1000
            hi = max(self.rtts_ns) / 1000
            avg = sum(self.rtts_ns) / len(self.rtts_ns) / 1000
            line += f", rtt min/avg/max = {lo:.3f}/{avg:.3f}/{hi:.3f} us"
        return line


class PingPeer:
    """A host on the switch that answers ARP and ICMP echo, and pings.

    ``ping`` is a SimPy process: ARP for the target (``arp_tries`` requests,
    ``arp_timeout_ns`` apart), then ``count`` echo requests ``interval_ns``
    apart, then wait until every reply is in or ``timeout_ns`` after the
    last request. Its value, and ``results``, is a ``PingResults``.
    """

    def __init__(
        self,
        env: simpy.Environment,
        switch: Switch,
        ip: str = "10.0.0.1",
        mac: bytes = b"\x02\x00\x00\x00\x00\x01",
        *,
        name: str = "peer",
        latency_ns: int | None = None,
        bandwidth_bps: int | None = None,
    ):
        if len(mac) != 6:
            raise NetError(f"A MAC address is 6 bytes, not {mac!r}.")
        self.env = env
        self.switch = switch
        self.name = name
        self.ip = ip_bytes(ip)
        self.mac = bytes(mac)
        # The words of our IPv4 headers that never change, summed (see _echo_frame).
        self._ip_words = 0x4500 + 0x4000 + (DEFAULT_TTL << 8 | IPPROTO_ICMP) + int.from_bytes(
            self.ip, "big"
        )
        self.arp_table: dict[bytes, bytes] = {}
        self.results: PingResults | None = None
        self._ip_ident = 0
        self._ping_ident = 0
        self._pinging: _PingState | None = None
        self._arp_waiters: dict[bytes, simpy.Event] = {}
        self.rx_frames = 0
        self.tx_frames = 0
        self.echo_replies_sent = 0
        self.arp_replies_sent = 0
        self.ignored = 0  # frames not for us, malformed, or with a bad checksum
        self.port = switch.attach(self, latency_ns=latency_ns, bandwidth_bps=bandwidth_bps)

    def __repr__(self) -> str:
        return f"PingPeer({self.name!r}, {ip_str(self.ip)}, {mac_str(self.mac)})"

    # -- sending ------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        self.tx_frames += 1
        self.switch.send(self.port, frame)

    def _echo_frame(self, dst_mac: bytes, dst_ip: bytes, kind: int, ident: int, seq: int,
                    data: bytes, icmp_csum: int | None = None) -> bytes:
        """A whole ICMP echo frame, as ``ethernet(ipv4(icmp_echo(...)))`` builds it,
        with one pack for the three headers. ``icmp_csum``: the ICMP checksum
        when the caller already knows it."""
        self._ip_ident = ip_ident = (self._ip_ident + 1) & 0xFFFF
        total = 28 + len(data)
        ident &= 0xFFFF
        seq &= 0xFFFF
        # The IPv4 header checksum from its words' sum: only the length, the
        # ident and the destination change from one packet to the next.
        words = (self._ip_words + total + ip_ident + int.from_bytes(dst_ip, "big")) % 0xFFFF
        if icmp_csum is None:
            icmp_csum = _icmp_checksum(kind, ident, seq, data)
        return _ECHO_HEAD.pack(
            dst_mac, self.mac, ETHERTYPE_IPV4,
            0x45, 0, total, ip_ident, 0x4000, DEFAULT_TTL, IPPROTO_ICMP,
            ~words & 0xFFFF if words else 0,  # the header is never all zeros
            self.ip, dst_ip,
            kind, 0, icmp_csum, ident, seq,
        ) + data

    def arp_request(self, target_ip: bytes) -> None:
        self._send(
            ethernet(
                BROADCAST,
                self.mac,
                ETHERTYPE_ARP,
                arp(ARP_REQUEST, self.mac, self.ip, bytes(6), target_ip),
            )
        )

    # -- receiving ----------------------------------------------------------------

    def deliver(self, frame: bytes) -> None:
        """Called by the switch: handle one frame at once."""
        self.rx_frames += 1
        dst = frame[0:6]
        if dst != self.mac and dst != BROADCAST:
            self.ignored += 1
            return
        ethertype = frame[12] << 8 | frame[13]
        if ethertype == ETHERTYPE_IPV4:
            self._on_ipv4(frame)
        elif ethertype == ETHERTYPE_ARP:
            self._on_arp(frame[ETH_HEADER:])
        else:
            self.ignored += 1

    def _on_arp(self, body: bytes) -> None:
        if len(body) < _ARP.size:
            self.ignored += 1
            return
        htype, ptype, hlen, plen, op, smac, sip, _tmac, tip = _ARP.unpack_from(body)
        if (htype, ptype, hlen, plen) != (1, ETHERTYPE_IPV4, 6, 4):
            self.ignored += 1
            return
        if sip != bytes(4):
            self.arp_table[sip] = smac
            waiter = self._arp_waiters.pop(sip, None)
            if waiter is not None and not waiter.triggered:
                waiter.succeed(smac)
        if op == ARP_REQUEST and tip == self.ip:
            self.arp_replies_sent += 1
            self._send(
                ethernet(
                    smac, self.mac, ETHERTYPE_ARP, arp(ARP_REPLY, self.mac, self.ip, smac, sip)
                )
            )

    def _on_ipv4(self, frame: bytes) -> None:
        if len(frame) < ETH_HEADER + 20:
            self.ignored += 1
            return
        ver_ihl, _tos, total, _ident, frag, _ttl, proto, _csum, sip, dip = _IPV4.unpack_from(
            frame, ETH_HEADER
        )
        ihl = (ver_ihl & 0x0F) * 4
        end = ETH_HEADER + total
        if (
            dip != self.ip
            or proto != IPPROTO_ICMP
            or ver_ihl >> 4 != 4
            or ihl < 20
            or total < ihl
            or end > len(frame)
            or frag & 0x3FFF  # a fragment: not reassembled here
            or not _verifies(frame[ETH_HEADER : ETH_HEADER + ihl])
        ):
            self.ignored += 1
            return
        icmp = frame[ETH_HEADER + ihl : end]
        if len(icmp) < _ICMP_ECHO.size or not _verifies(icmp):
            self.ignored += 1
            return
        kind, code, csum, ident, seq = _ICMP_ECHO.unpack_from(icmp)
        if kind == ICMP_ECHO_REQUEST and code == 0:
            self.echo_replies_sent += 1
            self._send(
                self._echo_frame(
                    frame[6:12], sip, ICMP_ECHO_REPLY, ident, seq, icmp[_ICMP_ECHO.size :],
                    _reply_checksum(csum),
                )
            )
        elif kind == ICMP_ECHO_REPLY and self._pinging is not None:
            self._pinging.on_reply(sip, ident, seq)
        else:
            self.ignored += 1

    # -- pinging ------------------------------------------------------------------

    def ping(
        self,
        target_ip: str,
        count: int,
        interval_ns: int = 1_000_000,
        size: int = 56,
        *,
        timeout_ns: int = 1_000_000_000,
        arp_timeout_ns: int = 1_000_000_000,
        arp_tries: int = 3,
    ) -> simpy.Process:
        """Start pinging ``target_ip``; returns the SimPy process (value: PingResults)."""
        for label, value, minimum in (
            ("count", count, 1),
            ("interval_ns", interval_ns, 0),
            ("size", size, 0),
            ("timeout_ns", timeout_ns, 0),
            ("arp_timeout_ns", arp_timeout_ns, 1),
            ("arp_tries", arp_tries, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise NetError(
                    f"ping {label} must be an integer of at least {minimum}, not {value!r}."
                )
        if size > 65_507:
            raise NetError(f"ping size {size} does not fit in one IPv4 packet.")
        if self._pinging is not None:
            raise NetError(f"Peer '{self.name}' is already pinging.")
        target = ip_bytes(target_ip)
        self._ping_ident = (self._ping_ident + 1) & 0xFFFF
        state = _PingState(self, target, PingResults(ip_str(target), count, size), self._ping_ident)
        self._pinging = state
        self.results = state.results
        return self.env.process(state.run(interval_ns, timeout_ns, arp_timeout_ns, arp_tries))

    def _resolve(self, target: bytes, timeout_ns: int):
        """Generator: wait for an ARP answer or the timeout; value = MAC or None."""
        if target in self.arp_table:
            return self.arp_table[target]
        waiter = self._arp_waiters.get(target)
        if waiter is None:
            waiter = self._arp_waiters[target] = self.env.event()
        self.arp_request(target)
        yield waiter | self.env.timeout(timeout_ns)
        return self.arp_table.get(target)

    # -- snapshots ----------------------------------------------------------------

    def save(self) -> dict:
        """ARP table and counters; refuses while a ping is running (its process is not state)."""
        if self._pinging is not None:
            raise RuntimeError(f"Peer '{self.name}' cannot be saved while it is pinging.")
        return {
            "ip": ip_str(self.ip),
            "mac": self.mac.hex(),
            "arp_table": {ip.hex(): mac.hex() for ip, mac in self.arp_table.items()},
            "ip_ident": self._ip_ident,
            "ping_ident": self._ping_ident,
            "counters": self._counters(),
        }

    def _counters(self) -> dict:
        return {
            "rx_frames": self.rx_frames,
            "tx_frames": self.tx_frames,
            "echo_replies_sent": self.echo_replies_sent,
            "arp_replies_sent": self.arp_replies_sent,
            "ignored": self.ignored,
        }

    def restore(self, state: dict) -> None:
        if self._pinging is not None:
            raise RuntimeError(f"Peer '{self.name}' cannot be restored while it is pinging.")
        if state["ip"] != ip_str(self.ip) or state["mac"] != self.mac.hex():
            raise NetError(f"Snapshot of peer {state['ip']} does not match peer '{self.name}'.")
        self.arp_table = {
            bytes.fromhex(ip): bytes.fromhex(mac) for ip, mac in state["arp_table"].items()
        }
        self._ip_ident = state["ip_ident"]
        self._ping_ident = state["ping_ident"]
        for key, value in state["counters"].items():
            setattr(self, key, value)


class _PingState:
    """One running ping: send times by sequence number, the replies seen."""

    def __init__(self, peer: PingPeer, target: bytes, results: PingResults, ident: int):
        self.peer = peer
        self.target = target
        self.results = results
        self.ident = ident
        self.sent_at: dict[int, int] = {}
        self.replied: set[int] = set()
        self.all_in = peer.env.event()

    def on_reply(self, src_ip: bytes, ident: int, seq: int) -> None:
        res = self.results
        if src_ip != self.target or ident != self.ident or seq not in self.sent_at:
            self.peer.ignored += 1
            return
        if seq in self.replied:
            res.duplicates += 1
            return
        self.replied.add(seq)
        res.received += 1
        res.replied_seqs.append(seq)
        res.rtts_ns.append(self.peer.env.now - self.sent_at[seq])
        if res.received == res.count and not self.all_in.triggered:
            self.all_in.succeed()

    def _send_from(self, seq: int) -> None:
        """Send echo requests from ``seq`` on: all at once without an
        interval, else one now and the next from a timer's callback (a
        timer per ping, but no process to resume for each)."""
        peer, res = self.peer, self.results
        while True:
            now = peer.env.now
            # The payload starts with the send time, as ping's does.
            data = (struct.pack("!Q", now) + _PAYLOAD_FILL[: res.size])[: res.size]
            self.sent_at[seq] = now
            res.sent += 1
            peer._send(peer._echo_frame(self._mac, self.target, ICMP_ECHO_REQUEST, self.ident,
                                        seq, data))
            if seq == res.count:
                self._all_sent.succeed()
                return
            seq += 1
            if self._interval_ns:
                self._next_seq = seq
                peer.env.timeout(self._interval_ns).callbacks.append(self._tick)
                return

    def _tick(self, _timer: simpy.Event) -> None:
        self._send_from(self._next_seq)

    def run(self, interval_ns: int, timeout_ns: int, arp_timeout_ns: int, arp_tries: int):
        peer, env, res = self.peer, self.peer.env, self.results
        try:
            mac = None
            for _ in range(arp_tries):
                mac = yield from peer._resolve(self.target, arp_timeout_ns)
                if mac is not None:
                    break
            if mac is None:
                res.unreachable = True
                return res
            self._mac, self._interval_ns, self._all_sent = mac, interval_ns, env.event()
            self._send_from(1)
            yield self._all_sent
            if res.received < res.count:
                yield self.all_in | env.timeout(timeout_ns)
            return res
        finally:
            res.done = True
            peer._pinging = None
