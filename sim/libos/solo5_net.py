"""Net devices of a Solo5 guest on the virtual switch, shared by hvt and spt.

A manifest net device becomes a ``NetPort``; once the guest is connected to
a switch each port has a ``Nic`` (sim/devices/net.py). The personalities
read and write frames through these helpers, ask what is ready, and wait
for a frame: inside the run where the runner offers it (``wait_in_place``,
GuestServices.wait_here), else with a SimPy event (``net_event``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sim.libos.solo5 import Attached, NetPort

_FOREVER = 1 << 64  # a wait without a timeout (past any 64-bit clock)


class NetMixin:
    """Net devices on a switch, shared by hvt and spt."""

    s: Any
    attached: Attached
    net_handles: dict[int, NetPort]  # manifest index (the guest's handle) -> port
    _frame_waiting: Callable[[], bool] | None = None  # a wait's wake-up test; None: no NIC

    def find_net_ports(self) -> None:
        """Index the manifest's net devices; boot calls it once they are attached."""
        self.net_handles = {i: dev for i, dev in self.attached.devices.items()
                            if isinstance(dev, NetPort)}
        self._ports = tuple(self.net_handles.values())

    def connect(self, switch: Any) -> None:
        """Plug every net device of the manifest into ``switch``."""
        from sim.devices.net import Nic

        self.switch = switch
        for dev in self._ports:
            if dev.nic is None:
                dev.nic = Nic(switch, f"{self.s.name}.{dev.name}", dev.mac, dev.mtu)
        # What a wait in place asks after each event: one NIC's own test
        # where there is one (the common case, and the cheapest).
        nics = [port.nic for port in self._ports]
        self._frame_waiting = nics[0].has_frames if len(nics) == 1 else self.frame_waiting
        self.ports_connected()

    def ports_connected(self) -> None:
        """The NICs exist now (a personality with a native path marks them)."""

    def wait_in_place(self, timeout_ns: int | None, reason: str = "poll") -> bool:
        """A wait for a frame or the timeout (None: no timeout) inside the
        run, where the runner offers it (GuestServices.wait_here): the
        simulation goes on until a frame is queued or the time is up. False
        when it cannot: the call then blocks the guest as usual. ``reason``
        names the wait, as a Block's does."""
        wait_here = self.s.wait_here
        if wait_here is None:
            return False
        return wait_here(self._frame_waiting, _FOREVER if timeout_ns is None else timeout_ns,
                         reason)

    def _nic(self, port: NetPort) -> Any:
        if port.nic is None:
            switch = getattr(self, "switch", None)
            if switch is None:
                from sim.devices.net import Switch

                switch = Switch(self.s.env, seed=self.s.config.seed)
            self.connect(switch)
        return port.nic

    def net_ports(self) -> list[NetPort]:
        return list(self._ports)

    def ready_set(self) -> int:
        ready = 0
        for port in self._ports:
            if port.nic is not None and port.nic.pending:
                ready |= 1 << port.index
        return ready

    def frame_waiting(self) -> bool:
        """A frame is queued on some connected port."""
        return self.ready_set() != 0

    def net_event(self) -> Any:
        ports = self._ports
        if not ports:
            return None
        if len(ports) == 1:
            return self._nic(ports[0]).wait_frame()
        return self.s.env.any_of([self._nic(p).wait_frame() for p in ports])

    def send(self, port: NetPort, frame: bytes) -> bool:
        nic = self._nic(port)
        try:
            nic.send(frame)
        except _net_error():  # evaluated only when send raises
            return False
        if self.s.tracer.wants("dev"):
            self.s.emit("dev", "net.send", device=port.name, bytes=len(frame))
        return True

    def receive(self, port: NetPort, room: int) -> bytes | int | None:
        """The next frame; None when none is queued, its size when it does not fit."""
        frame = self._nic(port).recv()
        if frame is None:
            return None
        if len(frame) > room:
            return len(frame)
        if self.s.tracer.wants("dev"):
            self.s.emit("dev", "net.recv", device=port.name, bytes=len(frame))
        return frame


def _net_error() -> type[Exception]:
    from sim.devices.net import NetError

    return NetError


def _net_error() -> type[Exception]:
    from sim.devices.net import NetError

    return NetError
