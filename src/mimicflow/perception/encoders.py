"""Frozen encoders that turn a clip's audio, face crops and transcript into feature sequences.

Every encoder takes a batch of inputs from several clips and returns one (T × d) float32
array per input: batching across clips is what keeps a GPU busy. Models load once, by
Hugging Face id or local path exactly as users run them (``AutoModel.from_pretrained``), or
from the catalogue's embedded defaults. ``device="auto"`` picks CUDA when present; on CUDA the
forward passes run under float16 autocast. A model that cannot be loaded here raises
:class:`ModelUnavailable`, whose message is one line saying what to do.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mimicflow.devices import torch_device
from mimicflow.perception.audio import SAMPLE_RATE

# An aligned encoder folder's Stage I projection (its tower's states → eq. 2's space), written
# by the adapt stage (training/alignment.py), read by ``projected: true`` feature sets.
PROJECTION_FILE = "stage1_projection.pt"

CHUNK_SECONDS = 30  # long audio is encoded in windows of this length and concatenated


def resolve_device(device: str) -> str:
    return torch_device(device, "features.device")


def _autocast(device: str):
    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ModelUnavailable(RuntimeError):
    """A model that cannot be loaded as configured. The message is one line saying what to do;
    ``{setting}`` in it stands for the params key of the model's feature set, which
    :meth:`for_set` fills in (``features.sets.<name>`` until then)."""

    def __init__(self, template: str, setting: str = "features.sets.<name>"):
        super().__init__(template.replace("{setting}", setting))
        self.template = template

    def for_set(self, name: str) -> ModelUnavailable:
        return ModelUnavailable(self.template, f"features.sets.{name}")


def _pretrained(loader, model: str | Path, **kwargs):
    """``loader.from_pretrained(model, **kwargs)``. A model that is neither a folder nor in
    the Hugging Face cache while the hub is unreachable, or one whose repository code is
    needed without ``trust_remote_code``, raises :class:`ModelUnavailable`."""
    try:
        return loader.from_pretrained(str(model), **kwargs)
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):
            raise ModelUnavailable(
                f"{model} runs code from its model repository: set "
                "{setting}.trust_remote_code: true to allow it (only for repositories you trust)"
            ) from exc
        if not isinstance(exc, OSError):
            raise
        if Path(model).exists():
            reason = str(exc).strip().splitlines()[0]
            raise ModelUnavailable(f"cannot load the model in {model}: {reason}") from exc
        raise ModelUnavailable(
            f"model {model} is not here (not a folder, not in the Hugging Face cache, and the hub "
            f"did not serve it): run `hf download {model} --local-dir <folder>` on a machine "
            "with access and set {setting}.model to that folder, or copy its Hugging Face cache "
            "(HF_HOME)"
        ) from exc


@dataclass(frozen=True)
class EncoderInfo:
    """What the feature store records beside the arrays."""

    model: str
    layers: tuple[int, ...]
    dim: int
    rate_hz: float | None  # frames per second of the output sequence (None: not time-aligned)


def _layers(layers: int | tuple[int, ...]) -> tuple[int, ...]:
    return tuple(layers) if isinstance(layers, (tuple, list)) else (layers,)


def merge_layers(states, layers: tuple[int, ...], merge: str):
    """The hidden states of ``layers`` (indices into ``states``, one tensor per layer), per
    frame: concatenated in the order given (``concat``) or averaged (``mean``)."""
    import torch

    chosen = [states[k] for k in layers]
    if len(chosen) == 1:
        return chosen[0]
    return torch.cat(chosen, -1) if merge == "concat" else torch.stack(chosen).mean(0)


def layer_states(output) -> tuple:
    """A transformers output's hidden states by layer, the last one as the model outputs it:
    where a final norm follows the last block (wav2vec2-large, ViT), ``hidden_states`` ends
    before it, and layer -1 means the model's output (what the papers take). An output with no
    ``last_hidden_state`` (a causal LM's, e.g. ChatGLM3's ``CausalLMOutputWithPast``) gives its
    ``hidden_states`` as they are."""
    last = getattr(output, "last_hidden_state", None)
    if last is None:
        return tuple(output.hidden_states)
    return (*output.hidden_states[:-1], last)


SEQUENCE_FIRST = ("chatglm",)  # model types whose hidden states are [sequence, batch, width]


def batch_first(states, mask, model_type: str):
    """``states`` as [batch, sequence, width] against the (batch × sequence) ``mask``: a model
    type known to be sequence-first (:data:`SEQUENCE_FIRST`), or states whose leading shape is
    the mask's transposed, are transposed."""
    batch, length = mask.shape
    if model_type in SEQUENCE_FIRST or (batch != length and states.shape[:2] == (length, batch)):
        return states.transpose(0, 1)
    return states


