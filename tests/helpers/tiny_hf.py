"""Small random transformers models, saved to a folder, loaded back by path through the same
code users run with hub ids (``from_pretrained``)."""

from __future__ import annotations

from pathlib import Path

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


def tiny_text_model(folder: Path, extra_words: tuple[str, ...] = ()) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    words = WORDS + [w for w in extra_words if w not in WORDS]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)  # (vocab_file: ignored)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def _wav2vec2_config(**extra):
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        **extra,
    )


def _save_speech(model, folder: Path) -> Path:
    from transformers import Wav2Vec2FeatureExtractor

    model.save_pretrained(folder)
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True)
    extractor.save_pretrained(folder)
    return folder


def tiny_audio_model(folder: Path) -> Path:
    from transformers import Wav2Vec2Model

    return _save_speech(Wav2Vec2Model(_wav2vec2_config()), folder)


def tiny_emotion_model(folder: Path):
    """A tiny audEERING-style dimensional model (wav2vec2 + a 3-output regression head, random
    weights); returns (folder, the model as saved)."""
    from mimicflow.perception.emotion_head import Wav2Vec2EmotionModel

    config = _wav2vec2_config(num_labels=3, id2label={0: "arousal", 1: "dominance", 2: "valence"})
    model = Wav2Vec2EmotionModel(config).eval()
    return _save_speech(model, folder), model


def tiny_whisper(path: Path) -> Path:
    """A tiny openai-whisper checkpoint (random weights), saved as ``whisper.load_model`` loads."""
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


def tiny_image_model(folder: Path) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def tiny_mae_model(folder: Path) -> Path:
    """A tiny ViTMAE encoder as MAE checkpoints are saved: ``mask_ratio`` 0.75."""
    from transformers import ViTImageProcessor, ViTMAEConfig, ViTMAEModel

    config = ViTMAEConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        mask_ratio=0.75,
    )
    ViTMAEModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def tiny_dinov2_model(folder: Path) -> Path:
    """A tiny DINOv2 with its own image processor (resize, centre crop)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    config = Dinov2Config(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
    )
    Dinov2Model(config).save_pretrained(folder)
    processor = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    return folder
