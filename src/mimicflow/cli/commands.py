"""The commands: data, models, stages, one clip (faces, transcribe, predict) and the report."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mimicflow import EMOTIONS
from mimicflow.cli._app import (
    ParamsOption,
    app,
    console,
    err_console,
    fail,
    models_app,
    read_params,
    run_stage,
    stage_app,
)
from mimicflow.config import DEFAULT_PARAMS_FILE, DemoParams


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="folder to write the dataset into (replaced)")],
    n: Annotated[int, typer.Option("--n", min=6, help="number of clips")] = DemoParams().n_clips,
    seed: Annotated[int, typer.Option("--seed")] = DemoParams().seed,
    workers: Annotated[int, typer.Option("--workers", help="processes (0 = one per core)")] = 0,
    plant_faults: Annotated[
        bool, typer.Option("--plant-faults", help="add the planted faulty clips and label rows")
    ] = False,
) -> None:
    """Generate a synthetic demo dataset in the Hume-Vidmimic2 layout."""
    from mimicflow.data.synth.generator import generate_dataset
    from mimicflow.data.synth.speech import SpeechError

    try:
        report = generate_dataset(out, n, seed, workers=workers)
    except SpeechError as exc:
        raise fail(str(exc)) from exc
    if plant_faults:
        from mimicflow.data.faults import plant_faults as plant

        planted = plant(out)
        console.print(f"planted {len(planted)} faulty cases (ids 9000x)")
    _print_signal(report)


@app.command()
def validate(
    dataset: Annotated[
        Path | None, typer.Argument(help="dataset folder (default: data.root)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="output folder (default: validate.out)")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Probe and decode every clip, check the labels, write manifest/quarantine/data docs
    (with --out, everything goes there; without, the reports index is refreshed too)."""
    from mimicflow.data.layout import DatasetError
    from mimicflow.monitoring.reports import write_index
    from mimicflow.stages import validate as stage

    settings = read_params(params)
    try:
        summary = stage.run(settings, dataset, out)
    except (DatasetError, stage.DataQualityError) as exc:
        raise fail(str(exc)) from exc
    if out is None:  # the params' paths: the reports index links validate.out's data docs
        write_index(settings)
    console.print_json(json.dumps(summary))


