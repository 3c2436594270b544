"""`sim boot` / `sim inspect` / `sim abi` end to end, as a user runs them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.cli import main
from sim.examples import resolve

GOLDEN = Path(__file__).parent / "golden"


def sim(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True,
                          timeout=timeout)


def run_main(argv: list[str]) -> tuple[int, bytes, str]:
    """main() in this process, with stdout (bytes) and stderr captured."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    err = io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(argv)
    out.flush()
    return status, out.buffer.getvalue(), err.getvalue()


def test_hello_prints_its_command_line_and_exits_0():
    r = sim("boot", "hello", "--", "one", "two")
    assert r.returncode == 0, r.stderr
    assert "Hello from picosim!" in r.stdout
    assert "one" in r.stdout and "two" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("sim: boot ") and "abi=pico" in lines[0] and "seed=0" in lines[0]
    assert lines[-1].startswith("sim: stopped at t=") and "exit status 0" in lines[-1]


def test_text_trace_shows_symbols_bytes_disassembly_calls_and_devices():
    r = sim("boot", "hello", "--trace")
    assert r.returncode == 0
    trace = r.stderr
    assert "_start+0x0" in trace
    assert "main+0x" in trace
    assert "syscall" in trace  # disassembly column
    assert "call console_write(" in trace
    assert "dev console.write" in trace


def test_trace_kinds_can_be_selected(tmp_path):
    out = tmp_path / "calls.txt"
    r = sim("boot", "hello", "--trace=call", "--trace-out", str(out))
    assert r.returncode == 0
    text = out.read_text()
    assert "call console_write(" in text
    assert " insn " not in text and "_start+0x0 " not in text
    assert "dev console.write" not in text


