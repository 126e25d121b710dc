"""Start-up: commands that need no tensors never import torch, CPU sampling reads the checkpoint
with NumPy alone, and both sampling engines print the same text for a seed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.errors import CheckpointError
from charrnn.model.arrays import ArrayModel
from charrnn.model.config import parameters_of, weight_shapes
from charrnn.model.rnn import CELLS, CharRNN, ModelConfig
from charrnn.sample import generate as sampling
from charrnn.sample.generate import engine, generate, generate_many
from charrnn.sample.load import load_for_sampling
from charrnn.sample.policy import SampleConfig
from charrnn.store import checkpoint as ck
from charrnn.store import saving
from charrnn.store.metrics import MetricsLog
from charrnn.text.vocab import Vocab

ROOT = Path(__file__).resolve().parent.parent
TEXT = "the quick brown fox jumps over the lazy dog.\nTHE END\n"


def _save_run(root: Path, cell: str, tie: bool = False, vocab: Vocab | None = None) -> Path:
    """A run folder with one checkpoint of a small random model (non-zero biases everywhere,
    outputs scaled up so that the distributions are not flat), and a metrics log to plot."""
    vocab = vocab or Vocab.build(TEXT)
    torch.manual_seed(CELLS.index(cell) + 10 * tie)
    mc = ModelConfig(len(vocab), cell, 2, hidden=24, embed_dim=24 if tie else 8, tie_weights=tie)
    model = CharRNN(mc)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
        model.head.bias.mul_(4.0)
    run = root / f"{cell}{'-tied' if tie else ''}"
    config = {
        "format_version": ck.FORMAT_VERSION,
        "model": mc.to_dict(),
        "tokenizer": {"type": "char"},
        "data": {"sources": ["fox.txt"]},
        "metrics": {"step": 1},
    }
    files = {ck.CONFIG: config, ck.VOCAB: vocab.to_dict()}
    saving.write_checkpoint(run, "step-00000001", files, {ck.MODEL: saving.model_tensors(model)})
    for pointer in (ck.BEST, ck.LATEST):
        saving.set_pointer(run, pointer, "step-00000001")
    log = MetricsLog(run)
    for step in (1, 2):
        record = {"step": step, "time": step, "chars": 100 * step, "val_bits_per_char": 4 - step}
        log.write({"event": "eval", **record})
    log.close()
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("startup")
    made = {cell: _save_run(root, cell) for cell in CELLS}
    made["gru-tied"] = _save_run(root, "gru", tie=True)
    return made


# ------------------------------------------------------------------------------ no torch


def _imports_torch(args: list[str], env: dict[str, str] | None = None) -> tuple[bool, str]:
    """Run ``python -X importtime -m charrnn ARGS``: (whether torch was imported, stdout)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "charrnn", *args]
    full_env = {k: v for k, v in os.environ.items() if k != "CHARRNN_ENGINE"} | (env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    modules = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", r.stderr, re.MULTILINE)
    assert "charrnn" in modules  # the hook saw the imports
    return any(m == "torch" or m.startswith("torch.") for m in modules), r.stdout


def test_commands_that_need_no_tensors_never_import_torch(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    gru = str(runs["gru"])
    cases: list[list[str]] = [["--help"]]
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    cases += [[c, "--help"] for c in commands]  # every command the app has
    cases += [["runs", str(runs["gru"].parent)], ["info", gru], ["info", gru, "--json"]]
    cases.append(["sample", "-c", gru, "--length", "30", "--seed", "1", "--device", "cpu"])
    cases.append(["sample", "-c", gru, "--length", "5", "--num-samples", "3", "--top-k", "3"])
    for args in cases:
        if args[:1] == ["sample"] and "--device" not in args:
            args = [*args, "--device", "cpu"]
        torch_imported, out = _imports_torch(args)
        assert not torch_imported, f"charrnn {' '.join(args)} imported torch"
        assert out
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    assert not _imports_torch(["plot", gru, "--out", str(png)])[0]
    assert png.stat().st_size > 0
    env = {"_CHARRNN_COMPLETE": "complete_bash", "COMP_WORDS": "charrnn sa", "COMP_CWORD": "1"}
    torch_imported, out = _imports_torch([], env)
    assert not torch_imported and "sample" in out


def test_forcing_the_torch_engine_imports_torch(runs: dict[str, Path]) -> None:
    args = ["sample", "-c", str(runs["gru"]), "--length", "5", "--device", "cpu"]
    assert _imports_torch(args, {"CHARRNN_ENGINE": "torch"})[0]


# ------------------------------------------------------------------------------ the same text


def _both(run: Path, how: str, **kw) -> tuple[object, object]:  # type: ignore[no-untyped-def]
    """The texts of the NumPy engine (weights read by NumPy) and of the torch engine."""
    arrays, torch_model = ck.load_arrays(run), ck.load_model(run)
    assert isinstance(arrays.model, ArrayModel)
    assert engine(arrays.model) == "numpy" and engine(torch_model.model, fast=False) == "torch"
    prime, n, cfg = kw.pop("prime"), kw.pop("n"), SampleConfig(**kw)
    if how == "one":
        a = "".join(generate(arrays.model, arrays.vocab, prime, cfg))
        b = "".join(generate(torch_model.model, torch_model.vocab, prime, cfg, fast=False))
        return a, b
    a = generate_many(arrays.model, arrays.vocab, n, prime, cfg)
    return a, generate_many(torch_model.model, torch_model.vocab, n, prime, cfg, fast=False)


@pytest.mark.parametrize("name", [*CELLS, "gru-tied"])
@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": 0.0},
        {"temperature": 1.0, "seed": 3},
        {"temperature": 0.7, "seed": 4, "top_k": 4},
        {"temperature": 1.2, "seed": 5, "top_p": 0.8},
        {"temperature": 5e-5, "seed": 6},  # below the picker's short path
    ],
)
def test_both_engines_print_the_same_text(
    runs: dict[str, Path], name: str, kw: dict[str, float]
) -> None:
    for prime in ("", "the "):
        a, b = _both(runs[name], "one", prime=prime, n=1, length=120, **kw)
        assert a == b and len(str(a)) == len(prime) + 120
        many_a, many_b = _both(runs[name], "many", prime=prime, n=3, length=60, **kw)
        assert many_a == many_b
        if kw["temperature"] >= 0.5:
            assert len(set(many_a)) > 1  # type: ignore[arg-type]


