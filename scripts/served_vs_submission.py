"""Served = evaluated, on the pipeline's own outputs: every clip of the submission predicted again
through ``mimicflow.inference`` (what ``mimicflow predict`` and the endpoint run), compared with
its submission row. Run after ``make demo`` (or ``dvc repro ensemble``):

    python scripts/served_vs_submission.py [--params params.yaml] [--limit N]

Prints the number of clips compared, those refused (nothing found in them), and the largest and
mean absolute difference of the intensities.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mimicflow import EMOTIONS
from mimicflow.config import load_params
from mimicflow.inference import Limits, predict_clips
from mimicflow.paths import StagePaths
from mimicflow.training.ensemble import load_ensemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    args = parser.parse_args()
    params = load_params(args.params)
    paths = StagePaths(params)
    submission = pd.read_csv(paths.reports / "submission.csv", dtype={"Filename": str})
    submission = submission.head(args.limit) if args.limit else submission
    manifest = paths.read_manifest().set_index("clip_id")
    ensemble = load_ensemble(paths.ensemble)
    videos = [
        Path(params.data.root) / manifest.loc[c, "video_path"] for c in submission["Filename"]
    ]
    served = predict_clips(ensemble, videos, Limits.from_params(ensemble.params), progress=True)
    answered = [i for i, a in enumerate(served) if "error" not in a]
    values = np.array([[served[i]["intensities"][e] for e in EMOTIONS] for i in answered])
    stored = submission.iloc[answered][list(EMOTIONS)].to_numpy()
    difference = np.abs(values - stored).max(1)
    print(
        json.dumps(
            {
                "clips": len(submission),
                "compared": len(answered),
                "refused": {
                    submission["Filename"].iloc[i]: a["error"]
                    for i, a in enumerate(served)
                    if "error" in a
                },
                "max_abs_difference": float(difference.max()) if len(difference) else None,
                "mean_abs_difference": float(np.abs(values - stored).mean())
                if len(difference)
                else None,
                "clips_over_1e-3": int((difference > 1e-3).sum()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
