"""Snapshots: save a running guest, resume it, same remaining trace; bad files."""

from __future__ import annotations

import json
import struct

import pytest

from sim.cli import main

pytest.importorskip("sim.examples")


def _split_at_note(lines: list[str]) -> tuple[list[str], list[str]]:
    for i, line in enumerate(lines):
        if json.loads(line)["kind"] == "note" and json.loads(line)["name"] == "snapshot":
            return lines[:i], lines[i + 1:]
    raise AssertionError("no snapshot note in the trace")


@pytest.mark.parametrize("image,at,args", [
    ("compute", 1_000_000, []),       # mid-computation, between slices
    ("hello", 40, ["a", "b"]),        # before the console writes
    ("sleep", 200, []),               # before the sleep: the wait replays too
])
def test_resume_gives_the_same_remaining_trace(tmp_path, capsys, image, at, args):
    snap, full, tail = tmp_path / "s.snap", tmp_path / "full.jsonl", tmp_path / "tail.jsonl"
    status = main(["boot", image, "-q", "--snapshot-at", str(at), "--snapshot-out", str(snap),
                   "--trace=call,dev", "--trace-format", "jsonl", "--trace-out", str(full),
                   "--", *args])
    first = capsys.readouterr().out
    assert status == 0 and snap.exists()
    status2 = main(["resume", str(snap), "-q", "--trace=call,dev", "--trace-format", "jsonl",
                    "--trace-out", str(tail)])
    second = capsys.readouterr().out
    assert status2 == status
    _before, after = _split_at_note(full.read_text().splitlines(keepends=True))
    assert after, "the snapshot was taken before anything happened"
    assert "".join(after) == tail.read_text()
    # The console output so far is in the snapshot; the resumed run prints the rest.
    assert first.endswith(second)
    # Stopping to take the snapshot changed nothing: not even simulated time.
    plain = tmp_path / "plain.jsonl"
    assert main(["boot", image, "-q", "--trace=call,dev", "--trace-format", "jsonl",
                 "--trace-out", str(plain), "--", *args]) == status
    capsys.readouterr()
    assert "".join(_before + after) == plain.read_text()


def test_resume_from_copied_memory_is_the_same(tmp_path, capsys):
    snap = tmp_path / "s.snap"
    main(["boot", "compute", "-q", "--snapshot-at", "500000", "--snapshot-out", str(snap)])
    capsys.readouterr()
    outs = []
    for extra in ([], ["--copy-memory"]):
        trace = tmp_path / f"t{len(outs)}.jsonl"
        main(["resume", str(snap), "-q", "--trace=call", "--trace-format", "jsonl",
              "--trace-out", str(trace), *extra])
        outs.append(trace.read_text())
    assert outs[0] == outs[1] and "exit" in outs[0]


def test_vcpu_state_round_trips_msrs_and_segment_bases():
    from unicorn import x86_const as X

    from sim.cpu.vcpu import VCPU

    a, b = VCPU(2 << 20), VCPU(2 << 20)
    try:
        a.enter_long_mode(cr3=0x2000, gdt_base=0x1000, gdt_limit=23, rip=0x100000,
                          rsp=0x10000, nx=True)
        a.set_reg(X.UC_X86_REG_FS_BASE, 0x7000_1234)
        a.set_reg(X.UC_X86_REG_XMM3, 0x0123456789ABCDEF_FEDCBA9876543210)
        a.set_reg(X.UC_X86_REG_R13, 42)
        state = a.save_state()
        b.restore_state(json.loads(json.dumps(state)))
        assert b.save_state() == state
        assert b.reg(X.UC_X86_REG_FS_BASE) == 0x7000_1234
        assert state["msr"]["0xc0000080"] & 0xD00 == 0xD00  # EFER: LME, LMA, NXE
    finally:
        a.close()
        b.close()


def _snap(tmp_path, capsys):
    snap = tmp_path / "s.snap"
    main(["boot", "hello", "-q", "--snapshot-at", "40", "--snapshot-out", str(snap)])
    capsys.readouterr()
    return snap


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("sim: error:") and needle in err, err


