"""summary.json and plots, derived from the stage markers (so they can always be rebuilt)."""

from __future__ import annotations

import itertools
from typing import Any

from selfimprove.loop.context import Context
from selfimprove.loop.runstate import accuracy_after, base_stage, eval_stage, label_stage, train_stage
from selfimprove.results.metrics import table
from selfimprove.results.plotting import integer_axis
from selfimprove.tasks.difficulty import as_difficulty, difficulty_name, from_name, sides


def summarize(ctx: Context, stopped: str | None = None) -> dict[str, Any]:
    """Per finished round: targets, generated, kept, label accuracy, accuracy per difficulty (named `12`,
    or `3x4` for pairs), the newest and the next curriculum step's lowest accuracy, seconds, reach."""
    run = ctx.run
    rounds = []
    trained: list[Any] = []  # every round's targets so far
    r = 0
    while run.is_done(eval_stage(r)):
        evaluation = run.result(eval_stage(r))
        labelled = run.result(label_stage(r)) if r > 0 else None
        trainings = [run.result(train_stage(r, k)) if r > 0 else run.result(base_stage(k)) for k in range(ctx.voters)]
        seconds = evaluation["seconds"] + sum(t["seconds"] for t in trainings)
        seconds += labelled["seconds"] if labelled else 0.0
        accuracy = accuracy_after(run, r)
        trained += [as_difficulty(d) for d in labelled["targets"]] if labelled else []
        rounds.append(
            {
                "round": r,
                "targets": labelled["targets"] if labelled else None,
                "trained_size": evaluation["trained_size"],
                "generated": labelled["generated"] if labelled else None,
                "kept": labelled["kept"] if labelled else None,
                "kept_fraction": labelled["kept_fraction"] if labelled else None,
                "noisy": labelled["noisy"] if labelled else None,
                "label_accuracy": labelled["label_accuracy"] if labelled else None,
                "accuracy": {difficulty_name(d): a for d, a in accuracy.items()},
                "acc_newest": min(accuracy.get(d, 0.0) for d in ctx.curriculum.newest(trained)),
                "acc_next": min(accuracy.get(d, 0.0) for d in ctx.curriculum.next_step(trained)),
                "reach": evaluation["reach"],
                "final_loss": [t["final_loss"] for t in trainings],
                "seconds": round(seconds, 2),
            }
        )
        r += 1
    return {
        "task": ctx.cfg.data.task,
        "pair": ctx.task.difficulties.pair,
        "base": [ctx.cfg.data.base_min, ctx.cfg.data.base_max],
        "reach_threshold": ctx.cfg.si.reach_threshold,
        "voters": ctx.voters,
        "rounds": rounds,
        "reach": rounds[-1]["reach"] if rounds else 0,
        "seconds": round(sum(x["seconds"] for x in rounds), 2),
        "stopped": stopped,
        "drift": drift(rounds, ctx.cfg.si.drift_rounds, ctx.cfg.si.reach_threshold),
    }


def drift(rounds: list[dict[str, Any]], in_a_row: int, reach_threshold: float) -> str | None:
    """Why the run looks like it is drifting after its latest round, or None: label accuracy fell in each of
    the last `in_a_row` rounds while the newest step stayed under the reach threshold after each of them, so
    the model trains on more of its own errors every round (the collapse rule sees it only once accuracy at
    the newest step is gone)."""
    labelled = [r for r in rounds if r["label_accuracy"] is not None]
    if in_a_row < 1 or len(labelled) < in_a_row + 1 or labelled[-1] is not rounds[-1]:
        return None
    window = labelled[-(in_a_row + 1) :]
    accuracies = [r["label_accuracy"] for r in window]
    falling = all(later < earlier for earlier, later in itertools.pairwise(accuracies))
    if not falling or any(r["acc_newest"] >= reach_threshold for r in window[1:]):
        return None
    trail = " -> ".join(f"{a:.3f}" for a in accuracies)
    return (
        f"drifting: label accuracy fell {in_a_row} rounds in a row ({trail}, rounds {window[0]['round']}-"
        f"{window[-1]['round']}) while the newest step stayed under si.reach_threshold={reach_threshold}: the "
        "model is training on more of its own errors each round (the run goes on; si.drift_rounds sets this)"
    )


def round_table(summary: dict[str, Any]) -> str:
    """The console view: one row per round."""
    rows = [
        [
            r["round"],
            _span(r["targets"]) if r["targets"] else "base",
            r["kept"] if r["kept"] is not None else "-",
            r["label_accuracy"] if r["label_accuracy"] is not None else "-",
            r["acc_newest"],
            r["acc_next"],
            r["reach"],
            f"{r['seconds']:.0f}s",
        ]
        for r in summary["rounds"]
    ]
    return table(["round", "targets", "kept", "label acc", "acc@newest", "acc@next", "reach", "time"], rows)


