"""Miniature models: the architecture classes the recipes name (BERT, RoBERTa, wav2vec2,
HuBERT, WavLM, audEERING's dimensional model, ViT, MAE, DINOv2, CLIP; the ChatGLM3 and GTE
stand-ins), built from the real transformers config classes with a few layers of width 32 and random
weights, and saved as folders that load by path exactly as the real ones do
(``from_pretrained``). The tests and ``mimicflow recipe dry-run`` build them.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

WIDTH = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "i",
    "am",
    "so",
    "happy",
    "sad",
    "this",
    "is",
    "wonderful",
    "awful",
    "ha",
    "funny",
    "wow",
    "exciting",
    ".",
    ",",
    "!",
]
# Every character alone and as a continuation, so any English text has no unknown token.
CHARACTERS = [*string.ascii_lowercase, *string.digits, *"?'-:()"]
SPELLING = [*CHARACTERS, *(f"##{c}" for c in CHARACTERS)]


def text_model(
    folder: Path, extra_words: tuple[str, ...] = (), layers: int = 2, positions: int = 64
) -> Path:
    """BERT (``bert-base-uncased``, ``gte-base``) with a word-piece vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = WORDS + [w for w in extra_words if w not in WORDS]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(words),
        num_hidden_layers=layers,
        max_position_embeddings=positions,
        **WIDTH,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def spelling_text_model(folder: Path, layers: int = 2) -> Path:
    """BERT whose vocabulary spells any word (512 positions, as the recipes' token limits)."""
    return text_model(folder, tuple(SPELLING), layers, positions=514)