@models_app.command("list")
def models_list(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Show the catalogue: every entry, its source, and whether it is prepared."""
    from mimicflow.models.catalogue import catalogue, is_prepared

    settings = read_params(params).models
    table = Table(title=f"model catalogue → {settings.dir}")
    for column in ("name", "kind", "format", "source", "prepared"):
        table.add_column(column)
    for name, entry in catalogue(settings.entries).items():
        ready = "yes" if is_prepared(name, entry, settings.dir) else ""
        table.add_row(name, entry.kind, entry.format, entry.source.describe(), ready)
    console.print(table)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[
        list[str] | None, typer.Argument(help="entries (default: models.prepare)")
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Materialise pretrained models into models.dir (once; checksums verified)."""
    from mimicflow.models.catalogue import CatalogueError, catalogue, prepare

    settings = read_params(params).models
    try:
        prepared = prepare(
            list(names or settings.prepare), settings.dir, catalogue(settings.entries)
        )
    except CatalogueError as exc:
        raise fail(str(exc)) from exc
    for name, folder in prepared.items():
        console.print(f"{name}: {folder}")


@stage_app.command("faces")
def stage_faces(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Faces for every usable clip in the manifest (resumable)."""
    from mimicflow.stages.faces import run_faces

    console.print_json(json.dumps(run_stage(run_faces, read_params(params))))


@stage_app.command("asr")
def stage_asr(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Transcripts for every usable clip in the manifest (resumable)."""
    from mimicflow.stages.asr import run_asr

    console.print_json(json.dumps(run_stage(run_asr, read_params(params))))


@stage_app.command("adapt")
def stage_adapt(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Adapt the encoders of adapt.encoders to the labelled clips (USTC's Stage I alignment)."""
    from mimicflow.stages.adapt import run_adapt

    console.print_json(json.dumps(run_stage(run_adapt, read_params(params))))


@stage_app.command("features")
def stage_features(
    name: Annotated[
        str, typer.Argument(help="a feature set of features.sets (default: audio | visual | text)")
    ],
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Encode every usable clip for one feature set into its store (resumable)."""
    from mimicflow.stages import features

    loaded = read_params(params)
    if name not in loaded.features.sets:
        raise fail(
            f"unknown feature set {name!r}; features.sets has {', '.join(loaded.features.sets)}"
        )
    console.print_json(json.dumps(run_stage(features.run_features, loaded, name)))


@app.command()
def faces(
    video: Annotated[Path, typer.Argument(help="a clip (any container/codec)")],
    out: Annotated[Path, typer.Option("--out", help="folder for the crops and track.npz")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Detect, track and align the main face of one clip (the clip library, as every stage
    does); write its crops."""
    import av
    import cv2

    from mimicflow.clip.faces import FacesJob, faces
    from mimicflow.clip.folders import ArtefactFolders
    from mimicflow.clip.settings import FaceSettings
    from mimicflow.data.layout import ClipRef
    from mimicflow.perception.faces import load_face_track, save_face_track

    settings = read_params(params)
    config = settings.faces
    if not video.is_file():
        raise fail(f"{video} does not exist")
    face_settings = run_stage(FaceSettings.from_params, settings)
    with tempfile.TemporaryDirectory() as work:
        folders = ArtefactFolders(Path(work), Path(work), Path(work))
        job = FacesJob(ClipRef("clip", video, "one-clip"), face_settings, folders)
        try:
            faces(job)
        except av.error.FFmpegError as exc:
            raise fail(f"{video} is not a readable media file ({exc})") from exc
        track = load_face_track(folders.face_track(job.clip, face_settings))
    out.mkdir(parents=True, exist_ok=True)
    for index, crop in enumerate(track.crops):
        if track.has_face[index]:
            cv2.imwrite(str(out / f"{index:05d}.jpg"), crop)
    save_face_track(track, out / "track.npz")
    summary = track.summary | {
        "fps_sampled": config.fps,
        "backend": config.backend,
        "out": str(out),
    }
    if as_json:
        print(json.dumps(summary))
    else:
        console.print(summary)


@stage_app.command("inputs")
def stage_inputs(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Digest the feature sets the system reads (what train@k and ensemble depend on)."""
    from mimicflow.stages import train

    console.print_json(json.dumps(run_stage(train.run_inputs, read_params(params))))


@stage_app.command("train")
def stage_train(
    fold: Annotated[int, typer.Option("--fold", help="the fold to validate on (0 … folds−1)")],
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Train the configured system on every fold but FOLD, early-stopped on FOLD."""
    from mimicflow.stages import train

    description = run_stage(train.run_train, read_params(params), fold)
    console.print_json(
        json.dumps(
            {k: description[k] for k in ("system", "fold", "best_epoch")}
            | {"val_mean_pearson": description["val_scores"]["mean_pearson"]}
        )
    )


@stage_app.command("ensemble")
def stage_ensemble(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Gather the fold models, score them, write the metrics, plots and submission CSV."""
    from mimicflow.stages import train

    metrics = run_stage(train.run_ensemble, read_params(params))
    console.print_json(json.dumps({k: v for k, v in metrics.items() if k != "folds"}))


@stage_app.command("compare")
def stage_compare(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Cross-validate each recipe's demo flavour, every system, and the default one on each
    single input: the comparison table (`make compare`)."""
    from mimicflow.stages import compare

    _print_compare(run_stage(compare.run_compare, read_params(params)))


@stage_app.command("member")
def stage_member(
    name: Annotated[str, typer.Argument(help="a member of ensemble.members")],
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Train member NAME of the combined ensemble on every fold (its own feature sets)."""
    from mimicflow.stages import members

    try:
        summary = run_stage(members.run_member, read_params(params), name)
    except ValueError as exc:  # an unknown member or recipe, an overlay that does not validate
        raise fail(str(exc)) from exc
    console.print_json(json.dumps(summary))


@stage_app.command("combine")
def stage_combine(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Fit the members' weights per emotion on their out-of-fold predictions; score them."""
    from mimicflow.stages import members

    try:
        report = run_stage(members.run_combine, read_params(params))
    except ValueError as exc:  # members trained on other clips or folds
        raise fail(str(exc)) from exc
    if report["members"]:
        _print_combined(report)


@app.command()
def transcribe(
    video: Annotated[Path, typer.Argument(help="a clip or audio file (any container/codec)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Transcribe one clip with the configured ASR backend, through the clip library: its
    audio as the pipeline caches it (16 kHz, float16), then the recogniser."""
    import av

    from mimicflow.clip.folders import ArtefactFolders
    from mimicflow.clip.settings import AsrSettings
    from mimicflow.clip.speech import SpeechJob, transcript
    from mimicflow.data.layout import ClipRef

    if not video.is_file():
        raise fail(f"{video} does not exist")
    settings = run_stage(AsrSettings.from_params, read_params(params))
    with tempfile.TemporaryDirectory() as work:
        folders = ArtefactFolders(Path(work), Path(work), Path(work))
        job = SpeechJob(ClipRef("clip", video, "one-clip"), settings, folders)
        try:
            transcript(job)
        except av.error.FFmpegError as exc:
            raise fail(f"{video} is not a readable media file ({exc})") from exc
        result = json.loads(folders.transcript(job.clip, settings).read_text())
    if as_json:
        print(json.dumps(result))
    else:
        console.print(result["text"] or "[dim](no speech)[/]")


@stage_app.command("package")
def stage_package(params: ParamsOption = DEFAULT_PARAMS_FILE) -> None:
    """Save the ensemble and its clip chain into the BentoML model store; build the bento."""
    from mimicflow.stages.package import run_package

    console.print_json(json.dumps(run_stage(run_package, read_params(params))))


@app.command()
def predict(
    videos: Annotated[list[Path], typer.Argument(help="clips (any container/codec)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ensemble: Annotated[
        Path | None,
        typer.Option(
            "--ensemble",
            help="ensemble folder (default: ensemble.out, or with ensemble.members the "
            "combination in ensemble.combined_out)",
        ),
    ] = None,
    params: ParamsOption = DEFAULT_PARAMS_FILE,
) -> None:
    """Six intensities per clip from the trained ensemble (exit 1 when a clip failed); with
    ensemble.members, from their combination (--json adds each member's answer and weights)."""
    from mimicflow.inference import Limits, predict_clips
    from mimicflow.training.combine import has_members, load_combination
    from mimicflow.training.ensemble import load_ensemble

    settings = read_params(params)  # read (and checked) even when --ensemble is given
    folder = ensemble or (
        settings.ensemble.combined_out
        if settings.ensemble.members and has_members(settings.ensemble.combined_out)
        else settings.ensemble.out
    )
    try:
        loaded = load_combination(folder) if has_members(folder) else load_ensemble(folder)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from exc
    results = predict_clips(
        loaded, videos, Limits.from_params(loaded.params), progress=len(videos) > 1
    )
    if as_json:
        print(json.dumps(results))
    elif not sys.stdout.isatty():  # piped: full values, tab-separated, nothing cut to fit
        _print_tsv(results)
    else:
        _print_table(results, loaded.version)
    if any("error" in result for result in results):
        raise typer.Exit(code=1)


def _print_tsv(results: list[dict]) -> None:

    print("\t".join(("file", *EMOTIONS, "error")))
    for result in results:
        values = (
            [f"{result['intensities'][e]:.6f}" for e in EMOTIONS]
            if "error" not in result
            else [""] * len(EMOTIONS)
        )
        print("\t".join((result["file"], *values, result.get("error", ""))))


def _print_table(results: list[dict], version: str) -> None:
    """The answers as a table on stdout; each clip's error one line on stderr."""

    table = Table(title=f"ensemble {version}")
    for column in ("file", *EMOTIONS, "contributions"):
        table.add_column(column, justify="right" if column in EMOTIONS else "left")
    for result in results:
        if "error" not in result:
            shares = " ".join(
                f"{m} {i['share']:.2f}" for m, i in result["inputs"].items() if i["present"]
            )
            table.add_row(
                result["file"], *(f"{result['intensities'][e]:.3f}" for e in EMOTIONS), shares
            )
    console.print(table)
    for result in results:
        if "error" in result:
            err_console.print(f"[bold red]{result['file']}:[/] {result['error']}", soft_wrap=True)


@app.command()
def report(
    params: ParamsOption = DEFAULT_PARAMS_FILE,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="also gate (exit 1): a sample of test clips served = their submission rows, "
            "and the headline figures (params `checks`)",
        ),
    ] = False,
) -> None:
    """Print what the pipeline has produced so far (``--check``: the end of ``make demo``)."""
    import pandas as pd

    from mimicflow.data.synth.truth import oracle
    from mimicflow.paths import StagePaths

    settings = read_params(params)
    paths = StagePaths(settings)
    signal = oracle(settings.data.root)
    if signal is not None:
        _print_signal(signal)
    summary_path = paths.validation_summary
    if not summary_path.exists():
        raise fail(f"{summary_path} not found: run `dvc repro` first")
    _print_stages(paths)
    quarantine = pd.read_csv(paths.quarantine, dtype=str)
    if len(quarantine):
        console.print(f"[bold]quarantined[/] ({len(quarantine)}):")
        for row in quarantine.head(20).itertuples():
            console.print(f"  {row.Filename}: {row.reason}")
    console.print(f"data docs: {paths.data_docs / 'index.html'}")
    reports = paths.reports
    if (reports / "compare.json").exists():
        _print_compare(json.loads((reports / "compare.json").read_text()))
    if (reports / "metrics.json").exists():
        _print_ensemble(json.loads((reports / "metrics.json").read_text()))
    combined = reports / "combined.json"
    if combined.exists() and settings.ensemble.members:
        _print_combined(json.loads(combined.read_text()))
    if check and not _checks_pass(settings):
        raise typer.Exit(code=1)


def _print_stages(paths) -> None:
    """A table of each stage's metrics file that exists."""
    stages = [
        ("validate", paths.validation_summary),
        ("faces", paths.metrics(paths.faces)),
        ("asr", paths.metrics(paths.transcripts)),
    ]
    stages += [
        (f"features@{name}", paths.features_metrics(name)) for name in ("audio", "visual", "text")
    ]
    for name, path in stages:
        if not path.exists():
            continue
        table = Table(title=f"{name} → {path}")
        table.add_column("what")
        table.add_column("value", justify="right")
        for key, value in json.loads(path.read_text()).items():
            table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
        console.print(table)


def _checks_pass(settings) -> bool:
    """Run and print the gates of ``report --check``; whether all that were measured passed."""
    from mimicflow.inference import check_served
    from mimicflow.paths import StagePaths
    from mimicflow.training.gates import headline_checks

    reports = StagePaths(settings).reports
    for needed in (reports / "metrics.json", reports / "submission.csv"):
        if not needed.exists():
            raise fail(f"{needed} not found: run `dvc repro ensemble` first")
    compare = reports / "compare.json"
    rows = headline_checks(
        json.loads((reports / "metrics.json").read_text()),
        json.loads(compare.read_text()) if compare.exists() else None,
        settings.checks,
    )
    served = check_served(settings, progress=True)
    rows.append(
        {
            "check": f"served − submission, max |diff| ({served['compared']} test clips)",
            "value": served["max_abs_difference"],
            "limit": served["tolerance"],
            "passed": served["passed"],
            "note": "; ".join(f"{c} refused: {e}" for c, e in served["refused"].items()),
        }
    )
    view = Table(title="checks (params `checks`)")
    for column in ("check", "value", "limit", "result"):
        view.add_column(column, justify="left" if column == "check" else "right")
    for row in rows:
        result = {True: "[green]pass", False: "[bold red]FAIL", None: "not measured"}
        value = "" if row["value"] is None else f"{row['value']:.4g}"
        limit = ("≤ " if row is rows[-1] else "≥ ") + f"{row['limit']:g}"
        view.add_row(row["check"], value, limit, result[row["passed"]])
    console.print(view)
    for row in rows:
        if row.get("note"):
            console.print(f"{row['check']}: {row['note']}", soft_wrap=True)
    return all(row["passed"] is not False for row in rows)


def _fmt(value) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _print_compare(table: dict) -> None:
    runs = table["runs"]
    test = any("demo_hidden_test_mean_pearson" in run for run in runs.values())
    view = Table(title="5-fold cross-validation (mean Pearson ↑, MSE ↓)")
    columns = ["model", "inputs", "out-of-fold ρ", "out-of-fold MSE"] + ["demo test ρ"] * test
    for column in columns:
        view.add_column(column, justify="left" if column in ("model", "inputs") else "right")

    def add_row(*cells, test_cell=""):
        view.add_row(*cells, *[test_cell] * test)

    for name, run in runs.items():
        bold = "[bold]" if name == table["default_system"] else ""
        add_row(
            f"{bold}{name}",
            "+".join(m[0] for m in run["inputs"]),
            _fmt(run["mean_pearson"]),
            _fmt(run["mse"]),
            test_cell=_fmt(run.get("demo_hidden_test_mean_pearson")),
        )
    if runs:  # the same folds and labels for every run, so one baseline row
        any_run = next(iter(runs.values()))
        add_row(
            "training-mean baseline",
            "",
            _fmt(any_run["baseline_mean_pearson"]),
            _fmt(any_run["baseline_mse"]),
        )
    if table.get("oracle_mean_pearson") is not None:
        oracle = _fmt(table["oracle_mean_pearson"])
        add_row("oracle ceiling (demo)", "", oracle, "", test_cell=oracle)
    console.print(view)
    console.print(
        "inputs: a audio, v visual, t text. The baseline predicts each fold's training "
        "mean: a constant, so its Pearson is only the artefact of folds' means."
    )


def _print_ensemble(metrics: dict) -> None:
    view = Table(title=f"ensemble {metrics['version']} ({metrics['protocol']} protocol)")
    view.add_column("evaluation")
    view.add_column("clips", justify="right")
    view.add_column("mean Pearson", justify="right")
    rows = [("folds (each on its own validation fold)", None, None)]
    for k, fold in enumerate(metrics["folds"]):
        rows.append((f"  fold {k}", fold["clips"], fold["mean_pearson"]))
    for key, label in (
        ("out_of_fold", "out-of-fold"),
        ("official_valid", "official valid"),
        ("demo_hidden_test", "ensemble on the demo's hidden test labels"),
    ):
        if key in metrics:
            rows.append((label, metrics[key]["clips"], metrics[key]["mean_pearson"]))
    for label, clips, value in rows:
        view.add_row(
            label,
            "" if clips is None else str(clips),
            "" if value is None and clips is None else _fmt(value),
        )
    if "demo_oracle_mean_pearson" in metrics:
        view.add_row("oracle ceiling (demo)", "", _fmt(metrics["demo_oracle_mean_pearson"]))
        view.add_row("[bold]held-out ÷ oracle", "", f"[bold]{_fmt(metrics['fraction_of_oracle'])}")
    console.print(view)


def _print_combined(report: dict) -> None:
    """The combine stage's table: each member, their mean and the combination, per emotion."""
    view = Table(title=f"combination {report['version']}: Pearson, mean and per emotion")
    for column in ("model", "on", "mean", *(e[:4] for e in EMOTIONS)):
        view.add_column(column, justify="left" if column in ("model", "on") else "right")
    for key, label in (("out_of_fold", "OOF"), ("demo_hidden_test", "test")):
        for name, row in (report.get(key) or {}).items():
            bold = "[bold]" if name == "combined" else ""
            view.add_row(
                f"{bold}{name}",
                label,
                _fmt(row["mean_pearson"]),
                *[_fmt(row["pearson"][e]) for e in EMOTIONS],
            )
    if report.get("demo_oracle_mean_pearson") is not None:
        view.add_row("oracle ceiling (demo)", "", _fmt(report["demo_oracle_mean_pearson"]))
    console.print(view)
    console.print(
        "OOF: out-of-fold (the combination's: weights fitted without the row's fold); test: "
        "the demo's hidden test labels. Served weights per emotion: "
        + "; ".join(
            f"{name} " + " ".join(f"{w:.2f}" for w in member["weights"].values())
            for name, member in report["members"].items()
        )
    )


def _print_signal(report: dict) -> None:
    table = Table(title="demo data: signal built into each modality (Pearson vs labels)")
    table.add_column("modality")
    table.add_column("mean Pearson", justify="right")
    labels = {"speech": "speech (text + audio)", "all": "all three"}
    for name, entry in report["modality_signal"].items():
        table.add_row(labels.get(name, name), f"{entry['mean_pearson']:.3f}")
    table.add_row("[bold]oracle ceiling[/]", f"[bold]{report['oracle_mean_pearson']:.3f}")
    console.print(table)
