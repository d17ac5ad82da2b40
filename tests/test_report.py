"""The accuracy heatmap of a run, from a summary written by hand: integer axes, the reach and the largest
trained size marked per round, cells never evaluated drawn apart from every accuracy and marker."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba

from selfimprove.report import _rounds_grid, plot

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
