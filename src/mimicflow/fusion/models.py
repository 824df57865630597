"""The published EMI systems as torch modules with one interface.

Every model is built for named inputs (feature sets) of known widths (``dims``: name → d) and
modalities (``kinds``: name → audio | visual | text | egemaps | vit | wav2vec2; a system picks
each input's branch by its modality, and takes any number of inputs per modality).
Every model takes ``inputs``: name → (x: B × T × d, mask: B × T bool) and returns a dict with
``pred`` (B × 6 in [0, 1]) and, where the system has them, ``embeddings`` (modality → B × h) and
``weights`` (B × modalities: each modality's share of the fusion). A modality missing for a clip
is an all-False mask row: it is left out of that clip's fusion, never fed in as zeros; padding
never enters a recurrent state (sequences are packed) nor a pooled mean (masked). Every system
first standardises each input feature with the training fold's mean and standard deviation,
held as buffers so they travel with the weights (:func:`fit_input_scaling`).

- ``fuxi`` (ABAW6 winner): per modality 2 BiGRU layers + LayerNorm + linear, linear to 256;
  average late fusion; dropout; two FC; sigmoid. Trained with a text-anchored triplet loss and EMA.
- ``ustc`` (ABAW8 runner-up): per input a sequence (TCN for vision, a gated BiLSTM over
  [h_t ; h_t − h_{t−1}] for audio, a projection for text), segment average pooling after it, an
  MLP mapping layer, per-step quality-aware weights (QAM), the inputs' weighted steps
  concatenated along time into a multi-layer Transformer encoder.
- ``augsburg`` (ABAW6): audio only — global mean ⊕ LSTM last state → dense + tanh → linear 6
  (``pred`` clipped to [0, 1]; ``unclipped`` is the linear output).
- ``abaw8`` (ABAW8 winner, the Augsburg group again; :mod:`mimicflow.fusion.abaw8`): an LSTM
  per audio and visual input read at its last valid step, the text vector, concatenated →
  dense + tanh → linear 6 (clipped as ``augsburg``).
- ``mimicmetrics`` (ABAW10): unimodal encoders (masked attention pooling, then a LayerNorm-MLP),
  pre-trained with their own heads, then an MLP over them with modality dropout.
- ``taemi`` (ABAW10 winner, after its abstract): in its own module, ``fusion/taemi.py``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

Inputs = dict[str, tuple[torch.Tensor, torch.Tensor]]
NUM_EMOTIONS = 6


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid time steps: (B × T × d), (B × T) → (B × d); zeros where none is valid."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def run_packed(rnn: nn.RNNBase, x: torch.Tensor, mask: torch.Tensor):
    """Run ``rnn`` over each sequence up to its last valid step (packed: padding never enters
    the state). Returns (outputs B × T × h, last hidden state per direction of the top layer)."""
    lengths = torch.where(mask.any(1), mask.shape[1] - mask.flip(1).float().argmax(1), 1)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, hidden = rnn(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.shape[1])
    hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    directions = 2 if rnn.bidirectional else 1
    return outputs, hidden[-directions:].transpose(0, 1).reshape(x.shape[0], -1)


def present(mask: torch.Tensor) -> torch.Tensor:
    return mask.any(1)


def fuse_mean(embeddings: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
    """Average of the present modalities' embeddings, and each modality's weight in it."""
    stacked = torch.stack([embeddings[m] for m in embeddings], 1)  # B × M × h
    here = torch.stack([present(masks[m]) for m in embeddings], 1).float()  # B × M
    weights = here / here.sum(1, keepdim=True).clamp_min(1.0)
    return (stacked * weights.unsqueeze(-1)).sum(1), weights


AUDIO_KINDS, VISUAL_KINDS = ("audio", "egemaps", "wav2vec2"), ("visual", "vit")


def branch_kind(modality: str) -> str:
    """The branch family of an input's modality: audio, visual or text."""
    if modality in AUDIO_KINDS:
        return "audio"
    if modality in VISUAL_KINDS:
        return "visual"
    if modality == "text":
        return "text"
    raise ValueError(f"unknown modality {modality!r}")


