from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.errors import CheckpointError
from charrnn.store import checkpoint as ck


def _logits(model: torch.nn.Module, vocab_size: int) -> torch.Tensor:
    idx = torch.arange(vocab_size).remainder(vocab_size).view(1, -1)
    with torch.no_grad():
        return model(idx)[0]


def test_save_load_gives_identical_logits(trained_run: Path) -> None:
    loaded = ck.load_model(trained_run)
    assert loaded.path.parent == trained_run
    again = ck.load_model(loaded.path)  # a checkpoint folder works too
    v = len(loaded.vocab)
    assert torch.equal(_logits(loaded.model, v), _logits(again.model, v))
    files = {p.name for p in loaded.path.iterdir()}
    assert {ck.CONFIG, ck.VOCAB, ck.MODEL, ck.OPTIMIZER, ck.TRAINER_STATE} <= files
    config = json.loads((loaded.path / ck.CONFIG).read_text())
    assert config["format_version"] == ck.FORMAT_VERSION
    assert config["model"]["vocab_size"] == v


def test_best_and_latest_pointers(trained_run: Path) -> None:
    best = ck.read_pointer(trained_run, ck.BEST)
    latest = ck.read_pointer(trained_run, ck.LATEST)
    assert best is not None and latest is not None
    assert latest == "step-00000150"
    # Only the checkpoints that a pointer names are kept.
    assert {p.name for p in ck.checkpoint_folders(trained_run)} == {best, latest}


def _copy_run(trained_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run, ck.resolve_checkpoint(run)


def test_pointer_to_missing_folder_falls_back(trained_run: Path, tmp_path: Path) -> None:
    run, _ = _copy_run(trained_run, tmp_path)
    (run / ck.LATEST).write_text("step-00777777\n")
    (run / ck.BEST).write_text("garbage")
    newest = ck.checkpoint_folders(run)[-1]
    assert ck.newest_checkpoint(run) == newest
    assert ck.resolve_checkpoint(run) == newest


class _Payload:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(_Payload.marker),))

    marker = ""


def test_pickle_payload_is_never_executed(trained_run: Path, tmp_path: Path) -> None:
    run, best = _copy_run(trained_run, tmp_path)
    marker = tmp_path / "pwned"
    _Payload.marker = str(marker)
    (best / ck.MODEL).write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a safetensors file"):
        ck.load_model(run)
    assert not marker.exists()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"", "truncated"),
        (lambda b: b[:5], "truncated"),
        (lambda b: b[:40], "not a safetensors file"),
        (lambda b: b[: len(b) - 100], "points past the end"),
        (lambda b: struct.pack("<Q", 10**12) + b[8:], "exceeds file size"),
    ],
)
def test_broken_weights_files(trained_run: Path, tmp_path: Path, mutate, message) -> None:  # type: ignore[no-untyped-def]
    run, best = _copy_run(trained_run, tmp_path)
    p = best / ck.MODEL
    p.write_bytes(mutate(p.read_bytes()))
    with pytest.raises(CheckpointError, match=message) as e:
        ck.load_model(run)
    assert str(p) in str(e.value)


def _rewrite_weights(best: Path, change) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(best / ck.MODEL))
    change(tensors)
    save_file(tensors, str(best / ck.MODEL))


def test_wrong_shape_dtype_name_and_nan(trained_run: Path, tmp_path: Path) -> None:
    cases = [
        (lambda t: t.__setitem__("head.bias", torch.zeros(3)), "has shape"),
        (lambda t: t.__setitem__("head.bias", t["head.bias"].double()), "has dtype F64"),
        (lambda t: t.__setitem__("extra", torch.zeros(1)), "unexpected tensor 'extra'"),
        (lambda t: t.pop("head.bias"), "missing tensor 'head.bias'"),
        (lambda t: t["head.bias"].__setitem__(0, float("nan")), "NaN or Inf"),
    ]
    for i, (change, message) in enumerate(cases):
        run, best = _copy_run(trained_run, tmp_path / str(i))
        _rewrite_weights(best, change)
        with pytest.raises(CheckpointError, match=message):
            ck.load_model(run)


