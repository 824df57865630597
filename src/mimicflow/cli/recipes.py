"""``mimicflow recipe list``, ``apply``, ``check`` and ``dry-run``: the papers' configurations,
the models they need, and each paper flavour end to end on miniature models."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from mimicflow.cli._app import ParamsOption, app, console, fail
from mimicflow.config import DEFAULT_PARAMS_FILE, Params
from mimicflow.recipes import (
    DEFAULT_RECIPES_DIR,
    Recipe,
    RecipeError,
    apply_overlay,
    load_recipes,
    recipe_overlay,
    validate_overlay,
)
from mimicflow.weights import model_needs, with_mirror

recipe_app = typer.Typer(
    no_args_is_help=True, help="Each published system's configuration as a cited params overlay."
)
app.add_typer(recipe_app, name="recipe")
RecipesOption = Annotated[
    Path, typer.Option("--recipes", help="folder of recipe files (<name>.yaml)", show_default=True)
]
WeightsOption = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        help="a folder of downloaded hub weights, DIR/org/name (default: models.weights)",
    ),
]


def _recipes(folder: Path):
    try:
        return load_recipes(folder)
    except RecipeError as exc:
        raise fail(str(exc)) from exc


@recipe_app.command("list")
def recipe_list(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list on stdout")] = False,
    recipes: RecipesOption = DEFAULT_RECIPES_DIR,
) -> None:
    """The recipes: paper, the mean Pearson it reports on valid and test, and its source."""
    found = _recipes(recipes)
    if as_json:
        rows = [
            {
                "name": r.name,
                "title": r.title,
                "paper": r.paper,
                "reported": r.reported.model_dump(),
                "source": r.source,
                "sources": r.sources,
            }
            for r in found.values()
        ]
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    view = Table(title=f"recipes in {recipes} (`mimicflow recipe apply NAME [--demo]`)")
    for column in ("name", "paper", "valid ρ", "test ρ", "source"):
        view.add_column(column, justify="right" if "ρ" in column else "left")
    for r in found.values():
        valid = (
            "—" if r.reported.valid is None else f"{r.reported.valid:.4g}"
        )  # test only: abstracts
        view.add_row(r.name, r.paper, valid, f"{r.reported.test:.4g}", r.source)
    console.print(view)


def _recipe(name: str, folder: Path) -> Recipe:
    found = _recipes(folder)
    if name not in found:
        raise fail(f"no recipe {name!r} in {folder} (there are: {', '.join(found) or 'none'})")
    return found[name]


def _base(params: Path) -> dict:
    """The params file's mapping (the defaults where there is none)."""
    if params.is_file():
        return yaml.safe_load(params.read_text()) or {}
    return Params().model_dump(mode="json", by_alias=True)


def _mirror(weights: Path | None, merged: Params) -> Path | None:
    """``--weights``, else the params' ``models.weights``; a folder that is not there fails."""
    weights = weights if weights is not None else merged.models.weights
    if weights is not None and not weights.is_dir():
        raise fail(f"--weights {weights}: no such folder")
    return weights


def _merged(base: dict, overlay: dict) -> Params:
    try:
        return validate_overlay(base, overlay)
    except RecipeError as exc:
        raise fail(str(exc)) from exc


@recipe_app.command("apply")
def recipe_apply(
    name: Annotated[str, typer.Argument(help="a recipe's name (`mimicflow recipe list`)")],
    demo: Annotated[
        bool, typer.Option("--demo", help="the flavour with the embedded encoders")
    ] = False,
    weights: WeightsOption = None,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
    recipes: RecipesOption = DEFAULT_RECIPES_DIR,
) -> None:
    """Write a recipe's overlay into the params file (comments and key order kept), so that
    `dvc repro` or `dvc exp run` runs it; print the keys it changed. With a weights mirror,
    each hub id whose folder DIR/org/name exists is written as that folder."""
    overlay = recipe_overlay(_recipe(name, recipes), demo)
    if params.is_file():
        merged = _merged(_base(params), overlay)
        mirror = _mirror(weights, merged)
        if mirror is not None:
            overlay = with_mirror(overlay, mirror, merged.adapt.out)
            overlay.setdefault("models", {})["weights"] = str(mirror)
    try:
        changed = apply_overlay(params, overlay)
    except RecipeError as exc:
        raise fail(str(exc)) from exc
    flavour = f"{name} (demo)" if demo else name
    if not changed:
        console.print(f"{params} already has recipe {flavour}: nothing changed")
        return
    console.print(f"recipe {flavour} written to {params}: {len(changed)} values changed")
    for key, old, new in changed:
        console.print(f"  {key}: {old} → {new}", markup=False, highlight=False)


