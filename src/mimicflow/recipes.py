"""Paper recipes: each published system's configuration as a cited ``params.yaml`` overlay.

A recipe (``recipes/<name>.yaml``) holds the paper's reference, its reported scores, the overlay
(``params``) with the source of every value (``sources``: a dotted key covers its subtree), and a
``demo`` flavour whose encoders are the embedded ones, with a note for every value it changes.
:func:`apply_overlay` writes an overlay into ``params.yaml`` in place, keeping its comments and
key order, so ``dvc repro`` / ``dvc exp run`` picks it up and ``git diff`` reads clearly.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from mimicflow.config import Params

DEFAULT_RECIPES_DIR = Path("recipes")
# Keys an overlay replaces whole (a recipe's adapted encoders, feature sets and segment counts
# are its own); every other mapping is merged key by key.
REPLACED = ("adapt.encoders", "features.sets", "train.frames")
ABSENT = "(absent)"  # a key missing on one side of a change


class RecipeError(ValueError):
    """A recipe that cannot be read, or an overlay that does not fit the params file."""


def leaves(tree: Mapping, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf (an empty mapping has none)."""
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from leaves(value, dotted + ".")
        else:
            yield dotted, value


def _covered(key: str, covers: Mapping[str, Any]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:n]) in covers for n in range(1, len(parts) + 1))


def _copy(value, old=None):
    return copy.deepcopy(value)


def merge(target: MutableMapping, overlay: Mapping, prefix: str = "", node=_copy) -> None:
    """Write ``overlay`` into ``target`` in place: :data:`REPLACED` keys and non-mappings are
    replaced (by ``node(new, old)``), other mappings merged key by key (keys keep their place)."""
    for key, value in overlay.items():
        dotted = f"{prefix}{key}"
        current = target.get(key)
        if (
            isinstance(value, Mapping)
            and isinstance(current, MutableMapping)
            and dotted not in REPLACED
        ):
            merge(current, value, dotted + ".", node)
        else:
            target[key] = node(value, current)


def validate_overlay(base: Mapping, overlay: Mapping) -> Params:
    """``base`` (a params mapping) with ``overlay`` merged in, as :class:`Params`."""
    merged = copy.deepcopy(dict(base))
    merge(merged, overlay)
    try:
        return Params.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "params"
        raise RecipeError(f"{where}: {first['msg']}") from exc


class Reported(BaseModel):
    """The paper's mean Pearson ρ (six emotions) on the official valid and test splits (valid:
    None where only the test score is public)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    valid: float | None = None
    test: float


class Demo(BaseModel):
    """The ``--demo`` flavour: the overlay with embedded encoders, and why each change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    params: dict[str, Any]
    changes: dict[str, str]


