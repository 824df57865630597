"""DVC stage ``adapt``: each ``adapt.encoders`` entry adapts an encoder to the labelled clips
(method ``align``: USTC's Stage I; ``finetune``: end-to-end fine-tuning with
Augsburg's head) and writes ``<adapt.out>/<name>``, a folder a feature set
names as its model; the metrics go to ``<adapt.out>.json``. Without entries it writes an empty
folder and ``{}``."""

from __future__ import annotations

import shutil
from pathlib import Path

from mimicflow import EMOTIONS
from mimicflow.clip import speech
from mimicflow.clip.settings import AsrSettings, FaceSettings, resolve_model
from mimicflow.config import Params
from mimicflow.data.affectnet import affectnet_prompt, read_affectnet
from mimicflow.devices import torch_device
from mimicflow.paths import StagePaths
from mimicflow.perception.asr import whisper_checkpoint
from mimicflow.perception.faces import load_face_track
from mimicflow.stages.clips import artefact_folders, manifest_clip_refs, write_metrics
from mimicflow.training.adaptation import AdaptData
from mimicflow.training.alignment import SCRATCH_VIT, Pair, align_encoder
from mimicflow.training.finetune import finetune_encoder

METHODS = {"align": align_encoder, "finetune": finetune_encoder}


def adapt_data(params: Params) -> AdaptData:
    """The manifest's labelled clips, their official split and readers of their artefacts."""
    manifest = StagePaths(params).read_manifest()
    labelled = manifest[list(EMOTIONS)].notna().all(axis=1).to_numpy()
    refs = [ref for ref, keep in zip(manifest_clip_refs(params), labelled) if keep]
    rows = manifest[labelled]
    folders, faces, asr = (
        artefact_folders(params),
        FaceSettings.from_params(params),
        AsrSettings.from_params(params),
    )

    def crops(i: int) -> list:
        path = folders.face_track(refs[i], faces)
        if not path.is_file():
            return []
        track = load_face_track(path)
        return [crop for crop, face in zip(track.crops, track.has_face) if face]

    split = rows["split"].to_numpy()
    return AdaptData(
        clip_ids=[r.clip_id for r in refs],
        labels=rows[list(EMOTIONS)].to_numpy("float32"),
        train=split == "train",
        valid=split == "valid",
        audio=lambda i: speech.audio(refs[i], folders),
        crops=crops,
        transcript=lambda i: speech.transcript_text(refs[i], asr, folders),
    )


def _resolved(params: Params, spec):
    """``spec`` with its models as loadable paths (catalogue names prepared; a Whisper model as
    its openai-whisper checkpoint)."""
    model = spec.model if spec.model == SCRATCH_VIT else resolve_model(params, spec.model)
    if spec.modality == "audio":
        model = str(whisper_checkpoint(model) or model)
    update = {"model": model}
    if spec.method == "align":
        update["text_model"] = resolve_model(params, spec.text_model)
    return spec.model_copy(update=update)


def affectnet_pairs(root: Path) -> list[Pair]:
    """An AffectNet-layout folder's images as visual (crop, prompt) pairs, weight 1."""
    return [
        Pair(lambda image=image: [image.read()[..., ::-1]], affectnet_prompt(image))
        for image in read_affectnet(root)
    ]


def run_adapt(params: Params, progress: bool = True) -> dict:
    """Every ``adapt.encoders`` entry, by its method; stale entries' folders are removed."""
    out, encoders = Path(params.adapt.out), params.adapt.encoders
    out.mkdir(parents=True, exist_ok=True)
    for stale in [p for p in out.iterdir() if p.name not in encoders]:
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    metrics = {}
    if encoders:
        data = adapt_data(params)
        device = torch_device(params.adapt.device, "adapt.device")
        for name, spec in encoders.items():
            extra = (
                {"external": affectnet_pairs(spec.external)}
                if getattr(spec, "external", None)
                else {}
            )
            metrics[name] = METHODS[spec.method](
                _resolved(params, spec), data, out / name, device, progress, **extra
            )
    return write_metrics(out.with_name(out.name + ".json"), metrics)
