"""bnpo: offline option (skill) discovery with Bayesian nonparametrics (Villecroze et al., ICML 2022).

Importing the package registers the gymnasium environments ``bnpo/Room-v0``, ``bnpo/Line-v0`` and
``bnpo/Landmarks-v0``.
"""

from bnpo import envs
from bnpo.data import Dataset, DatasetError, collect, load_dataset
from bnpo.envs import make_expert, register_envs
from bnpo.fit import FitConfig, FitResult, evaluate, fit, load_model, save_model
from bnpo.hmm import forward_log_likelihood, viterbi
from bnpo.metrics import boundary_f1, hungarian_accuracy, option_usage, room_score
from bnpo.model import OptionModel, OptionModelConfig
from bnpo.prior import StickBreakingPrior, stick_breaking

__version__ = "0.1.0"

register_envs()

__all__ = [
    "Dataset",
    "DatasetError",
    "FitConfig",
    "FitResult",
    "OptionModel",
    "OptionModelConfig",
    "StickBreakingPrior",
    "__version__",
    "boundary_f1",
    "collect",
    "envs",
    "evaluate",
    "fit",
    "forward_log_likelihood",
    "hungarian_accuracy",
    "load_dataset",
    "load_model",
    "make_expert",
    "option_usage",
    "register_envs",
    "room_score",
    "save_model",
    "stick_breaking",
    "viterbi",
]
