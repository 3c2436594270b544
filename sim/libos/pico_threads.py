"""Threads of a picoprocess: register contexts on one memory, one core.

Each thread is a saved Unicorn register context. One runs at a time on the
guest's vCPU; the scheduler here is round robin: a thread runs until its
slice ends (``preempt``), it blocks, yields or exits. A blocked thread holds
a ``Wait``: it is ready again when something completes the wait (``done``,
set by a futex_wake for example), when its ``poll`` returns a result (a
stream became readable, an event was set) or when its deadline passes.

Switching only ever happens outside the emulator (between two ``vcpu.run``
calls): a call that blocks stops the slice and ``Guest.step`` asks the
personality to pick the next thread. New threads get their registers the
first time they are switched in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from unicorn import x86_const as X

from sim.libos.pico_abi import KIND_THREAD


@dataclass(eq=False)
class Wait:
    """What a blocked thread waits for (a call's deferred result)."""

    reason: str
    deadline: int | None = None          # monotonic ns, or None
    timeout_result: int = 0              # result when the deadline passes
    poll: Callable[[], int | None] | None = None
    on_timeout: Callable[[], None] | None = None
    done: int | None = None              # set by a waker: the call's result
    external: bool = False               # may be completed by another guest


@dataclass(eq=False)
class Thread:
    tid: int
    entry: int = 0
    arg: int = 0
    stack_top: int = 0
    ctx: Any = None                      # Unicorn context, None until first run
    state: str = "ready"                 # ready | running | blocked | exited
    wait: Wait | None = None
    result: int | None = None            # RAX to load when it runs next
    status: int = 0
    handle: int = 0
    kind: int = field(default=KIND_THREAD, init=False)

    def signaled(self) -> bool:
        return self.state == "exited"

    def attr(self) -> dict[str, int]:
        return {"kind": KIND_THREAD, "status": self.status if self.state == "exited" else 0,
                "readable": 0}

    def close(self, now_ns: int = 0) -> None:
        pass


class Scheduler:
    def __init__(self, uc, limit: int, now: Callable[[], int]):
        self.uc = uc
        self.limit = max(1, limit)
        self.now = now
        main = Thread(tid=1, state="running")
        self.threads: list[Thread] = [main]   # alive threads, round-robin order
        self.current = main
        self.next_tid = 2
        self.switches = 0

    @property
    def alive(self) -> int:
        return len(self.threads)

    def create(self, entry: int, arg: int, stack_top: int) -> Thread:
        t = Thread(tid=self.next_tid, entry=entry, arg=arg, stack_top=stack_top)
        self.next_tid += 1
        self.threads.append(t)
        return t

    def block(self, wait: Wait) -> None:
        self.current.state = "blocked"
        self.current.wait = wait

    def exit_current(self, status: int) -> None:
        t = self.current
        t.state = "exited"
        t.status = status
        self.threads.remove(t)

    # -- picking the next thread ---------------------------------------------
    def _refresh(self) -> None:
        """Make blocked threads whose wait completed ready again."""
        now = self.now()
        for t in self.threads:
            w = t.wait
            if t.state != "blocked" or w is None:
                continue
            result = w.done
            if result is None and w.poll is not None:
                result = w.poll()
            if result is None and w.deadline is not None and now >= w.deadline:
                if w.on_timeout is not None:
                    w.on_timeout()
                result = w.timeout_result
            if result is not None:
                t.state, t.wait, t.result = "ready", None, result

    def pick(self, rotate: bool) -> Thread | None:
        """The next thread to run (round robin after the current), or None."""
        self._refresh()
        if not self.threads:
            return None
        order = self.threads
        if self.current in order:
            i = order.index(self.current)
            order = order[i + 1:] + order[:i + 1] if rotate else order[i:] + order[:i]
        for t in order:
            if t.state in ("ready", "running"):
                return t
        return None

    def switch_to(self, t: Thread) -> bool:
        """Load t's registers (outside the emulator); True when it changed threads."""
        cur = self.current
        changed = t is not cur
        if changed:
            if cur.state != "exited":
                cur.ctx = self.uc.context_save()
                if cur.state == "running":
                    cur.state = "ready"
            if t.ctx is None:
                self._first_run(t)
            else:
                self.uc.context_restore(t.ctx)
                t.ctx = None
            self.current = t
            self.switches += 1
        t.state = "running"
        if t.result is not None:
            self.uc.reg_write(X.UC_X86_REG_RAX, t.result & 0xFFFF_FFFF_FFFF_FFFF)
            t.result = None
        return changed

    def _first_run(self, t: Thread) -> None:
        w = self.uc.reg_write
        for reg in (X.UC_X86_REG_RAX, X.UC_X86_REG_RBX, X.UC_X86_REG_RCX, X.UC_X86_REG_RDX,
                    X.UC_X86_REG_RSI, X.UC_X86_REG_RBP, X.UC_X86_REG_R8, X.UC_X86_REG_R9,
                    X.UC_X86_REG_R10, X.UC_X86_REG_R11, X.UC_X86_REG_R12, X.UC_X86_REG_R13,
                    X.UC_X86_REG_R14, X.UC_X86_REG_R15):
            w(reg, 0)
        w(X.UC_X86_REG_RDI, t.arg)
        w(X.UC_X86_REG_RSP, t.stack_top)
        w(X.UC_X86_REG_RFLAGS, 0x2)
        w(X.UC_X86_REG_RIP, t.entry)

    # -- waiting as a whole ----------------------------------------------------
    def earliest_deadline(self) -> int | None:
        ds = [t.wait.deadline for t in self.threads
              if t.state == "blocked" and t.wait is not None and t.wait.deadline is not None]
        return min(ds) if ds else None

    def waits_externally(self) -> bool:
        return any(t.wait is not None and t.wait.external for t in self.threads
                   if t.state == "blocked")
