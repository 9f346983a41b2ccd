"""The metrics of Stein et al. (2023), one module each, as pure functions of ``(N, D)`` features.

Every function takes numpy arrays or torch tensors (any float dtype; computed in float64 on the input's device or
``device=``) and raises :class:`FeatureError` for unusable input.
"""

from dgm_eval.metrics.authpct import authpct
from dgm_eval.metrics.checks import FeatureError
from dgm_eval.metrics.ct import ct, ct_modified, ct_test
from dgm_eval.metrics.fd import (
    GaussianStats,
    StatsAccumulator,
    feature_statistics,
    frechet_distance,
    frechet_distance_eff,
)
from dgm_eval.metrics.fd_infinity import fd_infinity, fit_fd_infinity
from dgm_eval.metrics.fls import fls, fls_overfit
from dgm_eval.metrics.inception_score import inception_score
from dgm_eval.metrics.kd import kernel_distance
from dgm_eval.metrics.prdc import prdc
from dgm_eval.metrics.realism import realism
from dgm_eval.metrics.sw_approx import sw_approx
from dgm_eval.metrics.vendi import vendi, vendi_per_class

__all__ = [
    "FeatureError",
    "GaussianStats",
    "StatsAccumulator",
    "authpct",
    "ct",
    "ct_modified",
    "ct_test",
    "fd_infinity",
    "feature_statistics",
    "fit_fd_infinity",
    "fls",
    "fls_overfit",
    "frechet_distance",
    "frechet_distance_eff",
    "inception_score",
    "kernel_distance",
    "prdc",
    "realism",
    "sw_approx",
    "vendi",
    "vendi_per_class",
]
