"""The audit's figure: one panel per column, a line per strategy labelled with its break factor, the bound."""

from __future__ import annotations

from certssb.reporting.audit_figures import audit_figure


def _summary():
    ladder = [{"factor": c, "flip_rate": r} for c, r in ((0.95, 0.0), (2, 0.05), (4, 0.6))]
    flat = [{"factor": c, "flip_rate": 0.0} for c in (0.95, 2, 4)]
    return {
        "factors": [0.95, 2, 4],
        "flip_bound_per_point": 0.002,
        "stop_rate": 0.1,
        "columns": {
            "radius": {
                "pgd": {"ladder": ladder, "part": "input-only", "break_factor": 4},
                "brew": {"ladder": flat, "part": "training-only", "break_factor": None},
            },
            "radius_published": {"pgd": {"ladder": ladder, "part": "input-only", "break_factor": 4}},
        },
    }


def test_one_panel_per_column_with_each_strategys_break_factor_and_the_bound():
    fig = audit_figure(_summary())
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["sound radius", "published radius (σₓR₁)"]
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["pgd (input-only): breaks at c = 4", "brew (training-only): not broken"]
    pgd = axes[0].get_lines()[0]
    assert list(pgd.get_xdata()) == [0.95, 2, 4] and list(pgd.get_ydata()) == [0.0, 0.05, 0.6]
    # the bound and the stop rate are horizontal lines at their values; c = 1 is marked
    ys = {tuple(line.get_ydata()) for line in axes[0].get_lines()[2:]}
    assert (0.002, 0.002) in ys and (0.1, 0.1) in ys
    assert axes[0].get_xscale() == "log"
