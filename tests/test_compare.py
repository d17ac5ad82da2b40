"""python -m selfimprove.compare on run directories written by hand: grouping, mean ± std and median and
range over seeds, how many runs gained sizes, run states, read-only. (On real sweeps and multiruns:
test_sweep.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfimprove.loop import runlock
from selfimprove.results.compare import figure, group_runs, load_run, main

CONFIG = {"data.task": "reverse", "si.noise.rate": 0.0, "training.seed": 0, "si.keep_round_checkpoints": False}


def write_run(
    path: Path, reaches: list[int], labels: list[float], planned: int, stopped=None, first=None, legacy=False, **config
) -> Path:
    """A run directory as the pipeline leaves it: run.json (with `planned` rounds, as last started), summary.json,
    .hydra/config.yaml (the first start's si.rounds: `first`, else `planned`). `legacy`: a run.json from before it
    recorded the rounds."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(f"si:\n  rounds: {first or planned}\n")
    record = {"overrides": [], "config": {**CONFIG, **config}, **({} if legacy else {"rounds": planned})}
    (path / "run.json").write_text(json.dumps(record))
    rounds = [
        {"round": r, "reach": reach, "label_accuracy": labels[r - 1] if r else None} for r, reach in enumerate(reaches)
    ]
    summary = {"rounds": rounds, "reach": reaches[-1], "seconds": 10.0 * len(reaches), "stopped": stopped}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture
def compare(capsys):
    """`python -m selfimprove.compare ARGS` in this process: (exit status, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        status = main(list(args))
        out = capsys.readouterr()
        return status, out.out, out.err

    return call


def rows(stdout: str) -> dict[str, list[str]]:
    """Table rows by group label, cells split on the table's two-space gaps."""
    lines = stdout.splitlines()[2:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("  ") if c.strip()] for line in lines)}


def test_groups_by_config_without_seed_with_mean_and_std(tmp_path, compare):
    sweep = tmp_path / "sweep"  # a sweep.py directory: numbered points, each a run directory
    write_run(sweep / "0", [10, 11, 12], [1.0, 0.99], planned=2)
    write_run(sweep / "1", [10, 12, 14], [1.0, 0.97], planned=2, **{"training.seed": 1})
    write_run(sweep / "2", [10, 11, 11], [0.9, 0.8], planned=2, **{"si.noise.rate": 0.2})
    write_run(sweep / "10", [10, 12, 13], [0.95, 0.85], planned=2, **{"si.noise.rate": 0.2, "training.seed": 1})
    figure = tmp_path / "figure.png"
    status, out, err = compare(str(sweep), "--out", str(figure))
    assert status == 0, err
    table = rows(out)
    # seeds 0 and 1 at rate 0: round 1 reaches 11 and 12 -> 11.5 ± 0.5; round 2: 12 and 14 -> 13 ± 1, median 13
    # in [12, 14]; both runs' rounds added sizes past the base's 10.
    assert table["si.noise.rate=0.0"] == ["10 11.5±0.5 13.0±1.0", "13 [12-14]", "2/2", "0.970", "30s", "2", "done 2"]
    assert table["si.noise.rate=0.2"] == ["10 11.5±0.5 12.0±1.0", "12 [11-13]", "2/2", "0.800", "30s", "2", "done 2"]
    assert figure.stat().st_size > 10_000


def test_by_keys_and_states(tmp_path, compare):
    write_run(tmp_path / "a", [10, 11], [1.0], planned=3)  # 1 of 3 rounds: unfinished
    write_run(tmp_path / "b", [10, 9], [0.5], planned=3, stopped="round 1 collapsed", **{"data.task": "copy"})
    write_run(tmp_path / "c", [10], [], planned=3, **{"data.task": "copy", "si.noise.rate": 0.5})
    with runlock.hold(tmp_path / "c"):  # a run.py working on it
        status, out, err = compare(str(tmp_path), "--by", "data.task")
    assert status == 0, err
    table = rows(out)
    assert table["data.task=reverse"] == ["10 11", "11", "1/1", "1.000", "20s", "1", "unfinished 1"]
    # run c has no round 1: round 1's figure is run b's alone, and says so (1 of 2 runs); the final reach is b's 9
    # and c's 10; b's round did not add a size (c has had none to); the label accuracy is b's only one.
    assert table["data.task=copy"] == ["10 9(1)", "9.5 [9-10]", "0/1", "0.500", "15s", "2", "running 1, stopped 1"]