def roberta_model(folder: Path, layers: int = 2) -> Path:
    """RoBERTa with a byte-level BPE of single bytes (any text; ``roberta-large``'s class)."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *bytes_to_unicode().values()]
    vocab = {s: i for i, s in enumerate(symbols)}
    RobertaTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    config = RobertaConfig(
        vocab_size=len(vocab),
        num_hidden_layers=layers,
        max_position_embeddings=514,
        pad_token_id=1,
        **WIDTH,
    )
    RobertaModel(config).save_pretrained(folder)
    return folder


def _speech_config(config_class, layers: int = 2, **extra):
    return config_class(
        num_hidden_layers=layers,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        **WIDTH,
        **extra,
    )


def _save_speech(model, folder: Path) -> Path:
    from transformers import Wav2Vec2FeatureExtractor

    model.save_pretrained(folder)
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True)
    extractor.save_pretrained(folder)
    return Path(folder)


def audio_model(folder: Path, layers: int = 2) -> Path:
    """wav2vec2 (``wav2vec2-large-lv60``'s class and layer-norm layout)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    return _save_speech(Wav2Vec2Model(_speech_config(Wav2Vec2Config, layers)), folder)


def hubert_model(folder: Path, layers: int = 2) -> Path:
    from transformers import HubertConfig, HubertModel

    return _save_speech(HubertModel(_speech_config(HubertConfig, layers)), folder)


def wavlm_model(folder: Path, layers: int = 2) -> Path:
    """WavLM (``wavlm-large``'s class: gated relative position bias, layer-norm layout)."""
    from transformers import WavLMConfig, WavLMModel

    config = _speech_config(WavLMConfig, layers, num_buckets=32, max_bucket_distance=64)
    return _save_speech(WavLMModel(config), folder)


def emotion_model(folder: Path, layers: int = 2):
    """audEERING's dimensional model (wav2vec2 + a 3-output regression head); returns (folder,
    the model as saved)."""
    from transformers import Wav2Vec2Config

    from mimicflow.perception.emotion_head import Wav2Vec2EmotionModel

    labels = {0: "arousal", 1: "dominance", 2: "valence"}
    config = _speech_config(Wav2Vec2Config, layers, num_labels=3, id2label=labels)
    model = Wav2Vec2EmotionModel(config).eval()
    return _save_speech(model, folder), model


def whisper_checkpoint(path: Path) -> Path:
    """An openai-whisper checkpoint, saved as ``whisper.load_model`` loads."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(
        n_mels=80,
        n_audio_ctx=1500,
        n_audio_state=32,
        n_audio_head=2,
        n_audio_layer=2,
        n_vocab=64,
        n_text_ctx=16,
        n_text_state=32,
        n_text_head=2,
        n_text_layer=1,
    )
    torch.save({"dims": dims.__dict__, "model_state_dict": whisper_state(Whisper(dims))}, path)
    return path


def whisper_state(model) -> dict:
    """A random openai-whisper model's state with every tensor set: its decoder's positional
    embedding is ``torch.empty`` (whatever the memory held, NaN at times, so that the same
    checkpoint read twice could differ from itself)."""
    import torch

    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02)
    return model.state_dict()


def _vision(layers: int) -> dict:
    return {"image_size": 32, "patch_size": 8, "num_hidden_layers": layers, **WIDTH}


def image_model(folder: Path, layers: int = 2) -> Path:
    """ViT (``vit-huge-patch14-224-in21k``'s class)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    ViTModel(ViTConfig(**_vision(layers))).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return Path(folder)


def mae_model(folder: Path, layers: int = 2) -> Path:
    """A ViTMAE encoder as MAE checkpoints are saved: ``mask_ratio`` 0.75."""
    from transformers import ViTImageProcessor, ViTMAEConfig, ViTMAEModel

    ViTMAEModel(ViTMAEConfig(**_vision(layers), mask_ratio=0.75)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return Path(folder)


def dinov2_model(folder: Path, layers: int = 2) -> Path:
    """DINOv2 with its own image processor (resize, centre crop)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    vision = _vision(layers)
    del vision["intermediate_size"]
    Dinov2Model(Dinov2Config(**vision, mlp_ratio=2)).save_pretrained(folder)
    processor = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return Path(folder)


def clip_model(folder: Path, layers: int = 2) -> Path:
    """CLIP (both towers; the encoders take its vision tower) and its image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    vision = _vision(layers)
    text = {"num_hidden_layers": 2, "vocab_size": 64, "max_position_embeddings": 16, **WIDTH}
    text |= {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision)).save_pretrained(folder)
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(folder)
    return Path(folder)


def _remote_code(folder: Path, shims: dict[str, str], auto_map: dict[str, str]) -> Path:
    """The shim modules into ``folder`` and ``auto_map`` into its config: it then loads only
    with ``trust_remote_code``."""
    for name, text in shims.items():
        (folder / name).write_text(text)
    meta = json.loads((folder / "config.json").read_text())
    meta["auto_map"] = auto_map
    (folder / "config.json").write_text(json.dumps(meta, indent=2))
    return folder


def gte_model(folder: Path, layers: int = 2) -> Path:
    """A GTE stand-in folder (random weights) that loads as ``Alibaba-NLP/gte-en-mlm-base``."""
    from transformers import BertConfig

    from mimicflow.perception.standins import NewConfig, NewModel

    folder = spelling_text_model(Path(folder), layers)
    bert = BertConfig.from_pretrained(folder).to_dict()
    config = NewConfig.from_dict({k: v for k, v in bert.items() if k != "model_type"})
    NewModel(config).save_pretrained(folder)
    shims = {
        "configuration.py": "from mimicflow.perception.standins import NewConfig\n",
        "modeling.py": "from mimicflow.perception.standins import NewModel\n",
    }
    auto_map = {"AutoConfig": "configuration.NewConfig", "AutoModel": "modeling.NewModel"}
    return _remote_code(folder, shims, auto_map)


def chatglm3_model(folder: Path, layers: int = 2, hidden: int = 32) -> Path:
    """A ChatGLM3 stand-in folder (random weights, a left-padding tokenizer) that
    ``AutoModel``/``AutoTokenizer`` load with ``trust_remote_code``, as ``THUDM/chatglm3-6b``."""
    from transformers import BertTokenizer

    from mimicflow.perception.standins import (
        SHIMS,
        ChatGLMConfig,
        ChatGLMForConditionalGeneration,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    words = WORDS + SPELLING
    vocab.write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(
        vocab=str(vocab),
        padding_side="left",
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(folder)
    config = ChatGLMConfig(
        num_layers=layers,
        hidden_size=hidden,
        ffn_hidden_size=2 * hidden,
        padded_vocab_size=len(words),
    )
    ChatGLMForConditionalGeneration(config).save_pretrained(folder)
    auto_map = {
        "AutoConfig": "configuration_chatglm.ChatGLMConfig",
        "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    }
    return _remote_code(folder, SHIMS, auto_map)


# The recipes' hub ids, each by its architecture class.
MINIATURES = {
    "THUDM/chatglm3-6b": chatglm3_model,
    "Alibaba-NLP/gte-en-mlm-base": gte_model,
    "google-bert/bert-base-uncased": spelling_text_model,
    "thenlper/gte-base": spelling_text_model,
    "FacebookAI/roberta-large": roberta_model,
    "facebook/hubert-base-ls960": hubert_model,
    "facebook/wav2vec2-large-lv60": audio_model,
    "microsoft/wavlm-large": wavlm_model,
    "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim": lambda f, n=2: emotion_model(f, n)[0],
    "facebook/vit-mae-base": mae_model,
    "google/vit-huge-patch14-224-in21k": image_model,
    "google/vit-base-patch16-224": image_model,
    "google/vit-base-patch16-224-in21k": image_model,
    "facebook/dinov2-base": dinov2_model,
    "openai/clip-vit-base-patch16": clip_model,
}


def build_miniature(hub_id: str, folder: Path, layers: int = 2) -> Path:
    """The miniature of ``hub_id`` with ``layers`` layers in ``folder``; an id with no
    miniature raises LookupError naming those there are."""
    if hub_id not in MINIATURES:
        raise LookupError(f"no miniature of {hub_id} (there are: {', '.join(MINIATURES)})")
    return MINIATURES[hub_id](Path(folder), max(2, layers))