class Recipe(BaseModel):
    """One paper's configuration. Loading checks that every overlay leaf has a source, that
    every value the demo changes is explained, and that both overlays make valid params."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    title: str
    paper: str
    reported: Reported
    source: str
    params: dict[str, Any]
    sources: dict[str, str]
    demo: Demo

    @model_validator(mode="after")
    def _consistent(self):
        defaults = Params().model_dump(mode="json", by_alias=True)
        for flavour, overlay in (("params", self.params), ("demo.params", self.demo.params)):
            try:
                validate_overlay(defaults, overlay)
            except RecipeError as exc:
                raise ValueError(f"{flavour} is not valid params: {exc}") from None
        unsourced = [key for key, _ in leaves(self.params) if not _covered(key, self.sources)]
        if unsourced:
            raise ValueError(f"values without a source: {', '.join(unsourced)}")
        paper = dict(leaves(self.params))
        unexplained = [
            key
            for key, value in leaves(self.demo.params)
            if paper.get(key, ABSENT) != value and not _covered(key, self.demo.changes)
        ]
        if unexplained:
            raise ValueError(
                f"demo values changed without a note in demo.changes: {', '.join(unexplained)}"
            )
        return self


def load_recipes(folder: Path | str = DEFAULT_RECIPES_DIR) -> dict[str, Recipe]:
    """Every ``<name>.yaml`` in ``folder``, by name (a recipe's ``name`` is its file's stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecipeError(
            f"no recipes folder {folder}: run from the repository root or pass --recipes DIR"
        )
    recipes = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            recipe = Recipe.model_validate(yaml.safe_load(path.read_text()))
        except (yaml.YAMLError, ValidationError) as exc:
            raise RecipeError(f"{path}: {exc}") from exc
        if recipe.name != path.stem:
            raise RecipeError(f"{path}: name {recipe.name!r} differs from the file name")
        recipes[recipe.name] = recipe
    return recipes


def recipe_overlay(recipe: Recipe, demo: bool = False) -> dict[str, Any]:
    """The overlay to write: the paper's, or its ``--demo`` flavour."""
    return copy.deepcopy(recipe.demo.params if demo else recipe.params)


def _round_trip():
    from ruamel.yaml import YAML

    rt = YAML()  # round-trip: comments, key order and flow style survive a load and dump
    rt.preserve_quotes = True
    rt.width = 100
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    rt.representer.add_representer(float, _represent_float)
    return rt


def _represent_float(representer, value: float):
    """``1.0e-05``, not ``1e-05``: YAML 1.1 readers (PyYAML, so DVC) take the latter for a
    string."""
    text = repr(value)
    mantissa, exponent = text.split("e") if "e" in text else (text, "")
    if exponent and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _flow_text(lines: list[str], node) -> str:
    """The source text of a flow mapping, from its ``{`` to the matching ``}``."""
    text = "\n".join(lines[node.lc.line :])[node.lc.col :]
    depth = 0
    for end, char in enumerate(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return text[: end + 1]
    raise RecipeError(f"unbalanced flow mapping at line {node.lc.line + 1}")


def _prepare(node, overlay, lines: list[str], kept: dict[str, str]) -> None:
    """Ready the loaded file for the overlay. ruamel cannot keep the hand-made line breaks of
    a flow mapping written over several lines: one the overlay leaves alone is swapped for a
    placeholder (its text goes back verbatim after the dump, in ``kept``), one it edits becomes
    a block mapping (one key per line, so later diffs are one line each)."""
    from ruamel.yaml.comments import CommentedMap

    for key, value in list(node.items()):
        if not isinstance(value, CommentedMap):
            continue
        if not value:
            value.fa.set_flow_style()  # `{}`: keys merged into it stay inline
            continue
        sub = overlay.get(key) if isinstance(overlay, Mapping) else None
        if value.fa.flow_style() and len({value.lc.key(k)[0] for k in value}) > 1:
            if sub is None:
                kept[f"__kept_{len(kept)}__"] = _flow_text(lines, value)
                node[key] = list(kept)[-1]
                continue
            value.fa.set_block_style()
        _prepare(value, sub, lines, kept)


def _last_leaf(node):
    """The innermost mapping that holds ``node``'s last key (where ruamel keeps trailing
    comments and blank lines)."""
    from ruamel.yaml.comments import CommentedMap

    while node and isinstance(node[list(node)[-1]], CommentedMap) and node[list(node)[-1]]:
        node = node[list(node)[-1]]
    return node


def _node(value, old=None):
    """An overlay value as a ruamel node: a mapping keeps the style of the one it replaces
    (block when new), nested mappings inherit it, lists are flow style. A replaced mapping's
    trailing comments move to its replacement, so the layout after it is unchanged."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def convert(item, flow):
        if isinstance(item, Mapping):
            converted = CommentedMap((k, convert(v, flow)) for k, v in item.items())
            if flow:
                converted.fa.set_flow_style()
            return converted
        if isinstance(item, list):
            converted = CommentedSeq(convert(v, True) for v in item)
            converted.fa.set_flow_style()
            return converted
        return item

    flow = isinstance(old, CommentedMap) and bool(old.fa.flow_style())
    new = convert(value, flow)
    if isinstance(old, CommentedMap) and isinstance(new, CommentedMap) and old and new:
        tail, target = _last_leaf(old), _last_leaf(new)
        comment = tail.ca.items.get(list(tail)[-1])
        if comment is not None and comment[2] is not None:
            target.ca.items[list(target)[-1]] = [None, None, comment[2], None]
    return new


def apply_overlay(params_file: Path | str, overlay: Mapping) -> list[tuple[str, Any, Any]]:
    """Write ``overlay`` into ``params_file`` in place (comments and key order kept) and return
    the changed leaves as (dotted key, old, new). The result is validated as :class:`Params`
    first: if it is not valid, nothing is written and :class:`RecipeError` says why."""
    params_file = Path(params_file)
    if not params_file.is_file():
        raise RecipeError(
            f"{params_file} not found: run from the repository root or pass --params FILE"
        )
    text = params_file.read_text()
    before = yaml.safe_load(text) or {}
    try:
        validate_overlay(before, overlay)
    except RecipeError as exc:
        raise RecipeError(f"the overlay does not fit {params_file}: {exc}") from exc
    rt = _round_trip()
    doc, kept = rt.load(text), {}
    _prepare(doc, overlay, text.splitlines(), kept)
    merge(doc, overlay, node=_node)
    out = io.StringIO()
    rt.dump(doc, out)
    written = out.getvalue()
    for token, original in kept.items():
        written = written.replace(token, original)
    old, new = dict(leaves(before)), dict(leaves(yaml.safe_load(written)))
    changed = [
        (key, old.get(key, ABSENT), new.get(key, ABSENT))
        for key in {**new, **old}
        if old.get(key, ABSENT) != new.get(key, ABSENT)
    ]
    if changed:
        params_file.write_text(written)
    return changed