def drop_modalities(here: torch.Tensor, p: float, always: tuple[int, ...] = ()) -> torch.Tensor:
    """Modality dropout on ``here`` (B × modalities, present or not): each present modality is
    dropped with probability ``p`` (the columns ``always`` never), and a clip keeps at least one."""
    keep = torch.rand(here.shape, device=here.device) >= p
    keep[:, list(always)] = True
    none_left = ~(keep & here).any(1)
    scores = torch.rand(here.shape, device=here.device).masked_fill(~here, -1.0)
    rescue = nn.functional.one_hot(scores.argmax(1), here.shape[1]).bool()
    return here & (keep | (rescue & none_left.unsqueeze(1)))


class InputScaler(nn.Module):
    """Per-feature z-score with fixed statistics; padding stays zero."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std * mask.unsqueeze(-1)


class EmiModel(nn.Module):
    """What the four systems share: standardised inputs, then the system's own ``predict``.

    Hand-made features mix scales (head pose in degrees beside mouth ratios near 0.01); without
    this a per-frame LayerNorm or the first linear layer sees little but the largest ones.
    """

    linear_output = False  # True: the output layer is linear (its loss reads ``unclipped``)

    def __init__(self, dims: dict[str, int], kinds: dict[str, str]):
        super().__init__()
        self.kinds = {name: branch_kind(kinds[name]) for name in dims}
        self.scalers = nn.ModuleDict({m: InputScaler(d) for m, d in dims.items()})

    def forward(self, inputs: Inputs) -> dict:
        return self.predict(
            {
                m: (self.scalers[m](x, mask), mask)
                for m, (x, mask) in inputs.items()
                if m in self.scalers
            }
        )

    def predict(self, inputs: Inputs) -> dict:
        raise NotImplementedError


def fit_input_scaling(model: EmiModel, stats: dict[str, tuple]) -> None:
    """Set each modality's scaler from (mean, std) arrays; near-constant features keep std 1."""
    with torch.no_grad():
        for modality, (mean, std) in stats.items():
            std = torch.as_tensor(std, dtype=torch.float32)
            model.scalers[modality].mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            model.scalers[modality].std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))


class AttentionPool(nn.Module):
    """Masked attention pooling over time: a learned score per step, softmax over valid steps.

    With ``queries`` > 1 each query pools on its own (e.g. one per emotion, so each can attend
    to the words or moments that carry it); the pooled vectors are concatenated (``out_dim``).
    """

    def __init__(self, dim: int, queries: int = 1):
        super().__init__()
        self.score = nn.Linear(dim, queries)
        self.out_dim = queries * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).masked_fill(~mask.unsqueeze(-1), -1e4)  # B × T × queries
        weights = torch.softmax(scores, 1) * mask.any(1)[:, None, None]
        return torch.einsum("btq,btd->bqd", weights, x).flatten(1)


# --- fuxi -----------------------------------------------------------------------------------------


