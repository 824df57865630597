"""``mimicflow recipe check NAME --estimate``: estimates, not measurements, of what a recipe's
paper flavour needs on one H100 for the whole Hume-Vidmimic2 (≈15k clips, ≈30 h of video).

Each real encoder's parameter count comes from its config: the mirror's or the Hugging Face
cache's where present, else one built here from the architecture's published hyper-parameters
(:data:`ARCHITECTURES`, the same config classes the miniatures use). The formula and its
sources are in docs/recipes.md ("Estimates"):

- GPU memory: weights (2 bytes a parameter in fp16, 4 in fp32) + :data:`ACTIVATIONS` of that
  for a frozen forward pass; an encoder that ``adapt`` trains: :data:`TRAIN_BYTES` a parameter
  (fp32 weights, gradients, AdamW's two moments) + :data:`TRAIN_ACTIVATIONS` of that.
- Time of a transformer pass: 2·N FLOPs a token forward, 6·N forward and backward (Kaplan et al.
  2020, arXiv 2001.08361 §2.1), at :data:`UTILISATION` of the H100's dense fp16 peak
  (:data:`H100_FLOPS`); ASR at faster-whisper's published real-time factor (:data:`ASR_RTF`);
  the fusion head's training at the larger of its FLOPs and :data:`STEP_S` a step.
- With a dry-run's rows (``--costs``), the training time on the dry-run's 2 CPU cores too: its
  train stage's seconds a clip and epoch (the head is the recipe's own; only its inputs are
  narrower), times the dataset's clips, epochs and folds.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from mimicflow.config import Params
from mimicflow.stages.dryrun import DRY_EPOCHS
from mimicflow.weights import cached, hub_id, parameter_count

H100_FLOPS = 989e12  # dense FP16/BF16 tensor-core peak, H100 SXM (NVIDIA H100 datasheet)
UTILISATION = 0.3  # ours: the share of that peak a batched encoder pass reaches
ASR_RTF = 63 / 780  # faster-whisper README: large-v2 fp16, beam 5, 13 min of audio in 63 s
ACTIVATIONS = 0.2  # ours: a frozen forward pass's activations, batch ≤ 32, as a share of weights
TRAIN_BYTES = 16  # fp32 weights + gradients + AdamW's two moments, a parameter
TRAIN_ACTIVATIONS = 0.5  # ours: activations kept for the backward pass, a share of the above
STEP_S = 0.01  # ours: a small head's training step's fixed cost (kernel launches, loading)
AUDIO_HZ = 50  # wav2vec2, HuBERT, WavLM: one frame per 320 samples at 16 kHz
TEXT_TOKENS = 512  # a text set without max_tokens: the longest sequence
DATASET_CLIPS, DATASET_HOURS = 15_000, 30.0  # Hume-Vidmimic2 (../shared/DESIGN.md)

_LARGE = {"hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096}
_SPEECH_LARGE = {**_LARGE, "feat_extract_norm": "layer", "do_stable_layer_norm": True}
_WHISPER = {"d_model": 1280, "encoder_attention_heads": 20, "decoder_attention_heads": 20}
_WHISPER |= {"encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120, "encoder_layers": 32}
_WHISPER |= {"vocab_size": 51866, "num_mel_bins": 128}
# Published config.json hyper-parameters, by hub id: (transformers config class, its arguments);
# the class defaults are the base sizes.
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "THUDM/chatglm3-6b": ("chatglm", {}),
    "Alibaba-NLP/gte-en-mlm-base": ("BertConfig", {"vocab_size": 30528}),  # BERT layout (a)
    "google-bert/bert-base-uncased": ("BertConfig", {}),
    "thenlper/gte-base": ("BertConfig", {}),
    "FacebookAI/roberta-large": (
        "RobertaConfig",
        {**_LARGE, "num_hidden_layers": 24, "vocab_size": 50265, "max_position_embeddings": 514},
    ),
    "facebook/hubert-base-ls960": ("HubertConfig", {}),
    "facebook/wav2vec2-large-lv60": (
        "Wav2Vec2Config",
        {**_SPEECH_LARGE, "num_hidden_layers": 24, "conv_bias": True},
    ),
    "microsoft/wavlm-large": ("WavLMConfig", {**_SPEECH_LARGE, "num_hidden_layers": 24}),
    "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim": (
        "Wav2Vec2Config",
        {**_SPEECH_LARGE, "num_hidden_layers": 12, "conv_bias": True},
    ),
    "facebook/vit-mae-base": ("ViTMAEConfig", {}),
    "google/vit-huge-patch14-224-in21k": (
        "ViTConfig",
        {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16}
        | {"intermediate_size": 5120, "patch_size": 14},
    ),
    "google/vit-base-patch16-224": ("ViTConfig", {}),
    "google/vit-base-patch16-224-in21k": ("ViTConfig", {}),
    "facebook/dinov2-base": ("Dinov2Config", {}),
    "openai/clip-vit-base-patch16": ("CLIPConfig", {"vision_config": {"patch_size": 16}}),
    "Systran/faster-whisper-large-v3": ("WhisperConfig", {**_WHISPER, "decoder_layers": 32}),
    "mobiuslabsgmbh/faster-whisper-large-v3-turbo": (
        "WhisperConfig",
        {**_WHISPER, "decoder_layers": 4},
    ),
}
# ChatGLM3-6B's config.json (THUDM/chatglm3-6b): multi-query attention, SwiGLU, untied output.
CHATGLM3 = {"num_layers": 28, "hidden_size": 4096, "ffn_hidden_size": 13696}
CHATGLM3 |= {"num_attention_heads": 32, "kv_channels": 128, "padded_vocab_size": 65024}
CHATGLM3 |= {"multi_query_attention": True, "multi_query_group_num": 2}


def chatglm_parameters(c: dict) -> int:
    """ChatGLM's parameters from its config keys (its code's GLMBlock: QKV with bias, dense,
    SwiGLU's two matrices, two RMSNorms; embedding, final norm and output layer)."""
    h, ffn, vocab, heads = (
        c["hidden_size"],
        c["ffn_hidden_size"],
        c["padded_vocab_size"],
        c["num_attention_heads"],
    )
    kv = c.get("kv_channels", h // heads)
    groups = c.get("multi_query_group_num", heads) if c.get("multi_query_attention") else heads
    qkv = h + 2 * kv * groups
    block = h * qkv + qkv + h * h + h * 2 * ffn + ffn * h + 2 * h
    return c["num_layers"] * block + 2 * vocab * h + h


@dataclass
class Encoder:
    """One real encoder: its parameters and GPU memory (GB), estimated."""

    key: str
    hub_id: str
    config_from: str  # mirror, cache or architecture (published hyper-parameters)
    parameters: int
    width: int
    gpu_gb_fp16: float
    gpu_gb_fp32: float
    gpu_gb_train: float | None  # where the adapt stage trains it


def _config(repo: str, folder: Path | None, remote: bool):
    """The model's config and where from: ``folder``'s where it holds a transformers config,
    else one built from :data:`ARCHITECTURES`."""
    import transformers

    if folder is not None and (folder / "config.json").is_file():
        try:
            return transformers.AutoConfig.from_pretrained(folder, trust_remote_code=remote), True
        except (OSError, ValueError, KeyError, ImportError):
            pass
    if repo not in ARCHITECTURES:
        raise LookupError(
            f"no architecture known for {repo} (there are: {', '.join(ARCHITECTURES)})"
        )
    name, arguments = ARCHITECTURES[repo]
    if name == "chatglm":
        from mimicflow.perception.standins import ChatGLMConfig

        return ChatGLMConfig(**CHATGLM3), False
    return getattr(transformers, name)(**arguments), False


def _count(config, folder: Path | None, remote: bool) -> int:
    if config.model_type == "chatglm":
        return chatglm_parameters(config.to_dict())
    counted = parameter_count(folder, remote) if folder is not None else None
    if counted is not None:
        return counted
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        return sum(p.numel() for p in AutoModel.from_config(config).parameters())


def _width(config) -> int:
    vision = getattr(config, "vision_config", None)
    return int(getattr(vision or config, "hidden_size", 0) or getattr(config, "d_model", 0))


def encoder(key: str, repo: str, weights: Path | None, remote: bool, trained: bool):
    """The :class:`Encoder` estimate of ``repo`` and its config."""
    mirrored = weights / repo if weights is not None and (weights / repo).is_dir() else None
    folder = mirrored or cached(repo)
    config, read = _config(repo, folder, remote)
    source = "architecture" if not read else "mirror" if folder == mirrored else "cache"
    n = _count(config, folder if read else None, remote)
    gb = n / 1e9
    train = round(gb * TRAIN_BYTES * (1 + TRAIN_ACTIVATIONS), 2) if trained else None
    fp16, fp32 = (round(gb * b * (1 + ACTIVATIONS), 2) for b in (2, 4))
    return Encoder(key, repo, source, n, _width(config), fp16, fp32, train), config


def _tokens(modality: str, config, seconds: float, cut: float | None, images: float) -> float:
    """Tokens (frames, patches, word pieces) the encoder reads for one clip of ``seconds``:
    audio up to ``cut`` seconds, ``images`` face crops, text up to ``cut`` tokens."""
    if modality == "audio":
        return AUDIO_HZ * min(seconds, cut or seconds)
    if modality == "visual":
        vision = getattr(config, "vision_config", None) or config
        return images * ((vision.image_size // vision.patch_size) ** 2 + 1)
    return cut or TEXT_TOKENS


@dataclass
class Estimate:
    """A recipe's estimates for a dataset of ``clips`` clips and ``hours`` hours."""

    clips: int
    hours: float
    encoders: list[Encoder]
    hours_asr: float
    hours_adapt: dict[str, float]
    hours_features: dict[str, float]
    head_parameters: int
    hours_train_h100: float
    hours_train_cpu: float | None  # from a dry-run's measured train stage

    def as_dict(self) -> dict:
        totals = self.hours_asr + sum(self.hours_adapt.values())
        totals += sum(self.hours_features.values()) + self.hours_train_h100
        return {
            "label": "estimates (not measurements); formula in docs/recipes.md",
            "dataset": {"clips": self.clips, "hours": self.hours},
            "assumptions": ASSUMPTIONS,
            **{k: v for k, v in asdict(self).items() if k not in ("clips", "hours")},
            "hours_total_h100": _sig(totals),
        }


ASSUMPTIONS = {
    "h100_flops": H100_FLOPS,
    "utilisation": UTILISATION,
    "asr_real_time_factor": round(ASR_RTF, 4),
    "activations_share": ACTIVATIONS,
    "train_bytes_per_parameter": TRAIN_BYTES,
    "train_activations_share": TRAIN_ACTIVATIONS,
    "step_seconds": STEP_S,
    "audio_frames_per_second": AUDIO_HZ,
}


def _hours(flops: float) -> float:
    return _sig(flops / (H100_FLOPS * UTILISATION) / 3600)


def _sig(hours: float) -> float:
    return float(f"{hours:.4g}")


def dry_run_cost(rows: list[dict]) -> float:
    """Seconds a clip and epoch of a dry-run's train stage (``recipe dry-run --json`` rows)."""
    by_stage = {r["stage"]: r for r in rows}
    clips = sum(int(n) for n in re.findall(r"(\d+)", by_stage["data"]["outputs"]))
    folds = len(re.findall(r"fold \d+", by_stage["train"]["outputs"])) or 1
    return by_stage["train"]["seconds"] / (clips * DRY_EPOCHS * folds)


def estimate(
    params: Params,
    weights: Path | None,
    clips: int = DATASET_CLIPS,
    hours: float = DATASET_HOURS,
    costs: Path | None = None,
) -> Estimate:
    """The estimates for ``params`` (a recipe's paper flavour merged into the defaults)."""
    seconds = hours * 3600 / clips  # a clip's mean duration
    adapted = params.adapt.out
    trained = {entry.model for entry in params.adapt.encoders.values()}
    encoders, configs = [], {}
    entries = [(f"adapt.encoders.{n}", e) for n, e in params.adapt.encoders.items()]
    entries += [(f"features.sets.{n}", s) for n, s in params.features.sets.items()]
    for key, spec in entries:
        repo = hub_id(f"{key}.model", spec.model, adapted)
        if repo is None or repo in configs:
            continue
        remote = bool(getattr(spec, "trust_remote_code", False))
        enc, config = encoder(f"{key}.model", repo, weights, remote, repo in trained)
        encoders.append(enc)
        configs[repo] = (config, enc)
    asr = hub_id("asr.model", params.asr.model, adapted)
    if asr is not None:
        encoders.append(encoder("asr.model", asr, weights, False, False)[0])
    hours_adapt = {}
    for name, entry in params.adapt.encoders.items():
        config, enc = configs[entry.model]
        images = getattr(entry, "frames", 0)
        per_clip = _tokens(entry.modality, config, seconds, entry.audio_cut_s, images)
        hours_adapt[name] = _hours(6 * enc.parameters * per_clip * clips * entry.epochs)
    hours_features, dims = {}, {}
    for name, spec in params.features.sets.items():
        source = _source(spec.model, params)
        if source not in configs:
            dims[name] = 64  # a set computed here (motion, measures): no encoder, 64 wide assumed
            continue
        config, enc = configs[source]
        cut = spec.audio_cut_s if spec.modality == "audio" else spec.max_tokens
        images = params.faces.fps * seconds
        per_clip = _tokens(spec.modality, config, seconds, cut, images)
        hours_features[name] = _hours(2 * enc.parameters * per_clip * clips)
        layers = spec.layers if isinstance(spec.layers, (list, tuple)) else [spec.layers]
        dims[name] = enc.width * (len(layers) if spec.layer_merge == "concat" else 1)
    head, train_h100 = _training(params, dims, clips)
    cpu = None
    if costs is not None:
        cpu = dry_run_cost(json.loads(Path(costs).read_text())) * clips * _passes(params) / 3600
    return Estimate(
        clips,
        hours,
        encoders,
        _sig(ASR_RTF * hours),
        hours_adapt,
        hours_features,
        head,
        train_h100,
        cpu and _sig(cpu),
    )


def _source(model: str, params: Params) -> str:
    """The hub id behind a feature set's model (an adapt entry's output: the entry's model)."""
    prefix = params.adapt.out.as_posix().rstrip("/") + "/"
    if model.startswith(prefix):
        entry = params.adapt.encoders.get(model[len(prefix) :])
        return entry.model if entry is not None else model
    return model


def _passes(params: Params) -> int:
    """Epochs × folds the train stage runs (protocol final: the official run, then again)."""
    train = params.train
    return train.epochs * len(train.folds) * (2 if train.protocol == "final" else 1)


def _training(params: Params, dims: dict[str, int], clips: int) -> tuple[int, float]:
    """The fusion head's parameters for the real widths, and its training hours on an H100."""
    from mimicflow.fusion.systems import system

    train = params.train
    spec = system(train.system)
    inputs = {n: dims.get(n, 64) for n in train.inputs}
    kinds = {n: params.features.sets[n].modality for n in train.inputs}
    model = spec.build(inputs, kinds, **spec.hyper_of(train.system_params()))
    n = sum(p.numel() for p in model.parameters())
    frames = sum(train.frames.get(name, 1) for name in train.inputs)
    flops = 6 * n * frames * clips * _passes(params)
    steps = math.ceil(clips / train.batch_size) * _passes(params)
    return n, _sig(max(flops / (H100_FLOPS * UTILISATION), steps * STEP_S) / 3600)
