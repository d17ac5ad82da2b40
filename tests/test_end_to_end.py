"""A tiny real run of base + 2 rounds through `python run.py`, and the files and numbers it writes."""

import itertools
import json
import os

import pytest
from conftest import QUICK, read_jsonl, run_cli

from selfimprove.tasks import get_task
from selfimprove.tasks.maze import parse_prompt

pytestmark = pytest.mark.slow


def test_quick_run_writes_a_consistent_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    # Every step logged, and rounds without warmup: a round starts at the peak lr, the base stage at a tenth.
    warmup = ["training.log_every=1", "training.round_warmup_steps=0"]
    proc = run_cli(*QUICK, "si.filters.voters=2", *warmup, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "acc@newest" in proc.stdout  # the per-round console table

    for path in [
        "run.json",
        "metrics.jsonl",
        "summary.json",
        "plots/accuracy.png",
        "plots/labels.png",
        ".hydra/config.yaml",
        "checkpoints/voter0/latest.pt",
        "checkpoints/voter1/latest.pt",
    ]:
        assert (run_dir / path).exists(), path
    for stage in [
        "base.voter0",
        "base.voter1",
        "eval.round000",
        "label.round001",
        "train.round001.voter0",
        "train.round001.voter1",
        "eval.round001",
        "label.round002",
        "train.round002.voter1",
        "eval.round002",
    ]:
        assert (run_dir / "done" / f"{stage}.json").exists(), stage

    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert summary["voters"] == 2
    task = get_task("copy")
    for r, targets in [(1, [11]), (2, [12])]:
        info = summary["rounds"][r]
        assert info["targets"] == targets
        assert info["generated"] == 200
        rows = read_jsonl(run_dir / "data" / f"round_{r:03d}.jsonl")
        assert info["kept"] == len(rows)
        assert info["kept_fraction"] == pytest.approx(len(rows) / 200)
        for row in rows:  # the audit is the oracle's verdict, and every kept label passed the filters
            assert row["correct"] == task.check(row["prompt"], row["label"])
            assert len(row["label"]) == row["difficulty"] == 11 + r - 1 and row["noisy"] is False
            assert row["votes"] in (1, 2) and 0.0 < row["confidence"] <= 1.0
        if rows:
            assert info["label_accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
        assert sorted(int(n) for n in info["accuracy"]) == list(range(1, 10 + r + 3 + 1))
        assert info["seconds"] > 0
    for info in summary["rounds"]:
        accuracy = {int(n): a for n, a in info["accuracy"].items()}
        reach = info["reach"]
        assert all(accuracy[n] >= 0.98 for n in range(1, reach + 1))
        assert reach == max(accuracy) or accuracy[reach + 1] < 0.98

    events = read_jsonl(run_dir / "metrics.jsonl")
    assert {e["event"] for e in events} == {"train", "label", "eval"}
    assert sum(e["event"] == "eval" for e in events) == 3
    first_lr = {e["stage"]: e["lr"] for e in reversed(events) if e["event"] == "train" and e["step"] == 1}
    assert first_lr["base.voter0"] == pytest.approx(1e-4)  # step 1 of the quick experiment's 10 warmup steps
    assert first_lr["train.round001.voter0"] == first_lr["train.round002.voter1"] == pytest.approx(1e-3)

    # Results as readable as the umask lets files be (022 here: by the group too), though atomic writes go
    # through mkstemp, which makes 0600.
    umask = os.umask(0)
    os.umask(umask)
    modes = {str(p.relative_to(run_dir)): p.stat().st_mode & 0o777 for p in run_dir.rglob("*") if p.is_file()}
    assert modes and all(mode == 0o666 & ~umask for mode in modes.values()), modes


def test_training_learns_short_copies_and_a_round_without_labels_stops(tmp_path):
    """Not a smoke test: base training alone must actually learn a short range. Then no answer at length 5
    is certain to the last float (min_confidence=1.0): round 1 keeps no label, says so, and the run stops
    there instead of training on nothing."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        "experiment=quick",
        "progress=false",
        "si.rounds=1",
        "si.collapse_threshold=0.5",
        "si.filters.min_confidence=1.0",
        "data.base_max=4",
        "training.base_steps=1000",
        "training.batch_size=64",
        "training.optim.lr=3e-3",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    accuracy = summary["rounds"][0]["accuracy"]
    assert all(accuracy[str(n)] >= 0.9 for n in range(1, 5)), accuracy
    assert summary["reach"] >= 3
    assert "round 1 kept no labels: the filters (si.filters) rejected all 200 answers at [5]" in proc.stdout
    assert [r["round"] for r in summary["rounds"]] == [0] and "kept no labels" in summary["stopped"]
    assert not list(run_dir.glob("done/train.round001.*"))


def wandb_records(run_dir):
    """The records of the run's offline wandb file(s), decoded: wandb's own protobuf messages in its
    LevelDB-style log (7-byte header, then 32 KiB blocks of checksum, length, type, payload)."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/*.wandb")):
        data, pos, chunk = path.read_bytes(), 7, b""
        assert data[:4] == b":W&B"
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
                pos += 32768 - pos % 32768
                continue
            length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
            payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
            chunk = payload if kind in (1, 2) else chunk + payload  # full | first, then middle | last
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(chunk)
                records.append(record)
    return records