def test_both_engines_draw_the_first_character_alike(tmp_path: Path) -> None:
    """No prime and no newline in the vocabulary: the first character is drawn from the
    character counts, by the same generator, in both engines."""
    run = _save_run(tmp_path, "lstm", vocab=Vocab.build("abcabcaab xyz"))
    for seed in range(5):
        a, b = _both(run, "one", prime="", n=1, length=10, seed=seed)
        assert a == b and len(str(a)) == 11


def test_cli_prints_the_same_text_with_either_engine(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["sample", "-c", str(runs["lstm"]), "--length", "200", "--seed", "9", "--device", "cpu"]
    for extra in ([], ["--num-samples", "2", "--top-p", "0.9"]):
        monkeypatch.delenv("CHARRNN_ENGINE", raising=False)
        numpy_out = CliRunner().invoke(app, args + extra)
        monkeypatch.setenv("CHARRNN_ENGINE", "torch")
        torch_out = CliRunner().invoke(app, args + extra)
        assert numpy_out.exit_code == torch_out.exit_code == 0, numpy_out.output
        assert numpy_out.stdout == torch_out.stdout and len(numpy_out.stdout) > 200


# ------------------------------------------------------------------------------ the one choice


def test_engine_for_a_device_to_load_on(
    monkeypatch: pytest.MonkeyPatch, runs: dict[str, Path]
) -> None:
    monkeypatch.delenv("CHARRNN_ENGINE", raising=False)
    monkeypatch.setattr(sampling, "cuda_possible", lambda: False)
    assert engine("cpu") == engine("auto") == engine(" CPU ") == "numpy"
    assert engine("cuda") == engine("cuda:1") == "torch"
    assert engine("cpu", fast=False) == "torch"
    assert isinstance(load_for_sampling(runs["gru"], "auto"), ck.LoadedArrays)
    assert isinstance(load_for_sampling(runs["gru"], "cpu", fast=False), ck.LoadedModel)
    monkeypatch.setattr(sampling, "cuda_possible", lambda: True)
    assert engine("auto") == "torch" and engine("cpu") == "numpy"
    monkeypatch.setattr(sampling, "cuda_possible", lambda: False)
    monkeypatch.setenv("CHARRNN_ENGINE", "torch")
    assert engine("cpu") == engine(ck.load_arrays(runs["gru"]).model) == "torch"
    assert isinstance(load_for_sampling(runs["gru"], "cpu"), ck.LoadedModel)


# ------------------------------------------------------------------------------ checks, sizes


def test_arrays_loader_makes_the_same_checks(runs: dict[str, Path], tmp_path: Path) -> None:
    cases = [
        (lambda t: t.__setitem__("head.bias", torch.zeros(3)), "has shape"),
        (lambda t: t.__setitem__("head.bias", t["head.bias"].double()), "has dtype F64"),
        (lambda t: t.__setitem__("head.bias", t["head.bias"].bfloat16()), "has dtype BF16"),
        (lambda t: t.__setitem__("extra", torch.zeros(1)), "unexpected tensor 'extra'"),
        (lambda t: t.pop("head.bias"), "missing tensor 'head.bias'"),
        (lambda t: t["rnn.weight_hh_l1"].__setitem__((0, 0), float("inf")), "NaN or Inf"),
    ]
    for i, (change, message) in enumerate(cases):
        run = _save_run(tmp_path / str(i), "gru")
        path = ck.resolve_checkpoint(run) / ck.MODEL
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))
        for load in (ck.load_arrays, ck.load_model):
            with pytest.raises(CheckpointError, match=message) as e:
                load(run)
            assert str(path) in str(e.value)
    run = _save_run(tmp_path / "version", "gru")
    config_path = ck.resolve_checkpoint(run) / ck.CONFIG
    config = json.loads(config_path.read_text())
    config["format_version"] = 99
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unsupported format_version 99"):
        ck.load_arrays(run)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(("layers", "tie"), [(1, False), (3, False), (2, True)])
