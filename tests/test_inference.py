"""Served = evaluated: one clip through ``mimicflow.inference`` gets the features the stages
stored for it, and the ensemble's answer for it equals the pipeline's prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mimicflow import EMOTIONS
from mimicflow.data.faults import FAULTS
from mimicflow.features.store import FeatureTable
from mimicflow.inference import ClipRejected, Limits, check_clip, extract_clip, predict_clips
from mimicflow.training.ensemble import load_ensemble

NO_AUDIO, THOUSAND_FPS = FAULTS["no_audio"], FAULTS["high_fps"]


def _manifest(params) -> pd.DataFrame:
    return pd.read_parquet(params.validate_.out / "manifest.parquet").set_index("clip_id")


@pytest.mark.parametrize("clip_id", ["00001", NO_AUDIO, THOUSAND_FPS])
def test_single_clip_features_equal_the_stored_ones(featured, clip_id, tmp_path):
    params, _ = featured
    row = _manifest(params).loc[clip_id]
    inputs = extract_clip(params, Path(params.data.root) / row.video_path, tmp_path)
    assert inputs.has_audio == bool(row.has_audio) == inputs.present_inputs["audio"]
    for name, (values, mask) in inputs.features.items():
        stored_values, stored_mask = FeatureTable.open(params.features.out / name).get(clip_id)
        assert values.dtype == np.float16
        assert np.array_equal(mask, stored_mask), name
        np.testing.assert_allclose(
            values.astype(np.float32), stored_values.astype(np.float32), atol=2e-3, err_msg=name
        )


def test_every_clip_is_heard_from_its_own_track(featured):
    """One audio policy: the organisers' audio/<id>.mp3 only where the video has no track."""
    params, _ = featured
    manifest = _manifest(params)
    assert (manifest["audio_source"] == "clip").sum() >= len(manifest) - 2
    assert set(manifest["audio_source"]) <= {"clip", "file", "none"}
    assert (
        manifest.loc[manifest["audio_source"] == "file", "notes"].str.contains("no audio track")
    ).all()


def test_served_intensities_equal_the_pipeline_predictions(featured, ensemble_dir):
    """The ensemble's prediction for a dataset clip is the same through ``predict_clips`` (the
    CLI and the endpoint) as from the feature store (the ensemble stage, the submission)."""
    params, _ = featured
    manifest = _manifest(params)
    ensemble = load_ensemble(ensemble_dir)
    clip_ids = [*[c for c in manifest.index if manifest.loc[c, "split"] == "test"][:5], NO_AUDIO]
    stored = ensemble.predict_store(params.features.out, clip_ids).set_index("clip_id")
    served = predict_clips(
        ensemble, [Path(params.data.root) / manifest.loc[c, "video_path"] for c in clip_ids]
    )
    answered = [c for c, answer in zip(clip_ids, served) if "error" not in answer]
    for clip_id, answer in zip(clip_ids, served):  # refused only where there is nothing to go on
        if "error" in answer:
            assert "nothing to predict from" in answer["error"]
            tables = {m: FeatureTable.open(params.features.out / m) for m in ensemble.inputs}
            assert not any(t.get(clip_id)[1].any() for t in tables.values())
    assert len(answered) >= 3
    served_values = np.array(
        [[a["intensities"][e] for e in EMOTIONS] for a in served if "error" not in a]
    )
    np.testing.assert_allclose(
        served_values, stored.loc[answered, list(EMOTIONS)].to_numpy(), atol=1e-3
    )
    assert np.ptp(served_values, 0).max() > 5e-3  # the clips differ by more than the tolerance


def test_check_clip_sniffs_content(tmp_path):
    text = tmp_path / "clip.mp4"
    text.write_text("not a video")
    with pytest.raises(ClipRejected, match="not a readable media file") as raised:
        check_clip(text)
    assert raised.value.status == 415


def test_check_clip_applies_the_validate_policy(tmp_path):
    """A still image is no clip: served clips meet the validate stage's own minimum duration."""
    import cv2

    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    with pytest.raises(ClipRejected, match=r"too short|no decodable") as raised:
        check_clip(image, Limits())
    assert raised.value.status == 422


@pytest.mark.parametrize(
    "name, run_s, audio_s",
    [("video.mp4", 30.0, None), ("video.mkv", 30.0, None), ("long_audio.mp4", 4.5, 60.0)],
)
def test_a_header_that_understates_the_duration_is_refused_while_decoding(
    tmp_path, name, run_s, audio_s
):
    """The header says 2 s; a stream runs 30 or 60 s: decoding stops at the limit (5 s here)
    instead of running to the end, and the clip is too long."""
    from mimicflow.data.faults import lying_clip
    from mimicflow.media import probe_media

    clip = lying_clip(tmp_path / name, run_s, 2.0, audio_s)
    header = probe_media(clip, decode=False).claimed_duration_s
    assert header == pytest.approx(2.0, abs=0.1)
    with pytest.raises(ClipRejected, match="clip too long: more than 5 s decodes") as raised:
        check_clip(clip, Limits(max_duration_s=5.0))
    assert raised.value.status == 422 and "header claims 2.0 s" in str(raised.value)
    stopped = probe_media(clip, stop_after_s=5.0)
    assert stopped.stopped_at_s == 5.0 and stopped.decoded_duration_s < 6.0
    whole = probe_media(clip)  # without a limit, every second decodes
    assert whole.stopped_at_s is None and whole.decoded_duration_s >= min(run_s, audio_s or run_s)


def test_frames_above_the_pixel_limit_are_refused_from_the_header(tmp_path):
    from mimicflow.media import write_video

    clip = tmp_path / "wide.mp4"
    write_video(clip, [np.zeros((64, 256, 3), np.uint8)] * 10, 10, (256, 64))
    with pytest.raises(ClipRejected, match=r"frames too large: 256x64") as raised:
        check_clip(clip, Limits(max_pixels=128 * 64))
    assert raised.value.status == 422
    assert check_clip(clip, Limits(max_pixels=256 * 64)).n_frames == 10
