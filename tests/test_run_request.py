"""What the user asked of ``charrnn train`` (charrnn/run/request.py): ``TrainRequest.from_options``
takes the flat options the command line and ``charrnn.train`` give, refuses what no run can take
with one OptionError, and names unknown options with the closest known one."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from charrnn.errors import CharRNNError, OptionError
from charrnn.run import defaults
from charrnn.run.request import (
    ARCHITECTURE,
    RESUME_FIXED,
    RESUME_OVERRIDABLE,
    CorpusSpec,
    TrainRequest,
)

CORPUS = ("corpus.txt",)


def test_flat_options_go_to_the_request_and_its_corpus_part() -> None:
    req = TrainRequest.from_options(
        CORPUS, val="v.txt", val_fraction=0.2, encoding="latin-1", errors="replace",
        min_char_count=3, cell="lstm", hidden=32, max_steps=10, out="o",
    )  # fmt: skip
    assert req.corpus == CorpusSpec(
        sources=CORPUS, val="v.txt", val_fraction=0.2, encoding="latin-1", errors="replace",
        min_char_count=3,
    )  # fmt: skip
    assert (req.cell, req.hidden, req.max_steps, req.out) == ("lstm", 32, 10, "o")
    assert req.layers is None and req.lr is None  # left to the defaults


def test_options_given_as_none_are_left_to_the_defaults() -> None:
    """The command line passes every option; None must mean "not given"."""
    everything: dict[str, Any] = dict.fromkeys(TrainRequest.option_names())
    req = TrainRequest.from_options(CORPUS, **everything)
    assert req == TrainRequest(corpus=CorpusSpec(sources=CORPUS))
    assert req.root == defaults.CHECKPOINTS_ROOT and req.corpus.val_fraction == 0.1


def test_option_names_are_every_field_by_its_flat_name() -> None:
    names = TrainRequest.option_names()
    assert len(names) == len(set(names))
    corpus = {f.name for f in dataclasses.fields(CorpusSpec)} - {"sources"}
    own = {f.name for f in dataclasses.fields(TrainRequest)} - {"corpus"}
    assert set(names) == corpus | own
    assert "sources" not in names and "corpus" not in names
    assert {"val", "tokenizer", "vocab_size", "cell", "resume", "patience"} <= set(names)


@pytest.mark.parametrize(("typo", "hint"), [("hiden", "hidden"), ("max_step", "max_steps")])
def test_an_unknown_option_names_the_closest_known_one(typo: str, hint: str) -> None:
    with pytest.raises(TypeError, match=f"unknown option '{typo}' \\(did you mean '{hint}'\\?\\)"):
        TrainRequest.from_options(CORPUS, **{typo: 1})


def test_an_unknown_option_far_from_any_lists_them_all() -> None:
    with pytest.raises(TypeError) as e:
        TrainRequest.from_options(CORPUS, threads=2)  # a device setting, not a request
    text = str(e.value)
    assert "did you mean" not in text
    assert text.startswith("unknown option 'threads'; the options are: ")
    assert text.endswith(", ".join(sorted(TrainRequest.option_names())))


def test_infinity_means_no_clipping_and_no_epoch_limit() -> None:
    req = TrainRequest.from_options(CORPUS, clip=math.inf, max_epochs=math.inf)
    assert req.clip == 0.0 and req.max_epochs is None
    kept = TrainRequest.from_options(CORPUS, clip=0.5, max_epochs=2.5)
    assert kept.clip == 0.5 and kept.max_epochs == 2.5


# ----------------------------------------------------------------------------- refusals


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"cell": "transformer"}, "--cell transformer: expected one of lstm, gru, rnn"),
    ({"tokenizer": "wordpiece"}, "--tokenizer wordpiece: expected one of char, bpe, unigram"),
    ({"schedule": "linear"}, "--schedule linear: expected one of cosine, plateau, constant"),
    ({"precision": "fp8"}, "--precision fp8: expected one of fp32, bf16, fp16"),
    ({"errors": "surrogateescape"}, "--errors surrogateescape: expected one of strict"),
    ({"patience": 0}, "--patience 0: expected 1 or more evaluations"),
    ({"val_fraction": 0.6}, "--val-fraction 0.6: expected 0 to 0.5"),
    ({"val_fraction": -0.1}, "--val-fraction -0.1: expected 0 to 0.5"),
    ({"vocab_size": 500}, "--vocab-size: only for --tokenizer bpe or unigram"),
    ({"tokenizer": "char", "vocab_size": 500}, "--vocab-size: only for --tokenizer bpe"),
    ({"patience": 3, "val_fraction": 0.0}, "--patience: needs validation"),
    ({"tie_weights": True, "embed_dim": 8, "hidden": 16}, "--tie-weights needs --embed-dim"),
    ({"init_from": "run", "tokenizer": "bpe"}, "--init-from: a fine-tuned run keeps the tokenizer"),
    ({"init_from": "run", "vocab_size": 64}, "--tokenizer and --vocab-size cannot be given"),
]


@pytest.mark.parametrize(("options", "message"), REFUSED, ids=lambda x: str(x)[:40])
def test_requests_no_run_can_take_are_option_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message) as e:
        TrainRequest.from_options(CORPUS, **options)
    assert "\n" not in str(e.value)


def test_no_corpus_and_no_resume() -> None:
    with pytest.raises(OptionError, match="name a text file to train on \\(or - for stdin\\)"):
        TrainRequest.from_options()


def test_standard_input_can_be_read_only_once() -> None:
    with pytest.raises(OptionError, match="standard input \\(-\\) can be named only once"):
        TrainRequest.from_options(("-", "a.txt", "-"))
    TrainRequest.from_options(("-", "a.txt"))  # once is fine
    with pytest.raises(CharRNNError, match="--val -: the validation text must be a file"):
        TrainRequest.from_options(("a.txt",), val="-")


def test_what_is_accepted_alongside() -> None:
    """The other side of each refusal: the same options in a form that makes sense."""
    TrainRequest.from_options(CORPUS, tie_weights=True, embed_dim=16, hidden=16)
    TrainRequest.from_options(CORPUS, tie_weights=True)  # the sizes left to the plan
    TrainRequest.from_options(CORPUS, tokenizer="bpe", vocab_size=500)
    TrainRequest.from_options(CORPUS, patience=2, val="v.txt", val_fraction=0.0)
    TrainRequest.from_options(CORPUS, val_fraction=0.5, patience=1)
    TrainRequest.from_options(CORPUS, init_from="run", hidden=None)


def test_requests_are_frozen() -> None:
    req = TrainRequest.from_options(CORPUS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.hidden = 4  # type: ignore[misc]


# ----------------------------------------------------------------------------- resuming


def test_every_setting_is_either_fixed_or_overridable_on_resume() -> None:
    """A new option must be placed in one of the two (or be a where, not a what)."""
    assert not set(RESUME_FIXED) & set(RESUME_OVERRIDABLE)
    settings = {f.name for f in dataclasses.fields(TrainRequest)}
    settings -= {"corpus", "out", "resume", "root"}
    assert set(RESUME_FIXED) | set(RESUME_OVERRIDABLE) == settings
    assert set(ARCHITECTURE) <= set(RESUME_FIXED)


VALUES: dict[str, Any] = dict(
    cell="lstm", layers=3, hidden=64, embed_dim=16, dropout=0.1, tie_weights=False,
    batch_size=8, seq_len=16, lr=1e-3, weight_decay=0.1, clip=0.5, warmup=0,
    schedule="constant", seed=7, init_from="other", max_epochs=3.0, max_steps=100,
    max_time=60.0, eval_every=10, precision="bf16", patience=2, epochs_unlimited=True,
    ema_decay=0.5,
)  # fmt: skip


@pytest.mark.parametrize("name", RESUME_OVERRIDABLE)
def test_a_resume_may_change_its_limits_and_precision(name: str) -> None:
    req = TrainRequest.from_options(resume="runs/r", **{name: VALUES[name]})
    assert getattr(req, name) == VALUES[name] and req.resume == "runs/r"


@pytest.mark.parametrize("name", [n for n in RESUME_FIXED if n != "init_from"])
def test_a_resume_refuses_what_the_run_was_set_up_with(name: str) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(OptionError, match=f"--resume continues runs/r as it was set up; {flag} "):
        TrainRequest.from_options(resume="runs/r", **{name: VALUES[name]})


def test_a_resume_refusal_lists_what_may_change() -> None:
    with pytest.raises(OptionError) as e:
        TrainRequest.from_options(resume="r", hidden=8)
    for name in RESUME_OVERRIDABLE:
        if name != "epochs_unlimited":  # --max-epochs inf, named as --max-epochs
            assert "--" + name.replace("_", "-") in str(e.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"val": "v.txt"}, "--val cannot be changed"),
        ({"sources": ("more.txt",)}, "--resume continues r on the corpus it was started with"),
        ({"tokenizer": "bpe"}, "--tokenizer: a resumed run keeps its tokenizer"),
        ({"vocab_size": 64}, "--tokenizer: a resumed run keeps its tokenizer"),
        ({"init_from": "other"}, "--init-from starts a new run; it cannot go with --resume"),
    ],
)
def test_a_resume_keeps_its_corpus_and_tokenizer(options: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        TrainRequest.from_options(resume="r", **options)


def test_a_resume_needs_no_corpus_and_skips_the_new_run_checks() -> None:
    req = TrainRequest.from_options(resume="r", patience=2, val_fraction=0.0)
    assert req.corpus.sources == () and req.patience == 2


# ----------------------------------------------------------------------------- the corpus part


def test_corpus_spec_defaults() -> None:
    spec = CorpusSpec(sources=CORPUS)
    assert spec.kind == defaults.DEFAULT_TOKENIZER == "char"
    assert spec.pieces is defaults.subword_vocab_size  # the default's rule (test_run_defaults)
    assert CorpusSpec(tokenizer="bpe", vocab_size=300).pieces == 300
    assert spec.holds_out
    assert CorpusSpec(val_fraction=0.0, val="v.txt").holds_out
    assert not CorpusSpec(val_fraction=0.0).holds_out


def test_model_left_to_defaults() -> None:
    assert TrainRequest.from_options(CORPUS, batch_size=4, lr=1e-3).model_left_to_defaults
    for name in ("cell", "layers", "hidden", "embed_dim", "dropout", "tie_weights"):
        req = TrainRequest.from_options(CORPUS, **{name: VALUES[name]})
        assert not req.model_left_to_defaults, name
    assert not TrainRequest.from_options(CORPUS, init_from="r").model_left_to_defaults


def test_max_epochs_inf_drops_a_resumed_run_s_epoch_limit() -> None:
    """--max-epochs inf on a resume: the saved epoch limit (e.g. a run that stopped after the
    useful passes) goes, the saved time budget stays; with --max-time too, only that is set."""
    from charrnn.run.plan import resumed_train_config
    from charrnn.training.config import TrainConfig

    saved = TrainConfig(max_epochs=16.0, max_time=120.0).to_dict()
    inf = TrainRequest.from_options(resume="runs/r", max_epochs=float("inf"))
    assert inf.max_epochs is None and inf.epochs_unlimited
    tc = resumed_train_config(inf, saved)
    assert tc.max_epochs is None and tc.max_time == 120.0
    both = TrainRequest.from_options(resume="runs/r", max_epochs=float("inf"), max_time=30.0)
    tc = resumed_train_config(both, saved)
    assert tc.max_epochs is None and tc.max_time == 30.0
    plain = resumed_train_config(TrainRequest.from_options(resume="runs/r"), saved)
    assert plain.max_epochs == 16.0 and plain.max_time == 120.0
