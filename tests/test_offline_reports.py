"""Reports render with no network: ``dvc plots show`` (the project's HTML template inlines vega)
and the Great Expectations data docs (local copies of their CDN files). Headless Chromium loads
each page with every outside request failing (a proxy on a closed port) and must draw it; no page
refers to a script, stylesheet or image outside."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimicflow import EMOTIONS
from mimicflow.config import Params
from mimicflow.paths import StagePaths
from mimicflow.stages.train import gather_curves

from .test_expectations import LIMITS, _labels, _manifest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_LOADS = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*\"([^\"]*)\"", re.IGNORECASE)
_SCRIPT_BODY = re.compile(r"(<script\b[^>]*>).*?(</script>)", re.IGNORECASE | re.DOTALL)


def _loads(html: str) -> list[str]:
    """What a page loads: the src/href of its script, link and img tags (not text in scripts)."""
    return _LOADS.findall(_SCRIPT_BODY.sub(r"\1\2", html))


def _offline_dom(page: Path) -> str:
    """The page's DOM after its scripts ran in headless Chromium, with the network cut off."""
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _plot_data(repo: Path, folds: list[int]) -> None:
    """Stand-ins for what the ensemble and train stages write for ``dvc plots show``."""
    reports = repo / "reports" / "training"
    (reports / "per_emotion.csv").parent.mkdir(parents=True)
    (reports / "per_emotion.csv").write_text(
        "emotion,pearson\n" + "".join(f"{e},{0.1 * i:.2f}\n" for i, e in enumerate(EMOTIONS))
    )
    (reports / "oof_scatter.csv").write_text(
        "emotion,true,predicted\n"
        + "".join(f"{e},{i / 10:.1f},{(i + 1) / 12:.2f}\n" for e in EMOTIONS for i in range(4))
    )
    for fold in folds:
        curves = reports / "curves" / f"fold_{fold}" / "plots" / "metrics"
        curves.mkdir(parents=True)
        for metric in ("train_loss", "val_mean_pearson"):
            rows = "".join(f"{step}\t{0.1 * step + fold / 100:.3f}\n" for step in range(5))
            (curves / f"{metric}.tsv").write_text(f"step\t{metric}\n{rows}")
    with pytest.MonkeyPatch.context() as patch:  # what ensemble gathers for the fold charts
        patch.chdir(repo)
        gather_curves(StagePaths(Params()), folds).to_csv(
            reports / "curves.tsv", sep="\t", index=False
        )


@pytest.mark.pipeline
def test_dvc_plots_show_draws_every_chart_offline(tmp_path):
    template = ROOT / ".dvc" / "offline_plots.html"
    assert template.is_file(), "no .dvc/offline_plots.html: run `make setup`"
    repo = tmp_path / "repo"
    (repo / ".dvc" / "plots").mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".dvc/config", ".dvc/offline_plots.html"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copy(ROOT / ".dvc" / "plots" / "folds.json", repo / ".dvc" / "plots")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    folds = list(yaml.safe_load((repo / "params.yaml").read_text())["train"]["folds"])
    _plot_data(repo, folds)

    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    expected = len(json.loads(shown.stdout)["data"])  # one chart per plot DVC found
    assert expected == 4  # per emotion, scatter, and one per curve with a line per fold
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    page = repo / "dvc_plots" / "index.html"
    html = page.read_text(encoding="utf-8")
    assert _loads(html) == []  # vega, vega-lite and vega-embed are inline

    dom = _offline_dom(page)
    drawn = re.findall(r'<(?:canvas|svg)\b[^>]*class="marks"', dom)
    assert len(drawn) == expected, f"{len(drawn)} of {expected} charts drawn offline"


@pytest.mark.pipeline
def test_data_docs_render_offline_with_every_run(tmp_path):
    from mimicflow.data.expectations import run_data_quality_suites

    manifest = _manifest()
    manifest.loc[2, "duration_s"] = 600.0  # a failed expectation: its page shows the values
    for _ in range(2):
        summary = run_data_quality_suites(manifest, _labels(), tmp_path, **LIMITS)
    site = Path(summary["data_docs"]).parent
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 7  # index, 2 suites, 2 runs × 2 validation results
    for page in pages:
        for ref in _loads(page.read_text(encoding="utf-8")):
            assert not re.match(r"(?i)https?:|//", ref), f"{page.relative_to(site)} loads {ref}"
            if "static/vendor/" in ref:  # the copies of the CDN files
                assert (page.parent / ref).is_file(), f"{page} refers to missing {ref}"

    assert sum("static/vendor/" in ref for ref in _loads((site / "index.html").read_text())) >= 10
    # bootstrap-table (jQuery, Bootstrap) builds the table of runs from the page's data: the
    # links are in the DOM only if the local scripts ran
    links = re.compile(r'href="(validations/manifest/[^"]+)"')
    assert links.findall((site / "index.html").read_text(encoding="utf-8")) == []
    assert len(set(links.findall(_offline_dom(site / "index.html")))) == 2  # both runs
