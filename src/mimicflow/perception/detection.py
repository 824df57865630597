"""What every face detector backend returns, whatever model it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Five-point order used throughout (insightface's ``face_align`` layout, image coordinates):
# eye on the image's left, eye on the image's right, nose tip, mouth corner on the image's left,
# mouth corner on the image's right.
FIVE_POINT_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True)
class Detection:
    """One face in one image: box (x0, y0, x1, y1) in pixels, confidence, five landmarks (5, 2)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """Side of the box's bounding square, in pixels."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class FaceDetector(Protocol):
    """A detector loaded once per worker; ``detect`` takes a BGR uint8 image."""

    def detect(self, image: np.ndarray) -> list[Detection]: ...
