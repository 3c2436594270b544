"""Helpers for the classroom labs (labs/*.ipynb): runs, plots and checks.

Three kinds of function live here, so that the notebooks stay short:

* runs: small wrappers over the simulator that return plain data
  (``boot_traced``, ``noisy_neighbour``, ``tick_dodger_shares``, ...);
* plots: each returns a matplotlib ``Figure`` and never calls ``plt.show()``
  (Jupyter displays a figure returned by the last line of a cell);
* checks: ``check`` compares a student's answer with the value the notebook
  computed from its own run and raises ``AssertionError`` with a hint when it
  is wrong.

Instructor mode (one source for students and teachers): with the environment
variable ``PICOSIM_INSTRUCTOR=1`` an unanswered question (left as ``None``) is
filled in with the computed answer, which then goes through the same check,
and ``discuss`` shows the model answers to the open questions. The labs'
``conftest.py`` turns it on for CI (``pytest --nbmake labs``), so every check
cell runs against computed answers and must pass there.

``PICOSIM_HEADLESS=1`` (also set by the labs' conftest) makes ``interact``
call its function once with the default values instead of drawing widgets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TRUE = {"1", "true", "yes", "on"}


def instructor() -> bool:
    """True when PICOSIM_INSTRUCTOR is set to 1/true/yes/on."""
    return os.environ.get("PICOSIM_INSTRUCTOR", "").strip().lower() in _TRUE


def headless() -> bool:
    """True when PICOSIM_HEADLESS is set: no widgets, plain function calls."""
    return os.environ.get("PICOSIM_HEADLESS", "").strip().lower() in _TRUE


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

class Unanswered:
    """What ``check`` returns for a question left as None in student mode."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{self.name}: not answered yet (set the variable and run this cell again)"

    def __bool__(self) -> bool:
        return False


def _close(answer: Any, expected: Any, rel: float, abs_: float) -> bool:
    if isinstance(expected, bool) or isinstance(answer, bool):
        return answer is expected or answer == expected
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        try:
            a = float(answer)
        except (TypeError, ValueError):
            return False
        return math.isclose(a, float(expected), rel_tol=rel, abs_tol=abs_)
    if isinstance(expected, str):
        return isinstance(answer, str) and answer.strip().lower() == expected.strip().lower()
    if isinstance(expected, (set, frozenset)):
        try:
            return {str(x).lower() for x in answer} == {str(x).lower() for x in expected}
        except TypeError:
            return False
    if isinstance(expected, (list, tuple)):
        try:
            return len(answer) == len(expected) and all(
                _close(a, e, rel, abs_) for a, e in zip(answer, expected))
        except TypeError:
            return False
    return answer == expected


def check(name: str, answer: Any, expected: Any, *, rel: float = 0.0, abs: float = 0.0,
          hint: str = "", unit: str = "") -> Any:
    """Assert that ``answer`` matches ``expected`` (computed by the notebook).

    Numbers match within ``rel`` (relative) or ``abs`` (absolute) tolerance;
    strings ignore case and surrounding spaces; sets ignore order; lists
    compare element by element. ``answer`` None means "not answered": in
    instructor mode the computed value is used (and shown), otherwise an
    ``Unanswered`` marker is returned without failing the run.
    Returns a short verdict string when the answer is right.
    """
    if answer is None:
        if not instructor():
            return Unanswered(name)
        answer = expected
        who = "instructor answer"
    else:
        who = "your answer"
    if not _close(answer, expected, rel, abs):
        msg = f"{name}: {who} {answer!r}{unit} does not match what this run measured."
        if hint:
            msg += f" Hint: {hint}"
        if instructor():
            msg += f" (expected {expected!r}{unit})"
        raise AssertionError(msg)
    if who == "instructor answer":
        return f"{name}: {expected!r}{unit} (instructor mode: computed answer)"
    return f"{name}: correct"


def check_true(name: str, condition: bool, hint: str) -> str:
    """Assert a property of the run or of the student's own code."""
    if not condition:
        raise AssertionError(f"{name}: {hint}")
    return f"{name}: ok"


def discuss(name: str, model_answer: str) -> Any:
    """An open question's model answer: shown in instructor mode only."""
    if not instructor():
        return Unanswered(name)
    try:
        from IPython.display import Markdown
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return f"{name} (model answer): {model_answer}"
    return Markdown(f"**{name}, model answer.** {model_answer}")


