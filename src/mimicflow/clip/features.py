"""A batch of clips through one feature set's encoder: ``inputs`` reads what the encoder takes
back from the batch's artefacts, ``encode`` keeps each clip's features as a content-keyed file
(resumable), ``encode_set`` does both and packs the set's store (what the ``features`` stage and
the monitor run)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from mimicflow.clip import speech
from mimicflow.clip.encoders import Encoded, clip_encoder
from mimicflow.clip.folders import ArtefactFolders, feature_file
from mimicflow.clip.settings import KINDS, EncoderSettings, Runtime
from mimicflow.data.layout import ClipRef
from mimicflow.features.store import pack, save_clip_features
from mimicflow.store import prune

log = logging.getLogger(__name__)


def inputs(
    settings: EncoderSettings, folders: ArtefactFolders, organisers: dict[str, Path] | None = None
) -> Callable[[list[ClipRef]], list]:
    """A reader of what the encoder takes, per clip, from the batch's artefacts (``organisers``:
    the dataset's pickles by clip id, for the ``organisers`` kind)."""
    reads = KINDS[settings.kind].reads
    if reads == "audio":
        return lambda clips: [speech.audio(c, folders) for c in clips]
    if reads == "faces":
        from mimicflow.perception.faces import load_face_track

        return lambda clips: [load_face_track(folders.face_track(c, settings.faces)) for c in clips]
    if reads == "transcript":
        first = settings.transcript == "first_segment"
        return lambda clips: [
            speech.transcript_text(c, settings.asr, folders, first) for c in clips
        ]
    files = organisers or {}
    return lambda clips: [files.get(c.clip_id) for c in clips]


def encode(
    clips: list[ClipRef],
    settings: EncoderSettings,
    runtime: Runtime,
    read: Callable[[list[ClipRef]], list],
    folder: Path,
    progress: bool = True,
) -> tuple[dict[str, Path], dict]:
    """Encode every clip whose features file is missing (batches of ``runtime.batch_size``);
    returns each clip's file and the encoder's description (model, dim, rate …)."""
    encoder = clip_encoder(settings, runtime)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {c.clip_id: feature_file(folder, c, settings) for c in clips}
    todo = [c for c in clips if not files[c.clip_id].exists()]
    if len(todo) < len(clips):
        log.info(
            "features %s: %d of %d clips already done (resuming)",
            settings.modality,
            len(clips) - len(todo),
            len(clips),
        )
    with Progress(disable=not progress) as bar:
        task = bar.add_task(f"features {settings.modality}", total=len(todo))
        for start in range(0, len(todo), runtime.batch_size):
            chunk = todo[start : start + runtime.batch_size]
            for clip, (values, mask) in zip(chunk, encoder.encode(read(chunk))):
                save_clip_features(files[clip.clip_id], values, mask)
            bar.advance(task, len(chunk))
    if getattr(encoder, "learns_width", False) and clips and not todo:
        encoder.encode(read(clips[:1]))  # these learn their width/columns from a clip
    prune(folder, {p.name for p in files.values()}, ".npz")
    return files, encoder.meta()


def encode_set(
    clips: list[ClipRef],
    settings: EncoderSettings,
    runtime: Runtime,
    folders: ArtefactFolders,
    out: Path,
    organisers: dict[str, Path] | None = None,
    progress: bool = True,
) -> tuple[Path, dict]:
    """A batch of clips into feature set ``out``: each clip encoded (resumable), then packed
    into ``out/packed`` with the encoder's description, its modality and its settings' key;
    returns the packed folder and the description."""
    read = inputs(settings, folders, organisers)
    files, meta = encode(clips, settings, runtime, read, out, progress)
    packed = pack(out, files, meta | {"modality": settings.modality, "settings": settings.key()})
    return packed, meta


@dataclass
class ClipFeatures:
    """A clip's features per feature set, as the feature store holds them (float16), and what
    perception found."""

    features: dict[str, Encoded]
    transcript: str
    has_audio: bool
    face_rate: float

    @property
    def present_inputs(self) -> dict[str, bool]:
        return present_inputs(self.features)


def present_inputs(features: dict[str, Encoded]) -> dict[str, bool]:
    """Which inputs a clip has: any frame in the mask (a missing one: absent or all False)."""
    return {m: bool(np.asarray(mask).any()) for m, (_, mask) in features.items()}
