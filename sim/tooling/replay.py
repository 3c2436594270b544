"""Deterministic record and replay of a single-guest run.

A run is a pure function of its inputs: the image, the boot options (memory,
seed, clock, slice, ABI, device options), the guest's command line and what
enters from outside through devices. Block device contents are recorded.
Network frames come from the built-in peers, which are part of the
simulation: the recorded options (`--ping`, links, loss) and seed make them
send the same frames at the same simulated times again, which the tests
check frame by frame against a pcap of each run. ``--record FILE``
writes all of them, with the image itself and the content of file-backed
block devices as they were when the run started, plus the run's outcome
(status, simulated end time, instructions). ``sim replay FILE`` rebuilds the
same boot from the record alone and checks that the outcome matches; the
trace of the replay equals the original's byte for byte.

Record format: one JSON document, ``{"format": "picosim-record",
"version": 1, ...}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.tooling.errors import ToolingError

RECORD_VERSION = 1
MAX_EMBED = 256 << 20


class ReplayError(ToolingError):
    """A record that cannot be read or replayed, or a replay that diverged."""


# Options that shape only the output of a run, or the tooling itself.
NOT_INPUTS = frozenset({"trace", "trace_format", "trace_out", "quiet", "timeline", "gdb",
                        "record", "snapshot_at", "snapshot_out", "help", "pcap"})


def _boot_argv(args: Any, config: Any) -> list[str]:
    """Every boot option that differs from its default, as a command line.

    Generic over the options other modules add to ``sim boot``, so a new
    device option is recorded without a change here.
    """
    import argparse

    from sim.bootcmd import register

    parser = argparse.ArgumentParser(prog="sim")
    register(parser.add_subparsers(dest="command"))
    boot = parser._subparsers._group_actions[0].choices["boot"]
    argv: list[str] = []
    for action in boot._actions:
        if not action.option_strings or action.dest in NOT_INPUTS:
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default or value is None:
            continue
        opt = action.option_strings[-1]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            argv.append(opt)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                argv += [opt, str(item)]
        elif isinstance(value, (list, tuple)) and (action.nargs in ("*", "+")
                                                   or isinstance(action.nargs, int)):
            argv += [opt, *map(str, value)]
        else:
            argv += [opt, str(value)]
    return argv + list(args.extra)


def _block_inputs(guest: Any) -> list[dict]:
    """Content of every file-backed block device, as the run starts."""
    inputs = []
    for name, dev in sorted(guest.services.devices.items(), key=lambda kv: str(kv[0])):
        saver = getattr(dev, "save", None)
        if saver is None:
            continue
        state = saver()
        if state.get("kind") == "file":
            data = Path(state["path"]).read_bytes()
            entry = {"device": str(name), "path": state["path"],
                     "sha256": hashlib.sha256(data).hexdigest()}
            if len(data) <= MAX_EMBED:
                entry["data"] = base64.b64encode(data).decode()
            inputs.append({"kind": "block", **entry})
        elif state.get("kind") == "memory":
            inputs.append({"kind": "block", "device": str(name),
                           "sha256": hashlib.sha256(bytes.fromhex(state["data"])).hexdigest()})
    return inputs


class Recorder:
    def __init__(self, args: Any, guest: Any):
        self.args = args
        self.guest = guest

    def wrap(self, run: Callable[[], Any]) -> Callable[[], Any]:
        def recorded() -> Any:
            g = self.guest
            image = Path(g.image.path).read_bytes()
            doc = {
                "format": "picosim-record", "version": RECORD_VERSION,
                "image": {"name": Path(g.image.path).name, "path": str(Path(g.image.path).resolve()),
                          "sha256": hashlib.sha256(image).hexdigest(),
                          "data": base64.b64encode(image).decode()},
                "boot": _boot_argv(self.args, g.config),
                "guest_args": list(g.config.args[1:]),
                "seed": g.config.seed,
                "inputs": _block_inputs(g),
            }
            result = run()
            doc["outcome"] = {"status": result.stopped.status, "reason": result.stopped.reason,
                              "t_ns": result.t_ns, "retired": result.retired}
            tmp = f"{self.args.record}.tmp{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as out:
                json.dump(doc, out, sort_keys=True)
                out.write("\n")
            os.replace(tmp, self.args.record)
            return result

        return recorded


def load(path: str | os.PathLike) -> dict:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ReplayError(f"{p}: cannot read record ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ReplayError(f"{p}: not a picosim record (not text)") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise ReplayError(f"{p}: not a picosim record, or truncated (bad JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != "picosim-record":
        raise ReplayError(f"{p}: not a picosim record")
    if doc.get("version") != RECORD_VERSION:
        raise ReplayError(f"{p}: record format version {doc.get('version')}, this picosim "
                          f"reads version {RECORD_VERSION}")
    for key in ("image", "boot", "guest_args", "inputs", "outcome"):
        if key not in doc:
            raise ReplayError(f"{p}: incomplete record (no {key!r}); was the run cut short?")
    return doc


def image_for(doc: dict, workdir: str) -> str:
    """The recorded image: its original path if unchanged, else the embedded copy."""
    img = doc["image"]
    try:
        data = base64.b64decode(img["data"], validate=True)
    except (ValueError, KeyError, TypeError):
        raise ReplayError("corrupt record: bad image data") from None
    if hashlib.sha256(data).hexdigest() != img["sha256"]:
        raise ReplayError("corrupt record: the embedded image does not match its hash")
    path = Path(workdir) / Path(img["name"]).name
    path.write_bytes(data)
    return str(path)


def check_inputs(doc: dict, guest: Any) -> None:
    """Device inputs must be what they were when the recording started."""
    now = {(i["device"]): i for i in _block_inputs(guest)}
    for entry in doc["inputs"]:
        if entry.get("kind") != "block":
            continue
        cur = now.get(entry["device"])
        if cur is None:
            raise ReplayError(f"block device {entry['device']!r} is missing in the replay")
        if cur["sha256"] != entry["sha256"]:
            if "data" in entry and "path" in cur:
                Path(cur["path"]).write_bytes(base64.b64decode(entry["data"]))
                continue
            raise ReplayError(f"block device {entry['device']!r} content differs from the "
                              "recording")


def check_outcome(doc: dict, result: Any) -> None:
    want = doc["outcome"]
    got = {"status": result.stopped.status, "reason": result.stopped.reason,
           "t_ns": result.t_ns, "retired": result.retired}
    if got != want:
        diff = ", ".join(f"{k} {want[k]!r} -> {got[k]!r}" for k in want if want[k] != got.get(k))
        raise ReplayError(f"replay diverged from the recording: {diff}")


def temp_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="picosim-replay-")
