"""The pico personality: a picoprocess behind the pico ABI.

Memory layout (guest-physical = guest-virtual):

    0x0       - 0xfff      not mapped: NULL faults
    0x1000                 GDT (null, 64-bit code 0x08, data 0x10)
    0x2000                 PML4; further tables from 0x20000 to 0xfffff
    0x10000                boot info (struct pico_boot_info), read-only
    0x100000  - kernel_end the image, with its segments' own permissions
    heap      - stack-64K  read-write, no-execute
    guard page             not mapped: a stack overflow faults
    stack     - mem_size   read-write, no-execute; RSP starts at the top

Code pages are never writable and data pages never executable, so the
monitor's W^X holds for the whole run.
"""

from __future__ import annotations

import bisect
import struct
from collections import Counter
from typing import Any

from unicorn import x86_const as X
from unicorn.unicorn_const import UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH

from sim.cpu.callgate import ServeKind
from sim.cpu.memory import GuestMemoryError
from sim.cpu.paging import LARGE, PAGE, Mapping, PageTableBuilder
from sim.cpu.vcpu import Trap
from sim.libos.abi import Abi
from sim.libos.dispatch import (
    ArgumentError,
    Block,
    Dispatcher,
    GuestExit,
    OutBuffer,
    OutStruct,
    Served,
    Switch,
)
from sim.libos.monitor import Monitor, PolicyError, find_policy
from sim.libos.personality import BootError, Personality, StateNotSaveable
from sim.libos.pico_abi import (
    BOOT_INFO,
    PICO_ABI,
)
from sim.libos.pico_stream_calls import StreamCalls
from sim.libos.pico_streams import (
    Sandbox,
    SimHost,
    Stream,
)
from sim.libos.pico_thread_calls import ThreadCalls
from sim.libos.pico_threads import Scheduler, Wait
from sim.libos.pico_vm import VirtualMemory

GDT_BASE = 0x1000
PML4 = 0x2000
BOOT_INFO_ADDR = 0x10000
TABLES_START, TABLES_END = 0x20000, 0x100000
IMAGE_BASE = 0x100000
STACK_BYTES = 256 << 10
MIN_MEM = 2 << 20
MAX_MEM = 3 << 30  # CR3 is cut to 32 bits in Unicorn; keep everything below 4 GiB

# Flat 64-bit code (DPL0, L=1) and data descriptors.
GDT = struct.pack("<3Q", 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF)


