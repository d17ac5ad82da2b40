"""Every task's format, pinned by worked examples written by hand from the rules (docs/tasks.md)."""

import itertools
import re

import numpy as np
import pytest

from selfimprove.config import DataConfig
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.tasks import TASKS, get_task
from selfimprove.tasks.maze import parse_prompt


@pytest.mark.parametrize(
    ("name", "prompt", "answer"),
    [
        ("copy", "0123=", "0123"),
        ("reverse", "1230=", "0321"),
        ("sort", "3120=", "0123"),
        ("sort", "90909=", "00999"),
        ("reverse_addition", "21+93=", "150"),  # 12 + 39 = 51 -> "051" reversed
        ("reverse_addition", "999+1=", "0001"),  # widths 3 and 1: 999 + 1 = 1000, padded to 4
        ("reverse_addition", "0+0=", "00"),
        ("reverse_addition_hints", "k1l2m3+k4l5m6=", "k5l7m9n0"),  # 321 + 654 = 975 -> "0579" reversed
        ("reverse_addition_hints", "y9z9+y1z0=", "y0z0A1"),  # 99 + 1 = 100; the hint after z is A
        ("reverse_addition_hints", "Y5+Y7=", "Y2Z1"),  # 5 + 7 = 12; Z, the last hint, for the carry
        ("forward_addition_hints", "m1l2k3+m4l5k6=", "m5l7k9"),  # 123 + 456 = 579, units at k
        ("forward_addition_hints", "l9k9+l1k1=", "m1l1k0"),  # 99 + 11 = 110: the new leading digit takes m
        ("forward_addition_hints", "Y5+Y7=", "Z1Y2"),  # 5 + 7 = 12; Z, the last hint, for the carry
        ("forward_addition", "12+39=", "51"),
        ("forward_addition", "99+11=", "110"),
        ("forward_addition", "5+7=", "12"),
        ("forward_addition", "0+0=", "0"),
        ("multiplication", "321*54=", "5160+02940=53550"),  # 123 * 45 = 5535, the example
        # 12 * 345: partials 60 (3 digits), 480 (4) with running sum 540, 3600 (5); product 4140 (5 digits)
        ("multiplication", "21*543=", "060+0840(0450)+00630=04140"),
        ("multiplication", "7*8=", "65=65"),  # one partial product: 56, padded to 2 digits, reversed
        # 9 * 99: partials 81 (2 digits) and 810 (3 digits); product 891 padded to 3 digits
        ("multiplication", "9*99=", "18+018=198"),
        ("maze", "3>7#3:5-5:3,7-7:5=", "3>5>7"),
    ],
)
def test_worked_examples(name, prompt, answer):
    task = get_task(name)
    assert task.check(prompt, answer)
    assert not task.check(prompt, answer[:-1])
    assert not task.check(prompt, answer + "1")


@pytest.mark.parametrize(
    ("name", "prompt", "written"),
    [
        ("copy", "0123=", True),
        ("copy", "123", False),  # no "=": the model would answer a question never asked
        ("copy", "12+3=", False),
        ("copy", "=", False),
        ("reverse", "1230=", True),
        ("sort", "90909=", True),
        ("sort", "9 9=", False),
        ("reverse_addition", "21+93=", True),
        ("reverse_addition", "100+900=", True),  # reversed: trailing zeros are leading ones, which it writes
        ("reverse_addition", "999+1=", False),  # 3 and 1 digits: difficulty n is two n-digit operands
        ("reverse_addition", "21*93=", False),
        ("forward_addition", "12+39=", True),
        ("forward_addition", "0+7=", True),
        ("forward_addition", "012+339=", False),  # no n-digit number starts with 0
        ("forward_addition", "12+3=", False),
        ("multiplication", "321*54=", True),
        ("multiplication", "0*7=", True),
        ("multiplication", "12+34=", False),  # an addition asked of a multiplication model
        ("multiplication", "320*54=", False),  # 023 reversed: a leading zero
        ("multiplication", "321*54", False),
        ("reverse_addition_hints", "k1l2m3+k4l5m6=", True),
        ("reverse_addition_hints", "Y5+Y7=", True),  # Z is left for the carry digit
        ("reverse_addition_hints", "Z5+Z7=", False),  # no letter after Z for the carry digit
        ("reverse_addition_hints", "k1l2m3+l4m5n6=", False),  # each operand its own letters
        ("reverse_addition_hints", "k1m2+k4m5=", False),  # l skipped
        ("reverse_addition_hints", "k1l2m3+k4l5=", False),
        ("reverse_addition_hints", "123+456=", False),
        ("forward_addition_hints", "m1l2k3+m4l5k6=", True),
        ("forward_addition_hints", "Y5+Y7=", True),
        ("forward_addition_hints", "k1l2m3+k4l5m6=", False),  # letters running up: not the places' letters
        ("forward_addition_hints", "m0l2k3+m4l5k6=", False),  # a leading zero
        ("forward_addition_hints", "Z5+Z7=", False),  # units at Z: no letter for a carry into a new digit
    ],
)
def test_prompt_grammar_worked_examples(name, prompt, written):
    assert (get_task(name).prompt_error(prompt) is None) is written


