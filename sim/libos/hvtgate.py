"""hvt hypercalls answered inside the emulator: the network fast path.

``hvtgate.c`` plugs into the vCPU's gate as the server of its `out` ports
and answers WALLTIME, NET_WRITE, NET_READ and POLL without leaving the
emulator (each a ~5 us Python hook otherwise; see docs/performance.md,
"Solo5 personalities"). A POLL that must wait calls back into Python to
wait in place (:meth:`HvtGate.wait_with`), or ends the run there, exactly
after its `out`, for the guest to block as usual. Everything else, and every
unusual case, goes untouched to the Python handlers in hvt.py, which stay
the ABI's reference: with the native library missing, or the gate closed
(calls, instructions or devices traced), they serve every call and the
results are the same, byte for byte.

``hvtgate.c`` builds into a library of its own, ``_hvtgate.so`` beside it
(``make native``; rebuilt on load when stale), and reaches the vCPU's gate
only through ``callgate.h`` and the function pointers handed in here.

The NIC's queue stays the one truth. Before each run :meth:`stage` copies
the oldest frames queued on each net device into that device's buffer for
C; after the run, and before any hypercall Python serves or waits,
:meth:`sync` takes the frames the guest read off the queues and
hands the frames it wrote to the switch, in order. The switch stamps a
frame with the step's start time (``env.now``), which no run changes, so
sending at the end of the run is the same moment as sending in the hook.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sim.cpu import native
from sim.libos.abi import Struct

_HERE = Path(__file__).resolve().parent
SOURCES = (_HERE / "hvtgate.c",)
HEADERS = (native.INCLUDE / "callgate.h",)
LIBRARY = _HERE / f"_hvtgate{native.EXT}"
_lib: ctypes.CDLL | None = None

CALLS = 64  # HG_CALLS: ports 0x500 .. 0x53f
DEVICES = 64  # HG_DEVICES
STAGE = 8  # HG_STAGE: frames staged per device and run
TX_BYTES = 65536

# Serve kinds and the fields whose offsets C reads, in hvtgate.c's order.
KINDS = {"walltime": 1, "net_write": 2, "net_read": 3, "poll": 4}
FIELDS = ("nsecs", "handle", "data", "len", "ret", "timeout_nsecs", "ready_set")
# The width C reads or writes each field with (ret is an i32, the rest 64 bits).
_WIDTH = {"ret": ("i32",), **{f: ("u64", "ptr") for f in FIELDS if f != "ret"}}
_TX_HEAD = struct.Struct("<II")
# int wait(uint64_t timeout_ns): 0 woken in place, 1 wait outside the run, -1 raised.
WAIT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint64)


class HgDevice(ctypes.Structure):
    """Mirrors struct hg_device in hvtgate.c."""

    _fields_ = [
        ("rx", ctypes.c_void_p),  # STAGE frames of max_frame bytes: copies of the queue's head
        ("frame_len", ctypes.c_uint32 * STAGE),
        ("attached", ctypes.c_uint32),
        ("max_frame", ctypes.c_uint32),
        ("pending", ctypes.c_uint32),
        ("staged", ctypes.c_uint32),
        ("taken", ctypes.c_uint32),
        ("ready_bit", ctypes.c_uint32),
    ]


# Where restage writes in a slot: pending and staged (adjacent), frame_len.
_PENDING_AT = HgDevice.pending.offset
assert HgDevice.staged.offset == _PENDING_AT + 4
_LENS_AT = HgDevice.frame_len.offset
_COUNTS = struct.Struct("<II")
_LENS = [struct.Struct(f"<{n}I") for n in range(STAGE + 1)]


class HgState(ctypes.Structure):
    """Mirrors struct hg_state in hvtgate.c."""

    _fields_ = [
        ("gate", ctypes.c_void_p),
        ("clock", ctypes.c_void_p),  # the gate's Clock
        ("now", ctypes.c_void_p),  # callgate.c's cg_now
        ("mem_read", ctypes.c_void_p),
        ("mem_write", ctypes.c_void_p),
        ("reg_read", ctypes.c_void_p),
        ("reg_write", ctypes.c_void_p),
        ("exit_at", ctypes.c_void_p),  # sorted addresses of in/out instructions
        ("exit_next", ctypes.c_void_p),  # the instruction after each
        ("exits", ctypes.c_uint64),
        ("wait_addr", ctypes.c_uint64),  # a POLL that ended the run: its struct,
        ("wait_timeout", ctypes.c_uint64),  # its timeout,
        ("waiting", ctypes.c_uint64),  # and 1 until Python takes it
        ("wait", ctypes.c_void_p),  # WAIT_FN: the wait in place, or NULL
        ("mem_size", ctypes.c_uint64),
        ("exit_ns", ctypes.c_uint64),
        ("served", ctypes.c_uint64),
        ("dirty", ctypes.c_uint64),
        ("count", ctypes.c_uint64 * CALLS),
        ("kind", ctypes.c_uint8 * CALLS),
        ("size", ctypes.c_uint8 * CALLS),
        ("off", (ctypes.c_uint16 * len(FIELDS)) * CALLS),
        ("tx_used", ctypes.c_uint32),
        ("tx_frames", ctypes.c_uint32),
        ("tx", ctypes.c_uint8 * TX_BYTES),
        ("dev", HgDevice * DEVICES),
    ]


def plan(calls: Iterable[tuple[int, str, Struct]]) -> dict[int, tuple[int, int, dict[str, int]]]:
    """nr -> (serve kind, struct size, field offsets) for the calls C can
    serve: those named in KINDS whose fields have the widths C uses. A call
    whose declaration changes shape falls back to Python, never misread."""
    out = {}
    for nr, name, layout in calls:
        kind = KINDS.get(name)
        if kind is None or not 0 <= nr < CALLS or layout.size > 64:
            continue
        offsets = {}
        for field, off in layout.layout():
            if field.name in _WIDTH:
                if field.ctype not in _WIDTH[field.name]:
                    break
                offsets[field.name] = off
        else:
            out[nr] = (kind, layout.size, offsets)
    return out


class _Staged:
    """One attached device: its NIC, its slot, and the buffer C copies
    frames from. The slot's fields are written with struct.pack_into on a
    view of it (one call for several fields, where ctypes takes one each)."""

    __slots__ = ("nic", "rx", "rx_view", "size", "slot", "view")

    def __init__(self, nic: Any, slot: HgDevice):
        self.nic, self.slot = nic, slot
        self.size = nic.max_frame
        self.rx = ctypes.create_string_buffer(STAGE * self.size)
        self.rx_view = memoryview(self.rx).cast("B")
        slot.rx = ctypes.addressof(self.rx)
        self.view = memoryview(slot).cast("B")

    def restage(self) -> None:
        nic, view = self.nic, self.view
        pending = nic.pending
        if not pending:
            _COUNTS.pack_into(view, _PENDING_AT, 0, 0)
            return
        frames = nic.peek(STAGE)
        rx, size = self.rx_view, self.size
        lens = []
        for i, data in enumerate(frames):
            n = len(data)
            rx[i * size:i * size + n] = data
            lens.append(n)
        _LENS[len(lens)].pack_into(view, _LENS_AT, *lens)
        _COUNTS.pack_into(view, _PENDING_AT, pending, len(lens))


class HvtGate:
    """The native fast path of one hvt guest (see the module docstring)."""

    def __init__(self, vcpu: Any, calls: Iterable[tuple[int, str, Struct]], exit_ns: int,
                 devices: dict[int, Any], names: dict[int, str], exits: dict[int, int]):
        self.state = HgState()
        self._lib = load()
        vcpu_lib = native.load()
        gate = vcpu.gate.handle
        if self._lib is None or vcpu_lib is None or gate is None:
            raise RuntimeError("the native libraries are not built")
        st = self.state
        raw = native.uclib()
        st.gate = gate
        st.clock = ctypes.addressof(vcpu.gate.clock)
        st.now = native.address(vcpu_lib.cg_now)
        st.mem_read = native.address(raw.uc_mem_read)
        st.mem_write = native.address(raw.uc_mem_write)
        st.reg_read = native.address(raw.uc_reg_read)
        st.reg_write = native.address(raw.uc_reg_write)
        # A POLL that waits ends the run right after its out (exactly, as
        # hvt._stop_after does): C looks the next instruction up here.
        at = sorted(exits)
        self._exit_at = (ctypes.c_uint64 * len(at))(*at)
        self._exit_next = (ctypes.c_uint64 * len(at))(*(exits[a] for a in at))
        st.exit_at = ctypes.addressof(self._exit_at)
        st.exit_next = ctypes.addressof(self._exit_next)
        st.exits = len(at)
        st.mem_size = vcpu.mem.size
        st.exit_ns = exit_ns
        self.names = names  # nr -> hypercall name, for the counts
        for nr, (kind, size, offsets) in plan(calls).items():
            st.kind[nr], st.size[nr] = kind, size
            for name, off in offsets.items():
                st.off[nr][FIELDS.index(name)] = off
        self._devices = devices  # handle -> NetPort
        self._staged: list[_Staged] = []  # the attached devices
        self._tx = memoryview(st.tx).cast("B")
        self._vcpu = vcpu
        self._wait = None
        vcpu.gate.serve_out(native.address(self._lib.hg_serve), ctypes.addressof(st))

    def attach(self) -> None:
        """Mark the devices whose NIC exists (after the switch is connected)."""
        self._staged = []
        for handle, port in self._devices.items():
            slot = self.state.dev[handle]
            if port.nic is not None and 0 <= handle < DEVICES:
                slot.attached, slot.max_frame = 1, port.nic.max_frame
                slot.ready_bit = port.index
                self._staged.append(_Staged(port.nic, slot))

    def stage(self) -> None:
        """Show C the oldest frames queued on each device. (A queue whose
        length is what C last saw holds the same frames: every frame taken
        off it since went through sync or restage.)"""
        for dev in self._staged:
            if dev.nic.pending != dev.slot.pending:
                dev.restage()

    def sync(self) -> None:
        """Apply what C served since the last sync: frames read come off the
        NIC queues, frames written go to the switch, in order."""
        st = self.state
        if st.dirty:
            st.dirty = 0
            for dev in self._staged:
                slot = dev.slot
                taken = slot.taken
                if taken:
                    recv = dev.nic.recv
                    for _ in range(taken):
                        recv()
                    slot.taken = 0
                    dev.restage()
            if st.tx_frames:
                self._flush_tx()

    def restage(self) -> None:
        """After Python changed a NIC queue inside a run."""
        for dev in self._staged:
            dev.slot.taken = 0
            dev.restage()

    def _flush_tx(self) -> None:
        st = self.state
        tx, pos, end = self._tx, 0, st.tx_used
        st.tx_used = st.tx_frames = 0
        devices = self._devices
        while pos < end:
            handle, length = _TX_HEAD.unpack_from(tx, pos)
            pos += 8
            # C checked what NetMixin.send would have (an attached device, a
            # length the NIC takes), and device events are not traced.
            devices[handle].nic.send(bytes(tx[pos:pos + length]))
            pos += length

    def drain(self) -> int:
        """How many hypercalls C answered since the last drain."""
        st = self.state
        served = st.served
        if served:
            st.served = 0
        return served

    def counts(self) -> dict[str, int]:
        """Hypercalls answered natively over the guest's life, by name."""
        counts = self.state.count
        return {name: counts[nr] for nr, name in self.names.items() if counts[nr]}

    def wait_with(self, wait: Callable[[int], bool]) -> None:
        """Let a POLL that must wait call ``wait(timeout_ns)`` inside the
        run: True when it woke there, False to end the run (the guest then
        blocks as usual). An exception ``wait`` raises is kept, emulation
        stops and the run raises it, as from any Unicorn hook."""
        uc = self._vcpu.uc

        def guarded(timeout_ns: int) -> int:
            try:
                return 0 if wait(timeout_ns) else 1
            except BaseException as err:  # noqa: BLE001 - re-raised by the run
                if uc._hook_exception is None:
                    uc._hook_exception = err
                uc.emu_stop()
                return -1

        self._wait = WAIT_FN(guarded)  # kept alive as long as C may call it
        self.state.wait = ctypes.cast(self._wait, ctypes.c_void_p).value

    def take_wait(self) -> tuple[int, int] | None:
        """(struct address, timeout) of a POLL that ended the run, once."""
        st = self.state
        if not st.waiting:
            return None
        st.waiting = 0
        return st.wait_addr, st.wait_timeout

    def reset_counts(self) -> None:
        ctypes.memset(self.state.count, 0, ctypes.sizeof(self.state.count))

    def close(self) -> None:
        self._vcpu.gate.serve_out(0, 0)


def build(force: bool = False) -> Path:
    """Compile hvtgate.c into _hvtgate.<so> (FileNotFoundError without gcc)."""
    return native.build_library(SOURCES, HEADERS, LIBRARY, force)


def load() -> ctypes.CDLL | None:
    """The library, loaded once; None when it is not built (or stale and
    cannot be rebuilt here): hvt's Python handlers then serve every call."""
    global _lib
    if _lib is None:
        _lib = native.load_library(SOURCES, HEADERS, LIBRARY)
    return _lib


def available() -> bool:
    """True if hvt's native path can be used (both libraries load)."""
    try:
        return load() is not None and native.load() is not None
    except OSError:
        return False


if __name__ == "__main__":
    if sys.argv[1:] != ["--build"]:
        sys.exit("usage: python -m sim.libos.hvtgate --build")
    print(f"built {build(force=True)}")
