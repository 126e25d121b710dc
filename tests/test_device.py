"""Device decisions (charrnn/device.py): what --device resolves to, the refusals, and the
torch-free guess whether CUDA could be there at all."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from charrnn import device
from charrnn.device import DEVICE_SPEC, cuda_possible, resolve_device
from charrnn.errors import CharRNNError


def _fake_cuda(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """torch sees ``count`` CUDA devices (0: none); nothing is allocated on them."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu\n"])
def test_cpu_is_the_cpu_whatever_the_spelling(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch, 2)  # CUDA present does not matter for an explicit cpu
    assert resolve_device(spec) == torch.device("cpu")


@pytest.mark.parametrize(("count", "expected"), [(0, "cpu"), (1, "cuda")])
def test_auto_is_cuda_when_present_else_the_cpu(
    count: int, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cuda(monkeypatch, count)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device() == torch.device(expected)  # auto is the default


@pytest.mark.parametrize(("spec", "expected"), [("cuda", "cuda"), ("cuda:1", "cuda:1")])
def test_cuda_devices_that_exist_are_given(
    spec: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cuda(monkeypatch, 2)
    assert resolve_device(spec) == torch.device(expected)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_is_a_clear_error(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch, 0)
    with pytest.raises(CharRNNError, match="CUDA is not available on this machine") as e:
        resolve_device(spec)
    assert str(e.value).startswith(f"--device {spec.lower()}:")


def test_a_cuda_index_past_the_devices_present_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cuda(monkeypatch, 2)
    with pytest.raises(CharRNNError, match=r"--device cuda:2: only 2 CUDA device\(s\) present"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "tpu", "mps", "cuda0", ""])
def test_unknown_devices_are_refused_with_the_choices(spec: str) -> None:
    with pytest.raises(CharRNNError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_device(spec)


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        *[("auto", True), ("cpu", True), ("cuda", True), ("cuda:12", True)],
        *[("cuda:", False), ("cuda:x", False), ("gpu", False), ("cpu ", False), ("CPU", False)],
    ],
)
def test_the_spec_pattern_is_what_the_command_line_accepts(spec: str, ok: bool) -> None:
    """The command line lower-cases and strips before it matches (cli/common.py)."""
    assert bool(DEVICE_SPEC.fullmatch(spec)) is ok


# ----------------------------------------------------------------------------- cuda_possible


def _driver_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, present: bool) -> None:
    """The GPU driver files looked for, in ``tmp_path``: one of them there or none."""
    files = tuple(str(tmp_path / name) for name in ("nvidia-version", "nvidiactl", "kfd"))
    if present:
        Path(files[1]).touch()
    monkeypatch.setattr(device, "_GPU_FILES", files)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize("present", [True, False])
def test_cuda_is_possible_only_where_a_gpu_driver_is_installed(
    present: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _driver_files(monkeypatch, tmp_path, present)
    assert cuda_possible() is present


@pytest.mark.parametrize(("visible", "possible"), [("", False), ("-1", False), (" ", False)])
def test_hidden_devices_rule_cuda_out_even_with_a_driver(
    visible: str, possible: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _driver_files(monkeypatch, tmp_path, present=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert cuda_possible() is possible


def test_visible_devices_leave_the_answer_to_the_driver(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _driver_files(monkeypatch, tmp_path, present=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert cuda_possible() is True


def test_macos_never_has_cuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _driver_files(monkeypatch, tmp_path, present=True)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cuda_possible() is False


@pytest.mark.parametrize("installed", [True, False])
def test_windows_asks_for_the_cuda_driver_dll(
    installed: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _driver_files(monkeypatch, tmp_path, present=True)  # Linux's files do not count there
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("SYSTEMROOT", str(tmp_path / "Windows"))
    if installed:
        (tmp_path / "Windows" / "System32").mkdir(parents=True)
        (tmp_path / "Windows" / "System32" / "nvcuda.dll").touch()
    assert cuda_possible() is installed


def test_cuda_possible_does_not_contradict_torch() -> None:
    """Where torch finds CUDA, the torch-free guess must not have ruled it out."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    assert cuda_possible()
    assert resolve_device("auto") == torch.device("cuda")
