"""selfimprove: small transformers that label harder instances for themselves, round after round.

`selfimprove.load(run_dir, voter=0, round=None)` gives a run's trained model, with `answer(prompts)`.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "load":  # imported on first use: `import selfimprove` stays light
        from selfimprove.results.load import load

        return load
    raise AttributeError(f"module 'selfimprove' has no attribute {name!r}")
