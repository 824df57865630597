"""The service's request and response bodies (they make its OpenAPI spec)."""

from __future__ import annotations

import json

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# The loaded ensemble's inputs and their feature widths, set once per worker at start-up.
FEATURE_DIMS: dict[str, int] = {}
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504: features are stored and fed as float16
MAX_FEATURE_CLIPS = 64  # clips per /predict_features request: BentoML's largest batch
STRICT = ConfigDict(strict=True, extra="forbid")  # no "0.1" for 0.1, no "yes" for true, no extras


class InputInfo(BaseModel):
    present: bool = Field(description="the clip has this input (else it was masked out)")
    change: float = Field(
        description="mean absolute change of the six intensities when this "
        "input is removed (0 when absent)"
    )
    share: float = Field(
        description="its share of the clip's changes: sums to 1 over the "
        "present inputs, 0 when absent"
    )


class MemberInfo(BaseModel):
    intensities: dict[str, float] = Field(description="this member's six intensities")
    weights: dict[str, float] = Field(
        description="its weight per emotion (the members' weights sum to 1 for each emotion)"
    )


class FeaturesPrediction(BaseModel):
    intensities: dict[str, float] = Field(description="the six emotions' intensities in [0, 1]")
    inputs: dict[str, InputInfo] = Field(description="per input (feature set) of the model")
    model_version: str
    members: dict[str, MemberInfo] | None = Field(
        None, description="a combination of several systems (ensemble.members): each member's"
    )


class ClipPrediction(FeaturesPrediction):
    transcript: str = Field(description="what the speech says ('' when there is none)")
    duration_s: float


class InputFeatures(BaseModel):
    model_config = STRICT

    values: list[list[float]] = Field(description="T × d feature rows (T may be 0: missing)")
    mask: list[bool] | None = Field(None, description="(T,) rows that hold the input; default: all")

    @model_validator(mode="after")
    def _rectangular(self) -> InputFeatures:
        if len({len(row) for row in self.values}) > 1:
            raise ValueError("values: every row must have the same length")
        if self.mask is not None and len(self.mask) != len(self.values):
            raise ValueError(f"mask has {len(self.mask)} entries for {len(self.values)} rows")
        return self


class PrecomputedFeatures(BaseModel):
    """One clip's precomputed features, per input (as ``mimicflow`` encodes them)."""

    model_config = STRICT

    features: dict[str, InputFeatures]

    @model_validator(mode="after")
    def _matches_model(self) -> PrecomputedFeatures:
        for name, given in self.features.items():
            if name not in FEATURE_DIMS:
                raise ValueError(
                    f"unknown input {name!r}; the model takes {', '.join(sorted(FEATURE_DIMS))}"
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


def features_problem(body: bytes) -> tuple[int, str] | None:
    """Why a ``/predict_features`` body is refused before it is batched, as ``(status,
    message)``, or None: not JSON or not ``{"clips": [...]}`` alone (400), more than
    ``MAX_FEATURE_CLIPS`` clips (413), a clip with no row present in any of the model's
    inputs (422, as ``/predict`` refuses a clip in which nothing was found). Types and
    widths are pydantic's (strict) check after this one."""
    try:
        data = json.loads(body)
    except ValueError:
        return 400, "the body is not valid JSON"
    if not isinstance(data, dict) or set(data) != {"clips"} or not isinstance(data["clips"], list):
        return 400, 'the body must be {"clips": [...]}, nothing else'
    clips = data["clips"]
    if not clips:
        return 422, "nothing to predict from: no clips"
    if len(clips) > MAX_FEATURE_CLIPS:
        return 413, (
            f"too many clips: {len(clips)} (limit {MAX_FEATURE_CLIPS} per request): split the batch"
        )
    for index, clip in enumerate(clips):
        features = clip.get("features") if isinstance(clip, dict) else None
        if isinstance(features, dict) and not any(_present(features.get(m)) for m in FEATURE_DIMS):
            return 422, (
                f"nothing to predict from: clip {index} has no row present in any of "
                f"{', '.join(sorted(FEATURE_DIMS))}"
            )
    return None


def _present(given) -> bool:
    """Whether an input's features hold a present row (malformed ones count: pydantic
    answers them)."""
    if not isinstance(given, dict):
        return given is not None
    values, mask = given.get("values"), given.get("mask")
    if not isinstance(values, list) or not isinstance(mask, list | None):
        return True
    return bool(values) and (mask is None or any(m is not False for m in mask))
