"""--timeline: Chrome trace event JSON of one guest's run, over simulated time."""

from __future__ import annotations

import json

import pytest

from sim.cli import main

examples = pytest.importorskip("sim.examples")


def _timeline(tmp_path, name: str, *extra: str) -> tuple[bytes, int]:
    out = tmp_path / f"{name}.{len(list(tmp_path.iterdir()))}.json"
    status = main(["boot", name, "-q", "--timeline", str(out), *extra])
    return out.read_bytes(), status


def test_timeline_is_chrome_trace_json_with_calls_waits_and_exit(tmp_path, capsys):
    data, status = _timeline(tmp_path, "sleep")
    assert status == 0
    doc = json.loads(data)
    events = doc["traceEvents"]
    threads = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert threads == {"vCPU", "calls", "devices", "events"}
    calls = [e for e in events if e.get("cat") == "call"]
    assert {"cmdline", "sleep_until", "console_write", "exit"} <= {e["name"] for e in calls}
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in calls)
    waits = [e for e in events if e.get("cat") == "wait"]
    assert len(waits) == 1 and waits[0]["dur"] > 4900  # the 5 ms sleep, in us
    runs = [e for e in events if e.get("cat") == "vcpu"]
    assert sum(e["args"]["insns"] for e in runs) > 0
    assert any(e["cat"] == "dev" and e["ph"] == "i" for e in events if "cat" in e)
    (exit_event,) = [e for e in events if e.get("cat") == "exit"]
    assert exit_event["ph"] == "i" and exit_event["args"]["status"] == 0
    # every timestamp is simulated ns / 1000
    for e in events:
        if "ts" in e:
            assert round(e["ts"] * 1000) * 1000 == pytest.approx(e["ts"] * 1e6)


def test_timeline_is_byte_identical_across_runs(tmp_path, capsys):
    first, _ = _timeline(tmp_path, "hello", "--seed", "7")
    second, _ = _timeline(tmp_path, "hello", "--seed", "7")
    assert first == second


def test_timeline_shows_a_fault_and_the_exit(tmp_path, capsys):
    data, status = _timeline(tmp_path, "fault_null")
    assert status == 139
    events = json.loads(data)["traceEvents"]
    kinds = [e.get("cat") for e in events]
    assert "fault" in kinds and kinds[-1] in ("exit", "vcpu")
    assert any(e.get("cat") == "exit" for e in events)


def test_timeline_with_text_trace_keeps_the_text_trace_as_asked(tmp_path, capsys):
    trace = tmp_path / "trace.txt"
    main(["boot", "hello", "-q", "--trace=call", "--trace-out", str(trace),
          "--timeline", str(tmp_path / "t.json")])
    text = trace.read_text()
    assert " call " in text and " dev " not in text  # dev is the timeline's, not the trace's
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]


def test_timeline_attached_after_boot_still_sees_fast_path_calls(tmp_path):
    """The pico fast path skips call events; a timeline attached after the
    guest booted must still get every call (here: clock_monotonic)."""
    from sim.boot import run_alone
    from sim.examples import resolve
    from sim.guest import Guest
    from sim.image import Image
    from sim.libos.personality import BootConfig
    from sim.tooling.timeline import TimelineRecorder, TimelineSink

    path = tmp_path / "t.json"
    guest = Guest(Image.load(resolve("sleep")), BootConfig(args=("sleep",)))
    with open(path, "w", encoding="utf-8") as stream:
        sink = TimelineSink(stream, guest.name)
        TimelineRecorder(guest, sink)
        run_alone(guest)
        sink.close()
    guest.close()
    names = {e.get("name") for e in json.loads(path.read_text())["traceEvents"]}
    assert "clock_monotonic" in names
