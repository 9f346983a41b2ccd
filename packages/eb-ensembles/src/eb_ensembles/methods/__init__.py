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
from eb_ensembles.methods.map import MAPMethod

__all__ = [
    "METHODS",
    "EnsembleMethod",
    "MAPMethod",
    "MethodConfig",
    "UncertaintyMethod",
    "build_method",
    "method_config_dict",
    "network_factory",
    "register_method",
]