def merged_dim(hidden: int, layers: tuple[int, ...], merge: str) -> int:
    return hidden * len(layers) if merge == "concat" else hidden


# --- audio ---------------------------------------------------------------------------------------


def _chunks(audio: np.ndarray) -> list[np.ndarray]:
    size = CHUNK_SECONDS * SAMPLE_RATE
    return [audio[i : i + size] for i in range(0, max(len(audio), 1), size)]


def window_batches(clips: list[np.ndarray], batch_size: int):
    """Batch-independent batches of audio windows: each clip is cut into windows of at most
    ``CHUNK_SECONDS``, each window padded with silence to the next whole second (its own
    length alone decides how), and only windows of one padded length share a batch. Nothing
    is padded to a neighbour, so a clip encodes the same alone or in any batch.

    Yields ``[(clip index, window index, window length in samples, padded window)]``."""
    windows: dict[int, list] = {}
    for index, audio in enumerate(clips):
        for part, chunk in enumerate(_chunks(audio)):
            padded = max(1, math.ceil(len(chunk) / SAMPLE_RATE)) * SAMPLE_RATE
            window = np.zeros(padded, np.float32)
            window[: len(chunk)] = chunk
            windows.setdefault(padded, []).append((index, part, len(chunk), window))
    for padded in sorted(windows):
        yield from _batches(windows[padded], batch_size)


