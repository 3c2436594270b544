"""The Solo5 hvt personality: a unikernel in a tiny VM, hypercalls via ``out``.

Machine state (the spec, section 3), guest-physical = guest-virtual:

    0x0     - 0xffff     not mapped: NULL faults
    0x1000               GDT: null, code 0x08, data 0x10
    0x2000               PML4; 0x3000 PDPT; 0x4000-0x7fff four PDs
    0x8000               page table of the first 2 MiB
    0x10000              boot info (56 bytes), manifest copy at 0x10038,
                         then the command line; 0x10000-0xfffff read-only
    0x100000 - 0x1fffff  4 KiB pages, read-write (the image starts here)
    0x200000 - mem       2 MiB pages, read-write; RSP = mem - 8

A hypercall is ``outl %eax, $0x500+nr`` with EAX = the address of its
struct. The calls are declared once, in ``HYPERCALLS`` (number, struct with
IN/OUT fields, handler); each is served inside the emulator's hook, so the
guest's next instruction already sees the OUT fields. The network calls are
answered in C where they can be (hvtgate.py; these handlers are the
reference and serve the rest). A POLL with nothing ready waits inside the
hook where the runner allows it (sim/boot.py); otherwise it stops the
slice, as HALT does, and those stops are exact: RIP is moved past the
`out`, found in a capstone sweep of the image at boot.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from unicorn import x86_const as X

from sim.cpu.memory import GuestMemoryError
from sim.cpu.vcpu import Trap
from sim.libos import hvtgate
from sim.libos.abi import Dir, Field, Struct
from sim.libos.dispatch import Block, GuestExit
from sim.libos.hvtgate import HvtGate
from sim.libos.personality import BootError, Personality, show_result
from sim.libos.solo5 import (
    AGAIN,
    EINVAL,
    ETHER_HEADER,
    OK,
    NetPort,
    attach,
    check_memory,
    check_target,
    port_io_exits,
)
from sim.libos.solo5_net import NetMixin

GDT_BASE = 0x1000
PML4, PDPT, PD_BASE, PT_LOW = 0x2000, 0x3000, 0x4000, 0x8000
BOOT_INFO = 0x10000
MFT_ADDR = BOOT_INFO + 56
CMDLINE_MAX = 8192
HYPERCALL_PIO_BASE = 0x500
HYPERCALL_MAX = 64            # ports 0x500..0x53f are hypercalls; numbers without a handler fault
MIN_MEM, MAX_MEM, MEM_ALIGN = 2 << 20, 4 << 30, 2 << 20
MONITOR_ERROR_STATUS = 1      # Solo5's tender exits 1 on a fatal guest error
# A VM exit and entry: ~2,000 cycles (sim/host/profiles.py, SplitX WIOV'11).
VM_EXIT_CYCLES = 2_000

GDT = struct.pack("<3Q", 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF)
BOOT_INFO_LAYOUT = struct.Struct("<QQQQQIIQ")  # mem_size .. net_ring (56 bytes)
P, RW, PS = 0x1, 0x2, 0x80
PAGE, LARGE = 0x1000, 0x20_0000


class GuestError(Exception):
    """The guest broke the hvt ABI: a contained, fatal stop (Solo5's tender aborts)."""


@dataclass(frozen=True)
class Hypercall:
    nr: int
    name: str
    args: Struct
    handler: Callable[[HvtPersonality, int, Any], dict[str, int] | Block | GuestExit]
    doc: str = ""


class _Codec:
    """One struct's bytes <-> field values, compiled once from its Struct.

    ``decode`` gives a named tuple of every field (handlers read ``a.len``;
    traces show ``a._asdict()``). OUT fields are written back as one span,
    from the first OUT field to the end of the last.
    """

    def __init__(self, layout: Struct):
        fmt, pos = "<", 0
        from sim.libos.abi import CTYPES

        outs: list[tuple[str, str, int, int]] = []
        for f, off in layout.layout():
            if off > pos:
                fmt += f"{off - pos}x"
            size, code = CTYPES[f.ctype]
            fmt += code
            pos = off + size
            if f.dir in (Dir.OUT, Dir.INOUT):
                outs.append((f.name, code, off, size))
        if layout.size > pos:
            fmt += f"{layout.size - pos}x"
        self.struct = struct.Struct(fmt)
        self.names = [f.name for f, _ in layout.layout()]
        self.size = layout.size
        self.args = namedtuple(layout.name, self.names)  # type: ignore[misc]
        self._make = self.args._make
        self.out_start = min((off for _, _, off, _ in outs), default=0)
        self.out_end = max((off + size for _, _, off, size in outs), default=0)
        # name -> (codec, offset in the span)
        self.outs = {name: (struct.Struct("<" + code), off - self.out_start)
                     for name, code, off, _ in outs}
        # No padding between the OUT fields: a write of all of them needs no read.
        self.dense = sum(size for *_, size in outs) == self.out_end - self.out_start

    def decode(self, data: bytes) -> Any:
        return self._make(self.struct.unpack(data))

    def out_span(self, span: bytes, values: dict[str, int]) -> bytearray:
        """The OUT span's bytes ``span`` with ``values`` written in."""
        buf = bytearray(span)
        outs = self.outs
        for name, value in values.items():
            codec, off = outs[name]
            codec.pack_into(buf, off, value)
        return buf


def _u64(name: str, d: Dir = Dir.IN, doc: str = "") -> Field:
    return Field(name, "u64", d, doc)


def _ret() -> Field:
    return Field("ret", "i32", Dir.OUT, "OK 0, AGAIN 1, EINVAL 2, EUNSPEC 3")


# -- handlers: (personality, struct address, fields) -> OUT fields | stop ------------
# The fields are a named tuple of the whole struct as the guest left it.
def hc_walltime(p: HvtPersonality, _addr: int, _a: Any) -> dict[str, int]:
    return {"nsecs": p.s.config.time.wall_ns(p.s.now())}


def hc_puts(p: HvtPersonality, _addr: int, a: Any) -> dict[str, int]:
    data = p.guest_bytes(a.data, a.len)
    p.s.console.write(data)
    return {}


def hc_poll(p: HvtPersonality, addr: int, a: Any) -> dict[str, int] | Block:
    ready = p.ready_set()
    if not ready and a.timeout_nsecs:
        if not p.wait_in_place(a.timeout_nsecs):
            return p.poll_wait(addr, a.timeout_nsecs)
        ready = p.ready_set()
    return {"ready_set": ready, "ret": ready.bit_count()}


def _block_io(p: HvtPersonality, a: Any, write: bool) -> dict[str, int]:
    from sim.devices.block import BlockDevice, BlockError

    dev = p.attached.devices.get(a.handle)
    if not isinstance(dev, BlockDevice):
        return {"ret": EINVAL}
    length = a.len
    p.check_guest(a.data, length)
    try:
        dev.check(a.offset, length)
        if write:
            dev.write(a.offset, p.s.mem.read(a.data, length))
        else:
            p.s.mem.write(a.data, dev.read(a.offset, length))
            # All hvt memory is executable: what was read may be code to run.
            p.s.vcpu.code_changed(a.data, a.data + length)
    except BlockError:
        return {"ret": EINVAL}
    p.s.charge(dev.cost_ns(length))
    p.s.emit("dev", f"block.{'write' if write else 'read'}", device=dev.name,
             offset=a.offset, bytes=length)
    return {"ret": OK}


def hc_block_write(p: HvtPersonality, _addr: int, a: Any) -> dict[str, int]:
    return _block_io(p, a, write=True)


def hc_block_read(p: HvtPersonality, _addr: int, a: Any) -> dict[str, int]:
    return _block_io(p, a, write=False)


def hc_net_write(p: HvtPersonality, _addr: int, a: Any) -> dict[str, int]:
    port = p.net_handles.get(a.handle)
    if port is None:
        return {"ret": EINVAL}
    p.check_guest(a.data, a.len)
    if a.len > port.mtu + ETHER_HEADER or a.len < ETHER_HEADER:
        return {"ret": EINVAL}
    return {"ret": OK if p.send(port, p.s.mem.read(a.data, a.len)) else EINVAL}


def hc_net_read(p: HvtPersonality, _addr: int, a: Any) -> dict[str, int]:
    port = p.net_handles.get(a.handle)
    if port is None:
        return {"ret": EINVAL}
    p.check_guest(a.data, a.len)
    frame = p.receive(port, a.len)
    if frame is None:
        return {"ret": AGAIN}
    if isinstance(frame, int):
        return {"ret": EINVAL}
    p.s.mem.write(a.data, frame)
    return {"len": len(frame), "ret": OK}


def hc_halt(p: HvtPersonality, _addr: int, a: Any) -> GuestExit:
    status = a.exit_status & 0xFF
    return GuestExit(status, "halt" if status != 255 else "halt: guest aborted")


POLL = Struct("hvt_hc_poll", (_u64("timeout_nsecs", doc="relative"),
                              _u64("ready_set", Dir.OUT, "bit i: manifest device i ready"),
                              Field("ret", "i32", Dir.OUT, "devices ready")))
_BLOCK = (_u64("handle"), _u64("offset"), Field("data", "ptr"), _u64("len"), _ret())
_NET_IO = (_u64("handle"), Field("data", "ptr"))

# The hvt ABI, declared once: number, struct (IN/OUT fields), handler.
HYPERCALLS: tuple[Hypercall, ...] = (
    Hypercall(1, "walltime", Struct("hvt_hc_walltime", (_u64("nsecs", Dir.OUT),)), hc_walltime,
              "wall clock, ns since the epoch"),
    Hypercall(2, "puts", Struct("hvt_hc_puts", (Field("data", "ptr"), _u64("len"))), hc_puts,
              "write bytes to the console"),
    Hypercall(3, "poll", POLL, hc_poll,
              "block until a net device has a frame or the timeout passes"),
    Hypercall(4, "block_write", Struct("hvt_hc_block_write", _BLOCK), hc_block_write,
              "write whole blocks"),
    Hypercall(5, "block_read", Struct("hvt_hc_block_read", _BLOCK), hc_block_read,
              "read whole blocks"),
    Hypercall(6, "net_write", Struct("hvt_hc_net_write", (*_NET_IO, _u64("len"), _ret())),
              hc_net_write, "send one Ethernet frame"),
    Hypercall(7, "net_read", Struct("hvt_hc_net_read",
                                    (*_NET_IO, _u64("len", Dir.INOUT, "buffer size in, frame size out"),
                                     _ret())),
              hc_net_read, "receive one frame; AGAIN when none is queued"),
    Hypercall(8, "halt", Struct("hvt_hc_halt", (Field("cookie", "ptr"), Field("exit_status", "i32"))),
              hc_halt, "stop; exit_status becomes the run's exit status"),
)


def _table(calls: tuple[Hypercall, ...]) -> dict[int, tuple[Hypercall, _Codec]]:
    table: dict[int, tuple[Hypercall, _Codec]] = {}
    for call in calls:
        if call.nr in table or not 0 < call.nr < HYPERCALL_MAX:
            raise ValueError(f"hypercall {call.name}: number {call.nr} taken or out of range")
        table[call.nr] = (call, _Codec(call.args))
    return table


_TABLE = _table(HYPERCALLS)
_CODECS = {call.args.name: codec for call, codec in _TABLE.values()}


class HvtPersonality(NetMixin, Personality):
    name = "hvt"
    fast: HvtGate | None = None  # the native path, once booted

    def boot(self) -> None:
        s = self.s
        image = s.image
        check_target(image, "hvt")
        mem = check_memory(image, s.config.mem_bytes, MIN_MEM, MAX_MEM, MEM_ALIGN)
        self.mem_size = mem
        self.attached = attach(image, s.config)
        self.find_net_ports()
        s.devices.update({f"solo5.{k}": v for k, v in self.attached.devices.items()})
        for seg in image.segments:
            s.mem.write(seg.vaddr, seg.data)
        s.mem.write(GDT_BASE, GDT)
        self._page_tables(mem)
        args = " ".join(s.config.args[1:]).encode()
        if len(args) >= CMDLINE_MAX:
            raise BootError(f"guest command line is {len(args)} bytes, the limit is "
                            f"{CMDLINE_MAX - 1}")
        mft = self.attached.manifest.to_bytes()[4:]  # the note's descriptor less its padding
        cmdline = MFT_ADDR + ((len(mft) + 7) & ~7)
        s.mem.write(MFT_ADDR, mft)
        s.mem.write(cmdline, args + b"\0")
        s.mem.write(BOOT_INFO, BOOT_INFO_LAYOUT.pack(
            mem, image.kernel_end, s.config.time.clock_hz, cmdline, MFT_ADDR, 0, 0, 0))
        s.vcpu.enter_long_mode(cr3=PML4, gdt_base=GDT_BASE, gdt_limit=len(GDT) - 1,
                               rip=image.entry, rsp=mem - 8, nx=False, cr0=0x80010021, cr4=0x620)
        s.vcpu.set_reg(X.UC_X86_REG_RDI, BOOT_INFO)
        self.next_insn = port_io_exits(image)
        self.exit_ns = VM_EXIT_CYCLES * 1_000_000_000 // s.config.time.clock_hz
        self._calls = {call.name: 0 for call in HYPERCALLS}
        self.fast = self._native_path()

    def _native_path(self) -> HvtGate | None:
        """The hypercalls answered inside the emulator (hvtgate.py); None
        without the native gate, or while device events are traced (the
        Python handlers emit them)."""
        if self.s.tracer.wants("dev") or not self.s.vcpu.gate.native or not hvtgate.available():
            return None
        fast = HvtGate(self.s.vcpu, ((c.nr, c.name, c.args) for c in HYPERCALLS),
                       self.exit_ns, self.net_handles,
                       {c.nr: c.name for c in HYPERCALLS}, self.next_insn)
        fast.wait_with(self.wait_in_place)
        return fast

    def poll_wait(self, addr: int, timeout_ns: int) -> Block:
        """POLL with nothing ready: wait for a frame or the timeout."""
        def resume() -> int:
            now_ready = self.ready_set()
            self.write_outs(POLL, addr, {"ready_set": now_ready, "ret": now_ready.bit_count()})
            return 0

        return Block(until_ns=self.s.now() + timeout_ns, event=self.net_event(), resume=resume,
                     reason="poll")

    def ports_connected(self) -> None:
        if self.fast is not None:
            self.fast.attach()

    def before_run(self) -> None:
        if self.fast is not None:
            self.fast.stage()

    def wait_in_place(self, timeout_ns: int | None, reason: str = "poll") -> bool:
        fast = self.fast
        if fast is None:
            return super().wait_in_place(timeout_ns, reason)
        if self.s.wait_here is None:
            return False
        fast.sync()  # the frames written before the POLL leave first
        if not super().wait_in_place(timeout_ns, reason):
            return False
        fast.stage()
        return True

    def after_run(self) -> int:
        fast = self.fast
        if fast is None:
            return 0
        fast.sync()
        wait = fast.take_wait()
        if wait is not None:  # a POLL ended the run: block as hc_poll does
            self.pending = self.poll_wait(*wait)
        return fast.drain()

    def native_calls(self) -> int:
        return sum(self.fast.counts().values()) if self.fast is not None else 0

    @property
    def calls(self) -> dict[str, int]:
        """Hypercalls served, by name (by Python and natively)."""
        if self.fast is None:
            return dict(self._calls)
        native = self.fast.counts()
        return {name: n + native.get(name, 0) for name, n in self._calls.items()}

    def receive(self, port: NetPort, room: int) -> bytes | int | None:
        frame = super().receive(port, room)
        if frame is not None and self.fast is not None:
            self.fast.restage()  # the queue the native path reads from moved
        return frame

    def _page_tables(self, mem: int) -> None:
        w = self.s.mem.write
        w(PML4, struct.pack("<Q", PDPT | P | RW).ljust(PAGE, b"\0"))
        pdpt = b"".join(struct.pack("<Q", (PD_BASE + i * PAGE) | P | RW) for i in range(4))
        w(PDPT, pdpt.ljust(PAGE, b"\0"))
        pds = bytearray(4 * PAGE)
        struct.pack_into("<Q", pds, 0, PT_LOW | P | RW)
        for i in range(1, mem // LARGE):
            struct.pack_into("<Q", pds, 8 * i, (i * LARGE) | P | RW | PS)
        w(PD_BASE, bytes(pds))
        pt = bytearray(PAGE)
        for i in range(0x10, 0x200):
            struct.pack_into("<Q", pt, 8 * i, (i * PAGE) | P | (RW if i >= 0x100 else 0))
        w(PT_LOW, bytes(pt))

    # -- guest memory at the boundary ---------------------------------------
    def check_guest(self, addr: int, size: int) -> None:
        if addr < 0 or size < 0 or addr + size > self.mem_size:
            raise GuestError(f"Invalid guest access: {size} bytes at {addr:#x} lie outside "
                             f"guest memory (0x0-{self.mem_size:#x})")

    def guest_bytes(self, addr: int, size: int) -> bytes:
        self.check_guest(addr, size)
        return self.s.mem.read(addr, size)

    def write_outs(self, layout: Struct, addr: int, values: dict[str, int]) -> None:
        codec = _CODECS[layout.name]
        if codec.dense and len(values) == len(codec.outs):  # every OUT byte is given
            data = codec.out_span(bytes(codec.out_end - codec.out_start), values)
        else:
            data = codec.out_span(self.s.mem.read(addr + codec.out_start,
                                                  codec.out_end - codec.out_start), values)
        self.s.mem.write(addr + codec.out_start, data)

    # -- traps ------------------------------------------------------------------
    def on_trap(self, trap: Trap) -> bool:
        entry = _TABLE.get(trap.port - HYPERCALL_PIO_BASE)
        if entry is None or trap.kind != "out" or trap.size != 4:
            return self._bad_trap(trap)
        call, codec = entry
        addr = trap.value & 0xFFFF_FFFF
        s = self.s
        fast = self.fast
        if fast is not None and fast.state.dirty:  # what it served comes first
            fast.sync()
        s.charge(self.exit_ns)
        try:
            self.check_guest(addr, codec.size)
            raw = s.mem.read(addr, codec.size)
            args = codec.decode(raw)
            result = call.handler(self, addr, args)
        except GuestError as err:
            return self._fatal(f"{call.name}: {err}")
        except GuestMemoryError as err:  # pragma: no cover - check_guest comes first
            return self._fatal(f"{call.name}: {err}")
        self._calls[call.name] += 1
        if s.tracer.wants("call"):
            s.emit("call", call.name, args=args._asdict(), result=show_result(result))
        if isinstance(result, dict):
            if result:
                start = codec.out_start
                s.mem.write(addr + start, codec.out_span(raw[start:codec.out_end], result))
            return False
        self.pending = result
        return self._stop_after(trap)

    def _bad_trap(self, trap: Trap) -> bool:
        nr = trap.port - HYPERCALL_PIO_BASE
        if trap.kind != "out" or trap.size != 4 or not 0 <= nr < HYPERCALL_MAX:
            return self._fatal(f"Invalid guest port access: port={trap.port:#x} "
                               f"({trap.kind}, {trap.size} bytes) at rip={trap.rip:#x}")
        return self._fatal(f"Invalid guest hypercall: num={nr}")

    def _stop_after(self, trap: Trap) -> bool:
        # Stop exactly after the out: moving RIP inside the hook makes Unicorn
        # leave the translated block at once (see docs/architecture.md on out hooks).
        nxt = self.next_insn.get(trap.rip)
        if nxt is not None:
            self.s.vcpu.set_reg(X.UC_X86_REG_RIP, nxt)
        return True

    def _fatal(self, why: str) -> bool:
        self.s.emit("monitor", "fatal", reason=why)
        self.pending = GuestExit(MONITOR_ERROR_STATUS, f"fault: solo5-hvt: {why}")
        return True

    def resume(self, block: Block) -> None:
        block.resume()

    # -- snapshots (net devices refuse: their switch lives outside the guest) --
    def save_state(self) -> dict:
        return {"calls": self.calls}

    def restore_state(self, state: dict) -> None:
        # Saved counts include the native ones; those start again from 0.
        self._calls = dict(state["calls"])
        if self.fast is not None:
            self.fast.reset_counts()

    def surface_summary(self) -> str:
        used = [f"{name} x{n}" for name, n in self.calls.items() if n]
        return "hypercalls: " + (", ".join(used) if used else "none")

    def close(self) -> None:
        if self.fast is not None:
            self.fast.close()
        super().close()
        self.attached.close()
