"""The vCPU's syscall gate: clock reads answered natively give the numbers
the Python path gives, never bypass the monitor, and never hide an error."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from picohelp import build, needs_gcc, run
from unicorn import x86_const as X

from sim.cpu import native
from sim.cpu.callgate import GATE_CALLS, ServeKind
from sim.cpu.vcpu import VCPU
from sim.devices.clock import TimeModel
from sim.libos.pico_abi import PICO_ABI

needs_native = pytest.mark.skipif(not native.available(), reason="native hooks not built")

CLOCKS = r"""
#include <picolibos.h>
int main(int argc, char **argv)
{
    unsigned long rounds = strtoul(argv[1], NULL, 0), sum = 0;
    for (unsigned long i = 0; i < rounds; i++) {
        unsigned long t = pico_clock_monotonic();
        for (unsigned long k = 0; k < (t & 63); k++)  /* work that depends on t */
            sum += k * t;
        printf("%lu %lu %lu\n", t, (unsigned long)pico_clock_wall(), sum & 0xffff);
    }
    return 0;
}
"""
ALL_CALLS = '[pico]\ncalls = ["*"]\nuris = ["console:"]\n'


@pytest.fixture(scope="module")
def clocks(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    return build(tmp_path_factory.mktemp("gate"), CLOCKS, "clocks", ALL_CALLS)


@needs_native
@settings(max_examples=300, deadline=None)
@given(base=st.integers(0, 2**40), retired=st.integers(0, 2**40), cpi_milli=st.integers(1, 10**6),
       hz=st.integers(1, 10**12), step=st.integers(0, 2**60), cost=st.integers(0, 2**40))
def test_native_time_formula_is_the_python_one(base, retired, cpi_milli, hz, step, cost):
    time = TimeModel(clock_hz=hz, cycles_per_insn_milli=cpi_milli)
    vcpu = VCPU(1 << 20)
    try:
        vcpu.gate.set_time(*time.ns_ratio, time.epoch_ns)
        c = vcpu.gate.clock
        c.step_ns, c.cost_ns = step, cost
        c.insn_base, c.insn_base_ns = base, time.insns_to_ns(base)
        expected = step + time.insns_to_ns(base + retired) - time.insns_to_ns(base) + cost
        assert vcpu.gate.time_at(retired) == expected % (1 << 64)
    finally:
        vcpu.close()


@needs_native
def test_clock_calls_answered_natively_match_the_python_path(clocks):
    # Traced runs close the gate (every call takes the Python path); the
    # untraced run answers the clock reads natively. Same output, same
    # time, same calls counted.
    fast, fast_out, _, fast_guest = run(clocks, "40", kinds=())
    slow, slow_out, sink, slow_guest = run(clocks, "40", kinds=("call",))
    assert fast.stopped.status == slow.stopped.status == 0
    assert fast_out == slow_out and fast_out.count(b"\n") == 40
    assert (fast.t_ns, fast.retired, fast.crossings) == (slow.t_ns, slow.retired, slow.crossings)
    used = fast_guest.personality.monitor.used
    assert used == slow_guest.personality.monitor.used
    assert used["clock_monotonic"] == used["clock_wall"] == 40
    traced = [e.name for e in sink.events if e.kind == "call"]
    assert traced.count("clock_monotonic") == 40  # the traced run saw every call
    assert fast_guest.vcpu.gate.served_total == 80  # both clocks, 40 times, natively
    assert slow_guest.vcpu.gate.served_total == 0


@needs_native
def test_both_paths_agree_whatever_the_slice(clocks):
    # Instruction time is a difference of the guest's whole count, so the
    # clock values do not depend on where slices end either.
    runs = [run(clocks, "25", kinds=kinds, slice_insns=n)
            for kinds in ((), ("call",)) for n in (1_000, 37_000, 1_000_000)]
    assert len({out for _r, out, _s, _g in runs}) == 1
    assert len({r.t_ns for r, _o, _s, _g in runs}) == 1


@needs_gcc
def test_a_clock_the_manifest_denies_is_denied_untraced_too(tmp_path):
    # The gate only answers calls the monitor admits whatever the arguments.
    image = build(tmp_path, r"""
