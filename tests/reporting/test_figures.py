"""Figures: the exact step curve agrees with metrics.certified_accuracy, axes cover the radii, labels."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from certssb.core import metrics
from certssb.core.validation import ConfigError
from certssb.reporting import figures as reporting


def _certs(rng: np.random.Generator, method: str, split: str, n: int = 60) -> pd.DataFrame:
    r1 = rng.gamma(2.0, 0.3, n)
    r1[: n // 6] = 0.0  # radius 0 but not abstained (the storage update's "label kept, R = 0")
    r1[n // 6 : n // 3] = 0.4  # ties
    ab = rng.random(n) < 0.2
    r1[ab] = 0.0
    sig = np.full(n, 0.25) if method == "uniform" else rng.uniform(0.25, 0.5, n)
    smin = np.minimum(sig, 0.25)
    label = rng.integers(0, 3, n)
    pred = np.where(ab, -1, np.where(rng.random(n) < 0.8, label, (label + 1) % 3))
    return pd.DataFrame(
        {
            "method": method,
            "split": split,
            "label": label,
            "prediction": pred,
            "r1": r1,
            "sigma": sig,
            "sigma_min": smin,
            "radius": smin * r1,
            "radius_published": sig * r1,
            "abstained": ab,
            "correct": pred == label,
        }
    )


@pytest.fixture
def certs() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.concat(
        [_certs(rng, m, s) for m in ("uniform", "cert_ssb") for s in ("clean", "triggered")],
        ignore_index=True,
    )


def _drawn_value(line, r: float) -> float:
    """Value of a steps-post line just left of r (certified accuracy at r counts radius >= r)."""
    assert line.get_drawstyle() == "steps-post"
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    return float(y[np.searchsorted(x, r, side="left") - 1]) if r > 0 else float(y[0])


@pytest.mark.parametrize("column", ["radius", "radius_published"])
def test_step_curve_equals_certified_accuracy(certs, column):
    g = certs[(certs.method == "cert_ssb") & (certs.split == "clean")]
    curve = reporting.step_curve(g, column)
    grid = [0.0, 0.05, 0.1, 0.25, 0.5, 1.0]
    per_sample = sorted(set(g[column][g[column] > 0].round(12)))
    for radii in (grid, per_sample):
        expected = metrics.certified_accuracy(g, radii, radius_column=column)["certified_accuracy"].to_numpy()
        np.testing.assert_allclose(curve(radii), expected, rtol=0, atol=1e-12)
    # the drawn vertices give the same values (steps-post, the value just left of r)
    x, y = curve.xy(x_max=2.0)
    import matplotlib.lines

    line = matplotlib.lines.Line2D(x, y, drawstyle="steps-post")
    for r in [*grid, *per_sample]:
        assert _drawn_value(line, r) == pytest.approx(float(curve([r])[0]), abs=1e-12)
    assert np.all(np.diff(y[1:]) <= 1e-15)  # non-increasing


def test_figure_lines_labels_and_limits(certs):
    updated = certs.copy()
    updated["radius"] = updated["radius"] * 0.5
    fig = reporting.certified_accuracy_figure(
        certs, updated=updated, sigma0=0.25, ceiling=1.07, attack_norm=0.05, title="t"
    )
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == ["clean test set", "triggered test set"]
    largest = max(certs["radius"].max(), certs["radius_published"].max())
    for ax, split in zip(axes, ("clean", "triggered")):
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert "uniform σ = 0.25" in labels and "Cert-SSB" in labels
        assert reporting.PUBLISHED_LABEL in labels
        assert "Cert-SSB, after storage update" in labels
        assert not any("cert_ssb" in lb for lb in labels)  # no code names
        assert any(lb.startswith("attack ‖Δ‖") for lb in labels)
        lo, hi = ax.get_xlim()
        assert lo == 0 and largest <= hi <= 1.3 * largest
        # the drawn headline curve equals certified accuracy at the grid radii
        g = certs[(certs.method == "uniform") & (certs.split == split)]
        line = next(ln for ln in ax.get_lines() if ln.get_label() == "uniform σ = 0.25")
        for r, v in zip(*metrics.certified_accuracy(g, [0.0, 0.1, 0.2, 0.3]).iloc[:, :2].to_numpy().T):
            assert _drawn_value(line, r) == pytest.approx(v, abs=1e-12)
        # ceiling: c x the largest sigma scaling the sound radius (0.25 for both methods here)
        ceil = [ln for ln in ax.get_lines() if ln.get_label().startswith("ceiling")]
        assert len(ceil) == 1 and ceil[0].get_xdata()[0] == pytest.approx(1.07 * 0.25)


def test_attack_norm_outside_axis_is_not_drawn(certs):
    fig = reporting.certified_accuracy_figure(certs, attack_norm=50.0)
    for ax in fig.get_axes():
        assert not any(ln.get_label().startswith("attack") for ln in ax.get_lines())
        assert ax.get_xlim()[1] < 50.0
    assert "beyond the largest certified radius" in fig._suptitle.get_text()


def test_uniform_has_no_published_curve(certs):
    fig = reporting.certified_accuracy_figure(certs[certs.method == "uniform"], sigma0=0.25)
    labels = [ln.get_label() for ax in fig.get_axes() for ln in ax.get_lines()]
    assert reporting.PUBLISHED_LABEL not in labels and "uniform σ = 0.25" in labels


def test_grid_table_is_refused():
    grid = pd.DataFrame(
        {"method": ["uniform"], "split": ["clean"], "radius": [0.5], "certified_accuracy": [0.3]}
    )
    with pytest.raises(ConfigError, match="per-sample certificates"):
        reporting.certified_accuracy_figure(grid)


def test_sigma_histogram_and_storage_figure(certs):
    rng = np.random.default_rng(0)
    hist = reporting.sigma_histogram(
        {
            "train": rng.uniform(0.25, 0.5, 100),
            "clean": rng.uniform(0.25, 0.5, 40),
            "triggered": rng.uniform(0.25, 0.5, 40),
            "sigma0": 0.25,
        },
        "σ",
    )
    labels = [t.get_text() for t in hist.get_axes()[0].get_legend().get_texts()]
    assert any(lb.startswith("training set: mean") for lb in labels) and "σ₀ = 0.25" in labels
    flat = reporting.sigma_histogram(
        {
            "train": np.full(10, 0.25),
            "clean": np.full(4, 0.25),
            "triggered": np.full(4, 0.25),
            "sigma0": 0.25,
        },
        "σ",
    )
    assert any("every σ = 0.25" in t.get_text() for t in flat.get_axes()[0].get_legend().get_texts())
    after = certs.assign(action=np.where(np.arange(len(certs)) % 5 == 0, "trim", "none"))
    ba = reporting.radius_before_after(certs, after, "storage")
    labels = [t.get_text() for t in ba.get_axes()[0].get_legend().get_texts()]
    n_trim = int((after.action == "trim").sum())
    assert f"trimmed ({n_trim})" in labels and f"unchanged ({len(after) - n_trim})" in labels


def test_run_title_names_the_settings():
    t = reporting.run_title(
        "x",
        {
            "noise": {"sigma": 0.25, "num_models": 50},
            "evaluation": {"alpha": 0.001, "bound": "clopper_pearson", "n0": 5},
        },
    )
    for part in ("σ₀ = 0.25", "M = 50", "n₀ = 5", "α = 0.001", "clopper-pearson"):
        assert part in t


def test_no_backend_chosen_at_import():
    """Importing the figures (as %reload_kedro does) keeps the caller's backend, e.g. a notebook's inline
    one."""
    import os
    import subprocess

    code = (
        "import matplotlib; b = matplotlib.get_backend(); import certssb.reporting.figures, "
        "certssb.pipelines.evaluation.nodes, certssb.pipelines.study.nodes; "
        "print(b, matplotlib.get_backend())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MPLBACKEND": "svg"},
    ).stdout.split()
    assert out == ["svg", "svg"]


def test_sigma_increase_panels_draw_one_panel_per_source_on_a_shared_axis():
    from certssb.reporting import figures as reporting

    fig = reporting.sigma_increase_panels(
        {
            "ours": {"sigma0": 0.25, "clean": np.full(5, 0.25) + np.arange(5) * 0.04},
            "released": {"sigma0": 0.12, "test": np.array([0.22, 0.29, 0.2946])},
        },
        "sigma as released",
    )
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_xlim() == axes[1].get_xlim()
    labels = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert labels == ["test: mean +0.148, max +0.175 (n = 3)"]


def test_the_ceiling_is_labelled_for_the_sound_radius_only(certs):
    fig = reporting.certified_accuracy_figure(certs, sigma0=0.25, ceiling=1.07)
    labels = [ln.get_label() for ax in fig.get_axes() for ln in ax.get_lines()]
    ceil = [lb for lb in labels if "ceiling" in lb]
    assert ceil and all(
        lb.startswith("ceiling of the sound radius (not of the published one)") for lb in ceil
    )
    uni = reporting.certified_accuracy_figure(certs[certs.method == "uniform"], sigma0=0.25, ceiling=1.07)
    assert "ceiling of the sound radius: r = 0.268" in [
        ln.get_label() for ln in uni.get_axes()[0].get_lines()
    ]


def test_sigma_histogram_shows_fractions():
    rng = np.random.default_rng(1)
    fig = reporting.sigma_histogram(
        {"train": rng.uniform(0.25, 0.26, 1000), "clean": rng.uniform(0.25, 0.5, 40)}, "σ"
    )
    ax = fig.get_axes()[0]
    heights = [p.get_path().vertices[:, 1].max() for p in ax.patches]
    assert max(heights) <= 1.0 and ax.get_ylim()[1] <= 1.1  # a density of a narrow range would reach ~100
    assert "fraction" in ax.get_ylabel()


def test_storage_figure_says_so_when_nothing_changed(certs):
    fig = reporting.radius_before_after(certs, certs.assign(action="none"), "storage")
    assert fig.get_axes() == [] and "no certificate changed" in fig.texts[0].get_text()


def test_study_figure_one_legend_outside_distinct_colours(certs):
    c = certs.assign(attack="badnets", cell_sigma=0.25)
    fig = reporting.study_figure(c, ["badnets"], [0.25], ceilings={("badnets", 0.25, "uniform"): 1.07})
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.get_axes())
    ax = fig.get_axes()[0]
    by = {}
    for ln in ax.get_lines():
        by.setdefault((ln.get_color(), ln.get_linestyle()), 0)
        by[(ln.get_color(), ln.get_linestyle())] += 1
    # clean/triggered x uniform/Cert-SSB: four colours for the sound radius, each drawn once
    assert sum(1 for (_, ls) in by if ls == "-") == 4 and all(
        n == 1 for (_, ls), n in by.items() if ls == "-"
    )
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("as published" in t for t in texts) and any("ceiling of the sound radius" in t for t in texts)
    assert reporting.colour("cohen") != reporting.colour("uniform") != reporting.colour("cert_ssb")


def test_attack_norm_only_for_in_model_attacks():
    from certssb.pipelines.evaluation.nodes import _attack_norm

    assert _attack_norm({"attack_joint_norm": 2.0, "attack_in_threat_model": False}) is None
    assert _attack_norm({"attack_joint_norm": 2.0, "attack_in_threat_model": True}) == 2.0