MAZE3 = "3>7#3:5-5:3,7-7:5="  # 3 nodes, E two hops from S


@pytest.mark.parametrize(
    ("params", "prompt", "problem"),
    [
        ({"nodes": 3}, MAZE3, None),
        ({"maze_difficulty": "nodes", "hops": 2}, MAZE3, None),
        ({"maze_difficulty": "path", "side_nodes": 0}, MAZE3, None),
        ({}, MAZE3, "data.maze_difficulty=hops writes mazes of 20 nodes with E 2 hops from S there"),
        ({"maze_difficulty": "nodes", "hops": 4}, MAZE3, "writes mazes of 3 nodes with E 4 hops from S"),
        ({"nodes": 3}, "3>7#3:5-5:3,7-7:5", "not a maze prompt"),
        ({"nodes": 3}, "3>3#3:5-5:3,7-7:5=", "S and E must be distinct nodes of one tree"),
        ({"nodes": 3}, "3>7#3:5-5:3-7:5=", "one tree"),  # 5 does not list 7: not an undirected graph
        ({"nodes": 3}, "3>7#3:5-5:3,7-7:5-5:3,7=", "one tree"),  # 5 listed twice
        ({"nodes": 3}, "1>2#1:2,3-2:1,3-3:1,2=", "one tree"),  # a cycle
        ({"nodes": 5}, "1>2#1:2-2:1-3:4,5-4:3,5-5:4,3=", "one tree"),  # 4 edges, but a cycle apart from S-E
        ({"nodes": 3}, "3>8#3:5-5:3,7-7:5=", "one tree"),  # E is no node
        ({"nodes": 3}, "3>7#3:5-5:3,7-7:05=", "not a maze prompt"),  # labels are 1-99 written plainly
    ],
)
def test_maze_prompt_grammar(params, prompt, problem):
    error = get_task("maze", DataConfig(task="maze", **params)).prompt_error(prompt)
    assert error is None if problem is None else problem in error


def test_wrong_answers_are_wrong():
    assert not get_task("reverse").check("1230=", "1230")
    assert not get_task("sort").check("3120=", "3120")  # the digits as given
    assert not get_task("forward_addition").check("57+68=", "0125")  # no padding in forward addition
    assert not get_task("reverse_addition").check("21+93=", "15")  # padded to n + 1 digits
    hints = get_task("reverse_addition_hints")
    assert not hints.check("k1l2m3+k4l5m6=", "5790")  # the sum needs its hints
    assert not hints.check("k1l2m3+k4l5m6=", "a5b7c9d0")  # the prompt's hints, not any run of letters
    forward_hints = get_task("forward_addition_hints")
    assert not forward_hints.check("m1l2k3+m4l5k6=", "579")  # the sum needs its hints
    assert not forward_hints.check("m1l2k3+m4l5k6=", "k5l7m9")  # the letters of the places, not in writing order
    assert not forward_hints.check("l9k9+l1k1=", "l1k1j0")  # the carry digit takes the next letter up
    mul = get_task("multiplication")
    assert not mul.check("321*54=", "5160+02940=5355")  # the product is padded to len(a) + len(b)
    assert not mul.check("321*54=", "5161+02930=53550")  # a wrong chain with the right product


