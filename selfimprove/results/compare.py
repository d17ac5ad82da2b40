"""Compare runs: one table and one figure over run directories, sweep.py directories and Hydra multiruns.

    python -m selfimprove.compare outputs/sweeps/2026-11-29/10-00-00 [more dirs...] [--by si.noise.rate]
        [--out compare.png] [--x si.noise.rate]

Runs are grouped by their result-determining config (run.json) minus the seed, or by the `--by` keys;
per group, how often it works over seeds: reach per round as mean ± std (with the number of runs where fewer
than all reached that round), the final reach as median and range, how many runs' rounds added sizes past
their base, the lowest label accuracy, compute time, and how many runs are done, stopped (collapse, no
labels), running or unfinished. The figure: reach and label accuracy against round (median, band: the
runs' range), a line per group; with `--x KEY`, the final reach against that config value instead.
Read-only: it reads run.json, summary.json and .hydra/config.yaml and writes nothing into the runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfimprove.config import FILES, SEED, keys_with
from selfimprove.errors import ArgumentParser, CompareError, CorruptFileError
from selfimprove.loop.runlock import held
from selfimprove.results.metrics import table
from selfimprove.results.plotting import integer_axis
from selfimprove.store import RunDir, read_json

# Keys that vary between seeds of one experiment or do not change its numbers.
# Folders of a run or a sweep that never hold runs: not searched.
NOT_SEARCHED = {"checkpoints", "data", "plots", "done", "wandb"}


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    summary: dict[str, Any] | None  # None until round 0 is evaluated
    planned_rounds: int | None  # si.rounds as the run last started (run.json; .hydra/ for older runs)

    @property
    def reaches(self) -> list[int]:
        return [r["reach"] for r in self.summary["rounds"]] if self.summary else []

    @property
    def label_accuracies(self) -> list[float | None]:
        return [r["label_accuracy"] for r in self.summary["rounds"]] if self.summary else []

    @property
    def state(self) -> str:
        """done | stopped (the run's reason) | running (a process holds it) | unfinished (r of R rounds)."""
        if self.summary and self.summary["stopped"]:
            return "stopped"
        finished = len(self.reaches) - 1  # round 0 is the base
        if self.planned_rounds is not None and finished >= self.planned_rounds:
            return "done"
        if held(self.path):
            return "running"
        return "unfinished"


@dataclass
class Group:
    label: str
    runs: list[Run] = field(default_factory=list)

    def per_round(self, values: str) -> list[list[float]]:
        """Per round, the values of the runs that reached it (`reaches` or `label_accuracies`)."""
        series = [getattr(run, values) for run in self.runs]
        rounds = max((len(s) for s in series), default=0)
        return [[s[r] for s in series if r < len(s) and s[r] is not None] for r in range(rounds)]


def find_runs(dirs: Sequence[str | Path]) -> list[Path]:
    """Every run directory (one holding run.json) at or below each of `dirs`, in path order."""
    found: list[Path] = []
    for d in map(Path, dirs):
        if not d.is_dir():
            raise CompareError(f"{d} is not a directory")
        runs = sorted(_search(d), key=_natural)
        if not runs:
            raise CompareError(f"{d} holds no run (no run.json at or below it)")
        found += [r for r in runs if r not in found]
    return found


def _search(d: Path) -> Iterator[Path]:
    if RunDir(d).is_run():
        yield d
        return
    for child in d.iterdir():
        if child.is_dir() and not child.name.startswith(".") and child.name not in NOT_SEARCHED:
            yield from _search(child)


def _natural(path: Path) -> list[Any]:
    """Sweep and multirun points are numbered 0, 1, ..., 10: sort them as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts]


def load_run(path: Path) -> Run:
    run = RunDir(path)
    try:
        record = run.record()
        summary = read_json(run.summary) if run.summary.exists() else None
        planned = record["rounds"] if "rounds" in record else _planned_rounds(path)
        return Run(path, record["config"], summary, planned)
    except (CorruptFileError, KeyError) as e:
        raise CompareError(f"{path}: not a readable run ({e})") from e


def _planned_rounds(path: Path) -> int | None:
    """si.rounds of a run written before run.json recorded it: its first start's, in .hydra/config.yaml."""
    hydra_config = path / ".hydra" / "config.yaml"
    if not hydra_config.exists():
        return None
    from omegaconf import OmegaConf

    rounds = OmegaConf.select(OmegaConf.load(hydra_config), "si.rounds")
    return int(rounds) if rounds is not None else None


def check_keys(runs: list[Run], option: str, keys: Sequence[str]) -> None:
    for key in keys:
        if missing := [str(r.path) for r in runs if key not in r.config]:
            known = ", ".join(sorted(runs[0].config)[:8])
            raise CompareError(f"{option} {key}: not a config key of {missing[0]} (keys look like: {known}, ...)")


def group_runs(runs: list[Run], by: Sequence[str] = (), leave_out: Sequence[str] = ()) -> list[Group]:
    """By the `by` config keys, or else by the whole config but the seed, the files a run keeps and `leave_out`; a
    group's label names only the keys whose values differ between groups."""
    check_keys(runs, "--by", by)
    pooled = set(keys_with(SEED) + keys_with(FILES) + list(leave_out))
    keys = list(by) or sorted({k for r in runs for k in r.config} - pooled)
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(repr(run.config.get(k)) for k in keys), []).append(run)
    varying = [i for i, k in enumerate(keys) if len({g[i] for g in groups}) > 1 or by]
    labels = [" ".join(f"{keys[i]}={members[0].config.get(keys[i])}" for i in varying) for members in groups.values()]
    return [Group(label or "all runs", members) for label, members in zip(labels, groups.values(), strict=True)]


