"""Network devices: a NIC and a learning L2 switch in simulated time.

The model, in one paragraph. Each endpoint (a guest's ``Nic`` or a built-in
peer) is attached to one switch port. A frame an endpoint sends enters the
switch at once: that is the moment it crosses the switch and is written to
the pcap. The switch learns the sender's MAC on that port, then forwards the
frame to the port that owns the destination MAC, or floods it to every other
port when the destination is broadcast, multicast or not yet learned. Each
port's link from the switch to its endpoint carries one frame at a time:
a frame waits for the link to be free, takes ``len*8/bandwidth`` to
serialise (rounded up to whole ns) and ``latency`` to arrive. So one hop
costs ``latency + serialisation`` when the link is idle, and contention
for a busy port shows up as queueing. Loss, if asked for, is decided per
copy as it is put on a link, by a ``random.Random`` seeded from the run's
seed. Preamble, inter-frame gap, FCS and minimum-size padding are not
modelled; MAC table entries do not age.

Devices know nothing of guests: frames are plain bytes.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

import simpy
from simpy.events import NORMAL, Event

from sim.devices.pcap import PcapWriter

ETH_HEADER = 14
BROADCAST = b"\xff" * 6


class NetError(ValueError):
    """A frame or network parameter that the device refuses, in one sentence."""


class Endpoint(Protocol):
    """What a switch port is attached to: something that takes frames."""

    name: str

    def deliver(self, frame: bytes) -> None: ...


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """``'02:00:00:00:00:02'`` -> 6 bytes; NetError if malformed."""
    parts = text.split(":")
    try:
        if len(parts) != 6 or any(len(p) != 2 for p in parts):
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise NetError(f"'{text}' is not a MAC address like 02:00:00:00:00:01.") from None


def _check_mac(mac: bytes) -> bytes:
    if not isinstance(mac, (bytes, bytearray)) or len(mac) != 6:
        raise NetError(f"A MAC address is 6 bytes, not {mac!r}.")
    return bytes(mac)


def _check_int(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise NetError(f"{name} must be an integer of at least {minimum}, not {value!r}.")
    return value


def serialisation_ns(nbytes: int, bandwidth_bps: int) -> int:
    """Time to put ``nbytes`` on a link of ``bandwidth_bps``, in ns rounded up."""
    return -(-nbytes * 8 * 1_000_000_000 // bandwidth_bps)


@dataclass
class Link:
    """The link from a switch port to its endpoint."""

    endpoint: Endpoint
    latency_ns: int
    bandwidth_bps: int
    free_at: int = 0  # simulated ns when the link has finished its last frame
    copies: int = 0  # frames put on this link (including lost ones)
    lost: int = 0
    delivered: int = 0


class _Copy(Event):
    """One copy of a frame on its way down a link: an event that fires when
    it arrives. Scheduled directly (no Timeout, no closure per frame)."""

    def __init__(self, switch: Switch, ticket: int, when: int, out: int, frame: bytes):
        self.env = switch.env
        self.callbacks = [switch._arrive_callback]
        self._ok = True
        self._value = None
        self.ticket = ticket
        self.when = when
        self.out = out
        self.frame = frame
        self.generation = switch._generation


class Switch:
    """A learning L2 switch; see the module docstring for the timing model.

    ``latency_ns`` and ``bandwidth_bps`` are the defaults for links that
    ``attach`` does not override. ``loss`` is the probability (0 to 1) that
    a copy of a frame is lost on its way out. ``pcap`` gets every frame
    that enters the switch, stamped with the simulated time.
    """

    def __init__(
        self,
        env: simpy.Environment,
        *,
        seed: int,
        latency_ns: int = 5_000,
        bandwidth_bps: int = 10_000_000_000,
        loss: float = 0.0,
        pcap: PcapWriter | None = None,
    ):
        self.env = env
        self.seed = _check_int("seed", seed, -(1 << 63))
        self.latency_ns = _check_int("latency_ns", latency_ns, 0)
        self.bandwidth_bps = _check_int("bandwidth_bps", bandwidth_bps, 1)
        if not isinstance(loss, (int, float)) or isinstance(loss, bool) or not 0.0 <= loss <= 1.0:
            raise NetError(f"loss must be a probability between 0 and 1, not {loss!r}.")
        self.loss = float(loss)
        self.pcap = pcap
        self.links: list[Link] = []
        self.mac_table: dict[bytes, int] = {}
        self._rng = random.Random(seed)
        # In-flight copies by ticket, in the order they were sent. A restore
        # bumps the generation so that deliveries scheduled before it are void.
        self._in_flight: dict[int, _Copy] = {}
        self._ticket = 0
        self._arrive_callback = self._arrive  # bound once: one per frame copy otherwise
        self._generation = 0
        self.frames_in = 0
        self.bytes_in = 0
        self.flooded = 0
        self.filtered = 0  # destination learned on the port the frame came from

    # -- ports ----------------------------------------------------------------

    def attach(
        self,
        endpoint: Endpoint,
        *,
        latency_ns: int | None = None,
        bandwidth_bps: int | None = None,
    ) -> int:
        """Give ``endpoint`` a new port; returns the port number it sends with."""
        lat = self.latency_ns if latency_ns is None else _check_int("latency_ns", latency_ns, 0)
        bw = (
            self.bandwidth_bps
            if bandwidth_bps is None
            else _check_int("bandwidth_bps", bandwidth_bps, 1)
        )
        self.links.append(Link(endpoint, lat, bw))
        return len(self.links) - 1

    def send(self, port: int, frame: bytes) -> None:
        """``frame`` enters the switch from ``port`` now."""
        links = self.links
        if not 0 <= port < len(links):
            raise NetError(f"Switch has no port {port}.")
        n = len(frame)
        if n < ETH_HEADER:
            raise NetError(f"A {n}-byte frame is shorter than an Ethernet header.")
        frame = bytes(frame)
        now = self.env.now
        self.frames_in += 1
        self.bytes_in += n
        if self.pcap is not None:
            self.pcap.write(now, frame)
        mac_table = self.mac_table
        if not frame[6] & 1:  # never learn a group address
            mac_table[frame[6:12]] = port
        out = None if frame[0] & 1 else mac_table.get(frame[0:6])
        if out is None:
            self.flooded += 1
            for other in range(len(links)):
                if other != port:
                    self._transmit(other, frame, n, now)
        elif out == port:
            self.filtered += 1
        else:
            self._transmit(out, frame, n, now)

    def _transmit(self, out: int, frame: bytes, n: int, now: int) -> None:
        link = self.links[out]
        link.copies += 1
        if self.loss and self._rng.random() < self.loss:
            link.lost += 1
            return
        # serialisation_ns(n, bandwidth), inlined: this runs once per frame copy.
        free = link.free_at
        free = (now if now > free else free) - (-n * 8_000_000_000 // link.bandwidth_bps)  # noqa: FURB136 - no call
        link.free_at = free
        self._schedule(free + link.latency_ns - now, out, frame, now)

    def _schedule(self, delay: int, out: int, frame: bytes, now: int) -> None:
        ticket = self._ticket
        self._ticket = ticket + 1
        copy = self._in_flight[ticket] = _Copy(self, ticket, now + delay, out, frame)
        # The same heap entry as env.timeout(delay) (NORMAL priority, next
        # event id), so same-time events keep their order.
        self.env.schedule(copy, NORMAL, delay)

    def _arrive(self, copy: _Copy) -> None:
        if copy.generation != self._generation:
            return
        del self._in_flight[copy.ticket]
        link = self.links[copy.out]
        link.delivered += 1
        link.endpoint.deliver(copy.frame)

    # -- accounting -------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def stats(self) -> dict:
        """Counters; copies == delivered + lost + in_flight always holds."""
        return {
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "flooded": self.flooded,
            "filtered": self.filtered,
            "copies": sum(link.copies for link in self.links),
            "delivered": sum(link.delivered for link in self.links),
            "lost": sum(link.lost for link in self.links),
            "in_flight": self.in_flight,
        }

    # -- snapshots --------------------------------------------------------------

    def save(self) -> dict:
        """MAC table, RNG, counters and in-flight frames (times relative to now)."""
        now = self.env.now
        version, internal, gauss = self._rng.getstate()
        return {
            "ports": [
                {
                    "name": link.endpoint.name,
                    "latency_ns": link.latency_ns,
                    "bandwidth_bps": link.bandwidth_bps,
                    "busy_ns": max(0, link.free_at - now),
                    "copies": link.copies,
                    "lost": link.lost,
                    "delivered": link.delivered,
                }
                for link in self.links
            ],
            "mac_table": {mac.hex(): port for mac, port in self.mac_table.items()},
            "rng": [version, list(internal), gauss],
            "in_flight": [
                [copy.when - now, copy.out, copy.frame.hex()]
                for copy in sorted(self._in_flight.values(), key=lambda c: c.when)
            ],
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "flooded": self.flooded,
            "filtered": self.filtered,
        }

    def restore(self, state: dict) -> None:
        """Return to a saved state; the same endpoints must be attached in the same order."""
        ports = state["ports"]
        if [p["name"] for p in ports] != [link.endpoint.name for link in self.links]:
            raise NetError("Switch snapshot has different ports from this switch.")
        if any(delay < 0 for delay, _out, _frame in state["in_flight"]):
            raise NetError("Switch snapshot has a frame due before the time it was taken.")
        now = self.env.now
        self._generation += 1
        self._in_flight.clear()
        for link, saved in zip(self.links, ports, strict=True):
            link.latency_ns = saved["latency_ns"]
            link.bandwidth_bps = saved["bandwidth_bps"]
            link.free_at = now + saved["busy_ns"]
            link.copies, link.lost, link.delivered = (
                saved["copies"],
                saved["lost"],
                saved["delivered"],
            )
        self.mac_table = {bytes.fromhex(mac): port for mac, port in state["mac_table"].items()}
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        for delay, out, frame in state["in_flight"]:
            self._schedule(delay, out, bytes.fromhex(frame), now)
        self.frames_in = state["frames_in"]
        self.bytes_in = state["bytes_in"]
        self.flooded = state["flooded"]
        self.filtered = state["filtered"]


class Nic:
    """A guest's network interface on a switch port.

    Received frames wait in a bounded FIFO (``queue_limit`` frames; more are
    dropped and counted) until the guest reads them. Like a tap device it
    hands over every frame the switch sends it; filtering by MAC is the
    guest's business. Frames longer than ``mtu + 14`` are refused on send
    and dropped on receive.
    """

    def __init__(
        self,
        switch: Switch,
        name: str,
        mac: bytes,
        mtu: int = 1500,
        *,
        queue_limit: int = 256,
        latency_ns: int | None = None,
        bandwidth_bps: int | None = None,
    ):
        self.switch = switch
        self.env = switch.env
        self.name = name
        self.mac = _check_mac(mac)
        self.mtu = _check_int("mtu", mtu, 68)  # 68: the IPv4 minimum
        self.max_frame = self.mtu + ETH_HEADER  # the longest frame it sends or takes
        self.queue_limit = _check_int("queue_limit", queue_limit, 1)
        self._queue: deque[bytes] = deque()
        self._event: simpy.Event | None = None
        self.tx_frames = self.tx_bytes = 0
        self.rx_frames = self.rx_bytes = 0
        self.rx_dropped = 0
        self.port = switch.attach(self, latency_ns=latency_ns, bandwidth_bps=bandwidth_bps)

    def send(self, frame: bytes) -> None:
        """Put one Ethernet frame (no FCS) on the wire now."""
        n = len(frame)
        if n < ETH_HEADER:
            raise NetError(f"A {n}-byte frame is shorter than the 14-byte Ethernet header.")
        if n > self.max_frame:
            raise NetError(
                f"A {n}-byte frame is longer than {self.name}'s MTU allows ({self.max_frame} bytes)."
            )
        self.tx_frames += 1
        self.tx_bytes += n
        self.switch.send(self.port, frame)

    def deliver(self, frame: bytes) -> None:
        """Called by the switch when a frame arrives."""
        n = len(frame)
        queue = self._queue
        if n > self.max_frame or len(queue) >= self.queue_limit:
            self.rx_dropped += 1
            return
        queue.append(frame)
        self.rx_frames += 1
        self.rx_bytes += n
        if self._event is not None:
            self._wake()

    def _wake(self) -> None:
        event, self._event = self._event, None
        if event is not None and not event.triggered:
            event.succeed(self)

    def recv(self) -> bytes | None:
        """The oldest queued frame, or None when nothing is waiting."""
        return self._queue.popleft() if self._queue else None

    def has_frames(self) -> bool:
        return bool(self._queue)

    def peek(self, limit: int) -> tuple[bytes, ...]:
        """The oldest ``limit`` queued frames, left in the queue."""
        queue = self._queue
        return tuple(queue) if len(queue) <= limit else tuple(islice(queue, limit))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def wait_frame(self) -> simpy.Event:
        """An event that succeeds (with this Nic) once a frame is queued.

        Already triggered if a frame is waiting. Callers waiting at the same
        time share one event, so a guest that polls with a timeout and gives
        up leaves at most one stale event behind.
        """
        if self._queue:
            event = self.env.event()
            event.succeed(self)
            return event
        if self._event is None:
            self._event = self.env.event()
        return self._event

    def stats(self) -> dict:
        return {
            "tx_frames": self.tx_frames,
            "tx_bytes": self.tx_bytes,
            "rx_frames": self.rx_frames,
            "rx_bytes": self.rx_bytes,
            "rx_dropped": self.rx_dropped,
            "pending": self.pending,
        }

    def save(self) -> dict:
        """Queued frames and counters (the port and MAC are checked on restore)."""
        state = self.stats()
        del state["pending"]
        state.update(
            name=self.name,
            mac=self.mac.hex(),
            mtu=self.mtu,
            queue=[frame.hex() for frame in self._queue],
        )
        return state

    def restore(self, state: dict) -> None:
        if state["mac"] != self.mac.hex() or state["mtu"] != self.mtu:
            raise NetError(f"Snapshot of NIC '{state['name']}' does not match NIC '{self.name}'.")
        self._queue = deque(bytes.fromhex(frame) for frame in state["queue"])
        for key in ("tx_frames", "tx_bytes", "rx_frames", "rx_bytes", "rx_dropped"):
            setattr(self, key, state[key])
        if self._queue:
            self._wake()

    def __repr__(self) -> str:
        return f"Nic({self.name!r}, {mac_str(self.mac)}, mtu={self.mtu}, port={self.port})"
