"""Bad input: one clear line and a non-zero exit before any work; broken files reported by path."""

import json
import select
import signal
import subprocess
import sys

import pytest
import torch
from conftest import QUICK, REPO, SHARED_RUNS, copy_run, give_to_user, read_only, run_cli

pytestmark = pytest.mark.slow


def last_line(proc) -> str:
    return proc.stderr.strip().splitlines()[-1]


def test_help_says_what_it_is_how_to_resume_and_where_results_go():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for what in ["labels harder ones for itself", "resume=<run dir>", "outputs/<date>/<time>/", "summary.json"]:
        assert what in proc.stdout, what
    assert "data: copy, forward_addition, forward_addition_hints, maze" in proc.stdout  # Hydra lists the groups


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible: the preset runs where it is meant to")
def test_a_paper_preset_on_a_cpu_says_so_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), "experiment=paper_reverse", f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:  # without the note, the first line on stderr comes days later
        first = proc.stderr.readline() if select.select([proc.stderr], [], [], 120)[0] else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # 2000 base steps + 100 rounds of 500: one voter; the preset's batch and rounds as written in it
    assert first == (
        "note: experiment=paper_reverse is sized for a GPU, and this run is on the CPU: 52000 training steps of 1024 "
        "sequences and 100 rounds of 20000 labels (days here; experiment=cpu_reverse is sized for a CPU)\n"
    )


