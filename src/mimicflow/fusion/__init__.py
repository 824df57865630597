"""Fusion systems, their losses and metrics. Every module of this package is imported here, so
each system's module registers its spec (:mod:`mimicflow.fusion.systems`): a new system is one
new module."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
