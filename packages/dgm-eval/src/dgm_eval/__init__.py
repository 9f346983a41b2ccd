"""dgm-eval: the metrics and encoders of Stein et al., "Exposing flaws of generative model evaluation metrics and
their unfair treatment of diffusion models" (NeurIPS 2023), correct and fast.

Public API:
    load_encoder, list_encoders, extract_features: encoders and feature extraction (``dgm_eval.encoders``).
    compute_metrics: every metric of one generated set from features (``dgm_eval.api``).
    ImageSource: images from folders, ADM ``.npz`` files or arrays (``dgm_eval.inputs``).
    metrics: one function per metric (``dgm_eval.metrics``).
"""

from dgm_eval import metrics
from dgm_eval._version import __version__
from dgm_eval.api import DEFAULT_METRICS, METRIC_NAMES, compute_metrics
from dgm_eval.encoders import list_encoders, load_encoder
from dgm_eval.extraction import extract_features
from dgm_eval.inputs import ImageSource

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_NAMES",
    "ImageSource",
    "__version__",
    "compute_metrics",
    "extract_features",
    "list_encoders",
    "load_encoder",
    "metrics",
]