MAZE = "1>4#9:2-1:2-2:1,3,9-3:2,4-4:3="  # 1-2-3-4 with a branch 2-9


@pytest.mark.parametrize(
    ("label", "correct"),
    [
        ("1>2>3>4", True),
        ("1>2>9>2>3>4", False),  # a looping walk: every step an edge, node 2 twice
        ("1>2>4", False),  # 2-4 is no edge
        ("1>2>3", False),  # ends at 3, not 4
        ("2>3>4", False),  # starts at 2
        ("1>2>3>4>3", False),  # walks past the end
        ("1>5>3>4", False),  # 5 is no node
        ("", False),
    ],
)
def test_maze_validator(label, correct):
    assert get_task("maze").check(MAZE, label) is correct


def test_vote_keys():
    assert get_task("copy").vote_key("0123") == "0123"
    assert get_task("multiplication").vote_key("060+0840(0450)+00630=04140") == "04140"


@pytest.mark.parametrize(
    ("name", "difficulty", "label", "ok"),
    [
        ("copy", 4, "1234", True),
        ("copy", 4, "123", False),
        ("sort", 4, "012", False),
        ("reverse_addition", 3, "0001", True),
        ("reverse_addition", 3, "001", False),
        ("reverse_addition_hints", 3, "k5l7m9n0", True),
        ("reverse_addition_hints", 3, "5790", False),
        ("forward_addition_hints", 3, "m5l7k9", True),
        ("forward_addition_hints", 3, "n1m1l1k0", True),
        ("forward_addition_hints", 3, "l1k0", False),
        ("forward_addition", 2, "51", True),
        ("forward_addition", 2, "110", True),
        ("forward_addition", 2, "5", False),  # shorter than any sum of two 2-digit numbers
        ("forward_addition", 2, "1100", False),
        ("multiplication", (2, 3), "060+0840(0450)+00630=04140", True),  # 26 characters
        ("multiplication", (2, 3), "060+0840(0450)+00630=0414", False),
        ("maze", 3, "1>2>3>4", True),
        ("maze", 3, "1>2>4", False),
    ],
)
def test_length_rules(name, difficulty, label, ok):
    assert get_task(name).length_ok(difficulty, label) is ok


def test_multiplication_token_budget_counts_the_chain():
    task = get_task("multiplication")
    assert task.answer_tokens((2, 3)) == len("060+0840(0450)+00630=04140")
    assert task.answer_tokens((3, 2)) == len("5160+02940=53550")
    assert task.answer_tokens((1, 1)) == len("65=65")
    assert task.prompt_tokens((3, 2)) == len("321*54=")


def difficulties(name):
    return [(1, 1), (3, 2), (2, 7)] if get_task(name).difficulties.pair else [1, 7, 19]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_samples_are_right_and_within_the_token_budget(name):
    task = get_task(name)
    tokenizer = Tokenizer(task.vocabulary)
    for difficulty in difficulties(name):
        examples = task.sample(difficulty, 40, np.random.default_rng(0))
        assert len(examples) == 40
        for prompt, answer in examples:
            assert prompt.endswith("=") and task.prompt_error(prompt) is None
            assert task.check(prompt, answer) and task.length_ok(difficulty, answer)
            assert len(tokenizer.split(prompt)) <= task.prompt_tokens(difficulty)
            assert len(tokenizer.split(answer)) <= task.answer_tokens(difficulty)


def test_operands_have_their_digits():
    for prompt, _ in get_task("forward_addition").sample(6, 200, np.random.default_rng(1)):
        a, b = prompt[:-1].split("+")
        assert len(a) == len(b) == 6 and a[0] != "0" and b[0] != "0"
    for prompt, answer in get_task("multiplication").sample((4, 3), 200, np.random.default_rng(1)):
        a_rev, b_rev = prompt[:-1].split("*")
        assert len(a_rev) == 4 and len(b_rev) == 3 and a_rev[-1] != "0" and b_rev[-1] != "0"
        assert int(answer.rpartition("=")[2][::-1]) == int(a_rev[::-1]) * int(b_rev[::-1])


