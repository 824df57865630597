"""The BentoML service: a raw clip (or precomputed features) in, six intensities out.

``bentoml serve mimicflow-emi:latest`` (the bento the ``package`` stage builds) or, from the
repository, ``bentoml serve mimicflow.serving.service:EMIService``. Each worker loads the
packaged ensemble and the clip chain's models once, runs one warm-up clip, then serves:

- ``POST /predict``: one multipart file part ``file``, any container/codec ffmpeg decodes
  (uploads only: a text ``file`` part, e.g. a URL, is a 400 and nothing is fetched);
- ``POST /predict_features``: ``{"clips": [...]}`` precomputed features (JSON, strict types, at
  most ``MAX_FEATURE_CLIPS`` clips and ``serving.max_features_mb``), adaptively batched (finite
  values within float16's range, else a 400 naming the input and row);
- ``GET /healthz`` ``/livez`` ``/readyz`` (BentoML's), ``GET /docs.json`` (OpenAPI);
- ``GET /metrics`` (Prometheus).

When the variable named by ``serving.token_env`` is set, ``/predict``, ``/predict_features``
and, unless ``serving.guard_metrics`` is false, ``/metrics`` need ``Authorization: Bearer
<token>`` (a Prometheus job sets it with ``authorization: {credentials: <token>}``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import bentoml
import numpy as np
from starlette.responses import JSONResponse

from mimicflow.serving.bundle import MODEL_NAME
from mimicflow.serving.guard import RequestGuard
from mimicflow.serving.schemas import (
    FEATURE_DIMS,
    MAX_FEATURE_CLIPS,
    ClipPrediction,
    FeaturesPrediction,
    PrecomputedFeatures,
)

# BentoML sheds (503 "process is overloaded") a queued /predict_features request whose estimated
# wait exceeds this: at 100 ms, two 64-clip requests at once on 2 cores were already shed.
BATCH_QUEUE_MS = 60_000
REQUEST_PREFIX = "mimicflow-request-"  # + worker pid: each request's (and warm-up's) temp folder
log = logging.getLogger("bentoml.mimicflow")  # BentoML's handlers and format
DESCRIPTION = """\
Emotional Mimicry Intensity: six intensities in [0, 1] (Admiration, Amusement, Determination,
Empathic Pain, Excitement, Joy) for a webcam clip of someone imitating a seed video.

- `POST /predict`: multipart field `file`, a clip in any container/codec ffmpeg decodes.
- `POST /predict_features`: `{"clips": [...]}` precomputed features, batched across requests.
- `GET /readyz`: 200 once a worker has loaded the models; `GET /metrics`: Prometheus.

With the token variable set on the server, both predict endpoints and `/metrics` need
`Authorization: Bearer <token>`. Model: the packaged fold ensemble (`mimicflow-ensemble`); the
image and its packages: the repository's `bentofile.yaml`.
"""


@bentoml.service(
    name="mimicflow",
    description=DESCRIPTION,  # the bento's README and the OpenAPI (/docs.json) description
    workers="cpu_count",  # one single-threaded worker per core; override in BentoML's config
    traffic={"timeout": 300},
)
class EMIService:
    model_ref = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        from mimicflow.inference import Limits
        from mimicflow.serving.bundle import read_bundle

        _remove_stale_work()
        bundle = read_bundle(Path(self.model_ref.path))
        self.ensemble, self.params = bundle.ensemble, bundle.params
        serving = bundle.serving
        self.limits = Limits.of(serving, self.params.validate_)  # validate's policy, as trained
        token = os.environ.get(serving.token_env)
        RequestGuard.configure(
            token,
            self.limits.max_bytes,
            serving.guard_metrics,
            int(serving.max_features_mb * 2**20),
        )
        FEATURE_DIMS.update(self.ensemble.dims)
        made = self._warm_up()
        if made != {m: self.ensemble.dims[m] for m in made}:
            raise RuntimeError(
                f"the packaged encoders make features of widths {made}, the "
                f"ensemble was trained on {self.ensemble.dims}"
            )
        log.info(
            "worker %d ready: model %s (%s), inputs %s, token %s",
            os.getpid(),
            self.model_ref.tag,
            self.ensemble.version,
            FEATURE_DIMS,
            f"required ({serving.token_env})" if token else "not required",
        )

    def _warm_up(self) -> dict[str, int]:
        """One synthetic second through the whole chain: every model loads now, not on the
        first request; returns the feature width of each input."""
        from mimicflow.inference import extract_clip
        from mimicflow.media import write_video

        with tempfile.TemporaryDirectory(prefix=f"{REQUEST_PREFIX}{os.getpid()}-warmup-") as work:
            clip = Path(work) / "warmup.mp4"
            tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)
            frames = [np.full((96, 128, 3), 128, np.uint8)] * 12
            write_video(clip, frames, 12, (128, 96), audio=tone.astype(np.float32))
            inputs = extract_clip(self.params, clip, Path(work), tuple(self.ensemble.inputs))
        return {m: int(values.shape[1]) for m, (values, _) in inputs.features.items()}

    @bentoml.api(route="/predict")
    def predict(self, file: Path) -> ClipPrediction:
        """Six intensities for an uploaded clip (multipart field ``file``)."""
        import av

        from mimicflow.inference import ClipRejected, check_clip, clip_prediction, extract_clip

        with tempfile.TemporaryDirectory(prefix=f"{REQUEST_PREFIX}{os.getpid()}-") as work:
            clip = Path(work) / "upload"  # no extension: the content alone decides the format
            shutil.move(file, clip)
            try:
                info = check_clip(clip, self.limits)
                inputs = extract_clip(
                    self.params,
                    clip,
                    Path(work),
                    tuple(self.ensemble.inputs),
                    info.video_decoded_s,
                )
                answer = clip_prediction(self.ensemble, inputs)
            except ClipRejected as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except av.error.FFmpegError as exc:
                return JSONResponse({"error": f"the clip could not be decoded ({exc})"}, 422)
        return ClipPrediction(**answer)

    @bentoml.api(
        route="/predict_features",
        batchable=True,
        max_batch_size=MAX_FEATURE_CLIPS,
        max_latency_ms=BATCH_QUEUE_MS,
    )
    def predict_features(self, clips: list[PrecomputedFeatures]) -> list[FeaturesPrediction]:
        """Six intensities per clip from precomputed features; requests are batched together."""
        from mimicflow.inference import prediction

        batch = []
        for clip in clips:
            features = {}
            for name, given in clip.features.items():
                values = np.asarray(given.values, np.float32).reshape(-1, FEATURE_DIMS[name])
                mask = np.ones(len(values), bool) if given.mask is None else np.asarray(given.mask)
                features[name] = (values.astype(np.float16), mask)
            batch.append(features)
        return [FeaturesPrediction(**answer) for answer in prediction(self.ensemble, batch)]


def _remove_stale_work() -> None:
    """Remove the request folders of workers that are gone (killed mid-request: their
    ``TemporaryDirectory`` never ran its cleanup), and this worker's own pid's (a reused pid)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{REQUEST_PREFIX}*-*"):
        pid = folder.name.removeprefix(REQUEST_PREFIX).split("-")[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed %s, left by worker %s", folder, pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


EMIService.add_asgi_middleware(RequestGuard)
