"""charrnn.store.catalog: summaries of runs and checkpoints read from disk, without torch."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from charrnn.store import catalog, disk
from charrnn.store import checkpoint as ck

from .fixtures import pin


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A copy of the run made by charrnn 0.1.0."""
    run = tmp_path / "old"
    shutil.copytree(pin.RUN, run)
    return run


def test_a_0_1_0_run_is_summarized_from_its_config(old_run: Path) -> None:
    s = catalog.summarize_run(old_run)
    assert (s.name, s.corpus, s.tokenizer, s.cell, s.layers, s.hidden) == (
        "old", "<stdin>", "char", "gru", 1, 32,
    )  # fmt: skip
    assert (s.parameters, s.steps, s.best_step) == (7642, 150, 150)
    assert s.best_val_bits_per_char == pytest.approx(3.494431773410027)
    assert s.init_from is None and s.damaged is None
    assert s.size_bytes == sum(p.stat().st_size for p in old_run.rglob("*") if p.is_file())
    runs, problems = catalog.list_runs(old_run.parent)
    assert [r.name for r in runs] == ["old"] and problems == []


def test_a_0_1_0_checkpoint_is_described(old_run: Path) -> None:
    d = catalog.describe_checkpoint(old_run)
    assert d["checkpoint"] == str(old_run / "step-00000150")
    assert d["pointers"] == [ck.BEST, ck.LATEST] and d["problems"] == []
    assert d["charrnn_version"] == "0.1.0" and d["parameters"] == 7642
    v = d["validation"]
    assert v["nats_per_char"] == pytest.approx(2.42215553139825)
    assert v["bits_per_char"] == pytest.approx(2.42215553139825 / math.log(2))
    assert v["perplexity"] == pytest.approx(math.exp(2.42215553139825))
    assert (v["best_bits_per_char"], v["best_step"]) == (pytest.approx(3.494431773410027), 150)


def test_validation_figures_without_a_validation() -> None:
    assert catalog.validation_figures({"step": 10}) == {
        "nats_per_char": None,
        "bits_per_char": None,
        "perplexity": None,
        "best_bits_per_char": None,
        "best_step": None,
    }


def test_a_damaged_checkpoint_is_flagged_not_skipped(old_run: Path) -> None:
    model = old_run / "step-00000150" / ck.MODEL
    model.write_bytes(model.read_bytes()[:100])
    assert catalog.summarize_run(old_run).damaged
    assert catalog.checkpoint_problems(old_run / "step-00000150")


def test_sort_runs(old_run: Path) -> None:
    base = catalog.summarize_run(old_run)
    a = replace(base, name="a", best_val_bits_per_char=None, parameters=5, steps=9, modified=3.0)
    b = replace(base, name="b", best_val_bits_per_char=2.0, parameters=7, steps=9, modified=1.0)
    c = replace(base, name="c", best_val_bits_per_char=1.0, parameters=5, steps=1, modified=2.0)
    a, b, c = (replace(r, size_bytes=n) for r, n in ((a, 10), (b, 30), (c, 20)))
    runs = [b, c, a]

    def names(key: str, reverse: bool = False) -> list[str]:
        return [r.name for r in catalog.sort_runs(runs, key, reverse)]

    assert names("name") == ["a", "b", "c"]
    assert names("when") == ["a", "c", "b"]  # newest first
    assert names("bpc") == ["c", "b", "a"]  # best first, unknown last
    assert names("bpc", reverse=True) == ["a", "b", "c"]
    assert names("params") == ["b", "a", "c"]
    assert names("steps") == ["a", "b", "c"]
    assert names("size") == ["b", "c", "a"]  # most bytes first
    with pytest.raises(ValueError, match="sort key"):
        catalog.sort_runs(runs, "colour")


def test_corpus_and_origin_names() -> None:
    assert catalog.corpus_name({}) == "-"
    assert catalog.corpus_name({"sources": ["/x/a.txt", "/x/b.txt", "c.txt"]}) == "a.txt +2"
    assert catalog.corpus_name({"sources": ["corpus-stdin.txt"]}) == "<stdin>"
    assert catalog.origin_of({"init_from": None}) is None
    origin = {"run": "/r/shakespeare-gru", "checkpoint": "step-00000500", "step": 500}
    assert catalog.origin_of({"init_from": origin}) == origin
    assert catalog.origin_text(origin) == "shakespeare-gru@500"
    assert catalog.origin_text({**origin, "step": None}) == "shakespeare-gru/step-00000500"
    assert catalog.origin_text(None) == "-"


@pytest.mark.parametrize("partly", [False, True], ids=["removed", "half-removed"])
@pytest.mark.parametrize(
    ("where", "name"),
    [(ck, "read_config"), (disk, "file_sizes"), (catalog, "checkpoint_problems")],
    ids=["config", "file sizes", "weights"],
)
def test_a_checkpoint_pruned_while_described_is_not_damaged(
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    partly: bool,
    where: object,
    name: str,
) -> None:
    """The run saves and prunes the checkpoint ``describe_checkpoint`` is reading, at one of
    its reads: it describes the checkpoint the pointer names then, with no problem."""
    from .conftest import prune_on_first_call

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    first = ck.resolve_checkpoint(run)
    prune_on_first_call(monkeypatch, where, name, run, partly)
    d = catalog.describe_checkpoint(run)
    assert d["problems"] == []
    assert d["checkpoint"] == str(ck.resolve_checkpoint(run)) != str(first)
    assert d["pointers"] == ["best", "latest"]


@pytest.mark.parametrize("partly", [False, True], ids=["removed", "half-removed"])
def test_a_run_pruned_while_summarized_is_not_damaged(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, partly: bool
) -> None:
    from .conftest import prune_on_first_call

    root = tmp_path / "runs"
    shutil.copytree(trained_run, root / "run")
    first = ck.newest_checkpoint(root / "run")
    for where, name in ((ck, "read_config"), (disk, "saved_time")):
        with monkeypatch.context() as m:
            prune_on_first_call(m, where, name, root / "run", partly)
            runs, problems = catalog.list_runs(root)
        assert problems == [] and [r.damaged for r in runs] == [None], (name, problems)
        assert first is not None and not (first / ck.MODEL).exists()
        first = ck.newest_checkpoint(root / "run")
    with monkeypatch.context() as m:
        prune_on_first_call(m, catalog, "checkpoint_problems", root / "run", partly)
        assert catalog.summarize_run(root / "run").damaged is None


def test_a_damaged_checkpoint_no_run_prunes_is_still_damaged(
    trained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (ck.resolve_checkpoint(run) / ck.MODEL).write_bytes(b"garbage")
    d = catalog.describe_checkpoint(run)
    assert len(d["problems"]) == 1 and "model.safetensors" in d["problems"][0]
    assert catalog.summarize_run(run).damaged is not None
