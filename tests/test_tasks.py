import numpy as np
import pytest

from selfimprove.tasks import TASKS, get_task


def test_copy_format():
    task = get_task("copy")
    assert task.solve("0123=") == "0123"
    assert task.check("0123=", "0123") and not task.check("0123=", "0124")
    assert task.length_of("0123=") == 4 and task.answer_length(4) == 4
    assert task.sequence_length(4) == 1 + 5 + 4 + 1


def test_reverse_format():
    task = get_task("reverse")
    assert task.solve("1230=") == "0321"
    assert not task.check("1230=", "1230")


@pytest.mark.parametrize(
    ("a", "b", "prompt", "answer"),
    [
        (12, 39, "21+93=", "150"),  # 12 + 39 = 51 -> "051" reversed
        (999, 1, "999+1=", "0001"),  # operands as written: a_rev="999", b_rev="1" -> widths 3 and 1
        (5, 7, "5+7=", "21"),  # 12 reversed
        (0, 0, "0+0=", "00"),
    ],
)
def test_reverse_addition_worked_examples(a, b, prompt, answer):
    task = get_task("reverse_addition")
    assert task.solve(prompt) == answer
    assert int(answer[::-1]) == a + b
    assert len(answer) == max(len(x) for x in prompt[:-1].split("+")) + 1


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("length", [1, 7, 23])
def test_samples_have_their_length_and_true_answers(name, length):
    task = get_task(name)
    examples = task.sample(length, 50, np.random.default_rng(0))
    assert len(examples) == 50
    for prompt, answer in examples:
        assert prompt.endswith("=")
        assert len(prompt) == task.prompt_length(length)
        assert task.length_of(prompt) == length
        assert len(answer) == task.answer_length(length)
        assert task.check(prompt, answer)


def test_reverse_addition_answer_is_the_sum():
    task = get_task("reverse_addition")
    for prompt, answer in task.sample(12, 200, np.random.default_rng(1)):
        a_rev, b_rev = prompt[:-1].split("+")
        assert int(answer[::-1]) == int(a_rev[::-1]) + int(b_rev[::-1])


def test_sampling_is_seeded():
    task = get_task("copy")
    assert task.sample(9, 5, np.random.default_rng(3)) == task.sample(9, 5, np.random.default_rng(3))
    assert task.sample(9, 5, np.random.default_rng(3)) != task.sample(9, 5, np.random.default_rng(4))
