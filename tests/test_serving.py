"""The bento the ``package`` stage builds, served by a real ``bentoml serve`` on 127.0.0.1 and
called with a real HTTP client: good clips, every kind of bad upload and feature, concurrency, the
token, what the server logs."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from mimicflow import EMOTIONS
from mimicflow.cli import app
from mimicflow.data.faults import lying_clip
from mimicflow.data.synth import face_rig, speech
from mimicflow.media import write_audio, write_video

from .helpers.bento import bento_env, package, serve

TOKEN = "test-token-5f2c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT_MB, LIMIT_S = 1, 5  # small limits, so the oversize and too-long uploads stay cheap
LIMIT_PIXELS = 200 * 200  # the test clips are 192x192 or smaller; wide.mp4 is 320x240
FEATURES_MB = 4  # /predict_features body cap


def _mkv(path: Path, frames: list[np.ndarray], audio: np.ndarray) -> None:
    """MPEG-4 video and 16-bit PCM in Matroska."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format="matroska") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(video.encode())
        samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None, :]
        chunk = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = 16000, 0, Fraction(1, 16000)
        container.mux(sound.encode(chunk))
        container.mux(sound.encode())


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    voice = speech.synthesize("I am so happy, this is wonderful news.", "en-us", 50, 160, 120)
    n = int(25 * len(voice) / 16000)
    face = face_rig.FaceAnimator(face_rig.identity_face(2), (192, 192))
    neutral = dict.fromkeys(face_rig.ACTION_UNITS, 0.0)
    frames = [
        face.render(neutral | {"smile": 0.3 + 0.5 * i / n}, 0.0, 0.0, np.zeros(2)) for i in range(n)
    ]
    files = {
        name: folder / name
        for name in (
            "good.mp4",
            "no_audio.mp4",
            "no_face.txt",
            "long.mp4",
            "speech.wav",
            "garbage.mp4",
            "empty.mp4",
            "big.mp4",
            "subtitles.mp4",
            "still.png",
            "blank.mp4",
            "lying.mp4",
            "lying.mkv",
            "long_audio.mp4",
            "wide.mp4",
        )
    }
    write_video(files["good.mp4"], frames, 25, (192, 192), audio=voice)
    write_video(files["no_audio.mp4"], frames, 25, (192, 192))
    _mkv(files["no_face.txt"], [np.full((144, 192, 3), 90, np.uint8)] * n, voice)  # not an mp4
    write_video(
        files["long.mp4"], [np.zeros((48, 64, 3), np.uint8)] * 25 * (LIMIT_S + 2), 25, (64, 48)
    )
    write_audio(files["speech.wav"], voice, 16000)
    rng = np.random.default_rng(0)
    files["garbage.mp4"].write_bytes(rng.bytes(200_000))
    files["empty.mp4"].write_bytes(b"")
    files["subtitles.mp4"].write_text("1\n00:00:01,000 --> 00:00:02,000\nHello\n")  # SubRip: no A/V
    cv2.imwrite(str(files["still.png"]), frames[0])  # one frame: what validate calls too short
    write_video(files["blank.mp4"], [np.full((144, 192, 3), 90, np.uint8)] * 50, 25, (192, 192))
    files["big.mp4"].write_bytes(rng.bytes(int(LIMIT_MB * 2**20 * 1.3)))
    for name in ("lying.mp4", "lying.mkv"):  # the header says 2 s; 12 s (under 1 MB) decode
        lying_clip(files[name], 12.0, 2.0)
    lying_clip(files["long_audio.mp4"], 3.0, 2.0, audio_s=120.0)  # 3 s video, 120 s audio
    write_video(files["wide.mp4"], [np.full((240, 320, 3), 90, np.uint8)] * 25, 25, (320, 240))
    return files


