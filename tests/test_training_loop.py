from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
import torch

from charrnn.errors import TrainingError
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.store.metrics import read_metrics
from charrnn.training.config import TrainConfig
from charrnn.training.events import Evaluated, Skipped, Stepped
from charrnn.training.loop import Trainer

CPU = torch.device("cpu")


def _request(corpus: Path, out: Path, **kw) -> TrainRequest:  # type: ignore[no-untyped-def]
    base = dict(
        sources=(str(corpus),),
        precision="fp32",
        cell="lstm",
        hidden=32,
        layers=2,
        embed_dim=8,
        dropout=0.2,  # exercises the RNG, which resume must restore
        batch_size=8,
        seq_len=16,
        max_steps=24,
        eval_every=5,
        warmup=4,
        out=str(out),
    )
    base.update(kw)
    return TrainRequest.from_options(**base)  # type: ignore[arg-type]


def test_loss_falls_and_events_arrive(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text)
    events: list[object] = []
    req = _request(
        corpus,
        tmp_path / "r",
        cell="gru",
        dropout=0.0,
        lr=1e-2,
        batch_size=16,
        seq_len=32,
        max_steps=120,
        eval_every=60,
    )
    run = open_run(req, CPU)
    state = run.train(callbacks=[events.append])
    evals = [e for e in events if isinstance(e, Evaluated)]
    steps = [e for e in events if isinstance(e, Stepped)]
    assert state.step == 120 and len(steps) == 120 and [e.step for e in evals] == [60, 120]
    assert steps[-1].lr < steps[10].lr  # cosine decay
    unigram_nats = run.vocab.unigram_entropy_bits() * 0.6931
    assert evals[-1].val.nats_per_token < evals[0].val.nats_per_token < unigram_nats - 0.3
    assert state.best_val == min(e.val.nats_per_token for e in evals)
    assert ck.read_pointer(tmp_path / "r", ck.LATEST) == "step-00000120"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("where", ["mid-epoch", "epoch-boundary"])
def test_resume_is_exact(tmp_path: Path, small_text: str, cell: str, where: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:6000])
    req = _request(corpus, tmp_path / "full", cell=cell)
    full = open_run(req, CPU)
    spe = full.train_config and None
    full.train()
    trainer = full.trainer
    assert trainer is not None
    spe = trainer.steps_per_epoch
    total = 2 * spe if where == "epoch-boundary" else 24
    stop_at = spe if where == "epoch-boundary" else 7
    assert stop_at % 5 != 0 or where == "epoch-boundary"

    # Uninterrupted reference of `total` steps.
    ref = open_run(_request(corpus, tmp_path / "ref", cell=cell, max_steps=total), CPU)
    ref.train()

    # Interrupted at `stop_at` (the path Ctrl-C takes), then resumed in a fresh Run.
    part = open_run(_request(corpus, tmp_path / "part", cell=cell, max_steps=total), CPU)
    part.train(should_stop=lambda: part.trainer is not None and part.trainer.state.step >= stop_at)
    assert ck.read_pointer(tmp_path / "part", ck.LATEST) == ck.checkpoint_name(stop_at)
    torch.manual_seed(12345)  # resume must not depend on the process's RNG
    resumed = open_run(TrainRequest.from_options(resume=str(tmp_path / "part")), CPU)
    assert resumed.state is not None and resumed.state.step == stop_at
    resumed.train()

    for (name, a), (_, b) in zip(
        ref.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    sa, sb = ref.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for k in sa:
        for key in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][key]), torch.as_tensor(sb[k][key]))
    # The weights' moving average went on from the checkpoint as if never interrupted.
    avg_ref, avg_resumed = ref.trainer.average, resumed.trainer.average  # type: ignore[union-attr]
    assert avg_ref is not None and avg_resumed is not None and avg_resumed.steps == total
    for a, b in zip(avg_ref.model.parameters(), avg_resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_refuses_changed_corpus_and_fixed_options(tmp_path: Path, small_text: str) -> None:
    from charrnn.errors import CharRNNError, CorpusError

    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:5000])
    open_run(_request(corpus, tmp_path / "r", max_steps=6), CPU).train()
    with pytest.raises(CharRNNError, match="--hidden cannot be changed"):
        open_run(TrainRequest.from_options(resume=str(tmp_path / "r"), hidden=64), CPU)
    corpus.write_text(small_text[:5000] + "more")
    with pytest.raises(CorpusError, match="corpus changed"):
        open_run(TrainRequest.from_options(resume=str(tmp_path / "r")), CPU)


def test_nonfinite_steps_are_skipped_then_training_stops(tmp_path: Path) -> None:
    model = CharRNN(ModelConfig(vocab_size=5, hidden=8, embed_dim=4))
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    events: list[object] = []
    trainer = Trainer(
        model,
        torch.randint(0, 5, (400,)),
        None,
        TrainConfig(batch_size=2, seq_len=8, max_steps=50),
        callbacks=[events.append],
    )
    with pytest.raises(TrainingError, match="diverged"):
        trainer.run()
    assert sum(isinstance(e, Skipped) for e in events) == 5
    assert trainer.state.step == 0