@recipe_app.command("check")
def recipe_check(
    name: Annotated[str, typer.Argument(help="a recipe's name (`mimicflow recipe list`)")],
    demo: Annotated[
        bool, typer.Option("--demo", help="the flavour with the embedded encoders")
    ] = False,
    weights: WeightsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list on stdout")] = False,
    estimate: Annotated[
        bool,
        typer.Option(
            "--estimate",
            help="estimates instead: each real encoder's parameters and GPU memory, and the "
            "hours for the whole dataset on one H100 (docs/recipes.md has the formula)",
        ),
    ] = False,
    dataset: Annotated[
        tuple[int, float],
        typer.Option("--dataset", help="with --estimate: the dataset's clips and hours"),
    ] = (15_000, 30.0),
    costs: Annotated[
        Path | None,
        typer.Option(
            "--costs", help="with --estimate: a `recipe dry-run --json` output (train on CPU)"
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
    recipes: RecipesOption = DEFAULT_RECIPES_DIR,
) -> None:
    """Every model the recipe needs (stage, hub id, where it will load from, parameters from
    its config) before any stage runs; each one that is not here is one error line, and the
    exit code is 1. With --estimate, estimates of what it needs on one H100 instead."""
    from mimicflow.models.catalogue import catalogue

    overlay = recipe_overlay(_recipe(name, recipes), demo)
    merged = _merged(_base(params), overlay)
    mirror = _mirror(weights, merged)
    if estimate:
        _estimate(merged, mirror, dataset, costs, as_json)
        return
    known = set(catalogue(merged.models.entries))
    needs = model_needs(overlay, mirror, known, merged.adapt.out)
    if as_json:
        sys.stdout.write(json.dumps([n.as_dict() for n in needs], indent=2) + "\n")
    else:
        _needs_table(f"models recipe {name}{' (demo)' if demo else ''} needs", needs)
    missing = [n for n in needs if n.source == "missing"]
    for need in missing:
        named = need.model if need.hub_id in (None, need.model) else f"{need.model} ({need.hub_id})"
        where = f"not in {mirror / need.hub_id}, " if mirror and need.hub_id else ""
        sys.stderr.write(
            f"error: {need.key}: {named} is missing ({where}not in the Hugging Face cache)\n"
        )
    if missing:
        raise typer.Exit(code=1)


def _estimate(merged: Params, mirror: Path | None, dataset, costs: Path | None, as_json: bool):
    from mimicflow.stages.estimate import estimate

    clips, hours = dataset
    if clips < 1 or hours <= 0:
        raise fail(f"--dataset {clips} {hours}: clips and hours must be positive")
    if costs is not None and not costs.is_file():
        raise fail(f"--costs {costs}: no such file")
    try:
        found = estimate(merged, mirror, clips, hours, costs).as_dict()
    except (LookupError, KeyError, ValueError) as exc:
        raise fail(f"--estimate: {exc}") from exc
    if as_json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    view = Table(title=f"ESTIMATES, not measurements: {clips:,} clips, {hours:g} h, one H100")
    for column in ("key", "hub id", "config", "parameters", "fp16 GB", "fp32 GB", "train GB"):
        view.add_column(
            column, justify="left" if column in ("key", "hub id", "config") else "right"
        )
        view.columns[-1].overflow = "fold"
    for e in found["encoders"]:
        train = "—" if e["gpu_gb_train"] is None else f"{e['gpu_gb_train']:g}"
        cells = (
            f"{e['parameters'] / 1e6:,.1f} M",
            f"{e['gpu_gb_fp16']:g}",
            f"{e['gpu_gb_fp32']:g}",
        )
        view.add_row(e["key"], e["hub_id"], e["config_from"], *cells, train)
    console.print(view)
    lines = [("asr", found["hours_asr"])]
    lines += [(f"adapt {n}", h) for n, h in found["hours_adapt"].items()]
    lines += [(f"features {n}", h) for n, h in found["hours_features"].items()]
    lines += [(f"train ({found['head_parameters'] / 1e6:.1f} M head)", found["hours_train_h100"])]
    for what, h in [*lines, ("total", found["hours_total_h100"])]:
        console.print(f"  estimate, {what}: {h:.3f} h on one H100", markup=False)
    if found["hours_train_cpu"] is not None:
        console.print(f"  estimate, train on 2 CPU cores: {found['hours_train_cpu']:.1f} h")


def _needs_table(title: str, needs) -> None:
    view = Table(title=title)
    for column in ("stage", "key", "hub id / model", "loads from", "parameters"):
        view.add_column(column, justify="right" if column == "parameters" else "left")
        view.columns[-1].overflow = "fold"  # ids and paths whole, never cut
    for n in needs:
        count = "—" if n.parameters is None else f"{n.parameters / 1e6:,.1f} M"
        where = n.source if n.path is None else f"{n.source}: {n.path}"
        view.add_row(n.stage, n.key, n.hub_id or n.model, where, count)
    console.print(view)


@recipe_app.command("dry-run")
def recipe_dry_run(
    name: Annotated[str, typer.Argument(help="a recipe's name (`mimicflow recipe list`)")],
    clips: Annotated[int, typer.Option("--clips", min=4, help="demo clips to run on")] = 12,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="a dataset to take the clips from (default: synthesised)"),
    ] = None,
    scratch: Annotated[
        Path | None,
        typer.Option("--scratch", help="the folder everything is written to (wiped first)"),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="keep the scratch folder")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    inside: Annotated[bool, typer.Option("--inside", hidden=True)] = False,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
    recipes: RecipesOption = DEFAULT_RECIPES_DIR,
) -> None:
    """The recipe's paper flavour end to end on miniature models of its architectures and a
    few demo clips: one row per stage (seconds, outputs, peak RSS); a failure names its
    stage and exits 1. It runs in a process whose temporary files and caches all lie in the
    scratch folder (removed after a pass unless --keep)."""
    import os
    import signal
    import subprocess
    import tempfile

    from mimicflow.stages.dryrun import scratch_env

    recipe = _recipe(name, recipes)
    if data is not None and not data.is_dir():
        raise fail(f"--data {data}: no such folder")
    scratch = (scratch or Path(tempfile.gettempdir()) / f"mimicflow-dry-run-{name}").resolve()
    if inside:  # the run's own process group: a stop ends it and everything it started
        signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
        _dry_run(recipe, params, scratch, clips, data and data.resolve(), as_json)
        return
    command = [sys.executable, "-m", "mimicflow.cli", "recipe", "dry-run", name, "--inside"]
    command += ["--clips", str(clips), "--scratch", str(scratch), "--params", str(params)]
    command += ["--recipes", str(recipes), *(["--data", str(data)] if data else [])]
    command += ["--json"] if as_json else []
    env = os.environ | scratch_env(scratch)
    child = subprocess.Popen(
        command, env=env, start_new_session=True, preexec_fn=_terminate_with_parent
    )

    def stop(signum, _frame):  # a stopped dry-run stops its run too
        child.terminate()
        raise SystemExit(128 + signum)  # out of child.wait(): it holds Popen's wait lock

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        code = child.wait()
    except SystemExit:
        child.wait()  # its process group is gone
        raise
    if code == 0 and not keep:
        shutil.rmtree(scratch, ignore_errors=True)
    raise typer.Exit(code=code)