def mean_std(values: list[float], runs: int | None = None) -> str:
    """`mean±std`, or the value when all agree; `(n)` after it when only n of a group's `runs` have a value."""
    if not values:
        return "-"
    mean, spread = statistics.fmean(values), statistics.pstdev(values)
    text = f"{mean:.1f}±{spread:.1f}" if spread else f"{mean:g}"
    return text + (f"({len(values)})" if runs is not None and len(values) < runs else "")


def median_range(values: list[float]) -> str:
    """`median [lowest-highest]`, or the value when all agree: what a preset does over seeds, and how far apart."""
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:g}" if low == high else f"{mid:g} [{low:g}-{high:g}]"


def states(runs: list[Run]) -> str:
    """How many runs are in each state: `done 2, stopped 1`."""
    counts = Counter(run.state for run in runs)
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))


def compare_table(groups: list[Group]) -> str:
    rows = []
    for g in groups:
        evaluated = [run for run in g.runs if run.reaches]
        finals = [float(run.reaches[-1]) for run in evaluated]
        # Self-improvement is the rounds adding sizes past what the base reached, not a large base reach.
        with_rounds = [run for run in evaluated if len(run.reaches) > 1]
        gained = sum(run.reaches[-1] > run.reaches[0] for run in with_rounds)
        labels = [a for per_round in g.per_round("label_accuracies") for a in per_round]
        seconds = [run.summary["seconds"] for run in g.runs if run.summary]
        rows.append(
            [
                g.label,
                " ".join(mean_std([float(v) for v in vs], len(g.runs)) for vs in g.per_round("reaches")) or "-",
                median_range(finals),
                f"{gained}/{len(with_rounds)}" if with_rounds else "-",
                f"{min(labels):.3f}" if labels else "-",
                f"{statistics.fmean(seconds):.0f}s" if seconds else "-",
                len(g.runs),
                states(g.runs),
            ]
        )
    headers = [
        "group",
        "reach per round (0, 1, ...)",
        "final reach",
        "gained",
        "min label acc",
        "time",
        "runs",
        "state",
    ]
    return table(headers, rows, left=1)


