"""The service's request and response bodies (they make its OpenAPI spec)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field, model_validator

# The loaded ensemble's modalities and feature widths, set once per worker at start-up.
FEATURE_DIMS: dict[str, int] = {}
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504: features are stored and fed as float16


class ModalityInfo(BaseModel):
    present: bool = Field(description="the clip has this modality (else it was masked out)")
    change: float = Field(
        description="mean absolute change of the six intensities when this "
        "modality is removed (0 when absent)"
    )
    share: float = Field(
        description="its share of the clip's changes: sums to 1 over the "
        "present modalities, 0 when absent"
    )


class FeaturesPrediction(BaseModel):
    intensities: dict[str, float] = Field(description="the six emotions' intensities in [0, 1]")
    modalities: dict[str, ModalityInfo]
    model_version: str


class ClipPrediction(FeaturesPrediction):
    transcript: str = Field(description="what the speech says ('' when there is none)")
    duration_s: float


class ModalityFeatures(BaseModel):
    values: list[list[float]] = Field(description="T × d feature rows (T may be 0: missing)")
    mask: list[bool] | None = Field(
        None, description="(T,) rows that hold the modality; default: all"
    )

    @model_validator(mode="after")
    def _rectangular(self) -> ModalityFeatures:
        if len({len(row) for row in self.values}) > 1:
            raise ValueError("values: every row must have the same length")
        if self.mask is not None and len(self.mask) != len(self.values):
            raise ValueError(f"mask has {len(self.mask)} entries for {len(self.values)} rows")
        return self


class PrecomputedFeatures(BaseModel):
    """One clip's precomputed features, per modality (as ``mimicflow`` encodes them)."""

    features: dict[str, ModalityFeatures]

    @model_validator(mode="after")
    def _matches_model(self) -> PrecomputedFeatures:
        for name, given in self.features.items():
            if name not in FEATURE_DIMS:
                raise ValueError(
                    f"unknown modality {name!r}; the model takes {', '.join(sorted(FEATURE_DIMS))}"
                )
            if given.values and len(given.values[0]) != FEATURE_DIMS[name]:
                raise ValueError(
                    f"{name}: rows have {len(given.values[0])} values, the model "
                    f"takes {FEATURE_DIMS[name]}"
                )
            values = np.asarray(given.values, np.float64)
            bad = ~(np.abs(values) <= FLOAT16_MAX)  # NaN compares False: caught here too
            if bad.any():
                row, column = map(int, np.argwhere(bad)[0])
                raise ValueError(
                    f"{name}: row {row} holds {values[row, column]} (column "
                    f"{column}); features must be finite numbers within "
                    f"float16's range, |x| <= {FLOAT16_MAX:g}"
                )
        return self
