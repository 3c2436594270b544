"""Pico ABI round trip beside a bare Unicorn ``syscall`` hook, in one run.

    .venv/bin/python bench/bench_pico.py [--calls N]

Loops of N host calls each, timed in wall-clock seconds:
* bare: Unicorn running ``syscall; dec rcx; jnz`` with a Python syscall hook
  that does nothing (the floor any Python-served call pays);
* clock: a pico guest calling clock_monotonic N times, answered by the
  vCPU's native gate (sim/cpu/callgate.py), as in any untraced run;
* clock, Python path: the same loop with the gate closed for that call, as
  in a traced run (decode, monitor, handler, result, all in Python);
* write4k: a pico guest writing 4 KiB to a console: stream N times.
The guest loops are timed as (run with N) - (run with 0), so boot and
start-up do not count. Needs gcc (the guest is built with the SDK).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from unicorn import UC_ARCH_X86, UC_HOOK_INSN, UC_MODE_64, Uc
from unicorn import x86_const as X

APP = r"""
#include <picolibos.h>
static char block[4096];
int main(int argc, char **argv)
{
    unsigned long n = strtoul(argv[2], NULL, 0);
    if (argv[1][0] == 'c') {
        for (unsigned long i = 0; i < n; i++)
            pico_clock_monotonic();
    } else {
        long h = pl_open("console:", PL_OPEN_WRITE);
        for (unsigned long i = 0; i < n; i++)
            pico_stream_write(h, block, sizeof block);
    }
    return 0;
}
"""
POLICY = '[pico]\ncalls = ["*"]\nuris = ["console:"]\n'


def bare(n: int) -> float:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    code = bytes.fromhex("0f05" "48ffc9" "75f9" "f4")  # syscall; dec rcx; jnz -7; hlt
    uc.mem_map(0x1000, 0x1000)
    uc.mem_write(0x1000, code)
    uc.hook_add(UC_HOOK_INSN, lambda uc, _u: None, aux1=X.UC_X86_INS_SYSCALL)
    uc.reg_write(X.UC_X86_REG_RCX, n)
    t = time.perf_counter()
    uc.emu_start(0x1000, 0x1000 + len(code) - 1)
    return time.perf_counter() - t


def guest(image: Path, mode: str, n: int, gate: bool = True) -> float:
    from sim.boot import run_alone
    from sim.cpu.callgate import ServeKind
    from sim.guest import Guest
    from sim.image import Image
    from sim.libos.personality import BootConfig
    from sim.libos.pico_abi import PICO_ABI

    g = Guest(Image.load(image), BootConfig(args=("bench", mode, str(n))),
              on_console=lambda _d: None)
    if not gate:
        g.vcpu.gate.serve(PICO_ABI.by_name["clock_monotonic"].nr, ServeKind.PYTHON, 0)
    try:
        t = time.perf_counter()
        result = run_alone(g)
        elapsed = time.perf_counter() - t
        assert result.stopped.status == 0, result.stopped.reason
    finally:
        g.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from sim.sdk.build import build_app

    n = args.calls
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "bench.c"
        src.write_text(APP)
        image = build_app([src], Path(tmp) / "bench.elf",
                          cflags=("-mstack-protector-guard=global",))
        (Path(tmp) / "bench.policy.toml").write_text(POLICY)
        rows = {"bare syscall hook": min(bare(n) for _ in range(args.repeat))}
        loops = (("c", True, "pico clock_monotonic (gate)"),
                 ("c", False, "pico clock_monotonic (Python)"),
                 ("w", True, "pico stream_write 4 KiB"))
        for mode, gate, label in loops:
            base = min(guest(image, mode, 0, gate) for _ in range(args.repeat))
            full = min(guest(image, mode, n, gate) for _ in range(args.repeat))
            rows[label] = max(full - base, 1e-9)
    floor = rows["bare syscall hook"]
    print(f"{n} calls each, best of {args.repeat}")
    print(f"{'loop':30s} {'us/call':>9s} {'calls/s':>12s} {'x bare':>7s}")
    for label, secs in rows.items():
        print(f"{label:30s} {secs / n * 1e6:9.2f} {n / secs:12,.0f} {secs / floor:7.2f}")


if __name__ == "__main__":
    main()
