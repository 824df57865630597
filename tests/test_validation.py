"""Data tests: validation on a synthetic set with every planted fault."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from mimicflow import EMOTIONS
from mimicflow.cli import app
from mimicflow.config import ValidateParams
from mimicflow.data.faults import FAULTS, PLANTED
from mimicflow.data.layout import load_dataset
from mimicflow.data.validation import validate_dataset

from .conftest import SYNTH_CLIPS


def _outputs(validated):
    summary, out = validated
    manifest = pd.read_parquet(out / "manifest.parquet")
    quarantine = pd.read_csv(out / "quarantine.csv", dtype=str)
    return summary, out, manifest, quarantine


def test_every_planted_fault_lands_where_it_should(validated):
    _, _, manifest, quarantine = _outputs(validated)
    assert list(quarantine.columns) == ["Filename", "reason"]
    for fault in PLANTED:
        reasons = quarantine.loc[quarantine["Filename"] == fault.clip_id, "reason"].tolist()
        in_manifest = fault.clip_id in set(manifest["clip_id"])
        if fault.outcome == "quarantine":
            assert not in_manifest, fault.description
            assert any(fault.reason_words in r for r in reasons), (fault.description, reasons)
        else:
            assert in_manifest, fault.description


def test_every_raw_file_is_in_the_manifest_or_the_quarantine(validated, faulty_root):
    _, _, manifest, quarantine = _outputs(validated)
    for path in (faulty_root / "raw").iterdir():
        name = path.relative_to(faulty_root).as_posix()
        placed = (manifest["video_path"] == name).sum() + (quarantine["Filename"] == name).sum()
        by_id = (quarantine["Filename"] == path.stem).any()  # a quarantined clip: by its id
        assert placed == 1 or (placed == 0 and by_id), name


def test_file_names_of_one_clip_id_are_never_dropped(synth_root, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    clip = (synth_root / "raw" / "00001.mp4").read_bytes()
    names = [
        "00005.mp4",
        "5.mp4",
        "00006.avi",
        "00006.mp4",
        "000004.mp4",
        "0000007.mkv",
        "notes.txt",
    ]
    for name in names:
        (raw / name).write_bytes(clip)
    rows = "".join(f"{i}," + ",".join(["0.5"] * len(EMOTIONS)) + "\n" for i in (4, 5, 6, 7))
    (tmp_path / "train_split.csv").write_text("Filename," + ",".join(EMOTIONS) + "\n" + rows)
    result = validate_dataset(load_dataset(tmp_path), ValidateParams(), workers=1, progress=False)
    kept = dict(zip(result.manifest["clip_id"], result.manifest["video_path"]))
    assert kept == {
        "00004": "raw/000004.mp4",
        "00005": "raw/00005.mp4",
        "00006": "raw/00006.avi",
        "00007": "raw/0000007.mkv",
    }
    assert set(result.manifest["split"]) == {"train"}  # 000004 and 0000007 matched rows 4 and 7
    reasons = dict(zip(result.quarantine["Filename"], result.quarantine["reason"]))
    assert reasons.keys() == {"raw/5.mp4", "raw/00006.mp4", "raw/notes.txt"}
    assert reasons["raw/5.mp4"] == "same clip id (00005) as raw/00005.mp4"
    assert reasons["raw/00006.mp4"] == "same clip id (00006) as raw/00006.avi"
    assert "not a video file" in reasons["raw/notes.txt"]
    assert len(kept) + len(reasons) == len(names)


def test_good_clips_are_never_dropped(validated):
    _, _, manifest, _ = _outputs(validated)
    good = {f"{i:05d}" for i in range(1, SYNTH_CLIPS + 1)}
    assert good <= set(manifest["clip_id"])
    assert manifest["clip_id"].is_unique


def test_usable_faults_carry_their_metadata(validated):
    _, _, manifest, _ = _outputs(validated)
    rows = manifest.set_index("clip_id")
    silent = rows.loc[FAULTS["no_audio"]]
    assert not silent["has_audio"] and silent["audio_source"] == "none"
    assert "audio modality missing" in silent["notes"]
    assert abs(rows.loc[FAULTS["high_fps"], "fps"] - 1000) < 1
    assert rows.loc["00001", "audio_source"] == "clip"  # its own track, though audio/ has one
    assert rows.loc["00001", "sample_rate"] == 16000
    assert len(rows.loc["00001", "sha256"]) == 64


def test_splits_follow_the_label_files(validated, faulty_root):
    _, _, manifest, _ = _outputs(validated)
    train = pd.read_csv(faulty_root / "train_split.csv")
    train_ids = {str(v).zfill(5) for v in train["Filename"]}
    for row in manifest.itertuples():
        if row.clip_id in train_ids:
            assert row.split == "train"
        if row.split == "test":
            assert pd.isna(row.Joy)
    assert {"train", "valid", "test"} <= set(manifest["split"])


def test_gx_suites_and_data_docs(validated):
    summary, out, _, _ = _outputs(validated)
    assert summary["gx_manifest_success"] is True
    assert summary["gx_labels_success"] is False  # the planted label rows
    index = (out / "data_docs" / "index.html").read_text()
    assert "manifest" in index and "labels" in index
    metrics = json.loads((out / "summary.json").read_text())
    assert metrics["quarantined_rows"] == summary["quarantined_rows"] > 0


def test_cli_exit_codes(tmp_path, faulty_root):
    runner = CliRunner()
    unusable = runner.invoke(app, ["validate", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert unusable.exit_code == 2
    assert "does not exist" in unusable.output

    (tmp_path / "raw").mkdir()
    no_labels = runner.invoke(app, ["validate", str(tmp_path), "--out", str(tmp_path / "o")])
    assert no_labels.exit_code == 2 and "no label file" in no_labels.output


def test_stages_before_validate_say_what_to_run(tmp_path, models_dir):
    params = tmp_path / "params.yaml"
    params.write_text(f"validate:\n  out: {tmp_path / 'nothing'}\nmodels:\n  dir: {models_dir}\n")
    for command in (["stage", "faces"], ["stage", "asr"], ["stage", "features", "text"]):
        result = CliRunner().invoke(app, [*command, "--params", str(params)])
        assert result.exit_code == 2, result.output
        assert "run the 'validate' stage first" in result.output


def test_validate_with_out_writes_nothing_outside_it(tmp_path):
    """``mimicflow validate DATASET --out DIR`` in an empty folder: every file it writes is
    under DIR (no reports/index.html in the current folder)."""
    import subprocess
    import sys

    import numpy as np

    from mimicflow import EMOTIONS
    from mimicflow.media import write_video

    dataset, work = tmp_path / "dataset", tmp_path / "work"
    (dataset / "raw").mkdir(parents=True)
    work.mkdir()
    frames = [np.full((64, 64, 3), 20 * i, np.uint8) for i in range(12)]
    for clip in ("00001", "00002"):
        write_video(dataset / "raw" / f"{clip}.mp4", frames, 12, (64, 64))
    pd.DataFrame(
        [{"Filename": f"{c}.mp4", **dict.fromkeys(EMOTIONS, 0.5)} for c in ("00001", "00002")]
    ).to_csv(dataset / "train_split.csv", index=False)
    before = {p for p in tmp_path.rglob("*")}
    result = subprocess.run(
        [sys.executable, "-m", "mimicflow.cli", "validate", str(dataset), "--out", "checked"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert written and all(p.is_relative_to(work / "checked") for p in written), sorted(
        str(p.relative_to(tmp_path)) for p in written if not p.is_relative_to(work / "checked")
    )


def test_a_header_that_understates_the_duration_is_quarantined_too_long(tmp_path):
    """The monitor's and the validate stage's check: decoding stops at validate.max_duration_s
    (5 s here), whichever stream runs past it, and the clip is quarantined as too long."""
    from mimicflow.data.faults import lying_clip

    lying_clip(tmp_path / "video.mkv", 30.0, 2.0)
    lying_clip(tmp_path / "audio.mp4", 4.5, 2.0, audio_s=60.0)
    lying_clip(tmp_path / "fine.mp4", 3.0, 3.0)
    result = validate_dataset(
        load_dataset(tmp_path), ValidateParams(max_duration_s=5.0), progress=False
    )
    reasons = dict(zip(result.quarantine["Filename"], result.quarantine["reason"]))
    assert set(reasons) == {"video", "audio"}, reasons
    assert all(r.startswith("too long: more than 5 s decodes") for r in reasons.values())
    assert result.manifest["clip_id"].tolist() == ["fine"]
