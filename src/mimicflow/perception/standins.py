"""Small stand-ins, written here, for models whose classes live in their hub repositories
(``trust_remote_code``): they reproduce the real model's output contract, not its weights, so
the code that reads real models can be tested and dry-run without them.

ChatGLM3 (``THUDM/chatglm3-6b``): ``AutoModel`` is ``ChatGLMForConditionalGeneration``, whose
forward returns ``CausalLMOutputWithPast`` (no ``last_hidden_state``) with sequence-first hidden
states (``[s, b, h]``: one per block input, then the last block's output before the final
norm), and its tokenizer pads on the left. The stand-in is a causal transformer of that shape;
:func:`mimicflow.perception.miniature.chatglm3_model` writes it as a model folder whose
``auto_map`` points at this module, so it loads only with ``trust_remote_code``, as the real
one does.

GTE (``Alibaba-NLP/gte-en-mlm-base``): its classes (``NewConfig``, ``NewModel``, model type
``new``) live in ``Alibaba-NLP/new-impl``; it is an encoder whose output is batch-first with a
``last_hidden_state`` and a pooled output, and its tokenizer pads on the right.
:func:`mimicflow.perception.miniature.gte_model` writes a BERT of that contract under those
class names (its ``auto_map`` points into the folder, where the real one points at
``new-impl``).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast


class ChatGLMConfig(PretrainedConfig):
    """ChatGLM3's config keys (``num_layers``, ``ffn_hidden_size``, ``padded_vocab_size``)."""

    model_type = "chatglm"

    def __init__(
        self,
        num_layers: int = 2,
        hidden_size: int = 32,
        ffn_hidden_size: int = 64,
        num_attention_heads: int = 2,
        padded_vocab_size: int = 64,
        layernorm_epsilon: float = 1e-5,
        **kwargs,
    ):
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.ffn_hidden_size, self.num_attention_heads = ffn_hidden_size, num_attention_heads
        self.padded_vocab_size, self.layernorm_epsilon = padded_vocab_size, layernorm_epsilon
        super().__init__(**kwargs)


class GLMBlock(nn.Module):
    """Pre-norm attention and MLP over sequence-first states."""

    def __init__(self, config: ChatGLMConfig):
        super().__init__()
        width = config.hidden_size
        self.input_layernorm = nn.LayerNorm(width, eps=config.layernorm_epsilon)
        self.self_attention = nn.MultiheadAttention(width, config.num_attention_heads)
        self.post_attention_layernorm = nn.LayerNorm(width, eps=config.layernorm_epsilon)
        self.mlp = nn.Sequential(
            nn.Linear(width, config.ffn_hidden_size),
            nn.GELU(),
            nn.Linear(config.ffn_hidden_size, width),
        )

    def forward(self, hidden, blocked):
        x = self.input_layernorm(hidden)
        hidden = hidden + self.self_attention(x, x, x, attn_mask=blocked, need_weights=False)[0]
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


def _blocked(attention_mask, batch: int, length: int, heads: int, device):
    """ChatGLM's ``get_masks``: causal, padding keys masked, padding queries see everything
    (so no row is empty); True = may not attend, one [s, s] per batch row and head."""
    full = torch.tril(torch.ones(batch, length, length, device=device))
    if attention_mask is not None:
        pad = attention_mask.float()
        full = full * pad.unsqueeze(1) - (pad.unsqueeze(-1) - 1)
    return (full < 0.5).repeat_interleave(heads, 0)


class ChatGLMForConditionalGeneration(PreTrainedModel):
    """ChatGLM3's output contract on a tiny causal transformer (no rotary embedding)."""

    config_class = ChatGLMConfig
    base_model_prefix = "transformer"

    def __init__(self, config: ChatGLMConfig):
        super().__init__(config)
        self.transformer = nn.ModuleDict(
            {
                "embedding": nn.Embedding(config.padded_vocab_size, config.hidden_size),
                "layers": nn.ModuleList(GLMBlock(config) for _ in range(config.num_layers)),
                "final_layernorm": nn.LayerNorm(config.hidden_size),
                "output_layer": nn.Linear(config.hidden_size, config.padded_vocab_size, False),
            }
        )
        self.post_init()

    def forward(
        self,
        input_ids,
        position_ids=None,
        attention_mask=None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        **_,
    ):
        net, (batch, length) = self.transformer, input_ids.shape
        hidden = net["embedding"](input_ids).transpose(0, 1)  # [s, b, h], as ChatGLM's Embedding
        blocked = _blocked(
            attention_mask, batch, length, self.config.num_attention_heads, input_ids.device
        )
        states = []
        for layer in net["layers"]:
            states.append(hidden)
            hidden = layer(hidden, blocked)
        states.append(hidden)  # the last block's output, before the final norm
        logits = net["output_layer"](net["final_layernorm"](hidden)).transpose(0, 1)
        return CausalLMOutputWithPast(
            logits=logits, hidden_states=tuple(states) if output_hidden_states else None
        )


class NewConfig(BertConfig):
    """GTE's config (model type ``new``)."""

    model_type = "new"


class NewModel(BertModel):
    """GTE's encoder contract: batch-first ``last_hidden_state``, pooled output, right padding."""

    config_class = NewConfig


SHIMS = {
    "configuration_chatglm.py": "from mimicflow.perception.standins import ChatGLMConfig\n",
    "modeling_chatglm.py": (
        "from mimicflow.perception.standins import ChatGLMForConditionalGeneration\n"
    ),
}
