"""Cost of instruction accounting: guest instructions/second, four ways.

Run: .venv/bin/python bench/bench_accounting.py [--rounds N]

The guest is a checksum over a 64 KiB buffer (load, add, rotate per 32-bit
word; 6-instruction inner-loop block), repeated. Paging is off (flat mode);
the kernel is load-only, so the flat-mode store slow path does not apply.
Each mode gets a fresh Uc; the best of three runs is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc
from unicorn.x86_const import UC_X86_REG_RDX, UC_X86_REG_RIP, UC_X86_REG_RSI

from sim.cpu import blockcount
from sim.cpu.blockcount import InstructionCounter

CODE_BASE = 0x1000
BUF_BASE = 0x100000
BUF_SIZE = 64 * 1024
WORDS = BUF_SIZE // 4

# outer: xor ecx,ecx
# inner: mov eax,[rsi+rcx*4]; add ebx,eax; rol ebx,1; inc ecx; cmp ecx,16384; jne inner
#        dec edx; jnz outer; hlt
KERNEL = bytes.fromhex("31C9 8B048E 01C3 D1C3 FFC1 81F900400000 75EF FFCA 75E9 F4")
HLT = CODE_BASE + len(KERNEL) - 1
assert WORDS == 0x4000


def insns_for(rounds: int) -> int:
    return rounds * (1 + 6 * WORDS + 2)


def machine(rounds: int) -> Uc:
    uc = Uc(UC_ARCH_X86, UC_MODE_64)
    uc.mem_map(0, 0x10000)
    uc.mem_map(BUF_BASE, BUF_SIZE)
    uc.mem_write(CODE_BASE, KERNEL)
    uc.mem_write(BUF_BASE, bytes((i * 7 + 3) & 0xFF for i in range(BUF_SIZE)))
    uc.reg_write(UC_X86_REG_RSI, BUF_BASE)
    uc.reg_write(UC_X86_REG_RDX, rounds)
    return uc


def run_bare(rounds: int) -> int:
    uc = machine(rounds)
    uc.emu_start(CODE_BASE, HLT)
    return insns_for(rounds)


def run_count(rounds: int) -> int:
    uc = machine(rounds)
    n = insns_for(rounds)
    uc.emu_start(CODE_BASE, HLT, count=n)
    assert uc.reg_read(UC_X86_REG_RIP) == HLT
    return n


def run_counter(rounds: int, kind: str, slice_budget: int | None = None) -> int:
    uc = machine(rounds)
    c = InstructionCounter(uc, prefer_native=(kind == "native"))
    assert c.kind == kind
    total, rip = 0, CODE_BASE
    while rip != HLT:
        c.arm(slice_budget or (1 << 62))
        uc.emu_start(rip, HLT)
        total += c.retired
        rip = uc.reg_read(UC_X86_REG_RIP)
    c.close()
    assert total == insns_for(rounds), (total, insns_for(rounds))
    return total


def best_rate(fn, *args, repeat: int = 3) -> float:
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn(*args)
        dt = time.perf_counter() - t0
        best = max(best, n / dt)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2000, help="passes over the buffer")
    ap.add_argument("--py-rounds", type=int, default=40, help="passes for the Python counter")
    args = ap.parse_args()
    blockcount.build()
    r, pr = args.rounds, args.py_rounds
    print(
        f"checksum over 64 KiB x {r} rounds = {insns_for(r):,} guest instructions "
        f"(Python counter: {pr} rounds); flat mode, best of 3"
    )
    rows = [
        ("bare Unicorn, no hooks", best_rate(run_bare, r)),
        ("emu_start(count=N)", best_rate(run_count, r)),
        ("native counter", best_rate(run_counter, r, "native")),
        ("native counter, 1M-insn slices", best_rate(run_counter, r, "native", 1_000_000)),
        ("native counter, 100k-insn slices", best_rate(run_counter, r, "native", 100_000)),
        ("Python counter", best_rate(run_counter, pr, "python")),
    ]
    bare = rows[0][1]
    print(f"{'mode':36} {'M insn/s':>10} {'time vs bare':>13}")
    for name, rate in rows:
        print(f"{name:36} {rate / 1e6:10.1f} {bare / rate:12.2f}x")


if __name__ == "__main__":
    main()
