"""The per-clip library: one clip, or a batch of clips, in; faces, audio, transcript and
features out.

Typed settings and the registry of encoder kinds (:mod:`~mimicflow.clip.settings`), per-clip
artefact folders (:mod:`~mimicflow.clip.folders`), the encoder kinds
(:mod:`~mimicflow.clip.encoders`, registered when first looked up) and a batch of clips through them
(:mod:`~mimicflow.clip.chain`, :mod:`~mimicflow.clip.features`). The DVC stages, inference,
serving and monitoring all call this library, so a clip gets the same features through every
door. It knows nothing of manifests, DVC or stage paths.
"""
