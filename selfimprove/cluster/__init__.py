"""Sweeps as submitit job graphs: grid, plan, jobs, launch, the sweep directory.

The only place that knows submitit and SLURM.
"""
