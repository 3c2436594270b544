"""sim.labkit: checks, instructor mode, widget fallback, runs and figures."""

import pytest

import sim.labkit as lk


def test_check_student_mode(monkeypatch):
    monkeypatch.delenv("PICOSIM_INSTRUCTOR", raising=False)
    assert not lk.check("Q", None, 3)                       # unanswered: no failure
    assert lk.check("Q", 3, 3) == "Q: correct"
    assert lk.check("Q", 10.4, 10.0, rel=0.05) == "Q: correct"
    assert lk.check("Q", " CFS ", "cfs")
    assert lk.check("Q", ["b", "a"], {"a", "b"})
    with pytest.raises(AssertionError, match="Hint: think"):
        lk.check("Q", 4, 3, hint="think")
    with pytest.raises(AssertionError) as e:
        lk.check("Q", 4, 3)
    assert "expected" not in str(e.value)                   # answers stay hidden
    assert not lk.discuss("D", "model answer")


def test_check_instructor_mode(monkeypatch):
    monkeypatch.setenv("PICOSIM_INSTRUCTOR", "1")
    assert "instructor" in lk.check("Q", None, 3)
    with pytest.raises(AssertionError, match="expected 3"):
        lk.check("Q", 4, 3)
    assert "model answer" in str(lk.discuss("D", "because").data)


def test_check_true():
    assert lk.check_true("x", True, "never") == "x: ok"
    with pytest.raises(AssertionError, match="x: why"):
        lk.check_true("x", False, "why")


def test_interact_headless_calls_with_defaults(monkeypatch):
    monkeypatch.setenv("PICOSIM_HEADLESS", "1")
    assert lk.interact(lambda a, b, c: (a, b, c), a=[5, 6], b=(0, 10), c=(0.0, 1.0, 0.1)) == (5, 5, 0.5)


def test_host_runs_follow_published_trends():
    assert lk.tick_dodger_shares("credit1", duration_ms=1000)["dodger"] > 0.85
    assert lk.tick_dodger_shares("cfs", duration_ms=500)["dodger"] < 0.6
    assert lk.kernel_fault("container", 5)["lost"] == 5
    assert lk.kernel_fault("unikernel", 5)["lost"] == 1
    storm = lk.boot_storm("picoprocess", 10, duration_ms=1000)
    assert len(storm) == 10 and storm == sorted(storm)
    assert lk.transfer_ms(125_000_000, 1e9) == pytest.approx(1000.0)


def test_boot_traced_and_figures():
    run = lk.boot_traced("hello", ["t"])
    assert run.status == 0 and run.first_call() is not None
    assert sum(run.call_counts().values()) == run.crossings
    nn = lk.noisy_neighbour("cfs", duration_ms=300)
    figs = [lk.cdf_figure({"cfs": nn["latencies"]}),
            lk.bar_figure(["a", "b"], [1, 2], published=[1, None], log=True),
            lk.line_figure([1, 2], {"x": [1, 2]}), lk.scatter_figure({"p": (1, 2)})]
    for f in figs:
        assert f.axes and type(f).__name__ == "Figure"
