"""What each synthetic clip expresses: latent intensities, noisy labels and per-modality cues.

The generative story, per clip:

1. latent intensities ``p`` (6): one to three active emotions (Empathic Pain the rarest), the
   rest exactly zero, so labels are sparse as in Hume-Vidmimic2;
2. labels ``k/N``: ``N`` annotators, ``k ~ Binomial(N, p)``. The oracle ceiling is the Pearson
   between ``p`` and the labels: what a model that knew ``p`` exactly would score;
3. each modality sees its own noisy copy ``z_m = p + noise_m`` and renders it through a few
   control knobs. Text names only the strongest emotions (at most :data:`MAX_NAMED`, 5 intensity
   levels), prosody mixes all of them into pitch, rate, loudness and voice, the face mixes all
   of them into four action units.

The modalities are complementary by design: the words are the sharpest single cue but say
nothing of a clip's weaker emotions, which only the face and the voice show. A speech model
(Whisper states carry both the words and the prosody) therefore leaves out what the face
adds, and fusion has headroom over every single modality (``modality_signal`` in the report:
``speech`` against ``all``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mimicflow import EMOTIONS

ADM, AMU, DET, EMP, EXC, JOY = range(6)
ACTIVE_PROB = np.array([0.30, 0.38, 0.30, 0.10, 0.34, 0.40])
MODALITY_NOISE_SD = {"text": 0.10, "audio": 0.10, "face": 0.08}
ANNOTATORS = (3, 8)  # N drawn uniformly from this closed range, per clip
SPLIT_FRACTIONS = {"train": 0.48, "valid": 0.27, "test": 0.25}
# Natural hard cases (usable clips, as in the real data): fraction of clips with each.
HARD_CASE_RATES = {"occluded": 0.03, "dark": 0.03, "silent": 0.025, "no_face": 0.025}

# Text: per emotion, two phrasings with an intensity word; five levels (1 weak … 5 strong), the
# same intensity words for every emotion, as people grade their own feelings in speech.
SENTENCES: dict[str, tuple[str, ...]] = {
    "Admiration": ("That is {} impressive.", "I {} admire what they did."),
    "Amusement": ("That is {} funny.", "I find that {} amusing."),
    "Determination": ("I am {} determined to do this.", "I {} want to win this."),
    "Empathic Pain": ("That looks {} painful.", "I feel {} sorry for them."),
    "Excitement": ("This is {} exciting!", "I am {} thrilled about this!"),
    "Joy": ("I am {} happy right now.", "This makes me {} glad."),
}
INTENSITY_WORDS = ("a little", "somewhat", "really", "very, very", "extremely")
MAX_NAMED = 2  # people name their strongest feelings; face and voice show the rest
FILLERS = ("Okay.", "Let me see.", "So here we go.", "Right.", "Well.", "Hmm, alright.")
TEXT_LEVELS = (0.12, 0.30, 0.48, 0.66, 0.84)  # z_text thresholds for levels 1 … 5

# Prosody and face: how the modality's noisy intensities drive each control knob.
AUDIO_MIX = {  # knob: weights over EMOTIONS
    "pitch": (0.2, 0.5, 0.0, -0.6, 1.0, 0.8),
    "rate": (0.0, 0.4, 0.6, -0.7, 1.0, 0.2),
    "loudness": (-0.3, 0.2, 1.0, -0.5, 0.8, 0.3),
    "soft_voice": (0.5, 0.0, -0.3, 1.0, -0.3, 0.0),
}
FACE_MIX = {
    "smile": (0.3, 0.7, 0.0, -0.5, 0.2, 1.0),
    "brow_raise": (0.8, 0.2, 0.0, 0.0, 0.7, 0.1),
    "frown": (0.0, 0.0, 0.6, 1.0, 0.0, -0.2),
    "mouth_open": (0.1, 0.6, 0.0, 0.0, 0.8, 0.2),
}
SPEAKER_VOICES = ("en-us", "en-us+Annie", "en+Andy", "en-us+female3", "en+Michael", "en+Linda")
SOFT_VOICE = "en-us+female_whisper"


@dataclass
class ClipPlan:
    """Everything needed to render one clip; plain data, cheap to send to a worker."""

    index: int
    clip_id: str
    split: str
    latent: np.ndarray  # (6,) true intensities p
    label: np.ndarray  # (6,) k/N
    annotators: int
    identity: int
    fps: int
    size: tuple[int, int]  # (width, height)
    sentences: list[str]
    text_levels: np.ndarray  # (6,) 0..5
    audio_knobs: dict[str, float]
    face_knobs: dict[str, float]
    voice: str
    lead_in_s: float
    tail_s: float
    hard_cases: list[str] = field(default_factory=list)


def _mix(z: np.ndarray, weights: dict[str, tuple[float, ...]]) -> dict[str, float]:
    return {k: float(np.clip(np.dot(w, z), 0.0, 1.5)) for k, w in weights.items()}


def sample_latent(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sparse latent intensities: each clip has 1–3 active emotions."""
    latent = np.zeros((n, len(EMOTIONS)))
    for i in range(n):
        active = rng.random(len(EMOTIONS)) < ACTIVE_PROB
        if not active.any():
            active[rng.choice(len(EMOTIONS), p=ACTIVE_PROB / ACTIVE_PROB.sum())] = True
        latent[i, active] = rng.beta(2.2, 2.0, size=active.sum())
    return latent