HINT_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"  # written again, not imported


def test_index_hints_are_runs_of_letters_starting_anywhere():
    """Every letter is trained on: the run of hints starts at every place where n + 1 letters still fit."""
    task = get_task("reverse_addition_hints")
    starts = set()
    for prompt, answer in task.sample(3, 3000, np.random.default_rng(3)):
        a, b = prompt[:-1].split("+")
        assert a[::2] == b[::2] == answer[:-2:2] and answer[::2] in HINT_LETTERS
        starts.add(HINT_LETTERS.index(a[0]))
    assert starts == set(range(len(HINT_LETTERS) - 3))  # 4 letters from each of a..W: the carry's is at most Z
    assert task.difficulty_error(51) is None and "need 53 hint letters" in task.difficulty_error(52)


def test_forward_index_hints_name_places_and_start_anywhere():
    """Written most significant first, so the letters run down; the units' letter is anywhere up to W at 3 digits."""
    task = get_task("forward_addition_hints")
    units = set()
    for prompt, answer in task.sample(3, 3000, np.random.default_rng(3)):
        a, b = prompt[:-1].split("+")
        assert a[::2] == b[::2] == answer[-6::2] and a[1] != "0" and b[1] != "0"
        first = HINT_LETTERS.index(a[-2])
        assert answer[::2] == HINT_LETTERS[first : first + len(answer) // 2][::-1]
        units.add(first)
    assert units == set(range(len(HINT_LETTERS) - 3))
    assert task.difficulty_error(51) is None and "need 53 hint letters" in task.difficulty_error(52)


@pytest.mark.parametrize(
    ("variant", "difficulty", "nodes", "hops"), [("hops", 7, 20, 7), ("nodes", 12, 12, 4), ("path", 6, 10, 6)]
)
def test_maze_samples_are_trees_with_the_asked_shape(variant, difficulty, nodes, hops):
    task = get_task("maze", DataConfig(task="maze", maze_difficulty=variant, nodes=20, hops=4, side_nodes=3))
    tokenizer = Tokenizer(task.vocabulary)
    for prompt, answer in task.sample(difficulty, 50, np.random.default_rng(2)):
        assert task.prompt_error(prompt) is None
        start, end, graph = parse_prompt(prompt)
        assert len(graph) == nodes and all(1 <= int(v) <= 99 for v in graph)
        edges = {frozenset((a, b)) for a in graph for b in graph[a]}
        assert len(edges) == nodes - 1 and all(a in graph[b] for a in graph for b in graph[a])  # a tree
        seen, frontier = {start}, [start]
        while frontier:  # connected
            frontier = [b for a in frontier for b in graph[a] if b not in seen]
            seen.update(frontier)
        assert seen == set(graph)
        path = answer.split(">")
        assert len(path) == hops + 1 and path[0] == start and path[-1] == end
        assert len(tokenizer.split(prompt)) == 6 * nodes  # 6 tokens per node, as prompt_tokens says


def test_maze_node_limits():
    task = get_task("maze", DataConfig(task="maze", nodes=10))
    assert task.difficulty_error(9) is None
    assert "at least 11 nodes" in task.difficulty_error(10)


def test_sampling_is_seeded():
    for name in sorted(TASKS):
        task, d = get_task(name), difficulties(name)[1]
        assert task.sample(d, 5, np.random.default_rng(3)) == task.sample(d, 5, np.random.default_rng(3))
        assert task.sample(d, 5, np.random.default_rng(3)) != task.sample(d, 5, np.random.default_rng(4))


def test_random_trees_cover_every_shape():
    """Wilson's algorithm from a fixed path: every labelled tree on 4 nodes with 0 and 1 adjacent shows up."""
    from selfimprove.tasks.maze import random_tree

    rng = np.random.default_rng(0)
    trees = [random_tree(4, 1, rng) for _ in range(2000)]
    shapes = {frozenset(frozenset((a, b)) for a in range(4) for b in tree[a]) for tree in trees}
    # Cayley: 16 labelled trees on 4 nodes, each with 3 of the 6 edges; 8 of them contain the edge 0-1.
    edges = [frozenset(e) for e in itertools.combinations(range(4), 2)]
    trees_with_edge = {
        frozenset(t) for t in itertools.combinations(edges, 3) if frozenset((0, 1)) in t and len(set().union(*t)) == 4
    }
    assert len(trees_with_edge) == 8
    assert shapes == trees_with_edge


COUPLED = ["copy", "reverse", "reverse_addition", "multiplication"]  # the tasks that give ids with their defaults
PADDED = DataConfig(task="forward_addition", pad_sum=True)


def test_padded_forward_addition_writes_every_sum_with_n_plus_one_digits():
    task = get_task("forward_addition", PADDED)
    for prompt, answer in [("12+39=", "051"), ("99+11=", "110"), ("5+7=", "12"), ("0+0=", "00")]:
        assert task.check(prompt, answer)
    assert {len(answer) for _, answer in task.sample(3, 100, np.random.default_rng(0))} == {4}
    assert not task.check("12+39=", "51")  # the unpadded sum is wrong here
    assert (task.length_ok(2, "051"), task.length_ok(2, "51")) == (True, False)


def test_padded_forward_addition_couples_digits_of_one_significance():
    # 12 + 39 = 51 -> "051": the digits of 10^0 (2, 9, 1) have id 1, of 10^1 (1, 3, 5) id 2, the padding 0 id 3,
    # read from the right; "=" writes the 0 (id 3), "0" writes the 5 (2), "5" the 1 (1), "1" writes EOS (0)
    ids = get_task("forward_addition", PADDED).positions("12+39=", 4)
    assert ids == [0, 2, 1, 0, 2, 1, 3, 2, 1, 0, 0]
    assert get_task("forward_addition", PADDED).max_position(7) == 8


@pytest.mark.parametrize(
    ("name", "prompt", "slots", "ids"),
    [
        # BOS 0; prompt digits 1 2 3; then each input carries the id of the token it writes next: "=" writes the
        # answer's "0" (id 1), "0" writes "1" (2), "1" writes "2" (3), "2" writes EOS (0), the EOS slot 0
        ("copy", "012=", 4, [0, 1, 2, 3, 1, 2, 3, 0, 0]),
        # the answer "210": its "2" is the prompt's third digit (3), its "1" the second (2), its "0" the first (1)
        ("reverse", "012=", 4, [0, 1, 2, 3, 3, 2, 1, 0, 0]),
        # answer slots past the EOS (decoding's slack) have no place: 0
        ("reverse", "01=", 5, [0, 1, 2, 2, 1, 0, 0, 0, 0]),
        # 12 + 39 = 51 -> "150": the digits of 10^0 (2, 9, 1) have id 1, of 10^1 (1, 3, 5) id 2, the carry digit 0
        # id 3; "=" writes the 1 (id 1), "1" writes the 5 (2), "5" writes the 0 (3), "0" writes EOS (0)
        ("reverse_addition", "21+93=", 4, [0, 1, 2, 0, 1, 2, 1, 2, 3, 0, 0]),
        ("reverse_addition", "999+1=", 5, [0, 1, 2, 3, 0, 1, 1, 2, 3, 4, 0, 0]),  # "0001": widths 3 and 1
    ],
)
def test_position_ids_worked_examples(name, prompt, slots, ids):
    assert get_task(name).positions(prompt, slots) == ids


def test_multiplication_gives_two_ids_a_token_worked_example():
    """12 x 345 = 4140: `21*543=` -> `060+0840(0450)+00630=04140`, ids (x, y) worked by hand from the rules.
    x: the digit of a that a chain digit multiplies, + len(b) = 3 (a's digits 2, 1: x 3, 4); y: the row (b's digits
    5, 4, 3: rows 0, 1, 2 at y 1, 3, 5; the running sum after row 1 at 4, the product at 6)."""
    prompt = [(0, 0), (3, 0), (4, 0), (0, 0), (0, 1), (0, 3), (0, 5)]  # BOS, a = "21", "*", b = "543"
    p0 = [(3, 1), (4, 1), (5, 1)]  # "060": 5 x 12, digits of 10^0..10^2 made by a's digits 0, 1 and the carry
    p1 = [(2, 3), (3, 3), (4, 3), (5, 3)]  # "0840": 40 x 12, its 10^0 digit (padding) made by no digit of a
    s1 = [(2, 4), (3, 4), (4, 4), (5, 4)]  # "(0450)": 60 + 480, the ids of p1 a row up
    p2 = [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]  # "00630"
    product = [(1, 6), (2, 6), (3, 6), (4, 6), (5, 6)]  # "04140"
    # every token of the answer, with the signs 11 past their row's top x (5): "+", "(", ")", "+", "="
    answer = [*p0, (16, 1), *p1, (16, 3), *s1, (16, 4), (16, 4), *p2, (16, 5), *product]
    # each input carries the ids of the token it writes next: "=" writes the first "0"; the last digit writes EOS
    expected = [*prompt, *answer, (0, 0), (0, 0)]
    assert get_task("multiplication").positions("21*543=", 27) == expected
    assert get_task("multiplication").max_position((2, 3)) == 16


@pytest.mark.parametrize("difficulty", [(1, 1), (3, 1), (1, 4), (4, 5), (7, 2)])
def test_multiplication_ids_are_one_pair_per_token_up_to_max_position(difficulty):
    task = get_task("multiplication")
    for prompt, answer in task.sample(difficulty, 50, np.random.default_rng(0)):
        ids = np.array(task.positions(prompt, len(answer) + 1))
        assert ids.shape == (1 + len(prompt) + len(answer) + 1, 2)
        assert ids.max() <= task.max_position(difficulty)
        assert ids.min() == 0
    assert ids.max() == task.max_position(difficulty)


@pytest.mark.parametrize(
    ("name", "data"), [*((name, None) for name in COUPLED if name != "multiplication"), ("forward_addition", PADDED)]
)
def test_position_ids_are_one_per_token_up_to_max_position(name, data):
    task = get_task(name, data)
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 9):
        examples = task.sample(n, 200, rng)
        rows = [task.positions(prompt, len(answer) + 1) for prompt, answer in examples]
        assert [len(row) for row in rows] == [1 + len(p) + len(a) + 1 for p, a in examples]  # BOS, prompt, answer, EOS
        assert max(max(row) for row in rows) == task.max_position(n)
        assert min(min(row) for row in rows) == 0
        assert max(max(row) for row in rows) < task.sequence_tokens(n)  # what block_size bounds


