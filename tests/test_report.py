"""The accuracy heatmap of a run, from a summary written by hand: integer axes, the reach and the largest
trained size marked per round, cells never evaluated drawn apart from every accuracy and marker."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba

from selfimprove.results.report import _labels_figure, _rounds_grid, drift, plot

SUMMARY = {
    "task": "copy",
    "pair": False,
    "reach_threshold": 0.98,
    "rounds": [
        {"round": 0, "accuracy": {"1": 1.0, "2": 1.0, "3": 0.5}, "trained_size": 2, "reach": 2, "label_accuracy": None},
        {
            "round": 1,
            "accuracy": {"1": 1.0, "2": 1.0, "3": 0.99, "4": 0.1},
            "trained_size": 3,
            "reach": 3,
            "label_accuracy": 0.97,
            "kept_fraction": 0.5,
        },
    ],
}


def test_heatmap_marks_and_axes():
    fig = _rounds_grid(plt, SUMMARY)
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t.get_text().replace("\N{MINUS SIGN}", "-") for t in ax.get_yticklabels() + ax.get_xticklabels()]
    assert ticks and all(float(t).is_integer() for t in ticks if t)
    lines = {(line.get_color(), line.get_linestyle(), tuple(line.get_ydata())) for line in ax.get_lines()}
    assert ("red", "--", (2.5, 2.5)) in lines and ("red", "--", (3.5, 3.5)) in lines  # reach 2, then 3
    assert ("white", "-", (2.5, 2.5)) in lines and ("white", "-", (3.5, 3.5)) in lines  # trained up to 2, then 3
    image = ax.get_images()[0]
    cells = image.get_array()
    assert np.ma.is_masked(cells[3, 0]) and not np.ma.is_masked(cells[3, 1])  # length 4: not evaluated in round 0
    bad = tuple(image.get_cmap().get_bad())
    assert bad != to_rgba("white") and bad != to_rgba("red")
    assert all(not np.allclose(bad, image.get_cmap()(v)) for v in np.linspace(0, 1, 11))  # no accuracy's colour
    plt.close(fig)


def test_plots_are_written(tmp_path):
    plot(SUMMARY, tmp_path)
    assert (tmp_path / "accuracy.png").stat().st_size > 5_000 and (tmp_path / "labels.png").stat().st_size > 5_000


def labelled_round(round_: int, label_accuracy: float, acc_newest: float) -> dict:
    return {"round": round_, "label_accuracy": label_accuracy, "acc_newest": acc_newest}


BASE_ROUND = {"round": 0, "label_accuracy": None, "acc_newest": 1.0}


def test_drift_is_said_when_label_accuracy_falls_rounds_in_a_row_below_the_reach():
    # cpu_reverse on the AMD machine (issue #32): 0.935, 0.944, 0.853, 0.740, 0.620 with the newest length under 0.98
    rounds = [BASE_ROUND] + [
        labelled_round(r, a, 0.95) for r, a in enumerate([0.935, 0.944, 0.853, 0.740, 0.620], start=1)
    ]
    assert drift(rounds[:4], 3, 0.98) is None  # one fall so far
    assert drift(rounds[:5], 3, 0.98) is None  # two falls in a row
    said = drift(rounds, 3, 0.98)
    assert said is not None and "0.944 -> 0.853 -> 0.740 -> 0.620" in said and "rounds 2-5" in said
    assert drift(rounds[:5], 2, 0.98) is not None  # two in a row is enough when asked for two
    assert drift(rounds, 0, 0.98) is None  # 0: never


def test_no_drift_when_a_round_recovers_or_the_newest_step_is_learnt():
    recovered = [BASE_ROUND] + [
        labelled_round(r, a, 0.95) for r, a in enumerate([0.99, 0.98, 0.97, 0.975, 0.96], start=1)
    ]
    assert drift(recovered, 3, 0.98) is None  # round 4 rose: the last three are not all falls
    learnt = [BASE_ROUND] + [
        labelled_round(r, a, 0.99 if r == 3 else 0.95) for r, a in enumerate([0.99, 0.98, 0.97, 0.96], start=1)
    ]
    assert drift(learnt, 3, 0.98) is None  # round 3 brought the newest step over the reach threshold
    flat = [BASE_ROUND] + [labelled_round(r, 0.97, 0.95) for r in range(1, 5)]
    assert drift(flat, 3, 0.98) is None  # level is not falling


def test_one_round_gets_whole_number_axes_not_a_sliver():
    # matplotlib's margin around a single value is ±0.04: ticks at 0.96, 0.98, 1.00, ... for round 1 alone
    fig = _labels_figure(plt, SUMMARY)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert (low, high) == (0.0, 2.0)
    assert all(tick == int(tick) for tick in ax.get_xticks())
    plt.close(fig)
