"""The fusion systems by name: each system's module registers one :class:`SystemSpec`.

A spec is everything the trainer, the ensemble and ``compare`` know about a system: its params
section (``train.<name>``, a :class:`~mimicflow.config.SystemParams`), its module and which of
the section's settings the module's constructor takes, the inputs it accepts, how frames are
sampled, its optimiser groups, any loss beside the regression loss, and an optional
pre-training. Registering the spec also registers the section with :mod:`mimicflow.config`, so
``train.system`` and ``train.<name>`` are validated against the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from mimicflow.config import SystemParams, register_system_params
from mimicflow.fusion.models import EmiModel, branch_kind


@dataclass(frozen=True)
class Pretraining:
    """One pre-training stage: ``epochs`` of the loop over ``parameters`` alone, early-stopped
    and logged as ``name``; the stage's best weights are kept before the next one."""

    name: str
    epochs: int
    parameters: Iterable[torch.nn.Parameter]


def _all_parameters(model: EmiModel, hyper: SystemParams):
    return model.parameters()


@dataclass(frozen=True)
class SystemSpec:
    """One fusion system.

    - ``params``: its section of ``train`` (optimiser settings from :class:`SystemParams`, the
      model's own settings beside them); ``hyper``: the section's settings the constructor takes.
    - ``branches``: the branch families (audio, visual, text) of the inputs it accepts.
    - ``sampling``: how a clip's frames become a batch's steps, in training and in evaluation
      (``mean``: each TSN segment's mean; ``random``: one valid frame per segment; ``centre``).
    - ``param_groups(model, hyper)``: the optimiser's parameter groups (default: all at ``lr``).
    - ``extra_loss(model, out, hyper, clip_mean)``: a term added to the regression loss, or
      None; ``clip_mean(branch)`` gives the batch clips' whole-clip mean features of a family.
    - ``loss(model, out, target, hyper, epoch)``: the system's own training loss, in place of
      the regression loss and ``extra_loss`` (``epoch`` counts from 0), or None.
    - ``pretraining(model, hyper)``: the stages run before fusion training (a generator: it may
      set the model up for each stage and restore it after the last).
    - ``finetuned_head``: its section has ``head: retrained | finetuned``; ``finetuned``: the
      fold's model is the head the ``adapt`` stage fine-tuned with its input's encoder (loaded
      and evaluated, not trained; :meth:`finetuned`).
    """

    name: str
    params: type[SystemParams]
    model: type[EmiModel]
    hyper: tuple[str, ...]
    branches: tuple[str, ...] = ("audio", "visual", "text")
    sampling: tuple[str, str] = ("mean", "mean")
    param_groups: Callable = _all_parameters
    extra_loss: Callable | None = None
    loss: Callable | None = None
    pretraining: Callable[[EmiModel, SystemParams], Iterator[Pretraining]] | None = None
    finetuned_head: bool = False

    def inputs(self, kinds: dict[str, str]) -> tuple[str, ...]:
        """The inputs (name → modality) this system takes, in their order."""
        return tuple(name for name, kind in kinds.items() if branch_kind(kind) in self.branches)

    def finetuned(self, params: SystemParams) -> bool:
        """Whether the fold's model is the adapt stage's fine-tuned head (``head: finetuned``)."""
        return self.finetuned_head and params.head == "finetuned"

    def hyper_of(self, params: SystemParams) -> dict:
        """The constructor arguments, from the system's params section."""
        return {name: getattr(params, name) for name in self.hyper}

    def build(self, dims: dict[str, int], kinds: dict[str, str], **hyper) -> EmiModel:
        return self.model(dims, kinds, **hyper)


SYSTEMS: dict[str, SystemSpec] = {}


def register(spec: SystemSpec, default: bool = False) -> SystemSpec:
    """Add ``spec`` (and its params section, as ``train.<name>``); ``default``: the system
    ``train.system`` names when params leave it out."""
    if spec.name in SYSTEMS:
        raise ValueError(f"fusion system {spec.name!r} is registered twice")
    SYSTEMS[spec.name] = spec
    register_system_params(spec.name, spec.params, default=default)
    return spec


def system(name: str) -> SystemSpec:
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; choose one of {', '.join(SYSTEMS)}")
    return SYSTEMS[name]


def build_model(name: str, dims: dict[str, int], kinds: dict[str, str], **hyper) -> EmiModel:
    """A system's module for its inputs' widths (name → d) and modalities (name → modality)."""
    return system(name).build(dims, kinds, **hyper)