def interact(fn: Callable[..., Any], **options: Any) -> Any:
    """``ipywidgets.interact(fn, **options)`` in a live notebook; in a headless
    run (PICOSIM_HEADLESS=1) or without ipywidgets, ``fn`` is called once with
    each option's default (the first item of a list, the middle of a range
    tuple, or the value itself) and its result is returned."""
    if not headless():
        try:
            import ipywidgets
        except ImportError:
            pass
        else:
            return ipywidgets.interact(fn, **options)
    return fn(**{k: _default(v) for k, v in options.items()})


def _default(v: Any) -> Any:
    if isinstance(v, list):
        return v[0]
    if isinstance(v, tuple) and len(v) in (2, 3) and all(isinstance(x, (int, float)) for x in v):
        lo, hi = v[0], v[1]
        mid = (lo + hi) / 2
        return int(mid) if all(isinstance(x, int) for x in v) else mid
    w = getattr(v, "value", None)
    return w if w is not None else v


# ---------------------------------------------------------------------------
# Runs: emulated guests
# ---------------------------------------------------------------------------

@dataclass
class BootRun:
    """One traced boot of a real image."""
    image: Any
    status: int
    reason: str
    t_ns: int
    retired: int
    crossings: int
    console: str
    events: list = field(default_factory=list)

    def calls(self) -> list:
        return [e for e in self.events if e.kind == "call"]

    def call_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.calls():
            out[e.name] = out.get(e.name, 0) + 1
        return out

    def first_call(self):
        c = self.calls()
        return c[0] if c else None


def boot_traced(image: str | Path, args: Sequence[str] = (), *, kinds: Iterable[str] = ("call",),
                mem_mib: int | None = None, seed: int = 0, max_insns: int = 50_000_000,
                abi: str | None = None, keep_guest: bool = False,
                options: Mapping[str, Any] | None = None):
    """Boot ``image`` (a path or a bundled example name) alone, with a trace.

    Returns a ``BootRun``; with ``keep_guest`` a ``(BootRun, guest)`` pair
    whose guest is still open (read its memory, then ``guest.close()``)."""
    from sim.boot import run_alone
    from sim.examples import resolve
    from sim.guest import Guest
    from sim.image import Image
    from sim.libos.personality import BootConfig
    from sim.trace import ListSink, Tracer

    img = Image.load(resolve(image) if isinstance(image, str) else Path(image))
    sink = ListSink()
    tracer = Tracer(kinds, [sink])
    which = abi or img.abi
    if mem_mib is None:
        mem_mib = {"pico": 64, "hvt": 512, "spt": 2}.get(which, 64)
    config = BootConfig(mem_bytes=mem_mib << 20, args=(img.name, *args), seed=seed,
                        options=dict(options or {}))
    out = bytearray()
    guest = Guest(img, config, abi=abi, tracer=tracer, on_console=out.extend, max_insns=max_insns)
    try:
        res = run_alone(guest)
    except BaseException:
        guest.close()
        raise
    run = BootRun(img, res.stopped.status, res.stopped.reason, res.t_ns, res.retired,
                  res.crossings, out.decode("utf-8", "replace"), sink.events)
    if keep_guest:
        return run, guest
    guest.close()
    return run


def guest_memory(guest: Any) -> bytes:
    """All of a guest's RAM, as bytes (for page-sharing measurements)."""
    return bytes(guest.vcpu.mem.read(0, guest.config.mem_bytes))


def page_sharing(memories: Sequence[bytes], page: int = 4096):
    """Pages that could be merged across ``memories`` (sim.host.density)."""
    from sim.host.density import count_shared_pages
    return count_shared_pages(memories, page)


# ---------------------------------------------------------------------------
# Runs: the host model
# ---------------------------------------------------------------------------

