"""Emulator core speed: sim boot vs bare Unicorn vs native, traces, call cost.

Run: .venv/bin/python bench/bench_core.py [--kib 256 --rounds 40]
Every figure is measured in this one run, beside its baseline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, Uc
from unicorn import x86_const as X

from sim.boot import run_alone
from sim.examples import resolve
from sim.guest import Guest
from sim.image import Image
from sim.libos.personality import BootConfig
from sim.trace import JsonlSink, TextSink, Tracer

ROOT = Path(__file__).resolve().parents[1]


def best(fn, repeat=3):
    """Fastest of `repeat` runs; fn returns (seconds it measured itself, result)."""
    runs = [fn() for _ in range(repeat)]
    return min(runs, key=lambda r: r[0])


def through_sim(image, args, tracer=None):
    """Seconds to run the guest to its end (boot excluded), instructions retired."""
    guest = Guest(image, BootConfig(args=args), tracer=tracer or Tracer())
    try:
        t0 = time.perf_counter()
        result = run_alone(guest)
        elapsed = time.perf_counter() - t0
    finally:
        guest.close()
    return elapsed, result.retired


def bare_unicorn(image, args, setup=None):
    """Same image and start state, Unicorn with only a do-little syscall hook."""
    guest = Guest(image, BootConfig(args=args))
    src = guest.vcpu.uc
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.ctl_set_tcg_buffer_size(8 << 20)
    size = guest.config.mem_bytes
    uc.mem_map(0, size)
    # Copy only non-zero pages: like the monitor's own loading, so untouched
    # RAM stays untouched.
    ram = bytes(src.mem_read(0, size))
    zero = bytes(4096)
    for off in range(0, size, 4096):
        if ram[off:off + 4096] != zero:
            uc.mem_write(off, ram[off:off + 4096])
    # Load the state register by register, in the order a monitor does
    # (VCPU.enter_long_mode): restoring a saved context leaves Unicorn's
    # paging mode flags stale, which made the copy run 3x slower.
    for reg in (X.UC_X86_REG_GDTR, X.UC_X86_REG_CR3, X.UC_X86_REG_CR4):
        uc.reg_write(reg, src.reg_read(reg))
    uc.reg_write(X.UC_X86_REG_MSR, (0xC0000080, src.reg_read(X.UC_X86_REG_MSR, 0xC0000080)))
    for reg in (X.UC_X86_REG_CR0, X.UC_X86_REG_CS, X.UC_X86_REG_DS, X.UC_X86_REG_ES,
                X.UC_X86_REG_SS, X.UC_X86_REG_RFLAGS, X.UC_X86_REG_RSP, X.UC_X86_REG_RDI):
        uc.reg_write(reg, src.reg_read(reg))
    cmdline = (" ".join(args) + "\0").encode()

    def on_syscall(uc, _key):
        nr = uc.reg_read(X.UC_X86_REG_RAX)
        if nr == 1:  # exit
            uc.emu_stop()
        elif nr == 7:  # cmdline
            uc.mem_write(uc.reg_read(X.UC_X86_REG_RDI), cmdline)
            uc.reg_write(X.UC_X86_REG_RAX, len(cmdline))
        else:
            uc.reg_write(X.UC_X86_REG_RAX, uc.reg_read(X.UC_X86_REG_RSI))

    uc.hook_add(UC_HOOK_INSN, on_syscall, aux1=X.UC_X86_INS_SYSCALL)
    if setup is not None:
        setup(uc)
    rip = src.reg_read(X.UC_X86_REG_RIP)
    guest.close()
    t0 = time.perf_counter()
    uc.emu_start(rip, 0)
    return time.perf_counter() - t0, None


def native(kib, rounds):
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "compute"
        subprocess.run(["gcc", "-O2", "-I", str(ROOT / "bench" / "native"), "-o", str(exe),
                        str(ROOT / "sim" / "examples" / "compute.c")], check=True)
        def once():
            t0 = time.perf_counter()
            subprocess.run([str(exe), str(kib), str(rounds)], check=True, capture_output=True)
            return time.perf_counter() - t0, None
        # Includes process start-up (~1 ms): noted beside the figure.
        t, _ = best(once)
    return t


CALL_LOOP = r"""
#include <picosim.h>
#include <pico_abi.h>
int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], 0, 0) : 100000;
    unsigned long acc = 0;
    for (unsigned long i = 0; i < n; i++) acc += pico_clock_monotonic();
    return acc == 0;
}
"""


def call_round_trip(n):
    from sim.sdk.build import build_app

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "calls.c"
        src.write_text(CALL_LOOP)
        elf = build_app([src], Path(tmp) / "calls.elf")
        image = Image.load(elf)
        t_sim, _ = best(lambda: through_sim(image, ("calls", str(n))), repeat=2)
        t_base, _ = best(lambda: through_sim(image, ("calls", "0")), repeat=2)
        t_bare, _ = best(lambda: bare_unicorn(image, ("calls", str(n))), repeat=2)
        t_bare0, _ = best(lambda: bare_unicorn(image, ("calls", "0")), repeat=2)
    return (t_sim - t_base) / n, (t_bare - t_bare0) / n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kib", type=int, default=256)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--calls", type=int, default=100_000)
    a = p.parse_args()
    image = Image.load(resolve("compute"))
    args = ("compute", str(a.kib), str(a.rounds))
    t_sim, insns = best(lambda: through_sim(image, args))
    t_bare, _ = best(lambda: bare_unicorn(image, args))
    t_native = native(a.kib, a.rounds)
    small = ("compute", "16", "4")
    with open(os.devnull, "w") as devnull:
        t_trace, n_trace = best(lambda: through_sim(
            image, small, Tracer({"insn"}, [TextSink(devnull)])), repeat=1)
        t_jsonl, _ = best(lambda: through_sim(
            image, small, Tracer({"insn"}, [JsonlSink(devnull)])), repeat=1)
    per_call_sim, per_call_bare = call_round_trip(a.calls)
    from sim.cpu.blockcount import native_available
    print(f"compute {a.kib} KiB x {a.rounds}: {insns:,} guest instructions "
          f"(accounting: {'native' if native_available() else 'python'})")
    print(f"{'configuration':<38} {'seconds':>8} {'M insn/s':>9} {'vs bare':>8}")
    for name, t in (("sim boot, untraced", t_sim), ("bare Unicorn, syscall hook only", t_bare),
                    ("native (gcc -O2, same source)", t_native)):
        print(f"{name:<38} {t:8.3f} {insns / t / 1e6:9.1f} {t_bare / t:8.2f}")
    print(f"{'--trace=insn text to /dev/null':<38} {t_trace:8.3f} {n_trace / t_trace / 1e6:9.2f}")
    print(f"{'--trace=insn jsonl to /dev/null':<38} {t_jsonl:8.3f} {n_trace / t_jsonl / 1e6:9.2f}")
    print(f"pico call round trip (clock_monotonic): {per_call_sim * 1e6:.2f} us; "
          f"bare Unicorn syscall hook: {per_call_bare * 1e6:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
