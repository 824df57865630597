"""The four published EMI systems as torch modules with one interface.

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
- ``ustc`` (ABAW8 runner-up): TCN + segment average pooling for vision, a gated BiLSTM over
  [h_t ; h_t − h_{t−1}] for audio; a quality MLP per modality → softmax weights (QAM); a
  Transformer encoder over the weighted modality tokens.
- ``augsburg`` (ABAW6): audio only — global mean ⊕ LSTM last state → dense + tanh → 6.
- ``mimicmetrics`` (ABAW10): masked attention-pooling unimodal encoders (pre-trained with their
  own heads), then an MLP over them with modality dropout.
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

    def __init__(self, dims: dict[str, int], kinds: dict[str, str]):
        super().__init__()
        self.kinds = {name: branch_kind(kinds[name]) for name in dims}
        self.scalers = nn.ModuleDict({m: InputScaler(d) for m, d in dims.items()})

    def forward(self, inputs: Inputs) -> dict:
        return self.predict({m: (self.scalers[m](x, mask), mask) for m, (x, mask) in inputs.items()
                             if m in self.scalers})  # fmt: skip

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
    to the words or moments that carry it) and the pooled vectors are projected back to ``dim``.
    """

    def __init__(self, dim: int, queries: int = 1):
        super().__init__()
        self.score = nn.Linear(dim, queries)
        self.merge = nn.Linear(queries * dim, dim) if queries > 1 else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).masked_fill(~mask.unsqueeze(-1), -1e4)  # B × T × queries
        weights = torch.softmax(scores, 1) * mask.any(1)[:, None, None]
        pooled = torch.einsum("btq,btd->bqd", weights, x)
        return self.merge(pooled.flatten(1))


# --- fuxi -----------------------------------------------------------------------------------------


class FuxiBranch(nn.Module):
    """2 BiGRU layers + LayerNorm + linear, pooled over valid steps, then linear to ``embed``."""

    def __init__(self, dim: int, hidden: int, embed: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(dim, hidden, num_layers=2, batch_first=True, bidirectional=True,
                          dropout=dropout)  # fmt: skip
        self.norm = nn.LayerNorm(2 * hidden)
        self.linear = nn.Linear(2 * hidden, hidden)
        self.project = nn.Linear(hidden, embed)

    def forward(self, x, mask):
        outputs, _ = run_packed(self.gru, x, mask)
        return self.project(masked_mean(self.linear(self.norm(outputs)), mask))


class Fuxi(EmiModel):
    def __init__(self, dims: dict[str, int], kinds: dict[str, str], hidden: int = 128,
                 embed: int = 256, dropout: float = 0.3):  # fmt: skip
        super().__init__(dims, kinds)
        self.branches = nn.ModuleDict({m: FuxiBranch(d, hidden, embed, dropout) for m, d in dims.items()})
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed, embed // 2), nn.ReLU(),
                                  nn.Linear(embed // 2, NUM_EMOTIONS))  # fmt: skip

    def predict(self, inputs: Inputs) -> dict:
        embeddings = {m: branch(*inputs[m]) for m, branch in self.branches.items()}
        fused, weights = fuse_mean(embeddings, {m: inputs[m][1] for m in embeddings})
        return {"pred": torch.sigmoid(self.head(fused)), "embeddings": embeddings, "weights": weights}

    def param_groups(self, lr: float, branch_lr: dict[str, float]) -> list[dict]:
        """Per-module learning rates: each branch at its modality's rate in ``branch_lr``
        (audio, visual, text; ``lr`` where absent), the fusion head at ``lr``."""
        groups = [{"params": list(branch.parameters()), "lr": branch_lr.get(self.kinds[name], lr),
                   "name": name} for name, branch in self.branches.items()]  # fmt: skip
        return groups + [{"params": list(self.head.parameters()), "lr": lr, "name": "fusion"}]


# --- ustc -----------------------------------------------------------------------------------------


class TemporalConvNet(nn.Module):
    """Dilated residual 1-D convolutions (TCN) over time, then masked segment-average pooling."""

    def __init__(self, dim: int, hidden: int, dilations=(1, 2, 4), dropout: float = 0.2):
        super().__init__()
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(hidden, hidden, 3, padding=d, dilation=d), nn.GELU(),
                          nn.Dropout(dropout))
            for d in dilations
        )  # fmt: skip

    def forward(self, x, mask):
        h = self.inp(x) * mask.unsqueeze(-1)
        h = h.transpose(1, 2)
        for block in self.blocks:
            h = (h + block(h)) * mask.unsqueeze(1)  # padding stays zero at every layer
        return masked_mean(h.transpose(1, 2), mask)


