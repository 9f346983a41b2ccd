"""Uncertainty methods behind one interface (:mod:`.base`), one module each, registered in :data:`METHODS`."""

from eb_ensembles.methods.base import (
    METHODS,
    MethodConfig,
    UncertaintyMethod,
    build_method,
    method_config_dict,
    network_factory,
    register_method,
)
from eb_ensembles.methods.ensemble import EnsembleMethod
from eb_ensembles.methods.hmc import HMCMethod
from eb_ensembles.methods.laplace import LaplaceMethod
from eb_ensembles.methods.map import MAPMethod
from eb_ensembles.methods.mc_dropout import MCDropoutMethod
from eb_ensembles.methods.swag import SWAGMethod
from eb_ensembles.methods.vi import VIMethod

__all__ = [
    "METHODS",
    "EnsembleMethod",
    "HMCMethod",
    "LaplaceMethod",
    "MAPMethod",
    "MCDropoutMethod",
    "MethodConfig",
    "SWAGMethod",
    "UncertaintyMethod",
    "VIMethod",
    "build_method",
    "method_config_dict",
    "network_factory",
    "register_method",
]