def noisy_neighbour(scheduler: str, *, duration_ms: int = 2000, seed: int = 3,
                    interval_us: float = 10_000.0, service_us: float = 2_000.0,
                    profile: str = "unikernel", hog: bool = True,
                    params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A light request-serving guest next to a CPU hog on one core.

    Returns latencies (ns, sorted), CPU shares and counts."""
    from sim.host import Host
    from sim.host.units import MS
    from sim.host.workload import spawn_model

    h = Host(cores=1, scheduler=scheduler, scheduler_params=dict(params or {}), seed=seed)
    web = spawn_model(h, "web", "requests", {"interval_us": float(interval_us),
                                            "service_us": float(service_us)},
                      profile=profile, boot=False)
    other = spawn_model(h, "hog", "hog", profile=profile, boot=False) if hog else None
    dur = duration_ms * MS
    h.run(dur)
    h.flush_accounting()
    return {"scheduler": scheduler, "latencies": sorted(web.latencies),
            "requests": web.requests, "web_share": web.cpu_ns / dur,
            "hog_share": other.cpu_ns / dur if other else 0.0,
            "switches": sum(c.switches for c in h.cores)}


def tick_dodger_shares(scheduler: str, *, duration_ms: int = 2000, margin_us: float = 500.0,
                       params: Mapping[str, Any] | None = None) -> dict[str, float]:
    """CPU shares of a tick-dodging guest and a hog on one core."""
    from sim.host import Host
    from sim.host.units import MS
    from sim.host.workload import spawn_model

    h = Host(cores=1, scheduler=scheduler, scheduler_params=dict(params or {}))
    d = spawn_model(h, "dodger", "tick-dodger", {"margin_us": float(margin_us)}, boot=False)
    hog = spawn_model(h, "hog", "hog", boot=False)
    dur = duration_ms * MS
    h.run(dur)
    h.flush_accounting()
    return {"dodger": d.cpu_ns / dur, "hog": hog.cpu_ns / dur}


def boot_storm(profile: str, instances: int, *, cores: int = 8, scheduler: str = "cfs",
               duration_ms: int = 60_000, seed: int = 1) -> list[int]:
    """``instances`` guests of ``profile`` all start at t=0; their boot times (ns)."""
    from sim.host import Host
    from sim.host.units import MS
    from sim.host.workload import spawn_model

    h = Host(cores=cores, scheduler=scheduler, seed=seed)
    ts = [spawn_model(h, f"g{i}", "idle", profile=profile) for i in range(instances)]
    h.run(duration_ms * MS)
    return sorted(t.booted_at - t.started_at for t in ts if t.booted_at is not None)


def kernel_fault(profile: str, tenants: int, *, victim: int = 0, cores: int = 4,
                 duration_ms: int = 400, at_ms: int = 200, seed: int = 1) -> dict[str, Any]:
    """``tenants`` guests of one profile; a kernel fault hits one of them.

    Returns how many were lost and the host's fault record."""
    from sim.host import Host
    from sim.host.units import MS
    from sim.host.workload import spawn_model

    h = Host(cores=cores, seed=seed)
    ts = [spawn_model(h, f"t{i}", "think", {"burst_us": 200.0, "think_us": 2_000.0},
                      profile=profile, boot=False) for i in range(tenants)]
    h.run(at_ms * MS)
    h.inject_kernel_fault(ts[victim])
    h.run(duration_ms * MS)
    lost = [t.name for t in ts if t.stopped is not None and t.stopped.fault]
    alive = [t for t in ts if t.stopped is None]
    return {"profile": profile, "tenants": tenants, "lost": len(lost), "lost_names": lost,
            "alive": len(alive), "record": h.faults[-1]}


def emulated_tenants(images: Sequence[str], *, profile: str = "picoprocess", cores: int = 2,
                     duration_ms: int = 50, mem_mib: int = 8, max_insns: int = 20_000_000
                     ) -> list[dict[str, Any]]:
    """Real images as tenants of one host (each a Unicorn guest scheduled by
    the host model). Returns one row per guest: name, image, status, reason."""
    from sim.examples import resolve
    from sim.guest import Guest
    from sim.host import Host
    from sim.host.emulated import spawn_emulated
    from sim.host.units import MS
    from sim.image import Image
    from sim.libos.personality import BootConfig

    h = Host(cores=cores)
    tasks = []
    try:
        for i, name in enumerate(images):
            img = Image.load(resolve(name))
            g = Guest(img, BootConfig(mem_bytes=mem_mib << 20, args=(img.name,)),
                      name=f"{i}:{name}", env=h.env, max_insns=max_insns)
            tasks.append((name, spawn_emulated(h, g, profile=profile, boot=False)))
        h.run(duration_ms * MS)
    finally:
        h.close()
    return [{"guest": t.name, "image": name,
             "status": t.stopped.status if t.stopped else None,
             "fault": bool(t.stopped and t.stopped.fault),
             "reason": t.stopped.reason if t.stopped else "still running"} for name, t in tasks]


def transfer_ms(size_bytes: int, link_bits_per_s: float, rtt_ms: float = 0.0) -> float:
    """Time to move ``size_bytes`` over a link, ms (size / bandwidth + one RTT)."""
    return size_bytes * 8 / link_bits_per_s * 1000 + rtt_ms


# ---------------------------------------------------------------------------
# Plots (each returns a Figure; none calls plt.show())
# ---------------------------------------------------------------------------

_DISPLAY_READY = False


def _register_display() -> None:
    """Teach IPython (when running under it) to draw a bare Figure as PNG.

    pyplot would do it, but pyplot keeps global figures and shows them a
    second time at the end of a cell; bare figures are only drawn when a
    cell returns or displays them."""
    global _DISPLAY_READY
    if _DISPLAY_READY:
        return
    _DISPLAY_READY = True
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return
    from matplotlib.figure import Figure
    ip.display_formatter.formatters["image/png"].for_type(
        Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


def _figure(w: float = 6.4, h: float = 4.0):
    from matplotlib.figure import Figure
    _register_display()
    fig = Figure(figsize=(w, h), layout="constrained")
    return fig, fig.add_subplot()


def _finish(ax, *, title: str, xlabel: str, ylabel: str, logx: bool, logy: bool) -> None:
    """Scales, labels, grid and title: the same for every figure of the labs."""
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)


def cdf_figure(series: Mapping[str, Sequence[float]], *, title: str = "", xlabel: str = "ms",
               scale: float = 1e-6, logx: bool = True):
    """Empirical CDFs, one line per named series (values in ns scaled to ms)."""
    fig, ax = _figure()
    for name, values in series.items():
        v = sorted(float(x) * scale for x in values)
        if not v:
            continue
        n = len(v)
        ax.step(v, [(i + 1) / n for i in range(n)], where="post", label=f"{name} (n={n})")
    _finish(ax, title=title, xlabel=xlabel, ylabel="fraction of requests", logx=logx, logy=False)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=8)
    return fig


