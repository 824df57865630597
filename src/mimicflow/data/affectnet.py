"""AffectNet's folder layout, read as the (face image, prompt) pairs of USTC's Stage I (§3.3,
eq. 1) for the vision–text alignment (``adapt.encoders.<name>.external``).

Layout (AffectNet's release): ``<root>/images/<id>.jpg`` and ``<root>/annotations/<id>_exp.npy``
(expression index), ``<id>_val.npy``, ``<id>_aro.npy`` (valence, arousal in [-1, 1]) and
optionally ``<id>_lnd.npy`` (landmarks, unused). AffectNet has no action units: an
``<id>_au.npy`` (the active AU numbers) is read where a user adds one, and the prompt names
AUs only then. Images whose annotation files are missing are skipped; their count is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EXPRESSIONS = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
AU_NAMES = {  # FACS names of the AUs face datasets annotate (Aff-Wild2's 12 and a few more)
    1: "Inner Brow Raiser",
    2: "Outer Brow Raiser",
    4: "Brow Lowerer",
    5: "Upper Lid Raiser",
    6: "Cheek Raiser",
    7: "Lid Tightener",
    9: "Nose Wrinkler",
    10: "Upper Lip Raiser",
    12: "Lip Corner Puller",
    15: "Lip Corner Depressor",
    17: "Chin Raiser",
    20: "Lip Stretcher",
    23: "Lip Tightener",
    24: "Lip Pressor",
    25: "Lips Part",
    26: "Jaw Drop",
}


@dataclass(frozen=True)
class AffectNetImage:
    """One annotated image: its file, expression index, valence, arousal and AUs (may be empty)."""

    path: Path
    expression: int
    valence: float
    arousal: float
    aus: tuple[int, ...] = ()

    def read(self) -> np.ndarray:
        """The image, BGR uint8 (as the face tracks keep their crops)."""
        import cv2

        image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read the image {self.path}")
        return image


def affectnet_prompt(image: AffectNetImage) -> str:
    """Eq. 1: ``"Happy with AU6 (Cheek Raiser) and AU12 (Lip Corner Puller), Valence=0.83,
    Arousal=0.65"``; the AU part only where the image has AUs."""
    aus = " and ".join(f"AU{n} ({AU_NAMES[n]})" if n in AU_NAMES else f"AU{n}" for n in image.aus)
    expression = EXPRESSIONS[image.expression] + (f" with {aus}" if aus else "")
    return f"{expression}, Valence={image.valence:.2f}, Arousal={image.arousal:.2f}"


def _scalar(path: Path) -> str:
    """AffectNet keeps each annotation as a 0-d numpy array, of a string or a number."""
    return str(np.load(path, allow_pickle=False).item())


def read_affectnet(root: Path | str) -> list[AffectNetImage]:
    """The annotated images of an AffectNet-layout folder, sorted by id. Expression indices
    outside AffectNet's eight (its 8 "none", 9 "uncertain", 10 "no face") are skipped, as are
    AffectNet's −2 (no valence/arousal) images."""
    root = Path(root)
    images, notes = root / "images", root / "annotations"
    if not images.is_dir() or not notes.is_dir():
        raise FileNotFoundError(f"{root} is not in AffectNet's layout (images/ and annotations/)")
    found, skipped = [], 0
    for path in sorted(images.glob("*.jpg")):
        files = {kind: notes / f"{path.stem}_{kind}.npy" for kind in ("exp", "val", "aro", "au")}
        if not all(files[kind].is_file() for kind in ("exp", "val", "aro")):
            skipped += 1
            continue
        expression = int(float(_scalar(files["exp"])))
        valence, arousal = float(_scalar(files["val"])), float(_scalar(files["aro"]))
        if not 0 <= expression < len(EXPRESSIONS) or min(valence, arousal) < -1:
            skipped += 1
            continue
        aus = tuple(int(a) for a in np.load(files["au"]).ravel()) if files["au"].is_file() else ()
        found.append(AffectNetImage(path, expression, valence, arousal, aus))
    if skipped:
        log.info(
            "AffectNet %s: %d images skipped (annotations missing or outside its classes)",
            root,
            skipped,
        )
    return found