@pytest.mark.parametrize("name", sorted(set(TASKS) - set(COUPLED)))
def test_other_tasks_give_no_position_ids(name):
    task = get_task(name)
    difficulty = task.difficulties.hardest(3)
    prompt = task.sample(difficulty, 1, np.random.default_rng(0))[0].prompt
    assert task.positions(prompt, 4) is None
    assert task.max_position(difficulty) is None


@pytest.mark.parametrize(
    ("name", "prompt", "splits", "some"),
    [
        # 12 + 39 = 51, reversed, leading zeros allowed: a' = 0..51 but 12 (the prompt), b' = 51 - a'
        ("reverse_addition", "21+93=", 51, {"93+21=", "00+15=", "15+00=", "11+04="}),
        ("reverse_addition_hints", "a2b1+a9b3=", 51, {"a9b3+a2b1=", "a0b0+a1b5=", "a1b5+a0b0=", "a1b1+a0b4="}),
        # 12 + 39 = 51, no leading zero: both 10..99, so a' = 10..41 but 12
        ("forward_addition", "12+39=", 31, {"39+12=", "10+41=", "41+10=", "11+40="}),
        ("forward_addition_hints", "l1k2+l3k9=", 31, {"l3k9+l1k2=", "l1k0+l4k1=", "l4k1+l1k0=", "l1k1+l4k0="}),
        # 0 + 9: every other split of 9; 9 + 9: no other split of 18 into digits
        ("reverse_addition", "0+9=", 9, {"1+8=", "5+4=", "9+0="}),
        ("reverse_addition", "9+9=", 1, {"9+9="}),
    ],
)
def test_an_addition_is_presented_as_its_sum_split_another_way(name, prompt, splits, some):
    """(a+d)+(b-d) for d drawn among the shifts that keep both operands of the prompt's size, the prompt itself only
    where there is no other (worked by hand above); the label is the same, so `back` leaves it as it is."""
    task = get_task(name)
    rng = np.random.default_rng(0)
    views = [task.present(prompt, 1, rng) for _ in range(3000)]
    rewrites = {view.prompt for view in views}
    assert len(rewrites) == splits and some <= rewrites
    assert all(task.prompt_error(rewrite) is None for rewrite in rewrites)
    assert all(view.back("150") == "150" for view in views)  # the same sum, written the same way
    assert task.present(prompt, 0, rng).prompt == prompt  # presentation 0: the prompt


