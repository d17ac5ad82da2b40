"""Shortest paths in mazes: a random tree, its nodes labelled by distinct numbers from 1-99 (one token each).

Prompt `S>E#` then every node, shuffled, as `v:n1,n2,...` (its neighbours, shuffled) joined by `-`, then
`=`; answer the path `S>...>E`. In a tree the path is unique; a label is correct when it starts at S,
ends at E, repeats no node and every step is an edge.
    `3>7#3:5-5:3,7-7:5=` -> `3>5>7`
Difficulty: hops between S and E, with `data.nodes` nodes (`data.maze_difficulty=hops`), or the node
count, with `data.hops` hops (`data.maze_difficulty=nodes`, the paper's second variant), or hops in trees
of hops + 1 + `data.side_nodes` nodes (`data.maze_difficulty=path`: the S-E path and a few nodes off it,
so that a prompt grows with the hops instead of being as long as the largest maze from the first step).

`data.maze_answer=trace` writes, before the path, a breadth-first search from E: `E`, then `,w:u` for each node w
in the order the search reaches it from u (first in, first out; each node's neighbours in the prompt's order),
then `#` and the path read back from S through those records (S, the node S was reached from, ..., E):
    `1>4#2:1,3-1:2-3:2,4,5-4:3-5:3=` -> `4,3:4,2:3,5:3,1:2#1>2>3>4`
Every token of it is one local step: a record needs a recorded node and its listed neighbours, a path step the
record of the node before it; choosing the path's next node no longer means looking ahead to E. `check` judges
the path; the records are checked against the path with no maze (`consistent`), and their count by the length rule.

The tree is drawn with Wilson's algorithm started from a random S-E path of the wanted length, which
gives a uniformly random labelled tree among those where S and E are that many hops apart.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

from selfimprove.choices import Choice
from selfimprove.tasks.base import Difficulty, Example, Presentation, Task

MAX_LABEL = 99
SEPARATORS = ">#:,-="
_NODE = "[1-9][0-9]?"  # a label: 1-99
_ENTRY = f"{_NODE}:{_NODE}(?:,{_NODE})*"


class MazeDifficulty(Choice):
    hops = "hops"  # hops from S to E, in trees of data.nodes nodes
    nodes = "nodes"  # the node count, with data.hops hops from S to E (the paper's second variant)
    path = "path"  # hops, in trees of the S-E path and data.side_nodes nodes off it: prompts grow with the hops


class MazeAnswer(Choice):
    path = "path"  # the path S>...>E (the paper's)
    # a breadth-first search from E recording each node with the node it was reached from, then the path read back
    # from S through those records: every token one local step (module docstring)
    trace = "trace"


@dataclass
class MazeParameters:
    maze_difficulty: MazeDifficulty = MazeDifficulty.hops
    nodes: int = 20  # nodes per maze when the difficulty is hops
    hops: int = 5  # hops from S to E when the difficulty is nodes
    side_nodes: int = 3  # nodes off the S-E path when the difficulty is path
    maze_answer: MazeAnswer = MazeAnswer.path


# The one parameter beside maze_difficulty that each kind of difficulty reads: the shape it holds fixed.
FIXED = {MazeDifficulty.hops: "nodes", MazeDifficulty.nodes: "hops", MazeDifficulty.path: "side_nodes"}


def random_tree(nodes: int, hops: int, rng: np.random.Generator) -> list[list[int]]:
    """Adjacency lists of a random tree on `nodes` vertices where vertices 0 and `hops` are `hops` apart
    (the path 0-1-...-hops, completed by Wilson's loop-erased random walks on the complete graph)."""
    neighbours: list[list[int]] = [[] for _ in range(nodes)]
    in_tree = [v <= hops for v in range(nodes)]
    for v in range(hops):
        neighbours[v].append(v + 1)
        neighbours[v + 1].append(v)
    step = [0] * nodes
    for start in rng.permutation(np.arange(hops + 1, nodes)).tolist():
        v = start
        while not in_tree[v]:  # walk until the tree is hit; overwriting `step` erases the loops
            other = int(rng.integers(nodes - 1))
            step[v] = other + (other >= v)  # a uniform vertex other than v
            v = step[v]
        v = start
        while not in_tree[v]:
            in_tree[v] = True
            neighbours[v].append(step[v])
            neighbours[step[v]].append(v)
            v = step[v]
    return neighbours


def parse_prompt(prompt: str) -> tuple[str, str, dict[str, set[str]]]:
    """Start, end and the adjacency of a maze prompt."""
    start, end, lists = adjacency_lists(prompt)
    return start, end, {node: set(adjacent) for node, adjacent in lists.items()}


def adjacency_lists(prompt: str) -> tuple[str, str, dict[str, list[str]]]:
    """Start, end and each node's neighbours in the order the prompt lists them."""
    head, _, body = prompt.removesuffix("=").partition("#")
    start, _, end = head.partition(">")
    lists = {}
    for entry in body.split("-"):
        node, _, adjacent = entry.partition(":")
        lists[node] = adjacent.split(",")
    return start, end, lists


def search_trace(prompt: str) -> str:
    """The trace answer: a breadth-first search from E, `E` then `,w:u` for every node w in the order it is reached
    (u the node it was reached from; the queue first in, first out, each node's neighbours in the prompt's order),
    then `#` and the path from S read back through those records: S, the node S was reached from, ..., E."""
    start, end, lists = adjacency_lists(prompt)
    parent, queue = {end: end}, [end]
    for u in queue:
        for w in lists[u]:
            if w not in parent:
                parent[w] = u
                queue.append(w)
    path = [start]
    while path[-1] != end:
        path.append(parent[path[-1]])
    records = [end] + [f"{w}:{parent[w]}" for w in queue[1:]]
    return ",".join(records) + "#" + ">".join(path)


def trace_parents(label: str) -> dict[str, str] | None:
    """The records of a trace label as node -> the node it was reached from (the root E -> itself), None unless
    they are a search: a root, then distinct nodes each reached from one recorded before it."""
    records = label.partition("#")[0].split(",")
    root = records[0]
    parent = {root: root}
    for record in records[1:]:
        node, sep, source = record.partition(":")
        if not sep or node in parent or source not in parent:
            return None
        parent[node] = source
    return parent


def distances(graph: dict[str, set[str]], start: str) -> dict[str, int]:
    """Hops from `start` to every node it reaches (breadth first)."""
    hops, queue = {start: 0}, [start]
    for a in queue:
        for b in graph.get(a, ()):
            if b not in hops:
                hops[b] = hops[a] + 1
                queue.append(b)
    return hops


def renamed(text: str, names: dict[str, str]) -> str:
    """`text` with every node label (a number) replaced by its name in `names`."""
    return re.sub(r"[0-9]+", lambda match: names[match[0]], text)


class MazeTask(Task):
    name = "maze"
    Parameters = MazeParameters
    presentations = math.factorial(MAX_LABEL)  # the maze with its nodes renamed: every permutation of 1-99
    prompt_pattern = re.compile(f"{_NODE}>{_NODE}#{_ENTRY}(?:-{_ENTRY})*=")
    prompt_rule = (
        "S>E#, then every node of a tree as node:neighbours (numbers 1-99, ',' between neighbours, '-' between "
        "nodes), then '=', e.g. 3>7#3:5-5:3,7-7:5="
    )

    def __init__(self, params: MazeParameters | None = None) -> None:
        super().__init__(params)
        p = self.params
        self.variant, self.nodes, self.hops, self.side_nodes = p.maze_difficulty, p.nodes, p.hops, p.side_nodes
        if self.variant == "nodes":
            self.min_difficulty = self.hops + 1

    def settings(self) -> tuple[str, ...]:
        return ("maze_difficulty", FIXED[self.variant], "maze_answer")

    @property
    def vocabulary(self) -> list[str]:
        return [str(n) for n in range(1, MAX_LABEL + 1)] + list(SEPARATORS)

    def shape(self, difficulty: Difficulty) -> tuple[int, int]:
        """(nodes, hops) of an instance of `difficulty`."""
        if self.variant == "nodes":
            return int(difficulty), self.hops
        if self.variant == "path":
            return int(difficulty) + 1 + self.side_nodes, int(difficulty)
        return self.nodes, int(difficulty)

    def parameter_error(self) -> str | None:
        if self.variant == "hops" and not 2 <= self.nodes <= MAX_LABEL:
            labels = f"its labels are the numbers 1-{MAX_LABEL}"
            return f"data.nodes={self.nodes}: a maze has 2 to {MAX_LABEL} nodes ({labels})"
        if self.variant == "nodes" and self.hops < 1:
            return f"data.hops={self.hops}: a path from S to E has at least 1 hop"
        if self.variant == "path" and self.side_nodes < 0:
            return f"data.side_nodes={self.side_nodes}: the nodes off the S-E path number 0 or more"
        return None

    def base_error(self, base_min: int) -> str | None:
        if self.variant != "nodes" or base_min >= self.min_difficulty:
            return super().base_error(base_min)
        return (
            f"data.maze_difficulty=nodes counts nodes, and a maze of data.hops={self.hops} hops has at least "
            f"{self.min_difficulty}: set data.base_min and data.base_max from {self.min_difficulty} on (the paper's "
            "variant: data.hops=9 data.base_min=10 data.base_max=30 si.length_step=3 model.block_size=512)"
        )

    def difficulty_error(self, difficulty: Difficulty) -> str | None:
        nodes, hops = self.shape(difficulty)
        if nodes > MAX_LABEL:
            return f"maze: {nodes} nodes, but node labels are the numbers 1-{MAX_LABEL}"
        if hops >= nodes:
            return f"maze: {hops} hops need at least {hops + 1} nodes (data.nodes={nodes})"
        return None

    def prompt_error(self, prompt: str) -> str | None:
        wrong = super().prompt_error(prompt)
        if wrong is not None:
            return wrong
        start, end, graph = parse_prompt(prompt)
        entries = [entry.partition(":")[2].split(",") for entry in prompt[:-1].partition("#")[2].split("-")]
        reach = distances(graph, start)
        tree = (
            len(graph) == len(entries)  # no node listed twice
            and all(v not in graph[v] and all(v in graph.get(u, ()) for u in graph[v]) for v in graph)  # undirected
            and sum(map(len, entries)) == 2 * (len(graph) - 1)  # as many edges as a tree has, none listed twice
            and set(reach) == set(graph)  # connected (and S a node)
            and end in graph
            and end != start
        )
        if not tree:
            return f"not a {self.name} prompt ({self.prompt_rule}): S and E must be distinct nodes of one tree"
        hops = reach[end]
        difficulty = len(graph) if self.variant == "nodes" else hops
        if self.shape(difficulty) != (len(graph), hops):
            nodes, want = self.shape(difficulty)
            return (
                f"a maze of {len(graph)} nodes with E {hops} hops from S: data.maze_difficulty={self.variant} "
                f"writes mazes of {nodes} nodes with E {want} hops from S there"
            )
        return None

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        nodes, hops = self.shape(difficulty)
        return [self.one_maze(nodes, hops, rng) for _ in range(count)]

    def one_maze(self, nodes: int, hops: int, rng: np.random.Generator) -> Example:
        neighbours = random_tree(nodes, hops, rng)
        label = (rng.permutation(MAX_LABEL)[:nodes] + 1).tolist()
        entries = []
        for v in rng.permutation(nodes).tolist():
            adjacent = ",".join(str(label[u]) for u in rng.permutation(neighbours[v]).tolist())
            entries.append(f"{label[v]}:{adjacent}")
        prompt = f"{label[0]}>{label[hops]}#" + "-".join(entries) + "="
        path = ">".join(str(label[v]) for v in range(hops + 1))
        return Example(prompt, search_trace(prompt) if self.params.maze_answer == "trace" else path)

    def check(self, prompt: str, label: str) -> bool:
        """The path is one (a trace's records are not judged: `consistent` checks them against its path)."""
        start, end, graph = parse_prompt(prompt)
        path = self.path_of(label).split(">")
        return (
            path[0] == start
            and path[-1] == end
            and len(set(path)) == len(path)
            and all(node in graph for node in path)
            and all(b in graph[a] for a, b in itertools.pairwise(path))
        )

    def path_of(self, label: str) -> str:
        return label.rpartition("#")[2] if self.params.maze_answer == "trace" else label

    def vote_key(self, label: str) -> str:
        return self.path_of(label)

    def consistent(self, label: str) -> bool:
        """A trace's records are a search from the path's last node, and the path follows them: each node the one
        the one before it was reached from. No maze is read."""
        if self.params.maze_answer != "trace":
            return True
        parent = trace_parents(label)
        path = self.path_of(label).split(">")
        # the root is the one record that is its own source (a record "w:w" is refused by trace_parents)
        return (
            parent is not None
            and parent.get(path[-1]) == path[-1]
            and all(parent.get(a) == b for a, b in itertools.pairwise(path))
        )

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        nodes, hops = self.shape(difficulty)
        if len(self.path_of(label).split(">")) != hops + 1:
            return False
        # a trace records every node: the root, then the nodes - 1 others
        return self.params.maze_answer != "trace" or label.partition("#")[0].count(",") == nodes - 1

    def answer_tokens(self, difficulty: Difficulty) -> int:
        nodes, hops = self.shape(difficulty)
        path = 2 * hops + 1
        return path if self.params.maze_answer != "trace" else 1 + 4 * (nodes - 1) + 1 + path

    def prompt_tokens(self, difficulty: Difficulty) -> int:
        # "S>E#", then per node "v:" and 2*degree - 1 neighbour tokens, nodes - 1 "-", and "=":
        # 4 + (2 * nodes + 2 * 2 * (nodes - 1) - nodes) + (nodes - 1) + 1 = 6 * nodes.
        return 6 * self.shape(difficulty)[0]

    def rewrite(self, prompt: str, index: int, rng: np.random.Generator) -> Presentation:
        """The same maze with its node labels renamed by a random permutation of 1-99; a label's names renamed back."""
        new = [str(label) for label in rng.permutation(MAX_LABEL) + 1]
        names = {str(label): new[label - 1] for label in range(1, MAX_LABEL + 1)}
        back = {name: old for old, name in names.items()}
        return Presentation(renamed(prompt, names), lambda label: renamed(label, back))
