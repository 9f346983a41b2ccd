"""Experiments E1, E2 and E5 of the reference (E3, E4, E6 need the BNN baselines and come later)."""

from eb_ensembles.experiments.e1 import run_e1
from eb_ensembles.experiments.e2 import run_e2
from eb_ensembles.experiments.e5 import run_e5

EXPERIMENTS = {"E1": run_e1, "E2": run_e2, "E5": run_e5}

__all__ = ["EXPERIMENTS", "run_e1", "run_e2", "run_e5"]