def _terminate_with_parent() -> None:
    """In the dry-run's child: SIGTERM when its parent dies, even by SIGKILL (Linux's
    ``PR_SET_PDEATHSIG``; elsewhere only a catchable stop reaches the child)."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _dry_run(recipe, params: Path, scratch: Path, clips: int, data, as_json: bool) -> None:
    from mimicflow.cli._app import read_params
    from mimicflow.stages.dryrun import DryRun, DryRunFailed

    base = read_params(params) if params.is_file() else Params()
    run = DryRun(recipe, base, scratch, clips, data)

    def show(row) -> None:
        if not as_json:
            console.print(
                f"{row.stage:>9}  {row.seconds:7.1f} s  {row.peak_rss_mb:7.0f} MB  {row.outputs}",
                markup=False,
                highlight=False,
            )

    try:
        rows = run.run(show)
    except DryRunFailed as exc:
        if as_json:
            done = [r.as_dict() for r in run.rows]
            sys.stdout.write(json.dumps({"failed": exc.stage, "stages": done}, indent=2) + "\n")
        sys.stderr.write(f"error: {exc} (its files: {scratch})\n")
        raise typer.Exit(code=1) from exc
    if as_json:
        sys.stdout.write(json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    else:
        total = sum(r.seconds for r in rows)
        console.print(f"dry-run of {recipe.name} passed: {len(rows)} stages in {total:.0f} s")
