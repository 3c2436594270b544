"""--record / sim replay: the replay's trace equals the recording's, byte for byte."""

from __future__ import annotations

import json

import pytest

from sim.cli import main

pytest.importorskip("sim.examples")


def _boot_recorded(tmp_path, capsys, image, *extra, args=()):
    record, trace = tmp_path / "run.rec", tmp_path / "boot.jsonl"
    status = main(["boot", image, "-q", "--record", str(record), "--trace",
                   "--trace-format", "jsonl", "--trace-out", str(trace), *extra, "--", *args])
    out = capsys.readouterr().out
    return record, trace.read_bytes(), status, out


@pytest.mark.parametrize("image,extra,args", [
    ("hello", ["--seed", "42"], ["one", "two"]),
    ("sleep", ["--slice", "1000", "--clock-mhz", "2000"], []),
    ("fault_null", [], []),
])
def test_replay_reproduces_the_trace_byte_for_byte(tmp_path, capsys, image, extra, args):
    record, original, status, out = _boot_recorded(tmp_path, capsys, image, *extra, args=args)
    doc = json.loads(record.read_text())
    assert doc["seed"] == (42 if "--seed" in extra else 0)
    assert doc["guest_args"] == list(args)
    assert doc["image"]["sha256"] and doc["outcome"]["status"] == status
    replayed = tmp_path / "replay.jsonl"
    assert main(["replay", str(record), "-q", "--trace", "--trace-format", "jsonl",
                 "--trace-out", str(replayed)]) == status
    assert capsys.readouterr().out == out
    assert replayed.read_bytes() == original


def test_replay_needs_only_the_record(tmp_path, capsys):
    """The image travels in the record: replay works after the image is gone."""
    import shutil

    from sim.examples import resolve

    image = tmp_path / "mine.elf"
    shutil.copy(resolve("hello"), image)
    record, original, status, _ = _boot_recorded(tmp_path, capsys, str(image))
    image.unlink()
    replayed = tmp_path / "r.jsonl"
    assert main(["replay", str(record), "-q", "--trace", "--trace-format", "jsonl",
                 "--trace-out", str(replayed)]) == status
    assert replayed.read_bytes() == original


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err, err


def test_bad_records_give_one_line(tmp_path, capsys):
    record, *_ = _boot_recorded(tmp_path, capsys, "hello")
    text = record.read_text()
    bad = tmp_path / "bad.rec"
    bad.write_text(text[: len(text) // 2])
    _one_line_error(capsys, ["replay", str(bad)], "truncated")
    bad.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(50))
    _one_line_error(capsys, ["replay", str(bad)], "not a picosim record")
    bad.write_text(json.dumps({**json.loads(text), "version": 7}))
    _one_line_error(capsys, ["replay", str(bad)], "version 7")
    bad.write_text(json.dumps({"format": "picosim-record", "version": 1}))
    _one_line_error(capsys, ["replay", str(bad)], "incomplete")
    _one_line_error(capsys, ["replay", str(tmp_path / "none.rec")], "cannot read")


def test_a_diverging_replay_is_reported(tmp_path, capsys):
    record, *_ = _boot_recorded(tmp_path, capsys, "hello")
    doc = json.loads(record.read_text())
    doc["outcome"]["retired"] += 1
    record.write_text(json.dumps(doc))
    _one_line_error(capsys, ["replay", str(record), "-q"], "diverged")


def test_options_of_other_modules_are_recorded(tmp_path, capsys):
    record, *_ = _boot_recorded(tmp_path, capsys, "hello", "--mem", "32",
                                "--link-latency", "1234")
    boot = json.loads(record.read_text())["boot"]
    assert boot[boot.index("--mem") + 1] == "32"
    assert boot[boot.index("--link-latency") + 1] == "1234"
    assert "--trace" not in boot and "--record" not in boot


def test_replay_of_a_networked_run_reproduces_every_frame(tmp_path, capsys):
    """Frames from the built-in peers are inputs too: the record's seed and
    options make the peers send them again, at the same simulated times, so
    the replay's trace (every hypercall with its frame lengths) and pcap are
    identical to the recording's."""
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    from test_hvt import guest_image

    image = str(guest_image(tmp_path, "ping", "hvt"))
    pcap_a, pcap_b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    record, original, status, out = _boot_recorded(
        tmp_path, capsys, image, "--net:service0=switch", "--ping", "10.0.0.2:20",
        "--pcap", str(pcap_a), "--seed", "9", args=["20"])
    capsys.readouterr()
    assert status == 0 and b"net_read" in original
    replayed = tmp_path / "replay.jsonl"
    assert main(["replay", str(record), "-q", "--trace", "--trace-format", "jsonl",
                 "--trace-out", str(replayed), "--pcap", str(pcap_b)]) == status
    assert replayed.read_bytes() == original
    assert pcap_b.read_bytes() == pcap_a.read_bytes()
