"""Xen credit1: proportional share by credits sampled at a periodic tick.

Model (after xen/common/sched/credit.c). Credits are kept in ns of CPU:
* every ``tick_ns`` the task running on each core is debited one tick's worth
  of credit (sampling: a task that is never running at a tick is never
  debited -- the known weakness, calibration.md: a guest yielding just before
  each tick can steal ~95% of a CPU);
* every accounting period (3 ticks) the active tasks share ncores * period
  of credit by weight; a task is active once it has been ticked, and a task
  whose credit exceeds one slice stops earning (inactive) with its credit
  halved;
* priority UNDER (credit >= 0) before OVER; a task waking while UNDER is
  BOOSTed and preempts a running task of lower priority, but only after
  that one has run ``ratelimit_ns``;
* slices of ``slice_ns``; FIFO within a priority.
Ticks are all at multiples of tick_ns and are evaluated lazily when a run
segment is charged (exactly the sampled result, without tick events).
Priorities of queued tasks are fixed when they are queued (as in Xen, where
csched_acct changes a priority but not a queue position).
"""

from __future__ import annotations

from collections import deque

from sim.host.schedulers.base import Param, PerCoreScheduler, register
from sim.host.units import MS

BOOST, UNDER, OVER = 2, 1, 0


@register
class Credit1(PerCoreScheduler):
    name = "credit1"
    unit_weight = 256  # default domain weight, xen sched/credit.c (calibration.md)
    PARAMS = {
        "slice_ns": Param(30 * MS, "time slice", "xen sched/credit.c (calibration.md)", 1),
        "tick_ns": Param(10 * MS, "accounting tick", "xen sched/credit.c (calibration.md)", 1),
        "ticks_per_period": Param(3, "ticks per credit accounting period",
                                  "xen sched/credit.c CSCHED_TICKS_PER_ACCT", 1),
        "ratelimit_ns": Param(1 * MS, "minimum run before a wake-up preempts",
                              "xen sched/credit.c sched_ratelimit_us (calibration.md)", 0),
    }

    def _init_queues(self, n):
        self._q = [(deque(), deque(), deque()) for _ in range(n)]  # OVER, UNDER, BOOST
        self._live = [0] * n
        self.period = self.params["tick_ns"] * self.params["ticks_per_period"]
        self._next_acct = self.period
        self._active: dict[int, object] = {}  # task index -> task, in activation order
        self._active_weight = 0

    def admit(self, t):
        t.credit = 0
        t.prio = UNDER
        t.active = False

    def _accounting(self, now):
        while now >= self._next_acct:
            self._next_acct += self.period
            if not self._active_weight:
                continue
            total = self.ncores * self.period
            cap = self.params["slice_ns"]
            weight = self._active_weight
            for t in list(self._active.values()):
                t.credit += total * t.weight // weight
                if t.credit > cap:
                    t.credit //= 2
                    self._deactivate(t)
                elif t.credit < -cap:
                    t.credit = -cap
                if t.prio != BOOST:
                    t.prio = UNDER if t.credit >= 0 else OVER

    def _activate(self, t):
        t.active = True
        self._active[t.index] = t
        self._active_weight += t.weight

    def _deactivate(self, t):
        if t.active:
            t.active = False
            del self._active[t.index]
            self._active_weight -= t.weight

    def _push(self, core, t, now, woken):
        # Accounting due now comes first: a slice that ends on a period
        # boundary must queue its task with the priority the new credit gives.
        self._accounting(now)
        if woken and t.prio == UNDER:
            t.prio = BOOST
        t.qcore = core.index
        self._q[core.index][t.prio].append(t)
        self._live[core.index] += 1

    def _pop(self, core, now):
        self._accounting(now)
        for q in reversed(self._q[core.index]):
            while q:
                t = q.popleft()
                if t.queued:
                    self._live[core.index] -= 1
                    return t
        return None

    def _qlen(self, i):
        return self._live[i]

    def slice_ns(self, t, core, now):
        return self.params["slice_ns"]

    def charge(self, t, core, start, end):
        tick = self.params["tick_ns"]
        ticks = end // tick - start // tick   # tick instants k*tick in (start, end]
        if ticks:
            if not t.active:
                self._activate(t)
            t.credit -= ticks * tick
            t.prio = UNDER if t.credit >= 0 else OVER  # a tick ends BOOST

    def remove(self, t):
        if t.queued:
            self._live[t.qcore] -= 1
        self._deactivate(t)
        super().remove(t)

    def _prio_now(self, t, now):
        """``t``'s priority as the ticks since its segment began left it
        (those ticks are charged lazily, when the segment ends)."""
        tick = self.params["tick_ns"]
        if not t.in_run or now // tick == t.seg_start // tick:
            return t.prio
        credit = t.credit - (now // tick - t.seg_start // tick) * tick
        return UNDER if credit >= 0 else OVER

    def preempt_delay(self, woken, running, core, now):
        if woken.prio <= self._prio_now(running, now):
            return None
        ran = now - core.dispatched_at
        limit = self.params["ratelimit_ns"]
        return 0 if ran >= limit else limit - ran