class FuxiBranch(nn.Module):
    """2 BiGRU layers + LayerNorm + linear, pooled over valid steps, then linear to ``embed``."""

    def __init__(self, dim: int, hidden: int, embed: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(
            dim, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=dropout
        )
        self.norm = nn.LayerNorm(2 * hidden)
        self.linear = nn.Linear(2 * hidden, hidden)
        self.project = nn.Linear(hidden, embed)

    def forward(self, x, mask):
        outputs, _ = run_packed(self.gru, x, mask)
        return self.project(masked_mean(self.linear(self.norm(outputs)), mask))


class Fuxi(EmiModel):
    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        embed: int = 256,
        dropout: float = 0.3,
    ):
        super().__init__(dims, kinds)
        self.branches = nn.ModuleDict(
            {m: FuxiBranch(d, hidden, embed, dropout) for m, d in dims.items()}
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(embed, embed // 2),
            nn.ReLU(),
            nn.Linear(embed // 2, NUM_EMOTIONS),
        )

    def predict(self, inputs: Inputs) -> dict:
        embeddings = {m: branch(*inputs[m]) for m, branch in self.branches.items()}
        fused, weights = fuse_mean(embeddings, {m: inputs[m][1] for m in embeddings})
        return {
            "pred": torch.sigmoid(self.head(fused)),
            "embeddings": embeddings,
            "weights": weights,
        }

    def param_groups(self, lr: float, branch_lr: dict[str, float]) -> list[dict]:
        """Per-module learning rates: each branch at its modality's rate in ``branch_lr``
        (audio, visual, text; ``lr`` where absent), the fusion head at ``lr``."""
        groups = [
            {
                "params": list(branch.parameters()),
                "lr": branch_lr.get(self.kinds[name], lr),
                "name": name,
            }
            for name, branch in self.branches.items()
        ]
        return [*groups, {"params": list(self.head.parameters()), "lr": lr, "name": "fusion"}]


# --- ustc -----------------------------------------------------------------------------------------


def segment_average(x: torch.Tensor, mask: torch.Tensor, segments: int):
    """Segment average pooling: each clip's steps up to its last valid one are cut into
    ``segments`` equal spans, each the mean of its valid steps. (B × T × d), (B × T) →
    (B × segments × d), (B × segments); a span without a valid step is masked."""
    steps = torch.arange(mask.shape[1], device=mask.device)
    length = torch.where(mask.any(1), mask.shape[1] - mask.flip(1).float().argmax(1), 1)
    span = steps[None] * segments // length[:, None]  # B × T: each step's segment
    member = (span.unsqueeze(-1) == torch.arange(segments, device=mask.device)) & mask.unsqueeze(-1)
    counts = member.sum(1)  # B × segments
    pooled = torch.einsum("bts,btd->bsd", member.to(x.dtype), x) / counts.clamp_min(1).unsqueeze(-1)
    return pooled, counts > 0


class TemporalConvNet(nn.Module):
    """Dilated residual 1-D convolutions (TCN) over time; one output per step."""

    def __init__(self, dim: int, hidden: int, dilations=(1, 2, 4), dropout: float = 0.2):
        super().__init__()
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(hidden, hidden, 3, padding=d, dilation=d), nn.GELU(), nn.Dropout(dropout)
            )
            for d in dilations
        )

    def forward(self, x, mask):
        h = (self.inp(x) * mask.unsqueeze(-1)).transpose(1, 2)
        for block in self.blocks:
            h = (h + block(h)) * mask.unsqueeze(1)  # padding stays zero at every layer
        return h.transpose(1, 2)


class GatedBiLSTM(nn.Module):
    """BiLSTM whose outputs are gated by a sigmoid over [h_t ; h_t − h_{t−1}]; one output per step."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.gate = nn.Linear(4 * hidden, 2 * hidden)
        self.out = nn.Linear(2 * hidden, hidden)

    def forward(self, x, mask):
        h, _ = run_packed(self.lstm, x, mask)
        delta = h - torch.cat([h[:, :1], h[:, :-1]], 1)
        return self.out(h * torch.sigmoid(self.gate(torch.cat([h, delta], -1))))


class Projected(nn.Module):
    """Linear projection + GELU per step (the text branch); one output per step."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU())

    def forward(self, x, mask):
        return self.inp(x)


