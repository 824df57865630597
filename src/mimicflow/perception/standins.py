"""Small stand-ins, written here, for models whose classes live in their hub repositories
(``trust_remote_code``): they reproduce the real model's output contract, not its weights, so
the code that reads real models can be tested and dry-run without them.

ChatGLM3 (``THUDM/chatglm3-6b``): ``AutoModel`` is ``ChatGLMForConditionalGeneration``, whose
forward returns ``CausalLMOutputWithPast`` (no ``last_hidden_state``) with sequence-first hidden
states (``[s, b, h]``: one per block input, then the last block's output before the final
norm), and its tokenizer pads on the left. The stand-in is a causal transformer of that shape;
:func:`save_chatglm3` writes it as a model folder whose ``auto_map`` points at this module, so
it loads only with ``trust_remote_code``, as the real one does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import BertTokenizer, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] i am so happy sad this is wonderful awful ha funny wow . , !"
)


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


SHIMS = {
    "configuration_chatglm.py": "from mimicflow.perception.standins import ChatGLMConfig\n",
    "modeling_chatglm.py": (
        "from mimicflow.perception.standins import ChatGLMForConditionalGeneration\n"
    ),
}


def save_chatglm3(folder: Path | str, layers: int = 2, hidden: int = 32) -> Path:
    """A ChatGLM3 stand-in folder (random weights, a left-padding tokenizer) that
    ``AutoModel``/``AutoTokenizer`` load with ``trust_remote_code``, as ``THUDM/chatglm3-6b``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(WORDS.split()) + "\n")
    tokenizer = BertTokenizer(
        vocab=str(vocab),
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(folder)
    config = ChatGLMConfig(num_layers=layers, hidden_size=hidden, ffn_hidden_size=2 * hidden)
    ChatGLMForConditionalGeneration(config).save_pretrained(folder)
    for name, text in SHIMS.items():
        (folder / name).write_text(text)
    meta = json.loads((folder / "config.json").read_text())
    meta["auto_map"] = {
        "AutoConfig": "configuration_chatglm.ChatGLMConfig",
        "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    }
    (folder / "config.json").write_text(json.dumps(meta, indent=2))
    return folder
