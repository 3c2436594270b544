"""A guest: an image on a vCPU with memory, devices and a personality.

``Guest.step`` runs one slice starting at a given simulated time and says
what happened in simulated terms: instructions retired, time used, host
crossings, whether the guest now waits (until when, or for what event), and
whether it stopped. The single-guest runner (sim.boot) and the host model
(sim.host) both drive guests through this one method.
"""

from __future__ import annotations

from collections.abc import Callable
import re
from dataclasses import dataclass
from typing import Any

from unicorn import UC_HOOK_BLOCK

from sim.cpu.disasm import Disassembler
from sim.cpu.vcpu import VCPU, ExitKind
from sim.devices.console import Console
from sim.image import Image
from sim.libos.dispatch import Block, GuestExit, Switch
from sim.libos.personality import BUDGET_STATUS, BootConfig, GuestServices, Personality
from sim.libos.registry import personality_for
from sim.trace import NULL_TRACER, Event, Tracer

DEFAULT_MAX_INSNS = 2_000_000_000
DEFAULT_SLICE = 1_000_000


@dataclass(frozen=True)
class Stopped:
    status: int
    reason: str
    fault: bool = False


# Built on every step: plain slots, since a frozen dataclass costs ~1 us to
# build against ~0.3 us (treat it as read-only all the same).
@dataclass(slots=True)
class Step:
    insns: int
    busy_ns: int
    crossings: int
    block_until: int | None = None
    wake: Any = None
    exited: Stopped | None = None


