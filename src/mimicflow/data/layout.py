"""The Hume-Vidmimic2 dataset layout as users have it (DESIGN.md §2), and plain clip folders.

```
<root>/raw/00001.mp4 …          videos (5-digit ids)
<root>/audio/00001.mp3 …        16 kHz mono audio (optional)
<root>/train_split.csv          Filename + the six emotions; Filename written as an integer
<root>/valid_split.csv
<root>/vit/00001.pkl, <root>/wav2vec2/00001.pkl    organisers' features (optional)
```
Test clips are the clips in ``raw/`` without a label row. A folder of clips with no ``raw/``
and no label files is read as new, unlabelled mimicry data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mimicflow import EMOTIONS

if TYPE_CHECKING:
    import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
SPLIT_FILES = {"train": "train_split.csv", "valid": "valid_split.csv"}
FEATURE_DIRS = ("vit", "wav2vec2")
ID_WIDTH = 5
# The validate stage's manifest: one row per usable clip. ``audio_source``: ``clip`` (its own
# track), ``file`` (audio/<id>.* because the video has none) or ``none``.
MANIFEST_COLUMNS = [
    "clip_id",
    "split",
    "video_path",
    "audio_path",
    "sha256",
    "size_bytes",
    "container",
    "duration_s",
    "fps",
    "n_frames",
    "width",
    "height",
    "video_codec",
    "has_audio",
    "audio_source",
    "audio_codec",
    "sample_rate",
    "has_vit",
    "has_wav2vec2",
    "notes",
    *EMOTIONS,
]


class DatasetError(Exception):
    """The dataset as a whole is unusable (as opposed to one bad clip)."""


def normalise_clip_id(value: object) -> str | None:
    """Map a ``Filename`` cell (``1``, ``1.0``, ``"00001"``, ``"000001"``, ``"00001.mp4"``) to
    ``"00001"``: ids are matched by integer value.

    Returns None when the value is not a clip id.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    stem = Path(text).stem if Path(text).suffix.lower() in VIDEO_SUFFIXES else text
    if stem.endswith(".0") and stem[:-2].isdigit():
        stem = stem[:-2]
    if not (stem.isascii() and stem.isdigit()):
        return None
    return str(int(stem)).zfill(ID_WIDTH)


@dataclass(frozen=True)
class LabelRow:
    """One row of a split CSV, as read (values not yet checked)."""

    clip_id: str | None
    raw_filename: str
    split: str
    source: str  # "train_split.csv:12" — file and 1-based line number, for messages
    values: dict[str, float]


@dataclass(frozen=True)
class ClipRef:
    """One usable clip as the per-clip library takes it: its id, its video, the separate audio
    file its sound comes from (only when the video has no audio track) and its content hash."""

    clip_id: str
    video: Path
    sha256: str
    audio_file: Path | None = None

    @property
    def audio_media(self) -> Path:
        """Where the clip's sound is decoded from: its own track, else the separate file."""
        return self.audio_file or self.video


@dataclass
class Dataset:
    """What a dataset folder holds; reading it never decodes media."""

    root: Path
    clips: dict[str, Path]
    audio: dict[str, Path]
    label_rows: list[LabelRow]
    features: dict[str, dict[str, Path]] = field(default_factory=dict)
    labelled: bool = True
    not_clips: dict[Path, str] = field(default_factory=dict)  # files beside the clips: why not

    @property
    def clip_ids(self) -> list[str]:
        return sorted(self.clips)


