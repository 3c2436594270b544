"""Isolation profiles: what each way of isolating a tenant costs the host.

One row per isolation kind, as data. Every number names its source; the
sources are tabulated in docs/calibration.md (confidence H/M/U
there). Where calibration.md has no figure the row says how the value was
derived, so a reader can tell measurement from assumption.

Costs per crossing are kept in cycles (as published) and converted with the
host clock, so a slower host pays more ns per trap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from sim.host.units import MIB, MS, US, cycles_to_ns

# Host clock default: Unikraft EuroSys'21 table 1 gives a Linux syscall as
# 604 cycles = 233 ns, i.e. a 2.59 GHz machine (calibration.md).
DEFAULT_CLOCK_HZ = 2_600_000_000

# Process context switch ~4.3 us (2010 measurement, calibration.md, M).
_PROCESS_SWITCH_NS = 4_300
# VM exit + entry ~2,000 cycles direct (SplitX WIOV'11, calibration.md, H).
_VM_EXIT_CYCLES = 2_000


@dataclass(frozen=True)
class IsolationProfile:
    name: str
    kind: str                  # vm | microvm | container | unikernel | picoprocess | userspace-kernel
    monitor_start_ns: int      # host-side start-up (VMM, runtime, tender)
    guest_start_ns: int        # guest-side start-up until the app runs
    monitor_mem_bytes: int     # per-instance host overhead (VMM, shim)
    guest_os_mem_bytes: int    # guest kernel / library OS baseline
    crossing_cycles: int       # one host crossing (trap, VM exit, syscall)
    switch_cycles_extra: int   # added to a process switch when switching to it
    io_crossings: int          # crossings on one I/O round trip (submit+complete)
    shared_kernel: bool        # a kernel fault stops every tenant on it
    attack_surface: int        # host entry points reachable from the guest
    sources: tuple[str, ...] = ()

    @property
    def start_ns(self) -> int:
        return self.monitor_start_ns + self.guest_start_ns

    @property
    def overhead_bytes(self) -> int:
        return self.monitor_mem_bytes + self.guest_os_mem_bytes

    def crossing_ns(self, clock_hz: int) -> int:
        return cycles_to_ns(self.crossing_cycles, clock_hz)

    def switch_ns(self, clock_hz: int) -> int:
        return _PROCESS_SWITCH_NS + cycles_to_ns(self.switch_cycles_extra, clock_hz)

    def io_ns(self, clock_hz: int) -> int:
        return self.io_crossings * self.crossing_ns(clock_hz)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = list(self.sources)
        return d


PROFILES: dict[str, IsolationProfile] = {}


def _add(p: IsolationProfile) -> None:
    if p.name in PROFILES:
        raise ValueError(f"isolation profile {p.name!r} declared twice")
    PROFILES[p.name] = p


_add(IsolationProfile(
    name="vm", kind="vm",
    monitor_start_ns=37_800 * US,           # QEMU VMM 37.8 ms: Unikraft EuroSys'21 artifact fig 10
    guest_start_ns=330 * MS,                # Alpine Linux boot ~330 ms: Unikraft docs
    monitor_mem_bytes=131 * MIB,            # QEMU VMM ~131 MB: Firecracker NSDI'20
    guest_os_mem_bytes=30 * MIB,            # Linux guest min RAM 29-30 MB: Unikraft artifact fig 11
    crossing_cycles=_VM_EXIT_CYCLES * 11,   # exit+entry 2,000 cycles, handling ~10x more: SplitX WIOV'11
    switch_cycles_extra=_VM_EXIT_CYCLES,    # vCPU switch = VMM thread switch + VM exit/entry
    io_crossings=2,                         # derived: submit exit + completion interrupt (no direct figure)
    shared_kernel=False,
    attack_surface=350,                     # unsandboxed QEMU can reach the Linux syscall table, ~350: gVisor docs
    sources=("Unikraft EuroSys'21 fig 10/11", "Firecracker NSDI'20", "SplitX WIOV'11", "gVisor docs"),
))
_add(IsolationProfile(
    name="microvm", kind="microvm",
    monitor_start_ns=1_480 * US,            # Firecracker VMM 1.48 ms: Unikraft artifact fig 10
    guest_start_ns=125 * MS,                # InstanceStart to /sbin/init <= 125 ms: firecracker SPECIFICATION.md
    monitor_mem_bytes=3 * MIB,              # Firecracker overhead ~3 MB: NSDI'20 (spec: <= 5 MiB)
    guest_os_mem_bytes=30 * MIB,            # Linux microVM min RAM 29-30 MB: Unikraft artifact fig 11
    crossing_cycles=2_530,                  # VM exit through the KVM ioctl ~2,530 cycles: LKML 2020
    switch_cycles_extra=_VM_EXIT_CYCLES,    # SplitX WIOV'11
    io_crossings=2,                         # derived: submit + completion
    shared_kernel=False,
    attack_surface=24 + 30,                 # seccomp: 24 syscalls + 30 ioctls: Firecracker NSDI'20
    sources=("Unikraft EuroSys'21 fig 10/11", "firecracker SPECIFICATION.md", "NSDI'20", "LKML 2020"),
))
_add(IsolationProfile(
    name="container", kind="container",
    monitor_start_ns=230 * MS,              # Docker ~2 orders of magnitude slower than LightVM's 2.3 ms: SOSP'17
    guest_start_ns=208 * US,                # native process start 208 us: Graphene EuroSys'14 table 4
    monitor_mem_bytes=0,                    # no per-instance monitor; the kernel is shared
    guest_os_mem_bytes=6 * MIB,             # Docker min RAM 6-7 MB: Unikraft artifact fig 11
    crossing_cycles=604,                    # Linux syscall with mitigations 604 cycles: Unikraft table 1
    switch_cycles_extra=0,                  # plain process switch
    io_crossings=2,                         # derived: syscall + completion wakeup
    shared_kernel=True,
    attack_surface=250,                     # Docker default seccomp allows > 250 syscalls (calibration.md, M)
    sources=("LightVM SOSP'17", "Graphene EuroSys'14", "Unikraft EuroSys'21"),
))
_add(IsolationProfile(
    name="unikernel", kind="unikernel",     # Solo5 hvt
    monitor_start_ns=3_070 * US,            # Solo5-hvt VMM 3.07 ms: Unikraft artifact fig 10
    guest_start_ns=63 * US,                 # guest 63 us (hello): same figure
    monitor_mem_bytes=3 * MIB,              # assumption: a minimal KVM monitor like Firecracker's ~3 MB (NSDI'20)
    guest_os_mem_bytes=2 * MIB,             # Unikraft hello min RAM 2 MB: artifact fig 11
    crossing_cycles=2_530,                  # hypercall = VM exit through ioctl ~2,530 cycles: LKML 2020
    switch_cycles_extra=_VM_EXIT_CYCLES,    # SplitX WIOV'11
    io_crossings=2,                         # derived: one hypercall per I/O + completion poll
    shared_kernel=False,
    attack_surface=8,                       # Solo5 hvt: 8 hypercalls (Solo5 source)
    sources=("Unikraft EuroSys'21 fig 10/11", "LKML 2020", "Solo5 source"),
))
_add(IsolationProfile(
    name="picoprocess", kind="picoprocess",  # pico / Solo5 spt
    monitor_start_ns=641 * US,              # Graphene picoprocess start 641 us: EuroSys'14 table 4
    guest_start_ns=63 * US,                 # unikernel guest init 63 us: Unikraft artifact fig 10
    monitor_mem_bytes=1_048 * 1024,         # Graphene hello 1.4 MB vs native 352 KB: EuroSys'14 s6.2
    guest_os_mem_bytes=352 * 1024,          # same source
    crossing_cycles=604,                    # a seccomp'd Linux syscall, 604 cycles: Unikraft table 1
    switch_cycles_extra=0,                  # a process switch
    io_crossings=2,                         # derived: syscall + completion
    shared_kernel=False,                    # the libOS is per tenant; host kernel reached through 9 calls
    attack_surface=9,                       # Solo5 spt: 9 syscalls, all argument-checked (Solo5 source)
    sources=("Graphene EuroSys'14", "Unikraft EuroSys'21", "Solo5 source"),
))
_add(IsolationProfile(
    name="userspace-kernel", kind="userspace-kernel",  # gVisor-like
    monitor_start_ns=230 * MS,              # assumption (U): started by a container runtime, as container row
    guest_start_ns=208 * US,                # native process start 208 us: Graphene EuroSys'14 table 4
    monitor_mem_bytes=16 * MIB,             # assumption (U): per-app library OS +16 MB as Drawbridge ASPLOS'11
    guest_os_mem_bytes=6 * MIB,             # container baseline, Unikraft artifact fig 11
    crossing_cycles=1_329,                  # >= 2.2x a native syscall (604 cycles): HotCloud'19, Unikraft table 1
    switch_cycles_extra=0,
    io_crossings=2,                         # derived
    shared_kernel=False,                    # the Sentry is per sandbox
    attack_surface=68,                      # Sentry needs <= 68 host syscalls: gvisor.dev
    sources=("HotCloud'19", "gvisor.dev", "Drawbridge ASPLOS'11 (analogue)"),
))


def get_profile(name: str) -> IsolationProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown isolation profile {name!r} (known: {', '.join(PROFILES)})") from None


def with_overrides(profile: IsolationProfile, **changes: Any) -> IsolationProfile:
    """A copy of ``profile`` with some fields changed (for experiments)."""
    return replace(profile, **changes)
