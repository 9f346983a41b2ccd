"""CompILE and NP-CompILE, the paper's baselines (reference §2.3), behind ``bnpo fit --method compile``.

Modules: ``elbo`` (Gumbel-softmax samples, Poisson length prior, categorical KLs, soft segment masks), ``hsmm``
(exact semi-Markov log-likelihood of CompILE's generative model), ``model`` (:class:`CompILEModel`), ``fit``
(:func:`fit_compile`, checkpoints).
"""

from bnpo.compile.fit import fit_compile, load_any_model, load_compile_model, save_compile_model
from bnpo.compile.model import CompILEConfig, CompILEModel

__all__ = [
    "CompILEConfig",
    "CompILEModel",
    "fit_compile",
    "load_any_model",
    "load_compile_model",
    "save_compile_model",
]
