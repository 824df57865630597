"""The code a DVC stage runs: every module its entry module imports (at any depth, lazily too),
with the package ``__init__`` files that run on the way; ``__init__`` files that hold only a
docstring are left out. A plug-in package (its ``__init__`` imports every module in it, by
``pkgutil.iter_modules``) brings all its modules. ``dvc.yaml`` lists exactly these files as the
stage's code deps (a plug-in package as its folder)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[2] / "src"


def _file(module: str) -> Path:
    path = SRC.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _only_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _is_plugin_package(module: str) -> bool:
    path = _file(module)
    return path.name == "__init__.py" and "pkgutil.iter_modules(__path__)" in path.read_text()


def code_deps(entry: str) -> list[str]:
    """The stage's code files, relative to the repository root, sorted."""
    graph = grimp.build_graph(
        "mimicflow", exclude_type_checking_imports=True, cache_dir=None
    )  # no cache: nothing written in the repository
    todo, seen = [entry], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # packages run first
        todo += graph.find_modules_directly_imported_by(module)
        if _is_plugin_package(module):
            todo += [m for m in graph.find_children(module)]
    files = [_file(m) for m in seen]
    return sorted(
        str(f.relative_to(SRC.parent))
        for f in files
        if not (f.name == "__init__.py" and _only_docstring(f))
    )
