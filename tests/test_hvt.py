"""The Solo5 hvt personality, with Solo5-style test guests built by the SDK.

Also the shared helpers for test_spt.py: ``guest_image`` builds a guest from
tests/guests/solo5 for a target (cached per session), ``boot`` runs an image
through the ``sim boot`` command in-process and returns (status, stdout,
stderr).
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from sim.image import Image
from sim.libos.hvt import HYPERCALLS
from sim.libos.personality import BootConfig, BootError

GUESTS = Path(__file__).resolve().parent / "guests" / "solo5"
REPO = GUESTS.parents[2]
DEVICES = {"blk": ["block:storage"], "ping": ["net:service0"]}
EXAMPLES = ("hello", "compute", "sleep")

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.fixture(scope="session")
def guest_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("solo5-guests")


def guest_image(out_dir: Path, name: str, target: str) -> Path:
    from sim.sdk.solo5 import build_app

    path = out_dir / f"{name}.{target}"
    if not path.exists():
        build_app([GUESTS / f"{name}.c"], path, target, devices=DEVICES.get(name, ()))
    return path


def boot(*argv: str, quiet: bool = True) -> tuple[int, str, str]:
    """``sim boot -q ARGV`` in this process: (exit status, stdout, stderr)."""
    from sim.cli import main

    out, err = io.StringIO(), io.StringIO()
    buf = io.BytesIO()
    fake_stdout = io.TextIOWrapper(buf, encoding="utf-8", write_through=True)
    with contextlib.redirect_stdout(fake_stdout), contextlib.redirect_stderr(err):
        status = main(["boot", *(["-q"] if quiet else []), *argv])
    fake_stdout.flush()
    out.write(buf.getvalue().decode("utf-8", "replace"))
    return status, out.getvalue(), err.getvalue()


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", *argv], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


@pytest.fixture
def img(guest_dir):
    return lambda name: str(guest_image(guest_dir, name, "hvt"))


# -- output and status --------------------------------------------------------
def test_hello_prints_command_line(img):
    status, out, _ = boot(img("hello"), "--", "one", "two")
    assert status == 0
    assert "Command line is: 'one two'" in out and "SUCCESS" in out


def test_sse_arithmetic(img):
    status, out, _ = boot(img("sse"))
    assert (status, "SUCCESS" in out) == (0, True)


def test_poll_sleep_advances_monotonic_time(img):
    status, out, _ = boot(img("time"))
    assert status == 0, out
    assert "slept 1000000 us (wall 1000000 us)" in out and "SUCCESS" in out


def test_stack_protector_aborts(img):
    status, out, _ = boot(img("ssp"))
    assert status == 255
    assert "stack smashing detected" in out and "ABORT" in out


@pytest.mark.parametrize("kind,cr2", [("null", "0x0"), ("beyond", "0xf0000000"), ("fs", "0x28")])
def test_faults_go_through_the_guest_idt(img, kind, cr2):
    status, out, _ = boot(img("fault"), "--", kind)
    assert status == 255
    assert "Solo5: trap: type=#PF" in out and f"cr2={cr2}" in out and "ABORT" in out
    assert "FAILURE" not in out


def test_hlt_with_interrupts_off_stops_the_vm_for_good(img):
    status, _out, err = boot(img("fault"), "--", "hlt", quiet=False)
    assert status == 125
    assert "hlt with interrupts off" in err and "Traceback" not in err


# -- block ---------------------------------------------------------------------
def _pattern_ok(data: bytes, block_size: int = 512) -> bool:
    for b in range(len(data) // block_size):
        want = bytes((b * 7 + i + 0x5a) & 0xFF for i in range(block_size))
        if data[b * block_size:(b + 1) * block_size] != want:
            return False
    return True


def test_block_write_read_verify(img, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4 << 20))
    status, out, _ = boot(img("blk"), f"--block:storage={disk}")
    assert status == 0 and "SUCCESS" in out, out
    assert _pattern_ok(disk.read_bytes())


def test_block_sector_size(img, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4 << 20))
    status, out, _ = boot(img("blk"), f"--block:storage={disk}", "--block-sector-size:storage=4096")
    assert status == 0 and "1024 blocks of 4096 bytes" in out
    assert _pattern_ok(disk.read_bytes(), 4096)


def test_block_writes_survive_a_fault(img, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4 << 20))
    status, out, _ = boot(img("blk"), f"--block:storage={disk}", "--", "fault")
    assert status == 255 and "Solo5: trap" in out
    assert _pattern_ok(disk.read_bytes())


# -- network -------------------------------------------------------------------
def test_ping_1000_all_replied_with_pcap(img, tmp_path):
    pcap = tmp_path / "ping.pcap"
    status, out, err = boot(img("ping"), "--net:service0=switch", "--ping", "10.0.0.2:1000",
                            "--pcap", str(pcap))
    assert status == 0, err
    assert "1000 packets transmitted, 1000 received, 0% packet loss" in err
    data = pcap.read_bytes()
    magic, = struct.unpack_from("<I", data)
    assert magic == 0xA1B23C4D  # nanosecond pcap
    frames, off = [], 24
    while off < len(data):
        _s, _ns, incl, _orig = struct.unpack_from("<IIII", data, off)
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    icmp = [f for f in frames if f[12:14] == b"\x08\x00" and f[23] == 1]
    requests = [f for f in icmp if f[34] == 8]
    replies = [f for f in icmp if f[34] == 0]
    assert len(requests) == len(replies) == 1000
    assert all(r[26:30] == bytes([10, 0, 0, 2]) for r in replies)
    arp = [f for f in frames if f[12:14] == b"\x08\x06"]
    assert any(f[21] == 2 for f in arp)  # the guest answered ARP


def test_hypercalls_write_only_their_out_fields(img):
    """The monitor writes back the span of OUT fields it was given; IN fields
    and the struct's padding keep the guest's bytes."""
    import simpy

    from sim.cpu.vcpu import Trap
    from sim.devices.net import Nic, Switch
    from sim.guest import Guest
    from sim.libos.solo5 import Solo5Options

    opts = Solo5Options(nets={"service0": "switch"})
    guest = Guest(Image.load(img("ping")), BootConfig(options={"solo5": opts}))
    try:
        env = simpy.Environment()
        guest.services.env = env
        switch = Switch(env, seed=0)
        guest.personality.connect(switch)
        other = Nic(switch, "other", bytes.fromhex("020000000009"))
        (handle,) = guest.personality.net_handles
        mem, addr, buf = guest.vcpu.mem, 0x300000, 0x301000

        def call(nr: int, fields: bytes) -> bytes:
            mem.write(addr, fields)
            assert not guest.personality.on_trap(Trap("out", 0x1000, 0x500 + nr, 4, addr))
            return mem.read(addr, len(fields))

        # net_read, nothing queued: ret = AGAIN (1); len (IN/OUT) and padding untouched.
        net_read = struct.pack("<QQQi", handle, buf, 1514, 0) + b"\xaa" * 4
        assert call(7, net_read) == net_read[:24] + struct.pack("<i", 1) + b"\xaa" * 4
        # A frame arrives: len and ret are written, the frame lands in the buffer.
        frame = guest.personality.net_ports()[0].mac + other.mac + b"\x88\xb5" + bytes(50)
        other.send(frame)
        env.run()
        assert call(7, net_read) == net_read[:16] + struct.pack("<Qi", 64, 0) + b"\xaa" * 4
        assert mem.read(buf, 64) == frame
        # poll with a zero timeout: ready_set and ret only.
        poll = struct.pack("<QQi", 0, 0x5555, 7) + b"\xbb" * 4
        assert call(3, poll) == struct.pack("<QQi", 0, 0, 0) + b"\xbb" * 4
        # poll that waits: when a frame wakes it, ready_set and ret are written then.
        waiting = struct.pack("<QQi", 10_000, 0x5555, 7) + b"\xbb" * 4
        mem.write(addr, waiting)
        personality = guest.personality
        assert personality.on_trap(Trap("out", 0x1000, 0x503, 4, addr))
        block, personality.pending = personality.pending, None
        assert mem.read(addr, 24) == waiting
        other.send(frame)
        env.run()
        personality.resume(block)
        ready = 1 << handle
        assert mem.read(addr, 24) == struct.pack("<QQi", 10_000, ready, 1) + b"\xbb" * 4
    finally:
        guest.close()


def test_ping_interval_and_size_options(img, tmp_path):
    # Full-size requests 20 us apart: every one answered, each frame 1514
    # bytes on the wire, the requests 20 us apart in the pcap.
    pcap = tmp_path / "big.pcap"
    status, _out, err = boot(img("ping"), "--net:service0=switch", "--ping", "10.0.0.2:20",
                             "--ping-interval", "20000", "--ping-size", "1472", "--pcap", str(pcap))
    assert status == 0, err
    assert "20 packets transmitted, 20 received" in err
    data, off, requests = pcap.read_bytes(), 24, []
    while off < len(data):
        sec, ns, incl, _orig = struct.unpack_from("<IIII", data, off)
        frame = data[off + 16:off + 16 + incl]
        if frame[12:14] == b"\x08\x00" and frame[23] == 1 and frame[34] == 8:
            requests.append((sec * 10**9 + ns, len(frame)))
        off += 16 + incl
    assert [n for _t, n in requests] == [1514] * 20
    gaps = {b[0] - a[0] for a, b in zip(requests, requests[1:])}
    assert gaps == {20_000}


@pytest.mark.parametrize("flag,value,needle", [
    ("--ping-size", "1473", "fragmentation"),
    ("--ping-size", "-1", "--ping-size"),
    ("--ping-interval", "-5", "--ping-interval"),
])
def test_bad_ping_options_are_one_line(img, flag, value, needle):
    status, _out, err = boot(img("ping"), "--net:service0=switch", "--ping", "10.0.0.2:3",
                             flag, value)
    assert status == 2 and err.count("\n") == 1 and needle in err, err


def test_ping_guest_exits_after_limit(img):
    status, out, err = boot(img("ping"), "--net:service0=switch", "--ping", "10.0.0.2:5",
                            "--", "5")
    assert status == 0 and "answered 5 echo requests" in out and "SUCCESS" in out


# -- the declaration and the monitor's checks ------------------------------------
def test_hypercalls_declared_once():
    assert [h.nr for h in HYPERCALLS] == list(range(1, 9))
    sizes = {h.name: h.args.size for h in HYPERCALLS}
    assert sizes == {"walltime": 8, "puts": 16, "poll": 24, "block_write": 40, "block_read": 40,
                     "net_write": 32, "net_read": 32, "halt": 16}


def _raw_guest(tmp_path, body: str, target: str = "hvt") -> Path:
    """A guest whose main runs inline assembly ``body``."""
    from sim.sdk.solo5 import build_app

    src = tmp_path / "raw.c"
    src.write_text("#include <picosim.h>\nint main(void){\n" + body + "\nreturn 0;}\n")
    return build_app([src], tmp_path / f"raw.{target}", target)


@pytest.mark.parametrize("body,message", [
    ('__asm__ volatile("outl %%eax, %%dx" :: "a"(0x200000), "d"(0x400));', "Invalid guest port access"),
    ('__asm__ volatile("outb %%al, %%dx" :: "a"(0x200000), "d"(0x502));', "Invalid guest port access"),
    ('__asm__ volatile("inl %%dx, %%eax" :: "d"(0x502) : "eax");', "Invalid guest port access"),
    ('__asm__ volatile("outl %%eax, %%dx" :: "a"(0x200000), "d"(0x520));', "Invalid guest hypercall: num=32"),
    ('__asm__ volatile("outl %%eax, %%dx" :: "a"(0xfffffff0), "d"(0x502));', "Invalid guest access"),
    ('static struct { const char *p; unsigned long n; } s = {(const char *)0x1ff00000ul, 0x1000000};'
     '__asm__ volatile("outl %%eax, %%dx" :: "a"(&s), "d"(0x502) : "memory");', "Invalid guest access"),
])
def test_bad_hypercalls_are_contained(tmp_path, body, message):
    status, out, err = boot(str(_raw_guest(tmp_path, body)), quiet=False)
    assert status == 1
    assert message in err and "Traceback" not in err


def test_boot_info_and_layout(tmp_path, img):
    from sim.guest import Guest

    image = Image.load(img("hello"))
    guest = Guest(image, BootConfig(mem_bytes=64 << 20, args=("hello", "x", "y")))
    try:
        mem = guest.vcpu.mem
        info = struct.unpack("<QQQQQIIQ", mem.read(0x10000, 56))
        assert info[0] == 64 << 20 and info[1] == image.kernel_end
        assert info[2] == guest.config.time.clock_hz and info[4] == 0x10038
        assert mem.read(info[3], 4) == b"x y\0"
        assert mem.read_u64(0x8000 + 8 * 0x10) == 0x10001        # read-only
        assert mem.read_u64(0x8000 + 8 * 0x100) == 0x100003      # read-write
        assert mem.read_u64(0x8000) == 0                         # NULL not present
        assert mem.read_u64(0x4000 + 8) == 0x200083              # 2 MiB page
        from unicorn import x86_const as X
        assert guest.vcpu.reg(X.UC_X86_REG_CR0) == 0x80010021
        assert guest.vcpu.reg(X.UC_X86_REG_RSP) == (64 << 20) - 8
    finally:
        guest.close()


@pytest.mark.parametrize("mib", [1, 4097])
def test_mem_out_of_range(img, mib):
    from sim.guest import Guest

    with pytest.raises(BootError, match="--mem"):
        Guest(Image.load(img("hello")), BootConfig(mem_bytes=mib << 20))


def test_wrong_target_is_refused(guest_dir):
    from sim.guest import Guest

    spt = Image.load(guest_image(guest_dir, "hello", "spt"))
    with pytest.raises(BootError, match="not for the solo5-hvt target"):
        Guest(spt, BootConfig(mem_bytes=16 << 20), abi="hvt")


# -- the same apps on pico, hvt and spt ---------------------------------------------
@pytest.mark.parametrize("example", ["compute", "sleep"])
def test_examples_same_output_on_every_target(tmp_path, example):
    from sim.sdk.build import build_app

    src = REPO / "sim" / "examples" / f"{example}.c"
    results = {}
    for target in ("pico", "hvt", "spt"):
        path = build_app([src], tmp_path / f"{example}.{target}", target)
        status, out, err = boot(str(path))
        if example == "sleep":  # the exact ns differ by the targets' call costs
            out = re.sub(r"slept (\d+) ns", lambda m: f"slept {int(m[1]) // 1_000_000} ms", out)
        results[target] = (status, out)
    assert results["hvt"] == results["spt"] == results["pico"], results


def test_hello_example_on_solo5_targets(tmp_path):
    from sim.sdk.build import build_app

    src = REPO / "sim" / "examples" / "hello.c"
    outs = {}
    for target in ("hvt", "spt"):
        path = build_app([src], tmp_path / f"hello.{target}", target)
        status, out, _ = boot(str(path), "--", "a", "b")
        assert status == 0
        outs[target] = out
    assert outs["hvt"] == outs["spt"]
    assert "Hello from picosim!" in outs["hvt"] and 'command line: "a b"' in outs["hvt"]


@pytest.mark.parametrize("target", ["hvt", "spt"])
def test_same_run_same_trace_bytes(tmp_path, target):
    """Every call event, waiting ones included, is stable text: two runs of
    the same image give the same JSON Lines trace, byte for byte. (Under
    sim boot the wait happens inside the run, so the call shows its
    result.)"""
    image = str(guest_image(tmp_path, "time", target))
    traces = []
    for k in range(2):
        out = tmp_path / f"t{k}.jsonl"
        status, _out, _err = boot(image, "--trace=call,dev", "--trace-format", "jsonl",
                                  "--trace-out", str(out))
        assert status == 0
        traces.append(out.read_bytes())
    waited = b'"name": "poll", "args": {"timeout_nsecs"' if target == "hvt" else \
        b'"name": "epoll_pwait", "args": {"epfd"'

    assert traces[0] == traces[1] and waited in traces[0]


LOAD_CODE_C = r"""#include <picosim.h>
#include "solo5_dev.h"
/* Runs code from a buffer, block-reads other code over it, runs it again. */
static unsigned char code[512] __attribute__((aligned(512)));
static unsigned char two[512] = {0xb8, 2, 0, 0, 0, 0xc3};       /* mov eax, 2; ret */
static const unsigned char one[] = {0xb8, 1, 0, 0, 0, 0xc3};    /* mov eax, 1; ret */
int main(void) {
    uint64_t h; struct s5_block_info bi;
    if (s5_block_acquire("storage", &h, &bi) != S5_OK) return 3;
    memcpy(code, one, sizeof one);
    int (*fn)(void) = (int (*)(void))(void *)code;
    int before = fn();
    if (s5_block_write(h, 0, two, sizeof two) != S5_OK) return 4;
    if (s5_block_read(h, 0, code, sizeof code) != S5_OK) return 5;
    printf("before=%d after=%d\n", before, fn());
    return 0;
}
"""


def test_code_read_from_a_block_device_runs_as_read(tmp_path):
    """A block read over code the guest already ran replaces it: the vCPU
    drops the stale translation (Unicorn's uc_mem_write does not)."""
    from sim.sdk.solo5 import build_app

    src = tmp_path / "load.c"
    src.write_text(LOAD_CODE_C)
    image = build_app([src], tmp_path / "load.hvt", "hvt", devices=["block:storage"])
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    status, out, err = boot(str(image), f"--block:storage={disk}")
    assert status == 0, err
    assert "before=1 after=2" in out