def _span(targets: list[Any]) -> str:
    difficulties = [as_difficulty(t) for t in targets]
    names = [difficulty_name(d) for d in difficulties]
    if len(names) > 1 and all(len(sides(d)) == 1 for d in difficulties):
        return f"{names[0]}-{names[-1]}"
    return " ".join(names)


def plot(summary: dict[str, Any], out_dir: Any) -> None:
    """accuracy.png: accuracy by difficulty (rows) and round (columns), or for pair difficulties by
    (a, b) after the latest round; labels.png: label accuracy and kept fraction per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = summary["rounds"]
    if not rounds:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = _pair_grid(plt, summary) if summary["pair"] else _rounds_grid(plt, summary)
    fig.savefig(out_dir / "accuracy.png", dpi=100, bbox_inches="tight")  # titles and legends never clipped
    plt.close(fig)

    if any(r["label_accuracy"] is not None for r in rounds):
        fig = _labels_figure(plt, summary)
        fig.savefig(out_dir / "labels.png", dpi=100, bbox_inches="tight")
        plt.close(fig)


def _labels_figure(plt: Any, summary: dict[str, Any]) -> Any:
    labelled = [r for r in summary["rounds"] if r["label_accuracy"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3))
    xs = [r["round"] for r in labelled]
    ax.plot(xs, [r["label_accuracy"] for r in labelled], "o-", label="label accuracy (kept)")
    ax.plot(xs, [r["kept_fraction"] for r in labelled], "s--", label="kept fraction")
    ax.set(xlabel="round", ylim=(0, 1.02), title="self-labelled data per round")
    integer_axis(ax, "x")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)  # below the axes
    return fig


def _heatmap_colours(plt: Any) -> Any:
    # not evaluated: grey, apart from every accuracy and from the markers
    return plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")


def _rounds_grid(plt: Any, summary: dict[str, Any]) -> Any:
    import numpy as np
    from matplotlib.lines import Line2D

    rounds = summary["rounds"]
    longest = max(int(n) for r in rounds for n in r["accuracy"])
    grid = np.full((longest, len(rounds)), np.nan)
    for j, r in enumerate(rounds):
        for n, a in r["accuracy"].items():
            grid[int(n) - 1, j] = a
    fig, ax = plt.subplots(figsize=(2.2 + 0.6 * len(rounds), 1.4 + 0.28 * longest))
    extent = (-0.5, len(rounds) - 0.5, 0.5, longest + 0.5)
    cmap = _heatmap_colours(plt)
    image = ax.imshow(grid, aspect="auto", origin="lower", vmin=0, vmax=1, cmap=cmap, extent=extent)
    for j, r in enumerate(rounds):
        ax.plot([j - 0.5, j + 0.5], [r["trained_size"] + 0.5] * 2, color="white", lw=2)
        ax.plot([j - 0.5, j + 0.5], [r["reach"] + 0.5] * 2, color="red", lw=1.5, ls="--")
    ax.set(xlabel="round", ylabel="difficulty", title=f"{summary['task']}: accuracy per difficulty and round")
    integer_axis(ax, "x", spread=False)  # a grid of cells: its extent is its axes
    integer_axis(ax, "y", spread=False)
    fig.colorbar(image, ax=ax, label="accuracy")
    markers = [
        Line2D([], [], color="white", lw=2, label="largest trained"),
        Line2D([], [], color="red", lw=1.5, ls="--", label=f"reach (≥ {summary['reach_threshold']} up to it)"),
        Line2D([], [], color="#d9d9d9", lw=6, label="not evaluated"),
    ]
    legend = ax.legend(handles=markers, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize="small")
    legend.get_frame().set_facecolor("#808080")  # the white marker shows
    return fig


def _pair_grid(plt: Any, summary: dict[str, Any]) -> Any:
    import numpy as np

    latest = summary["rounds"][-1]
    pairs = {from_name(name): a for name, a in latest["accuracy"].items()}
    side = max(max(p) for p in pairs)
    grid = np.full((side, side), np.nan)
    for (a, b), value in pairs.items():
        grid[a - 1, b - 1] = value
    fig, ax = plt.subplots(figsize=(2.0 + 0.45 * side, 1.6 + 0.4 * side))
    extent = (0.5, side + 0.5, 0.5, side + 0.5)
    image = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap=_heatmap_colours(plt), extent=extent)
    reach = latest["reach"]
    ax.plot([0.5, reach + 0.5, reach + 0.5], [reach + 0.5, reach + 0.5, 0.5], color="red", lw=1.5, ls="--")
    ax.set(xlabel="b (digits)", ylabel="a (digits)", title=f"{summary['task']} after round {latest['round']}")
    integer_axis(ax, "x", spread=False)  # a grid of cells: its extent is its axes
    integer_axis(ax, "y", spread=False)
    fig.colorbar(image, ax=ax, label="accuracy (red: reach; grey: not evaluated)")
    return fig
