"""summary.json and plots, derived from the stage markers (so they can always be rebuilt)."""

from __future__ import annotations

from typing import Any

from selfimprove.logging import table
from selfimprove.stages import Context, base_stage, eval_stage, label_stage, train_stage


def summarize(ctx: Context, stopped: str | None = None) -> dict[str, Any]:
    """Per finished round: targets, generated, kept, label accuracy, accuracy per length, seconds, reach."""
    run = ctx.run
    rounds = []
    r = 0
    while run.is_done(eval_stage(r)):
        evaluation = run.result(eval_stage(r))
        labelled = run.result(label_stage(r)) if r > 0 else None
        trainings = [run.result(train_stage(r, k)) if r > 0 else run.result(base_stage(k)) for k in range(ctx.voters)]
        seconds = evaluation["seconds"] + sum(t["seconds"] for t in trainings)
        seconds += labelled["seconds"] if labelled else 0.0
        rounds.append(
            {
                "round": r,
                "targets": labelled["targets"] if labelled else None,
                "trained_max": evaluation["trained_max"],
                "generated": labelled["generated"] if labelled else None,
                "kept": labelled["kept"] if labelled else None,
                "kept_fraction": labelled["kept_fraction"] if labelled else None,
                "label_accuracy": labelled["label_accuracy"] if labelled else None,
                "accuracy": {str(n): a for n, a in zip(evaluation["lengths"], evaluation["accuracy"], strict=True)},
                "reach": evaluation["reach"],
                "final_loss": [t["final_loss"] for t in trainings],
                "seconds": round(seconds, 2),
            }
        )
        r += 1
    return {
        "task": ctx.cfg.data.task,
        "base_lengths": [ctx.cfg.data.base_min_length, ctx.cfg.data.base_max_length],
        "reach_threshold": ctx.cfg.si.reach_threshold,
        "voters": ctx.voters,
        "rounds": rounds,
        "reach": rounds[-1]["reach"] if rounds else 0,
        "seconds": round(sum(x["seconds"] for x in rounds), 2),
        "stopped": stopped,
    }


def round_table(summary: dict[str, Any]) -> str:
    """The console view: one row per round."""
    rows = []
    for r in summary["rounds"]:
        accuracy = {int(n): a for n, a in r["accuracy"].items()}
        newest = r["trained_max"]
        rows.append(
            [
                r["round"],
                _span(r["targets"]) if r["targets"] else "base",
                r["kept"] if r["kept"] is not None else "-",
                r["label_accuracy"] if r["label_accuracy"] is not None else "-",
                accuracy.get(newest, float("nan")),
                accuracy.get(newest + 1, float("nan")),
                r["reach"],
                f"{r['seconds']:.0f}s",
            ]
        )
    return table(["round", "targets", "kept", "label acc", "acc@newest", "acc@newest+1", "reach", "time"], rows)


def _span(lengths: list[int]) -> str:
    return str(lengths[0]) if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"


def plot(summary: dict[str, Any], out_dir: Any) -> None:
    """accuracy.png: exact match by length (rows) and round (columns); labels.png: label accuracy and
    kept fraction per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rounds = summary["rounds"]
    if not rounds:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    longest = max(int(n) for r in rounds for n in r["accuracy"])
    grid = np.full((longest, len(rounds)), np.nan)
    for j, r in enumerate(rounds):
        for n, a in r["accuracy"].items():
            grid[int(n) - 1, j] = a
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(rounds), 0.8 + 0.28 * longest))
    image = ax.imshow(
        grid,
        aspect="auto",
        origin="lower",
        vmin=0,
        vmax=1,
        cmap="viridis",
        extent=(-0.5, len(rounds) - 0.5, 0.5, longest + 0.5),
    )
    for j, r in enumerate(rounds):
        ax.plot([j - 0.5, j + 0.5], [r["trained_max"] + 0.5] * 2, color="white", lw=1.5)
    ax.set(xlabel="round", ylabel="length", title=f"{summary['task']}: exact match (white: longest trained)")
    ax.set_xticks(range(len(rounds)))
    fig.colorbar(image, ax=ax, label="exact match")
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy.png", dpi=100)
    plt.close(fig)

    labelled = [r for r in rounds if r["label_accuracy"] is not None]
    if labelled:
        fig, ax = plt.subplots(figsize=(5, 3))
        xs = [r["round"] for r in labelled]
        ax.plot(xs, [r["label_accuracy"] for r in labelled], "o-", label="label accuracy (kept)")
        ax.plot(xs, [r["kept_fraction"] for r in labelled], "s--", label="kept fraction")
        ax.set(xlabel="round", ylim=(0, 1.02), title="self-labelled data per round")
        ax.legend(loc="lower left")
        fig.tight_layout()
        fig.savefig(out_dir / "labels.png", dpi=100)
        plt.close(fig)