class Ustc(EmiModel):
    """Branch per input (TCN for visual, gated BiLSTM for audio, a projection for text), each
    sequence segment-average pooled to ``segments`` steps, an MLP mapping layer per input to
    the shared width, a quality MLP scoring every step (softmax over all valid steps of the
    clip), and the weighted steps of all inputs concatenated along time (+ a learned input
    embedding and position) into a ``layers``-deep Transformer encoder; masked mean; head."""

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        heads: int = 4,
        layers: int = 2,
        segments: int = 8,
        dropout: float = 0.2,
    ):
        super().__init__(dims, kinds)
        branch = {
            "visual": lambda d: TemporalConvNet(d, hidden, dropout=dropout),
            "audio": lambda d: GatedBiLSTM(d, hidden),
            "text": lambda d: Projected(d, hidden),
        }
        self.branches = nn.ModuleDict({m: branch[self.kinds[m]](d) for m, d in dims.items()})
        self.mapping = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
                for m in dims
            }
        )
        self.quality = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, 1)
                )
                for m in dims
            }
        )
        self.segments = segments
        self.input_embedding = nn.Parameter(torch.zeros(len(dims), 1, hidden))
        self.position = nn.Parameter(torch.zeros(segments, hidden))
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout, batch_first=True)
        self.fusion = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, NUM_EMOTIONS))

    def predict(self, inputs: Inputs) -> dict:
        names = list(self.branches)
        steps, masks, scores = [], [], []
        for m in names:
            x, mask = inputs[m]
            pooled, valid = segment_average(self.branches[m](x, mask), mask, self.segments)
            mapped = self.mapping[m](pooled)
            steps.append(mapped)
            masks.append(valid)
            scores.append(self.quality[m](mapped).squeeze(-1))
        valid = torch.cat(masks, 1)  # B × (inputs · segments), inputs in temporal concatenation
        anything = valid.any(1, keepdim=True)
        weights = torch.softmax(torch.cat(scores, 1).masked_fill(~valid, -1e4), 1) * anything
        # Quality-weighted steps (rescaled: equal weights leave them as they are), then which
        # input and which segment each one is.
        scale = (weights * valid.sum(1, keepdim=True)).unsqueeze(-1)
        tokens = torch.cat(steps, 1) * scale + (self.input_embedding + self.position).flatten(0, 1)
        fused = masked_mean(self.fusion(tokens, src_key_padding_mask=~valid & anything), valid)
        shares = weights.unflatten(1, (len(names), self.segments)).sum(-1)  # B × M
        embeddings = {m: masked_mean(step, mask) for m, step, mask in zip(names, steps, masks)}
        return {
            "pred": torch.sigmoid(self.head(fused)),
            "embeddings": embeddings,
            "weights": shares,
        }


# --- augsburg -------------------------------------------------------------------------------------


class Augsburg(EmiModel):
    """Audio only: [global mean vector ; LSTM last state] → the regression head of audEERING's
    VAD model the paper follows (dropout, dense + tanh, dropout, a linear projection to 6).
    The output is linear, as in the paper: ``unclipped`` is what the loss sees, ``pred`` the
    same clipped to [0, 1]."""

    linear_output = True

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        dropout: float = 0.2,
        lstm_layers: int = 2,
        lstm_dropout: float = 0.1,
    ):
        super().__init__(dims, kinds)
        audio = [name for name, kind in self.kinds.items() if kind == "audio"]
        if len(audio) != 1:
            raise ValueError(f"augsburg takes one audio input, got {audio or 'none'}")
        self.audio = audio[0]
        dim = dims[self.audio]
        self.lstm = nn.LSTM(
            dim,
            hidden,
            num_layers=lstm_layers,
            batch_first=True,
            dropout=lstm_dropout if lstm_layers > 1 else 0.0,
        )
        self.dense = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(dim + hidden, hidden), nn.Tanh(), nn.Dropout(dropout)
        )
        self.out = nn.Linear(hidden, NUM_EMOTIONS)

    def predict(self, inputs: Inputs) -> dict:
        x, mask = inputs[self.audio]
        _, last = run_packed(self.lstm, x, mask)
        features = torch.cat([masked_mean(x, mask), last * present(mask).unsqueeze(-1)], -1)
        raw = self.out(self.dense(features))
        weights = present(mask).float().unsqueeze(-1)
        return {"pred": raw.clamp(0.0, 1.0), "unclipped": raw, "weights": weights}


# --- mimicmetrics ---------------------------------------------------------------------------------


class UnimodalEncoder(nn.Module):
    """The authors' order: masked attention pooling over the input frames, then a LayerNorm-MLP
    (LayerNorm, linear, GELU, dropout, LayerNorm); ``head`` (dropout, linear) is used only in
    unimodal pre-training."""

    def __init__(self, dim: int, hidden: int, dropout: float, queries: int = 1):
        super().__init__()
        self.pool = AttentionPool(dim, queries)
        self.project = nn.Sequential(
            nn.LayerNorm(self.pool.out_dim),
            nn.Linear(self.pool.out_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.LayerNorm(hidden),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, NUM_EMOTIONS))

    def forward(self, x, mask):
        return self.project(self.pool(x, mask))


