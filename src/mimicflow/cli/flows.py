"""``mimicflow flows serve``, ``mimicflow outputs``, ``mimicflow monitor`` and ``mimicflow stage
reference``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from mimicflow.cli._app import ParamsOption, app, console, fail, read_params, run_stage, stage_app
from mimicflow.config import DEFAULT_PARAMS_FILE

flows_app = typer.Typer(no_args_is_help=True, help="Prefect deployments of the flows in flows/.")
app.add_typer(flows_app, name="flows")
FLOWS = {"pipeline": "flows/pipeline.py:pipeline", "monitor": "flows/monitor.py:monitor"}


@flows_app.command("serve")
def serve(
    project: Annotated[
        Path, typer.Option("--project", help="the DVC project the flows run in")
    ] = Path("."),
) -> None:
    """Register the pipeline (nightly) and monitoring (hourly) deployments with their cron
    schedules from the project's params.yaml on the Prefect server at PREFECT_API_URL, and run
    their flow runs as they come due (until stopped). Each deployment runs one flow run at a
    time: a run due while another runs is cancelled. Run from the repository root."""
    from prefect import serve as prefect_serve
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise fail(
            "PREFECT_API_URL is not set: start a server (`prefect server start --host "
            "127.0.0.1`) and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    missing = [e.split(":")[0] for e in FLOWS.values() if not Path(e.split(":")[0]).is_file()]
    if missing:
        raise fail(
            f"{', '.join(missing)} not found: run `mimicflow flows serve` from the repository root"
        )
    root = project.resolve()
    settings = read_params(root / "params.yaml").flows
    schedules = {
        "pipeline": ("nightly", settings.pipeline_cron),
        "monitor": ("hourly", settings.monitor_cron),
    }
    deployments = []
    for name, entrypoint in FLOWS.items():
        deployment, cron = schedules[name]
        deployments.append(
            load_flow_from_entrypoint(entrypoint).to_deployment(
                name=deployment,
                schedule=Cron(cron, timezone=settings.timezone),
                parameters={"project": str(root)},
                concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="CANCEL_NEW"),
            )
        )
        console.print(f"{name}: {deployment} at '{cron}' ({settings.timezone}), project {root}")
    prefect_serve(*deployments)


@app.command()
def outputs(
    versioned: Annotated[
        bool, typer.Option("--versioned", help="only the metrics and plots files git keeps")
    ] = False,
    project: Annotated[Path, typer.Option("--project", help="the DVC project")] = Path("."),
) -> None:
    """Print every output path of the project's DVC pipelines, one a line (what `make clean`
    removes; with --versioned, what `make baseline` commits beside dvc.lock)."""
    from mimicflow.orchestration import dvc_outputs

    for path in dvc_outputs(project, versioned=True if versioned else None):
        print(path)


@app.command()
def monitor(
    incoming: Annotated[
        Path | None, typer.Option("--incoming", help="new clips (default: monitor.incoming)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the JSON verdict alone on stdout")
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Check new clips for drift against the training data (report in reports/drift/<run>/).

    Validates, perceives, encodes and predicts the clips, compares them with the reference
    (Evidently) and archives them."""
    from mimicflow.monitoring.inbox import MonitorBusy
    from mimicflow.monitoring.monitor import run_monitor
    from mimicflow.monitoring.profile import ReferenceProfileError

    if as_json:  # stdout carries the JSON only: logs (ours and the libraries') go to stderr
        for handler in logging.getLogger().handlers:
            if isinstance(handler, RichHandler):
                handler.console = Console(stderr=True)
    try:
        summary = run_stage(run_monitor, read_params(params), incoming)
    except (ReferenceProfileError, MonitorBusy, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        print(json.dumps(summary))
    else:
        console.print_json(json.dumps(summary))


@stage_app.command("reference")
def stage_reference(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """The training data's profile that monitoring compares new clips with."""
    from mimicflow.monitoring.profile import build_reference

    console.print_json(json.dumps(run_stage(build_reference, read_params(params))))