def _index_media(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            found[path.stem] = path
    return found


def _index_clips(
    root: Path, folder: Path, every_file: bool
) -> tuple[dict[str, Path], dict[Path, str]]:
    """The clips of ``folder`` by clip id, and the files that are not clips, with the reason: a
    second file of an id (``5.mp4`` or ``00005.avi`` beside ``00005.mp4``; the file named by
    the id itself is kept, else the first by name) and, when ``every_file``, any non-video."""
    by_id: dict[str, list[Path]] = defaultdict(list)
    not_clips: dict[Path, str] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.suffix.lower() in VIDEO_SUFFIXES:
            by_id[normalise_clip_id(path.stem) or path.stem].append(path)
        elif every_file:
            not_clips[path] = (
                f"not a video file (suffix {path.suffix or 'none'}; clips are "
                f"{' '.join(VIDEO_SUFFIXES)})"
            )
    clips = {}
    for clip_id, paths in by_id.items():
        clips[clip_id] = kept = min(paths, key=lambda p: (p.stem != clip_id, p.name))
        for path in paths:
            if path != kept:
                not_clips[path] = f"same clip id ({clip_id}) as {kept.relative_to(root).as_posix()}"
    return clips, not_clips


def read_split_csv(path: Path, split: str) -> list[LabelRow]:
    """Read one split file; raises DatasetError when the required columns are missing."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path.name} is not a readable CSV file: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("Filename", *EMOTIONS) if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path.name} lacks the required column(s) {missing}; expected "
            f"Filename,{','.join(EMOTIONS)}"
        )
    rows = []
    for offset, record in enumerate(frame.to_dict("records")):
        values = {}
        for emotion in EMOTIONS:
            cell = record[emotion].strip()
            try:
                values[emotion] = float(cell) if cell else float("nan")
            except ValueError:
                values[emotion] = float("nan")
        rows.append(
            LabelRow(
                clip_id=normalise_clip_id(record["Filename"]),
                raw_filename=record["Filename"],
                split=split,
                source=f"{path.name}:{offset + 2}",
                values=values,
            )
        )
    return rows


def load_dataset(root: Path | str) -> Dataset:
    """Index a dataset folder: Hume-Vidmimic2 layout, or a plain folder of clips.

    Raises DatasetError with one clear message when the folder is not a dataset at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    raw = root / "raw"
    split_paths = {s: root / f for s, f in SPLIT_FILES.items() if (root / f).is_file()}

    if raw.is_dir():
        clips, not_clips = _index_clips(root, raw, every_file=True)
        if not split_paths:
            raise DatasetError(
                f"{root} has raw/ but no label file: expected train_split.csv and/or "
                "valid_split.csv (Filename + the six emotions). For unlabelled clips, point "
                "at a plain folder of clips instead."
            )
        label_rows = [row for s, p in split_paths.items() for row in read_split_csv(p, s)]
        labelled = True
    else:
        if split_paths:
            raise DatasetError(f"{root} has label files but no raw/ folder of clips")
        clips, not_clips = _index_clips(root, root, every_file=False)
        if not clips:
            raise DatasetError(
                f"{root} holds neither raw/ (Hume-Vidmimic2 layout) nor any video clip "
                f"({', '.join(VIDEO_SUFFIXES)})"
            )
        label_rows, labelled = [], False

    audio = {
        normalise_clip_id(stem) or stem: path
        for stem, path in _index_media(root / "audio", (".mp3", ".wav", ".m4a", ".flac")).items()
    }
    features = {
        name: {normalise_clip_id(p.stem) or p.stem: p for p in sorted((root / name).glob("*.pkl"))}
        for name in FEATURE_DIRS
        if (root / name).is_dir()
    }
    return Dataset(root, clips, audio, label_rows, features, labelled, not_clips)


def read_feature_pickle(path: Path) -> np.ndarray:
    """Load one of the organisers' pre-extracted feature pickles as a float32 (T × d) array.

    These pickles come with the licensed data and are trusted like it; never point this at
    pickles from elsewhere (unpickling runs code).
    """
    import pickle

    import numpy as np

    with open(path, "rb") as handle:
        obj = pickle.load(handle)
    array = np.asarray(obj, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{path.name}: expected a (T x d) feature array, got shape {array.shape}")
    return array


def manifest_clips(manifest: pd.DataFrame, root: Path) -> list[ClipRef]:
    """The manifest's clips as the per-clip library takes them (paths under ``root``)."""
    root = Path(root).resolve()
    return [
        ClipRef(
            r.clip_id, root / r.video_path, r.sha256, root / r.audio_path if r.audio_path else None
        )
        for r in manifest.itertuples()
    ]