#include <picolibos.h>
int main(void) { printf("%ld\n", (long)pico_clock_monotonic()); return 0; }
""", "nowall", '[pico]\ncalls = ["exit", "console_write", "cmdline"]\nuris = ["console:"]\n')
    result, out, _, guest = run(image, kinds=())
    assert result.stopped.status == 0
    assert out == f"{PICO_ABI.errors['EPERM'][0]}\n".encode()
    assert guest.personality.monitor.denied["clock_monotonic"] == 1


def test_every_other_syscall_reaches_python_and_its_errors_propagate():
    vcpu = VCPU(1 << 20)
    try:
        vcpu.gate.set_time(*TimeModel().ns_ratio, 0)
        assert not vcpu.gate.serve(GATE_CALLS, ServeKind.MONOTONIC, 0)  # out of range
        vcpu.gate.serve(3, ServeKind.MONOTONIC, 0)
        vcpu.gate.clock.open = 1
        vcpu.mem.write(0x1000, bytes.fromhex("0f05" "0f05" "f4"))  # syscall; syscall; hlt
        seen = []

        def handler(trap):
            seen.append(vcpu.reg(X.UC_X86_REG_RAX))
            raise ValueError("host-side bug in a handler")

        vcpu.trap_handler = handler
        vcpu.set_reg(X.UC_X86_REG_RAX, 1000)
        vcpu.set_reg(X.UC_X86_REG_RIP, 0x1000)
        with pytest.raises(ValueError, match="host-side bug"):
            vcpu.run(100)
        assert seen == [1000]
    finally:
        vcpu.close()


def test_gate_closed_sends_served_numbers_to_python_too():
    vcpu = VCPU(1 << 20)
    try:
        vcpu.gate.set_time(*TimeModel().ns_ratio, 0)
        vcpu.gate.serve(3, ServeKind.MONOTONIC, 0)
        vcpu.gate.clock.open = 0
        vcpu.mem.write(0x1000, bytes.fromhex("0f05" "f4"))
        seen = []
        vcpu.trap_handler = lambda trap: seen.append(vcpu.reg(X.UC_X86_REG_RAX)) or False
        vcpu.set_reg(X.UC_X86_REG_RAX, 3)
        vcpu.set_reg(X.UC_X86_REG_RIP, 0x1000)
        vcpu.run(100)
        assert seen == [3] and vcpu.gate.drain() == {}
    finally:
        vcpu.close()


def test_without_the_native_library_the_numbers_are_the_same(clocks, monkeypatch):
    reference = run(clocks, "10", kinds=())
    monkeypatch.setattr(native, "load", lambda: None)
    result, out, _, guest = run(clocks, "10", kinds=())
    assert not guest.vcpu.gate.native and guest.vcpu.counter.kind == "python"
    assert out == reference[1] and result.t_ns == reference[0].t_ns


TSC_CLOCK = r"""
#include <picosim.h>
#include "sdk_backend.h"
int main(void)
{
    unsigned long sum = 0;
    for (int i = 0; i < 30; i++) {
        unsigned long t = sdk_backend_clock_ns();  /* rdtsc on hvt and spt */
        for (unsigned long k = 0; k < (t & 31); k++)
            sum += k ^ t;
        printf("%lu %lu\n", t, sum & 0xffff);
    }
    return 0;
}
"""


@needs_native
@pytest.mark.parametrize("target", ["hvt", "spt"])
def test_rdtsc_answered_natively_matches_the_python_path(tmp_path, monkeypatch, target):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    from sim.sdk.solo5 import build_app as solo5_build

    src = tmp_path / "tsc.c"
    src.write_text(TSC_CLOCK)
    image = solo5_build([src], tmp_path / f"tsc-{target}.elf", target)
    fast, fast_out, _, guest = run(image, kinds=())
    assert guest.vcpu.gate.clock.tsc_hz == guest.config.time.clock_hz
    monkeypatch.setattr(native, "load", lambda: None)
    slow, slow_out, _, slow_guest = run(image, kinds=())
    assert not slow_guest.vcpu.gate.native
    assert fast.stopped.status == slow.stopped.status == 0
    assert fast_out == slow_out and fast_out.count(b"\n") == 30
    assert fast.t_ns == slow.t_ns


@pytest.mark.parametrize("changes", [
    {"reads_clock": "uptime"},                        # not a clock the vCPU knows
    {"reads_clock": "monotonic", "returns": "status"},
    {"reads_clock": "wall", "blocking": True},
])
def test_a_bad_clock_declaration_is_one_sentence(changes):
    import dataclasses

    from sim.libos.abi import AbiError

    call = dataclasses.replace(PICO_ABI.by_name["clock_monotonic"], **changes)
    with pytest.raises(AbiError, match="reads_clock needs one of monotonic, wall"):
        PICO_ABI.derive("pico", replace_calls=[call])


def test_a_variant_handler_keeps_the_clock_in_python(tmp_path):
    # A variant ABI that serves clock_monotonic itself is never bypassed.
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    from types import SimpleNamespace

    image = build(tmp_path, r"""
