"""The type of a config key with a fixed set of values."""

from __future__ import annotations

from enum import StrEnum


class Choice(StrEnum):
    """One of a key's values. OmegaConf reads a member by its name, so each member's name is its value; it equals, is
    written (run.json, .hydra/, checkpoints) and is shown (`{value!r}` in a message) as that plain string."""

    def __repr__(self) -> str:
        return str.__repr__(self.value)
