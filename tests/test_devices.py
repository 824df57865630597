"""Devices: ``auto`` falls back to the CPU; asking for CUDA where there is none is one line."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from mimicflow.cli import app
from mimicflow.devices import DeviceUnavailable, ctranslate2_device, torch_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def test_auto_and_cpu_resolve_without_a_gpu():
    assert torch_device("cpu") == "cpu"
    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_an_unknown_device_name_is_refused():
    with pytest.raises(DeviceUnavailable, match="use auto, cpu, cuda or cuda:N"):
        torch_device("tpu", "train.device")


@no_cuda
@pytest.mark.parametrize("resolve", [torch_device, ctranslate2_device])
def test_cuda_without_a_gpu_names_the_setting(resolve):
    with pytest.raises(
        DeviceUnavailable, match=r"asr.device is 'cuda:1' but this machine has no CUDA"
    ):
        resolve("cuda:1", "asr.device")


@no_cuda
def test_the_asr_stage_on_cuda_without_a_gpu_is_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("asr: {device: cuda}\n")
    result = CliRunner().invoke(app, ["stage", "asr", "--params", str(params)])
    assert result.exit_code == 2
    assert "asr.device is 'cuda'" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@no_cuda
def test_training_on_cuda_without_a_gpu_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default outputs are relative: they would land here
    params = tmp_path / "params.yaml"
    params.write_text("train: {device: cuda}\n")
    result = CliRunner().invoke(app, ["stage", "train", "--fold", "0", "--params", str(params)])
    assert result.exit_code == 2
    assert "train.device is 'cuda'" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