#include <picolibos.h>
int main(void) { printf("%ld\n", (long)pico_clock_monotonic()); return 0; }
""", "variant_clock", ALL_CALLS)
    module = SimpleNamespace(abi=PICO_ABI, handlers=lambda p: {"clock_monotonic": lambda: 4242})
    result, out, _, guest = run(image, kinds=(), options={"pico.abi_module": module})
    assert result.stopped.status == 0 and out == b"4242\n"
    assert guest.vcpu.gate.served_total == 0


@pytest.mark.skipif(not native.available(), reason="native library not built")
def test_services_now_is_the_python_formula_also_after_close():
    """GuestServices.now() asks the gate's C while the vCPU lives, and gives
    the same number as the Python formula; after close, the formula alone."""
    from pathlib import Path

    from sim.boot import run_alone
    from sim.guest import Guest
    from sim.image import Image

    image = Image.load(Path(__file__).resolve().parent.parent / "sim/examples/prebuilt/compute.elf")
    guest = Guest(image)
    run_alone(guest)
    s = guest.services
    c = s.clock

    def formula() -> int:
        return c.step_ns + s.insn_ns(guest.vcpu.counter.retired) + c.cost_ns

    assert guest.vcpu.gate.now is not None and s.now() == formula() > 0
    guest.close()
    assert guest.vcpu.gate.now is None and s.now() == formula()


@needs_gcc
def test_a_stale_native_library_is_rebuilt_or_not_used(tmp_path, monkeypatch):
    """After a pull, a library older than its sources may lack functions the
    Python side calls: load() rebuilds it, or (no gcc) leaves it unused."""
    import os

    from sim.cpu import native as nat

    sources = [tmp_path / src.name for src in nat.SOURCES]
    for src, copy in zip(nat.SOURCES, sources, strict=True):
        copy.write_bytes(src.read_bytes())
    headers = [tmp_path / h.name for h in nat.HEADERS]
    for h, copy in zip(nat.HEADERS, headers, strict=True):
        copy.write_bytes(h.read_bytes())
    library = tmp_path / nat.LIBRARY.name
    monkeypatch.setattr(nat, "SOURCES", tuple(sources))
    monkeypatch.setattr(nat, "HEADERS", tuple(headers))
    monkeypatch.setattr(nat, "LIBRARY", library)
    monkeypatch.setattr(nat, "_HERE", tmp_path)
    monkeypatch.setattr(nat, "_lib", None)
    nat.build(force=True)
    old = library.stat().st_mtime - 10
    os.utime(library, (old, old))  # older than every source now
    assert nat._stale()
    monkeypatch.setattr(nat.shutil, "which", lambda _name: None)  # no gcc here
    assert nat.load() is None and nat._stale()
    monkeypatch.undo()
    monkeypatch.setattr(nat, "SOURCES", tuple(sources))
    monkeypatch.setattr(nat, "HEADERS", tuple(headers))
    monkeypatch.setattr(nat, "LIBRARY", library)
    monkeypatch.setattr(nat, "_HERE", tmp_path)
    monkeypatch.setattr(nat, "_lib", None)
    assert nat.load() is not None and not nat._stale()
