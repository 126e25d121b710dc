"""The run plan (charrnn/run/plan.py): what the probes choose, the long-run rules, and the load
watch (charrnn/run/loadwatch.py), end to end where a run is involved."""

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
from charrnn.run import defaults, loadwatch, plan, session
from charrnn.run.probes import StepTimes
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.training.config import TrainConfig
from charrnn.training.distributed import SINGLE
from charrnn.training.events import Evaluated, Stepped
from charrnn.units import Score

CPU = torch.device("cpu")


def _request(corpus: Path, out: Path, **kw: object) -> TrainRequest:
    base: dict[str, object] = dict(
        sources=(str(corpus),), cell="gru", hidden=32, layers=2, embed_dim=8, dropout=0.0,
        batch_size=8, seq_len=16, max_steps=6, eval_every=3, warmup=2, out=str(out),
    )  # fmt: skip
    base.update(kw)
    return TrainRequest.from_options(**base)  # type: ignore[arg-type]


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
    monkeypatch.setattr(plan, "native_bf16", lambda: True)
    timed = {(1, "fp32"): 0.2, (2, "fp32"): 0.3, (1, "bf16"): 0.4, (2, "bf16"): 0.2 / speedup}
    monkeypatch.setattr(plan, "probe_steps", lambda m, b, t, n, p: StepTimes(timed))
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # two cores to choose from
    try:
        run = open_run(_request(corpus, tmp_path / "r"), CPU)
    finally:
        threads = torch.get_num_threads()
        torch.set_num_threads(before)
    assert run.plan.bf16_speedup == pytest.approx(speedup)
    assert run.train_config.precision == chosen
    # The thread count that runs the chosen precision fastest, applied by open_run.
    assert run.plan.threads == threads == (1 if chosen == "fp32" else 2)
    run.train()
    saved = json.loads((tmp_path / "r" / "step-00000006" / "config.json").read_text())
    assert saved["training"]["precision"] == chosen
    assert saved["plan"]["threads"] == threads and saved["plan"]["thread_candidates"] == [1, 2]
    assert saved["plan"]["bf16_speedup"] == pytest.approx(speedup)
    assert all(p.dtype == torch.float32 for p in run.model.parameters())  # weights stay fp32


def _no_probe(*args: object) -> StepTimes:
    raise AssertionError("the probe ran")


def test_precision_is_not_probed_when_asked_for_resumed_or_not_native(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:4000])
    monkeypatch.setattr(plan, "probe_steps", _no_probe)
    monkeypatch.setattr(plan, "native_bf16", lambda: True)
    for asked in ("fp32", "bf16"):
        run = open_run(_request(corpus, tmp_path / asked, precision=asked), CPU, threads=1)
        assert run.plan.bf16_speedup is None
        assert run.train_config.precision == asked
        run.train()
        run.lock.release()
    # A resumed run keeps the precision it was saved with.
    req = TrainRequest.from_options(resume=str(tmp_path / "bf16"), max_steps=8)
    resumed = open_run(req, CPU, threads=1)
    assert resumed.plan.bf16_speedup is None
    assert resumed.train_config.precision == "bf16"
    resumed.lock.release()
    # No native bf16: fp32 without probing.
    monkeypatch.setattr(plan, "native_bf16", lambda: False)
    run = open_run(_request(corpus, tmp_path / "plain"), CPU, threads=1)
    assert run.plan.bf16_speedup is None
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

    monkeypatch.setattr(loadwatch, "probe_steps", probe)
    model = CharRNN(ModelConfig(vocab_size=20, hidden=8, embed_dim=4))
    watch = loadwatch.LoadWatch(model, 4, 16, [1, 2], "bf16", window=5)
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
    monkeypatch.setattr(plan, "native_bf16", lambda: False)
    timed = {(1, "fp32"): 0.2, (2, "fp32"): 0.1}
    monkeypatch.setattr(plan, "probe_steps", lambda m, b, t, n, p: StepTimes(timed))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probed = open_run(_request(corpus, tmp_path / "a"), CPU)
        assert (
            probed.plan.threads == 2
            and len(session._load_watch(probed.plan, probed.model, None)) == 1
        )
        probed.lock.release()
        fixed = open_run(_request(corpus, tmp_path / "b"), CPU, threads=2)
        assert (
            fixed.plan.threads is None and session._load_watch(fixed.plan, fixed.model, None) == []
        )
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


