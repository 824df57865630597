"""Fetch the JavaScript and CSS the reports load, from their npm packages (``npm pack``), so the
reports render offline: run by scripts/setup.sh; idempotent.

- every file of :data:`mimicflow.data.expectations.CDN_FILES` (the Data Docs pages' CDN files)
  goes to :data:`~mimicflow.data.expectations.WEB_ASSETS` (``<venv>/share/mimicflow/web``);
- ``.dvc/offline_plots.html``, the project's ``dvc plots show`` template (``plots.html_template``
  in ``.dvc/config``), inlines vega, vega-lite and vega-embed from there.

``python scripts/web_assets.py [--force]``
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from mimicflow.data.expectations import CDN_FILES, CDN_FOLDERS, WEB_ASSETS

REPO = Path(__file__).resolve().parents[1]
PLOTS_TEMPLATE = REPO / ".dvc" / "offline_plots.html"
VEGA = [
    CDN_FILES[f"https://cdn.jsdelivr.net/npm/{name}"]
    for name in ("vega@5", "vega-lite@5", "vega-embed@6")
]
# dvc-render's page with the CDN <script> tags ({scripts}) replaced by the libraries inline.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{inline}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def _split(name: str) -> tuple[str, str]:
    """``@scope/pkg@1.0/dist/a.js`` → (``@scope/pkg@1.0``, ``dist/a.js``)."""
    parts = name.split("/")
    n = 2 if name.startswith("@") else 1
    return "/".join(parts[:n]), "/".join(parts[n:])


def fetch(names: list[str], into: Path) -> None:
    """``npm pack`` each package once and extract the named files and folders into ``into``."""
    wanted: dict[str, list[str]] = {}
    for name in names:
        package, path = _split(name)
        wanted.setdefault(package, []).append(path)
    with tempfile.TemporaryDirectory() as tmp:
        for package, paths in wanted.items():
            command = ["npm", "pack", "--silent", "--pack-destination", tmp, package]
            packed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            with tarfile.open(Path(tmp) / packed.split()[-1]) as archive:
                for member in archive.getmembers():
                    inside = member.name.removeprefix("package/")
                    if member.isfile() and any(
                        inside == p or inside.startswith(f"{p}/") for p in paths
                    ):
                        target = into / package / inside
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(archive.extractfile(member).read())
            print(f"npm: {package} → {into / package}")


def plots_template() -> str:
    """The DVC plots page with vega, vega-lite and vega-embed inline (no network)."""
    scripts = []
    for name in VEGA:
        code = (WEB_ASSETS / name).read_text(encoding="utf-8")
        if "</script" in code or "{plot_divs}" in code:
            raise SystemExit(f"{name} cannot be inlined in an HTML template")
        scripts.append(f"    <script>/* {_split(name)[0]} */\n{code}\n    </script>")
    return PAGE.format(inline="\n".join(scripts))


def main(force: bool = False) -> None:
    names = sorted({*CDN_FILES.values(), *CDN_FOLDERS})
    missing = [n for n in names if force or not (WEB_ASSETS / n).exists()]
    if missing:
        fetch(missing, WEB_ASSETS)
    page = plots_template()
    if not PLOTS_TEMPLATE.is_file() or PLOTS_TEMPLATE.read_text(encoding="utf-8") != page:
        PLOTS_TEMPLATE.write_text(page, encoding="utf-8")
        print(f"dvc plots template: {PLOTS_TEMPLATE} ({len(page) // 1024} KiB)")


if __name__ == "__main__":
    main(force="--force" in sys.argv[1:])