def test_sizes_from_the_config_alone_match_the_model(cell: str, layers: int, tie: bool) -> None:
    mc = ModelConfig(37, cell, layers, hidden=20, embed_dim=20 if tie else 7, tie_weights=tie)
    model = CharRNN(mc)
    assert parameters_of(mc) == model.num_parameters()
    stored = {k: tuple(v.shape) for k, v in saving.model_tensors(model).items()}
    assert weight_shapes(mc) == stored and list(weight_shapes(mc)) == list(stored)


def test_array_model_round_trip(runs: dict[str, Path]) -> None:
    loaded = ck.load_model(runs["gru-tied"])
    arrays = ArrayModel.from_torch(loaded.model)
    back = arrays.to_torch()
    idx = torch.arange(len(loaded.vocab)).view(1, -1)
    with torch.no_grad():
        assert torch.equal(back(idx)[0], loaded.model(idx)[0])
    from_file = ck.load_arrays(runs["gru-tied"]).model
    assert from_file.arrays.keys() == arrays.arrays.keys()
    for k, a in arrays.arrays.items():
        np.testing.assert_array_equal(a, from_file.arrays[k])
    with pytest.raises(ValueError, match="do not match"):
        ArrayModel(ModelConfig(5, "gru", 1, 4, 4), dict(arrays.arrays))
