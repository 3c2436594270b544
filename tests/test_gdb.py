"""sim boot --gdb: the real gdb in batch mode, and a raw client for bad input.

Every subprocess has a timeout: a hang is a failure, never a stuck test run.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from sim.cli import main

examples = pytest.importorskip("sim.examples")
GDB = shutil.which("gdb")
needs_gdb = pytest.mark.skipif(GDB is None, reason="gdb is not installed on this machine")
TIMEOUT = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(proc: subprocess.Popen, port: int) -> None:
    # The stub prints one line on stderr once it listens.
    line = proc.stderr.readline()
    while "waiting for GDB" not in line:
        if not line and proc.poll() is not None:
            raise AssertionError("sim exited before listening")
        line = proc.stderr.readline()


def _gdb(port: int, image: str, *commands: str) -> str:
    argv = [GDB, "-batch", "-nx", "-ex", "set pagination off", "-ex",
            f"target remote 127.0.0.1:{port}"]
    for c in commands:
        argv += ["-ex", c]
    out = subprocess.run([*argv, str(examples.resolve(image))], capture_output=True, text=True,
                         timeout=TIMEOUT, check=False)
    return out.stdout + out.stderr


def _sim(port: int, image: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "sim", "boot", image, "--gdb", str(port),
                             "--", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_listening(proc, port)
    return proc


def _summary(err: str) -> str:
    return [line for line in err.splitlines() if line.startswith("sim: stopped")][-1]


@needs_gdb
def test_gdb_break_continue_read_step_and_exit():
    port = _free_port()
    sim = _sim(port, "hello", "x", "y")
    out = _gdb(port, "hello", "break main", "continue", "print argc", "print argv[1]",
               "next", "step", "bt", "info registers rip", "continue")
    stdout, stderr = sim.communicate(timeout=TIMEOUT)
    assert "Breakpoint 1, main (argc=3" in out, out
    assert "$1 = 3" in out and '$2 = 0x' in out and '"x"' in out, out
    assert "sdk_cmdline" in out, out            # 'step' went into the call
    assert "exited normally" in out, out
    assert sim.returncode == 0
    assert "argv[2] = y" in stdout
    # Debugging does not change what the guest did: same instructions retired.
    plain = subprocess.run([sys.executable, "-m", "sim", "boot", "hello", "--", "x", "y"],
                           capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert plain.stdout == stdout
    def insns(err: str) -> str:
        return _summary(err).split(" after ")[1].split(" instructions")[0]

    assert insns(stderr) == insns(plain.stderr)


@needs_gdb
def test_gdb_sees_a_guest_fault_as_sigsegv_and_can_change_registers():
    port = _free_port()
    sim = _sim(port, "fault_null")
    out = _gdb(port, "fault_null", "continue", "print/x $pc", "set $rbx = 0x1234",
               "print/x $rbx", "x/1i $pc", "continue")
    sim.communicate(timeout=TIMEOUT)
    assert "Program received signal SIGSEGV" in out, out
    assert "in main ()" in out and "$2 = 0x1234" in out, out
    assert "exited with code 0213" in out, out  # 139, the contained fault's status
    assert sim.returncode == 139


@needs_gdb
def test_gdb_writes_memory_and_sets_breakpoints_by_address():
    port = _free_port()
    sim = _sim(port, "hello")
    out = _gdb(port, "hello", "break main", "continue",
               "set var *(char *)argv[0] = 'J'", "print argv[0]",
               "stepi", "print/x $pc", "kill")
    sim.communicate(timeout=TIMEOUT)
    assert '"Jello"' in out, out
    assert sim.returncode == 137  # killed by the debugger: 128 + SIGKILL


def test_port_in_use_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["boot", "hello", "-q", "--gdb", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"127.0.0.1:{port}" in err and "in use" in err, err


def _packet(data: bytes) -> bytes:
    return b"$" + data + b"#%02x" % (sum(data) & 0xFF)


def _recv_until(sock: socket.socket, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def test_malformed_packets_then_disconnect_let_the_guest_finish():
    port = _free_port()
    sim = _sim(port, "hello")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(b"garbage without a packet")
        s.sendall(b"$?#00")                       # bad checksum: NAK
        assert _recv_until(s, b"-").endswith(b"-")
        s.sendall(_packet(b"?"))
        assert b"T05" in _recv_until(s, b"#")
        s.sendall(b"+" + _packet(b"mzz,4"))       # not hex: an error reply, still stopped
        assert b"E01" in _recv_until(s, b"#")
        s.sendall(b"+" + _packet(b"mffffffff0000,4"))  # outside guest memory
        assert b"E14" in _recv_until(s, b"#")
        s.sendall(b"+" + _packet(b"Z0,100000,1"))  # a breakpoint, then hang up mid-session
        _recv_until(s, b"#")
        s.sendall(b"+")
    stdout, _ = sim.communicate(timeout=TIMEOUT)
    assert sim.returncode == 0 and "Hello from picosim!" in stdout


def test_disconnect_while_running_and_at_a_breakpoint():
    from sim.image import Image

    addr = next(sym.addr for sym in Image.load(examples.resolve("hello")).symbols
                if sym.name == "main")
    port = _free_port()
    sim = _sim(port, "hello")
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(_packet(b"Z0,%x,1" % addr))
        assert b"OK" in _recv_until(s, b"#")
        s.sendall(b"+" + _packet(b"c"))
        reply = _recv_until(s, b"#")               # stopped at main
        assert b"T05" in reply, reply
        s.sendall(b"+" + _packet(b"p10"))          # rip
        rip = _recv_until(s, b"#")
        assert bytes.fromhex(rip.split(b"$")[1][:16].decode()) == addr.to_bytes(8, "little")
    stdout, _ = sim.communicate(timeout=TIMEOUT)
    assert sim.returncode == 0 and "Hello from picosim!" in stdout