def test_jsonl_trace_has_stable_keys_and_is_byte_identical_across_runs(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        r = sim("boot", "hello", "--trace=call,dev", "--trace-format", "jsonl", "--trace-out",
                str(path), "--seed", "7", "--", "x")
        assert r.returncode == 0
    assert a.read_bytes() == b.read_bytes()
    events = [json.loads(line) for line in a.read_text().splitlines()]
    assert events
    for event in events:
        assert {"t_ns", "insn", "guest", "kind", "name"} <= set(event)
    times = [e["t_ns"] for e in events]
    assert times == sorted(times)
    assert events[-1]["kind"] == "exit" and events[-1]["status"] == 0


def test_golden_jsonl_trace_of_hello(tmp_path):
    out = tmp_path / "hello.jsonl"
    r = sim("boot", "hello", "--trace=call,dev", "--trace-format", "jsonl", "--trace-out",
            str(out), "--", "golden")
    assert r.returncode == 0
    golden = GOLDEN / "hello.calls.jsonl"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(out.read_bytes())
    assert out.read_bytes() == golden.read_bytes(), \
        "trace changed: if intended, regenerate with UPDATE_GOLDEN=1 pytest tests/test_cli.py"


@pytest.mark.parametrize("example,args", [("hello", ()), ("mt_compute", ("3", "1"))])
def test_instruction_trace_counts_every_instruction(tmp_path, example, args):
    # Every retired instruction once, numbered in order, whatever the slice
    # (a block that ends a slice, a thread switch inside a step); and the
    # slice size changes neither the trace nor simulated time.
    traces = []
    for slice_insns in ("1000000", "997"):
        out = tmp_path / f"insns{slice_insns}.jsonl"
        r = sim("boot", example, "--trace=insn", "--trace-format", "jsonl", "--slice", slice_insns,
                "--trace-out", str(out), "--", *args)
        assert r.returncode == 0, r.stderr
        events = [json.loads(line) for line in out.read_text().splitlines()]
        insns = [e for e in events if e["kind"] == "insn"]
        assert [e["insn"] for e in insns] == list(range(len(insns)))
        assert all(a["t_ns"] <= b["t_ns"] for a, b in zip(insns, insns[1:]))
        retired = int(r.stderr.strip().splitlines()[-1].split(" after ")[1].split()[0])
        assert len(insns) == retired
        assert all(e["bytes"] and e["asm"] for e in insns)
        traces.append(insns)
    if example == "hello":  # one thread: nothing but the slice differs
        assert traces[0] == traces[1]


@pytest.mark.parametrize("example,status,needle", [
    ("fault_null", 139, "#PF page fault"),
    ("fault_div0", 136, "#DE divide error"),
])
def test_faulting_guests_stop_contained_with_a_diagnosis(example, status, needle):
    r = sim("boot", example)
    assert r.returncode == status
    summary = r.stderr.strip().splitlines()[-1]
    assert needle in summary and "main+0x" in summary and "rip=" in summary
    assert "Traceback" not in r.stderr


def test_stack_smash_is_caught_by_the_stack_protector():
    r = sim("boot", "stack_smash")
    assert r.returncode == 134
    assert "stack smashing detected" in r.stdout


def test_runaway_guest_stops_at_the_instruction_budget():
    r = sim("boot", "compute", "--max-insns", "50000")
    assert r.returncode == 124
    assert "budget: instruction limit of 50000 reached" in r.stderr


def test_sleep_advances_simulated_time_not_wall_time():
    r = sim("boot", "sleep")
    assert r.returncode == 0
    t_ns = int(r.stderr.strip().splitlines()[-1].split("t=")[1].split("ns")[0])
    assert 5_000_000 <= t_ns < 6_000_000


def test_inspect_describes_the_image():
    r = sim("inspect", "hello")
    assert r.returncode == 0
    assert "entry" in r.stdout and "_start" in r.stdout
    assert "r-x" in r.stdout and "personality pico" in r.stdout


def test_abi_list_and_header():
    r = sim("abi", "list")
    assert r.returncode == 0 and "console_write" in r.stdout
    r = sim("abi", "header")
    assert "#define PICO_NR_CONSOLE_WRITE 2" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["boot", "/nonexistent/x.elf"], "No such file"),
    (["boot", "/etc/hostname"], "not an ELF"),
    (["boot", "hello", "--max-insns", "0"], "must be positive"),
    (["boot", "hello", "--trace=bogus"], "unknown trace kind"),
    (["boot", "hello", "--mem", "1"], "memory"),
    (["boot", "hello", "--frobnicate"], "unrecognized arguments"),
    (["inspect", "/dev/null"], "regular file"),
])
def test_bad_input_gives_one_line_and_status_2(args, needle):
    r = sim(*args)
    assert r.returncode == 2, r
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    error_lines = [line for line in lines if "error" in line]
    assert len(error_lines) == 1, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_truncated_image_is_rejected(tmp_path):
    from sim.image import Image

    data = resolve("hello").read_bytes()
    last = max(Image.load(resolve("hello")).segments, key=lambda s: s.offset + s.filesz)
    bad = tmp_path / "cut.elf"
    bad.write_bytes(data[: last.offset + last.filesz // 2])  # inside the last segment
    status, _out, err = run_main(["boot", str(bad)])
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("sim: error: ")


_HELLO = resolve("hello").read_bytes()


@st.composite
def mutated_images(draw):
    data = bytearray(_HELLO)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "word", "cut"]))
        if kind == "cut":
            del data[draw(st.integers(0, len(data) - 1)):]
            if not data:
                break
            continue
        pos = draw(st.integers(0, min(len(data) - 1, 0x1000)))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        else:
            value = draw(st.sampled_from([0, 1, 0x7F, 0xFFFF_FFFF, 2**63, 2**64 - 1]))
            chunk = value.to_bytes(8, "little")[: len(data) - pos]
            data[pos:pos + len(chunk)] = chunk
    return bytes(data)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(image=mutated_images())
def test_mutated_images_through_sim_boot_never_crash(tmp_path, image):
    path = tmp_path / "m.elf"
    path.write_bytes(image)
    status, _out, err = run_main(["boot", str(path), "-q", "--max-insns", "20000",
                                  "--mem", "4"])
    assert isinstance(status, int) and 0 <= status <= 255
    assert "Traceback" not in err
    if status == 2:
        assert err.startswith("sim: error: ") and err.count("\n") == 1