def test_a_long_sum_is_split_another_way_past_64_bits():
    """40-digit operands: the shifts outnumber a 64-bit integer; 99...9 + 00...01 splits into other numbers that
    still sum to 10^40."""
    task = get_task("reverse_addition")
    prompt = f"{'9' * 40}+{'1' + '0' * 39}="  # 10^40 - 1 and 1, least significant first
    rewrite = task.present(prompt, 1, np.random.default_rng(0)).prompt
    a, b = rewrite.removesuffix("=").split("+")
    assert rewrite != prompt and len(a) == len(b) == 40 and int(a[::-1]) + int(b[::-1]) == 10**40


def test_a_product_is_presented_with_its_factors_swapped_and_votes_by_the_product():
    """12 x 345 asked as 345 x 12: `21*543=` -> `543*21=`, of difficulty (3, 2). The rewrite's own chain, worked by
    hand (`543*21=` -> `0960+05430=04140`: 2 x 345 = 690 and 1 x 345 x 10 = 3450, reversed and padded), has another
    form but the vote key of `21*543=`'s chain, its product `04140`."""
    mul = get_task("multiplication")
    view = mul.present("21*543=", 1, np.random.default_rng(0))
    assert (view.prompt, view.difficulty) == ("543*21=", (3, 2))
    assert mul.prompt_error(view.prompt) is None
    assert mul.check("543*21=", "0960+05430=04140") and mul.check("21*543=", "060+0840(0450)+00630=04140")
    assert mul.vote_key(view.back("0960+05430=04140")) == mul.vote_key("060+0840(0450)+00630=04140") == "04140"
    assert mul.length_ok(view.difficulty, "0960+05430=04140")  # checked at the rewrite's own difficulty
    assert mul.present("21*543=", 0, np.random.default_rng(0)).difficulty is None  # the prompt: a whole label


