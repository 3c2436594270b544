"""The one error type of the tooling: bad user input, printed as one line."""

from __future__ import annotations


class ToolingError(Exception):
    """A snapshot, record or debugger problem the user caused (one sentence)."""