def test_unknown_group_option_names_the_valid_ones(tmp_path):
    proc = run_cli("model=huge", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "small" in proc.stderr and "tiny" in proc.stderr


@pytest.mark.parametrize("typed", ["si.round=3", "+si.round=3", "++si.round=3"])
def test_unknown_key_is_refused_with_or_without_plus(tmp_path, typed):
    """Hydra's own refusal suggests `+si.round=3`, which would add a key nothing reads (and record it)."""
    run_dir = tmp_path / "run"
    proc = run_cli(*QUICK, typed, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {typed}: si has no key 'round': did you mean si.rounds?"]
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.block_size=16"], "model.block_size=16 is too small"),
        (["si.filters.voters=0"], "si.filters.voters=0 must be at least 1"),
        (["si.filters.vote_threshold=1.2"], "si.filters.vote_threshold=1.2 must lie in (0, 1]"),
        (["data.base_min=8", "data.base_max=4"], "the base set is empty"),
        (["training.base_attempts=0"], "training.base_attempts=0 must be at least 1"),
        (["training.round_lr=0"], "training.round_lr=0.0 must be positive"),
        (["base_from_voters=[1]"], "base_from_voters needs base_from"),
        # settings that would be recorded in run.json but read by nothing
        (["data=maze", "data.hops=100"], "data.hops=100 has no effect: data.task=maze reads data.maze_difficulty=hops"),
        (["data.side_nodes=2"], "data.side_nodes=2 has no effect: data.task=copy reads no task parameter"),
        (["base_from=x", "training.base_steps=999"], "training.base_steps=999 has no effect with base_from=x"),
        # a message names the key the user set and what to set instead
        (["data=maze", "data.maze_difficulty=nodes"], "data.maze_difficulty=nodes counts nodes, and a maze of"),
        (["data=maze", "data.maze_difficulty=nodes", "data.hops=0"], "data.hops=0: a path from S to E has at least 1"),
        (["data=maze", "data.maze_difficulty=path", "data.side_nodes=-1"], "data.side_nodes=-1: the nodes off the"),
        (["data=maze", "data.nodes=150"], "data.nodes=150: a maze has 2 to 99 nodes (its labels are the numbers 1-99)"),
        # the preset merges after the si group: si=none alone would run its 2 rounds
        (["si=none"], "si=none trains and evaluates the base only, but experiment=quick sets si.rounds=2"),
        (["base_from=x", "base_from_voters=[0,2]"], "names 2 voters, si.filters.voters=1: one each"),
        (["base_from=x", "si.filters.voters=2", "base_from_voters=[2,2]"], "distinct voter numbers >= 0"),
        pytest.param(
            ["training.device=cuda"],
            "training.device=cuda: no CUDA device is visible to this process",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible"),
        ),
    ],
)
def test_inconsistent_values_stop_before_any_work(tmp_path, overrides, message):
    run_dir = tmp_path / "run"
    proc = run_cli(*QUICK, *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [last_line(proc)]  # one line, nothing else
    assert last_line(proc).startswith("error: ") and message in last_line(proc)
    assert "rounds of" not in last_line(proc) or "block_size" in message  # no clause about a reach not asked for
    assert not run_dir.exists()  # no stray run directory


@pytest.mark.parametrize("mode", ["", "on"])
def test_a_wandb_mode_in_the_environment_that_wandb_refuses(tmp_path, mode):
    """wandb reads WANDB_MODE whatever logger.mode says; set but empty, it raised a 30-line pydantic error."""
    run_dir = tmp_path / "run"
    proc = run_cli(*QUICK, "logger=wandb", "logger.mode=online", f"hydra.run.dir={run_dir}", env={"WANDB_MODE": mode})
    line = one_error_line(proc)
    assert line.startswith(f"error: WANDB_MODE={mode!r} (set in the environment) is not a wandb mode: unset it")
    assert not run_dir.exists()  # not even a .lock


def test_resume_path_that_is_not_a_run_dir(tmp_path):
    proc = run_cli(f"resume={tmp_path}")
    assert proc.returncode == 2
    assert last_line(proc) == f"error: resume={tmp_path} is not a selfimprove run directory (no run.json)"
    proc = run_cli(f"resume={tmp_path / 'missing'}")
    assert proc.returncode == 2 and "no such directory" in last_line(proc)


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_a_new_run_is_not_written_beside_a_users_files(tmp_path):
    """hydra.run.dir follows sweep.py --dir's rule: a folder that is not a run must be empty."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    line = one_error_line(run_cli(*QUICK, f"hydra.run.dir={mine}"))
    assert line == (
        f"error: hydra.run.dir={mine} is not a run directory (no run.json) and not empty: refusing to write there"
    )
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


@SHARED_RUNS
def test_an_existing_run_continues_only_with_resume(tmp_path, base_run):
    """Pointing a new run at a finished one, even with its very config, does not quietly resume it."""
    run_dir = copy_run(base_run, tmp_path / "run")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    line = one_error_line(run_cli(*QUICK, "si.rounds=0", f"hydra.run.dir={run_dir}"))
    assert line == f"error: hydra.run.dir={run_dir} is a run already: continue it with resume={run_dir}"
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_an_output_dir_that_is_a_file_or_cannot_be_written(tmp_path, user_dir):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert one_error_line(run_cli(*QUICK, f"hydra.run.dir={a_file}")).endswith(f"{a_file} is a file, not a directory")
    closed = user_dir / "closed"
    closed.mkdir()
    give_to_user(closed)
    read_only(closed)  # chmod a-w, and the run is started by its owner, who is not root
    line = one_error_line(run_cli(*QUICK, f"hydra.run.dir={closed / 'run'}", as_user=True))
    assert line == f"error: hydra.run.dir={closed / 'run'}: cannot write in {closed} (permission denied)"
    assert not (closed / "run").exists()


@SHARED_RUNS
def test_a_read_only_finished_run_is_refused_in_one_line(tmp_path, user_dir, base_run):
    run_dir = copy_run(base_run, user_dir / "run")
    give_to_user(run_dir)
    read_only(run_dir)
    line = one_error_line(run_cli(*QUICK, f"resume={run_dir}", as_user=True))  # nothing left to do
    assert line.startswith(f"error: cannot write in {run_dir} (permission denied)")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    # Adam's first step moves every weight by about lr: finite at 1e30, but the next forward overflows.
    proc = run_cli(
        *QUICK,
        "training.optim.lr=1e30",
        "training.warmup_steps=0",
        "training.optim.grad_clip=0",
        "training.log_every=1",
        "training.checkpoint_every=1",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 2
    line = last_line(proc)
    assert line.startswith("error: non-finite") and "Traceback" not in proc.stderr
    checkpoint_path = run_dir / "checkpoints/voter0/latest.pt"
    assert f"the last good checkpoint is kept: {checkpoint_path} (base.voter0, step " in line
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())
    assert not (run_dir / "done" / "base.voter0.json").exists()


@SHARED_RUNS
def test_corrupt_checkpoint_is_reported_by_path(tmp_path, base_run):
    run_dir = copy_run(base_run, tmp_path / "run")
    checkpoint = run_dir / "checkpoints" / "voter0" / "latest.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated, as by a full disk
    proc = run_cli(*QUICK, f"resume={run_dir}", "si.rounds=1")  # round 1 labels with the checkpoint
    assert proc.returncode == 2
    assert last_line(proc).startswith(f"error: corrupt checkpoint {checkpoint}")
    assert "Traceback" not in proc.stderr


@SHARED_RUNS
def test_corrupt_round_data_is_reported_by_path(tmp_path, kept_run):
    run_dir = copy_run(kept_run, tmp_path / "run")
    data = run_dir / "data" / "round_002.jsonl"
    data.write_text(data.read_text() + "{not json\n")
    (run_dir / "done" / "train.round002.voter0.json").unlink()  # so that training reads the data again
    (run_dir / "done" / "eval.round002.json").unlink()
    proc = run_cli(*QUICK, "si.keep_round_checkpoints=true", f"resume={run_dir}")
    assert proc.returncode == 2
    assert last_line(proc).startswith(f"error: corrupt round data {data}")


@SHARED_RUNS
def test_corrupt_marker_is_reported_by_path(tmp_path, base_run):
    run_dir = copy_run(base_run, tmp_path / "run")
    marker = run_dir / "done" / "eval.round000.json"
    marker.write_text("{")
    proc = run_cli(*QUICK, f"resume={run_dir}")
    assert proc.returncode == 2
    assert last_line(proc).startswith(f"error: cannot read {marker}")
    json.loads((run_dir / "run.json").read_text())  # the run itself is untouched


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [("vocabulary", list("0123456789="), "vocabulary"), ("model_config", {"n_layer": 7}, "model")],
)
@SHARED_RUNS
def test_checkpoint_of_another_vocabulary_or_model_is_refused_by_path(tmp_path, base_run, key, value, what):
    run_dir = copy_run(base_run, tmp_path / "run")
    path = run_dir / "checkpoints" / "voter0" / "latest.pt"
    checkpoint = torch.load(path, weights_only=False)
    checkpoint[key] = value
    torch.save(checkpoint, path)
    proc = run_cli(*QUICK, f"resume={run_dir}", "si.rounds=1")
    assert proc.returncode == 2
    assert last_line(proc).startswith(f"error: {path} was written for another {what}: ")
    assert not (run_dir / "data" / "round_001.jsonl").exists()


@SHARED_RUNS
def test_resume_with_another_vocabulary_is_refused(tmp_path, base_run):
    run_dir = copy_run(base_run, tmp_path / "run")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["vocabulary"] == list("0123456789+=")  # copy's tokens, recorded with the run
    record["vocabulary"] = list("0123456789=")
    (run_dir / "run.json").write_text(json.dumps(record))
    proc = run_cli(*QUICK, f"resume={run_dir}", "si.rounds=1")
    assert proc.returncode == 2 and "resuming would change the vocabulary" in last_line(proc)
