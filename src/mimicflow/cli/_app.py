"""The Typer apps and what every command shares: the console, the ``--params`` option, the
one-line failure."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="mimicflow: Emotional Mimicry Intensity estimation, from raw clips to six intensities.",
)
console = Console()

ParamsOption = Annotated[
    Path, typer.Option("--params", help="params.yaml to read", show_default=True)
]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """mimicflow: Emotional Mimicry Intensity estimation, from raw clips to six intensities."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.basicConfig(
        level=logging.WARNING,  # libraries (GX, DVC) stay quiet unless something is wrong
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("mimicflow").setLevel(logging.DEBUG if verbose else logging.INFO)


def run_stage(run, *args):
    """Run a stage function; a missing upstream output or model becomes one clear message."""
    from mimicflow.devices import DeviceUnavailable
    from mimicflow.models.catalogue import CatalogueError
    from mimicflow.paths import MissingStageInput
    from mimicflow.perception.encoders import ModelUnavailable

    try:
        return run(*args)
    except (MissingStageInput, CatalogueError, DeviceUnavailable, ModelUnavailable) as exc:
        raise fail(str(exc)) from exc


def read_params(path: Path):
    """``load_params``; a params file that does not validate (a typo, a value out of range) is
    one clear message naming each wrong key, not a traceback."""
    from pydantic import ValidationError

    from mimicflow.config import load_params

    try:
        return load_params(path)
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise fail(f"{path} is not valid: {wrong}") from exc


def fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code=2)


models_app = typer.Typer(no_args_is_help=True, help="The pretrained-model catalogue.")
app.add_typer(models_app, name="models")
stage_app = typer.Typer(no_args_is_help=True, help="Run one pipeline stage (what dvc.yaml calls).")
app.add_typer(stage_app, name="stage")
