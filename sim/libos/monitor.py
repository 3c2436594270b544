"""The security monitor of the pico personality: a manifest, deny by default.

Every call a picoprocess makes passes ``Monitor.admit`` before its handler
runs (the dispatcher calls it after decoding, so the monitor sees checked,
typed arguments). The manifest says which calls an image may make, which
stream URIs it may name, and how much it may hold (memory, threads,
handles, file bytes). It is TOML:

    [pico]
    calls = ["family:process", "family:streams", "vm_alloc"]   # or ["*"]
    uris = ["console:", "file:*", "chan:kv"]                    # fnmatch patterns
    memory = "4MiB"        # vm_alloc quota (bytes or "N KiB|MiB|GiB")
    threads = 4            # most threads alive at once (the first one counts)
    handles = 32           # most handles open at once
    file_bytes = "1MiB"    # largest file the guest may write in its sandbox

It comes, in order of precedence, from ``sim boot --policy FILE``, a side
file next to the image (``app.policy.toml`` or ``app.elf.policy.toml``), the
image's Pico manifest note, or else ``DEFAULT_MANIFEST`` (console and clocks
only). A denied call returns EPERM; a quota reached returns ENOMEM/ELIMIT;
both emit a ``monitor`` trace event. The monitor also counts the distinct
calls an image used: its effective attack surface.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.libos.abi import Abi, Call

DEFAULT_MANIFEST = """\
# No manifest: the picoprocess may print, read clocks and randomness, and exit.
[pico]
calls = ["exit", "console_write", "clock_monotonic", "clock_wall", "sleep_until",
         "random_bytes", "cmdline", "process_info", "debug_log", "thread_self", "thread_yield"]
uris = ["console:"]
memory = 0
threads = 1
handles = 8
file_bytes = 0
"""

LIMITS = {"memory": 0, "threads": 1, "handles": 8, "file_bytes": 0}
MAX_THREADS = 256
MAX_HANDLES = 4096
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


class PolicyError(ValueError):
    """A manifest that cannot be read (one sentence)."""


def _size(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool):
        raise PolicyError(f"{source}: {key} must be a size, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise PolicyError(f"{source}: {key} must not be negative")
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2)]
    raise PolicyError(f"{source}: {key} = {value!r} is not a size such as 4096 or \"4MiB\"")


@dataclass(frozen=True)
class Policy:
    calls: tuple[str, ...]
    uris: tuple[str, ...]
    memory: int
    threads: int
    handles: int
    file_bytes: int
    source: str

    @classmethod
    def from_toml(cls, text: str, source: str) -> Policy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise PolicyError(f"{source}: not valid TOML ({err})") from None
        table = data.get("pico")
        if not isinstance(table, dict):
            raise PolicyError(f"{source}: no [pico] table")
        unknown = set(table) - {"calls", "uris", *LIMITS}
        if unknown:
            raise PolicyError(f"{source}: unknown key {min(unknown)!r} in [pico]")
        lists = {}
        for key in ("calls", "uris"):
            value = table.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PolicyError(f"{source}: {key} must be a list of strings")
            lists[key] = tuple(value)
        limits = {k: _size(table.get(k, d), k, source) for k, d in LIMITS.items()}
        if limits["threads"] > MAX_THREADS:
            raise PolicyError(f"{source}: threads = {limits['threads']} exceeds {MAX_THREADS}")
        if limits["handles"] > MAX_HANDLES:
            raise PolicyError(f"{source}: handles = {limits['handles']} exceeds {MAX_HANDLES}")
        return cls(lists["calls"], lists["uris"], source=source, **limits)

    def allows_call(self, call: Call) -> bool:
        for pat in self.calls:
            if pat == "*" or pat == call.name or pat == f"family:{call.family}":
                return True
        return False

    def allows_uri(self, uri: str) -> bool:
        return any(fnmatch.fnmatchcase(uri, pat) for pat in self.uris)


def find_policy(image_path: Path | None, note_text: str | None,
                override: str | Path | None = None) -> Policy:
    """The policy that governs an image (see the module docstring for the order)."""
    if override is not None:
        path = Path(override)
        try:
            return Policy.from_toml(path.read_text(encoding="utf-8"), str(path))
        except OSError as err:
            raise PolicyError(f"cannot read policy {path}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise PolicyError(f"{path}: not UTF-8 text") from None
    if image_path is not None:
        image_path = Path(image_path)
        for side in (image_path.with_suffix(".policy.toml"),
                     image_path.with_name(image_path.name + ".policy.toml")):
            if side.is_file():
                return Policy.from_toml(side.read_text(encoding="utf-8"), str(side))
    if note_text is not None:
        return Policy.from_toml(note_text, "the image's Pico manifest note")
    return Policy.from_toml(DEFAULT_MANIFEST, "the default manifest")


class Monitor:
    """Admits or denies each call and keeps the attack-surface counts."""

    def __init__(self, policy: Policy, abi: Abi, emit: Callable[..., None]):
        self.policy = policy
        self.abi = abi
        self.emit = emit
        self.used: Counter[str] = Counter()
        self.denied: Counter[str] = Counter()
        self._allowed = {c.name: policy.allows_call(c) for c in abi.calls}

    def admits_always(self, call: Call) -> bool:
        """Allowed whatever the arguments (no URI to match): may skip admit."""
        return self._allowed.get(call.name, False) and not any(a.text for a in call.args)

    def admit(self, call: Call, kwargs: dict[str, Any]) -> str | None:
        if not self._allowed.get(call.name, False):
            self.denied[call.name] += 1
            return f"{call.name} is not in the manifest's calls ({self.policy.source})"
        uri = kwargs.get("uri")
        if isinstance(uri, str) and not self.policy.allows_uri(uri):
            self.denied[call.name] += 1
            return f"URI {uri!r} matches none of the manifest's uris"
        self.used[call.name] += 1
        return None

    def refuse(self, call: str, reason: str, **fields: Any) -> None:
        """A denial found by a handler (quota, sandbox escape): count and trace it."""
        self.denied[call] += 1
        self.emit("monitor", "deny", call=call, reason=reason, **fields)

    def summary(self) -> str:
        n = len(self.abi.calls)
        names = ",".join(sorted(self.used))
        text = f"surface {len(self.used)} of {n} pico calls used ({names})"
        if self.denied:
            text += f"; monitor denied {sum(self.denied.values())} call(s)"
        return text