def test_truncated_foreign_and_future_snapshots_give_one_line(tmp_path, capsys):
    snap = _snap(tmp_path, capsys)
    data = snap.read_bytes()
    cut = tmp_path / "cut.snap"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_error(capsys, ["resume", str(cut)], "truncated")
    cut.write_bytes(data[:20])
    _one_line_error(capsys, ["resume", str(cut)], "truncated")
    cut.write_bytes(data[:5])
    _one_line_error(capsys, ["resume", str(cut)], "not a picosim snapshot")
    foreign = tmp_path / "foreign.snap"
    foreign.write_bytes(b"\x7fELF" + bytes(100))
    _one_line_error(capsys, ["resume", str(foreign)], "not a picosim snapshot")
    future = tmp_path / "future.snap"
    future.write_bytes(data[:8] + struct.pack("<I", 99) + data[12:])
    _one_line_error(capsys, ["resume", str(future)], "version 99")
    garbled = tmp_path / "garbled.snap"
    garbled.write_bytes(data[:16] + b"{nonsense" + data[25:])
    _one_line_error(capsys, ["resume", str(garbled)], "corrupt")
    _one_line_error(capsys, ["resume", str(tmp_path / "missing.snap")], "cannot read")


def test_snapshot_options_go_together(tmp_path, capsys):
    _one_line_error(capsys, ["boot", "hello", "--snapshot-at", "10"], "go together")


def test_many_guests_share_one_snapshot_copy_on_write(tmp_path, capsys):
    """Guests resumed from one snapshot map its memory MAP_PRIVATE: each one
    costs its own pages written, not the guest's whole RAM (64 MiB here)."""
    from sim.tooling import snapshot

    snap_path = tmp_path / "s.snap"
    main(["boot", "compute", "-q", "--snapshot-at", "100000", "--snapshot-out", str(snap_path),
          "--mem", "64"])
    capsys.readouterr()
    snap = snapshot.load(snap_path)

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    guests = [snapshot.resume(snap)]  # the first pays for shared code/pages
    try:
        before = rss()
        n = 6
        for _ in range(n):
            guests.append(snapshot.resume(snap))
        per_guest = (rss() - before) / n
        assert per_guest < 24 << 20, f"{per_guest / 2**20:.1f} MiB per resumed guest"
        import simpy

        from sim.boot import run_alone

        out = []
        for g in guests[:3]:
            res = run_alone(g, env=simpy.Environment(initial_time=snap.header["t_ns"]))
            out.append((res.stopped.status, res.t_ns, g.console.output))
        assert out[0] == out[1] == out[2] and out[0][0] == 0
    finally:
        for g in guests:
            g.close()


def test_a_snapshot_point_after_the_end_is_reported(tmp_path, capsys):
    snap = tmp_path / "never.snap"
    _one_line_error(capsys, ["boot", "hello", "-q", "--snapshot-at", "10000000",
                             "--snapshot-out", str(snap)], "no snapshot written")
    assert not snap.exists()


@pytest.mark.parametrize("target,guest,at,extra", [
    ("hvt", "time", 1000, []),                       # before its POLL: the wait replays too
    ("spt", "time", 1000, []),
    ("hvt", "time", 2000, []),                       # while it waits: taken once it wakes
    ("hvt", "blk", 2000, ["--block:storage={disk}"]),  # a file-backed block device
])
def test_solo5_guests_resume_with_the_same_remaining_trace(tmp_path, capsys, target, guest,
                                                           at, extra):
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    from test_hvt import guest_image

    image = str(guest_image(tmp_path, guest, target))
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4 << 20))
    extra = [e.format(disk=disk) for e in extra]
    snap, full, tail = tmp_path / "s.snap", tmp_path / "full.jsonl", tmp_path / "tail.jsonl"
    status = main(["boot", image, "-q", *extra, "--snapshot-at", str(at), "--snapshot-out",
                   str(snap), "--trace=call,dev", "--trace-format", "jsonl", "--trace-out",
                   str(full)])
    first = capsys.readouterr().out
    assert status == 0 and "SUCCESS" in first and snap.exists()
    if extra:
        disk.write_bytes(bytes(4 << 20))  # the resumed run must do its writes again
    status2 = main(["resume", str(snap), "-q", "--trace=call,dev", "--trace-format", "jsonl",
                    "--trace-out", str(tail)])
    second = capsys.readouterr().out
    assert status2 == status and "SUCCESS" in second
    _before, after = _split_at_note(full.read_text().splitlines(keepends=True))
    assert "".join(after) == tail.read_text()


def test_solo5_guest_with_a_net_device_is_refused_in_one_line(tmp_path, capsys):
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    from test_hvt import guest_image

    image = str(guest_image(tmp_path, "ping", "hvt"))
    snap = tmp_path / "s.snap"
    status = main(["boot", image, "-q", "--net:service0=switch", "--ping", "10.0.0.2:3",
                   "--snapshot-at", "2000", "--snapshot-out", str(snap), "--", "3"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.count("\n") == 0 and "cannot save its state" in err
