"""The per-clip library: one clip, or a batch of clips, in; faces, audio, transcript and
features out.

Typed settings (:mod:`~mimicflow.clip.settings`), per-clip artefacts
(:mod:`~mimicflow.clip.artefacts`), batch-independent encoders (:mod:`~mimicflow.clip.encoders`)
and the maps over a batch (:mod:`~mimicflow.clip.batch`). The DVC stages, inference, serving and
monitoring all call this library, so a clip gets the same features through every door. It knows
nothing of manifests, DVC or stage paths.
"""