class GatedBiLSTM(nn.Module):
    """BiLSTM whose outputs are gated by a sigmoid over [h_t ; h_t − h_{t−1}], then pooled."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.gate = nn.Linear(4 * hidden, 2 * hidden)
        self.out = nn.Linear(2 * hidden, hidden)

    def forward(self, x, mask):
        h, _ = run_packed(self.lstm, x, mask)
        delta = h - torch.cat([h[:, :1], h[:, :-1]], 1)
        gated = h * torch.sigmoid(self.gate(torch.cat([h, delta], -1)))
        return self.out(masked_mean(gated, mask))


class Projected(nn.Module):
    """Linear projection + masked mean (the text branch of systems without a text model)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU())

    def forward(self, x, mask):
        return masked_mean(self.inp(x), mask)


class Ustc(EmiModel):
    def __init__(self, dims: dict[str, int], kinds: dict[str, str], hidden: int = 128,
                 heads: int = 4, layers: int = 1, dropout: float = 0.2):  # fmt: skip
        super().__init__(dims, kinds)
        branch = {"visual": lambda d: TemporalConvNet(d, hidden, dropout=dropout),
                  "audio": lambda d: GatedBiLSTM(d, hidden)}  # fmt: skip
        self.branches = nn.ModuleDict(
            {m: branch.get(self.kinds[m], lambda d: Projected(d, hidden))(d) for m, d in dims.items()}
        )
        self.quality = nn.ModuleDict(
            {m: nn.Sequential(nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, 1))
             for m in dims}
        )  # fmt: skip
        self.modality_token = nn.Parameter(torch.zeros(len(dims), hidden))
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout, batch_first=True)
        self.fusion = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, NUM_EMOTIONS))

    def predict(self, inputs: Inputs) -> dict:
        names = list(self.branches)
        embeddings = {m: self.branches[m](*inputs[m]) for m in names}
        here = torch.stack([present(inputs[m][1]) for m in names], 1)  # B × M
        scores = torch.cat([self.quality[m](embeddings[m]) for m in names], 1)
        weights = torch.softmax(scores.masked_fill(~here, -1e4), 1) * here.any(1, keepdim=True)
        tokens = torch.stack([embeddings[m] for m in names], 1) + self.modality_token
        tokens = tokens * weights.unsqueeze(-1) * len(names)  # QAM-weighted modality tokens
        fused = self.fusion(tokens, src_key_padding_mask=~here | ~here.any(1, keepdim=True))
        fused = masked_mean(fused, here)
        return {"pred": torch.sigmoid(self.head(fused)), "embeddings": embeddings, "weights": weights}


# --- augsburg -------------------------------------------------------------------------------------