def test_config_problems(trained_run: Path, tmp_path: Path) -> None:
    run, best = _copy_run(trained_run, tmp_path / "a")
    cfg = json.loads((best / ck.CONFIG).read_text())
    cfg["format_version"] = 99
    (best / ck.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unsupported format_version 99"):
        ck.load_model(run)

    run, best = _copy_run(trained_run, tmp_path / "b")
    vocab = json.loads((best / ck.VOCAB).read_text())
    vocab["chars"] = vocab["chars"][:-1]
    vocab["counts"] = vocab["counts"][:-1]
    (best / ck.VOCAB).write_text(json.dumps(vocab))
    with pytest.raises(CheckpointError, match=r"vocab\.json: holds .* but config\.json says"):
        ck.load_model(run)

    run, best = _copy_run(trained_run, tmp_path / "c")
    (best / ck.VOCAB).unlink()
    with pytest.raises(CheckpointError, match=r"vocab\.json: missing"):
        ck.load_model(run)

    run, best = _copy_run(trained_run, tmp_path / "d")
    (best / ck.CONFIG).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: invalid JSON"):
        ck.load_model(best)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ck.resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not a charrnn run or checkpoint"):
        ck.resolve_checkpoint(tmp_path)


def test_a_folder_of_runs_means_its_newest_run(trained_run: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    old, new = root / "old-gru", root / "new-gru"
    shutil.copytree(trained_run, old)
    shutil.copytree(trained_run, new)
    (root / "README.md").parent.mkdir(exist_ok=True)
    (root / "README.md").write_text("not a run")
    best = ck.read_pointer(new, ck.BEST)
    cfg = new / str(best) / ck.CONFIG
    os.utime(cfg, (cfg.stat().st_atime + 100, cfg.stat().st_mtime + 100))
    assert ck.resolve_checkpoint(root) == new / str(best)
    r = CliRunner().invoke(app, ["sample", "-c", str(root), "--length", "5", "--seed", "1"])
    assert r.exit_code == 0 and len(r.stdout) == 6, r.output


def test_a_run_before_its_first_checkpoint_says_so(tmp_path: Path) -> None:
    run = tmp_path / "verses-gru"
    run.mkdir()
    (run / "tokens-train.bin").write_bytes(b"\x01\x02")
    (run / ".lock").write_text("{}")
    with pytest.raises(CheckpointError, match=r"verses-gru: no checkpoint yet"):
        ck.resolve_checkpoint(run)
    r = CliRunner().invoke(app, ["sample", "-c", str(run)])
    assert r.exit_code == 1 and "no checkpoint yet" in r.output and r.output.count("\n") == 1


def test_no_pickle_on_the_library_path() -> None:
    """The rule: nothing in charrnn/ may call torch.load or pickle (checkpoints are plain files)."""
    src = Path(ck.__file__).parent
    for f in src.rglob("*.py"):
        text = f.read_text()
        assert "torch.load(" not in text, f
        assert "import pickle" not in text and "pickle.load" not in text, f


def test_cli_reports_a_broken_checkpoint_in_one_line(trained_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from charrnn.cli import app

    run, best = _copy_run(trained_run, tmp_path)
    (best / ck.MODEL).write_bytes((best / ck.MODEL).read_bytes()[:200])
    for args in (["sample", "-c", str(run)], ["eval-perplexity", "-", "-c", str(run)]):
        r = CliRunner().invoke(app, args, input="some text\n")
        assert r.exit_code == 1
        assert r.output.count("\n") == 1 and r.output.startswith("charrnn: error: ")
        assert str(best / ck.MODEL) in r.output and "Traceback" not in r.output


# ----------------------------------------------------------------------------- pruned mid-read


@pytest.mark.parametrize("partly", [False, True], ids=["removed", "half-removed"])
@pytest.mark.parametrize("loader", ["load_model", "load_arrays"])
def test_a_checkpoint_pruned_while_it_is_loaded_is_loaded_as_the_pointer_names_it_then(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, partly: bool, loader: str
) -> None:
    """A run in training saves, moves its pointers and prunes the checkpoint a reader was
    reading: that is not damage, the reader loads the one the pointer names now."""
    from .conftest import prune_on_first_call

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    first = ck.resolve_checkpoint(run)
    calls = prune_on_first_call(monkeypatch, ck, "read_config", run, partly)
    loaded = getattr(ck, loader)(run)
    assert calls[0] == first and loaded.path == ck.resolve_checkpoint(run) != first
    assert first.exists() == partly


def test_a_checkpoint_named_itself_and_pruned_while_read_says_so(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from .conftest import prune_on_first_call, supersede

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    first = ck.resolve_checkpoint(run)
    prune_on_first_call(monkeypatch, ck, "read_config", run)
    with pytest.raises(CheckpointError, match=r"removed while it was read \(pruned by its run\)"):
        ck.load_model(first)
    # Half removed, it vanishes within the grace a prune takes: also not "damaged".
    monkeypatch.undo()
    second = ck.resolve_checkpoint(run)
    real, fired = ck.read_config, []

    def half(path: Path) -> dict[str, object]:
        if not fired:
            fired.append(supersede(run, partly=True))  # its weights gone, the rest going:
            threading.Timer(0.05, shutil.rmtree, [second]).start()  # the prune goes on
        return real(path)

    monkeypatch.setattr(ck, "read_config", half)
    with pytest.raises(CheckpointError, match="removed while it was read"):
        ck.load_arrays(second)
    assert fired == [second] and not second.exists()


def test_a_broken_checkpoint_still_there_is_damaged(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    best = ck.resolve_checkpoint(run)
    (best / ck.MODEL).unlink()  # broken, and no run is pruning it
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        ck.load_model(run)
    calls = []
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        ck.read_checkpoint(run, lambda c: calls.append(c) or ck.load_arrays(c))
    assert calls == [best]  # read once: nothing moved


def test_read_checkpoint_gives_up_on_a_checkpoint_replaced_under_every_read(
    trained_run: Path, tmp_path: Path
) -> None:
    from .conftest import supersede

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)

    def read(ckpt: Path) -> None:
        supersede(run)
        ck.read_config(ckpt)

    with pytest.raises(CheckpointError, match=f"replaced under {ck.READ_TRIES} reads in a row"):
        ck.read_checkpoint(run, read)


def test_a_pointer_to_a_renamed_step_folder_is_named(trained_run: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = root / "verses"
    shutil.copytree(trained_run, run)
    for step in ck.checkpoint_folders(run):  # every checkpoint renamed away
        step.rename(run / f"old-{step.name}")
    best = (run / ck.BEST).read_text().strip()
    with pytest.raises(CheckpointError, match=rf"its best pointer names {best}, which is missing"):
        ck.resolve_checkpoint(run)
    r = CliRunner().invoke(app, ["sample", "-c", str(run)])
    assert r.exit_code == 1 and f"names {best}, which is missing" in r.output
    r = CliRunner().invoke(app, ["runs", str(root)])
    assert f"{run}: its best pointer names {best}, which is missing" in r.output  # not silent
