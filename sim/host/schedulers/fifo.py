"""FIFO: run each task until it blocks, in arrival order (no preemption).

The textbook first-come first-served policy (OSTEP ch. 7); no parameters.
"""

from __future__ import annotations

from sim.host.schedulers.base import FifoQueues, PerCoreScheduler, register


@register
class Fifo(PerCoreScheduler):
    name = "fifo"
    PARAMS = {}

    def _init_queues(self, n):
        self._q = FifoQueues(n)

    def _push(self, core, t, now, woken):
        t.qcore = core.index
        self._q.push(core.index, t)

    def _pop(self, core, now):
        return self._q.pop(core.index)

    def _qlen(self, i):
        return self._q.live[i]

    def remove(self, t):
        if t.queued:
            self._q.forget(t.qcore)
        super().remove(t)
