"""CTranslate2 (faster-whisper) Whisper model folder → openai-whisper checkpoint.

The CTranslate2 ``model.bin`` (layout: ``ctranslate2/specs/model_spec.py``, ``_serialize``) is read
with numpy alone; its variables are renamed to the openai-whisper state dict, fused projections are
split, and the result is saved as ``{"dims", "model_state_dict", "alignment_heads"}``, which
``whisper.load_model`` loads. ``alignment_heads`` is the dump ``Whisper.set_alignment_heads`` takes;
``load_model`` ignores it for a path, so a loader sets it (see ``asr.OpenAIWhisperASR``).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import struct
from pathlib import Path

import numpy as np

SUPPORTED_BINARY_VERSIONS = range(4, 7)  # name/revision, aliases and type ids: versions 4 to 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # ctranslate2 ids
_BFLOAT16 = 5


class NotACT2WhisperModel(ValueError):
    """The folder or file is not a (float) CTranslate2 Whisper model."""


def read_ct2_model(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """Read a CTranslate2 ``model.bin``: (spec name, variable name → array), aliases resolved."""
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def text() -> str:
        nonlocal offset
        size = take("H")
        value = data[offset : offset + size - 1].decode("utf-8")
        offset += size
        return value

    try:
        version = take("I")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise NotACT2WhisperModel(
                f"{path}: CTranslate2 binary version {version} is not supported "
                f"(expected {SUPPORTED_BINARY_VERSIONS.start}–{SUPPORTED_BINARY_VERSIONS.stop - 1})"
            )
        spec, _revision = text(), take("I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(take("I")):
            name, rank = text(), take("B")
            shape = [take("I") for _ in range(rank)]
            type_id, size = take("B"), take("I")
            if (type_id not in _DTYPES and type_id != _BFLOAT16) or offset + size > len(data):
                raise NotACT2WhisperModel(
                    f"{path}: variable {name!r} has a bad type id ({type_id}) or size ({size})"
                )
            raw = data[offset : offset + size]
            offset += size
            if type_id == _BFLOAT16:  # the upper half of a float32
                array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, _DTYPES[type_id]).copy()
            variables[name] = array.reshape(shape)
        for _ in range(take("I")):
            alias, target = text(), text()
            variables[alias] = variables[target]
    except NotACT2WhisperModel:
        raise
    except (struct.error, UnicodeDecodeError, ValueError, KeyError) as exc:
        raise NotACT2WhisperModel(f"{path} is not a readable CTranslate2 model.bin: {exc}") from exc
    return spec, variables


def _layer_count(variables: dict[str, np.ndarray], stack: str) -> int:
    pattern = re.compile(rf"{stack}/layer_(\d+)/")
    return len({m.group(1) for name in variables if (m := pattern.match(name))})


class _StateMapper:
    """Copies CTranslate2 WhisperSpec variables into an openai-whisper state dict."""

    def __init__(self, variables: dict[str, np.ndarray]):
        self.variables, self.state = variables, {}

    def linear(self, src: str, dst: str) -> None:
        self.state[f"{dst}.weight"] = self.variables[f"{src}/weight"]
        self.state[f"{dst}.bias"] = self.variables[f"{src}/bias"]

    def norm(self, src: str, dst: str) -> None:
        self.state[f"{dst}.weight"] = self.variables[f"{src}/gamma"]
        self.state[f"{dst}.bias"] = self.variables[f"{src}/beta"]

    def fused(self, src: str, dst: str, parts: tuple[str, ...]) -> None:
        weights = np.split(self.variables[f"{src}/weight"], len(parts))
        biases = np.split(self.variables[f"{src}/bias"], len(parts))
        for part, weight, bias in zip(parts, weights, biases, strict=True):
            self.state[f"{dst}.{part}.weight"] = weight
            if part != "key":
                self.state[f"{dst}.{part}.bias"] = bias
            elif np.any(bias):  # openai-whisper's key projection has no bias
                raise NotACT2WhisperModel(f"{src}: the key bias is not zero")

    def layer(self, stack: str, i: int) -> None:
        src, dst = f"{stack}/layer_{i}", f"{stack}.blocks.{i}"
        self.fused(f"{src}/self_attention/linear_0", f"{dst}.attn", ("query", "key", "value"))
        self.linear(f"{src}/self_attention/linear_1", f"{dst}.attn.out")
        self.norm(f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        if stack == "decoder":
            self.linear(f"{src}/attention/linear_0", f"{dst}.cross_attn.query")
            self.fused(f"{src}/attention/linear_1", f"{dst}.cross_attn", ("key", "value"))
            self.linear(f"{src}/attention/linear_2", f"{dst}.cross_attn.out")
            self.norm(f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        self.linear(f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        self.linear(f"{src}/ffn/linear_1", f"{dst}.mlp.2")
        self.norm(f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")


def to_openai_whisper(variables: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """Map CTranslate2 WhisperSpec variables to openai-whisper (dims, state dict)."""
    mapper = _StateMapper(variables)
    state = mapper.state
    for stack in ("encoder", "decoder"):
        for i in range(_layer_count(variables, stack)):
            mapper.layer(stack, i)
    for conv in ("conv1", "conv2"):
        mapper.linear(f"encoder/{conv}", f"encoder.{conv}")
    state["encoder.positional_embedding"] = variables["encoder/position_encodings/encodings"]
    mapper.norm("encoder/layer_norm", "encoder.ln_post")
    embedding = variables["decoder/embeddings/weight"]
    state["decoder.token_embedding.weight"] = embedding
    state["decoder.positional_embedding"] = variables["decoder/position_encodings/encodings"]
    mapper.norm("decoder/layer_norm", "decoder.ln")
    if not np.array_equal(variables.get("decoder/projection/weight", embedding), embedding):
        raise NotACT2WhisperModel("the output projection is not tied to the token embedding")

    dims = {
        "n_mels": variables["encoder/conv1/weight"].shape[1],
        "n_audio_ctx": state["encoder.positional_embedding"].shape[0],
        "n_audio_state": state["encoder.positional_embedding"].shape[1],
        "n_audio_head": variables["encoder/num_heads"].item(),
        "n_audio_layer": _layer_count(variables, "encoder"),
        "n_vocab": embedding.shape[0],
        "n_text_ctx": state["decoder.positional_embedding"].shape[0],
        "n_text_state": embedding.shape[1],
        "n_text_head": variables["decoder/num_heads"].item(),
        "n_text_layer": _layer_count(variables, "decoder"),
    }
    return {k: int(v) for k, v in dims.items()}, state


def alignment_heads_dump(heads: list[list[int]], n_text_layer: int, n_text_head: int) -> bytes:
    """(layer, head) pairs as the base85/gzip mask dump ``Whisper.set_alignment_heads`` takes."""
    mask = np.zeros((n_text_layer, n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def convert_ct2_to_openai_whisper(ct2_dir: Path, out_file: Path) -> Path:
    """Convert a CTranslate2 Whisper folder to an openai-whisper checkpoint at ``out_file``.

    Weights keep their stored precision (fp16 for faster-whisper models). Skipped when
    ``out_file`` is newer than ``model.bin`` and ``config.json``; written atomically, so
    concurrent workers never read half a file. Raises ``NotACT2WhisperModel`` for anything else.
    """
    ct2_dir, out_file = Path(ct2_dir), Path(out_file)
    model_bin, config_file = ct2_dir / "model.bin", ct2_dir / "config.json"
    if not model_bin.is_file():
        raise NotACT2WhisperModel(f"{ct2_dir} is not a CTranslate2 model folder (no model.bin)")
    sources = [p for p in (model_bin, config_file) if p.is_file()]
    if out_file.is_file() and out_file.stat().st_mtime > max(p.stat().st_mtime for p in sources):
        return out_file

    spec, variables = read_ct2_model(model_bin)
    if spec != "WhisperSpec":
        raise NotACT2WhisperModel(f"{model_bin} holds a {spec}, not a Whisper model")
    quantized = sorted(n for n in variables if n.endswith("_scale"))
    if quantized:
        raise NotACT2WhisperModel(
            f"{model_bin} is quantized ({quantized[0]}, …); convert it again with "
            "--quantization float16 or float32"
        )
    try:
        dims, state = to_openai_whisper(variables)
    except KeyError as exc:
        raise NotACT2WhisperModel(f"{model_bin} lacks the Whisper variable {exc}") from exc

    import torch

    # copies: split q/k/v views would otherwise save (and share) the whole fused storage
    tensors = {name: torch.from_numpy(array.copy()) for name, array in state.items()}
    checkpoint = {"dims": dims, "model_state_dict": tensors}
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if config.get("alignment_heads"):
        checkpoint["alignment_heads"] = alignment_heads_dump(
            config["alignment_heads"], dims["n_text_layer"], dims["n_text_head"]
        )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    partial = out_file.with_name(f"{out_file.name}.{os.getpid()}.partial")
    try:
        torch.save(checkpoint, partial)
        os.replace(partial, out_file)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out_file