def test_wide_model_rule() -> None:
    gru = ModelConfig(vocab_size=65, cell="gru", hidden=256, embed_dim=64, dropout=0.0)
    n = defaults.LONG_MODEL_MIN_TOKENS
    wide = defaults.wide_model(gru, n, defaults.WIDE_MODEL_EPOCHS)
    assert wide == replace(gru, hidden=defaults.WIDE_MODEL_HIDDEN)  # the rest as it was
    assert defaults.wide_model(gru, n, defaults.WIDE_MODEL_EPOCHS - 0.01) is None  # few passes
    assert defaults.wide_model(gru, n, None) is None  # unknown
    small = defaults.SMALL_WIDE_MIN_TOKENS
    assert defaults.wide_model(gru, small, 50.0) == wide  # a small corpus, many passes
    assert defaults.wide_model(gru, small - 1, 50.0) is None  # tiny corpora: measured worse
    assert defaults.wide_model(replace(gru, hidden=512), 6_000_000, 8.0) is None  # already wider
    hanzi = replace(gru, vocab_size=5000, embed_dim=256)
    assert defaults.wide_model(hanzi, n, 8.0).embed_dim == defaults.WIDE_MODEL_HIDDEN  # type: ignore[union-attr]
    steps, fits = defaults.WIDE_MODEL_STEPS, defaults.wide_model_fits
    assert fits(steps, 1.0, n) and not fits(steps - 1, 50.0, n)  # large corpora: the steps
    passes, least = defaults.SMALL_WIDE_EPOCHS, defaults.MIN_USEFUL_STEPS
    assert fits(least, passes, n - 1)  # smaller ones: the passes, in enough steps
    assert not fits(least, passes - 0.01, n - 1) and not fits(least - 1, 50.0, n - 1)
    assert not fits(None, 20.0, n) and not fits(2000.0, None, n - 1)  # unknown


