"""Which device a job runs on: ``auto`` (a GPU when one is present), ``cpu``, ``cuda`` or
``cuda:N``. Asking for CUDA where there is none is :class:`DeviceUnavailable`, one line."""

from __future__ import annotations


class DeviceUnavailable(RuntimeError):
    """A CUDA device was asked for and there is none."""


def torch_device(device: str, what: str = "device") -> str:
    """A torch device name for ``device``; ``what`` names the setting in the error."""
    import torch

    return _resolve(device, torch.cuda.device_count(), what)


def ctranslate2_device(device: str, what: str = "device") -> str:
    """The same for CTranslate2 (faster-whisper), which finds GPUs on its own."""
    import ctranslate2

    return _resolve(device, ctranslate2.get_cuda_device_count(), what)


def _resolve(device: str, gpus: int, what: str) -> str:
    if device == "auto":
        return "cuda" if gpus else "cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if index >= gpus:
            raise DeviceUnavailable(
                f"{what} is {device!r} but this machine has "
                f"{gpus or 'no'} CUDA device{'s' if gpus != 1 else ''}; "
                f"set {what}: cpu (or auto)"
            )
    elif device != "cpu":
        raise DeviceUnavailable(f"{what} is {device!r}: use auto, cpu, cuda or cuda:N")
    return device
