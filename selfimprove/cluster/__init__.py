"""Sweeps as job graphs: grid (the points), plan (what is left of each point's round graph), jobs (a stage as a
job), launch (submit or run them), sweepdir (the record, sweep.json), sweeplock (one launcher at a time),
status (the report) and scheduler, the only module that knows submitit and SLURM.
"""
