"""Small random transformers models, saved to a folder, loaded back by path through the same
code users run with hub ids (``from_pretrained``): the library's miniatures."""

from __future__ import annotations

from mimicflow.perception import miniature

WORDS = miniature.WORDS
tiny_text_model = miniature.text_model
tiny_audio_model = miniature.audio_model
tiny_emotion_model = miniature.emotion_model
tiny_whisper = miniature.whisper_checkpoint
tiny_image_model = miniature.image_model
tiny_mae_model = miniature.mae_model
tiny_dinov2_model = miniature.dinov2_model
whisper_state = miniature.whisper_state