@pytest.fixture(scope="module")
def fetch_trap():
    """An HTTP proxy on 127.0.0.1 that answers every request and records its URL. The server
    runs behind it, so a URL the server fetches lands here (BentoML refuses loopback targets
    but not its proxy); yields (port, the URLs requested)."""
    requested: list[str] = []

    class Trap(BaseHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"x")

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Trap)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield proxy.server_address[1], requested
    proxy.shutdown()


@pytest.fixture(scope="module")
def server(ensemble_dir, models_dir, fetch_trap, tmp_path_factory):
    """``mimicflow stage package`` into a private BentoML home, then ``bentoml serve`` of the
    built bento with a token set, behind ``fetch_trap``; yields (base url, package summary, the
    server's temp dir)."""
    root = tmp_path_factory.mktemp("serving")
    (root / "tmp").mkdir()
    env = bento_env(root, MIMICFLOW_API_TOKEN=TOKEN)
    summary = package(
        root,
        models_dir,
        ensemble_dir,
        env,
        max_upload_mb=LIMIT_MB,
        max_duration_s=LIMIT_S,
        max_frame_pixels=LIMIT_PIXELS,
        max_features_mb=FEATURES_MB,
    )
    env |= {
        "TMPDIR": str(root / "tmp"),
        "HTTP_PROXY": f"http://127.0.0.1:{fetch_trap[0]}",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    stale = root / "tmp" / "mimicflow-request-4194303-gone"  # a killed worker's (no such pid)
    stale.mkdir()
    (stale / "upload").write_bytes(b"x" * 1000)
    with serve(summary["bento"], root, env) as url:
        yield url, summary, root / "tmp"


def _predict(url: str, path: Path, headers: dict | None = None) -> httpx.Response:
    with open(path, "rb") as handle:
        return httpx.post(
            f"{url}/predict",
            files={"file": (path.name, handle)},
            headers=AUTH if headers is None else headers,
            timeout=120,
        )


def test_package_built_and_exported(server):
    _, summary, _ = server
    assert summary["bento"].startswith("mimicflow-emi:")
    assert summary["archive"].endswith(".bento.tar") and summary["archive_mb"] > 50


def test_health_readiness_and_openapi_need_no_token(server):
    url, _, _ = server
    for path in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(url + path).status_code == 200
    spec = httpx.get(f"{url}/docs.json").json()
    assert {"/predict", "/predict_features"} <= set(spec["paths"])
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "file" in json.dumps(body["multipart/form-data"])
    from mimicflow.serving.service import DESCRIPTION

    assert spec["info"]["description"] == DESCRIPTION  # not BentoML's boilerplate README


def test_good_clip(server, clips):
    url, summary, _ = server
    response = _predict(url, clips["good.mp4"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer["intensities"]) == list(EMOTIONS)
    assert all(0.0 <= v <= 1.0 for v in answer["intensities"].values())
    assert {m: i["present"] for m, i in answer["inputs"].items()} == dict.fromkeys(
        summary["inputs"], True
    )
    assert sum(i["share"] for i in answer["inputs"].values()) == pytest.approx(1.0, abs=1e-3)
    assert "wonderful" in answer["transcript"].lower()
    assert 1.5 < answer["duration_s"] < 5
    assert answer["model_version"] == summary["model_version"]


def test_clip_without_audio_is_predicted_with_audio_missing(server, clips):
    url, _, _ = server
    response = _predict(url, clips["no_audio.mp4"])
    assert response.status_code == 200, response.text
    inputs = response.json()["inputs"]
    assert not inputs["audio"]["present"] and inputs["audio"]["share"] == 0.0
    assert inputs["visual"]["present"]
    assert response.json()["transcript"] == ""


def test_clip_without_face_in_another_container_and_name(server, clips):
    url, _, _ = server
    response = _predict(url, clips["no_face.txt"])  # Matroska named .txt: content decides
    assert response.status_code == 200, response.text
    inputs = response.json()["inputs"]
    assert not inputs["visual"]["present"] and inputs["visual"]["share"] == 0.0
    assert inputs["audio"]["present"]


@pytest.mark.parametrize(
    "name, status, words",
    [
        ("garbage.mp4", 415, "not a readable media file"),
        ("empty.mp4", 415, "empty file"),
        ("subtitles.mp4", 422, "no audio or video streams"),
        ("speech.wav", 422, "no video stream"),
        ("long.mp4", 422, "too long"),
        ("still.png", 422, "not a usable clip"),  # the validate stage's own policy
        ("blank.mp4", 422, "nothing to predict from"),  # no face, no audio: no answer about nothing
        ("big.mp4", 413, "too large"),
        # headers that say 2 s: decoding stops once a stream passes the limit
        ("lying.mp4", 422, "clip too long: more than 5 s decodes"),
        ("lying.mkv", 422, "clip too long: more than 5 s decodes"),
        ("long_audio.mp4", 422, "clip too long: more than 5 s decodes"),
        ("wide.mp4", 422, "frames too large: 320x240"),
    ],
)
def test_bad_upload_gets_a_clear_4xx(server, clips, name, status, words):
    url, _, _ = server
    response = _predict(url, clips[name])
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_oversize_upload_without_length_is_cut_off(server, clips):
    url, _, _ = server
    boundary = "mimicflowtest"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    data = clips["big.mp4"].read_bytes()

    def chunks():  # a generator body: sent chunked, no Content-Length
        yield head
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{url}/predict",
        content=chunks(),
        timeout=60,
        headers=AUTH | {"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413 and "too large" in response.json()["error"]


def test_missing_file_field(server):
    url, _, _ = server
    response = httpx.post(f"{url}/predict", files={"other": ("a", b"x")}, headers=AUTH)
    assert response.status_code == 400 and "error" in response.json()


def _multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart body of (field, file name or None for a text part, bytes) parts."""
    boundary = "mimicflowparts"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, AUTH | {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _log_since(server, start: int) -> str:
    return (server[2].parent / "serve.log").read_bytes()[start:].decode(errors="replace")


def _log_size(server) -> int:
    return (server[2].parent / "serve.log").stat().st_size


def test_uploads_only_one_file_part_and_nothing_fetched(server, fetch_trap, clips):
    url, _, _ = server
    clip = clips["good.mp4"].read_bytes()
    link = f"http://clips.example/{clips['good.mp4'].name}".encode()
    start = _log_size(server)
    for parts, words in [
        ([("file", None, b"hello")], "'file' is text, not a file"),
        ([("file", None, link)], "URLs are not fetched"),
        ([("file", "a.mp4", clip), ("file", "b.mp4", clip)], "more than one 'file' part"),
        ([("file", "a.mp4", clip), ("file", None, link)], "'file' is text, not a file"),
        ([("other", None, b"1"), ("file", "a.mp4", clip)], "unexpected field 'other'"),
        ([], "no 'file' part"),
    ]:
        body, headers = _multipart(*parts)
        response = httpx.post(f"{url}/predict", content=body, headers=headers, timeout=60)
        assert response.status_code == 400 and words in response.json()["error"], response.text
    for body, kind in [
        (link, "application/json"),
        (b"file=" + link, "application/x-www-form-urlencoded"),
        (json.dumps({"file": link.decode()}).encode(), "application/json"),
    ]:
        response = httpx.post(f"{url}/predict", content=body, headers=AUTH | {"Content-Type": kind})
        assert response.status_code == 415 and "multipart/form-data" in response.json()["error"]
    assert fetch_trap[1] == []  # the server fetched nothing
    body, headers = _multipart(("file", "a.mp4", clip))
    response = httpx.post(f"{url}/predict", content=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    log = _log_since(server, start)
    assert "refused: 400 more than one 'file' part" in log and "Traceback" not in log


def test_a_client_gone_mid_upload_is_one_log_line(server, clips):
    url, _, _ = server
    body, headers = _multipart(("file", "a.mp4", clips["good.mp4"].read_bytes()))
    port = int(url.rsplit(":", 1)[1])
    start = _log_size(server)
    with socket.create_connection(("127.0.0.1", port)) as connection:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        connection.sendall(
            f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
            f"{len(body)}\r\n{head}\r\n".encode()
            + body[: len(body) // 2]
        )
        time.sleep(0.5)
    deadline = time.monotonic() + 20
    while "disconnected" not in _log_since(server, start) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # anything the worker logs after that line
    log = _log_since(server, start)
    lines = [line for line in log.splitlines() if "disconnected" in line]
    assert len(lines) == 1 and "/predict" in lines[0], log
    assert "Traceback" not in log, log


def test_metrics_need_the_token_when_one_is_set(server):
    url, _, _ = server
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    response = httpx.get(f"{url}/metrics", headers=AUTH)
    assert response.status_code == 200 and "# TYPE" in response.text


def test_token_is_required_when_set(server, clips):
    url, _, _ = server
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = _predict(url, clips["good.mp4"], headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert "token" in response.json()["error"]
    response = httpx.post(f"{url}/predict_features", json={"clips": []})
    assert response.status_code == 401


def test_concurrent_requests_all_answered_identically(server, clips):
    url, _, _ = server
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: _predict(url, clips["good.mp4"]), range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    assert len({json.dumps(r.json()["intensities"]) for r in responses}) == 1


def _features(dims: dict[str, int], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "features": {
            m: {
                "values": rng.normal(0, 1, (4, d)).round(4).tolist(),
                "mask": [True, True, False, True],
            }
            for m, d in dims.items()
        }
    }


def test_predict_features_batched_answers_equal_single_answers(server, ensemble_dir):
    url, _, _ = server
    dims = json.loads((Path(ensemble_dir) / "ensemble.json").read_text())["dims"]
    clips = [_features(dims, seed) for seed in range(8)]
    alone = [
        httpx.post(f"{url}/predict_features", json={"clips": [c]}, headers=AUTH).json()[0]
        for c in clips[:2]
    ]
    with ThreadPoolExecutor(8) as pool:
        batched = list(
            pool.map(
                lambda c: httpx.post(
                    f"{url}/predict_features", json={"clips": [c]}, headers=AUTH, timeout=60
                ),
                clips,
            )
        )
    assert [r.status_code for r in batched] == [200] * 8
    for single, together in zip(alone, batched):
        for emotion in EMOTIONS:
            assert together.json()[0]["intensities"][emotion] == pytest.approx(
                single["intensities"][emotion], abs=1e-5
            )
    missing = {"features": {m: {"values": []} for m in dims}}  # about nothing: as /predict
    response = httpx.post(f"{url}/predict_features", json={"clips": [missing]}, headers=AUTH)
    assert response.status_code == 422 and "nothing to predict from" in response.text
    wrong = {"features": {next(iter(dims)): {"values": [[0.0] * 3]}}}
    response = httpx.post(f"{url}/predict_features", json={"clips": [wrong]}, headers=AUTH)
    assert response.status_code == 400 and "the model takes" in response.text


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} in the answer")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 70000.0, -65505.0])
def test_non_finite_or_float16_overflowing_features_are_a_400(server, ensemble_dir, bad):
    url, _, _ = server
    dims = json.loads((Path(ensemble_dir) / "ensemble.json").read_text())["dims"]
    name = max(dims)
    clip = _features(dims, 0)
    clip["features"][name]["values"][2][1] = bad
    start = _log_size(server)
    response = httpx.post(
        f"{url}/predict_features",
        content=json.dumps({"clips": [clip]}),
        headers=AUTH | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert f"{name}: row 2 holds {bad} (column 1)" in response.text and "float16" in response.text
    assert "Traceback" not in _log_since(server, start)


def test_features_at_float16_limits_or_masked_out_get_finite_answers(server, ensemble_dir):
    url, _, _ = server
    dims = json.loads((Path(ensemble_dir) / "ensemble.json").read_text())["dims"]
    extreme = {
        "features": {
            m: {"values": [[65504.0, -65504.0] * (d // 2) + [0.0] * (d % 2)] * 3}
            for m, d in dims.items()
        }
    }
    half = {m: {"values": [], "mask": []} for m in dims} | {
        max(dims): {"values": [[1.0] * dims[max(dims)]] * 2, "mask": [False, True]}
    }
    payload = {"clips": [extreme, {"features": half}]}
    response = httpx.post(f"{url}/predict_features", json=payload, headers=AUTH)
    assert response.status_code == 200, response.text
    for answer in _strict_json(response.text):
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in answer["intensities"].values())


def _rows(dims: dict[str, int], present: bool = True) -> dict:
    return {"features": {m: {"values": [[0.5] * d], "mask": [present]} for m, d in dims.items()}}


def _hostile_bodies(dims: dict[str, int]) -> list[tuple[str, bytes, str, int, str]]:
    """(name, body, content type, status, words) for each way to send features wrongly."""
    name, width = max(dims), dims[max(dims)]
    row = [0.5] * width

    def one(given) -> bytes:
        return json.dumps({"clips": [{"features": {name: given}}]}).encode()

    json_type = "application/json"
    return [
        (
            "65 clips",
            json.dumps({"clips": [_rows(dims)] * 65}).encode(),
            json_type,
            413,
            "too many clips: 65 (limit 64 per request)",
        ),
        ("no features", b'{"clips": [{"features": {}}]}', json_type, 422, "nothing to predict"),
        ("no rows", one({"values": []}), json_type, 422, "nothing to predict"),
        (
            "all masked",
            json.dumps({"clips": [_rows(dims, False)]}).encode(),
            json_type,
            422,
            "nothing to predict from: clip 0",
        ),
        ("no clips", b'{"clips": []}', json_type, 422, "nothing to predict"),
        ("string value", one({"values": [["0.1", *row[1:]]]}), json_type, 400, "valid number"),
        ("bool value", one({"values": [[True, *row[1:]]]}), json_type, 400, "valid number"),
        ("yes mask", one({"values": [row], "mask": ["yes"]}), json_type, 400, "valid boolean"),
        ("extra key", one({"values": [row], "weights": [1]}), json_type, 400, "Extra inputs"),
        (
            "extra top key",
            json.dumps({"clips": [_rows(dims)], "x": 1}).encode(),
            json_type,
            400,
            "nothing else",
        ),
        (
            "text body",
            json.dumps({"clips": [_rows(dims)]}).encode(),
            "text/plain",
            415,
            "application/json",
        ),
        (
            "over the cap",
            b'{"clips": [' + b" " * (FEATURES_MB * 2**20) + b"]}",
            json_type,
            413,
            f"limit {FEATURES_MB} MB",
        ),
    ]


def test_predict_features_refuses_hostile_bodies_with_a_reason(server, ensemble_dir):
    """Over-size batches, bodies about nothing, loose types, extra keys, other content types
    and bodies over the cap: a 4xx naming the reason, before anything is batched."""
    url, _, _ = server
    dims = json.loads((Path(ensemble_dir) / "ensemble.json").read_text())["dims"]
    start = _log_size(server)
    for name, body, kind, status, words in _hostile_bodies(dims):
        response = httpx.post(
            f"{url}/predict_features",
            content=body,
            headers=AUTH | {"Content-Type": kind},
            timeout=60,
        )
        assert response.status_code == status, (name, response.text)
        assert words in response.text, (name, response.text)
    at_limit = httpx.post(
        f"{url}/predict_features", json={"clips": [_rows(dims)] * 64}, headers=AUTH, timeout=60
    )
    assert at_limit.status_code == 200 and len(at_limit.json()) == 64
    log = _log_since(server, start)
    assert "Traceback" not in log and "overloaded" not in log


def _worker_rss(server) -> dict[int, int]:
    import re

    import psutil

    log = (server[2].parent / "serve.log").read_text()
    pids = {int(p) for p in re.findall(r"worker (\d+) ready", log)}
    return {p: psutil.Process(p).memory_info().rss for p in pids if psutil.pid_exists(p)}


def test_worker_memory_stays_flat_across_large_feature_requests(server, ensemble_dir):
    """20 requests just under the body cap: each worker's RSS after them is within 20 % of its
    RSS after two warm-up requests."""
    url, _, _ = server
    dims = json.loads((Path(ensemble_dir) / "ensemble.json").read_text())["dims"]
    rng = np.random.default_rng(0)
    clip = {"features": {m: {"values": rng.normal(0, 1, (1, d)).tolist()} for m, d in dims.items()}}
    per_clip = len(json.dumps(clip))
    rows = max(1, int(0.9 * FEATURES_MB * 2**20 / 64 / per_clip))
    big = {
        "features": {m: {"values": rng.normal(0, 1, (rows, d)).tolist()} for m, d in dims.items()}
    }
    body = json.dumps({"clips": [big] * 64}).encode()
    assert 0.5 * FEATURES_MB * 2**20 < len(body) <= FEATURES_MB * 2**20

    def send() -> httpx.Response:
        headers = AUTH | {"Content-Type": "application/json"}
        return httpx.post(f"{url}/predict_features", content=body, headers=headers, timeout=300)

    assert [send().status_code for _ in range(2)] == [200, 200]
    warm = _worker_rss(server)
    with ThreadPoolExecutor(2) as pool:
        assert {r.status_code for r in pool.map(lambda _: send(), range(20))} == {200}
    after = _worker_rss(server)
    print({p: (warm[p] // 2**20, after[p] // 2**20) for p in warm})  # MiB, for the report
    assert all(after[p] <= 1.2 * warm[p] for p in warm if p in after), (warm, after)


def test_predict_cli_matches_the_server(server, clips, ensemble_dir):
    url, _, _ = server
    served = _predict(url, clips["good.mp4"]).json()
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(clips["good.mp4"]),
            str(clips["garbage.mp4"]),
            "--json",
            "--ensemble",
            str(ensemble_dir),
        ],
    )
    assert result.exit_code == 1, result.output  # one clip failed
    good, bad = json.loads(result.output.strip().splitlines()[-1])
    assert good["file"] == str(clips["good.mp4"]) and "error" not in good
    for emotion in EMOTIONS:
        assert good["intensities"][emotion] == pytest.approx(
            served["intensities"][emotion], abs=1e-4
        )
    assert good["transcript"] == served["transcript"]
    assert "not a readable media file" in bad["error"] and "intensities" not in bad
    piped = CliRunner().invoke(
        app, ["predict", str(clips["good.mp4"]), "--ensemble", str(ensemble_dir)]
    )
    header, row = piped.output.strip().splitlines()[
        -2:
    ]  # not a terminal: full values, tab-separated
    assert header.split("\t") == ["file", *EMOTIONS, "error"]
    assert row.split("\t")[0] == str(clips["good.mp4"])  # the whole path, not cut to fit
    assert float(row.split("\t")[6]) == pytest.approx(good["intensities"]["Joy"], abs=1e-6)


def test_predict_cli_without_ensemble_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["predict", "x.mp4", "--ensemble", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no ensemble" in result.output


def test_no_upload_or_work_files_left_behind(server, clips):
    """Nor the folder a killed worker left (planted before the server started)."""
    url, _, tmp = server
    _predict(url, clips["good.mp4"])
    _predict(url, clips["garbage.mp4"])
    left = [p for p in tmp.rglob("*") if p.is_file()]
    assert left == [], left


def test_models_load_once_per_worker(server):
    _, _, tmp = server
    log = (tmp.parent / "serve.log").read_text()
    workers = log.count("Service mimicflow initialized")
    assert workers >= 1 and log.count("ready: model") == workers
