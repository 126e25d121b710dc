"""Fitting a run to the machine (charrnn/fitting.py): the precision probe's choice, end to end."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.evaluation import score_text
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.run import defaults, fitting
from charrnn.run.probes import StepTimes
from charrnn.run.session import TrainRequest, resume_run, start_run
from charrnn.training.events import Evaluated, Stepped
from charrnn.units import Score

CPU = torch.device("cpu")


def _request(corpus: Path, out: Path, **kw: object) -> TrainRequest:
    base: dict[str, object] = dict(
        corpus=(str(corpus),), cell="gru", hidden=32, layers=2, embed_dim=8, dropout=0.0,
        batch_size=8, seq_len=16, max_steps=6, eval_every=3, warmup=2, out=str(out),
    )  # fmt: skip
    base.update(kw)
    return TrainRequest(**base)  # type: ignore[arg-type]


def test_cpu_precision_rule() -> None:
    assert defaults.cpu_precision(2.0) == "bf16"
    assert defaults.cpu_precision(defaults.BF16_MIN_SPEEDUP) == "bf16"
    assert defaults.cpu_precision(1.05) == "fp32"  # a tie, or noise: keep fp32
    assert defaults.cpu_precision(0.5) == "fp32"  # emulated bf16 is slower


@pytest.mark.parametrize(("speedup", "chosen"), [(1.8, "bf16"), (1.02, "fp32")])
def test_a_new_run_takes_the_precision_the_probe_finds_faster(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch, speedup: float, chosen: str
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:4000])
    monkeypatch.setattr(fitting, "native_bf16", lambda: True)
    timed = {(1, "fp32"): 0.2, (2, "fp32"): 0.3, (1, "bf16"): 0.4, (2, "bf16"): 0.2 / speedup}
    monkeypatch.setattr(fitting, "probe_steps", lambda m, b, t, n, p: StepTimes(timed))
    run = start_run(_request(corpus, tmp_path / "r"), CPU)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # two cores to choose from
    try:
        fit = run.fit_to_machine()
    finally:
        threads = torch.get_num_threads()
        torch.set_num_threads(before)
    assert fit.bf16_speedup == pytest.approx(speedup)
    assert run.train_config.precision == chosen
    # The thread count that runs the chosen precision fastest.
    assert fit.threads == threads == (1 if chosen == "fp32" else 2)
    run.train()
    saved = json.loads((tmp_path / "r" / "step-00000006" / "config.json").read_text())
    assert saved["training"]["precision"] == chosen
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # weights stay fp32


def _no_probe(*args: object) -> StepTimes:
    raise AssertionError("the probe ran")


def test_precision_is_not_probed_when_asked_for_resumed_or_not_native(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:4000])
    monkeypatch.setattr(fitting, "probe_steps", _no_probe)
    monkeypatch.setattr(fitting, "native_bf16", lambda: True)
    for asked in ("fp32", "bf16"):
        run = start_run(_request(corpus, tmp_path / asked, precision=asked), CPU)
        assert run.fit_to_machine(threads=1).bf16_speedup is None
        assert run.train_config.precision == asked
        run.train()
        run.lock.release()
    # A resumed run keeps the precision it was saved with.
    resumed = resume_run(TrainRequest(resume=str(tmp_path / "bf16"), max_steps=8), CPU)
    assert resumed.fit_to_machine(threads=1).bf16_speedup is None
    assert resumed.train_config.precision == "bf16"
    resumed.lock.release()
    # No native bf16: fp32 without probing.
    monkeypatch.setattr(fitting, "native_bf16", lambda: False)
    run = start_run(_request(corpus, tmp_path / "plain"), CPU)
    assert run.fit_to_machine(threads=1).bf16_speedup is None
    assert run.train_config.precision == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_forced_precision_trains_for_real_and_says_so(
    tmp_path: Path, small_text: str, precision: str
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text)
    out = tmp_path / precision
    args = ["train", str(corpus), "--out", str(out), "--max-steps", "60", "--hidden", "64"]
    args += ["--batch-size", "16", "--seq-len", "32", "--precision", precision, "--threads", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    start = res.output.splitlines()[0]
    assert (", fp32;" in start) == (precision == "fp32"), start
    assert (", bf16 autocast;" in start) == (precision == "bf16"), start
    saved = json.loads((out / "step-00000060" / "config.json").read_text())
    assert saved["training"]["precision"] == precision
    from charrnn.store.checkpoint import load_model

    loaded = load_model(out, "cpu")
    score = score_text(loaded.model, loaded.vocab, [small_text[-3000:]]).score
    # Learned something: well under a uniform guess over the vocabulary.
    assert score.nats_per_char < 0.75 * math.log(len(loaded.vocab))


def _stepped(step: int, elapsed: float) -> Stepped:
    return Stepped(step, 0.0, 1.0, 1e-3, 1.0, elapsed, 0.5, 1.0)


def test_load_watch_measures_threads_again_when_steps_slow_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[list[int], list[str]]] = []

    def probe(
        model: object, b: int, t: int, threads: list[int], precisions: list[str]
    ) -> StepTimes:
        calls.append((list(threads), list(precisions)))
        return StepTimes({(1, "bf16"): 0.1, (2, "bf16"): 0.5})  # one thread is faster now

    monkeypatch.setattr(fitting, "probe_steps", probe)
    model = CharRNN(ModelConfig(vocab_size=20, hidden=8, embed_dim=4))
    watch = fitting.LoadWatch(model, 4, 16, [1, 2], "bf16", window=5)
    reports: list[str] = []
    watch.report = reports.append
    clock = {"t": 0.0, "step": 0}

    def steps(n: int, seconds: float) -> None:
        for _ in range(n):
            clock["step"] += 1
            clock["t"] += seconds
            watch(_stepped(clock["step"], clock["t"]))

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        steps(11, 0.1)  # a reference block and one block like it
        watch(Evaluated(11, 0.0, Score(10, 10, 10.0), None, True, False))
        clock["t"] += 30.0  # an evaluation and a save: not a step
        steps(5, 0.1)
        assert calls == [] and torch.get_num_threads() == 2
        steps(6, 0.35)  # 3.5x slower: another program took a core
        assert calls == [([1, 2], ["bf16"])]
        assert torch.get_num_threads() == 1 and watch.probes == [(22, 1)]
        assert "3.5x slower" in reports[0] and "threads measured again: 1 (was 2)" in reports[0]
        steps(11, 0.35)  # the new pace becomes the reference: no probe
        assert len(calls) == 1
    finally:
        torch.set_num_threads(before)


def test_only_a_probed_thread_count_is_watched(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:4000])
    monkeypatch.setattr(fitting, "native_bf16", lambda: False)
    timed = {(1, "fp32"): 0.2, (2, "fp32"): 0.1}
    monkeypatch.setattr(fitting, "probe_steps", lambda m, b, t, n, p: StepTimes(timed))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probed = start_run(_request(corpus, tmp_path / "a"), CPU)
        assert probed.fit_to_machine().threads == 2 and probed.load_watch is not None
        probed.lock.release()
        fixed = start_run(_request(corpus, tmp_path / "b"), CPU)
        assert fixed.fit_to_machine(threads=2).threads is None and fixed.load_watch is None
    finally:
        torch.set_num_threads(before)


def test_long_run_model_rule() -> None:
    gru = ModelConfig(vocab_size=65, cell="gru", layers=2, hidden=256, embed_dim=64, dropout=0.0)
    big = defaults.long_run_model(gru, 1_000_000, 19.0)
    assert big is not None
    assert (big.cell, big.layers, big.hidden) == ("lstm", 2, defaults.LONG_MODEL_HIDDEN)
    assert (big.dropout, big.embed_dim) == (defaults.LONG_MODEL_DROPOUT, 64)
    assert defaults.long_run_model(gru, 1_000_000, 8.9) is None  # few passes: keep the default
    assert defaults.long_run_model(gru, 1_000_000, None) is None  # unknown
    assert defaults.long_run_model(gru, 300_000, 50.0) is None  # small corpora: not measured
    wide = replace(gru, hidden=defaults.LONG_MODEL_HIDDEN)
    assert defaults.long_run_model(wide, 6_000_000, 19.0) is None  # already as wide
    hanzi = replace(gru, vocab_size=6000, embed_dim=256)  # large vocabularies embed at hidden
    assert defaults.long_run_model(hanzi, 1_000_000, 19.0).embed_dim == 512  # type: ignore[union-attr]
    assert defaults.long_run_model_fits(defaults.LONG_MODEL_STEPS)
    assert not defaults.long_run_model_fits(defaults.LONG_MODEL_STEPS - 1)
    assert not defaults.long_run_model_fits(None)


def _long_run_model_for_tests(monkeypatch: pytest.MonkeyPatch, steps: float) -> None:
    """Scale the long-run model rule down to a tiny corpus and a few dozen steps."""
    monkeypatch.setattr(defaults, "LONG_MODEL_HIDDEN", 160)
    monkeypatch.setattr(defaults, "LONG_MODEL_MIN_TOKENS", 1000)
    monkeypatch.setattr(defaults, "LONG_MODEL_EPOCHS", 0.5)
    monkeypatch.setattr(defaults, "LONG_MODEL_STEPS", steps)


def test_a_long_run_trains_the_larger_model_in_a_folder_named_after_it(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _long_run_model_for_tests(monkeypatch, steps=30)
    root = tmp_path / "ck"
    (root / "poems-lstm").mkdir(parents=True)  # taken: the run must go to poems-lstm-2
    (root / "poems-lstm" / "keep.txt").write_text("another run's file")
    monkeypatch.setenv("CHARRNN_CHECKPOINTS", str(root))
    corpus = tmp_path / "poems.txt"
    corpus.write_text(small_text[:6000])
    args = ["train", str(corpus), "--max-steps", "40", "--batch-size", "8", "--seq-len", "16"]
    res = CliRunner().invoke(app, [*args, "--eval-every", "20", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "training LSTM 2x160" in res.output
    assert (
        "training a larger LSTM 2x160 with dropout 0.25 and weight decay 0.3 instead" in res.output
    )
    run = root / "poems-lstm-2"
    assert f"run folder: {run}" in res.output
    assert sorted(p.name for p in root.iterdir()) == ["poems-lstm", "poems-lstm-2"]  # no -gru
    assert (root / "poems-lstm" / "keep.txt").read_text() == "another run's file"
    saved = json.loads((run / "step-00000040" / "config.json").read_text())
    assert (saved["model"]["cell"], saved["model"]["hidden"]) == ("lstm", 160)
    assert saved["model"]["dropout"] == defaults.LONG_MODEL_DROPOUT
    assert saved["training"]["weight_decay"] == defaults.LONG_MODEL_WEIGHT_DECAY
    from charrnn.store.checkpoint import load_model

    loaded = load_model(run, "cpu")
    score = score_text(loaded.model, loaded.vocab, [small_text[-3000:]]).score
    assert score.nats_per_char < 0.8 * math.log(len(loaded.vocab))  # it learned
    # The moved token cache and lock serve a resumed run.
    res = CliRunner().invoke(app, ["train", "--resume", str(run), "--max-steps", "44"])
    assert res.exit_code == 0, res.output
    assert (run / "step-00000044").is_dir()


def test_the_default_model_stays_when_asked_for_or_when_the_larger_is_too_slow(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "poems.txt"
    corpus.write_text(small_text[:6000])
    limits = dict(max_steps=40, batch_size=8, seq_len=16, root=str(tmp_path / "ck"))
    _long_run_model_for_tests(monkeypatch, steps=41)  # more steps than the run makes
    run = start_run(TrainRequest(corpus=(str(corpus),), **limits), CPU)  # type: ignore[arg-type]
    assert fitting.fit_model_to_length(run, 1.0) is None
    assert run.model.config.cell == "gru" and run.run_dir.name == "poems-gru"
    run.lock.release()
    _long_run_model_for_tests(monkeypatch, steps=30)
    for asked in (dict(hidden=128), dict(dropout=0.1), dict(cell="gru")):
        req = TrainRequest(corpus=(str(corpus),), **limits, **asked)  # type: ignore[arg-type]
        run = start_run(req, CPU)
        assert fitting.fit_model_to_length(run, 1.0) is None, asked
        assert run.model.config.cell == "gru"
        run.lock.release()
    run = start_run(TrainRequest(corpus=(str(corpus),), **limits), CPU)  # type: ignore[arg-type]
    assert fitting.fit_model_to_length(run, 1.0) is not None
    assert run.model.config.cell == "lstm" and run.run_dir.name == "poems-lstm"
    assert run.train_config.weight_decay == defaults.LONG_MODEL_WEIGHT_DECAY
    trained = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in run.model.parameters()}  # the optimizer has the new model
    assert run.optimizer.param_groups[0]["weight_decay"] == defaults.LONG_MODEL_WEIGHT_DECAY
    run.lock.release()
    # A weight decay asked for is kept.
    req = TrainRequest(corpus=(str(corpus),), weight_decay=0.05, **limits)  # type: ignore[arg-type]
    run = start_run(req, CPU)
    assert fitting.fit_model_to_length(run, 1.0) is not None
    assert run.train_config.weight_decay == run.optimizer.param_groups[0]["weight_decay"] == 0.05
