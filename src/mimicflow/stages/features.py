"""DVC stage ``features@<modality>``: encode every usable clip into the feature store.

Modalities: ``audio`` (from the asr stage's decoded audio — never decoded twice), ``visual``
(from the faces stage's crops and meshes), ``text`` (from the transcripts), ``egemaps`` (optional
prosody descriptors) and the organisers' ``vit`` / ``wav2vec2`` pickles when the dataset has them.
One process, clips batched through the encoder (a GPU when present); per-clip results are
content-keyed and atomic, so a killed run resumes; at the end the modality is packed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from rich.progress import Progress

from mimicflow.config import Params
from mimicflow.data.layout import load_dataset, read_feature_pickle
from mimicflow.features.store import pack, save_clip_features
from mimicflow.stages import read_stage_output, resolve_model
from mimicflow.store import artefact_name, prune, settings_hash

log = logging.getLogger(__name__)
MODALITIES = ("audio", "visual", "text", "egemaps", "vit", "wav2vec2")


@dataclass
class Extractor:
    """A modality's encoder: ``load(clip rows)`` → inputs, ``encode(inputs)`` → (values, mask)
    per clip, and what the store records about it."""

    settings: dict
    load: Callable[[list], list]
    encode: Callable[[list], list[tuple[np.ndarray, np.ndarray]]]
    meta: Callable[[], dict]


def _index(folder: Path, stage: str) -> dict[str, str]:
    frame = read_stage_output(Path(folder) / "index.parquet", stage)
    return dict(zip(frame["clip_id"], frame["artefact"]))



def _whole_mask(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values, np.ones(len(values), bool)


def _cached_audio(params: Params, rows) -> list[np.ndarray | None]:
    """The clips' 16 kHz audio as the asr stage decoded and cached it (decoded now if absent)."""
    from mimicflow.stages.perception import audio_artefact, decoded_audio

    root = Path(params.data.root)
    return [decoded_audio(str(root / (r.audio_path or r.video_path)),
                          audio_artefact(params, r.clip_id, r.sha256)) for r in rows]  # fmt: skip


def audio_extractor(params: Params) -> Extractor:
    config = params.features.audio
    model = resolve_model(params, config.model)
    whisper = (Path(model) / "model.bin").exists() or model.endswith(".pt")
    state: dict = {}

    def encoder():
        if "net" not in state:
            from mimicflow.perception import encoders

            kind = encoders.WhisperAudioEncoder if whisper else encoders.HFAudioEncoder
            state["net"] = kind(model, config.layer, params.features.device, params.features.batch_size)
        return state["net"]

    def load(rows):
        return _cached_audio(params, rows)

    def encode(audios):
        present = [a for a in audios if a is not None and a.size]
        encoded = iter(encoder().encode(present)) if present else iter(())
        dim = encoder().info.dim
        return [_whole_mask(next(encoded)) if a is not None and a.size
                else (np.zeros((0, dim), np.float32), np.zeros(0, bool)) for a in audios]  # fmt: skip

    def meta():
        info = encoder().info
        return {"model": config.model, "layer": info.layer, "dim": info.dim, "rate_hz": info.rate_hz}

    return Extractor({"model": model, "layer": config.layer}, load, encode, meta)


def visual_extractor(params: Params) -> Extractor:
    from mimicflow.perception.faces import load_face_track

    config = params.features.visual
    faces = cache(lambda: _index(params.faces.out, "faces"))  # on first load: serving has none
    state: dict = {}
    default = config.model == "default"
    model = resolve_model(params, config.fer_model if default else config.model)

    def load(rows):
        return [load_face_track(Path(params.faces.out) / faces()[r.clip_id]) for r in rows]

    def encode(tracks):
        if default:
            from mimicflow.perception.visual_default import (
                ExpressionClassifier,
                visual_default_features,
            )

            if "net" not in state:
                state["net"] = ExpressionClassifier(Path(model))
            classifier = state["net"]
            results = []
            for track in tracks:
                values, mask, names = visual_default_features(track, classifier)
                state["dim"], state["names"] = values.shape[1], names
                results.append((values, mask))
            return results
        from mimicflow.perception.encoders import HFVisualEncoder

        if "net" not in state:
            state["net"] = HFVisualEncoder(model, config.layer, config.pooling,
                                           params.features.device, params.features.batch_size)  # fmt: skip
        net = state["net"]
        state["dim"] = net.info.dim
        crops = [[c[..., ::-1] for c, f in zip(t.crops, t.has_face) if f] for t in tracks]
        results = []
        for track, vectors in zip(tracks, net.encode(crops)):
            values = np.zeros((len(track.has_face), net.info.dim), np.float32)
            values[track.has_face] = vectors
            results.append((values, track.has_face.copy()))
        return results

    def meta():
        return {"model": config.model, "layer": config.layer, "dim": state["dim"],
                "rate_hz": params.faces.fps, "columns": state.get("names")}  # fmt: skip

    settings = {"model": model, "layer": config.layer, "pooling": config.pooling,
                "faces": params.faces.model_dump(mode="json", exclude={"out"})}  # fmt: skip
    return Extractor(settings, load, encode, meta)


