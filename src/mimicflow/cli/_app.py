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
err_console = Console(stderr=True)  # error lines: stderr, also when stdout carries JSON


def _params_file(ctx: typer.Context, value: Path) -> Path:
    """A ``--params`` file named on the command line must exist (only the default
    ``params.yaml`` may be absent: the defaults)."""
    source = ctx.get_parameter_source("params")
    if source is not None and source.name != "DEFAULT" and not Path(value).is_file():
        raise fail(f"{value}: no such params file")
    return value


ParamsOption = Annotated[
    Path,
    typer.Option("--params", help="params.yaml to read", show_default=True, callback=_params_file),
]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """mimicflow: Emotional Mimicry Intensity estimation, from raw clips to six intensities."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.basicConfig(
        level=logging.WARNING,  # libraries (GX, DVC) stay quiet unless something is wrong
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],  # stdout: answers only
    )
    logging.getLogger("mimicflow").setLevel(logging.DEBUG if verbose else logging.INFO)


def run_stage(run, *args):
    """Run a stage function; a missing upstream output or model, or params the stage cannot
    honour, becomes one clear message."""
    from mimicflow.devices import DeviceUnavailable
    from mimicflow.models.catalogue import CatalogueError
    from mimicflow.paths import MissingStageInput, NoCommitYet
    from mimicflow.perception.encoders import ModelUnavailable
    from mimicflow.training.heads import HeadMismatch

    expected = (
        MissingStageInput,
        CatalogueError,
        DeviceUnavailable,
        ModelUnavailable,
        HeadMismatch,
        NoCommitYet,
    )
    try:
        return run(*args)
    except expected as exc:
        raise fail(str(exc)) from exc


def read_params(path: Path):
    """``load_params``, each failure one clear message instead of a traceback: YAML that does
    not parse (file, line and column), a key that does not validate (a typo, a
    value out of range)."""
    import yaml
    from pydantic import ValidationError

    from mimicflow.config import load_params

    try:
        return load_params(path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise fail(f"{where}: not valid YAML: {exc.problem or exc.context}") from exc
    except (yaml.YAMLError, OSError) as exc:
        raise fail(f"{path}: cannot read: {exc}") from exc
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise fail(f"{path} is not valid: {wrong}") from exc


def fail(message: str) -> typer.Exit:
    """One error line on stderr; exit code 2."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code=2)


models_app = typer.Typer(no_args_is_help=True, help="The pretrained-model catalogue.")
app.add_typer(models_app, name="models")
stage_app = typer.Typer(no_args_is_help=True, help="Run one pipeline stage (what dvc.yaml calls).")
app.add_typer(stage_app, name="stage")
