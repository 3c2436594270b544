"""A GDB remote stub for one guest (``sim boot IMAGE --gdb PORT``).

The stub listens on 127.0.0.1 only and waits for GDB before the guest runs
its first instruction. It drives the guest through the normal slice loop,
so simulated time, traces and instruction counts are those of an
undebugged run; it only adds a stop before an instruction:

* breakpoints (Z0/Z1) are Unicorn code hooks on one address each, which
  cost nothing while the guest runs elsewhere; a hit stops the vCPU before
  the instruction (``VCPU.debug_stop``, counted exactly);
* a single step (s, vCont;s) is a code hook on every address for the
  duration of one instruction;
* a guest fault is reported as the POSIX signal that the exit status also
  uses (SIGSEGV for #PF/#GP/#SS, SIGFPE for #DE, SIGILL for #UD) before the
  personality decides what it means; the guest's exit is ``W`` with its
  status.

Memory requests use guest-physical addresses; every personality in the
tree maps guest memory 1:1, so they are also the guest's virtual addresses.
A debugger that disconnects (or garbles packets past repair) is treated as
a detach: the guest runs on to its end.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

from unicorn import UC_HOOK_CODE, UcError
from unicorn import x86_const as X

from sim.cpu.memory import GuestMemoryError
from sim.tooling.errors import ToolingError
from sim.tooling.rsp import INTERRUPT, Connection, Disconnected

SIGINT, SIGILL, SIGTRAP, SIGFPE, SIGKILL, SIGSEGV = 2, 4, 5, 8, 9, 11
FAULT_SIGNAL = {0: SIGFPE, 19: SIGFPE, 16: SIGFPE, 6: SIGILL, 1: SIGTRAP, 3: SIGTRAP}
KILL_STATUS = 128 + SIGKILL

# Register file as GDB sees it (target.xml below): (name, bits, unicorn id or kind)
_GPR = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
REGS: list[tuple[str, int, Any]] = (
    [(n, 64, getattr(X, f"UC_X86_REG_{n.upper()}")) for n in _GPR]
    + [("rip", 64, X.UC_X86_REG_RIP), ("eflags", 32, X.UC_X86_REG_EFLAGS)]
    + [(n, 32, getattr(X, f"UC_X86_REG_{n.upper()}")) for n in ("cs", "ss", "ds", "es", "fs", "gs")]
    + [(f"st{i}", 80, getattr(X, f"UC_X86_REG_FP{i}")) for i in range(8)]
    + [("fctrl", 32, X.UC_X86_REG_FPCW), ("fstat", 32, X.UC_X86_REG_FPSW),
       ("ftag", 32, X.UC_X86_REG_FPTAG), ("fiseg", 32, X.UC_X86_REG_FCS),
       ("fioff", 32, X.UC_X86_REG_FIP), ("foseg", 32, X.UC_X86_REG_FDS),
       ("fooff", 32, X.UC_X86_REG_FDP), ("fop", 32, X.UC_X86_REG_FOP)]
    + [(f"xmm{i}", 128, getattr(X, f"UC_X86_REG_XMM{i}")) for i in range(16)]
    + [("mxcsr", 32, X.UC_X86_REG_MXCSR),
       ("fs_base", 64, X.UC_X86_REG_FS_BASE), ("gs_base", 64, X.UC_X86_REG_GS_BASE)]
)


def _target_xml() -> str:
    def reg(name: str, bits: int, kind: str, group: str = "") -> str:
        g = f' group="{group}"' if group else ""
        return f'  <reg name="{name}" bitsize="{bits}" type="{kind}"{g}/>\n'

    core = "".join(reg(n, 64, "code_ptr" if n == "rip" else
                       ("data_ptr" if n in ("rsp", "rbp") else "int64")) for n in _GPR + ["rip"])
    core += reg("eflags", 32, "int32")
    core += "".join(reg(n, 32, "int32") for n in ("cs", "ss", "ds", "es", "fs", "gs"))
    core += "".join(reg(f"st{i}", 80, "i387_ext") for i in range(8))
    core += "".join(reg(n, 32, "int", "float") for n in
                    ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"))
    sse = "".join(reg(f"xmm{i}", 128, "uint128", "vector") for i in range(16))
    sse += reg("mxcsr", 32, "int", "vector")
    seg = reg("fs_base", 64, "int") + reg("gs_base", 64, "int")
    return ('<?xml version="1.0"?>\n<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
            "<target version=\"1.0\">\n<architecture>i386:x86-64</architecture>\n"
            f'<feature name="org.gnu.gdb.i386.core">\n{core}</feature>\n'
            f'<feature name="org.gnu.gdb.i386.sse">\n{sse}</feature>\n'
            f'<feature name="org.gnu.gdb.i386.segments">\n{seg}</feature>\n</target>\n')


TARGET_XML = _target_xml()


def listen(port: int) -> socket.socket:
    """A loopback listening socket; ToolingError (one line) if the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
    except OSError as err:
        sock.close()
        raise ToolingError(f"cannot listen for GDB on 127.0.0.1:{port}: "
                           f"{err.strerror or err}") from None
    return sock


