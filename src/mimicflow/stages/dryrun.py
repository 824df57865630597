"""``mimicflow recipe dry-run``: a recipe's paper flavour end to end on miniature models, before
a GPU day is spent on the real ones (in the spirit of Lightning's ``fast_dev_run``).

Every hub model the flavour names is built as a miniature of the same architecture class
(:mod:`mimicflow.perception.miniature`, as deep as the layers the recipe reads or trains) in a
local mirror; the flavour's params, with its hub ids resolved to that mirror, run the stages on a
few demo clips in a scratch folder: validate → faces → asr → adapt (where the recipe adapts) →
features → train (2 epochs; protocol merged: 2 folds) → ensemble → package (the bundle the
BentoML model store holds) → one served prediction (through the bundle, in process), which
must equal the evaluated one. Whisper large-v3 is not miniaturised: a random Whisper decodes
no words, so the embedded tiny.en transcribes. Every file the run writes (temporary files,
remote-code modules, caches) lies in the scratch folder; a rerun wipes it first.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.config import Params
from mimicflow.data.layout import SPLIT_FILES, load_dataset
from mimicflow.fusion.metrics import UndefinedMetricWarning
from mimicflow.models.catalogue import catalogue, is_prepared
from mimicflow.recipes import Recipe, leaves, merge, recipe_overlay
from mimicflow.weights import MODEL_KEYS, hub_id, with_mirror

DRY_EPOCHS = 2
OUTPUTS = {  # params keys that name a stage's output, and their folder in the scratch
    ("validate", "out"): "validated",
    ("faces", "out"): "faces",
    ("asr", "out"): "asr",
    ("asr", "audio_out"): "audio",
    ("adapt", "out"): "adapted",
    ("features", "out"): "features",
    ("train", "out"): "folds",
    ("ensemble", "out"): "ensemble",
    ("ensemble", "reports"): "reports",
    ("serving", "out"): "bento",
    ("monitor", "reference"): "reference",
}


class DryRunFailed(RuntimeError):
    """A stage of the dry-run failed; ``stage`` names it."""

    def __init__(self, stage: str, reason: str):
        super().__init__(f"dry-run failed at stage {stage}: {reason}")
        self.stage = stage


@dataclass
class StageRow:
    stage: str
    seconds: float
    outputs: str
    peak_rss_mb: float  # the process's and its finished children's, so far

    def as_dict(self) -> dict:
        return asdict(self)


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)  # kB on Linux


def scratch_env(scratch: Path) -> dict[str, str]:
    """Wipe ``scratch`` (a rerun starts clean) and return the environment that points every
    temporary folder and cache the stages write into it: the dry-run's process starts with it,
    so even a killed run leaves nothing outside."""
    shutil.rmtree(scratch, ignore_errors=True)
    env = {}
    for variable, name in (
        ("TMPDIR", "tmp"),
        ("HF_MODULES_CACHE", "hf-modules"),
        ("MIMICFLOW_CACHE", "cache"),
        ("BENTOML_HOME", "bentoml"),
    ):
        (scratch / name).mkdir(parents=True, exist_ok=True)
        env[variable] = str(scratch / name)
    return env


def model_depths(overlay: dict, adapted: Path) -> dict[str, int]:
    """Each hub id the overlay names, with the layers its miniature needs: the deepest layer a
    feature set reads (``layers``) or an adapt entry trains (``train_layers``), at least 2."""
    depths: dict[str, int] = {}
    for key, value in leaves(overlay):
        field = key.rsplit(".", 1)[-1]
        if field not in MODEL_KEYS or not isinstance(value, str):
            continue
        repo = hub_id(key, value, adapted)
        if repo is None or key == "asr.model":
            continue
        section = overlay
        for part in key.split(".")[:-1]:
            section = section[part]
        wanted = [] if field == "text_model" else [section.get("layers", -1)]
        wanted += [section.get("train_layers", 0)] if field == "model" else []
        flat = [n for w in wanted for n in (w if isinstance(w, list) else [w]) if n]
        depths[repo] = max([depths.get(repo, 2), *[n for n in flat if n > 0]])
    return depths


def sample_dataset(source: Path, out: Path, clips: int) -> str:
    """The first ``clips`` clips of ``source`` (train, valid and test clips in the dataset's
    proportions, each split at least 2 where it has them) copied into ``out``."""
    dataset = load_dataset(source)
    split_of = {row.clip_id: row.split for row in dataset.label_rows if row.clip_id}
    by_split: dict[str, list[str]] = {}
    for clip_id in sorted(dataset.clips):
        by_split.setdefault(split_of.get(clip_id, "test"), []).append(clip_id)
    total = len(dataset.clips)
    chosen = {
        split: ids[: max(2, round(clips * len(ids) / total))] for split, ids in by_split.items()
    }
    (out / "raw").mkdir(parents=True)
    (out / "audio").mkdir()
    keep = {c for ids in chosen.values() for c in ids}
    for clip_id in keep:
        shutil.copy2(dataset.clips[clip_id], out / "raw" / dataset.clips[clip_id].name)
        if clip_id in dataset.audio:
            shutil.copy2(dataset.audio[clip_id], out / "audio" / dataset.audio[clip_id].name)
    for split, name in SPLIT_FILES.items():
        table = pd.read_csv(source / name, dtype={"Filename": str})
        ids = table["Filename"].str.zfill(5)
        table[ids.isin(chosen.get(split, []))].to_csv(out / name, index=False)
    for extra in ("synth_truth.csv", "oracle.json"):  # the demo's hidden labels
        if (source / extra).is_file():
            shutil.copy2(source / extra, out / extra)
    return ", ".join(f"{split} {len(ids)}" for split, ids in chosen.items()) + " clips"


def dry_params(recipe: Recipe, base: Params, scratch: Path, mirror: Path) -> Params:
    """The paper flavour's params for the dry-run: hub ids in the mirror, every output in the
    scratch folder, 2 epochs (2 folds under protocol merged), the embedded Whisper for ASR."""
    defaults = base.model_dump(mode="json", by_alias=True)
    overlay = with_mirror(recipe_overlay(recipe), mirror, base.adapt.out)
    merge(defaults, overlay)
    for (section, key), name in OUTPUTS.items():
        defaults[section][key] = str(scratch / name)
    adapted_before = base.adapt.out.as_posix().rstrip("/") + "/"
    for spec in defaults["features"]["sets"].values():
        if spec["model"].startswith(adapted_before):
            spec["model"] = str(scratch / "adapted" / spec["model"][len(adapted_before) :])
    defaults["data"]["root"] = str(scratch / "data")
    defaults["asr"]["model"] = "whisper-tiny.en"
    for entry in defaults["adapt"]["encoders"].values():
        entry["epochs"] = min(entry["epochs"], DRY_EPOCHS)
    train = defaults["train"]
    train["epochs"], train["patience"] = DRY_EPOCHS, DRY_EPOCHS
    if train["protocol"] == "merged":
        train["folds"] = [0, 1]
    system = train[train["system"]]
    if "pretrain_epochs" in system:
        system["pretrain_epochs"] = min(system["pretrain_epochs"], DRY_EPOCHS)
    return Params.model_validate(defaults)


def _models_dir(base: Params, scratch: Path) -> Path:
    """``models.dir`` when it holds every prepared model, else a folder in the scratch."""
    entries = catalogue(base.models.entries)
    ready = all(is_prepared(n, entries[n], base.models.dir) for n in base.models.prepare)
    return base.models.dir.resolve() if ready else scratch / "pretrained"


class DryRun:
    """One recipe's dry-run in ``scratch`` (in a process started with :func:`scratch_env`):
    :meth:`run` returns a :class:`StageRow` per stage or raises :class:`DryRunFailed` naming
    the stage."""

    def __init__(self, recipe: Recipe, base: Params, scratch: Path, clips: int, data: Path | None):
        self.recipe, self.base, self.clips, self.data = recipe, base, clips, data
        self.scratch = Path(scratch).resolve()
        self.params: Params | None = None
        self.rows: list[StageRow] = []

    def run(self, on_row: Callable[[StageRow], None] | None = None) -> list[StageRow]:
        for stage, step in self.steps():
            started = time.perf_counter()
            try:
                with warnings.catch_warnings():  # a few clips: some Pearsons are undefined
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    outputs = step()
            except Exception as exc:  # any failure is the stage's: named, one line
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise DryRunFailed(stage, f"{type(exc).__name__}: {reason}") from exc
            row = StageRow(stage, round(time.perf_counter() - started, 2), outputs, peak_rss_mb())
            self.rows.append(row)
            if on_row:
                on_row(row)
        return self.rows

    def steps(self):
        yield "models", self._models
        yield "data", self._data
        yield "validate", self._validate
        yield "faces", self._faces
        yield "asr", self._asr
        if self.params.adapt.encoders:
            yield "adapt", self._adapt
        yield "features", self._features
        yield "train", self._train
        yield "ensemble", self._ensemble
        yield "package", self._package
        yield "serve", self._serve

    def _models(self) -> str:
        from mimicflow.perception.miniature import build_miniature

        mirror = self.scratch / "weights"
        depths = model_depths(recipe_overlay(self.recipe), self.base.adapt.out)
        for repo, layers in depths.items():
            build_miniature(repo, mirror / repo, layers)
        base = self.base.model_copy(
            update={
                "models": self.base.models.model_copy(
                    update={"dir": _models_dir(self.base, self.scratch)}
                )
            }
        )
        self.params = dry_params(self.recipe, base, self.scratch, mirror)
        return ", ".join(f"{repo.split('/')[-1]} ({n} layers)" for repo, n in depths.items())

    def _data(self) -> str:
        out = self.scratch / "data"
        source = self.data
        if source is None:
            from mimicflow.data.synth.generator import generate_dataset

            source = self.scratch / "synth"
            generate_dataset(source, self.clips, self.base.demo.seed, workers=2, progress=False)
        return sample_dataset(source, out, self.clips)

    def _validate(self) -> str:
        from mimicflow.stages import validate

        summary = validate.run(self.params, progress=False)
        return f"{summary['clips_usable']} usable of {summary['clips_found']} clips"

    def _faces(self) -> str:
        from mimicflow.stages.faces import run_faces

        metrics = run_faces(self.params, progress=False)
        return ", ".join(f"{k} {v}" for k, v in metrics.items() if isinstance(v, (int, float)))

    def _asr(self) -> str:
        from mimicflow.stages.asr import run_asr

        metrics = run_asr(self.params, progress=False)
        return ", ".join(f"{k} {v}" for k, v in metrics.items() if isinstance(v, (int, float)))

    def _adapt(self) -> str:
        from mimicflow.stages.adapt import run_adapt

        metrics = run_adapt(self.params, progress=False)
        return ", ".join(sorted(metrics))

    def _features(self) -> str:
        from mimicflow.stages.features import run_features
        from mimicflow.stages.train import model_inputs

        shapes = []
        for name in model_inputs(self.params, self.params.train.system):
            m = run_features(self.params, name, progress=False)
            shapes.append(f"{name} {m['clips']}×{m['mean_frames']:g}×{m['dim']}")
        return ", ".join(shapes)

    def _train(self) -> str:
        from mimicflow.stages.train import format_rho, run_train

        scores = []
        for fold in self.params.train.folds:
            metrics = run_train(self.params, fold, progress=False)
            scores.append(f"fold {fold} val ρ {format_rho(metrics['val_scores']['mean_pearson'])}")
        return ", ".join(scores)

    def _ensemble(self) -> str:
        from mimicflow.stages.train import run_ensemble

        metrics = run_ensemble(self.params)
        return f"version {metrics['version']}, {len(metrics['folds'])} folds"

    def _package(self) -> str:
        from mimicflow.serving.bundle import write_bundle
        from mimicflow.training.ensemble import load_ensemble

        ensemble_dir = Path(self.params.ensemble.out)
        bundle = self.scratch / "bundle"
        write_bundle(
            load_ensemble(ensemble_dir), ensemble_dir, self.params, self.params.serving, bundle
        )
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        return f"bundle {size / 2**20:.1f} MB"

    def _serve(self) -> str:
        """One test clip as the service answers it (:class:`~mimicflow.serving.service.
        EMIService`: the bundle's params and models), against the ensemble on the stored
        features (what the ensemble stage evaluated)."""
        from mimicflow.inference import Limits, check_clip, clip_prediction, extract_clip
        from mimicflow.paths import StagePaths
        from mimicflow.serving.bundle import read_bundle

        bundle = read_bundle(self.scratch / "bundle")
        serving = bundle.serving
        limits = Limits(
            int(serving.max_upload_mb * 2**20), serving.max_duration_s, bundle.params.validate_
        )
        manifest = StagePaths(self.params).read_manifest()
        test = manifest[manifest["split"] == "test"]
        row = (test if len(test) else manifest).iloc[0]
        video = Path(self.params.data.root) / row["video_path"]
        with tempfile.TemporaryDirectory(prefix="serve-") as work:
            info = check_clip(video, limits)
            inputs = extract_clip(
                bundle.params,
                video,
                Path(work),
                tuple(bundle.ensemble.inputs),
                info.video_decoded_s,
            )
            served = clip_prediction(bundle.ensemble, inputs)
        evaluated = bundle.ensemble.predict_store(self.params.features.out, [row["clip_id"]])
        gap = np.abs(
            np.array([served["intensities"][e] for e in EMOTIONS])
            - evaluated[list(EMOTIONS)].to_numpy()[0]
        ).max()
        if gap > 1e-3:
            raise RuntimeError(f"clip {row['clip_id']}: served differs from evaluated by {gap:.2g}")
        return f"clip {row['clip_id']}: 6 intensities, |served − evaluated| {gap:.1e}"
