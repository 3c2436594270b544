"""The pico ABI's thread and synchronisation calls, as handlers.

A mixin of PicoPersonality: one concept (threads, futexes, events,
wait_any) in one module. The scheduler itself is sim.libos.pico_threads.
"""

from __future__ import annotations

import struct
from typing import Any

from sim.libos.dispatch import ArgumentError, GuestExit, Switch
from sim.libos.pico_streams import EventObject, Listener, PipeEnd
from sim.libos.pico_threads import Wait

MAX_WAIT_HANDLES = 64


class ThreadCalls:
    """Handlers for the threads family; ``self`` is the PicoPersonality."""

    def thread_handlers(self) -> dict[str, Any]:
        return {
            "thread_create": self.call_thread_create,
            "thread_exit": self.call_thread_exit,
            "thread_yield": self.call_thread_yield,
            "thread_self": self.call_thread_self,
            "futex_wait": self.call_futex_wait,
            "futex_wake": self.call_futex_wake,
            "event_create": self.call_event_create,
            "event_set": self.call_event_set,
            "event_clear": self.call_event_clear,
            "wait_any": self.call_wait_any,
        }

    def call_thread_create(self, entry: int, arg: int, stack_top: int) -> int:
        if stack_top % 16 or stack_top < 64:
            raise ArgumentError("EINVAL", f"stack_top {stack_top:#x} is not 16-byte aligned")
        self.regions.check(entry, 1, write=False)
        self.regions.check(stack_top - 64, 64, write=True)
        if self.sched.alive >= self.policy.threads:
            self.monitor.refuse("thread_create", f"thread limit {self.policy.threads} reached")
            raise ArgumentError("ELIMIT", f"thread limit {self.policy.threads} reached")
        h = self._new_handle(None)
        # The thread starts as if called: a zero return address on its stack,
        # so returning from the entry function faults instead of running on.
        self.s.mem.write_u64(stack_top - 8, 0)
        t = self.sched.create(entry, arg, stack_top - 8)
        t.handle = h
        self.handles[h] = t
        return h

    def call_thread_exit(self, status: int) -> Switch | GuestExit:
        self.sched.exit_current(status)
        if not self.sched.threads:
            return GuestExit(status & 0xFF, "exit: the last thread ended")
        return Switch("thread exit")

    def call_thread_yield(self) -> int | Switch:
        if len(self.sched.threads) < 2:
            return 0
        self.sched.current.result = 0
        return Switch("yield")

    def call_thread_self(self) -> int:
        t = self.sched.current
        if not t.handle:
            t.handle = self._new_handle(t)
        return t.handle

    def _word(self, addr: int) -> None:
        if addr % 4:
            raise ArgumentError("EINVAL", f"futex word {addr:#x} is not 4-byte aligned")
        self.regions.check(addr, 4, write=False)

    def call_futex_wait(self, addr: int, expected: int, deadline_ns: int) -> int | Wait:
        self._word(addr)
        if self.s.mem.read_u32(addr) != expected:
            return self.error("EAGAIN")
        if deadline_ns and deadline_ns <= self.s.now():
            return self.error("ETIMEDOUT")
        queue = self._futex.setdefault(addr, [])
        w = Wait("futex", deadline=deadline_ns or None, timeout_result=self.error("ETIMEDOUT"))
        w.on_timeout = lambda: queue.remove(w) if w in queue else None
        queue.append(w)
        return w

    def call_futex_wake(self, addr: int, count: int) -> int:
        self._word(addr)
        queue = self._futex.get(addr, [])
        n = 0
        while queue and n < count:
            queue.pop(0).done = 0
            n += 1
        if not queue:
            self._futex.pop(addr, None)
        return n

    def call_event_create(self, manual_reset: int, initially_set: int) -> int:
        return self._new_handle(EventObject(bool(manual_reset), bool(initially_set)))

    def call_event_set(self, handle: int) -> int:
        self._obj(handle, EventObject).set_ = True
        return 0

    def call_event_clear(self, handle: int) -> int:
        self._obj(handle, EventObject).set_ = False
        return 0

    def call_wait_any(self, handles: bytes, count_bytes: int, deadline_ns: int) -> int | Wait:
        if count_bytes == 0 or count_bytes % 8 or count_bytes > 8 * MAX_WAIT_HANDLES:
            raise ArgumentError("EINVAL", f"wait_any needs 1 to {MAX_WAIT_HANDLES} handles")
        hs = struct.unpack(f"<{count_bytes // 8}q", handles)
        objs = [self._obj(h) for h in hs]
        if any(o is self.sched.current for o in objs):
            raise ArgumentError("EINVAL", "a thread cannot wait for itself")

        def poll() -> int | None:
            for i, (h, o) in enumerate(zip(hs, objs)):
                if self.handles.get(h) is not o:
                    return self.error("EBADH")
                if o.signaled():
                    if isinstance(o, EventObject):
                        o.consume()
                    return i
            return None

        r = poll()
        if r is not None:
            return r
        if deadline_ns and deadline_ns <= self.s.now():
            return self.error("ETIMEDOUT")
        external = any(isinstance(o, (PipeEnd, Listener)) for o in objs)
        return Wait("wait_any", deadline=deadline_ns or None,
                    timeout_result=self.error("ETIMEDOUT"), poll=poll, external=external)

