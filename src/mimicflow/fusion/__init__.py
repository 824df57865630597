"""Fusion systems, their losses and metrics. Systems in modules of their own register with
:func:`mimicflow.fusion.models.build_model` when the package is imported (here)."""

from mimicflow.fusion import abaw8, taemi  # noqa: F401