class MimicMetrics(EmiModel):
    """Unimodal encoders, then an MLP over their outputs with modality dropout.

    ``missing_text``: ``mask`` leaves a clip without text out of its fusion; ``zeros`` (the
    authors' fallback) gives such a clip one all-zero text frame, encoded as if present."""

    def __init__(
        self,
        dims: dict[str, int],
        kinds: dict[str, str],
        hidden: int = 128,
        dropout: float = 0.2,
        modality_dropout: float = 0.3,
        queries: int = 1,
        missing_text: str = "mask",
    ):
        super().__init__(dims, kinds)
        if missing_text not in ("mask", "zeros"):
            raise ValueError(f"missing_text must be mask or zeros, got {missing_text!r}")
        self.encoders = nn.ModuleDict(
            {m: UnimodalEncoder(d, hidden, dropout, queries) for m, d in dims.items()}
        )
        self.fusion = nn.Sequential(
            nn.Linear(len(dims) * (hidden + 1), hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, NUM_EMOTIONS),
        )
        self.modality_dropout = modality_dropout
        self.zero_text = missing_text == "zeros"
        self.unimodal: str | None = None  # set during pre-training: train one encoder + its head

    def forward(self, inputs: Inputs) -> dict:
        if self.zero_text:
            inputs = dict(inputs)
            for name in (n for n in inputs if self.kinds.get(n) == "text"):
                x, mask = inputs[name]
                absent = ~mask.any(1)
                first = torch.zeros_like(mask)
                first[:, 0] = True
                inputs[name] = (x * ~absent[:, None, None], mask | (first & absent[:, None]))
        return super().forward(inputs)

    def predict(self, inputs: Inputs) -> dict:
        if self.unimodal is not None:
            encoder = self.encoders[self.unimodal]
            return {"pred": torch.sigmoid(encoder.head(encoder(*inputs[self.unimodal])))}
        names = list(self.encoders)
        here = torch.stack([present(inputs[m][1]) for m in names], 1)
        if self.training and self.modality_dropout > 0:
            here = drop_modalities(here, self.modality_dropout)
        parts = []
        for column, m in enumerate(names):
            keep = here[:, column : column + 1].float()
            parts += [self.encoders[m](*inputs[m]) * keep, keep]
        weights = here.float() / here.float().sum(1, keepdim=True).clamp_min(1.0)
        return {"pred": torch.sigmoid(self.fusion(torch.cat(parts, -1))), "weights": weights}

    def param_groups(self, lr: float, encoder_lr_scale: float) -> list[dict]:
        """Fusion at ``lr``; pre-trained encoders fine-tuned at ``encoder_lr_scale`` × lr."""
        encoders = [p for name, p in self.encoders.named_parameters() if ".head." not in name]
        return [
            {"params": encoders, "lr": lr * encoder_lr_scale},
            {"params": self.fusion.parameters(), "lr": lr},
        ]


# The systems by name: these, and those in modules of their own that :func:`register` themselves.
SYSTEMS: dict[str, type[EmiModel]] = {
    "fuxi": Fuxi,
    "ustc": Ustc,
    "augsburg": Augsburg,
    "mimicmetrics": MimicMetrics,
}


def register(name: str):
    """Class decorator: a system defined in a module of its own (built on this one's parts)
    joins :data:`SYSTEMS` as ``name``; the package imports those modules."""

    def add(cls: type[EmiModel]) -> type[EmiModel]:
        SYSTEMS[name] = cls
        return cls

    return add


def build_model(system: str, dims: dict[str, int], kinds: dict[str, str], **hyper) -> EmiModel:
    """A system's module for its inputs' widths (name → d) and modalities (name → modality)."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
    return SYSTEMS[system](dims, kinds, **hyper)
