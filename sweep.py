"""Sweeps of self-improvement pipelines as job graphs on SLURM, local processes or in this process.

    python sweep.py data=copy,reverse si.rounds=2,4 --cluster slurm    # submit, print the job ids, return
    python sweep.py ... --cluster local | debug                        # run here (blocks until done)
    python sweep.py ... --dry-run                                      # print the job graph only
    python sweep.py --dir <sweep dir>                                  # resume: resubmit what is not done
    python sweep.py status <sweep dir>                                 # a table per pipeline

Overrides are run.py's (Hydra sweep syntax allowed), plus `hydra.launcher.*` for the jobs' resources
(conf/hydra/launcher/<cluster>.yaml). The jobs call the same stage functions as run.py.
"""

from __future__ import annotations

import argparse
import sys

from selfimprove.cluster.launch import Request, launch
from selfimprove.cluster.scheduler import CLUSTERS
from selfimprove.cluster.status import status
from selfimprove.errors import ArgumentParser, SelfImproveError, refuse


def main(argv: list[str]) -> int:
    if argv[:1] == ["status"]:
        parser = ArgumentParser(prog="python sweep.py status", description="A table per pipeline of a sweep directory.")
        parser.add_argument("dir", help="the sweep directory")
        report = status(parser.parse_args(argv[1:]).dir)
        print(report.text)
        return 0
    parser = ArgumentParser(
        prog="python sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides; sweep syntax (a=1,2) makes a grid")
    parser.add_argument("--cluster", help=f"{' | '.join(CLUSTERS)} (default: the sweep's last, else slurm)")
    parser.add_argument("--dir", help="the sweep directory (default: outputs/sweeps/<date>/<time>)")
    parser.add_argument("--wait", action="store_true", help="slurm: block until every job has ended")
    parser.add_argument("--dry-run", action="store_true", help="print the job graph; submit nothing")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options
    if args.cluster is not None and args.cluster not in CLUSTERS:
        parser.error(f"unknown cluster {args.cluster!r}: choose one of {', '.join(CLUSTERS)}")
    request = Request(args.overrides, args.cluster, args.dir, args.wait, args.dry_run)
    return launch(request)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SelfImproveError as e:
        refuse(str(e))