def test_wandb_offline_run_holds_what_a_wandb_user_expects(tmp_path):
    """A real offline wandb run, read back: the composed config, every chart against the global training
    step, each round's accuracy table and heatmap, the final reach in the summary, plots uploaded."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        *QUICK, "si.rounds=1", "logger=wandb", f"hydra.run.dir={run_dir}", env={"WANDB_MODE": "offline"}
    )  # logger.mode is not given: the environment's WANDB_MODE decides
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = wandb_records(run_dir)
    kinds = [r.WhichOneof("record_type") for r in records]
    config = {u.key: json.loads(u.value_json) for r in records if r.HasField("run") for u in r.run.config.update}
    assert config["model"]["n_layer"] == 2 and config["training"]["base_steps"] == 60  # the quick preset
    metrics = {(r.metric.name or r.metric.glob_name, r.metric.step_metric) for r in records if r.HasField("metric")}
    assert ("*", "global_step") in metrics
    history = [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r in records
        if r.HasField("history")
    ]
    train = [(h["global_step"], h["train/voter0/loss"]) for h in history if "train/voter0/loss" in h]
    assert [step for step, _ in train] == [20, 40, 60, 80]  # base 20..60, then round 1's 20 steps at 80
    losses = [e["loss"] for e in read_jsonl(run_dir / "metrics.jsonl") if e["event"] == "train"]
    assert [loss for _, loss in train] == losses
    rounds = [h for h in history if "round/reach" in h]
    assert [(h["global_step"], h["round/round"]) for h in rounds] == [(60, 0), (80, 1)]
    summary = json.loads((run_dir / "summary.json").read_text())
    for h, measured in zip(rounds, summary["rounds"], strict=True):  # a table row per evaluated difficulty
        assert h["round/accuracy/_type"] == "table-file" and h["round/accuracy/nrows"] == len(measured["accuracy"])
        assert h["round/heatmap/_type"] == "image-file" and h["round/reach"] == measured["reach"]
    final = [u for r in records if r.HasField("summary") for u in r.summary.update if u.key == "reach"]
    assert json.loads(final[-1].value_json) == summary["reach"]
    uploaded = {f.path for r in records if r.HasField("files") for f in r.files.files}
    assert {"plots/accuracy.png", "plots/labels.png"} <= uploaded
    assert kinds.count("run") == 1  # one wandb run for the one process


def test_wandb_online_without_credentials_or_network_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    no_key = {"WANDB_CONFIG_DIR": str(tmp_path / "cfg"), "NETRC": str(tmp_path / "netrc"), "WANDB_SILENT": "true"}
    proc = run_cli(*QUICK, "logger=wandb", "logger.mode=online", f"hydra.run.dir={run_dir}", env=no_key)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: logger.mode=online: no wandb API key")
    # A key, and a server that cannot be reached (this port is closed): refused at once, not after wandb's 90 s.
    unreachable = {**no_key, "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    proc = run_cli(*QUICK, "logger=wandb", "logger.mode=online", f"hydra.run.dir={run_dir}", env=unreachable)
    assert proc.returncode == 2 and "error: logger.mode=online: cannot reach http://127.0.0.1:9" in proc.stderr
    assert not run_dir.exists()


# The rules of every task's format, written again from docs/tasks.md, independently of selfimprove.tasks.
HINT_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def reverse_addition(prompt):
    a, b = prompt[:-1].split("+")
    return str(int(a[::-1]) + int(b[::-1])).zfill(len(a) + 1)[::-1]


def reverse_addition_hints(prompt):
    a, b = prompt[:-1].split("+")
    first = HINT_LETTERS.index(a[0])
    digits = reverse_addition(f"{a[1::2]}+{b[1::2]}=")
    return "".join(HINT_LETTERS[first + i] + digit for i, digit in enumerate(digits))


def forward_addition_hints(prompt):
    a, b = prompt[:-1].split("+")
    units = HINT_LETTERS.index(a[-2])
    digits = str(int(a[1::2]) + int(b[1::2]))[::-1]  # least significant first, to pair each with its letter
    return "".join(reversed([HINT_LETTERS[units + i] + digit for i, digit in enumerate(digits)]))


def multiplication(prompt):
    a_rev, b_rev = prompt[:-1].split("*")
    a, width = int(a_rev[::-1]), len(a_rev)
    parts, total = [], 0
    for i, digit in enumerate(b_rev):
        total += int(digit) * a * 10**i
        part = str(int(digit) * a * 10**i).zfill(i + width + 1)[::-1]
        parts.append(part + (f"({str(total).zfill(i + width + 1)[::-1]})" if 0 < i < len(b_rev) - 1 else ""))
    return "+".join(parts) + "=" + str(total).zfill(width + len(b_rev))[::-1]


def maze_path(prompt):
    start, end, graph = parse_prompt(prompt)
    paths = [[start]]
    while paths[0][-1] != end:  # breadth-first; in a tree the first path to reach the end is the only one
        path = paths.pop(0)
        paths += [[*path, n] for n in sorted(graph[path[-1]]) if n not in path]
    return ">".join(paths[0])


RULES = {
    "copy": lambda p: p[:-1],
    "reverse": lambda p: p[:-1][::-1],
    "sort": lambda p: "".join(sorted(p[:-1])),
    "reverse_addition": reverse_addition,
    "reverse_addition_hints": reverse_addition_hints,
    "forward_addition": lambda p: str(sum(map(int, p[:-1].split("+")))),
    "forward_addition_hints": forward_addition_hints,
    "multiplication": multiplication,
    "maze": maze_path,
}


# Long answers: a model must train a little longer before it ends its labels with EOS at all.
LONGER = ["training.base_steps=150", "training.optim.lr=3e-3", "data.eval_samples=8"]
EXTRA = {
    "forward_addition_hints": ["training.base_steps=300", *LONGER[1:]],  # the longest answers of all
    "multiplication": [*LONGER, "data.base_max=2"],
    "maze": [*LONGER, "data.nodes=6", "data.base_max=3"],
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_task_runs_and_its_correct_flags_follow_the_format(tmp_path, name):
    """`python run.py experiment=quick data=<task>`; with the length filter off, so that the barely trained
    model's labels are kept, every stored `correct` flag is the rule's verdict on the stored label."""
    run_dir = tmp_path / "run"
    overrides = [f"data={name}", "si.rounds=1", "si.filters.length=false", *EXTRA.get(name, [])]
    proc = run_cli(*QUICK, *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(run_dir / "data" / "round_001.jsonl")
    assert rows, "nothing was kept"
    for row in rows:
        assert row["correct"] == (row["label"] == RULES[name](row["prompt"])), row
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == name and len(summary["rounds"]) == 2
    assert (run_dir / "plots" / "accuracy.png").exists()


def test_noise_is_injected_marked_and_audited(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        *QUICK,
        "si.rounds=1",
        "si.filters.length=false",
        "si.noise.rate=0.5",
        "si.noise.kind=drop",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(run_dir / "data" / "round_001.jsonl")
    label = json.loads((run_dir / "done" / "label.round001.json").read_text())
    assert label["noisy"] == sum(r["noisy"] for r in rows) == round(0.5 * len(rows)) > 0
    assert all(r["correct"] == (r["label"] == r["prompt"][:-1]) for r in rows)
    assert all(len(r["label"]) < 11 for r in rows if r["noisy"])  # drop deleted 1-3 tokens of 11-digit labels


def test_accelerated_schedule_through_the_stages(tmp_path):
    """si=accelerated: round 1 labels every consecutive length past the base whose accuracy after round 0
    is at least si.accelerate_threshold (the evaluation's result is set by hand to 11: 1.0, 12: 0.995,
    13: 0.5), and round 2 continues after the last of them."""
    run_dir = tmp_path / "run"
    args = [*QUICK, "si=accelerated", "si.collapse_threshold=0", "si.filters.length=false"]
    assert run_cli(*args, "si.rounds=0", f"hydra.run.dir={run_dir}").returncode == 0
    marker = run_dir / "done" / "eval.round000.json"
    result = json.loads(marker.read_text())
    assert result["points"] == list(range(1, 14))  # base 1-10 and eval_lookahead 3
    result["accuracy"] = [1.0] * 10 + [1.0, 0.995, 0.5]
    marker.write_text(json.dumps(result))
    proc = run_cli(*args, f"resume={run_dir}", "si.rounds=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    label = json.loads((run_dir / "done" / "label.round001.json").read_text())
    assert label["targets"] == [11, 12]
    rows = read_jsonl(run_dir / "data" / "round_001.jsonl")
    assert {r["difficulty"] for r in rows} <= {11, 12} and label["generated"] == 200
    assert json.loads((run_dir / "done" / "eval.round001.json").read_text())["points"] == list(range(1, 16))
    assert json.loads((run_dir / "done" / "label.round002.json").read_text())["targets"] == [13]  # 13 is below


def test_a_length_below_the_advance_threshold_is_labelled_again_through_the_stages(tmp_path):
    """si.advance_threshold=1: the quick model never scores 1.0 at 11, so round 2 labels 11 again (fresh prompts),
    trains on both rounds' labels, and evaluates no further than after round 1."""
    run_dir = tmp_path / "run"
    proc = run_cli(*QUICK, "si.advance_threshold=1.0", "si.filters.length=false", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = run_dir / "done"
    assert json.loads((done / "eval.round001.json").read_text())["accuracy"][10] < 1.0  # the premise: 11 below 1
    assert [json.loads((done / f"label.round00{r}.json").read_text())["targets"] for r in (1, 2)] == [[11], [11]]
    first, second = (read_jsonl(run_dir / "data" / f"round_00{r}.jsonl") for r in (1, 2))
    assert {row["difficulty"] for row in first + second} == {11}
    assert {row["prompt"] for row in first}.isdisjoint(row["prompt"] for row in second)
    assert json.loads((done / "eval.round002.json").read_text())["points"] == list(range(1, 15))  # 11 + 3


def test_a_base_model_that_did_not_learn_is_said_plainly_at_round_0(tmp_path):
    """The quick model learns nothing: with a collapse threshold the run stops after round 0's evaluation,
    naming the accuracy at every base length, and labels nothing."""
    run_dir = tmp_path / "run"
    proc = run_cli(*QUICK, "si.collapse_threshold=0.5", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the base model did not learn its base set (accuracy 1: " in proc.stdout
    assert "10: " in proc.stdout and "self-improvement cannot start from it" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["rounds"]) == 1 and "did not learn" in summary["stopped"]
    assert not (run_dir / "done" / "label.round001.json").exists()


def test_rounds_train_at_training_round_lr_and_the_base_at_optim_lr(tmp_path):
    run_dir = tmp_path / "run"
    lrs = ["training.optim.lr=2e-3", "training.round_lr=5e-4", "training.log_every=1"]  # each step's lr logged
    proc = run_cli(*QUICK, *lrs, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    peaks: dict[int, float] = {}
    for record in read_jsonl(run_dir / "metrics.jsonl"):
        if record["event"] == "train":
            peaks[record["round"]] = max(peaks.get(record["round"], 0.0), record["lr"])
    assert peaks == pytest.approx({0: 2e-3, 1: 5e-4, 2: 5e-4})


@pytest.mark.parametrize(
    ("data", "base_steps"),
    [(["data=reverse_addition", "data.base_max=2"], 200), (["data=multiplication", "data.base_max=1"], 300)],
)
def test_presentations_keep_the_labels_both_presentations_agree_on(tmp_path, data, base_steps):
    """si.filters.presentations=2 asks each prompt as a+b and as (a+d)+(b-d) (reversed addition), or as a*b and b*a
    (multiplication: another chain, asked at its own difficulty, voting by its product). Presentation 0 is the prompt
    itself, so the round's prompts and first answers are those of the same run without presentations: what it keeps
    is a subset of what that run keeps, with the same labels (never a rewrite's chain), each agreed by both."""
    args = [*QUICK, *data, "si.rounds=1", "si.filters.length=false"]
    args += [f"training.base_steps={base_steps}", "training.optim.lr=3e-3"]
    kept = {}
    for presentations in (1, 2):
        run_dir = tmp_path / f"presentations{presentations}"
        proc = run_cli(*args, f"si.filters.presentations={presentations}", f"hydra.run.dir={run_dir}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        kept[presentations] = {row["prompt"]: row for row in read_jsonl(run_dir / "data" / "round_001.jsonl")}
    assert 0 < len(kept[2]) < len(kept[1])  # the barely trained model answers some regrouped sums otherwise
    for prompt, row in kept[2].items():
        assert row["label"] == kept[1][prompt]["label"] and row["agreement"] == 1.0
    assert all("agreement" not in row for row in kept[1].values())


def test_a_scratchpad_run_keeps_only_consistent_labels_and_audits_the_final_sum(tmp_path):
    """data=forward_addition data.scratchpad=true with the length filter off: every kept label's two sums agree
    (the consistency filter), and its `correct` flag is the final sum's verdict, written here from the rules."""
    run_dir = tmp_path / "run"
    overrides = ["data=forward_addition", "data.scratchpad=true", "data.base_max=2", "si.rounds=1"]
    overrides += ["si.filters.length=false", "training.base_steps=300", "training.optim.lr=3e-3"]
    proc = run_cli(*QUICK, *overrides, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(run_dir / "data" / "round_001.jsonl")
    assert rows, "nothing was kept"
    for row in rows:
        reversed_sum, separator, final = row["label"].partition("=")
        assert separator and reversed_sum.isdigit() and str(int(reversed_sum[::-1])) == final, row
        a, b = row["prompt"].removesuffix("=").split("+")
        assert row["correct"] == (final == str(int(a) + int(b))), row


def follows_its_records(trace: str) -> bool:
    """A trace label's path follows its records (written from the format: `E,w:u,...#S>...>E`)."""
    records, _, path = trace.partition("#")
    reached_from = dict(record.split(":", 1) for record in records.split(",")[1:] if ":" in record)
    nodes = path.split(">")
    return nodes[-1] == records.split(",")[0] and all(reached_from.get(a) == b for a, b in itertools.pairwise(nodes))


def test_a_maze_trace_run_drops_the_searches_its_path_does_not_follow(tmp_path):
    """data=maze data.maze_answer=trace, the length filter off, with and without the consistency filter: round 1's
    prompts and first labels are the same in both runs, and the filter keeps exactly those whose path follows their
    records; `correct` is whether the path is the maze's (`maze_path` above)."""
    overrides = ["data=maze", "data.maze_answer=trace", "data.maze_difficulty=path", "data.side_nodes=1"]
    overrides += ["data.base_max=2", "si.rounds=1", "si.filters.length=false", "training.base_steps=300", *LONGER[1:]]
    kept = {}
    for consistency in ("false", "true"):
        run_dir = tmp_path / consistency
        proc = run_cli(*QUICK, *overrides, f"si.filters.consistency={consistency}", f"hydra.run.dir={run_dir}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        kept[consistency] = read_jsonl(run_dir / "data" / "round_001.jsonl")
    assert kept["false"], "nothing was kept"
    assert kept["true"] == [row for row in kept["false"] if follows_its_records(row["label"])]
    assert any(not follows_its_records(row["label"]) for row in kept["false"])  # the filter had work to do
    for row in kept["false"]:
        assert row["correct"] == (row["label"].partition("#")[2] == maze_path(row["prompt"])), row