class _Resume(Exception):
    pass


class GdbStub:
    def __init__(self, guest: Any, server: socket.socket):
        self.guest = guest
        self.vcpu = guest.vcpu
        self.uc = guest.vcpu.uc
        self.server = server
        self.conn: Connection | None = None
        self.breakpoints: dict[int, int] = {}  # address -> hook handle
        self.stop_signal: int | None = SIGTRAP  # stopped at entry
        self.kill = False
        self._skip: int | None = None
        self._step_hook: int | None = None
        self._step_first = False
        inner_step = guest.step

        def step(now_ns: int, max_insns: int = 1_000_000) -> Any:
            if self.conn is not None and self.stop_signal is None:
                try:
                    if self.conn.poll_interrupt():
                        self.stop_signal = SIGINT
                except Disconnected:
                    self.detach()
            if self.stop_signal is not None and self.conn is not None:
                self.serve()
            if self.kill:
                self.detach()
                return guest.stop(KILL_STATUS, "killed by the debugger")
            result = inner_step(now_ns, max_insns)
            if result.exited is not None:
                self.exited(result.exited.status)
            return result

        guest.step = step
        personality = guest.personality
        inner_fault = personality.on_fault

        def on_fault(fault: Any) -> Any:
            if self.conn is not None:
                self._end_step()
                self.stop_signal = FAULT_SIGNAL.get(fault.vector, SIGSEGV)
                self.serve()
                if self.kill:
                    from sim.libos.dispatch import GuestExit

                    return GuestExit(KILL_STATUS, "killed by the debugger")
            return inner_fault(fault)

        personality.on_fault = on_fault

    # -- connection -------------------------------------------------------
    def wait_for_debugger(self) -> None:
        sock, _addr = self.server.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.close()
        self.conn = Connection(sock)

    def detach(self) -> None:
        for handle in self.breakpoints.values():
            self.uc.hook_del(handle)
        self.breakpoints.clear()
        self._end_step()
        self.stop_signal = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.uc.ctl_flush_tb()

    def exited(self, status: int) -> None:
        if self.conn is None:
            return
        try:
            self.conn.reply(f"X{SIGKILL:02x}" if self.kill else f"W{status & 0xFF:02x}")
        except Disconnected:
            pass
        self.detach()

    def close(self) -> None:
        self.server.close()
        if self.conn is not None:
            self.conn.close()

    # -- the command loop ---------------------------------------------------
    def serve(self) -> None:
        """Answer packets while the guest is stopped, until c, s, k or D."""
        assert self.conn is not None
        try:
            if self._pending_reply:
                self.conn.reply(self.stop_reply())
            self._pending_reply = True
            while True:
                packet = self.conn.read_packet()
                if packet == INTERRUPT:
                    continue  # already stopped
                try:
                    answer = self.handle(packet)
                except _Resume:
                    self.stop_signal = None
                    return
                except (ValueError, IndexError, struct.error):
                    answer = "E01"  # malformed request: say so, stay stopped
                if answer is not None:
                    self.conn.reply(answer)
        except Disconnected:
            self.detach()

    _pending_reply = False  # the first stop is announced by '?', later ones here

    def stop_reply(self) -> str:
        return f"T{self.stop_signal or SIGTRAP:02x}thread:1;"

    def handle(self, p: str) -> str | None:
        if p == "?":
            return self.stop_reply()
        if p.startswith("qSupported"):
            return "PacketSize=4000;qXfer:features:read+;swbreak+;hwbreak+;vContSupported+"
        if p.startswith("qXfer:features:read:"):
            annex, span = p[len("qXfer:features:read:"):].split(":", 1)
            if annex != "target.xml":
                return "E00"
            off, length = (int(x, 16) for x in span.split(","))
            chunk = TARGET_XML[off:off + length]
            return ("m" if off + length < len(TARGET_XML) else "l") + chunk
        if p in ("qC",):
            return "QC1"
        if p == "qfThreadInfo":
            return "m1"
        if p == "qsThreadInfo":
            return "l"
        if p == "qAttached":
            return "1"
        if p.startswith(("Hg", "Hc", "T")):
            return "OK"
        if p == "g":
            return "".join(self._reg_hex(i) for i in range(len(REGS)))
        if p.startswith("G"):
            return self._write_all(bytes.fromhex(p[1:]))
        if p.startswith("p"):
            n = int(p[1:], 16)
            return self._reg_hex(n) if n < len(REGS) else "E45"
        if p.startswith("P"):
            n, value = p[1:].split("=")
            return self._write_reg(int(n, 16), bytes.fromhex(value))
        if p.startswith("m"):
            addr, length = (int(x, 16) for x in p[1:].split(","))
            try:
                return self.vcpu.mem.read(addr, min(length, 0x4000)).hex()
            except GuestMemoryError:
                return "E14"
        if p.startswith("M"):
            head, data = p[1:].split(":", 1)
            addr, length = (int(x, 16) for x in head.split(","))
            raw = bytes.fromhex(data)
            if len(raw) != length:
                return "E01"
            return self._write_mem(addr, raw)
        if p[:2] in ("Z0", "Z1"):
            return self._add_break(int(p[3:].split(",")[0], 16))
        if p[:2] in ("z0", "z1"):
            return self._remove_break(int(p[3:].split(",")[0], 16))
        if p == "vCont?":
            return "vCont;c;C;s;S"
        if p.startswith("vCont;"):
            action = p[6:].split(";")[0].split(":")[0]
            return self._resume(step=action[0] in "sS")
        if p.startswith(("c", "C")):
            return self._resume(step=False, addr=p[1:] if p[0] == "c" else "")
        if p.startswith(("s", "S")):
            return self._resume(step=True, addr=p[1:] if p[0] == "s" else "")
        if p == "k" or p.startswith("vKill"):
            self.kill = True
            raise _Resume
        if p.startswith("D"):
            assert self.conn is not None
            self.conn.reply("OK")
            self.detach()
            raise _Resume
        return ""  # unsupported: GDB falls back to something we support

    # -- registers ------------------------------------------------------------
    def _reg_hex(self, n: int) -> str:
        _name, bits, reg = REGS[n]
        value = self.uc.reg_read(reg)
        if bits == 80:
            mantissa, exponent = value
            return struct.pack("<QH", mantissa, exponent).hex()
        return (value & ((1 << bits) - 1)).to_bytes(bits // 8, "little").hex()

    def _write_reg(self, n: int, raw: bytes) -> str:
        if n >= len(REGS):
            return "E45"
        _name, bits, reg = REGS[n]
        if len(raw) != bits // 8:
            return "E01"
        if bits == 80:
            mantissa, exponent = struct.unpack("<QH", raw)
            self.uc.reg_write(reg, (mantissa, exponent))
        else:
            self.uc.reg_write(reg, int.from_bytes(raw, "little"))
        return "OK"

    def _write_all(self, raw: bytes) -> str:
        off = 0
        for n, (_name, bits, _reg) in enumerate(REGS):
            size = bits // 8
            if off + size > len(raw):
                break
            if self._write_reg(n, raw[off:off + size]) != "OK":
                return "E01"
            off += size
        return "OK"

    # -- memory and breakpoints ----------------------------------------------------
    def _write_mem(self, addr: int, raw: bytes) -> str:
        try:
            self.vcpu.mem.write(addr, raw)
        except GuestMemoryError:
            return "E14"
        self.vcpu.code_changed(addr, addr + len(raw))  # retranslate, recount
        return "OK"

    def _add_break(self, addr: int) -> str:
        if addr not in self.breakpoints:
            self.breakpoints[addr] = self.uc.hook_add(UC_HOOK_CODE, self._on_break,
                                                      begin=addr, end=addr)
            self._retranslate(addr)
        return "OK"

    def _remove_break(self, addr: int) -> str:
        handle = self.breakpoints.pop(addr, None)
        if handle is not None:
            self.uc.hook_del(handle)
            self._retranslate(addr)
        return "OK"

    def _retranslate(self, addr: int) -> None:
        # Hooks apply to code translated after they were added.
        try:
            self.uc.ctl_remove_cache(addr, addr + 1)
        except UcError:
            self.uc.ctl_flush_tb()

    def _on_break(self, uc: Any, address: int, _size: int, _user: Any) -> None:
        if address == self._skip:
            self._skip = None
            return
        if address in self.breakpoints:
            self.stop_signal = SIGTRAP
            self.vcpu.debug_stop()

    # -- resuming -----------------------------------------------------------------
    def _resume(self, step: bool, addr: str = "") -> None:
        if addr:
            self.uc.reg_write(X.UC_X86_REG_RIP, int(addr, 16))
        rip = self.vcpu.rip
        self._skip = rip if rip in self.breakpoints else None
        if step:
            self._step_first = True
            self._step_hook = self.uc.hook_add(UC_HOOK_CODE, self._on_step, begin=1, end=0)
            self.uc.ctl_flush_tb()
        raise _Resume

    def _on_step(self, uc: Any, address: int, _size: int, _user: Any) -> None:
        if self._step_first:
            self._step_first = False
            return
        self._end_step()
        self.stop_signal = SIGTRAP
        self.vcpu.debug_stop()

    def _end_step(self) -> None:
        if self._step_hook is not None:
            self.uc.hook_del(self._step_hook)
            self._step_hook = None
            self.uc.ctl_flush_tb()


def attach(guest: Any, port: int, run: Callable[[], Any],
           on_listen: Callable[[int], None] | None = None) -> Callable[[], Any]:
    """Listen now (so a port in use fails before anything runs); wait for GDB at run."""
    server = listen(port)
    stub = GdbStub(guest, server)

    def debugged() -> Any:
        try:
            if on_listen is not None:
                on_listen(port)
            stub.wait_for_debugger()
            return run()
        finally:
            stub.close()

    return debugged