def compare_dirs(dirs: Sequence[str | Path], by: Sequence[str] = ()) -> str:
    """The table over every run at or below `dirs` (CompareError when there is none to read)."""
    return compare_table(group_runs([load_run(path) for path in find_runs(dirs)], by))


def figure(groups: list[Group]) -> Any:
    """Reach and label accuracy against round, a line per group: the median over its runs, and a band from the
    lowest to the highest run (with a few seeds the range says more than a standard deviation)."""
    plt = _pyplot()
    fig, (reach_ax, label_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for g in groups:
        for ax, values in ((reach_ax, "reaches"), (label_ax, "label_accuracies")):
            points = [(r, vs) for r, vs in enumerate(g.per_round(values)) if vs]
            if not points:
                continue
            xs = [r for r, _ in points]
            medians = [statistics.median(vs) for _, vs in points]
            (line,) = ax.plot(xs, medians, "o-", label=f"{g.label} (n={len(g.runs)})")
            lows, highs = [min(vs) for _, vs in points], [max(vs) for _, vs in points]
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2)
    reach_ax.set(xlabel="round", ylabel="reach", title="reach (median, band: range over runs)")
    label_ax.set(xlabel="round", ylabel="label accuracy", ylim=(0, 1.02), title="labels right (median, range)")
    for ax in (reach_ax, label_ax):
        integer_axis(ax, "x")
    integer_axis(reach_ax, "y")
    return _legend_below(fig, reach_ax)


def figure_against(lines: list[Group], key: str) -> Any:
    """The final reach (mean, bars: ± std over a point's runs) and label accuracy against the config value
    `key`, a line per group: e.g. reach against si.noise.rate, one line per si.noise.kind."""
    plt = _pyplot()
    fig, (reach_ax, label_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for g in lines:
        values = sorted({run.config[key] for run in g.runs})
        at = [[run for run in g.runs if run.config[key] == v and run.reaches] for v in values]
        reach = [[float(run.reaches[-1]) for run in runs] for runs in at]
        labels = [[a for run in runs for a in run.label_accuracies if a is not None] for runs in at]
        reach_ax.errorbar(
            values,
            [statistics.fmean(r) for r in reach],
            [statistics.pstdev(r) for r in reach],
            fmt="o-",
            capsize=3,
            label=f"{g.label} (n={len(g.runs)})",
        )
        label_ax.plot(values, [statistics.fmean(a) if a else float("nan") for a in labels], "o-")
    reach_ax.set(xlabel=key, ylabel="final reach", title=f"reach against {key}")
    label_ax.set(
        xlabel=key, ylabel="label accuracy (mean over rounds)", ylim=(0, 1.02), title="accuracy of the kept self-labels"
    )
    integer_axis(reach_ax, "y")
    return _legend_below(fig, reach_ax)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend_below(fig: Any, ax: Any) -> Any:
    handles, labels = ax.get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.0, 0.0), fontsize="small", frameon=False)
    return fig


def save(fig: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")  # the legend below the axes, however long the labels
    _pyplot().close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m selfimprove.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dirs", nargs="+", help="run directories, sweep.py directories or Hydra multirun dirs")
    parser.add_argument("--by", nargs="+", default=[], metavar="KEY", help="group by these config keys")
    parser.add_argument("--out", type=Path, help="write the figure here (png, pdf, svg)")
    parser.add_argument(
        "--x", metavar="KEY", help="the figure plots the final reach against this config key, a line per group"
    )
    args = parser.parse_args(argv)
    try:
        runs = [load_run(path) for path in find_runs(args.dirs)]
        groups = group_runs(runs, args.by)
        if args.x:
            check_keys(runs, "--x", [args.x])
            lines = group_runs(runs, [k for k in args.by if k != args.x], leave_out=[args.x])
    except CompareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(compare_table(groups))
    if args.out:
        save(figure_against(lines, args.x) if args.x else figure(groups), args.out)
        print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