class Augsburg(EmiModel):
    """Audio only: [global mean vector ; LSTM last state] → dense + tanh → 6."""

    def __init__(self, dims: dict[str, int], kinds: dict[str, str], hidden: int = 128,
                 dropout: float = 0.2):  # fmt: skip
        super().__init__(dims, kinds)
        audio = [name for name, kind in self.kinds.items() if kind == "audio"]
        if len(audio) != 1:
            raise ValueError(f"augsburg takes one audio input, got {audio or 'none'}")
        self.audio = audio[0]
        dim = dims[self.audio]
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.dense = nn.Sequential(nn.Linear(dim + hidden, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, NUM_EMOTIONS)

    def predict(self, inputs: Inputs) -> dict:
        x, mask = inputs[self.audio]
        _, last = run_packed(self.lstm, x, mask)
        features = torch.cat([masked_mean(x, mask), last * present(mask).unsqueeze(-1)], -1)
        weights = present(mask).float().unsqueeze(-1)
        return {"pred": torch.sigmoid(self.out(self.dense(features))), "weights": weights}


# --- mimicmetrics ---------------------------------------------------------------------------------


class UnimodalEncoder(nn.Module):
    """Frame MLP + masked attention pooling; ``head`` is used only in unimodal pre-training."""

    def __init__(self, dim: int, hidden: int, dropout: float, queries: int = 1):
        super().__init__()
        self.frame = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                                   nn.Dropout(dropout))  # fmt: skip
        self.pool = AttentionPool(hidden, queries)
        self.head = nn.Linear(hidden, NUM_EMOTIONS)

    def forward(self, x, mask):
        return self.pool(self.frame(x), mask)


class MimicMetrics(EmiModel):
    def __init__(self, dims: dict[str, int], kinds: dict[str, str], hidden: int = 128,
                 dropout: float = 0.2, modality_dropout: float = 0.3, queries: int = 1):  # fmt: skip
        super().__init__(dims, kinds)
        self.encoders = nn.ModuleDict({m: UnimodalEncoder(d, hidden, dropout, queries)
                                       for m, d in dims.items()})  # fmt: skip
        self.fusion = nn.Sequential(nn.Linear(len(dims) * (hidden + 1), hidden), nn.GELU(),
                                    nn.Dropout(dropout), nn.Linear(hidden, NUM_EMOTIONS))  # fmt: skip
        self.modality_dropout = modality_dropout
        self.unimodal: str | None = None  # set during pre-training: train one encoder + its head

    def predict(self, inputs: Inputs) -> dict:
        if self.unimodal is not None:
            encoder = self.encoders[self.unimodal]
            return {"pred": torch.sigmoid(encoder.head(encoder(*inputs[self.unimodal])))}
        names = list(self.encoders)
        here = torch.stack([present(inputs[m][1]) for m in names], 1)
        if self.training and self.modality_dropout > 0:
            here = here & self._keep(here)
        parts = []
        for column, m in enumerate(names):
            keep = here[:, column : column + 1].float()
            parts += [self.encoders[m](*inputs[m]) * keep, keep]
        weights = here.float() / here.float().sum(1, keepdim=True).clamp_min(1.0)
        return {"pred": torch.sigmoid(self.fusion(torch.cat(parts, -1))), "weights": weights}

    def _keep(self, here: torch.Tensor) -> torch.Tensor:
        """Modality dropout: drop each present modality with p, always keeping at least one."""
        keep = torch.rand(here.shape, device=here.device) >= self.modality_dropout
        none_left = ~(keep & here).any(1)
        scores = torch.rand(here.shape, device=here.device).masked_fill(~here, -1.0)
        rescue = nn.functional.one_hot(scores.argmax(1), here.shape[1]).bool()
        return keep | (rescue & none_left.unsqueeze(1))

    def param_groups(self, lr: float, encoder_lr_scale: float) -> list[dict]:
        """Fusion at ``lr``; pre-trained encoders fine-tuned at ``encoder_lr_scale`` × lr."""
        encoders = [p for name, p in self.encoders.named_parameters() if ".head." not in name]
        return [{"params": encoders, "lr": lr * encoder_lr_scale},
                {"params": self.fusion.parameters(), "lr": lr}]  # fmt: skip


SYSTEMS: dict[str, type[EmiModel]] = {
    "fuxi": Fuxi, "ustc": Ustc, "augsburg": Augsburg, "mimicmetrics": MimicMetrics,
}  # fmt: skip


def build_model(system: str, dims: dict[str, int], kinds: dict[str, str], **hyper) -> EmiModel:
    """A system's module for its inputs' widths (name → d) and modalities (name → modality)."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
    return SYSTEMS[system](dims, kinds, **hyper)
