"""``mimicflow recipe list`` and ``mimicflow recipe apply``: the papers' configurations."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mimicflow.cli._app import ParamsOption, app, console, fail
from mimicflow.config import DEFAULT_PARAMS_FILE
from mimicflow.recipes import (
    DEFAULT_RECIPES_DIR,
    RecipeError,
    apply_overlay,
    load_recipes,
    recipe_overlay,
)

recipe_app = typer.Typer(
    no_args_is_help=True, help="Each published system's configuration as a cited params overlay."
)
app.add_typer(recipe_app, name="recipe")
RecipesOption = Annotated[
    Path, typer.Option("--recipes", help="folder of recipe files (<name>.yaml)", show_default=True)
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


@recipe_app.command("apply")
def recipe_apply(
    name: Annotated[str, typer.Argument(help="a recipe's name (`mimicflow recipe list`)")],
    demo: Annotated[
        bool, typer.Option("--demo", help="the flavour with the embedded encoders")
    ] = False,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
    recipes: RecipesOption = DEFAULT_RECIPES_DIR,
) -> None:
    """Write a recipe's overlay into the params file (comments and key order kept), so that
    `dvc repro` or `dvc exp run` runs it; print the keys it changed."""
    found = _recipes(recipes)
    if name not in found:
        raise fail(f"no recipe {name!r} in {recipes} (there are: {', '.join(found) or 'none'})")
    try:
        changed = apply_overlay(params, recipe_overlay(found[name], demo))
    except RecipeError as exc:
        raise fail(str(exc)) from exc
    flavour = f"{name} (demo)" if demo else name
    if not changed:
        console.print(f"{params} already has recipe {flavour}: nothing changed")
        return
    console.print(f"recipe {flavour} written to {params}: {len(changed)} values changed")
    for key, old, new in changed:
        console.print(f"  {key}: {old} → {new}", markup=False, highlight=False)