def _poems_starter(tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A function that opens a run of 40 steps of 8 x 16 on 6,000 characters of poems, one
    thread, every probe measuring one second a step; its keywords are more options."""
    corpus = tmp_path / "poems.txt"
    corpus.write_text(small_text[:6000])
    limits = dict(max_steps=40, batch_size=8, seq_len=16, root=str(tmp_path / "ck"))
    _one_second_steps(monkeypatch)

    def start(**asked: object):  # type: ignore[no-untyped-def]
        req = TrainRequest.from_options(sources=(str(corpus),), **limits, **asked)  # type: ignore[arg-type]
        return open_run(req, CPU, threads=1)

    return start


def _wide_model_for_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scale the wider-model rule down to a 5,400-character corpus and a 160-wide model taken
    from half a pass on."""
    monkeypatch.setattr(defaults, "SMALL_WIDE_MIN_TOKENS", 1000)
    monkeypatch.setattr(defaults, "WIDE_MODEL_HIDDEN", 160)
    monkeypatch.setattr(defaults, "WIDE_MODEL_EPOCHS", 0.5)


def test_a_run_of_a_few_passes_trains_the_wider_model_when_it_still_makes_the_steps(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = _poems_starter(tmp_path, small_text, monkeypatch)
    # scaled down: a default 2x128 GRU making ~1 pass over 5,400 characters in 40 steps
    _wide_model_for_tests(monkeypatch)
    monkeypatch.setattr(defaults, "LONG_MODEL_MIN_TOKENS", 1000)
    monkeypatch.setattr(defaults, "WIDE_MODEL_STEPS", 41)  # more steps than the run makes
    run = start()
    assert (run.model.config.hidden, run.plan.notes) == (128, ())
    run.lock.release()
    monkeypatch.setattr(defaults, "WIDE_MODEL_STEPS", 40)
    run = start()
    assert (run.model.config.cell, run.model.config.hidden) == ("gru", 160)
    assert run.model.rnn.hidden_size == 160  # built as planned
    assert run.plan.notes == (
        "about 1 passes over the corpus expected: training a wider GRU 2x160 instead (about 40 "
        "steps, 1 pass)",
    )
    run.lock.release()
    for asked in (dict(hidden=128), dict(dropout=0.1), dict(embed_dim=32)):  # asked: kept
        run = start(**asked)
        assert run.model.config.hidden == 128 and run.plan.notes == (), asked
        run.lock.release()
    # with the passes of the many-passes setting, it applies to the wider model
    monkeypatch.setattr(defaults, "MANY_PASSES_EPOCHS", 0.5)
    run = start()
    assert run.model.config.hidden == run.model.config.embed_dim == 160
    assert run.plan.notes[0].endswith(
        "(about 40 steps, 1 pass), embedding 160, lr 0.006, weight decay 0.3"
    )
    assert run.optimizer.param_groups[0]["weight_decay"] == defaults.LONG_RUN_WEIGHT_DECAY
    run.lock.release()


def test_a_small_corpus_seen_many_times_trains_the_wider_model_when_it_still_makes_the_passes(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = _poems_starter(tmp_path, small_text, monkeypatch)
    # scaled down: 5,400 characters are "small" (under LONG_MODEL_MIN_TOKENS), and the wider
    # model's 40 steps of 8 x 16 make 0.95 passes of them
    _wide_model_for_tests(monkeypatch)
    monkeypatch.setattr(defaults, "WIDE_MODEL_STEPS", 1)  # the large corpora's bar: not used
    monkeypatch.setattr(defaults, "MIN_USEFUL_STEPS", 40)
    monkeypatch.setattr(defaults, "SMALL_WIDE_EPOCHS", 0.96)  # more passes than it makes
    run = start()
    assert (run.model.config.hidden, run.plan.notes) == (128, ())
    run.lock.release()
    monkeypatch.setattr(defaults, "SMALL_WIDE_EPOCHS", 0.9)
    run = start()
    assert run.model.config.hidden == run.model.rnn.hidden_size == 160
    assert run.plan.notes == (
        "about 1 passes over the corpus expected: training a wider GRU 2x160 instead (about 40 "
        "steps, 1 pass)",
    )
    run.lock.release()
    monkeypatch.setattr(defaults, "MIN_USEFUL_STEPS", 41)  # too few steps to learn in
    run = start()
    assert run.model.config.hidden == 128
    run.lock.release()


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


def _one_second_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every probe measures one second a step (the long-run model is timed by the probe)."""

    def probe(model: object, b: int, t: int, threads: list[int], precisions: list[str]):  # type: ignore[no-untyped-def]
        return StepTimes({(n, p): 1.0 for n in threads for p in precisions})

    monkeypatch.setattr(plan, "probe_steps", probe)
    monkeypatch.setattr(plan, "native_bf16", lambda: False)


def test_the_default_model_stays_when_asked_for_or_when_the_larger_is_too_slow(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = _poems_starter(tmp_path, small_text, monkeypatch)

    _long_run_model_for_tests(monkeypatch, steps=41)  # more steps than the run makes
    run = start()
    assert run.model.config.cell == "gru" and run.run_dir.name == "poems-gru"
    assert run.plan.notes == ()
    run.lock.release()
    _long_run_model_for_tests(monkeypatch, steps=30)
    for asked in (dict(hidden=128), dict(dropout=0.1), dict(cell="gru")):
        run = start(**asked)
        assert run.model.config.cell == "gru" and run.plan.notes == (), asked
        run.lock.release()
    run = start()
    assert run.plan.notes and "a larger LSTM" in run.plan.notes[0]
    assert run.model.config.cell == "lstm" and run.run_dir.name == "poems-lstm"
    assert run.train_config.weight_decay == defaults.LONG_MODEL_WEIGHT_DECAY
    trained = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in run.model.parameters()}  # the optimizer has the model
    assert run.optimizer.param_groups[0]["weight_decay"] == defaults.LONG_MODEL_WEIGHT_DECAY
    # Built once, from the run's seed: the weights a run asking for this LSTM starts from.
    torch.manual_seed(run.train_config.seed)
    fresh = CharRNN(run.model.config).parameters()
    assert all(torch.equal(a, b) for a, b in zip(fresh, run.model.parameters(), strict=True))
    run.lock.release()
    # A weight decay asked for is kept.
    run = start(weight_decay=0.05)
    assert run.model.config.cell == "lstm"
    assert run.train_config.weight_decay == run.optimizer.param_groups[0]["weight_decay"] == 0.05


def test_planning_changes_nothing(tmp_path: Path, small_text: str) -> None:
    """A plan is a value: the random generator and the thread count are as they were."""
    from charrnn.run.corpus import read_sources

    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:4000])
    req = _request(corpus, tmp_path / "r")
    work = tmp_path / "work"
    work.mkdir()
    read = read_sources(req.corpus, work)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    first = plan.plan_new_run(req, read, CPU, SINGLE)
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert plan.plan_new_run(req, read, CPU, SINGLE).model == first.model
    assert plan.Plan.from_dict(json.loads(json.dumps(first.to_dict()))) == replace(first, name=None)


def test_runs_of_many_passes_are_regularised(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:6000])
    monkeypatch.setattr(plan, "native_bf16", lambda: False)
    monkeypatch.setattr(defaults, "dropout", lambda n: 0.0)  # the size rule would give more
    # 8 streams x 16 = 128 tokens a step; the limit is 10 s of training.
    req = _request(corpus, tmp_path / "r", dropout=None, max_steps=None, max_time=10.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        slow = {(1, "fp32"): 1.0, (2, "fp32"): 2.0}  # under a pass: nothing changes
        monkeypatch.setattr(plan, "probe_steps", lambda m, b, t, n, p: StepTimes(slow))
        run = open_run(req, CPU)
        assert run.model.config.dropout == 0.0 and run.plan.notes == ()
        run.lock.release()
        fast = {(1, "fp32"): 0.01, (2, "fp32"): 0.02}  # dozens of passes
        monkeypatch.setattr(plan, "probe_steps", lambda m, b, t, n, p: StepTimes(fast))
        torch.set_num_threads(2)  # the first run applied its choice: one thread
        run = open_run(replace(req, out=str(tmp_path / "r2")), CPU)
        run.lock.release()
        torch.set_num_threads(2)
        # what the user asked for stays: here the embedding (8) and the weight decay
        asked = open_run(replace(req, out=str(tmp_path / "r3"), weight_decay=0.05), CPU)
        asked.lock.release()
        torch.set_num_threads(2)
        wide = open_run(replace(req, out=str(tmp_path / "r4"), embed_dim=None, hidden=96), CPU)
        wide.lock.release()
        torch.set_num_threads(2)
        # --max-epochs inf: no epoch limit, not even the end after the useful passes
        unlimited = open_run(replace(req, out=str(tmp_path / "r5"), max_epochs=math.inf), CPU)
        unlimited.lock.release()
    finally:
        torch.set_num_threads(before)
    note = run.plan.notes[0]
    # ~22 passes expected, by time alone: the run ends after the useful passes, with the very
    # long run's dropout
    assert (
        "passes over the corpus expected: stopping after 16 (more overfit; --max-epochs N or "
        "inf to choose), dropout 0.2, lr 0.006, weight decay 0.3" in note
    )
    assert run.train_config.max_epochs == defaults.MAX_USEFUL_PASSES == 16
    assert run.config_json({})["training"]["max_epochs"] == 16  # saved: a resume keeps it
    assert unlimited.train_config.max_epochs is None and "stopping" not in unlimited.plan.notes[0]
    assert unlimited.model.config.dropout == defaults.VERY_LONG_RUN_DROPOUT
    assert run.config_json({})["model"]["dropout"] == defaults.VERY_LONG_RUN_DROPOUT
    assert run.model.rnn.dropout == defaults.VERY_LONG_RUN_DROPOUT
    assert run.model.config.embed_dim == 8  # asked for
    assert run.optimizer.param_groups[0]["weight_decay"] == defaults.LONG_RUN_WEIGHT_DECAY
    assert run.train_config.lr == defaults.LONG_RUN_LR
    assert asked.optimizer.param_groups[0]["weight_decay"] == 0.05
    assert "weight decay" not in asked.plan.notes[0]
    assert wide.model.config.embed_dim == wide.model.config.hidden == 96  # widened from 64
    assert "embedding 96" in wide.plan.notes[0]
    run.model.train()
    x = torch.randint(0, len(run.vocab), (2, 12))
    assert not torch.equal(run.model(x)[0], run.model(x)[0])  # dropout is live


def test_expected_epochs() -> None:
    tc = TrainConfig(batch_size=8, seq_len=16, max_time=10.0)
    n = 5000
    assert defaults.expected_epochs(tc, n, float("inf")) is None  # a time limit, no step time
    assert defaults.expected_epochs(tc, n, 10.0 * 0.95 / 84) == pytest.approx(84 * 128 / n)
    assert defaults.expected_epochs(replace(tc, max_epochs=2.0), n, 1e-6) == 2.0  # the nearest


def test_threads_pin_a_run_nothing_is_measured_and_a_resume_keeps_them(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--threads N`` pins a run: no precision probe (it could choose differently on a busy
    moment), and a plain ``--resume`` keeps N threads, so that N steps + resume + N steps
    give the weights of 2N steps bit for bit."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:6000])
    monkeypatch.setattr(plan, "native_bf16", lambda: True)  # a probe would be possible
    probed: list[object] = []
    real_probe = plan.probe_steps

    def spy(model, batch, seq, counts, precisions):  # type: ignore[no-untyped-def]
        probed.append((tuple(counts), tuple(precisions)))
        return real_probe(model, batch, seq, counts, precisions)

    monkeypatch.setattr(plan, "probe_steps", spy)
    before = torch.get_num_threads()
    try:
        straight = open_run(_request(corpus, tmp_path / "straight", max_steps=8), CPU, threads=1)
        assert straight.train_config.precision == "fp32" and straight.plan.bf16_speedup is None
        assert all("bf16" not in p for _, p in probed), probed
        straight.train()
        calls = iter(range(100))
        split = open_run(_request(corpus, tmp_path / "split", max_steps=8), CPU, threads=1)
        assert split.train(should_stop=lambda: next(calls) >= 4).step == 4  # interrupted
        saved = json.loads((tmp_path / "split" / "step-00000004" / "config.json").read_text())
        assert saved["plan"]["pinned_threads"] == 1
        torch.set_num_threads(2)  # a new process would start with every core
        resumed = open_run(TrainRequest.from_options(resume=str(tmp_path / "split")), CPU)
        assert torch.get_num_threads() == 1 and resumed.plan.pinned_threads == 1
        assert any("as the run was started (--threads)" in n for n in resumed.notices)
        resumed.train()
    finally:
        torch.set_num_threads(before)
    a = {k: v for k, v in straight.model.state_dict().items()}
    b = resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
