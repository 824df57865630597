"""Where a batch's per-clip artefacts lie, and their names: clip id, content hash and the key of
the settings that made them. A stage's output folders, or one request's work folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mimicflow.clip.settings import AsrSettings, EncoderSettings, FaceSettings
from mimicflow.data.layout import ClipRef
from mimicflow.store import artefact_name, settings_hash

AUDIO_KEY = settings_hash({"sample_rate": 16000, "channels": 1})


@dataclass(frozen=True)
class ArtefactFolders:
    """The folders of a batch's face tracks, transcripts and decoded audio."""

    faces: Path
    transcripts: Path
    audio: Path

    def face_track(self, clip: ClipRef, settings: FaceSettings) -> Path:
        return Path(self.faces) / artefact_name(clip.clip_id, clip.sha256, settings.key(), ".npz")

    def transcript(self, clip: ClipRef, settings: AsrSettings) -> Path:
        return Path(self.transcripts) / artefact_name(
            clip.clip_id, clip.sha256, settings.key(), ".json"
        )

    def decoded_audio(self, clip: ClipRef) -> Path:
        return Path(self.audio) / artefact_name(clip.clip_id, clip.sha256, AUDIO_KEY, ".npz")


def feature_file(folder: Path, clip: ClipRef, settings: EncoderSettings) -> Path:
    """Where one clip's features for ``settings`` are kept before the store is packed."""
    return Path(folder) / artefact_name(clip.clip_id, clip.sha256, settings.key(), ".npz")
