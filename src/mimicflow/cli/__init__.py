"""``mimicflow <command>``: the one command-line entry point (``python -m mimicflow.cli`` too)."""

from mimicflow.cli import commands, flows, recipes  # noqa: F401  (each registers its commands on the app)
from mimicflow.cli._app import app

__all__ = ["app"]
