"""The public Python API (charrnn/__init__.py), and the README's "Python API" snippet run as is."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import charrnn
from charrnn.text.vocab import UNK_ID

ROOT = Path(__file__).resolve().parent.parent
VERSES = ROOT / "corpora" / "verses.txt"
TRAIN_CHARS = 20_000  # the tiny model sees this much of verses.txt; the next part is held out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GRU trained through the API in about a second."""
    d = tmp_path_factory.mktemp("api")
    corpus = d / "verses-head.txt"
    corpus.write_text(VERSES.read_text(encoding="utf-8")[:TRAIN_CHARS], encoding="utf-8")
    out = charrnn.train(
        corpus,
        out=d / "run",
        max_steps=30,
        hidden=32,
        layers=1,
        batch_size=8,
        seq_len=16,
        eval_every=15,
        device="cpu",
    )
    assert out == d / "run"
    return out


@pytest.fixture(scope="module")
def m(run: Path) -> charrnn.LoadedModel:
    return charrnn.load_model(run, device="cpu")


def held_out(n: int) -> str:
    return VERSES.read_text(encoding="utf-8")[TRAIN_CHARS : TRAIN_CHARS + n]


# ------------------------------------------------------------------------------ the module


def test_import_does_not_load_torch() -> None:
    code = "import charrnn, sys; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    code = "import charrnn, sys; print(sorted(m for m in sys.modules if m.startswith('numpy')))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_all_names_resolve() -> None:
    for name in charrnn.__all__:
        assert getattr(charrnn, name) is not None, name
    from charrnn.store.checkpoint import LoadedModel

    assert charrnn.LoadedModel is LoadedModel
    assert issubclass(charrnn.CheckpointError, charrnn.CharRNNError)
    with pytest.raises(AttributeError):
        _ = charrnn.no_such_name


