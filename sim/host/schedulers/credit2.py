"""Xen credit2 (the Xen default since 4.12): credits burnt in proportion to
1/weight, one run queue shared by the cores (credit2's default is one queue
per socket; the model host is one socket).

Model (after xen/common/sched/credit2.c):
* every task starts with ``credit_init_ns`` of credit; running burns
  ran_ns * max_weight / weight of it;
* the queued task with the most credit runs next;
* when the best runnable task has no credit left, every task gets
  ``credit_init_ns`` more, capped at ``credit_init_ns`` (credit reset);
* a task may run until its credit falls to that of the next best task,
  but at least ``min_timer_ns`` and at most ``credit_init_ns``;
* a waking task with more credit than a running one preempts it at once
  (the core chosen is the idle one, or the one running the poorest task).
Defaults: calibration.md, "Scheduler defaults" (xen sched/credit2.c).
"""

from __future__ import annotations

import heapq

from sim.host.schedulers.base import Param, Scheduler, register
from sim.host.units import MS, US


@register
class Credit2(Scheduler):
    name = "credit2"
    unit_weight = 256  # default domain weight, xen sched/credit2.c
    PARAMS = {
        "credit_init_ns": Param(10 * MS, "credit given at each reset", "xen sched/credit2.c (calibration.md)", 1),
        "min_timer_ns": Param(500 * US, "shortest slice", "xen sched/credit2.c (calibration.md)", 1),
    }

    def attach(self, host):
        super().attach(host)
        self._heap: list = []
        self._seq = 0
        self._tasks: dict[int, object] = {}
        self._max_weight = 0
        self._queued = 0

    def admit(self, t):
        t.credit = self.params["credit_init_ns"]
        self._tasks[t.index] = t
        if t.weight > self._max_weight:
            self._max_weight = t.weight

    def _push(self, t):
        self._seq += 1
        t.qseq = self._seq
        t.queued = True
        self._queued += 1
        heapq.heappush(self._heap, (-t.credit, self._seq, t))

    def _top(self):
        h = self._heap
        while h:
            negc, seq, t = h[0]
            if t.queued and t.qseq == seq:
                return t
            heapq.heappop(h)
        return None

    def enqueue(self, t, now):
        self._push(t)
        core = self.host.take_idle(t.last_core)
        if core is not None:
            return core
        # No idle core: the one running the poorest task is the one to tickle.
        best = None
        for c in self.host.cores:
            cur = c.current
            if cur is not None and (best is None or cur.credit < best.current.credit):
                best = c
        return best if best is not None else self.host.cores[0]

    def requeue(self, t, core, now):
        self._push(t)

    def _reset(self):
        init = self.params["credit_init_ns"]
        for t in self._tasks.values():
            c = t.credit + init
            t.credit = c if c < init else init
        self._heap = [(-t.credit, t.qseq, t) for t in self._tasks.values() if t.queued]
        heapq.heapify(self._heap)

    def pick(self, core, now):
        t = self._top()
        if t is None:
            return None
        if t.credit <= 0:
            self._reset()
            t = self._top()
        heapq.heappop(self._heap)
        t.queued = False
        self._queued -= 1
        return t

    def slice_ns(self, t, core, now):
        lo, hi = self.params["min_timer_ns"], self.params["credit_init_ns"]
        nxt = self._top()
        if nxt is None:
            return hi
        gap = (t.credit - nxt.credit) * t.weight // self._max_weight
        return lo if gap < lo else hi if gap > hi else gap

    def charge(self, t, core, start, end):
        t.credit -= (end - start) * self._max_weight // t.weight

    def remove(self, t):
        if t.queued:
            self._queued -= 1
        t.queued = False
        self._tasks.pop(t.index, None)

    def preempt_delay(self, woken, running, core, now):
        ran = now - core.run_start
        burnt = ran * self._max_weight // running.weight if ran > 0 else 0
        return 0 if woken.credit > running.credit - burnt else None