@pytest.mark.parametrize("name", ["copy", "reverse"])
def test_renamed_digits_are_a_permutation_and_back_undoes_it(name):
    task = get_task(name)
    rng = np.random.default_rng(0)
    for prompt, answer in task.sample(12, 50, rng):
        view = task.present(prompt, 1, rng)
        renamed = dict(zip(prompt, view.prompt, strict=True))
        assert renamed["="] == "=" and len(renamed) == len(set(renamed.values()))  # one digit, one new digit
        assert all(renamed[a] == b for a, b in zip(prompt, view.prompt, strict=True))
        # the rewrite's true answer (the task's rule on the renamed digits) mapped back is the prompt's
        assert view.back(task.transform(view.prompt.removesuffix("="))) == answer
        assert view.back(view.prompt.removesuffix("=")) == prompt.removesuffix("=")  # applied and undone: identity


def test_copy_renamed_by_hand():
    """`0123=` with digits renamed 0->9, 1->8, ..., 9->0 (one permutation, written out): `9876=`, and a label
    of it, `9876`, back to `0123`."""
    view = get_task("copy").present("0123=", 1, FixedPermutation([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]))
    assert view.prompt == "9876=" and view.back("9876") == "0123"


class FixedPermutation:
    """A stand-in for the generator: a rewrite draws its permutation from `rng.permutation(10)`."""

    def __init__(self, order: list[int]) -> None:
        self.order = order

    def permutation(self, n: int) -> np.ndarray:
        assert n == 10
        return np.array(self.order)


