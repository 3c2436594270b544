"""What every personality is, and what it may use from its guest.

A personality builds the machine state its ABI promises (memory layout,
page tables, boot information), serves the guest's traps, and decides what a
fault means. ``GuestServices`` is the narrow set of things it gets from the
guest: the vCPU, the image, the devices, the clock and the trace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from sim.cpu.vcpu import VCPU, Fault, Trap
from sim.devices.clock import TimeModel
from sim.devices.console import Console
from sim.image import Image
from sim.libos.dispatch import Block, GuestExit, Served
from sim.trace import NULL_TRACER, Event, Tracer

# Exit statuses of a contained stop, after the POSIX convention 128 + signal
# (SIGSEGV 11, SIGFPE 8, SIGILL 4, SIGTRAP 5), so scripts can tell them apart.
FAULT_STATUS = {14: 139, 13: 139, 12: 139, 0: 136, 19: 136, 6: 132, 3: 133}
BUDGET_STATUS = 124  # like timeout(1): the run was cut short
HALT_STATUS = 125  # hlt with interrupts off: nothing can ever wake the guest


class BootError(Exception):
    """The image cannot run with this configuration (one sentence)."""


class StateNotSaveable(Exception):
    """A personality cannot write down its state right now (one sentence)."""


@dataclass
class BootConfig:
    mem_bytes: int = 64 << 20
    args: tuple[str, ...] = ()
    seed: int = 0
    time: TimeModel = field(default_factory=TimeModel)
    # Personality-specific options (Solo5 devices, pico policy), by name.
    options: dict[str, Any] = field(default_factory=dict)


class GuestServices:
    """Everything a personality may touch; built by sim.guest.Guest."""

    def __init__(self, name: str, image: Image, vcpu: VCPU, config: BootConfig,
                 console: Console, tracer: Tracer = NULL_TRACER):
        self.name = name
        self.image = image
        self.vcpu = vcpu
        self.mem = vcpu.mem
        self.config = config
        self.console = console
        self.tracer = tracer
        self.rng = random.Random(config.seed)
        self.devices: dict[str, Any] = {}
        # The step's clock lives in the vCPU's syscall gate, which answers
        # clock calls natively from the same numbers.
        self.clock = vcpu.gate.clock
        self.step_start_ns = 0
        self.cost_ns = 0
        self.insn_base = 0
        self.env: Any = None  # the SimPy environment, when running under one
        # wait_here(ready, timeout_ns, reason) -> bool, from a runner that
        # lets a guest wait inside its step (sim.boot): the simulation runs
        # on until ready() is true or the timeout passes, and the guest's
        # clock moves to that moment (True); False if it cannot wait there.
        self.wait_here: Callable[[Callable[[], object] | None, int, str], bool] | None = None

    @property
    def step_start_ns(self) -> int:
        """Simulated ns where the current run of this step started."""
        return self.clock.step_ns

    @step_start_ns.setter
    def step_start_ns(self, ns: int) -> None:
        self.clock.step_ns = ns

    @property
    def cost_ns(self) -> int:
        """Simulated ns charged by calls in this step."""
        return self.clock.cost_ns

    @cost_ns.setter
    def cost_ns(self, ns: int) -> None:
        self.clock.cost_ns = ns

    @property
    def insn_base(self) -> int:
        """Instructions the guest retired before the current run."""
        return self.clock.insn_base

    @insn_base.setter
    def insn_base(self, n: int) -> None:
        self.clock.insn_base = n
        self.clock.insn_base_ns = self.config.time.insns_to_ns(n)

    def insn_ns(self, retired: int) -> int:
        """Simulated ns of the first ``retired`` instructions of this run.

        A difference of the guest's whole count, so that slices and stops
        do not change time: over any runs, instruction time adds up to
        insns_to_ns(all instructions retired)."""
        c = self.clock
        return self.config.time.insns_to_ns(c.insn_base + retired) - c.insn_base_ns

    def now(self) -> int:
        """Simulated ns at this instant of the running step."""
        native = self.vcpu.gate.now  # the same number from the gate's C, faster
        if native is not None:
            return native()
        c = self.clock
        return c.step_ns + self.insn_ns(self.vcpu.counter.retired) + c.cost_ns

    def retired(self) -> int:
        return self.insn_base + self.vcpu.counter.retired

    def charge(self, ns: int) -> None:
        self.clock.cost_ns += ns

    def emit(self, kind: str, name: str, **fields: Any) -> None:
        if self.tracer.wants(kind):
            self.tracer.emit(Event(self.now(), self.retired(), self.name, kind, name, fields))


class Personality:
    """Base class: subclasses declare ``name`` and fill in the three steps."""

    name: ClassVar[str] = "?"
    # Pending outcome of the trap that stopped the slice (wait or exit).
    pending: Block | GuestExit | None

    def __init__(self, services: GuestServices):
        self.s = services
        self.pending = None

    def boot(self) -> None:
        raise NotImplementedError

    def on_trap(self, trap: Trap) -> bool:
        """Serve a trap inside the emulator hook; True stops the slice."""
        raise NotImplementedError

    def on_fault(self, fault: Fault) -> GuestExit | None:
        """None when the guest handles it (delivered through its IDT)."""
        reason = self.s.vcpu.deliver(fault)
        if reason is None:
            self.s.emit("fault", fault.name, rip=fault.rip, delivered=True)
            return None
        return self.fault_exit(fault, reason)

    def on_halt(self) -> GuestExit:
        """The guest executed hlt with interrupts off (a VM that hangs for good)."""
        return GuestExit(HALT_STATUS, "halted: hlt with interrupts off, nothing can wake "
                                      "the guest")

    def fault_exit(self, fault: Fault, why: str) -> GuestExit:
        where = self.s.image.symbolize(fault.rip)
        at = f"{where[0]}+{where[1]:#x}" if where else f"{fault.rip:#x}"
        cr2 = f" cr2={fault.cr2:#x}" if fault.vector == 14 else ""
        text = (f"{fault.name} {fault.reason} at {at} (rip={fault.rip:#x}{cr2} "
                f"ec={fault.error_code:#x}); {why}")
        return GuestExit(FAULT_STATUS.get(fault.vector, 139), f"fault: {text}")

    def served_natively(self, counts: dict[int, int]) -> None:
        """Calls the vCPU's gate answered without a trap, by number (only
        those this personality registered with ``vcpu.gate.serve``)."""
        raise NotImplementedError(f"{self.name} registered no natively served calls")

    def before_run(self) -> None:
        """Called before each run of the vCPU (a personality with a native
        port server shows it the state it serves from)."""

    def native_calls(self) -> int:
        """Host calls a native server of this personality answered in the
        vCPU (beyond the gate's clock reads), over the guest's life."""
        return 0

    def after_run(self) -> int:
        """Called after each run: apply what a native port server did;
        returns how many calls it answered (host crossings all the same)."""
        return 0

    def trace_call(self, served: Served) -> None:
        if not self.s.tracer.kinds:
            return
        if served.call is None:
            self.s.emit("call", "unknown", args=served.args, result=show_result(served.result))
            return
        if served.denied is not None:
            self.s.emit("monitor", "deny", call=served.call.name, reason=served.denied)
        self.s.emit("call", served.call.name, args=served.args, result=show_result(served.result))

    def close(self) -> None:
        """Flush devices; called once when the guest stops (also after a fault)."""
        for dev in self.s.devices.values():
            flush: Callable[[], None] | None = getattr(dev, "flush", None)
            if flush is not None:
                flush()


def show_result(result: Any) -> Any:
    """A call's result as traces show it: stable text, never an object's repr."""
    if isinstance(result, Block):
        return f"<blocks: {result.reason}>"
    if isinstance(result, GuestExit):
        return f"<exit {result.status}>"
    return result
