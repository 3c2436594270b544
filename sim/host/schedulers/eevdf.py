"""Linux EEVDF: earliest eligible virtual deadline first (kernel 6.6 and later).

Model (after kernel/sched/fair.c, 6.6):
* vruntime advances by ran_ns * 1024 / weight, as in CFS;
* every task asks for a slice, base_slice x (1 + log2 min(ncpus, 8)); its
  virtual deadline is vruntime + slice * 1024 / weight, renewed each time
  its vruntime reaches it (update_deadline);
* V, the weighted average vruntime of a core's runnable tasks (avg_vruntime),
  decides eligibility: a task is eligible when vruntime <= V, i.e. its lag
  w * (V - vruntime) is not negative;
* the next task is the eligible one with the earliest deadline (pick_eevdf);
* a task that blocks keeps its lag, V - vruntime, clamped to the virtual
  time of max(2 slices, one tick) (update_entity_lag); when it wakes it is
  placed at V - lag * (W + w) / W, W being the load already queued, so that
  its lag is what it was (place_entity); a new task's first deadline is
  half a slice away (PLACE_DEADLINE_INITIAL);
* RUN_TO_PARITY: a running task is not preempted by a wake-up before its
  deadline; without it, a woken task that pick_eevdf would choose preempts
  at once.
Per-core run queues, as cfs; a task that moves to another core keeps its
lag relative to that core's V. Picking scans the core's queue (O(n)).
Defaults: calibration.md, "Scheduler defaults".
"""

from __future__ import annotations

from sim.host.schedulers.base import Param, PerCoreScheduler, register
from sim.host.schedulers.cfs import NICE_0_WEIGHT, SCALE_WITH_CPUS, tunable_factor
from sim.host.units import MS, US


@register
class Eevdf(PerCoreScheduler):
    name = "eevdf"
    unit_weight = NICE_0_WEIGHT
    PARAMS = {
        "base_slice_ns": Param(700 * US, "sysctl_sched_base_slice (unscaled)",
                               "kernel/sched/fair.c (calibration.md)", 1),
        "tick_ns": Param(4 * MS, "scheduler tick, bounds a blocked task's lag",
                         "CONFIG_HZ=250, kernel/sched/fair.c update_entity_lag", 1),
        "run_to_parity": Param(True, "a wake-up does not preempt before the running "
                                     "task's deadline", "kernel/sched/features.h RUN_TO_PARITY",
                               None),
        "scale_with_cpus": SCALE_WITH_CPUS,
    }

    def _init_queues(self, n):
        self.slice = self.params["base_slice_ns"] * tunable_factor(n, self.params["scale_with_cpus"])
        self._rq: list[list] = [[] for _ in range(n)]  # queued tasks, lazily pruned
        self._live = [0] * n
        self._v0 = [0] * n  # a core's V when it last had runnable tasks
        self._seq = 0

    def admit(self, t):
        t.vruntime = None  # placed on first enqueue
        t.deadline = 0
        t.vlag = 0
        t.qcore = None

    # -- virtual time ------------------------------------------------------------
    def _vslice(self, t) -> int:
        return self.slice * NICE_0_WEIGHT // t.weight

    def _running(self, i, now):
        """The task running on core i and its vruntime up to now."""
        cur = self.host.cores[i].current
        if cur is None or cur.vruntime is None:
            return None, 0
        ran = now - self.host.cores[i].run_start
        return cur, cur.vruntime + (ran * NICE_0_WEIGHT // cur.weight if ran > 0 else 0)

    def _avg(self, i, now, extra=None):
        """(V, W): weighted average vruntime of core i's runnable tasks and
        their load (the queued ones, the running one, and ``extra``)."""
        load = total = 0
        for t in self._rq[i]:
            if t.queued and t.qcore == i:
                load += t.weight
                total += t.weight * t.vruntime
        cur, cur_vr = self._running(i, now)
        if cur is not None and cur is not extra:
            load += cur.weight
            total += cur.weight * cur_vr
        if extra is not None and extra.vruntime is not None:
            load += extra.weight
            total += extra.weight * extra.vruntime
        if not load:
            return self._v0[i], 0
        v = total // load
        self._v0[i] = v
        return v, load

    def _place(self, t, i, now):
        """Put t at V - lag * (W + w) / W on core i (place_entity)."""
        v, load = self._avg(i, now)
        lag = t.vlag
        if load:
            lag = lag * (load + t.weight) // load
        first = t.vruntime is None
        t.vruntime = v - lag
        t.deadline = t.vruntime + (self._vslice(t) // 2 if first else self._vslice(t))
        t.vlag = 0

    # -- queues --------------------------------------------------------------------
    def _push(self, core, t, now, woken):
        i = core.index
        if woken:
            self._place(t, i, now)
        elif t.vruntime >= t.deadline:  # its slice is used up: ask for the next
            t.deadline = t.vruntime + self._vslice(t)
        self._seq += 1
        t.qcore = i
        t.qseq = self._seq
        self._rq[i].append(t)
        self._live[i] += 1

    def _pop(self, core, now):
        i = core.index
        queue = [t for t in self._rq[i] if t.queued and t.qcore == i]
        self._rq[i] = queue
        if not queue:
            return None
        v, _load = self._avg(i, now)
        best = None
        for t in queue:
            if t.vruntime <= v and (best is None or (t.deadline, t.qseq) < (best.deadline, best.qseq)):
                best = t
        if best is None:  # rounding: the smallest vruntime is always eligible
            best = min(queue, key=lambda t: (t.vruntime, t.qseq))
        queue.remove(best)
        self._live[i] -= 1
        return best

    def _qlen(self, i):
        return self._live[i]

    def _migrate(self, t, src, dst):
        # Keep its lag: the same distance from V on the new core.
        now = self.host.env.now
        v_src, _ = self._avg(src.index, now, extra=t)
        t.vlag = v_src - t.vruntime
        self._place(t, dst.index, now)
        t.qcore = dst.index

    def slice_ns(self, t, core, now):
        left = (t.deadline - t.vruntime) * t.weight // NICE_0_WEIGHT
        if left <= 0:
            t.deadline = t.vruntime + self._vslice(t)
            left = self.slice
        return left

    def charge(self, t, core, start, end):
        t.vruntime += (end - start) * NICE_0_WEIGHT // t.weight

    def block(self, t, core, now):
        v, _load = self._avg(core.index, now, extra=t)
        limit = max(2 * self.slice, self.params["tick_ns"]) * NICE_0_WEIGHT // t.weight
        t.vlag = max(-limit, min(limit, v - t.vruntime))

    def remove(self, t):
        if t.queued and t.qcore is not None:
            self._live[t.qcore] -= 1
        super().remove(t)

    def preempt_delay(self, woken, running, core, now):
        if self.params["run_to_parity"] or running.vruntime is None:
            return None  # the slice ends at the running task's deadline
        v, _load = self._avg(core.index, now)
        return 0 if woken.vruntime <= v and woken.deadline < running.deadline else None
