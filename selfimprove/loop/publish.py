"""The summary published after an evaluation or a stop: summary.json, the plots, the metrics sinks, and the
round table on the console (and the drift warning, when the run is drifting)."""

from __future__ import annotations

from typing import Any

from selfimprove.loop.context import Context
from selfimprove.loop.runstate import global_step
from selfimprove.results import report
from selfimprove.store import atomic_write_json


def publish(ctx: Context, stopped: str | None = None) -> dict[str, Any]:
    summary = report.summarize(ctx, stopped)
    atomic_write_json(ctx.run.summary, summary)
    report.plot(summary, ctx.run.plots)
    if summary["rounds"]:
        ctx.metrics.publish(summary, global_step(ctx.training, summary["rounds"][-1]["round"]), ctx.run.plots)
    print("\n" + report.round_table(summary), flush=True)
    if summary["drift"]:
        print(summary["drift"], flush=True)
    return summary
