"""The Solo5 spt personality: the same test guests as a seccomp-confined process."""

from __future__ import annotations

import shutil
import struct

import pytest
from test_hvt import _pattern_ok, _raw_guest, boot, guest_image

from sim.image import Image
from sim.libos.personality import BootConfig, BootError
from sim.libos.solo5 import Solo5Options
from sim.libos.spt import SYSCALLS

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")


@pytest.fixture(scope="session")
def spt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spt-guests")


@pytest.fixture
def img(spt_dir):
    return lambda name: str(guest_image(spt_dir, name, "spt"))


def test_hello_prints_command_line(img):
    status, out, _ = boot(img("hello"), "--", "one", "two")
    assert status == 0 and "Command line is: 'one two'" in out and "SUCCESS" in out


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_call_trace_names_every_argument(img, fmt):
    # Arguments are named after the handler's parameters, as on pico and hvt.
    status, _out, err = boot(img("hello"), "--trace=call", "--trace-format", fmt, "--", "x")
    assert status == 0, err
    if fmt == "text":
        assert "call write(fd=1, buf=0x" in err and "call exit_group(status=0)" in err
    else:
        import json

        calls = [e for e in map(json.loads, err.splitlines()) if e["kind"] == "call"]
        assert calls[-1]["name"] == "exit_group" and calls[-1]["args"] == {"status": 0}
        writes = [e for e in calls if e["name"] == "write"]
        assert writes and set(writes[0]["args"]) == {"fd", "buf", "count"}


def test_sse_arithmetic(img):
    status, out, _ = boot(img("sse"))
    assert status == 0 and "SUCCESS" in out


def test_epoll_sleep_advances_monotonic_time(img):
    status, out, _ = boot(img("time"))
    assert status == 0 and "slept 1000000 us" in out and "SUCCESS" in out


def test_stack_protector_aborts(img):
    status, out, _ = boot(img("ssp"))
    assert status == 255 and "ABORT" in out


@pytest.mark.parametrize("kind", ["null", "beyond", "fs"])
def test_memory_faults_exit_139(img, kind):
    status, out, err = boot(img("fault"), "--", kind, quiet=False)
    assert status == 139
    assert "FAILURE" not in out and "page fault" in err and "Traceback" not in err


def test_hlt_is_privileged_in_a_process(img):
    status, _out, err = boot(img("fault"), "--", "hlt", quiet=False)
    assert status == 139
    assert "privileged" in err and "Traceback" not in err


def test_block_write_read_verify_and_fault(img, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4 << 20))
    status, out, _ = boot(img("blk"), f"--block:storage={disk}")
    assert status == 0 and "SUCCESS" in out, out
    assert _pattern_ok(disk.read_bytes())
    disk.write_bytes(bytes(4 << 20))
    status, out, _ = boot(img("blk"), f"--block:storage={disk}", "--", "fault")
    assert status == 139
    assert _pattern_ok(disk.read_bytes())


def test_ping_100_all_replied(img):
    status, _out, err = boot(img("ping"), "--net:service0=switch", "--ping", "10.0.0.2:100")
    assert status == 0 and "100 packets transmitted, 100 received" in err


def test_syscall_table():
    assert [c.nr for c in SYSCALLS] == [0, 1, 17, 18, 158, 228, 231, 281, 286]


def _sys(nr: int, a: str = "0", b: str = "0", c: str = "0") -> str:
    return (f'{{ long r; __asm__ volatile("syscall" : "=a"(r) : "a"({nr}L), "D"((long)({a})), '
            f'"S"((long)({b})), "d"((long)({c})) : "rcx", "r11", "memory"); (void)r; }}')


@pytest.mark.parametrize("body,message", [
    (_sys(39), "syscall 39 (getpid) is not allowed"),
    (_sys(1, "2", '"x"', "1"), "write(fd=2"),  # stderr is not allowed
    (_sys(158, "0x1001"), "only ARCH_SET_FS"),
    (_sys(228, "7", "0"), "only MONOTONIC and REALTIME"),
    (_sys(281, "99", "0", "1"), "not the monitor's epoll fd"),
])
def test_seccomp_kills_with_159(tmp_path, body, message):
    status, _out, err = boot(str(_raw_guest(tmp_path, body, "spt")), quiet=False)
    assert status == 159
    assert "seccomp" in err and message in err and "Traceback" not in err


def test_block_io_must_be_one_block(tmp_path):
    from sim.sdk.solo5 import build_app

    src = tmp_path / "two.c"
    src.write_text('#include <picosim.h>\n#include "solo5_dev.h"\nstatic char b[1024];\n'
                   "int main(void){ uint64_t h; struct s5_block_info i;\n"
                   's5_block_acquire("storage", &h, &i);\n'
                   "long fd = s5_manifest->e[h].hostfd;\n"
                   + _sys(17, "fd", "b", "1024") + "\nreturn 0; }\n")
    path = build_app([src], tmp_path / "two.spt", "spt", devices=["block:storage"])
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(8192))
    status, _out, err = boot(str(path), f"--block:storage={disk}", quiet=False)
    assert status == 159 and "not exactly one 512-byte block" in err


def test_boot_info_layout(img):
    from sim.guest import Guest

    image = Image.load(img("ping"))
    config = BootConfig(mem_bytes=2 << 20, args=("ping", "7"))
    config.options["solo5"] = Solo5Options(nets={"service0": "switch"})
    guest = Guest(image, config)
    try:
        mem = guest.vcpu.mem
        size, kend, cmdline, mft, epfd, tfd = struct.unpack("<QQQQii", mem.read(0x11000, 40))
        assert (size, kend, mft) == (2 << 20, image.kernel_end, 0x11028)
        assert mem.read(cmdline, 2) == b"7\0"
        assert (epfd, tfd) == (4, 5)
        entry = mem.read(mft + 8 + 104, 104)
        assert entry[:8] == b"service0" and entry[96] == 1
        assert struct.unpack_from("<Q", entry, 88)[0] == 3  # hostfd
    finally:
        guest.close()


def test_unattached_net_is_refused(img):
    from sim.guest import Guest

    with pytest.raises(BootError, match="Device 'service0' of type NET_BASIC declared but "
                                        "not attached."):
        Guest(Image.load(img("ping")), BootConfig(mem_bytes=2 << 20))
