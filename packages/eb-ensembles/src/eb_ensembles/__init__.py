"""eb-ensembles: deep ensembles as empirical Bayes (Loaiza-Ganem, Villecroze and Wang, 2025).

Public API: ensembles (looped or vectorised over members, optionally sharded over processes), the point-mass
empirical-Bayes prior, uncertainty metrics, datasets without download, the methods (ensemble, MAP, MC dropout,
mean-field VI, Laplace, SWAG, HMC) behind one registry, evaluation, MCMC diagnostics, torch-uncertainty interop,
and experiments E1-E6.
"""

__version__ = "0.1.0"

from eb_ensembles.checks import InvalidInputError
from eb_ensembles.data import CORRUPTIONS, DATASETS, Dataset, corrupt, load_dataset, make_mnist1d, make_ood
from eb_ensembles.eb import EMResult, PointMassPrior, npmle_em
from eb_ensembles.ensemble import DeepEnsemble
from eb_ensembles.evaluation import evaluate_classification, evaluate_regression, ood_scores
from eb_ensembles.experiments import EXPERIMENTS, run_e1, run_e2, run_e3, run_e4, run_e5, run_e6, run_experiment
from eb_ensembles.interop import (
    from_torch_uncertainty_state_dict,
    to_torch_uncertainty_probs,
    to_torch_uncertainty_state_dict,
)
from eb_ensembles.mcmc_diagnostics import effective_sample_size, split_rhat
from eb_ensembles.methods import METHODS, MethodConfig, UncertaintyMethod, build_method, register_method
from eb_ensembles.models import MLP, gaussian_head, mlp_factory
from eb_ensembles.runs import RunConfig, evaluate_run, load_run, train_run
from eb_ensembles.training.config import TrainConfig
from eb_ensembles.training.members import MemberReport, init_member
from eb_ensembles.training.train import train_ensemble

__all__ = [
    "CORRUPTIONS",
    "DATASETS",
    "EXPERIMENTS",
    "METHODS",
    "MLP",
    "Dataset",
    "DeepEnsemble",
    "EMResult",
    "InvalidInputError",
    "MemberReport",
    "MethodConfig",
    "PointMassPrior",
    "RunConfig",
    "TrainConfig",
    "UncertaintyMethod",
    "__version__",
    "build_method",
    "corrupt",
    "evaluate_classification",
    "evaluate_regression",
    "effective_sample_size",
    "evaluate_run",
    "from_torch_uncertainty_state_dict",
    "gaussian_head",
    "init_member",
    "load_dataset",
    "load_run",
    "make_mnist1d",
    "make_ood",
    "mlp_factory",
    "npmle_em",
    "ood_scores",
    "register_method",
    "run_e1",
    "run_e2",
    "run_e3",
    "run_e4",
    "run_e5",
    "run_e6",
    "run_experiment",
    "split_rhat",
    "to_torch_uncertainty_probs",
    "to_torch_uncertainty_state_dict",
    "train_ensemble",
    "train_run",
]
