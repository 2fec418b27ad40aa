"""The benchmarks' helpers (``benchmarks/_stats.py``, ``_cpu.py``, ``_timing.py``), against hand-computed
values. Nothing here asserts how long anything takes."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _stats as S  # noqa: E402

# ---------------------------------------------------------------------------------------------------
# _stats: pure arithmetic


def test_summarise_best_median_and_the_load_of_the_best_run():
    s = S.summarise([0.3, 0.1, 0.2], [0.051, 0.5, None])
    assert s["best_s"] == 0.1
    assert s["median_s"] == 0.2
    assert s["runs_s"] == [0.3, 0.1, 0.2]
    assert s["foreign_cores_per_run"] == [0.05, 0.5, None]
    assert s["foreign_cores_in_best_run"] == 0.5  # the run at index 1 is the best


def test_summarise_without_load_and_with_an_even_count():
    s = S.summarise([4.0, 1.0, 2.0, 3.0])
    assert s["median_s"] == 2.5
    assert "foreign_cores_per_run" not in s and "foreign_cores_in_best_run" not in s


def test_paired_ratio_median_over_the_clean_rounds_only():
    num = {"best_s": 2.0, "runs_s": [2.0, 4.0, 3.0], "foreign_cores_per_run": [0.0, 0.5, None]}
    den = {"best_s": 1.0, "runs_s": [1.0, 1.0, 2.0], "foreign_cores_per_run": [0.1, 0.0, 0.2]}
    r = S.paired_ratio(num, den)
    # round 2 is contended (0.5 >= 0.3): per-round ratios 2/1 and 3/2, median 1.75
    assert r["median_of_rounds"] == pytest.approx(1.75)
    assert r["of_best"] == pytest.approx(2.0)
    assert (r["clean_rounds"], r["rounds"]) == (2, 3)


def test_paired_ratio_falls_back_to_the_best_runs_without_a_clean_round():
    num = {"best_s": 3.0, "runs_s": [3.0, 6.0], "foreign_cores_per_run": [1.0, 0.3]}
    den = {"best_s": 2.0, "runs_s": [2.0, 2.0]}  # no load recorded: counts as clean
    r = S.paired_ratio(num, den)
    assert r["median_of_rounds"] == r["of_best"] == pytest.approx(1.5)
    assert r["clean_rounds"] == 0


def test_foreign_cores_subtracts_our_own_cpu_time():
    # the machine was busy 3 CPU-s in 2 s, 1 CPU-s of it ours: others used 1 core
    assert S.foreign_cores((10.0, 4.0), (13.0, 5.0), 2.0) == pytest.approx(1.0)
    assert S.foreign_cores((10.0, 4.0), (10.0, 4.5), 1.0) == 0.0  # clipped at 0 (tick rounding)
    assert S.foreign_cores((10.0, 4.0), (13.0, 5.0), 0.05) is None  # shorter than the 0.1 s default
    assert S.foreign_cores((10.0, 4.0), (13.0, 5.0), 0.05, min_wall_s=0.0) == pytest.approx(40.0)
    assert S.foreign_cores(None, (13.0, 5.0), 2.0) is None


def test_fit_line_recovers_an_exact_line():
    f = S.fit_line([1, 2, 4, 8], [0.5 + 0.25 * m for m in (1, 2, 4, 8)])
    assert f["overhead_s"] == pytest.approx(0.5)
    assert f["s_per_model"] == pytest.approx(0.25)
    assert f["models_per_second_asymptotic"] == pytest.approx(4.0)


def test_fit_line_least_squares_by_hand():
    # mean M = 2, mean t = 5/3; Sxx = 2, Sxy = (-1)(-2/3) + 0 + (1)(1/3) = 1 -> slope 0.5, intercept 2/3
    f = S.fit_line([1, 2, 3], [1.0, 2.0, 2.0])
    assert f["s_per_model"] == pytest.approx(0.5)
    assert f["overhead_s"] == pytest.approx(2 / 3)


def test_fit_line_degenerate_inputs():
    assert S.fit_line([4], [1.0]) is None
    assert S.fit_line([4, 4], [1.0, 2.0]) is None  # no spread in M
    assert S.fit_line([1, 2], [2.0, 1.0])["models_per_second_asymptotic"] is None  # falling time


def test_achieved_and_set_fractions():
    assert S.achieved(2e9, 0.5, 8.0) == pytest.approx({"gflops": 4.0, "fraction_of_ceiling": 0.5})
    tree = {"a": {"gflops": 10.0, "fraction_of_ceiling": 0.0}, "rows": [{"gflops": 5.0}, {"other": 1}]}
    S.set_fractions(tree, 20.0)
    assert tree["a"]["fraction_of_ceiling"] == 0.5
    assert tree["rows"][0]["fraction_of_ceiling"] == 0.25
    assert "fraction_of_ceiling" not in tree["rows"][1]


def test_contended_lists_the_paths_of_slowed_best_runs():
    res = {
        "x": {"foreign_cores_in_best_run": 0.3},
        "y": {"foreign_cores_in_best_run": 0.29},
        "rows": [{"b": {"foreign_cores_in_best_run": None}}, {"b": {"foreign_cores_in_best_run": 1.2}}],
    }
    assert sorted(S.contended(res, "results")) == ["results.rows[1].b", "results.x"]


# ---------------------------------------------------------------------------------------------------
# _cpu (psutil) and _timing (torch.utils.benchmark): what they return, not how fast


def test_cpu_samples_are_cpu_seconds_of_the_machine_and_of_us():
    _cpu = pytest.importorskip("_cpu")  # needs psutil (the bench / test extras)
    a = _cpu.sample_process()
    sum(i * i for i in range(200_000))
    b = _cpu.sample_process()
    assert a is not None and b is not None
    assert b[0] >= a[0] and b[1] >= a[1]  # counters only grow
    assert a[1] <= a[0]  # this process is part of the machine
    tree = _cpu.sample_tree()
    assert tree is not None and tree[1] >= a[1]  # the tree includes this process
    assert _cpu.tree_processes()[0].pid == os.getpid()


def test_bench_interleaved_rounds_rotation_and_outputs():
    pytest.importorskip("psutil")
    torch = pytest.importorskip("torch")
    import _cpu
    import _timing as T

    _cpu.set_quiet_budget(0.0)  # never wait for other processes here
    calls: list[str] = []

    def fn(name: str):
        def f() -> str:
            calls.append(name)
            return f"out-{name}"

        return f

    res, outs = T.bench_interleaved(
        {k: fn(k) for k in "abc"}, torch.device("cpu"), repeat=2, keep_outputs=True, rotate=True
    )
    order = [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]
    assert order == ["a", "b", "c", "b", "c", "a"]  # round 2 starts one later
    assert outs == {"a": "out-a", "b": "out-b", "c": "out-c"}
    for k in "abc":
        r = res[k]
        assert len(r["runs_s"]) == len(r["foreign_cores_per_run"]) == len(r["timed_calls_per_run"]) == 2
        assert r["best_s"] > 0
        assert r["best_s"] == pytest.approx(min(r["runs_s"]), abs=1e-6)  # runs_s are rounded to 1e-6
        assert r["peak_memory_mib"] is None  # CPU
        # per measurement: one untimed call to size the blocks, then the timed ones
        assert all(n >= 1 for n in r["timed_calls_per_run"])
    assert calls.count("a") == sum(res["a"]["timed_calls_per_run"]) + 2


# ---------------------------------------------------------------------------------------------------
# Layout


@pytest.mark.parametrize("path", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_benchmark_modules_are_short_or_say_why(path: Path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    if n > 350:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert any(line.strip().startswith("Length:") for line in doc.splitlines()), f"{path.name}: {n} lines"


def test_compare_certificates_maps_the_old_column_names_and_finds_a_difference():
    import compare_certificates as cc
    import pandas as pd

    base = {
        "label": [0, 1],
        "prediction": [0, -1],
        "p_lower_a": [0.9, 0.4],
        "p_upper_b": [0.1, 0.6],
        "sigma": [0.3, 0.3],
        "abstained": [False, True],
    }
    old = pd.DataFrame({**base, "radius": [0.5, 0.0], "conservative_radius": [0.4, 0.0]})
    new = pd.DataFrame({**base, "radius_published": [0.5, 0.0], "radius": [0.4, 0.0]})
    assert all(same for *_, same in cc.compare(old, new))
    new.loc[0, "radius"] = 0.41
    assert [(a, b) for a, b, same in cc.compare(old, new) if not same] == [("conservative_radius", "radius")]
    assert not all(same for *_, same in cc.compare(old, new.iloc[:1]))  # a missing row is a difference
