"""Take a snapshot of a running guest at an instruction count (--snapshot-at).

The guest's slices are cut so that one ends at the first block boundary at
or after INSNS; the snapshot is written just before the next slice starts
(the guest is then between slices and runnable; if it is waiting, at the
first slice boundary after it wakes). A ``note snapshot`` trace event marks
the point, so a trace of the run splits into before and after.
"""

from __future__ import annotations

from typing import Any

from sim.trace import Event


class Snapshotter:
    def __init__(self, guest: Any, at_insns: int, path: str, slice_insns: int):
        self.guest = guest
        self.at = at_insns
        self.path = path
        self.slice_insns = slice_insns
        self.header: dict | None = None
        inner = guest.step

        def step(now_ns: int, max_insns: int = slice_insns) -> Any:
            if self.header is None and guest.stopped is None:
                if guest.retired < self.at:
                    max_insns = min(max_insns, self.at - guest.retired)
                elif getattr(guest, "_blocked", None) is None:
                    self.take(now_ns)
                else:
                    # Waiting: let it wake, run one block and stop again, so
                    # the snapshot comes at the first boundary after it wakes.
                    max_insns = 1
            return inner(now_ns, max_insns)

        guest.step = step

    def wrap(self, run: Any) -> Any:
        def snapshotting() -> Any:
            result = run()
            if self.header is None:
                from sim.tooling.errors import ToolingError

                raise ToolingError(f"the guest stopped after {self.guest.retired} instructions, "
                                   f"before --snapshot-at {self.at}: no snapshot written")
            return result

        return snapshotting

    def take(self, now_ns: int) -> None:
        from sim.tooling.snapshot import save

        g = self.guest
        self.header = save(g, self.path, now_ns, extra={"slice": self.slice_insns})
        g.tracer.emit(Event(now_ns, g.retired, g.name, "note", "snapshot",
                            {"at": self.at}))