def bar_figure(labels: Sequence[str], values: Sequence[float], *, title: str = "",
               ylabel: str = "", log: bool = False, published: Sequence[float | None] | None = None,
               annotate: bool = True):
    """Bars for the simulator's values; optional hollow bars for published ones."""
    fig, ax = _figure(max(6.4, 0.9 * len(labels) + 2), 4.2)
    x = list(range(len(labels)))
    width = 0.4 if published is not None else 0.7
    off = -width / 2 if published is not None else 0.0
    bars = ax.bar([i + off for i in x], values, width, label="simulator" if published else None,
                  color="#4472c4")
    if published is not None:
        pv = [p if p is not None else 0 for p in published]
        ax.bar([i + width / 2 for i in x], pv, width, label="published", fill=False,
               edgecolor="#c00000", hatch="//")
        ax.legend(fontsize=8)
    if annotate:
        for b, v in zip(bars, values):
            ax.annotate(f"{v:g}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def line_figure(xs: Sequence[float], series: Mapping[str, Sequence[float]], *, title: str = "",
                xlabel: str = "", ylabel: str = "", logx: bool = False, logy: bool = False):
    fig, ax = _figure()
    for name, ys in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    _finish(ax, title=title, xlabel=xlabel, ylabel=ylabel, logx=logx, logy=logy)
    ax.legend(fontsize=8)
    return fig


def scatter_figure(points: Mapping[str, tuple[float, float]], *, title: str = "",
                   xlabel: str = "", ylabel: str = "", logx: bool = True, logy: bool = True):
    """Labelled points, e.g. image size against time to move it."""
    fig, ax = _figure()
    for name, (x, y) in points.items():
        ax.scatter([x], [y])
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    _finish(ax, title=title, xlabel=xlabel, ylabel=ylabel, logx=logx, logy=logy)
    return fig


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    from sim.host.units import percentile as pct
    return pct(sorted(values), p)