def text_extractor(params: Params) -> Extractor:
    config = params.features.text
    transcripts = cache(lambda: _index(params.asr.out, "asr"))  # on first load: serving has none
    model = resolve_model(params, config.model)
    state: dict = {}

    def encoder():
        if "net" not in state:
            from mimicflow.perception.encoders import HFTextEncoder

            state["net"] = HFTextEncoder(model, config.layer, config.pooling, config.normalize,
                                         params.features.device, params.features.batch_size)  # fmt: skip
        return state["net"]

    def load(rows):
        return [json.loads((Path(params.asr.out) / transcripts()[r.clip_id]).read_text())["text"]
                for r in rows]  # fmt: skip

    def encode(texts):
        return [_whole_mask(values) for values in encoder().encode(texts)]

    def meta():
        return {"model": config.model, "layer": config.layer, "dim": encoder().info.dim,
                "rate_hz": None, "pooling": config.pooling}  # fmt: skip

    asr = params.asr.model_dump(mode="json", exclude={"out", "audio_out"})
    settings = config.model_dump(mode="json") | {"model": model, "asr": asr}
    return Extractor(settings, load, encode, meta)


def egemaps_extractor(params: Params) -> Extractor:
    state: dict = {}

    def smile():
        if "net" not in state:
            try:
                import opensmile
            except ImportError as exc:
                raise RuntimeError("eGeMAPS features need opensmile: pip install "
                                   "'mimicflow[prosody]' (research-only licence)") from exc  # fmt: skip
            state["net"] = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02,
                                           opensmile.FeatureLevel.LowLevelDescriptors)  # fmt: skip
        return state["net"]

    def load(rows):
        return _cached_audio(params, rows)

    def encode(audios):
        results = []
        for audio in audios:
            if audio is None or not audio.size:
                results.append((np.zeros((0, 25), np.float32), np.zeros(0, bool)))
                continue
            frame = smile().process_signal(audio, 16000)
            state["names"] = list(frame.columns)
            results.append(_whole_mask(frame.to_numpy(np.float32)))
        return results

    def meta():
        return {"model": "eGeMAPSv02 LLD", "layer": None, "dim": 25, "rate_hz": 100.0,
                "columns": state.get("names")}  # fmt: skip

    return Extractor({"model": "eGeMAPSv02"}, load, encode, meta)


def organisers_extractor(params: Params, name: str) -> Extractor:
    dataset = load_dataset(params.data.root)
    files = dataset.features.get(name, {})
    state: dict = {}

    def load(rows):
        return [files.get(r.clip_id) for r in rows]

    def encode(paths):
        results = []
        for path in paths:
            if path is None:
                results.append((np.zeros((0, state.get("dim", 0)), np.float32), np.zeros(0, bool)))
                continue
            values = read_feature_pickle(path)
            state["dim"] = values.shape[1]
            results.append(_whole_mask(values))
        return results

    def meta():
        return {"model": f"organisers' {name}", "layer": None, "dim": state.get("dim", 0),
                "rate_hz": None}  # fmt: skip

    return Extractor({"source": name}, load, encode, meta)


def build_extractor(params: Params, modality: str) -> Extractor:
    builders = {"audio": audio_extractor, "visual": visual_extractor, "text": text_extractor,
                "egemaps": egemaps_extractor}  # fmt: skip
    if modality in builders:
        return builders[modality](params)
    if modality in ("vit", "wav2vec2"):
        return organisers_extractor(params, modality)
    raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")


def run_features(params: Params, modality: str, progress: bool = True) -> dict:
    """Encode every clip of the manifest for ``modality``; pack; return the stage metrics."""
    manifest = read_stage_output(params.validate_.out / "manifest.parquet", "validate")
    extractor = build_extractor(params, modality)
    folder = Path(params.features.out) / modality
    folder.mkdir(parents=True, exist_ok=True)
    tag = settings_hash(extractor.settings)
    files = {r.clip_id: folder / artefact_name(r.clip_id, r.sha256, tag, ".npz")
             for r in manifest.itertuples()}  # fmt: skip
    todo = [r for r in manifest.itertuples() if not files[r.clip_id].exists()]
    if len(todo) < len(manifest):
        log.info("%s: %d of %d clips already done (resuming)", modality, len(manifest) - len(todo),
                 len(manifest))  # fmt: skip
    chunk = params.features.batch_size
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"features {modality}", total=len(todo))
        for start in range(0, len(todo), chunk):
            rows = todo[start : start + chunk]
            for row, (values, mask) in zip(rows, extractor.encode(extractor.load(rows))):
                save_clip_features(files[row.clip_id], values, mask)
            bar.advance(task, len(rows))
    meta_file = folder / f"meta-{tag}.json"  # the encoder's facts, kept for resumed runs
    if todo or not meta_file.exists():
        if not todo and len(manifest):
            extractor.encode(extractor.load(list(manifest.itertuples())[:1]))
        meta_file.write_text(json.dumps(extractor.meta() | {"settings": tag}))
    meta = json.loads(meta_file.read_text())
    packed = pack(folder, files, meta)
    prune(folder, {p.name for p in files.values()}, ".npz")
    prune(folder, {meta_file.name}, ".json")
    present = json.loads((packed / "meta.json").read_text())["present"]
    lengths = np.diff(np.load(packed / "offsets.npy"))
    metrics = {
        "clips": len(files),
        "clips_present": int(sum(present.values())),
        "dim": meta["dim"],
        "mean_frames": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
        "model": meta["model"],
    }
    (Path(params.features.out) / f"{modality}.json").write_text(json.dumps(metrics, indent=2))
    return metrics