def sample_plans(n: int, seed: int, n_identities: int) -> list[ClipPlan]:
    """Draw the plans for ``n`` clips, deterministically for ``seed``."""
    rng = np.random.default_rng(seed)
    latent = sample_latent(rng, n)
    annotators = rng.integers(ANNOTATORS[0], ANNOTATORS[1] + 1, size=n)
    label = rng.binomial(annotators[:, None], latent) / annotators[:, None]
    splits = rng.permutation(
        np.repeat(list(SPLIT_FRACTIONS), _split_counts(n, list(SPLIT_FRACTIONS.values())))
    )
    plans = []
    for i in range(n):
        z = {m: latent[i] + rng.normal(0.0, sd, size=6) for m, sd in MODALITY_NOISE_SD.items()}
        levels = np.digitize(z["text"], TEXT_LEVELS)
        named = [e for e in np.argsort(-z["text"]) if levels[e] > 0][:MAX_NAMED]
        levels[np.setdiff1d(np.arange(len(EMOTIONS)), named)] = 0  # unsaid: no words for it
        sentences = [
            str(rng.choice(SENTENCES[EMOTIONS[e]])).format(INTENSITY_WORDS[levels[e] - 1])
            for e in named
        ]
        sentences.insert(int(rng.integers(0, len(sentences) + 1)), str(rng.choice(FILLERS)))
        audio_knobs = _mix(z["audio"], AUDIO_MIX)
        identity = int(rng.integers(n_identities))
        plans.append(
            ClipPlan(
                index=i,
                clip_id=f"{i + 1:05d}",
                split=str(splits[i]),
                latent=latent[i],
                label=label[i],
                annotators=int(annotators[i]),
                identity=identity,
                fps=int(rng.choice([25, 30, 15, 50], p=[0.6, 0.3, 0.05, 0.05])),
                size=[(256, 256), (320, 240), (240, 320)][int(rng.choice(3, p=[0.6, 0.3, 0.1]))],
                sentences=sentences,
                text_levels=levels,
                audio_knobs=audio_knobs,
                face_knobs=_mix(z["face"], FACE_MIX),
                voice=SOFT_VOICE
                if audio_knobs["soft_voice"] > 0.6
                else SPEAKER_VOICES[identity % len(SPEAKER_VOICES)],
                lead_in_s=float(rng.uniform(0.2, 1.0)),
                # Long-tailed durations: most clips end soon after speech, a few linger.
                tail_s=float(min(rng.lognormal(-0.5, 1.1), 20.0)),
                hard_cases=[c for c, rate in HARD_CASE_RATES.items() if rng.random() < rate],
            )
        )
    return plans


def _split_counts(n: int, fractions: list[float]) -> list[int]:
    counts = [round(f * n) for f in fractions]
    counts[0] += n - sum(counts)
    return counts


def control_vectors(plans: list[ClipPlan]) -> dict[str, np.ndarray]:
    """Each modality's rendered controls per clip (zeros where the modality is absent)."""
    text = np.array([p.text_levels for p in plans], dtype=float)
    audio = np.array(
        [[p.audio_knobs[k] for k in AUDIO_MIX] + [p.voice == SOFT_VOICE] for p in plans], float
    )
    face = np.array([[p.face_knobs[k] for k in FACE_MIX] for p in plans], dtype=float)
    for row, plan in enumerate(plans):
        if "silent" in plan.hard_cases:
            text[row] = 0.0
            audio[row] = 0.0
        if "no_face" in plan.hard_cases:
            face[row] = 0.0
    return {"text": text, "audio": audio, "face": face}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side has no variance."""
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _probe_pearson(controls: np.ndarray, target: np.ndarray, folds: int = 5) -> float:
    """Pearson of a least-squares linear read-out of ``controls``, predicted out of fold."""
    design = np.column_stack([controls, np.ones(len(controls))])
    fold_of = np.arange(len(target)) % folds
    predicted = np.empty_like(target)
    for fold in range(folds):
        held = fold_of == fold
        coef, *_ = np.linalg.lstsq(design[~held], target[~held], rcond=None)
        predicted[held] = design[held] @ coef
    return pearson(predicted, target)


def signal_report(plans: list[ClipPlan]) -> dict:
    """The oracle ceiling and each modality's signal strength, over the labelled clips."""
    labelled = [p for p in plans if p.split != "test"]
    latent = np.array([p.latent for p in labelled])
    label = np.array([p.label for p in labelled])
    oracle = {e: pearson(latent[:, j], label[:, j]) for j, e in enumerate(EMOTIONS)}
    controls = control_vectors(labelled)
    controls["speech"] = np.hstack([controls["text"], controls["audio"]])
    controls["all"] = np.hstack([controls["speech"], controls["face"]])
    modalities = {}
    for name, matrix in controls.items():
        per_emotion = {e: _probe_pearson(matrix, label[:, j]) for j, e in enumerate(EMOTIONS)}
        modalities[name] = {"mean_pearson": _nanmean(per_emotion), "per_emotion": per_emotion}
    return {
        "oracle_mean_pearson": _nanmean(oracle),
        "oracle_per_emotion": oracle,
        "n_labelled": len(labelled),
        "label_zero_fraction": {
            e: float((label[:, j] == 0).mean()) for j, e in enumerate(EMOTIONS)
        },
        "modality_signal": modalities,
        "modality_noise_sd": MODALITY_NOISE_SD,
        "annotators_per_clip": list(ANNOTATORS),
        "notes": (
            "oracle = Pearson(true latent intensity, k/N label), mean over emotions. "
            "modality_signal = Pearson against the labels of a linear read-out (5-fold, out of "
            "fold) of that modality's rendered controls (text levels, prosody knobs, face "
            "action units): what a model that perceived the modality perfectly could reach. "
            "speech = text + audio controls (what the words and the voice carry together)."
        ),
    }


def _nanmean(values: dict[str, float]) -> float:
    return float(np.nanmean(list(values.values())))