class Guest:
    def __init__(self, image: Image, config: BootConfig | None = None, *, name: str = "guest",
                 abi: str | None = None, tracer: Tracer = NULL_TRACER,
                 on_console: Callable[[bytes], None] | None = None,
                 max_insns: int = DEFAULT_MAX_INSNS, env: Any = None,
                 personality: type[Personality] | None = None):
        self.name = name
        self.image = image
        self.config = config or BootConfig()
        self.tracer = tracer
        self.max_insns = max_insns
        self.vcpu = VCPU(self.config.mem_bytes)
        time = self.config.time
        self.vcpu.gate.set_time(*time.ns_ratio, time.epoch_ns)
        self.vcpu.gate.serve_tsc(time.clock_hz)  # the same as _tsc, natively
        self.console = Console(on_console)
        self.services = GuestServices(name, image, self.vcpu, self.config, self.console, tracer)
        self.services.env = env
        cls = personality or personality_for(abi or image.abi)
        self.personality = cls(self.services)
        self.retired = 0
        self.now_ns = 0
        self.crossings = 0
        self.stopped: Stopped | None = None
        self._blocked: Block | None = None
        self._insn_in_run = 0  # instructions of this run already traced
        self._pending_insns: list | None = None
        self._insn_sinks: list = []
        try:
            self.personality.boot()
        except BaseException:
            self.vcpu.close()
            raise
        self.vcpu.trap_handler = self._on_trap
        self.vcpu.tsc = self._tsc
        if tracer.wants("insn"):
            self._install_insn_trace()

    # -- running --------------------------------------------------------------
    def step(self, now_ns: int, max_insns: int = DEFAULT_SLICE) -> Step:
        if self.stopped is not None:
            return Step(0, 0, 0, exited=self.stopped)
        s = self.services
        s.step_start_ns = now_ns
        s.cost_ns = 0
        s.insn_base = self.retired
        self._insn_in_run = 0
        crossings_before = self.crossings
        if self._blocked is not None:
            block, self._blocked = self._blocked, None
            # A personality with threads may find them all still waiting.
            again = self.personality.resume(block)
            if isinstance(again, GuestExit):
                return self._stop(Stopped(again.status, again.reason), s.cost_ns)
            if isinstance(again, Block):
                self._blocked = again
                return Step(0, s.cost_ns, 0, again.until_ns, again.event)
        budget = min(max_insns, self.max_insns - self.retired)
        if budget <= 0:
            return self._stop(Stopped(BUDGET_STATUS, self._budget_reason()), 0)
        retired = 0
        gate = self.vcpu.gate
        # Natively served calls emit no call events and let instructions be
        # traced after the call's cost is charged: only while neither is traced.
        gate.clock.open = not (self.tracer.wants("call") or self.tracer.wants("insn"))
        personality = self.personality
        while True:
            personality.before_run()
            result = self.vcpu.run(budget - retired)
            self.crossings += personality.after_run()
            served = gate.drain()
            if served:
                self.crossings += sum(served.values())
                personality.served_natively(served)
            retired += result.retired
            self.retired += result.retired
            if self._insn_sinks:  # the rest of the last block entered
                self._flush_insns(result.retired - self._insn_in_run)
            self._insn_in_run = 0
            # Later runs in this step start where this one ended (for now()).
            s.step_start_ns += s.insn_ns(result.retired)
            s.insn_base += result.retired
            busy = s.step_start_ns - now_ns + s.cost_ns
            self.now_ns = now_ns + busy
            crossings = self.crossings - crossings_before
            if result.kind is not ExitKind.TRAP:
                break
            pending, self.personality.pending = self.personality.pending, None
            if isinstance(pending, Switch):
                # The thread yielded, blocked or ended: another may run on.
                pending = self.personality.switch()
                if pending is None:
                    if retired < budget and self.retired < self.max_insns:
                        continue
                    return Step(retired, s.step_start_ns - now_ns + s.cost_ns, crossings)
                busy = s.step_start_ns - now_ns + s.cost_ns
            if isinstance(pending, GuestExit):
                return self._stop(Stopped(pending.status, pending.reason,
                                          pending.reason.startswith("fault")), busy, crossings)
            if isinstance(pending, Block):
                self._blocked = pending
                return Step(retired, busy, crossings, pending.until_ns, pending.event)
            return Step(retired, busy, crossings)
        if result.kind is ExitKind.FAULT:
            assert result.fault is not None
            outcome = self.personality.on_fault(result.fault)
            if outcome is not None:
                self.services.emit("fault", result.fault.name, rip=result.fault.rip,
                                   cr2=result.fault.cr2, delivered=False)
                return self._stop(Stopped(outcome.status, outcome.reason, True), busy, crossings)
            return Step(retired, busy, crossings)
        if result.kind is ExitKind.HALT:
            halted = self.personality.on_halt()
            return self._stop(Stopped(halted.status, halted.reason,
                                      halted.reason.startswith("fault")), busy, crossings)
        if self.retired >= self.max_insns:
            return self._stop(Stopped(BUDGET_STATUS, self._budget_reason()), busy, crossings)
        if result.kind is ExitKind.DEBUG:  # a debugger stop is not the end of a slice
            return Step(retired, busy, crossings)
        preempt = getattr(self.personality, "preempt", None)
        if preempt is not None:  # the slice is over: round robin among threads
            preempt()
            busy = s.step_start_ns - now_ns + s.cost_ns
        return Step(retired, busy, crossings)

    def stop(self, status: int, reason: str) -> Step:
        """Stop the guest from outside (a debugger's kill): like any other stop."""
        if self.stopped is not None:
            return Step(0, 0, 0, exited=self.stopped)
        return self._stop(Stopped(status, reason), 0)

    def _budget_reason(self) -> str:
        return f"budget: instruction limit of {self.max_insns} reached"

    def _stop(self, stopped: Stopped, busy: int, crossings: int = 0) -> Step:
        self.stopped = stopped
        self.personality.close()
        self.tracer.emit(Event(self.now_ns, self.retired, self.name, "exit", "stop",
                               {"status": stopped.status, "reason": stopped.reason}))
        return Step(0, busy, crossings, exited=stopped)

    def _on_trap(self, trap) -> bool:
        if self._insn_sinks:
            self._flush_insns(None)
        self.crossings += 1
        return self.personality.on_trap(trap)

    def _tsc(self, _retired: int) -> int:
        return self.config.time.ns_to_tsc(self.services.now())

    # -- instruction trace ------------------------------------------------------
    def _install_insn_trace(self) -> None:
        # A block hook, not a per-instruction hook: one Python call per
        # translated block. Each block's instructions are emitted when the
        # next block starts, at a trap, or when the run ends, then only as
        # many as actually retired (a fault or a debugger stops mid-block).
        dis = Disassembler()
        decoded: dict[int, list[tuple[int, dict[str, object]]]] = {}
        image = self.image
        self._insn_sinks = [getattr(sink, "write_insns", None) or _event_writer(sink)
                            for sink in self.tracer.sinks]

        def on_block(uc, address: int, size: int, _user) -> None:
            self._flush_insns(None)
            insns = decoded.get(address)
            if insns is None:
                insns = []
                for insn in dis.sweep(bytes(uc.mem_read(address, size)), address):
                    where = image.symbolize(insn.address)
                    insns.append((insn.address, {
                        "where": f"{where[0]}+{where[1]:#x}" if where else f"{insn.address:#x}",
                        "addr": insn.address, "bytes": insn.hex,
                        "asm": _name_target(insn.text, image)}))
                decoded[address] = insns
            self._pending_insns = insns

        self.vcpu.uc.hook_add(UC_HOOK_BLOCK, on_block)

    def _flush_insns(self, limit: int | None) -> None:
        insns, self._pending_insns = self._pending_insns, None
        if not insns:
            return
        if limit is not None:
            insns = insns[:max(0, limit)]
        s = self.services
        c = s.clock
        n = self._insn_in_run
        # s.now() at each instruction, as a range: base_ns + insns_to_ns(k).
        base_ns = c.step_ns + c.cost_ns - c.insn_base_ns
        times = self.config.time.insns_to_ns_range(c.insn_base + n, len(insns), base_ns)
        for write in self._insn_sinks:
            write(self.name, times, s.insn_base + n, insns)
        self._insn_in_run = n + len(insns)

    def close(self) -> None:
        self.vcpu.close()


def _event_writer(sink: Any) -> Callable[..., None]:
    """For sinks without a fast path: build the events after all."""
    def write(guest: str, times: list[int], first: int, insns: list) -> None:
        for i, (_addr, fields) in enumerate(insns):
            sink.write(Event(times[i], first + i, guest, "insn", "exec", fields))
    return write


_DIRECT_BRANCH = re.compile(r"^(call|j[a-z]+) (0x[0-9a-f]+)$")


def _name_target(asm: str, image: Image) -> str:
    """`call 0x1018a0` -> `call 0x1018a0 <exit>`: branch targets by name."""
    m = _DIRECT_BRANCH.match(asm)
    if m is None:
        return asm
    where = image.symbolize(int(m.group(2), 16))
    if where is None:
        return asm
    name, off = where
    return f"{asm} <{name}+{off:#x}>" if off else f"{asm} <{name}>"
