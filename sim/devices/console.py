"""The console: bytes a guest writes, kept in order, handed to a listener.

Like every device it sees only what it is given (bytes), never guest
addresses, and it can save and restore its state.
"""

from __future__ import annotations

from typing import Callable


class Console:
    name = "console"

    def __init__(self, on_output: Callable[[bytes], None] | None = None, limit: int = 64 << 20):
        self._chunks: list[bytes] = []
        self._size = 0
        self.limit = limit
        self.on_output = on_output
        self.dropped = 0

    def write(self, data: bytes) -> int:
        """Keep data (up to the limit, so a chatty guest cannot eat the host)."""
        room = max(0, self.limit - self._size)
        kept = data[:room]
        self.dropped += len(data) - len(kept)
        if kept:
            self._chunks.append(bytes(kept))
            self._size += len(kept)
        if self.on_output is not None:
            self.on_output(bytes(data))
        return len(data)

    @property
    def output(self) -> bytes:
        return b"".join(self._chunks)

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def save(self) -> dict:
        return {"output": self.output.hex(), "dropped": self.dropped}

    def restore(self, state: dict) -> None:
        data = bytes.fromhex(state["output"])
        self._chunks = [data] if data else []
        self._size = len(data)
        self.dropped = state["dropped"]
