"""The README and docs name only commands, flags and files that exist: every ``mimicflow …``
command line in them resolves to a command of the CLI with the flags it names, every repository
path they name exists, and every relative link points at a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from mimicflow.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `mimicflow` as the command word (start of a line or code span, after a shell operator or prompt),
# not as an argument of another command (`prefect work-pool create mimicflow`).
COMMAND = re.compile(
    r"(?:^|(?<=`)|(?<=&& )|(?<=\| )|(?<=; )|(?<=\$ ))mimicflow((?: +[a-z][\w-]*| +--?[\w-]+)+)",
    re.M,
)
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:src/mimicflow|scripts|tests|bench|recipes|flows|docs)/[\w./-]*\w)(?![\w/{<*])"
)
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)  # fenced blocks and inline code
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _command_lines() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for code in CODE.findall(doc.read_text()):
            for match in COMMAND.finditer(code):
                found.append((doc.name, "mimicflow" + match.group(1)))
    return found


def _resolve(line: str) -> list[str]:
    """What in ``line`` the CLI does not have (empty when all of it exists)."""
    command = typer.main.get_command(app)
    words = line.split()[1:]
    while words and hasattr(command, "commands") and not words[0].startswith("-"):
        if words[0] not in command.commands:
            return [f"no command {words[0]!r}"]
        command = command.commands[words.pop(0)]
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    return [f"no flag {w}" for w in words if w.startswith("-") and w.split("=")[0] not in options]


def test_the_docs_name_commands():
    assert len(_command_lines()) > 10  # the pattern finds the docs' command lines


@pytest.mark.parametrize("doc, line", sorted(set(_command_lines())))
def test_each_command_line_in_the_docs_exists(doc, line):
    assert not _resolve(line), f"{doc}: `{line}`: {_resolve(line)}"


def test_each_repository_path_and_link_in_the_docs_exists():
    missing = []
    for doc in DOCS:
        text = doc.read_text()
        for path in REPO_PATH.findall(text):
            if not (ROOT / path).exists():
                missing.append(f"{doc.name}: {path}")
        for target in LINK.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                missing.append(f"{doc.name}: link {target}")
    assert not missing, "\n".join(missing)