# ------------------------------------------------------------------------------ the README


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Python API\n(.*?)^## ", text, re.S | re.M)
    assert section, "README.md has no '## Python API' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    assert blocks, "the Python API section has no ```python block"
    return blocks


def test_readme_python_api_snippet_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As a user in the repository root would run it, in a copy of the root that holds only the
    # corpora: everything it writes stays in tmp_path.
    (tmp_path / "corpora").symlink_to(ROOT / "corpora", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARRNN_CHECKPOINTS", raising=False)
    for i, code in enumerate(readme_python_blocks()):
        exec(compile(code, f"README.md (Python API, block {i + 1})", "exec"), {"__name__": "x"})
    printed = capsys.readouterr().out
    assert printed.startswith("THE ")
    assert re.search(r"^\d+\.\d{3} bits/char, perplexity \d+\.\d{2}$", printed, re.M)
    # its own folder, outside ./checkpoints: a later plain `charrnn sample` is not affected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpora", "demo"]
    assert [p.name for p in (tmp_path / "demo").iterdir()] == ["verses-gru"]


# ------------------------------------------------------------------------------ generate


def test_generate_is_reproducible_with_a_seed_and_has_the_length(m: charrnn.LoadedModel) -> None:
    a = charrnn.generate(m, "THE ", length=150, seed=3)
    assert a == charrnn.generate(m, "THE ", length=150, seed=3)
    assert a.startswith("THE ") and len(a) == 4 + 150
    assert charrnn.generate(m, "THE ", length=150, seed=4) != a
    assert "".join(charrnn.generate_stream(m, "THE ", length=150, seed=3)) == a
    # No prime: the text starts as if at the start of a line, with nothing before it.
    assert len(charrnn.generate(m, length=50, seed=1)) == 50
    assert charrnn.generate(m, "THE ", length=0) == "THE "


def test_generate_stop_and_path(m: charrnn.LoadedModel, run: Path) -> None:
    full = charrnn.generate(m, "A", length=300, seed=5)
    cut = full.index(" ", 1)
    assert charrnn.generate(m, "A", length=300, seed=5, stop=" ") == full[:cut]
    assert charrnn.generate(run, "A", length=300, seed=5) == full  # a run folder works too


def test_temperature_zero_is_greedy(m: charrnn.LoadedModel) -> None:
    prime, n = "THE ", 40
    got = charrnn.generate(m, prime, length=n, temperature=0, seed=1)
    assert got == charrnn.generate(m, prime, length=n, temperature=0, seed=2)
    ids = m.vocab.encode(prime)
    with torch.no_grad():
        for _ in range(n):
            logits, _ = m.model(torch.tensor([ids]))  # (1, T, V)
            z = logits[0, -1].clone()
            z[UNK_ID] = float("-inf")
            ids.append(int(z.argmax()))
    assert got == m.vocab.decode(ids)


def test_generate_rejects_bad_arguments(m: charrnn.LoadedModel) -> None:
    with pytest.raises(ValueError, match="top_p"):
        charrnn.generate(m, top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        charrnn.generate_stream(m, temperature=-1)  # checked at the call, not on first use
    with pytest.raises(TypeError, match="LoadedModel"):
        charrnn.generate(m.model, "THE ")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ score


def test_score_units_and_value(m: charrnn.LoadedModel, tmp_path: Path) -> None:
    text = held_out(3000)
    s = charrnn.score(m, text, exact=True)
    # Character model: one prediction per character after the first.
    assert s.tokens == len(text) - 1 and s.chars == len(text) - 1
    assert s.bits_per_char == pytest.approx(s.nats_per_char / math.log(2), rel=1e-12)
    assert s.perplexity == pytest.approx(math.exp(s.nats_per_char), rel=1e-12)
    # Per token: the same total loss, over the predictions.
    assert s.nats_per_token * s.tokens == pytest.approx(s.nats_per_char * s.chars, rel=1e-12)
    assert s.bits_per_token == pytest.approx(s.bits_per_char, rel=1e-12)
    # The loss itself, computed directly.
    ids = torch.tensor(m.vocab.encode(text))
    with torch.no_grad():
        logits, _ = m.model(ids[:-1].view(1, -1))  # (1, N-1, V)
        nats = F.cross_entropy(logits[0].double(), ids[1:], reduction="sum").item()
    assert s.nats == pytest.approx(nats, rel=1e-4)
    # The default (parallel) protocol is within a tiny tolerance; a file scores as its text.
    fast = charrnn.score(m, text)
    assert fast.tokens == s.tokens
    assert fast.bits_per_char == pytest.approx(s.bits_per_char, rel=1e-4)
    f = tmp_path / "held-out.txt"
    f.write_text(text, encoding="utf-8")
    assert charrnn.score_file(m, f, exact=True).nats == pytest.approx(s.nats, rel=1e-9)


def test_score_errors(m: charrnn.LoadedModel, tmp_path: Path) -> None:
    with pytest.raises(charrnn.CharRNNError, match="too short"):
        charrnn.score(m, "A")
    with pytest.raises(TypeError, match="score_file"):
        charrnn.score(m, tmp_path / "a.txt")  # type: ignore[arg-type]
    with pytest.raises(charrnn.CorpusError, match="no such file"):
        charrnn.score_file(m, tmp_path / "missing.txt")
    with pytest.raises(charrnn.CheckpointError, match="no such checkpoint"):
        charrnn.load_model(tmp_path / "nowhere")


# ------------------------------------------------------------------------------ train


def test_train_made_what_was_asked(run: Path, m: charrnn.LoadedModel) -> None:
    assert (run / "best").is_file() and m.path.parent == run
    assert (m.model.config.cell, m.model.config.hidden, m.model.config.layers) == ("gru", 32, 1)
    training = m.config["training"]
    assert (training["batch_size"], training["seq_len"], training["max_steps"]) == (8, 16, 30)


def test_train_rejects_unknown_options(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(TypeError, match=r"'batch_sise' \(did you mean 'batch_size'\?\)"):
        charrnn.train(VERSES, out=out, max_steps=1, batch_sise=8)
    with pytest.raises(TypeError, match="corpus"):
        charrnn.train(out=out, max_steps=1)
    with pytest.raises(TypeError, match="seconds"):
        charrnn.train(VERSES, out=out, max_time="10m")  # type: ignore[arg-type]
    with pytest.raises(charrnn.CharRNNError, match="cell"):
        charrnn.train(VERSES, out=out, max_steps=1, cell="transformer")
    with pytest.raises(charrnn.CorpusError, match="no such file"):
        charrnn.train(tmp_path / "missing.txt", out=out, max_steps=1)
    assert not out.exists()


def test_train_resume_reports_when_not_quiet(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert charrnn.train(resume=copy, max_steps=36, quiet=False, device="cpu") == copy
    latest = (copy / "latest").read_text().strip()
    assert latest == "step-00000036"
    err = capsys.readouterr().err
    assert re.search(r"step 36: validation \d+\.\d{4} bits/char", err)
    with pytest.raises(charrnn.CharRNNError, match="cannot be changed"):
        charrnn.train(resume=copy, max_steps=40, hidden=64)
