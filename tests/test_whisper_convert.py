"""The embedded tiny.en CTranslate2 weights, converted for openai-whisper, and that backend."""

from __future__ import annotations

import struct
import subprocess
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from mimicflow.config import Params
from mimicflow.models.catalogue import catalogue, resolve
from mimicflow.perception.asr import converted_checkpoint, load_asr
from mimicflow.perception.audio import SAMPLE_RATE, decode_audio
from mimicflow.perception.whisper_convert import NotACT2WhisperModel, convert_ct2_to_openai_whisper

from .test_asr import word_error_rate

SENTENCE = "Please call the office tomorrow morning and ask for the weekly report."


@pytest.fixture(scope="module")
def ct2_dir(models_dir):
    """The embedded tiny.en CTranslate2 folder, prepared for the session."""
    return Path(resolve(Params().asr.model, models_dir, catalogue()))


@pytest.fixture(scope="module")
def checkpoint(ct2_dir, tmp_path_factory):
    return convert_ct2_to_openai_whisper(ct2_dir, tmp_path_factory.mktemp("pt") / "tiny.en.pt")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    wav = tmp_path_factory.mktemp("speech") / "sentence.wav"
    spoken = subprocess.run(
        ["espeak-ng", "--stdout", "-v", "en-us", SENTENCE], capture_output=True, check=True
    )
    wav.write_bytes(spoken.stdout)
    return decode_audio(wav)


def test_checkpoint_loads_with_weights_only_and_encodes_like_ctranslate2(
    checkpoint, ct2_dir, speech
):
    import torch
    import whisper
    from faster_whisper import WhisperModel

    stored = torch.load(checkpoint, weights_only=True)
    assert stored["dims"]["n_text_layer"] == 4 and stored["dims"]["n_vocab"] == 51864
    model = whisper.load_model(str(checkpoint), device="cpu")  # weights_only=True inside
    model.set_alignment_heads(stored["alignment_heads"])
    converted_heads = model.alignment_heads.to_dense().clone()
    model.set_alignment_heads(whisper._ALIGNMENT_HEADS["tiny.en"])
    assert torch.equal(converted_heads, model.alignment_heads.to_dense())

    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(speech)))
    with torch.no_grad():
        ours = model.embed_audio(mel[None])[0].numpy()
    assert np.isfinite(ours).all()
    reference = WhisperModel(str(ct2_dir), compute_type="float32", cpu_threads=2)
    theirs = np.array(reference.encode(mel.numpy()))[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-2)


def test_conversion_is_skipped_when_up_to_date(checkpoint, ct2_dir):
    before = checkpoint.stat().st_mtime_ns
    assert convert_ct2_to_openai_whisper(ct2_dir, checkpoint) == checkpoint
    assert checkpoint.stat().st_mtime_ns == before


def test_openai_whisper_backend_matches_faster_whisper(ct2_dir, speech):
    ours = load_asr("openai-whisper", ct2_dir, threads=2)  # converts into the cache
    assert converted_checkpoint(ct2_dir).is_file()
    assert not list(ct2_dir.glob("*.pt"))  # the prepared folder stays as fetched
    theirs = load_asr("faster-whisper", ct2_dir, threads=2)
    transcript, reference = ours.transcribe(speech), theirs.transcribe(speech)
    assert transcript.has_speech and transcript.language == "en"
    assert word_error_rate(SENTENCE, transcript.text) < 0.35, transcript.text
    assert word_error_rate(reference.text, transcript.text) < 0.3, (transcript.text, reference.text)
    words = [w for s in transcript.segments for w in s.words]
    assert words and all(a.start <= b.start for a, b in pairwise(words))
    assert transcript.mean_logprob == pytest.approx(reference.mean_logprob, abs=0.2)
    assert 0 <= transcript.no_speech_prob <= 1

    silent = ours.transcribe(np.zeros(2 * SAMPLE_RATE, np.float32))
    assert (silent.text, silent.has_audio, silent.has_speech) == ("", True, False)
    missing = ours.transcribe(None)
    assert (missing.has_audio, missing.has_speech) == (False, False)


def _ct2_header(spec: str) -> bytes:
    name = spec.encode() + b"\0"
    return struct.pack("<IH", 6, len(name)) + name + struct.pack("<III", 1, 0, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no model.bin"),
        (struct.pack("<IH", 6, 40) + b"cut", "not a readable CTranslate2"),
        (struct.pack("<I", 99), "binary version 99"),
        (_ct2_header("TransformerSpec"), "TransformerSpec, not a Whisper model"),
        (_ct2_header("WhisperSpec"), "lacks the Whisper variable"),
    ],
    ids=["empty folder", "truncated", "future version", "other model", "no weights"],
)
def test_not_a_ct2_whisper_folder_is_a_clear_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "model.bin").write_bytes(content)
    with pytest.raises(NotACT2WhisperModel, match=message):
        convert_ct2_to_openai_whisper(tmp_path, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
