"""Reading safetensors files without trusting them (charrnn/store/tensorfile.py): files written by
the ``safetensors`` package read back exactly; damaged or lying files, and files that do not hold
what the config implies, are refused with one CheckpointError naming the file."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from charrnn.errors import CharRNNError, CheckpointError
from charrnn.store.tensorfile import check_header, dtype_name, read_arrays, read_tensors

Reader = Callable[..., Any]
READERS = [check_header, read_tensors, read_arrays]


def _tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "embedding.weight": torch.randn(5, 3),
        "head.bias": torch.randn(5),
        "steps": torch.arange(4, dtype=torch.int64),
    }


EXPECTED = {"embedding.weight": ((5, 3), "F32"), "head.bias": ((5,), "F32"), "steps": ((4,), "I64")}


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    save_torch(_tensors(), str(path), metadata={"format": "pt"})
    return path


def _parts(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _write(path: Path, header: dict[str, Any] | bytes, data: bytes) -> None:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)


def _refused(reader: Reader, path: Path, message: str, **kw: Any) -> None:
    """One line, a CheckpointError (a CharRNNError: the CLI prints it and exits 1), naming the
    file first."""
    with pytest.raises(CheckpointError, match=message) as e:
        reader(path, **kw)
    assert isinstance(e.value, CharRNNError)
    assert str(e.value).startswith(f"{path}: ")
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- good files


def test_tensors_read_back_exactly(good: Path) -> None:
    check_header(good, EXPECTED)
    got = read_tensors(good, EXPECTED)
    want = _tensors()
    assert set(got) == set(want)
    for name, t in want.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t), name


def test_arrays_read_back_exactly_from_a_numpy_written_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    arrays: dict[str, np.ndarray] = {
        "a": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
        "b": np.arange(3),
    }
    save_numpy(arrays, str(path))
    got = read_arrays(path, {name: (a.shape, a.dtype) for name, a in arrays.items()})
    for name, a in arrays.items():
        assert got[name].dtype == a.dtype
        np.testing.assert_array_equal(got[name], a)


@pytest.mark.parametrize(
    "dtype", ["F32", "float32", torch.float32, np.dtype("float32"), np.float32]
)
def test_expected_dtypes_may_be_named_as_safetensors_torch_or_numpy_name_them(
    good: Path, dtype: Any
) -> None:
    check_header(good, {**EXPECTED, "head.bias": ((5,), dtype)})
    assert dtype_name(dtype) == "F32"


def test_dtype_names() -> None:
    assert dtype_name(torch.bfloat16) == "BF16"
    assert dtype_name("int64") == dtype_name(np.dtype(np.int64)) == "I64"
    assert dtype_name(torch.bool) == "BOOL"
    assert dtype_name("complex64") == "complex64"  # unknown: left as it is (then mismatches)


def test_an_empty_tensor_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    save_torch({"empty": torch.zeros(0, 3)}, str(path))
    assert read_tensors(path, {"empty": ((0, 3), "F32")})["empty"].shape == (0, 3)


# ----------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("reader", READERS)
def test_a_missing_file(reader: Reader, tmp_path: Path) -> None:
    _refused(reader, tmp_path / "absent.safetensors", "missing from the checkpoint")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("size", [0, 5])
def test_a_file_shorter_than_the_header_length(reader: Reader, good: Path, size: int) -> None:
    good.write_bytes(good.read_bytes()[:size])
    _refused(reader, good, rf"truncated \({size} bytes, not a safetensors file\)")


@pytest.mark.parametrize("reader", READERS)
def test_a_file_cut_inside_its_header(reader: Reader, good: Path) -> None:
    good.write_bytes(good.read_bytes()[:40])
    _refused(reader, good, "not a safetensors file \\(header length \\d+ exceeds file size 40\\)")


@pytest.mark.parametrize("reader", READERS)
def test_a_file_cut_inside_its_data(reader: Reader, good: Path) -> None:
    good.write_bytes(good.read_bytes()[:-4])
    _refused(reader, good, "tensor '.*' points past the end of the file \\(truncated\\?\\)")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("header", [b"not json at all!", b"[1, 2, 3]", b"\xff\xfe{}"])
def test_a_header_that_is_not_a_json_object(reader: Reader, tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    _write(path, header, b"")
    _refused(reader, path, "not a safetensors file \\(bad header\\)")


@pytest.mark.parametrize("reader", READERS)
def test_a_header_that_lies_about_offsets(reader: Reader, good: Path) -> None:
    header, data = _parts(good)
    header["head.bias"]["data_offsets"] = [0, len(data) + 400]
    _write(good, header, data)
    _refused(reader, good, "tensor 'head.bias' points past the end of the file")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("offsets", [[-4, 16], [16, 8], ["0", 20], None])
def test_offsets_that_make_no_sense(reader: Reader, good: Path, offsets: Any) -> None:
    header, data = _parts(good)
    header["head.bias"]["data_offsets"] = offsets
    _write(good, header, data)
    if offsets is None:
        _refused(reader, good, "bad header entry for tensor 'head.bias'")
    else:
        _refused(reader, good, "tensor 'head.bias' points past the end of the file")


@pytest.mark.parametrize("reader", READERS)
def test_a_shape_that_does_not_fill_its_bytes(reader: Reader, good: Path) -> None:
    header, data = _parts(good)
    header["embedding.weight"]["shape"] = [5, 4]  # 80 bytes claimed, 60 stored
    _write(good, header, data)
    _refused(reader, good, "tensor 'embedding.weight' size does not match its shape")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("shape", [[-5, 3], [5.0, 3], "5x3"])
def test_a_bad_shape(reader: Reader, good: Path, shape: Any) -> None:
    header, data = _parts(good)
    header["embedding.weight"]["shape"] = shape
    _write(good, header, data)
    _refused(reader, good, "tensor 'embedding.weight' has a bad shape")


@pytest.mark.parametrize("reader", READERS)
def test_an_unknown_dtype(reader: Reader, good: Path) -> None:
    header, data = _parts(good)
    header["head.bias"]["dtype"] = "F8_E4M3"
    _write(good, header, data)
    _refused(reader, good, "tensor 'head.bias' has unsupported dtype 'F8_E4M3'")


@pytest.mark.parametrize("reader", READERS)
def test_a_header_entry_without_its_fields(reader: Reader, good: Path) -> None:
    header, data = _parts(good)
    del header["steps"]["dtype"]
    _write(good, header, data)
    _refused(reader, good, "bad header entry for tensor 'steps'")


# ----------------------------------------------------------------------------- not what is expected


@pytest.mark.parametrize("reader", READERS)
def test_a_wrong_shape_against_expected(reader: Reader, good: Path) -> None:
    expected = {**EXPECTED, "embedding.weight": ((3, 5), "F32")}
    _refused(
        reader,
        good,
        r"tensor 'embedding.weight' has shape \(5, 3\), config.json implies \(3, 5\)",
        expected=expected,
    )


@pytest.mark.parametrize("reader", READERS)
def test_a_wrong_dtype_against_expected(reader: Reader, good: Path) -> None:
    expected = {**EXPECTED, "head.bias": ((5,), torch.float16)}
    _refused(reader, good, "tensor 'head.bias' has dtype F32, expected F16", expected=expected)


@pytest.mark.parametrize("reader", READERS)
def test_a_missing_or_unexpected_tensor(reader: Reader, good: Path) -> None:
    more = {**EXPECTED, "rnn.weight_ih_l0": ((6, 3), "F32")}
    _refused(reader, good, "missing tensor 'rnn.weight_ih_l0'", expected=more)
    fewer = {k: v for k, v in EXPECTED.items() if k != "steps"}
    _refused(reader, good, "unexpected tensor 'steps'", expected=fewer)


@pytest.mark.parametrize("reader", [read_tensors, read_arrays])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(reader: Reader, tmp_path: Path, bad: float) -> None:
    path = tmp_path / "nan.safetensors"
    t = torch.ones(3, 2)
    t[1, 1] = bad
    save_torch({"w": t, "ids": torch.arange(3)}, str(path))
    check_header(path)  # the header alone is fine: only reading the data finds it
    _refused(reader, path, "tensor 'w' holds NaN or Inf values")


def test_bfloat16_reads_as_tensors_but_not_as_numpy_arrays(tmp_path: Path) -> None:
    path = tmp_path / "bf16.safetensors"
    t = torch.randn(4, 2).to(torch.bfloat16)
    save_torch({"w": t}, str(path))
    assert torch.equal(read_tensors(path, {"w": ((4, 2), torch.bfloat16)})["w"], t)
    _refused(read_arrays, path, "cannot read tensors")


def test_the_header_is_checked_before_safetensors_reads_the_data(
    good: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused file never reaches the safetensors loader."""
    import safetensors.torch

    calls: list[str] = []
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *a, **k: calls.append("load"))
    good.write_bytes(good.read_bytes()[:-1])
    _refused(read_tensors, good, "points past the end")
    assert calls == []


@pytest.mark.parametrize("read", [read_tensors, read_arrays])
def test_a_file_in_a_folder_whose_name_is_not_utf8_is_read(tmp_path: Path, read: Reader) -> None:
    import os

    folder = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9-gru"))
    folder.mkdir()
    save_torch(_tensors(), str(folder / "model.safetensors"))
    got = read(folder / "model.safetensors", EXPECTED)
    assert sorted(got) == sorted(EXPECTED)
    assert np.array_equal(np.asarray(got["head.bias"]), _tensors()["head.bias"].numpy())
