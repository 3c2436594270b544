"""The bundled examples booted on the pico personality: output and exit status.

Every example runs twice where gcc is available: the prebuilt image and a
fresh build must behave the same (console bytes, status, instructions)."""

from __future__ import annotations

import shutil

import pytest

from sim.boot import run_alone
from sim.examples import build, resolve
from sim.guest import Guest
from sim.image import Image
from sim.libos.personality import BootConfig


def boot(path, *args: str, seed: int = 0):
    out = bytearray()
    config = BootConfig(args=(path.stem, *args), seed=seed)
    guest = Guest(Image.load(path), config, on_console=out.extend, max_insns=50_000_000)
    try:
        result = run_alone(guest)
    finally:
        guest.close()
    return result, out.decode()


def test_hello_prints_its_arguments():
    result, out = boot(resolve("hello"), "one", "two")
    assert result.stopped.status == 0 and not result.stopped.fault
    assert out.splitlines() == [
        "Hello from picosim!",
        'command line: "hello one two"',
        "argv[0] = hello",
        "argv[1] = one",
        "argv[2] = two",
    ]


def _fnv_reference(kib: int, rounds: int) -> int:
    """compute.c's checksum, in Python."""
    x, buf = 2463534242, bytearray()
    for _ in range(kib * 1024):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        buf.append(x & 0xFF)
    h = 0xCBF29CE484222325
    for _ in range(rounds):
        for b in buf:
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_compute_checksum_is_right():
    result, out = boot(resolve("compute"), "2", "3")
    assert result.stopped.status == 0
    assert out == f"fnv1a64 over 2 KiB x 3 rounds = {_fnv_reference(2, 3):016x}\n"


def test_compute_defaults_run_a_few_million_instructions():
    result, out = boot(resolve("compute"))
    assert result.stopped.status == 0 and out.startswith("fnv1a64 over 16 KiB x 24 rounds = ")
    assert 1_000_000 <= result.retired <= 3_000_000


def test_fault_null_stops_with_a_page_fault():
    result, out = boot(resolve("fault_null"))
    assert out == "writing through a NULL pointer...\n"
    stopped = result.stopped
    assert stopped.fault and stopped.status == 139
    assert "page fault" in stopped.reason and "cr2=0x0" in stopped.reason
    assert "main+" in stopped.reason


def test_fault_div0_stops_with_a_divide_error():
    result, out = boot(resolve("fault_div0"))
    assert out == "dividing 42 by zero...\n"
    assert result.stopped.fault and "#DE" in result.stopped.reason
    assert result.stopped.status == 136


def test_stack_smash_is_caught_by_the_stack_protector():
    result, out = boot(resolve("stack_smash"))
    assert result.stopped.status == 134 and not result.stopped.fault
    assert "*** stack smashing detected ***" in out
    assert "returned normally" not in out


def test_stack_guard_comes_from_the_seeded_random_bytes():
    img = Image.load(resolve("hello"))
    guards = set()
    for seed in (1, 2):
        out = bytearray()
        guest = Guest(img, BootConfig(args=("hello",), seed=seed), on_console=out.extend)
        try:
            run_alone(guest)
            raw = guest.vcpu.mem.read(img.symbol_address("__stack_chk_guard"), 8)
        finally:
            guest.close()
        guards.add(bytes(raw))
    assert len(guards) == 2 and all(g[0] == 0 and g != bytes(8) for g in guards)


def test_sleep_sleeps_in_simulated_time():
    result, out = boot(resolve("sleep"))
    assert result.stopped.status == 0
    slept = int(out.removeprefix("slept ").removesuffix(" ns\n"))
    assert 5_000_000 <= slept < 5_100_000
    assert result.t_ns >= 5_000_000


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
@pytest.mark.parametrize("name,args", [("hello", ("a", "b")), ("compute", ("1", "2")),
                                       ("fault_null", ()), ("fault_div0", ()),
                                       ("stack_smash", ()), ("sleep", ())])
def test_prebuilt_behaves_like_a_fresh_build(name, args, tmp_path):
    fresh = build(name, tmp_path / f"{name}.elf")
    a, out_a = boot(resolve(name), *args)
    b, out_b = boot(fresh, *args)
    assert (a.stopped, out_a, a.retired, a.t_ns) == (b.stopped, out_b, b.retired, b.t_ns)