class WhisperAudioEncoder:
    """Hidden states of an openai-whisper encoder (the embedded default: tiny.en), 50 frames/s.

    ``model``: a CTranslate2 Whisper folder (converted once, see ``asr.converted_checkpoint``),
    an openai-whisper ``.pt``, an adapted folder (``whisper.pt``) or a model name. ``layers``:
    0 = after the convolutional stem, k = after block k, -1 = the final layer norm (what the
    decoder attends to); several are merged per frame (``merge``: concat | mean).
    """

    rate_hz = 50.0

    def __init__(
        self,
        model: str | Path,
        layers: int | tuple[int, ...] = -1,
        merge: str = "concat",
        device: str = "auto",
        batch_size: int = 8,
    ):
        from mimicflow.perception.asr import load_openai_whisper

        self.device = resolve_device(device)
        self.encoder = load_openai_whisper(model, self.device).encoder.eval()
        self.layers, self.merge, self.batch_size = _layers(layers), merge, batch_size
        dim = merged_dim(self.encoder.ln_post.normalized_shape[0], self.layers, merge)
        self.info = EncoderInfo(str(model), self.layers, dim, self.rate_hz)

    def _forward(self, mel):
        import torch.nn.functional as F

        enc = self.encoder
        x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel)))).permute(0, 2, 1)
        x = (x + enc.positional_embedding[: x.shape[1]]).to(x.dtype)
        states = [x]
        for block in enc.blocks:
            x = block(x)
            states.append(x)
        states.append(enc.ln_post(x))
        return merge_layers(states, self.layers, self.merge)

    def states(self, batch: list) -> tuple:
        """One batch of :func:`window_batches`: the states (B × T × d, with gradients where the
        weights take them) and each window's frame count. Mel spectrograms are not padded to
        Whisper's 30 s window (4× less work on short clips); the positional embedding is cut
        to the input's length."""
        import torch
        import whisper

        # whole seconds: 100 mel frames each, an even count for the stride-2 stem
        mels = torch.stack([whisper.log_mel_spectrogram(torch.from_numpy(w)) for *_, w in batch])
        frames = [
            max(1, math.ceil(length / SAMPLE_RATE * self.rate_hz)) for _, _, length, _ in batch
        ]
        return self._forward(mels.to(self.device)), frames

    def encode(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return _encode_windows(self, clips)


class HFAudioEncoder:
    """Any transformers speech encoder (wav2vec2, HuBERT, WavLM …). ``head_outputs``: the
    checkpoint is audEERING's dimensional model (wav2vec2 + regression head, see
    :mod:`mimicflow.perception.emotion_head`), and each frame's head outputs (arousal,
    dominance, valence from the final hidden state) follow the chosen layers' states."""

    def __init__(
        self,
        model: str | Path,
        layers: int | tuple[int, ...] = -1,
        merge: str = "concat",
        device: str = "auto",
        batch_size: int = 8,
        head_outputs: bool = False,
        trust_remote_code: bool = False,
    ):
        from transformers import AutoFeatureExtractor, AutoModel

        self.device = resolve_device(device)
        remote = {"trust_remote_code": trust_remote_code}
        net = _emotion_model(model) if head_outputs else _pretrained(AutoModel, model, **remote)
        self.model = net.to(self.device).eval()
        self.extractor = _pretrained(AutoFeatureExtractor, model, **remote)
        self.layers, self.merge, self.batch_size = _layers(layers), merge, batch_size
        self.head_outputs = head_outputs
        ratio = int(np.prod(getattr(self.model.config, "conv_stride", [320])))
        dim = merged_dim(self.model.config.hidden_size, self.layers, merge)
        dim += self.model.config.num_labels if head_outputs else 0
        self.info = EncoderInfo(str(model), self.layers, dim, SAMPLE_RATE / ratio)

    def states(self, batch: list) -> tuple:
        """One batch of :func:`window_batches` as for Whisper; the silence a window is padded
        with is masked out where the model takes an attention mask."""
        import torch

        inputs = self.extractor(
            [w for *_, w in batch], sampling_rate=SAMPLE_RATE, return_tensors="pt"
        )
        values = inputs["input_values"].to(self.device)
        mask = torch.zeros(values.shape, dtype=torch.long)
        for row, (_, _, length, _) in enumerate(batch):
            mask[row, :length] = 1
        masked = getattr(self.extractor, "return_attention_mask", False)
        extra = {"attention_mask": mask.to(self.device)} if masked else {}
        out = self.model(values, **extra, output_hidden_states=True)
        hidden = merge_layers(layer_states(out), self.layers, self.merge)
        if self.head_outputs:
            hidden = torch.cat([hidden.float(), out.logits.float()], -1)
        lengths = self.model._get_feat_extract_output_lengths(mask.sum(-1))
        return hidden, [max(1, int(length)) for length in lengths]

    def encode(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        return _encode_windows(self, clips)


def _encode_windows(encoder, clips: list[np.ndarray]) -> list[np.ndarray]:
    """Each clip's frames: its windows (:func:`window_batches`) through ``encoder.states``
    without gradients, concatenated."""
    import torch

    outputs: list[dict[int, np.ndarray]] = [{} for _ in clips]
    for batch in window_batches(clips, encoder.batch_size):
        with torch.inference_mode(), _autocast(encoder.device):
            hidden, frames = encoder.states(batch)
        for (index, part, _, _), states, count in zip(batch, hidden.float().cpu().numpy(), frames):
            outputs[index][part] = states[:count]
    return [np.concatenate([parts[k] for k in sorted(parts)]) for parts in outputs]


def _emotion_model(model: str | Path):
    """audEERING's dimensional model, its regression head loaded from the checkpoint (a
    checkpoint without one fails rather than starting the head from random weights)."""
    from transformers import AutoConfig

    from mimicflow.perception.emotion_head import Wav2Vec2EmotionModel

    config = _pretrained(AutoConfig, model)
    needs = (
        "{setting}.head_outputs: true needs a wav2vec2 checkpoint with audEERING's regression "
        "head (audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim)"
    )
    if config.model_type != "wav2vec2":
        raise ModelUnavailable(f"{model} is a {config.model_type} model: {needs}")
    net, info = _pretrained(Wav2Vec2EmotionModel, model, config=config, output_loading_info=True)
    missing = sorted(k for k in info["missing_keys"] if k.startswith("classifier."))
    if missing:
        missing_keys = ", ".join(missing)
        raise ModelUnavailable(f"{model} has no regression head ({missing_keys} missing): {needs}")
    return net


# --- vision --------------------------------------------------------------------------------------


class HFVisualEncoder:
    """Any transformers image encoder (ViT, DINOv2, MAE, CLIP vision …) over aligned face crops:
    one vector per frame, the CLS token (``pooling="cls"``) or the token mean of ``layer``.

    An MAE encoder (``vit_mae``) masks 75 % of patches at random and shuffles them by random
    noise, even at inference: it is loaded with ``mask_ratio`` 0 and fed the identity patch
    order, so every patch is seen, in order, and a crop's features are deterministic."""

    def __init__(
        self,
        model: str | Path,
        layers: int | tuple[int, ...] = -1,
        merge: str = "concat",
        pooling: str = "cls",
        device: str = "auto",
        batch_size: int = 32,
        trust_remote_code: bool = False,
    ):
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        self.device = resolve_device(device)
        remote = {"trust_remote_code": trust_remote_code}
        config = _pretrained(AutoConfig, model, **remote)
        self.mae = config.model_type == "vit_mae"
        if self.mae:
            config.mask_ratio = 0.0
        net = _pretrained(AutoModel, model, config=config, **remote)
        self.processor = _pretrained(AutoImageProcessor, model, **remote)
        self.model = (getattr(net, "vision_model", None) or net).to(self.device).eval()  # CLIP
        self.layers, self.merge, self.batch_size = _layers(layers), merge, batch_size
        self.pooling = pooling
        config = getattr(self.model.config, "vision_config", self.model.config)
        self.info = EncoderInfo(
            str(model), self.layers, merged_dim(config.hidden_size, self.layers, merge), None
        )

    def encode(self, clips: list[list[np.ndarray]]) -> list[np.ndarray]:
        """``clips``: per clip, its RGB crops; returns per clip (frames × d)."""
        import torch

        frames = [(i, f) for i, crops in enumerate(clips) for f in crops]
        outputs: list[list[np.ndarray]] = [[] for _ in clips]
        for batch in _batches(frames, self.batch_size):
            inputs = self.processor(images=[f for _, f in batch], return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device)
            extra = {"noise": self._identity_order(len(pixels))} if self.mae else {}
            with torch.inference_mode(), _autocast(self.device):
                out = self.model(pixel_values=pixels, **extra, output_hidden_states=True)
            states = merge_layers(layer_states(out), self.layers, self.merge)
            pooled = states[:, 0] if self.pooling == "cls" else states.mean(dim=1)
            for (index, _), vector in zip(batch, pooled.float().cpu().numpy()):
                outputs[index].append(vector)
        return [
            np.stack(parts) if parts else np.zeros((0, self.info.dim), np.float32)
            for parts in outputs
        ]

    def _identity_order(self, batch: int):
        """MAE's ``noise`` that keeps every patch in place (patches are sorted by it)."""
        import torch

        patches = self.model.embeddings.patch_embeddings.num_patches
        return torch.arange(patches, dtype=torch.float32, device=self.device).expand(batch, patches)


# --- text ----------------------------------------------------------------------------------------


class HFTextEncoder:
    """Any transformers text encoder over transcripts, from hidden layer(s) ``layers``.

    ``pooling``: "mean" (masked token mean, the sentence-transformers recipe), "cls", "tokens"
    (the whole token sequence) or "sentences" (one mean-pooled vector per sentence of the
    transcript, so a model can weigh what each sentence says). ``normalize`` L2-normalises
    pooled vectors.
    """

    def __init__(
        self,
        model: str | Path,
        layers: int | tuple[int, ...] = -1,
        merge: str = "concat",
        pooling: str = "mean",
        normalize: bool = True,
        device: str = "auto",
        batch_size: int = 32,
        max_tokens: int = 256,
        trust_remote_code: bool = False,
    ):
        from transformers import AutoModel, AutoTokenizer

        self.device = resolve_device(device)
        remote = {"trust_remote_code": trust_remote_code}
        self.model = _pretrained(AutoModel, model, **remote).to(self.device).eval()
        self.tokenizer = _pretrained(AutoTokenizer, model, **remote)
        self.layers, self.merge = _layers(layers), merge
        self.pooling, self.normalize = pooling, normalize
        self.batch_size, self.max_tokens = batch_size, max_tokens
        dim = merged_dim(self.model.config.hidden_size, self.layers, merge)
        self.info = EncoderInfo(str(model), self.layers, dim, None)

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Per text: (1 × d) pooled, (sentences × d) or (tokens × d); empty text gives (0 × d)."""
        if self.pooling != "sentences":
            return self._encode(texts, self.pooling)
        per_text = [split_sentences(t) for t in texts]
        vectors = iter(self._encode([s for sentences in per_text for s in sentences], "mean"))
        return [
            np.concatenate([next(vectors) for _ in sentences])
            if sentences
            else np.zeros((0, self.info.dim), np.float32)
            for sentences in per_text
        ]

    def _encode(self, texts: list[str], pooling: str) -> list[np.ndarray]:
        import torch

        outputs = [np.zeros((0, self.info.dim), np.float32) for _ in texts]
        spoken = [(i, t) for i, t in enumerate(texts) if t.strip()]
        for batch in _batches(spoken, self.batch_size):
            tokens = self.tokenizer(
                [t for _, t in batch],
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode(), _autocast(self.device):
                hidden = layer_states(self.model(**tokens, output_hidden_states=True))
                states = merge_layers(hidden, self.layers, self.merge)
            keep = tokens["attention_mask"].bool()
            states = batch_first(states.float(), keep, self.model.config.model_type)
            mask = keep.unsqueeze(-1).float()
            if pooling == "tokens":  # the real tokens, wherever the tokenizer pads
                pooled = [s[k] for s, k in zip(states, keep)]
            else:
                vectors = (
                    states[torch.arange(len(states)), keep.int().argmax(1)]  # first real token
                    if pooling == "cls"
                    else (states * mask).sum(1) / mask.sum(1)
                )
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                pooled = [v[None] for v in vectors]
            for (index, _), value in zip(batch, pooled):
                outputs[index] = value.cpu().numpy()
        return outputs


def split_sentences(text: str) -> list[str]:
    """A transcript's sentences: split after ``.``, ``!`` or ``?``; blank pieces dropped."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