def test_a_run_resumed_for_more_rounds_is_unfinished_until_it_runs_them(tmp_path, compare):
    write_run(tmp_path / "extended", [10, 11], [1.0], planned=3, first=1)  # started for 1 round, resumed for 3
    write_run(tmp_path / "older", [10, 11], [1.0], planned=1, legacy=True)  # its run.json has no rounds: .hydra/'s
    status, out, err = compare(str(tmp_path))
    assert status == 0, err
    assert rows(out)["all runs"][-1] == "done 1, unfinished 1"


def test_reads_and_never_writes(tmp_path, compare):
    run = write_run(tmp_path / "run", [10, 11], [1.0], planned=1)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    assert compare(str(run))[0] == 0
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()} == before


def test_bad_input_is_one_line(tmp_path, compare):
    write_run(tmp_path / "run", [10], [], planned=1)
    (tmp_path / "empty").mkdir()
    for args, message in [
        ([str(tmp_path / "empty")], "holds no run (no run.json at or below it)"),
        ([str(tmp_path / "nowhere")], "is not a directory"),
        ([str(tmp_path / "run"), "--by", "si.noise"], "--by si.noise: not a config key of"),
    ]:
        status, out, err = compare(*args)
        assert status == 2 and out == ""
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_reach_against_a_swept_value(tmp_path, compare):
    for num, (rate, kind, reach) in enumerate([(0.0, "uniform", 15), (0.5, "uniform", 12), (0.5, "perturb", 13)]):
        write_run(tmp_path / str(num), [11, reach], [1 - rate], planned=1, **{"si.noise.rate": rate, "kind": kind})
    figure = tmp_path / "against.png"
    status, _, err = compare(str(tmp_path), "--x", "si.noise.rate", "--out", str(figure))
    assert status == 0 and figure.stat().st_size > 10_000, err
    assert compare(str(tmp_path), "--x", "si.noise")[:2] == (2, "")  # not a key: one line, nothing plotted


def test_seeds_median_range_and_how_many_gained(tmp_path, compare):
    # three seeds of one preset: one collapses where it started, two self-improve by different amounts
    write_run(tmp_path / "0", [11, 12, 14, 15], [0.99, 0.99, 0.98], planned=3)
    write_run(tmp_path / "1", [10, 10], [0.7], planned=3, stopped="collapse", **{"training.seed": 1})
    write_run(tmp_path / "2", [11, 13, 16, 19], [1.0, 0.99, 0.99], planned=3, **{"training.seed": 2})
    status, out, err = compare(str(tmp_path))
    assert status == 0, err
    (row,) = rows(out).values()
    # round 2 and 3 are two runs' (the third stopped after round 1); finals 15, 10, 19: median 15 in [10, 19]
    assert row == [
        "10.7±0.5 11.7±1.2 15.0±1.0(2) 17.0±2.0(2)",
        "15 [10-19]",
        "2/3",
        "0.700",
        "33s",
        "3",
        "done 2, stopped 1",
    ]


def test_a_single_round_or_a_flat_reach_gets_whole_number_axes(tmp_path):
    # one run, round 0 only, reach 0 everywhere: the axes still read as rounds and sizes, not ±0.04 around a point
    run = load_run(write_run(tmp_path / "run", [0], [], planned=2))
    fig = figure(group_runs([run]))
    reach_ax, label_ax = fig.axes[:2]
    assert reach_ax.get_xlim() == (-1.0, 1.0) and reach_ax.get_ylim() == (-1.0, 1.0)
    assert all(tick == int(tick) for tick in [*reach_ax.get_xticks(), *reach_ax.get_yticks()])
    assert label_ax.get_ylim() == (0.0, 1.02)
