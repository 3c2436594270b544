"""Linux CFS: weighted fair queueing on virtual runtime, per-core run queues.

Model (after kernel/sched/fair.c, pre-6.6):
* vruntime advances by ran_ns * 1024 / weight (nice-0 weight 1024);
* the queue is ordered by vruntime; the leftmost task runs next;
* slice = period * weight / queue load, period = max(latency, n * min_gran);
* a waking task is placed at max(its vruntime, min_vruntime - latency/2)
  (GENTLE_FAIR_SLEEPERS) and preempts the running task when it is more than
  wakeup_granularity (in its virtual time) behind;
* the tunables scale by 1 + log2(min(ncpus, 8)) (SCHED_TUNABLESCALING_LOG).
Defaults: calibration.md, "Scheduler defaults", from kernel/sched/fair.c.
"""

from __future__ import annotations

import heapq

from sim.host.schedulers.base import Param, PerCoreScheduler, register
from sim.host.units import US

NICE_0_WEIGHT = 1024  # sched_prio_to_weight[20], kernel/sched/core.c
SCALE_WITH_CPUS = Param(True, "scale tunables by 1+log2(min(ncpus,8))",
                        "kernel/sched/fair.c get_update_sysctl_factor", None)


def tunable_factor(ncpus: int, scale: bool) -> int:
    """Linux's SCHED_TUNABLESCALING_LOG: 1 + log2(min(ncpus, 8)), or 1."""
    return 1 + (min(ncpus, 8).bit_length() - 1) if scale else 1


@register
class Cfs(PerCoreScheduler):
    name = "cfs"
    unit_weight = NICE_0_WEIGHT
    PARAMS = {
        "latency_ns": Param(6_000 * US, "sched_latency (unscaled)", "kernel/sched/fair.c (calibration.md)", 1),
        "min_granularity_ns": Param(750 * US, "sched_min_granularity (unscaled)",
                                    "kernel/sched/fair.c (calibration.md)", 1),
        "wakeup_granularity_ns": Param(1_000 * US, "sched_wakeup_granularity (unscaled)",
                                       "kernel/sched/fair.c (calibration.md)", 0),
        "scale_with_cpus": SCALE_WITH_CPUS,
    }

    def _init_queues(self, n):
        factor = tunable_factor(n, self.params["scale_with_cpus"])
        self.latency = self.params["latency_ns"] * factor
        self.min_gran = self.params["min_granularity_ns"] * factor
        self.wake_gran = self.params["wakeup_granularity_ns"] * factor
        self._heap = [[] for _ in range(n)]
        self._live = [0] * n
        self._min_vr = [0] * n
        self._nr = [0] * n      # runnable tasks counted on the core (queued + running)
        self._load = [0] * n    # their summed weights
        self._seq = 0

    def admit(self, t):
        t.vruntime = 0
        t.vr_core = None
        t.rq_core = None

    # -- per-core accounting of runnable load --------------------------------
    def _account_on(self, t, i):
        if t.rq_core == i:
            return
        if t.rq_core is not None:
            self._nr[t.rq_core] -= 1
            self._load[t.rq_core] -= t.weight
        self._nr[i] += 1
        self._load[i] += t.weight
        t.rq_core = i

    def _account_off(self, t):
        if t.rq_core is not None:
            self._nr[t.rq_core] -= 1
            self._load[t.rq_core] -= t.weight
            t.rq_core = None

    def _normalise(self, t, i):
        """Bring ``t``'s vruntime into core ``i``'s frame."""
        if t.vr_core is None:
            t.vruntime = self._min_vr[i]
        elif t.vr_core != i:
            t.vruntime += self._min_vr[i] - self._min_vr[t.vr_core]
        t.vr_core = i

    def _push(self, core, t, now, woken):
        i = core.index
        self._normalise(t, i)
        if woken:
            floor = self._min_vr[i] - self.latency // 2
            if t.vruntime < floor:
                t.vruntime = floor
        self._account_on(t, i)
        self._seq += 1
        t.qcore = i
        t.qseq = self._seq
        heapq.heappush(self._heap[i], (t.vruntime, self._seq, t))
        self._live[i] += 1

    def _pop(self, core, now):
        h = self._heap[core.index]
        while h:
            vr, seq, t = heapq.heappop(h)
            if t.queued and t.qseq == seq:
                self._live[core.index] -= 1
                return t
        return None

    def _qlen(self, i):
        return self._live[i]

    def _migrate(self, t, src, dst):
        self._normalise(t, dst.index)
        self._account_on(t, dst.index)

    def pick(self, core, now):
        t = super().pick(core, now)
        if t is not None:
            self._update_min(core.index, t.vruntime)
        return t

    def _update_min(self, i, curr_vr):
        h = self._heap[i]
        m = curr_vr
        if h and h[0][0] < m:
            m = h[0][0]
        if m > self._min_vr[i]:
            self._min_vr[i] = m

    def slice_ns(self, t, core, now):
        i = core.index
        nr = self._nr[i]
        period = self.latency if nr * self.min_gran <= self.latency else nr * self.min_gran
        load = self._load[i] or t.weight
        s = period * t.weight // load
        return s if s > self.min_gran else self.min_gran

    def charge(self, t, core, start, end):
        t.vruntime += (end - start) * NICE_0_WEIGHT // t.weight
        self._update_min(core.index, t.vruntime)

    def block(self, t, core, now):
        self._account_off(t)

    def remove(self, t):
        if t.queued:
            self._live[t.qcore] -= 1
        self._account_off(t)
        super().remove(t)

    def preempt_delay(self, woken, running, core, now):
        ran = now - core.run_start
        curr_vr = running.vruntime + (ran * NICE_0_WEIGHT // running.weight if ran > 0 else 0)
        gran = self.wake_gran * NICE_0_WEIGHT // woken.weight
        return 0 if curr_vr - woken.vruntime > gran else None
