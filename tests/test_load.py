"""selfimprove.load: a run's model, from its newest or a kept round's checkpoint, answers as the run did."""

import json

import pytest
from conftest import SHARED_RUNS

import selfimprove
from selfimprove.errors import LoadError
from selfimprove.loop.evaluate import eval_examples
from selfimprove.tasks import as_difficulty

pytestmark = [pytest.mark.slow, SHARED_RUNS]


def test_loaded_models_answer_as_the_runs_evaluations_measured(kept_run):
    """The run evaluated each round's model on fixed held-out prompts: the loaded model, asked the same
    prompts, is judged right exactly as often, for the newest weights and for a kept round (the base)."""
    samples = 32  # the quick experiment's data.eval_samples
    for round_, stage in [(None, "train.round002.voter0"), (0, "base.voter0")]:
        model = selfimprove.load(kept_run, round=round_)
        assert model.stage == stage and model.task.name == "copy"
        measured = json.loads((kept_run / "done" / f"eval.round{0 if round_ == 0 else 2:03d}.json").read_text())
        evaluated = list(zip(measured["points"], measured["voter_accuracy"][0], strict=True))
        for point, accuracy in evaluated[:2] + evaluated[-2:]:  # the shortest and the longest evaluated
            examples = eval_examples(model.task, as_difficulty(point), samples, seed=0)
            answers = model.answer([e.prompt for e in examples], keep_cut=True)  # a babbled answer is wrong too
            assert sum(model.task.check(e.prompt, a) for e, a in zip(examples, answers, strict=True)) / samples == (
                accuracy
            ), point


def test_what_cannot_be_loaded_or_asked(kept_run):
    with pytest.raises(LoadError, match=r"round_007.pt does not exist \(this voter has: latest, round_000, round_001"):
        selfimprove.load(kept_run, round=7)
    with pytest.raises(LoadError, match="voter=1: the run has voters 0 to 0"):
        selfimprove.load(kept_run, voter=1)
    not_a_run = r"^selfimprove.load\('.*'\) is not a selfimprove run directory \(no run.json\)$"
    with pytest.raises(LoadError, match=not_a_run):
        selfimprove.load(kept_run / "checkpoints")  # a folder of a run, not the run
    model = selfimprove.load(kept_run)
    with pytest.raises(ValueError, match=r"prompt '12a=': characters outside the vocabulary: \['a'\]"):
        model.answer(["12a="])
    with pytest.raises(ValueError, match=r"model\.block_size=96 leaves no room"):
        model.answer(["1" * 95 + "="])


def test_only_the_tasks_prompts_are_answered_and_only_whole_answers_returned(kept_run):
    model = selfimprove.load(kept_run)  # copy, trained up to 12 digits
    with pytest.raises(TypeError, match=r"a list of prompts, not one string: answer\(\['123='\]\)"):
        model.answer("123=")  # else every character would be a prompt
    with pytest.raises(TypeError, match="prompt 123: a prompt is a string"):
        model.answer([123])
    with pytest.raises(ValueError, match=r"prompt '123': not a copy prompt \(digits, then '='"):
        model.answer(["123"])
    with pytest.raises(ValueError, match=r"prompt '12\+34=': not a copy prompt"):
        model.answer(["12+34="])
    # BOS and 61 prompt tokens leave 34 positions, and the last answer token is never fed back: 35 answer tokens.
    # This model's answer is longer: cut there, it is no answer.
    with pytest.raises(ValueError, match=r"prompt '1{60}=': the answer '1{35}' reached model.block_size=96 before"):
        model.answer(["1" * 60 + "="])
    assert model.answer(["1" * 60 + "="], keep_cut=True) == ["1" * 35]