@pytest.mark.parametrize(("share", "expected"), [(None, [2, 4, 6, 8]), (0.0, [2, 8])])
def test_eval_share_skips_periodic_evaluations(share: float | None, expected: list[int]) -> None:
    # With a share of 0 the first evaluation's cost is already over budget: later periodic
    # evaluations are skipped, the final one still happens.
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=5, hidden=8, embed_dim=4))
    events: list[object] = []
    config = TrainConfig(batch_size=2, seq_len=8, max_steps=8, eval_every=2, eval_share=share)
    ids = torch.randint(0, 5, (400,))
    Trainer(model, ids, ids[:100], config, callbacks=[events.append]).run()
    assert [e.step for e in events if isinstance(e, Evaluated)] == expected


def test_default_evaluation_cadence_follows_an_explicit_eval_every(tmp_path: Path) -> None:
    from charrnn.run.defaults import EVAL_SHARE
    from charrnn.run.plan import train_config as auto_train_config

    auto, _ = auto_train_config(TrainRequest.from_options(("x",)), "gru", 100_000)
    asked, _ = auto_train_config(
        TrainRequest.from_options(sources=("x",), eval_every=50), "gru", 100_000
    )
    assert (auto.eval_every, auto.eval_share) == (200, EVAL_SHARE)
    assert (asked.eval_every, asked.eval_share) == (50, None)


def test_run_writes_metrics_jsonl(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:6000])
    run = open_run(_request(corpus, tmp_path / "r", max_steps=12, eval_every=10), CPU)
    run.train(should_stop=lambda: run.trainer is not None and run.trainer.state.step >= 7)
    resumed = open_run(TrainRequest.from_options(resume=str(tmp_path / "r")), CPU)
    resumed.train()
    records = read_metrics(tmp_path / "r")
    kinds = [(r["event"], r["step"]) for r in records]
    # eval_every 10 -> a step record every step; evals at 10 and at the end (12).
    assert kinds == [
        ("start", 0),
        *[("step", i) for i in range(1, 8)],
        ("end", 7),
        ("start", 7),
        *[("step", i) for i in range(8, 11)],
        ("eval", 10),
        ("step", 11),
        ("step", 12),
        ("eval", 12),
        ("end", 12),
    ]
    ev = records[kinds.index(("eval", 10))]
    assert ev["chars"] == 10 * 8 * 16 and ev["time"] > 0 and ev["lr"] > 0
    assert ev["val_bits_per_char"] == pytest.approx(ev["val_loss"] / 0.693147, rel=1e-4)
    assert ev["best"] is True and ev["chars_per_sec"] > 0
    assert ev["train_bits_per_char"] == pytest.approx(ev["train_loss"] / 0.693147, rel=1e-4)
    times = [r["time"] for r in records if r["event"] == "step"]
    assert times == sorted(times)  # training time carries on across the resume
    assert records[-1]["reason"] == "max_steps"


def test_validation_during_training_is_the_eval_perplexity_figure(small_text: str) -> None:
    from charrnn.evaluation import DEFAULT_STREAMS, evaluate_chunks
    from charrnn.text.vocab import Vocab

    vocab = Vocab.from_counts(Counter(small_text))
    ids = torch.tensor(vocab.encode(small_text))
    train, val = ids[:-4000], ids[-4000:]
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(len(vocab), hidden=32, embed_dim=8))
    events: list[object] = []
    config = TrainConfig(batch_size=8, seq_len=16, max_steps=30, eval_every=30, lr=1e-2)
    Trainer(model, train, val, config, callbacks=[events.append]).run()
    reported = [e.val.nats_per_token for e in events if isinstance(e, Evaluated)][-1]
    parallel = evaluate_chunks(model, [val], streams=DEFAULT_STREAMS).nats_per_token
    exact = evaluate_chunks(model, [val]).nats_per_token
    assert reported == pytest.approx(parallel, abs=1e-9)
    assert reported == pytest.approx(exact, abs=1e-3)


def test_resume_with_eval_every_follows_it(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:6000])
    run = open_run(_request(corpus, tmp_path / "r", max_steps=2, eval_every=None), CPU)
    run.train()
    assert run.train_config.eval_share is not None  # the default cadence
    kept = open_run(TrainRequest.from_options(resume=str(tmp_path / "r"), max_steps=4), CPU)
    assert kept.train_config.eval_share == run.train_config.eval_share
    asked = open_run(
        TrainRequest.from_options(resume=str(tmp_path / "r"), max_steps=4, eval_every=3), CPU
    )
    assert (asked.train_config.eval_every, asked.train_config.eval_share) == (3, None)


