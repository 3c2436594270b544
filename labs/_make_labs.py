"""Generate the lab notebooks (labs/*.ipynb) from this one source.

    .venv/bin/python labs/_make_labs.py          # rewrite every notebook
    .venv/bin/python labs/_make_labs.py 03       # only labs whose file starts with 03

Notebooks are written without outputs. Each is a list of cells: ``md(...)``
for text, ``code(...)`` for code; a cell's tags go in ``tags=``. The check
cells call sim.labkit.check, which uses the computed answer when the student
left the question as None and PICOSIM_INSTRUCTOR=1 (see labs/README.md).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str, tags: tuple[str, ...] = ()):
    c = new_code_cell(textwrap.dedent(text).strip())
    if tags:
        c.metadata["tags"] = list(tags)
    return c


SETUP = """\
# FULL = False: small parameters, the whole notebook runs in well under a minute.
# FULL = True: the classroom-sized run (longer simulations, more seeds).
FULL = False

import sim.labkit as lk
from sim.labkit import check, discuss
print("instructor mode: answers are filled in and shown" if lk.instructor()
      else "student mode: answer the questions; set PICOSIM_INSTRUCTOR=1 to see answers")
"""


def notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


LABS: dict[str, list] = {}

# ---------------------------------------------------------------------------
# Lab 3: scheduling and isolation
# ---------------------------------------------------------------------------

LABS["03_scheduling.ipynb"] = [
    md("""
    # Lab 3: Scheduling and isolation, the noisy neighbour

    *45-60 minutes. Prerequisites: lab 1 is helpful but not needed; basic
    probability (percentiles, CDFs).*

    Isolation is not only about memory and privilege: tenants that share a
    core share **time**. In this lab two guests share one simulated core:

    * `web`, a light service: requests arrive at random (Poisson, one every
      10 ms on average) and each needs about 2 ms of CPU (exponentially
      distributed). Alone it uses about 20% of the core.
    * `hog`, a CPU-bound loop that never blocks.

    You will run them under four schedulers of the host model (`sim/host/schedulers/`)
    and compare the service's request latency; then you will reproduce a
    known weakness of Xen's credit1 scheduler.

    The schedulers start from their real defaults (the sources are listed in
    `../shared/specs/calibration.md`, section *Scheduler defaults*):

    | scheduler | defaults in the model | source |
    |---|---|---|
    | `rr` | 100 ms time slice | Linux `RR_TIMESLICE` |
    | `cfs` | sched_latency 6 ms, min_granularity 0.75 ms, wakeup_granularity 1 ms (scaled by 1+log2 ncpus) | Linux `kernel/sched/fair.c` |
    | `credit1` | 30 ms slice, 10 ms accounting tick, ratelimit 1 ms | Xen `sched/credit.c` |
    | `credit2` | 500 us minimum timer, 10 ms initial credit | Xen `sched/credit2.c` |

    **Learning goals.** Read a latency CDF; explain why a tail percentile
    (p99) tells a tenant more than the mean; explain how *when* a scheduler
    charges CPU time decides whether a guest can cheat it.
    """),
    code(SETUP),
    md("""
    ## 1. The service on its own

    First a baseline: `web` alone on the core. For a single server with
    Poisson arrivals and exponential service times (an M/M/1 queue) the time
    a request spends in the system is itself exponential with mean
    S/(1-ρ), where S is the mean service time and ρ the utilisation, so
    its p99 is ln(100)·S/(1-ρ).
    """),
    code("""
    DURATION_MS = 20_000 if FULL else 5_000
    alone = lk.noisy_neighbour("cfs", hog=False, duration_ms=DURATION_MS)
    p99_alone_ms = lk.percentile(alone["latencies"], 99) / 1e6
    print(f"requests served: {alone['requests']}, CPU share {alone['web_share']:.1%}, "
          f"p50 {lk.percentile(alone['latencies'], 50)/1e6:.2f} ms, p99 {p99_alone_ms:.2f} ms")
    """),
    md("""
    **Q1.** Using the M/M/1 formula above with S = 2 ms and ρ = 0.2, what p99
    (in ms) does theory predict? Put your number in `q1` (within 15% of the
    simulated p99 counts as right: the simulation is a finite sample).
    """),
    code("""
    q1 = None   # your answer, in ms
    check("Q1", q1, p99_alone_ms, rel=0.15, unit=" ms",
          hint="ln(100) is about 4.6; divide S by (1 - rho).")
    """),
    md("""
    ## 2. Add the noisy neighbour

    Now the hog shares the core. Each scheduler gets the same arrivals (the
    same seed), so differences come from scheduling alone.
    """),
    code("""
    SCHEDULERS = ["rr", "cfs", "credit1", "credit2"]
    runs = {s: lk.noisy_neighbour(s, duration_ms=DURATION_MS) for s in SCHEDULERS}
    arrived = alone["requests"]          # same seed: the same arrivals as the baseline run
    import pandas as pd
    table = pd.DataFrame([{
        "scheduler": s,
        "served": r["requests"],
        "served %": round(100 * r["requests"] / arrived, 1),
        "p50 ms": round(lk.percentile(r["latencies"], 50) / 1e6, 2),
        "p99 ms": round(lk.percentile(r["latencies"], 99) / 1e6, 2),
        "web CPU %": round(100 * r["web_share"], 1),
        "hog CPU %": round(100 * r["hog_share"], 1),
    } for s, r in runs.items()]).set_index("scheduler")
    table
    """),
    code("""
    series = {"alone": alone["latencies"], **{s: r["latencies"] for s, r in runs.items()}}
    lk.cdf_figure(series, title="web request latency next to a CPU hog (1 core)")
    """),
    md("""
    Read the figure: a curve far to the left is good; the height where a
    curve reaches a given latency is the fraction of requests that were at
    least that fast. Note two traps:

    * the p99 of *served* requests can look fine while many requests were
      never served: always look at the `served %` column too;
    * the mean hides the tail: a scheduler can have a fine median and a
      terrible p99.
    """),
    md("""
    **Q2.** Which scheduler gives the web service the *worst* median (p50)
    latency? (a name from `SCHEDULERS`)

    **Q3.** Which scheduler serves the *fewest* requests in the run?
    """),
    code("""
    q2 = None   # e.g. "cfs"
    q3 = None
    worst_p50 = max(runs, key=lambda s: lk.percentile(runs[s]["latencies"], 50))
    fewest = min(runs, key=lambda s: runs[s]["requests"])
    print(check("Q2", q2, worst_p50, hint="look at the p50 column; which one has a 100 ms slice?"))
    print(check("Q3", q3, fewest, hint="compare 'served %' with the baseline."))
    """),
    md("""
    **Discussion D1.** Round robin with a 100 ms slice, and credit1: explain
    in two or three sentences what each does to the request that arrives
    while the hog holds the core. Why do CFS and credit2 do much better here?
    """),
    code("""
    discuss("D1", "RR lets the hog keep the core for a whole 100 ms slice, so a "
            "request that arrives just after the hog is dispatched waits up to 100 ms, and "
            "queued requests pile up behind it: the median itself is tens of ms. Under "
            "credit1 the web guest wakes with few credits (it was charged whole ticks when it "
            "happened to be running at a tick) and is often not boosted, so it gets less than "
            "the 20% it needs and a backlog grows: requests go unserved. CFS and credit2 "
            "account actual run time: a guest that slept has a small vruntime / keeps its "
            "credit, so on wake-up it preempts the hog within a granularity (about 1 ms).")
    """),
    md("""
    ## 3. Cheating credit1: the tick dodger

    Xen's credit1 does not measure how long each guest ran. Every 10 ms
    tick it debits a whole tick's worth of credit from whichever vCPU is
    running *at that instant*. A guest that runs until just before each tick
    and then sleeps across it is never charged; `calibration.md` records
    that such a guest "can steal ~95% of a CPU" (Xen `sched/credit.c`).

    The model's `tick-dodger` workload does exactly that: it runs until
    `margin_us` before each tick, then blocks until just after it.
    """),
    code("""
    shares = {s: lk.tick_dodger_shares(s, duration_ms=DURATION_MS // 2) for s in SCHEDULERS}
    no_ratelimit = lk.tick_dodger_shares("credit1", duration_ms=DURATION_MS // 2,
                                         params={"ratelimit_ns": 0})
    labels = SCHEDULERS + ["credit1, no ratelimit"]
    values = [round(100 * shares[s]["dodger"], 1) for s in SCHEDULERS] + [
        round(100 * no_ratelimit["dodger"], 1)]
    published = [None, None, 95, None, 95]
    lk.bar_figure(labels, values, published=published, ylabel="dodger's CPU share, %",
                  title="a tick-dodging guest next to a hog (1 core)")
    """),
    md("""
    The published ~95% is the share a dodger gets when it gives up the core
    0.5 ms before each 10 ms tick: 9.5 ms of every 10. The model gets that
    with credit1's `ratelimit_ns = 0`. With the default ratelimit of 1 ms
    the model gives about 90%: once the hog is dispatched in the 0.5 ms
    gap, the ratelimit lets it run a full 1 ms before the waking dodger may
    preempt it, so the dodger loses another 0.5 ms per tick. This is the
    model following the ratelimit rule literally; the published figure is
    for the mechanism without it. Either way the hog, which should get half
    the core, gets a tenth or less.

    **Q4.** Under the default credit1, what CPU share (a fraction between 0
    and 1) does the dodger get? (within 0.02)

    **Q5.** Under CFS, is the dodger able to take more than 60% of the core?
    (`True` or `False`)
    """),
    code("""
    q4 = None
    q5 = None
    print(check("Q4", q4, shares["credit1"]["dodger"], abs=0.02,
                hint="read the credit1 bar (it is in percent)."))
    print(check("Q5", q5, shares["cfs"]["dodger"] > 0.6,
                hint="CFS charges the nanoseconds actually run."))
    """),
    md("""
    ## 4. Explore: how close to the tick must the dodger yield?

    Change the margin: yielding earlier leaves more of each tick period to
    the hog. In a live notebook this draws a slider; in a headless run it
    uses the default value.
    """),
    code("""
    def dodger_vs_margin(margin_us=500.0):
        s = lk.tick_dodger_shares("credit1", duration_ms=1000, margin_us=margin_us)
        return f"margin {margin_us:.0f} us: dodger {s['dodger']:.1%}, hog {s['hog']:.1%}"

    lk.interact(dodger_vs_margin, margin_us=(100.0, 900.0, 100.0))
    """),
    code("""
    MARGINS = [100, 500, 1000, 2000, 4000] + ([6000, 8000] if FULL else [])
    sweep = [lk.tick_dodger_shares("credit1", duration_ms=1000, margin_us=float(m))["dodger"]
             for m in MARGINS]
    lk.line_figure(MARGINS, {"credit1 dodger share": sweep}, xlabel="margin before the tick, us",
                   ylabel="CPU share", title="tick dodging under credit1")
    """),
    md("""
    **Q6.** Predict the dodger's share under default credit1 with a 2,000 us
    margin. Two facts are enough: the hog gets the core when the dodger
    yields, `margin` before the tick; and once dispatched, credit1's
    ratelimit lets it keep the core for at least 1 ms before a waking guest
    may preempt it. Enter a fraction; it is checked against the sweep.
    """),
    code("""
    q6 = None
    check("Q6", q6, sweep[MARGINS.index(2000)], abs=0.02,
          hint="the hog runs max(margin, ratelimit) of every 10 ms period; the dodger the rest.")
    """),
    md("""
    **Discussion D2.** Credit2 (Xen's default since 4.12) and CFS are not
    fooled. What do they do differently? What would a *fair* share be here?
    """),
    code("""
    discuss("D2", "Both charge each guest for the time it actually ran, measured at every "
            "switch, rather than sampling who runs at a periodic tick; credit2 burns credit "
            "in proportion to run time and CFS advances vruntime by the exact ns run. The "
            "dodger then gets at most its fair half of the core (equal weights), and less "
            "when it sleeps: the model shows about 45-50%.")
    """),
    md("""
    ## Where the model simplifies

    * Context switches cost a fixed 4.3 us plus the profile's extra (a 2010
      measurement, `calibration.md`); real switch costs depend on caches.
    * There is one core; real hosts have several and migrate vCPUs, which
      softens but does not remove these effects.
    * Latencies are measured from arrival to completion inside the guest;
      no network is modelled in this lab.
    """),
]


def main(argv: list[str]) -> int:
    prefix = argv[1] if len(argv) > 1 else ""
    for name, cells in LABS.items():
        if not name.startswith(prefix):
            continue
        nb = notebook(cells)
        nbformat.validate(nb)
        path = HERE / name
        with open(path, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