class Regions:
    """The guest's mapped ranges and their permissions, for pointer checks."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._spans: list[tuple[int, int, bool]] = []

    def save(self) -> list[list]:
        return [list(span) for span in self._spans]

    def restore(self, spans: list[list]) -> None:
        self._spans = [(a, b, bool(w)) for a, b, w in spans]
        self._starts = [a for a, _b, _w in self._spans]

    def add(self, start: int, end: int, writable: bool) -> None:
        i = bisect.bisect(self._starts, start)
        self._starts.insert(i, start)
        self._spans.insert(i, (start, end, writable))

    def remove(self, start: int, end: int) -> None:
        """Forget [start, end): spans overlapping it are cut."""
        starts: list[int] = []
        spans: list[tuple[int, int, bool]] = []
        for s, e, w in self._spans:
            pieces = [(s, e)] if e <= start or s >= end else \
                [(a, b) for a, b in ((s, start), (end, e)) if b > a]
            for a, b in pieces:
                starts.append(a)
                spans.append((a, b, w))
        self._starts, self._spans = starts, spans

    def check(self, addr: int, size: int, write: bool) -> None:
        if size == 0:
            return
        if addr < 0 or size < 0 or addr + size > 1 << 47:
            raise GuestMemoryError(addr, size, "overflows the address space")
        i = bisect.bisect(self._starts, addr) - 1
        if i < 0:
            raise GuestMemoryError(addr, size, "is not mapped")
        start, end, writable = self._spans[i]
        if addr >= end:
            raise GuestMemoryError(addr, size, "is not mapped")
        if addr + size > end:
            raise GuestMemoryError(addr, size, "straddles the end of a mapping")
        if write and not writable:
            raise GuestMemoryError(addr, size, "points at read-only memory")

    def check_pointer(self, addr: int, size: int, write: bool) -> None:
        self.check(addr, size, write)


DEADLOCK_STATUS = 126  # every thread waits and nothing can ever wake one


class PicoPersonality(StreamCalls, ThreadCalls, Personality):
    name = "pico"
    abi: Abi = PICO_ABI

    def boot(self) -> None:
        s = self.s
        mem = s.config.mem_bytes
        if not MIN_MEM <= mem <= MAX_MEM:
            raise BootError(f"pico guests need between {MIN_MEM >> 20} and {MAX_MEM >> 20} MiB of memory")
        opts = s.config.options
        module = opts.get("pico.abi_module")
        if module is not None:
            self.abi = module.abi
        try:
            self.policy = find_policy(s.image.path, s.image.pico_manifest, opts.get("pico.policy"))
        except PolicyError as err:
            raise BootError(str(err)) from None
        image = s.image
        stack_base = mem - STACK_BYTES
        heap_start = _page_up(image.kernel_end)
        heap_end = stack_base - PAGE  # guard page below the stack
        if image.kernel_end > heap_end:
            raise BootError(f"image needs {image.kernel_end:#x} bytes but memory is {mem:#x}")
        # The boot heap (malloc's arena) takes a quarter of the free memory;
        # the rest is the vm area, mapped only as vm_alloc hands it out.
        boot_end = heap_start + (heap_end - heap_start) // 4
        boot_end = max(heap_start + PAGE, boot_end & ~(LARGE - 1) if boot_end & ~(LARGE - 1) > heap_start
                       else boot_end & ~(PAGE - 1))
        self.regions = Regions()
        tables = PageTableBuilder(s.mem, PML4, TABLES_START, TABLES_END, nx_enabled=True)
        s.mem.write(GDT_BASE, GDT)
        tables.map(Mapping(BOOT_INFO_ADDR, BOOT_INFO_ADDR + PAGE, writable=False, executable=False))
        self.regions.add(BOOT_INFO_ADDR, BOOT_INFO_ADDR + PAGE, False)
        for seg in image.segments:
            start = seg.vaddr & ~(PAGE - 1)
            s.mem.write(seg.vaddr, seg.data)
            tables.map(Mapping(start, seg.aligned_end, seg.writable, seg.executable))
            self.regions.add(start, seg.aligned_end, seg.writable)
        _map_mixed(tables, heap_start, boot_end)
        self.regions.add(heap_start, boot_end, True)
        tables.map(Mapping(stack_base, mem, writable=True, executable=False))
        self.regions.add(stack_base, mem, True)
        self.tables = tables
        s.mem.write(BOOT_INFO_ADDR, BOOT_INFO.encode(
            {"mem_size": mem, "heap_start": heap_start, "heap_end": boot_end, "stack_top": mem}))
        s.vcpu.enter_long_mode(cr3=PML4, gdt_base=GDT_BASE, gdt_limit=len(GDT) - 1,
                               rip=image.entry, rsp=mem, nx=True)
        s.vcpu.set_reg(X.UC_X86_REG_RDI, BOOT_INFO_ADDR)
        self.cmdline = " ".join(s.config.args).encode() + b"\0"
        uc = s.vcpu.uc
        self._args = s.vcpu.syscall_args
        self._nr = s.vcpu.syscall_nr
        self.vm = VirtualMemory(boot_end, heap_end, self.policy.memory, tables, self.regions,
                                zero=lambda a, n: s.mem.write(a, bytes(n)),
                                flush=self._flush)
        self.monitor = Monitor(self.policy, self.abi, s.emit)
        self.sched = Scheduler(uc, self.policy.threads, s.now)
        self.host: SimHost = opts.get("pico.host") or SimHost()
        if self.host.env is None:
            self.host.env = s.env
        self.sandbox = Sandbox(opts.get("pico.sandbox"))
        self.handles: dict[int, Any] = {}
        self._next_handle = 1
        self._futex: dict[int, list[Wait]] = {}
        self._kick_event: Any = None
        handlers = self.handlers()
        if module is not None and module.handlers is not None:
            handlers.update(module.handlers(self))
        handlers = {k: v for k, v in handlers.items() if k in self.abi.by_name}
        self.dispatcher = Dispatcher(self.abi, handlers, s.mem, policy=self.regions,
                                     admit=self.monitor.admit)
        self._fast = self._fast_calls(handlers)
        self._serve_clocks_natively(handlers)
        raw = s.vcpu.raw
        self._rax = lambda value: raw.write(X.UC_X86_REG_RAX, value)

    def _flush(self, code: bool) -> None:
        uc = self.s.vcpu.uc
        uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        if code:
            uc.ctl_flush_tb()

    # -- traps ---------------------------------------------------------------
    def _fast_calls(self, handlers: dict[str, Any]) -> dict[int, tuple]:
        """Calls served without the general decoder: plain 64-bit arguments,
        never blocking, allowed by the manifest whatever their arguments.
        Only used while calls are not traced (the general path emits the
        events; a sink may be attached after boot, so on_trap asks every
        time). Always-admitted calls with plain arguments emit nothing else."""
        return {
            c.nr: (c.name, handlers[c.name], tuple(a.name for a in c.args),
                   self.abi.cost_classes[c.cost])
            for c in self.abi.calls
            if not c.blocking and all(a.ctype == "u64" for a in c.args)
            and self.monitor.admits_always(c)
        }

    def _serve_clocks_natively(self, handlers: dict[str, Any]) -> None:
        """Let the vCPU answer the clock reads the manifest always admits,
        unless a variant ABI gave them handlers of its own."""
        stock = {"monotonic": (ServeKind.MONOTONIC, self.call_clock_monotonic),
                 "wall": (ServeKind.WALL, self.call_clock_wall)}
        gate = self.s.vcpu.gate
        for c in self.abi.calls:
            if c.reads_clock is None or not self.monitor.admits_always(c):
                continue
            kind, handler = stock[c.reads_clock]
            if handlers.get(c.name) == handler:
                gate.serve(c.nr, kind, self.abi.cost_classes[c.cost])

    def served_natively(self, counts: dict[int, int]) -> None:
        for nr, n in counts.items():
            self.monitor.used[self.abi.by_nr[nr].name] += n

    def on_trap(self, trap: Trap) -> bool:
        if trap.kind != "syscall":
            self.pending = GuestExit(139, f"fault: port I/O ({trap.kind} port {trap.port:#x}) "
                                          "is not part of the pico ABI")
            return True
        nr = self._nr()
        # The hot path: attribute lookups and frames are a measurable part of it.
        fast = None if "call" in self.s.tracer.kinds else self._fast.get(nr)
        if fast is not None:
            name, handler, names, cost = fast
            if names:  # by name: a handler's parameters need not follow the declaration's order
                result = handler(**dict(zip(names, self._args()[1:])))
            else:  # no arguments: the call number was all there was to read
                result = handler()
            self.monitor.used[name] += 1
            self.s.clock.cost_ns += cost
            if type(result) is int:
                self._rax(result)
                return False
            return self._after(result)
        if self.s.env is not None and self.host.env is None:
            self.host.env = self.s.env  # run_alone sets the environment after boot
        served = self.dispatcher.serve(nr, tuple(self._args()[1:]))
        if served.call is not None:
            self.s.charge(self.abi.cost_classes[served.call.cost])
        self.trace_call(served)
        result = served.result
        if isinstance(result, int):
            self._rax(result)
            return False
        return self._after(result)

    def _after(self, result: Any) -> bool:
        """A result that is not a plain value: wait, switch threads or exit."""
        if isinstance(result, Block):  # a variant ABI's handler may still block this way
            result = Wait(result.reason, deadline=result.until_ns, timeout_result=0,
                          poll=(lambda b=result: b.resume() if self.s.now() >= (b.until_ns or 0) else None))
        if isinstance(result, Wait):
            self.sched.block(result)
            result = Switch("block")
        self.pending = result
        return True

    def trace_call(self, served: Served) -> None:
        if isinstance(served.result, Wait):
            served = Served(served.call, Block(served.result.deadline, reason=served.result.reason),
                            served.args, served.denied)
        super().trace_call(served)

    # -- snapshots ---------------------------------------------------------------
    def save_state(self) -> dict:
        """Memory map, allocator, console handles, counters; one thread only."""
        from sim.libos.pico_streams import ConsoleStream

        if self.sched.alive != 1 or self.sched.current.tid != 1:
            raise StateNotSaveable("the pico guest runs several threads: snapshots need "
                                   "a single thread")
        if any(self._futex.values()):
            raise StateNotSaveable("the pico guest has futex waiters: cannot snapshot it now")
        handles = {}
        for h, obj in self.handles.items():
            if not isinstance(obj, ConsoleStream):
                raise StateNotSaveable(f"the pico guest has handle {h} open on a "
                                       f"{type(obj).__name__}: only console handles can be saved")
            handles[str(h)] = obj.flags
        return {
            "regions": self.regions.save(),
            "vm": self.vm.save(),
            "tables_next": self.tables.save(),
            "handles": handles,
            "next_handle": self._next_handle,
            "next_tid": self.sched.next_tid,
            "switches": self.sched.switches,
            "monitor": {"used": dict(sorted(self.monitor.used.items())),
                        "denied": dict(sorted(self.monitor.denied.items()))},
        }

    def restore_state(self, st: dict) -> None:
        from sim.libos.pico_streams import ConsoleStream

        self.regions.restore(st["regions"])
        self.vm.restore(st["vm"])
        self.tables.restore(st["tables_next"])
        self.handles = {int(h): ConsoleStream(self.s.console, flags)
                        for h, flags in st["handles"].items()}
        self._next_handle = st["next_handle"]
        self.sched.next_tid = st["next_tid"]
        self.sched.switches = st["switches"]
        self.monitor.used = Counter(st["monitor"]["used"])
        self.monitor.denied = Counter(st["monitor"]["denied"])

    # -- scheduling (called by Guest.step, outside the emulator) ---------------
    def switch(self, rotate: bool = True) -> Block | GuestExit | None:
        """Run the next ready thread; a Block when all wait; None to go on."""
        sched = self.sched
        if not sched.threads:
            return GuestExit(sched.current.status & 0xFF, "exit: the last thread ended")
        t = sched.pick(rotate)
        if t is None:
            deadline = sched.earliest_deadline()
            external = sched.waits_externally()
            if deadline is None and not (external and self.s.env is not None):
                return GuestExit(DEADLOCK_STATUS, "deadlock: every thread waits and nothing "
                                                  "can wake one")
            return Block(until_ns=deadline, event=self._kick() if external else None,
                         reason="all threads wait")
        if sched.switch_to(t):
            self.s.charge(self.abi.cost_classes["thread"])
            self.s.emit("call", "thread_switch", args={"to": t.tid}, result=0)
        return None

    def resume(self, block: Block) -> Block | GuestExit | None:
        return self.switch(rotate=False)

    def preempt(self) -> None:
        """The slice ended: round robin to the next ready thread."""
        if len(self.sched.threads) > 1:
            self.switch(rotate=True)

    def _kick(self) -> Any:
        env = self.s.env
        if env is None:
            return None
        if self._kick_event is None or self._kick_event.triggered:
            self._kick_event = env.event()
        return self._kick_event

    def kick(self) -> None:
        """Something another guest did may have ended a wait here."""
        ev = self._kick_event
        if ev is not None and not ev.triggered:
            ev.succeed()

    def surface_summary(self) -> str:
        return self.monitor.summary()

    def close(self) -> None:
        super().close()
        now = self.s.now()
        for obj in list(self.handles.values()):
            if obj is not None:
                obj.close(now)
        self.handles.clear()
        self.sandbox.cleanup()

    # -- helpers for handlers (and variant ABIs' handlers) ----------------------
    def error(self, name: str) -> int:
        return self.abi.error_value(name)

    def read_guest(self, addr: int, size: int) -> bytes:
        """Bytes of guest memory, checked like any decoded pointer."""
        self.regions.check(addr, size, write=False)
        return self.s.mem.read(addr, size)

    def _handle_room(self) -> None:
        if len(self.handles) >= self.policy.handles:
            self.monitor.refuse("handle", f"handle limit {self.policy.handles} reached")
            raise ArgumentError("ELIMIT", f"handle limit {self.policy.handles} reached")

    def _new_handle(self, obj: Any) -> int:
        if len(self.handles) >= self.policy.handles:
            self.monitor.refuse("handle", f"handle limit {self.policy.handles} reached")
            raise ArgumentError("ELIMIT", f"handle limit {self.policy.handles} reached")
        h = self._next_handle
        self._next_handle += 1
        self.handles[h] = obj
        return h

    def _obj(self, handle: int, kind: type | tuple[type, ...] = object) -> Any:
        obj = self.handles.get(handle)
        if obj is None or not isinstance(obj, kind):
            raise ArgumentError("EBADH", f"handle {handle} is not an open handle of that kind")
        return obj

    def write_stream(self, handle: int, data: bytes) -> int:
        return self._obj(handle, Stream).write(data, self.s.now())

    # -- handlers (one per declared call) -------------------------------------
    def handlers(self) -> dict[str, Any]:
        """Every declared call's handler, by name (the dispatcher checks that
        the table and the declaration agree)."""
        return {
            "exit": self.call_exit,
            "console_write": self.call_console_write,
            "clock_monotonic": self.call_clock_monotonic,
            "clock_wall": self.call_clock_wall,
            "sleep_until": self.call_sleep_until,
            "random_bytes": self.call_random_bytes,
            "cmdline": self.call_cmdline,
            "process_info": self.call_process_info,
            "debug_log": self.call_debug_log,
            "vm_alloc": self.call_vm_alloc,
            "vm_free": self.call_vm_free,
            "vm_protect": self.call_vm_protect,
            **self.thread_handlers(),
            **self.stream_handlers(),
        }

    # process
    def call_exit(self, status: int) -> GuestExit:
        return GuestExit(status & 0xFF, "exit")

    def call_console_write(self, buf: bytes, size: int) -> int:
        self.s.emit("dev", "console.write", bytes=size)
        return self.s.console.write(buf)

    def call_clock_monotonic(self) -> int:
        return self.s.now()

    def call_clock_wall(self) -> int:
        return self.s.config.time.wall_ns(self.s.now())

    def call_sleep_until(self, deadline_ns: int) -> int | Wait:
        if deadline_ns <= self.s.now():
            return 0
        return Wait("sleep", deadline=deadline_ns, timeout_result=0)

    def call_random_bytes(self, buf: OutBuffer, size: int) -> int:
        return buf.write(self.s.rng.randbytes(size))

    def call_cmdline(self, buf: OutBuffer, size: int) -> int:
        buf.write(self.cmdline[:size])
        return len(self.cmdline)

    def call_process_info(self, info: OutStruct) -> int:
        info.set(mem_quota=self.vm.quota, mem_used=self.vm.used, vm_start=self.vm.start,
                 vm_end=self.vm.end, threads=self.sched.alive, thread_limit=self.policy.threads,
                 handles=len(self.handles), handle_limit=self.policy.handles)
        return 0

    def call_debug_log(self, buf: str, size: int) -> int:
        self.s.emit("dev", "debug.log", text=buf)
        return 0

    # memory
    def call_vm_alloc(self, size: int, prot: int) -> int:
        try:
            return self.vm.alloc(size, prot)
        except ArgumentError as err:
            if err.error == "ENOMEM":
                self.monitor.refuse("vm_alloc", str(err), size=size)
            raise

    def call_vm_free(self, addr: int, size: int) -> int:
        self.vm.free(addr, size)
        return 0

    def call_vm_protect(self, addr: int, size: int, prot: int) -> int:
        self.vm.protect(addr, size, prot)
        return 0


def _page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


def _map_mixed(tables: PageTableBuilder, start: int, end: int) -> None:
    """Map [start, end) RW/NX with 2 MiB pages where aligned, 4 KiB elsewhere."""
    big_start = (start + LARGE - 1) & ~(LARGE - 1)
    big_end = end & ~(LARGE - 1)
    if big_start >= big_end:
        tables.map(Mapping(start, end, True, False))
        return
    if start < big_start:
        tables.map(Mapping(start, big_start, True, False))
    tables.map(Mapping(big_start, big_end, True, False), large_pages=True)
    if big_end < end:
        tables.map(Mapping(big_end, end, True, False))