def test_a_time_budget_keeps_time_for_the_final_validation_and_ends_its_schedule() -> None:
    """A session with no validation before its last one (a resume, a long --eval-every) keeps
    time for it from the start: the budget holds, and the cosine ends at its floor."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=20, hidden=256, layers=1, embed_dim=8))
    cfg = TrainConfig(
        batch_size=4, seq_len=8, lr=1e-2, warmup_steps=0, max_time=2.0, eval_every=10**6, seed=1
    )
    events: list[object] = []
    train, val = torch.randint(0, 20, (20000,)), torch.randint(0, 20, (80000,))
    trainer = Trainer(model, train, val, cfg, callbacks=[events.append])
    trainer.run()
    steps = [e for e in events if isinstance(e, Stepped)]
    evals = [e for e in events if isinstance(e, Evaluated)]
    assert len(evals) == 1 and evals[0].final
    last, final_eval = steps[-1], trainer.validation.clock.last
    assert final_eval > 0.1 * cfg.max_time  # a validation that matters to the budget
    assert last.lr <= cfg.lr * cfg.min_lr_ratio * 1.05, last  # the floor, within 5%
    # Training stopped early enough for the validation to fit (up to the estimate's error):
    # without the reserve it would overrun by the whole validation.
    overrun = last.elapsed + final_eval - cfg.max_time
    assert overrun < 0.5 * final_eval, (last.elapsed, final_eval)


def test_a_time_limited_cosine_never_rises_when_validations_revise_the_reserve() -> None:
    """The reserve for the final validation starts as an estimate and is replaced by each
    validation's time: the learning rate after warm-up must still only fall."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=20, hidden=64, layers=1, embed_dim=8))
    cfg = TrainConfig(
        batch_size=4, seq_len=8, lr=1e-2, warmup_steps=0, max_time=2.0, eval_every=15, seed=1
    )
    events: list[object] = []
    train, val = torch.randint(0, 20, (20000,)), torch.randint(0, 20, (40000,))
    Trainer(model, train, val, cfg, callbacks=[events.append]).run()
    lrs = [e.lr for e in events if isinstance(e, Stepped)]
    assert sum(isinstance(e, Evaluated) for e in events) >= 2
    assert all(b <= a for a, b in itertools.pairwise(lrs)), lrs


def _averaging_pair(tmp_path: Path, text: str, **kw):  # type: ignore[no-untyped-def]
    """The same short run twice, without and with the weights' average: the first's weights
    are what the second trained (the average draws no random numbers)."""
    corpus = tmp_path / "c.txt"
    corpus.write_text(text)
    base = dict(cell="gru", hidden=32, layers=1, embed_dim=16, dropout=0.0, warmup=0)
    base.update(schedule="constant", eval_every=1000, **kw)
    runs, events = [], []
    for decay in (0.0, kw.pop("ema_decay", 0.9)):
        ev: list[object] = []
        run = open_run(
            _request(corpus, tmp_path / f"r{decay}", **{**base, "ema_decay": decay}), CPU
        )
        run.train(callbacks=[ev.append])
        runs.append(run)
        events.append([e for e in ev if isinstance(e, Evaluated)])
    return runs, events


@pytest.mark.parametrize(
    ("settings", "kept"),
    [
        # a high constant learning rate: the last weights are noisy, their average is not
        (dict(lr=5e-2, max_steps=60, ema_decay=0.9), True),
        # a memory of 1,000 steps over 40: the plain mean of the run, its first steps included
        (dict(lr=2e-2, max_steps=40, ema_decay=0.999), False),
    ],
)
def test_a_finished_run_keeps_the_weights_average_only_where_it_validates_better(
    tmp_path: Path, small_text: str, settings: dict[str, float], kept: bool
) -> None:
    (plain, averaged), (plain_evals, evals) = _averaging_pair(tmp_path, small_text, **settings)
    trained = plain_evals[-1].val.nats_per_token  # the weights the second run trained
    avg = averaged.trainer.average  # type: ignore[union-attr]
    assert avg is not None and avg.steps == settings["max_steps"]
    mean = averaged.trainer.validation.score(avg.model).nats_per_token  # type: ignore[union-attr]
    assert (mean < trained) is kept
    final = evals[-1]
    assert final.final and final.averaged is kept and len(evals) == len(plain_evals)
    want = avg.model if kept else plain.model
    for a, b in zip(averaged.model.parameters(), want.parameters(), strict=True):
        assert torch.equal(a, b)
    assert final.val.nats_per_token == pytest.approx(mean if kept else trained, rel=1e-9)
    # what was kept is on disk as the run's best, and metrics.jsonl says which
    best = ck.read_pointer(tmp_path / f"r{settings['ema_decay']}", ck.BEST)
    assert best == ck.checkpoint_name(int(settings["max_steps"]))
    last_eval = [
        m for m in read_metrics(tmp_path / f"r{settings['ema_decay']}") if m["event"] == "eval"
    ][-1]
    assert last_eval.get("averaged", False) is kept