TRACE = DataConfig(task="maze", maze_answer="trace", maze_difficulty="path", side_nodes=1)
BRANCHING = "1>4#2:1,3-1:2-3:2,4,5-4:3-5:3="  # the path 1-2-3-4 and 5 off node 3: 3 hops, 5 nodes


@pytest.mark.parametrize(
    ("prompt", "trace"),
    [
        ("3>7#3:5-5:3,7-7:5=", "7,5:7,3:5#3>5>7"),
        # from E=4: 3 (4's only neighbour); then 3's neighbours in their listed order, 2 and 5 (4 is recorded);
        # then 2's: 1; then 5's and 1's: none new. Read back from S=1: 1 was reached from 2, 2 from 3, 3 from 4
        (BRANCHING, "4,3:4,2:3,5:3,1:2#1>2>3>4"),
    ],
)
def test_maze_trace_worked_examples(prompt, trace):
    task = get_task("maze", TRACE)
    assert task.check(prompt, trace) and task.consistent(trace)
    assert task.vote_key(trace) == trace.partition("#")[2]


def test_maze_trace_rules_judge_the_path_and_check_the_records_without_the_maze():
    task = get_task("maze", TRACE)
    assert task.check(BRANCHING, "4,3:4,2:3,5:3,1:5#1>2>3>4")  # a wrong record: the path is still right
    assert not task.consistent("4,3:4,2:3,5:3,1:5#1>2>3>4")  # but 1 was not reached from 2 there
    assert not task.consistent("4,2:3,3:4,5:3,1:2#1>2>3>4")  # 2 reached from 3 before 3 is recorded
    assert not task.consistent("4,3:4,2:3,3:2,1:2#1>2>3>4")  # 3 recorded twice
    assert not task.consistent("4,3:4,2:3,5:3,1:2#1>2>3")  # the path does not end at the search's root
    assert not task.consistent("4,3:4,23,5:3,1:2#1>2>3>4")  # a record without its ":"
    assert not task.check(BRANCHING, "4,3:4,2:3,5:3,1:2#1>2>5>4")
    assert task.length_ok(3, "4,3:4,2:3,5:3,1:2#1>2>3>4")
    assert not task.length_ok(3, "4,3:4,2:3,1:2#1>2>3>4")  # a node left out of the search
    assert not task.length_ok(3, "4,3:4,2:3,5:3,1:2#1>2>4")


def test_maze_trace_samples_follow_their_own_rules_and_fit_the_token_budget():
    task = get_task("maze", TRACE)
    tok = Tokenizer(task.vocabulary)
    rng = np.random.default_rng(0)
    for hops in (1, 2, 5, 9):
        for prompt, answer in task.sample(hops, 30, rng):
            assert task.check(prompt, answer) and task.consistent(answer) and task.length_ok(hops, answer)
            assert len(tok.encode(answer)) == task.answer_tokens(hops)
    assert get_task("maze").check("3>7#3:5-5:3,7-7:5=", "3>5>7")  # the paper's answer stays the default


def test_a_maze_is_presented_with_its_nodes_renamed_and_back_undoes_it():
    for data in (None, TRACE):
        task = get_task("maze", data)
        rng = np.random.default_rng(0)
        for prompt, answer in task.sample(3, 20, rng):
            view = task.present(prompt, 1, rng)
            assert view.prompt != prompt and task.prompt_error(view.prompt) is None  # another maze of the same shape
            renamed = dict(zip(re.findall("[0-9]+", prompt), re.findall("[0-9]+", view.prompt), strict=True))
            assert len(set(renamed.values())) == len(renamed)  # one new name each
            assert re.sub("[0-9]+", "", view.prompt) == re.sub("[0-9]+", "", prompt)  # the same separators
            # the renamed maze's answer is this one's with its nodes renamed (its search visits them in the same
            # order), and back renames it to this one's
            theirs = "".join(renamed.get(part, part) for part in re.split("([0-9]+)", answer))
            assert task.check(view.prompt, theirs) and view.back(theirs) == answer
