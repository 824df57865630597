"""audEERING's dimensional emotion model
(``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim``): wav2vec2 and a regression head as
the model card's ``EmotionModel`` defines them, so the checkpoint's weights load by name
(``wav2vec2.*``, ``classifier.dense.*``, ``classifier.out_proj.*``). The head gives, per frame,
arousal, dominance and valence (the config's ``id2label``); Augsburg's and ABAW8's 1027-d
feature is the 1024-d hidden state ⊕ these 3 outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel
from transformers.utils import ModelOutput


@dataclass
class EmotionOutput(ModelOutput):
    """The head's outputs per frame and wav2vec2's states."""

    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class RegressionHead(nn.Module):
    """dense → tanh → dropout → out_proj (``config.num_labels`` outputs)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.final_dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(features)))
        return self.out_proj(self.dropout(x))


class Wav2Vec2EmotionModel(Wav2Vec2PreTrainedModel):
    """wav2vec2 + :class:`RegressionHead` applied to every frame of the final hidden state
    (``logits``: batch × frames × num_labels; ``hidden_states`` as wav2vec2 gives them)."""

    def __init__(self, config):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.classifier = RegressionHead(config)
        self.post_init()

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> EmotionOutput:
        outputs = self.wav2vec2(input_values, attention_mask=attention_mask, **kwargs)
        return EmotionOutput(
            self.classifier(outputs.last_hidden_state),
            outputs.last_hidden_state,
            outputs.hidden_states,
        )
