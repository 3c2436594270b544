"""The Solo5 spt personality: the same unikernel as a seccomp-confined process.

Memory (the spec, section 5): the guest's memory is the process's, mapped
from 0x10000 to mem; guest address = process address.

    0x0     - 0xffff     not mapped (the monitor's own tables live here,
                         invisible to the guest): NULL faults
    0x10000 - mem        read-write, no-execute, except the image's segments,
                         which keep their own permissions
    0x11000              boot info (40 bytes), then the manifest copy and
                         the command line
    RSP = mem - 8, RDI = 0x11000

The guest makes raw Linux system calls. ``SYSCALLS`` declares the nine the
seccomp policy admits, once, as data; each handler checks its arguments as
the policy does, and a violation (or any other call) kills the guest the way
SIGSYS would: exit 159. A memory fault is SIGSEGV: exit 139.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from unicorn import x86_const as X

from sim.cpu.memory import GuestMemoryError
from sim.cpu.paging import LARGE, PAGE, Mapping, PageTableBuilder
from sim.cpu.vcpu import Fault, Trap
from sim.libos.dispatch import Block, GuestExit
from sim.libos.personality import BootError, Personality, show_result
from sim.libos.pico import Regions
from sim.libos.solo5 import ETHER_HEADER, NetPort, attach, check_memory, check_target
from sim.libos.solo5_net import NetMixin

GDT_BASE, PML4, TABLES_START, TABLES_END = 0x1000, 0x2000, 0x3000, 0x10000
MEM_BASE = 0x10000
BOOT_INFO = 0x11000
BOOT_INFO_LAYOUT = struct.Struct("<QQQQii")  # mem_size, kernel_end, cmdline, mft, epollfd, timerfd
CMDLINE_MAX = 8192
MIN_MEM, MAX_MEM = 2 << 20, 3 << 30  # CR3 is cut to 32 bits: tables stay low
SIGSYS_STATUS = 159  # 128 + SIGSYS
# A Linux syscall: 604 cycles (Unikraft EuroSys'21, sim/host/profiles.py).
SYSCALL_CYCLES = 604

GDT = struct.pack("<3Q", 0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF)
EFAULT, EAGAIN, EINVAL = 14, 11, 22
ARCH_SET_FS = 0x1002
CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
TFD_TIMER_ABSTIME = 1
EPOLLIN = 0x1
EPOLL_EVENT = struct.Struct("<IQ")  # packed on x86-64: u32 events, u64 data (= the fd)
TIMESPEC = struct.Struct("<qq")


class Killed(Exception):
    """The seccomp policy refuses this call: the process dies with SIGSYS."""


@dataclass(frozen=True)
class Syscall:
    nr: int
    name: str
    handler: Callable[..., int | Block | GuestExit]
    policy: str  # what the seccomp filter admits, for docs and diagnoses
    # The arguments' names, as the handler declares them (for traces).
    params: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = [q.name for q in inspect.signature(self.handler).parameters.values()
                 if q.kind is q.POSITIONAL_OR_KEYWORD][1:]  # after the personality
        object.__setattr__(self, "params", tuple(names))


# -- handlers: (personality, a0..a5) -> result | Block | GuestExit ------------------
def sys_read(p: SptPersonality, fd: int, buf: int, count: int, *_: int) -> int:
    port = p.net_fd(fd, "read")
    p.regions.check(buf, count, write=True)
    frame = p.receive(port, 1 << 20)
    if frame is None:
        return -EAGAIN
    assert isinstance(frame, bytes)
    frame = frame[:count]  # a read from a tap device truncates
    p.s.mem.write(buf, frame)
    return len(frame)


def sys_write(p: SptPersonality, fd: int, buf: int, count: int, *_: int) -> int:
    if fd == 1:
        p.regions.check(buf, count, write=False)
        return p.s.console.write(p.s.mem.read(buf, count))
    port = p.net_fd(fd, "write")
    p.regions.check(buf, count, write=False)
    if count > port.mtu + ETHER_HEADER or count < ETHER_HEADER:
        return -EINVAL
    return count if p.send(port, p.s.mem.read(buf, count)) else -EINVAL


def _block_io(p: SptPersonality, name: str, fd: int, buf: int, count: int, offset: int) -> int:
    dev = p.block_fd(fd, name)
    bs = dev.block_size
    if count != bs or offset % bs or offset > dev.capacity - bs:
        raise Killed(f"{name}(fd={fd}, count={count}, offset={offset}): not exactly one "
                     f"{bs}-byte block inside the device")
    write = name == "pwrite64"
    p.regions.check(buf, count, write=not write)
    if write:
        dev.write(offset, p.s.mem.read(buf, count))
    else:
        p.s.mem.write(buf, dev.read(offset, count))
    p.s.charge(dev.cost_ns(count))
    p.s.emit("dev", f"block.{'write' if write else 'read'}", device=dev.name, offset=offset,
             bytes=count)
    return count


def sys_pread64(p: SptPersonality, fd: int, buf: int, count: int, offset: int, *_: int) -> int:
    return _block_io(p, "pread64", fd, buf, count, offset)


def sys_pwrite64(p: SptPersonality, fd: int, buf: int, count: int, offset: int, *_: int) -> int:
    return _block_io(p, "pwrite64", fd, buf, count, offset)


def sys_arch_prctl(p: SptPersonality, code: int, addr: int, *_: int) -> int:
    if code != ARCH_SET_FS:
        raise Killed(f"arch_prctl(code={code:#x}): only ARCH_SET_FS is allowed")
    p.s.vcpu.set_reg(X.UC_X86_REG_FS_BASE, addr)
    return 0


def sys_clock_gettime(p: SptPersonality, clock: int, tp: int, *_: int) -> int:
    if clock not in (CLOCK_REALTIME, CLOCK_MONOTONIC):
        raise Killed(f"clock_gettime(clock={clock}): only MONOTONIC and REALTIME are allowed")
    now = p.s.now()
    if clock == CLOCK_REALTIME:
        now = p.s.config.time.wall_ns(now)
    p.regions.check(tp, TIMESPEC.size, write=True)
    p.s.mem.write(tp, TIMESPEC.pack(now // 1_000_000_000, now % 1_000_000_000))
    return 0


def sys_exit_group(p: SptPersonality, status: int, *_: int) -> GuestExit:
    return GuestExit(status & 0xFF, "exit_group")


def sys_epoll_pwait(p: SptPersonality, epfd: int, events: int, maxevents: int, timeout: int,
                    *_: int) -> int | Block:
    if epfd != p.epollfd:
        raise Killed(f"epoll_pwait(epfd={epfd}): not the monitor's epoll fd {p.epollfd}")
    maxevents = _i32(maxevents)
    timeout = _i32(timeout)
    if maxevents <= 0:
        return -EINVAL
    p.regions.check(events, maxevents * EPOLL_EVENT.size, write=True)
    n = p.deliver_events(events, maxevents)
    if n or timeout == 0:
        return n
    deadlines = [d for d in (p.timer_deadline,
                             p.s.now() + timeout * 1_000_000 if timeout > 0 else None)
                 if d is not None]
    until = min(deadlines) if deadlines else None
    if until is None and not p.net_ports():
        return -EINVAL  # nothing could ever wake it; the kernel would sleep forever
    if p.wait_in_place(None if until is None else max(0, until - p.s.now()), "epoll_pwait"):
        return p.deliver_events(events, maxevents)
    event = p.net_event()
    return Block(until_ns=until, event=event,
                 resume=lambda: p.deliver_events(events, maxevents), reason="epoll_pwait")


def sys_timerfd_settime(p: SptPersonality, fd: int, flags: int, new: int, old: int,
                        *_: int) -> int:
    if fd != p.timerfd:
        raise Killed(f"timerfd_settime(fd={fd}): not the monitor's timer fd {p.timerfd}")
    if flags & ~TFD_TIMER_ABSTIME:
        return -EINVAL
    p.regions.check(new, 2 * TIMESPEC.size, write=False)
    _isec, _insec, sec, nsec = struct.unpack("<qqqq", p.s.mem.read(new, 2 * TIMESPEC.size))
    if not 0 <= nsec < 1_000_000_000 or sec < 0:
        return -EINVAL
    if old:
        p.regions.check(old, 2 * TIMESPEC.size, write=True)
        p.s.mem.write(old, bytes(2 * TIMESPEC.size))
    value = sec * 1_000_000_000 + nsec
    if value == 0:
        p.timer_deadline = None
    else:
        p.timer_deadline = value if flags & TFD_TIMER_ABSTIME else p.s.now() + value
    return 0


# The spt seccomp policy, declared once: number, name, handler, what it admits.
SYSCALLS: tuple[Syscall, ...] = (
    Syscall(0, "read", sys_read, "fd is a net device"),
    Syscall(1, "write", sys_write, "fd 1 (console) or a net device"),
    Syscall(17, "pread64", sys_pread64, "block fd, exactly one block inside the device"),
    Syscall(18, "pwrite64", sys_pwrite64, "block fd, exactly one block inside the device"),
    Syscall(158, "arch_prctl", sys_arch_prctl, "ARCH_SET_FS only"),
    Syscall(228, "clock_gettime", sys_clock_gettime, "CLOCK_MONOTONIC or CLOCK_REALTIME"),
    Syscall(231, "exit_group", sys_exit_group, "any status"),
    Syscall(281, "epoll_pwait", sys_epoll_pwait, "the monitor's epoll fd"),
    Syscall(286, "timerfd_settime", sys_timerfd_settime, "the monitor's timer fd"),
)
_BY_NR = {c.nr: c for c in SYSCALLS}
assert len(_BY_NR) == len(SYSCALLS), "syscall numbers must be unique"
# A few names for diagnoses of refused calls (x86-64 numbers).
_OTHER_NAMES = {2: "open", 3: "close", 9: "mmap", 10: "mprotect", 12: "brk", 39: "getpid",
                56: "clone", 57: "fork", 59: "execve", 60: "exit", 62: "kill", 257: "openat"}


def _i32(v: int) -> int:
    v &= 0xFFFF_FFFF
    return v - (1 << 32) if v >= 1 << 31 else v


class SptPersonality(NetMixin, Personality):
    name = "spt"

    def boot(self) -> None:
        s = self.s
        image = s.image
        check_target(image, "spt")
        mem = check_memory(image, s.config.mem_bytes, MIN_MEM, MAX_MEM)
        self.mem_size = mem
        self.attached = attach(image, s.config, first_fd=3)
        self.find_net_ports()
        ndev = len(self.attached.manifest.entries) - 1
        self.epollfd, self.timerfd = 3 + ndev, 4 + ndev
        self.fds = {3 + i - 1: dev for i, dev in self.attached.devices.items()}
        s.devices.update({f"solo5.{k}": v for k, v in self.attached.devices.items()})
        self.timer_deadline: int | None = None
        self._map(mem)
        args = " ".join(s.config.args[1:]).encode()
        if len(args) >= CMDLINE_MAX:
            raise BootError(f"guest command line is {len(args)} bytes, the limit is "
                            f"{CMDLINE_MAX - 1}")
        mft_addr = BOOT_INFO + BOOT_INFO_LAYOUT.size
        mft = self.attached.manifest.to_bytes()[4:]
        cmdline = mft_addr + ((len(mft) + 7) & ~7)
        s.mem.write(mft_addr, mft)
        s.mem.write(cmdline, args + b"\0")
        s.mem.write(BOOT_INFO, BOOT_INFO_LAYOUT.pack(mem, image.kernel_end, cmdline, mft_addr,
                                                     self.epollfd, self.timerfd))
        s.mem.write(GDT_BASE, GDT)
        s.vcpu.enter_long_mode(cr3=PML4, gdt_base=GDT_BASE, gdt_limit=len(GDT) - 1,
                               rip=image.entry, rsp=mem - 8, nx=True)
        s.vcpu.set_reg(X.UC_X86_REG_RDI, BOOT_INFO)
        self.syscall_ns = SYSCALL_CYCLES * 1_000_000_000 // s.config.time.clock_hz
        self.calls = {c.name: 0 for c in SYSCALLS}

    def _map(self, mem: int) -> None:
        """Process memory: RW/NX everywhere, the image's segments with their own rights."""
        s = self.s
        tables = PageTableBuilder(s.mem, PML4, TABLES_START, TABLES_END, nx_enabled=True)
        self.regions = Regions()
        cursor = MEM_BASE
        try:
            for seg in s.image.segments:
                start = seg.vaddr & ~(PAGE - 1)
                if start > cursor:
                    tables.map(Mapping(cursor, start, True, False))
                    self.regions.add(cursor, start, True)
                s.mem.write(seg.vaddr, seg.data)
                tables.map(Mapping(start, seg.aligned_end, seg.writable, seg.executable))
                self.regions.add(start, seg.aligned_end, seg.writable)
                cursor = seg.aligned_end
            big = max(cursor, (cursor + LARGE - 1) & ~(LARGE - 1))
            big = min(big, mem)
            if big > cursor:
                tables.map(Mapping(cursor, big, True, False))
            top = mem & ~(LARGE - 1)
            if top > big:
                tables.map(Mapping(big, top, True, False), large_pages=True)
                big = top
            if mem > big:
                tables.map(Mapping(big, mem, True, False))
            self.regions.add(cursor, mem, True)
        except MemoryError:
            raise BootError(f"{s.image.name}: the image is too large for the spt page tables")

    # -- fds ----------------------------------------------------------------------
    def net_fd(self, fd: int, call: str) -> NetPort:
        dev = self.fds.get(fd)
        if not isinstance(dev, NetPort):
            raise Killed(f"{call}(fd={fd}): fd is not a net device")
        return dev

    def block_fd(self, fd: int, call: str) -> Any:
        dev = self.fds.get(fd)
        if dev is None or isinstance(dev, NetPort):
            raise Killed(f"{call}(fd={fd}): fd is not a block device")
        return dev

    def deliver_events(self, addr: int, maxevents: int) -> int:
        """Write the ready epoll events (net fds, then the timer); their count."""
        ready: list[int] = []
        for fd, dev in self.fds.items():
            if isinstance(dev, NetPort) and dev.nic is not None and self.ready_set() >> dev.index & 1:
                ready.append(fd)
        if self.timer_deadline is not None and self.s.now() >= self.timer_deadline:
            ready.append(self.timerfd)
        ready = ready[:maxevents]
        if ready:
            self.s.mem.write(addr, b"".join(EPOLL_EVENT.pack(EPOLLIN, fd) for fd in ready))
        return len(ready)

    # -- traps -----------------------------------------------------------------
    def on_trap(self, trap: Trap) -> bool:
        s = self.s
        if trap.kind != "syscall":
            # Port I/O in a process is a #GP: SIGSEGV.
            self.pending = GuestExit(139, f"fault: {trap.kind} port {trap.port:#x} at "
                                          f"rip={trap.rip:#x} in a process (SIGSEGV)")
            return True
        nr, *args = s.vcpu.syscall_args()
        call = _BY_NR.get(nr)
        s.charge(self.syscall_ns)
        try:
            if call is None:
                raise Killed(f"syscall {nr} ({_OTHER_NAMES.get(nr, 'unknown')}) is not allowed")
            result = call.handler(self, *args)
        except Killed as why:
            s.emit("monitor", "deny", call=call.name if call else nr, reason=str(why))
            self.pending = GuestExit(SIGSYS_STATUS, f"fault: killed by seccomp (SIGSYS): {why}")
            return True
        except GuestMemoryError:
            result = -EFAULT
        self.calls[call.name] += 1
        if s.tracer.wants("call"):
            s.emit("call", call.name, args=dict(zip(call.params, args)), result=show_result(result))
        if isinstance(result, int):
            s.vcpu.set_reg(X.UC_X86_REG_RAX, result & 0xFFFF_FFFF_FFFF_FFFF)
            return False
        self.pending = result
        return True

    def resume(self, block: Block) -> None:
        self.s.vcpu.set_reg(X.UC_X86_REG_RAX, block.resume() & 0xFFFF_FFFF_FFFF_FFFF)

    def on_fault(self, fault: Fault) -> GuestExit | None:
        # A process has no IDT of its own: the kernel turns faults into signals.
        return self.fault_exit(fault, "the process is killed by a signal")

    # -- snapshots (net devices refuse: their switch lives outside the guest) --
    def save_state(self) -> dict:
        return {"calls": dict(self.calls), "timer_deadline": self.timer_deadline}

    def restore_state(self, state: dict) -> None:
        self.calls = dict(state["calls"])
        self.timer_deadline = state["timer_deadline"]

    def on_halt(self) -> GuestExit:
        # hlt is privileged: in a process it is a #GP, which Linux delivers as SIGSEGV.
        return GuestExit(139, "fault: hlt is a privileged instruction in a process (SIGSEGV)")

    def surface_summary(self) -> str:
        used = [f"{name} x{n}" for name, n in self.calls.items() if n]
        return "syscalls: " + (", ".join(used) if used else "none")

    def close(self) -> None:
        super().close()
        self.attached.close()
