"""The sampling rules of charrnn.sample.policy: every knob declared, checked in one place, the
temperature thresholds, the stop-string rule, and an import that stays light."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys

import numpy as np
import pytest

from charrnn.sample import policy
from charrnn.sample.policy import (
    ENGINES,
    FOLD_MIN_TEMPERATURE,
    GREEDY_BELOW,
    KNOBS,
    Knob,
    Picker,
    SampleConfig,
    check_engine,
    cut_at_stop,
    pick_rows,
    stop_at,
    uses_short_path,
)
from charrnn.text.vocab import UNK_ID


@dataclasses.dataclass(frozen=True, kw_only=True)
class _WithNewKnob(SampleConfig):
    """SampleConfig as it would be with a field added and not declared in KNOBS."""

    beams: int | None = None


def test_every_field_is_declared_for_the_engines() -> None:
    names = [f.name for f in dataclasses.fields(SampleConfig)]
    assert sorted(names) == sorted(KNOBS), "declare each SampleConfig field in policy.KNOBS"
    for name, knob in KNOBS.items():
        assert knob.engines and knob.engines <= set(ENGINES), name
        if knob.off is not None:
            assert knob.off(getattr(SampleConfig(), name)), f"the default of {name} must be off"
    for engine in ENGINES:
        assert check_engine(SampleConfig(top_k=3, top_p=0.5, seed=1), engine).top_k == 3


def test_an_undeclared_field_fails_the_check() -> None:
    cfg = _WithNewKnob(beams=4)
    with pytest.raises(LookupError, match=r"SampleConfig\.beams is not declared"):
        check_engine(cfg, "numpy")
    with pytest.raises(LookupError, match="beams"):
        uses_short_path(cfg)
    with pytest.raises(LookupError, match="beams"):
        Picker(cfg, 1, 5, np.random.default_rng(0))


def test_the_check_refuses_what_an_engine_does_not_honour(monkeypatch: pytest.MonkeyPatch) -> None:
    only_torch = Knob(frozenset({"torch"}), short_path=False, off=lambda k: k is None)
    monkeypatch.setattr(policy, "KNOBS", {**KNOBS, "top_k": only_torch})
    with pytest.raises(ValueError, match="the numpy engine does not support top_k"):
        check_engine(SampleConfig(top_k=2), "numpy")
    assert check_engine(SampleConfig(), "numpy") == SampleConfig()  # off: nothing to honour
    assert check_engine(SampleConfig(top_k=2), "torch").top_k == 2
    with pytest.raises(ValueError, match="unknown engine 'jax'"):
        check_engine(SampleConfig(), "jax")


def test_a_knob_the_short_path_does_not_serve_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    both = frozenset(ENGINES)
    beams = Knob(both, short_path=False, off=lambda b: b is None)
    monkeypatch.setattr(policy, "KNOBS", {**KNOBS, "beams": beams})
    assert uses_short_path(_WithNewKnob())
    assert not uses_short_path(_WithNewKnob(beams=2))


def test_the_generator_checks_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from charrnn.model.arrays import ArrayModel
    from charrnn.model.config import ModelConfig, weight_shapes
    from charrnn.sample.generate import generate, generate_many
    from charrnn.text.vocab import Vocab

    mc = ModelConfig(5, "gru", 1, hidden=4, embed_dim=3)
    arrays = {k: np.full(s, 0.1, np.float32) for k, s in weight_shapes(mc).items()}
    model, vocab = ArrayModel(mc, arrays), Vocab(list("abcd"))
    assert len("".join(generate(model, vocab, "a", SampleConfig(length=3, seed=0)))) == 4
    monkeypatch.setattr(policy, "KNOBS", {k: v for k, v in KNOBS.items() if k != "seed"})
    with pytest.raises(LookupError, match="seed"):
        "".join(generate(model, vocab, "a", SampleConfig(length=3)))
    with pytest.raises(LookupError, match="seed"):
        generate_many(model, vocab, 2, "a", SampleConfig(length=3))


def test_keywords_only_and_the_checks() -> None:
    with pytest.raises(TypeError):
        SampleConfig(100)  # type: ignore[misc]
    assert SampleConfig().length == policy.DEFAULT_LENGTH == 1000
    assert SampleConfig().temperature == policy.DEFAULT_TEMPERATURE == 0.8
    for kw, message in [
        ({"length": -1}, "length must be >= 0"),
        ({"temperature": -0.1}, "temperature must be a finite number >= 0"),
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": float("nan")}, r"top_p must be in \(0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            SampleConfig(**kw)  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SampleConfig().length = 3  # type: ignore[misc]


def test_the_temperature_thresholds() -> None:
    assert GREEDY_BELOW < FOLD_MIN_TEMPERATURE
    assert SampleConfig(temperature=GREEDY_BELOW / 10).temperature == 0.0
    assert SampleConfig(temperature=GREEDY_BELOW).temperature == GREEDY_BELOW
    for t, short in [(0.0, True), (GREEDY_BELOW, False), (5e-5, False), (1e-4, True), (2.0, True)]:
        assert uses_short_path(SampleConfig(temperature=t)) is short, t
    assert uses_short_path(SampleConfig(top_p=1.0))
    assert not uses_short_path(SampleConfig(top_p=0.99))
    assert not uses_short_path(SampleConfig(top_k=50))
    # Greedy draws no random number; a temperature below the fold draws one per step.
    for t, draws in [(0.0, False), (1e-5, True)]:
        rng = np.random.default_rng(0)
        pick = Picker(SampleConfig(temperature=t), 1, 4, rng)
        assert pick.pick1(pick.fold(np.array([[0.0, 1.0, 3.0, 2.0]]))[0]) == 2
        assert (rng.random() != np.random.default_rng(0).random()) is draws


def test_stop_at_streams_what_cut_at_stop_cuts() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice("ab\n") for _ in range(rng.randrange(12)))
        stop = "".join(rng.choice("ab\n") for _ in range(rng.randrange(1, 4)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(3, len(text) + 1)))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert "".join(stop_at(iter(pieces), stop)) == cut_at_stop(text, stop), (text, stop)
    assert cut_at_stop("\n\nab\ncd", "\n") == "ab"
    assert cut_at_stop("abc", None) == "abc"


def test_the_policy_imports_neither_numpy_nor_torch() -> None:
    """The command line reads the policy's defaults at start-up: it must stay light."""
    code = (
        "import sys, charrnn.sample.policy; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def _pickers(cfgs: list[SampleConfig], vocab: int, block: int = 1024) -> list[Picker]:
    return [Picker(c, 1, vocab, np.random.default_rng(c.seed), block) for c in cfgs]


@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: logits whose exponentials overflow
def test_rows_drawn_together_are_the_tokens_drawn_one_by_one(scale: float) -> None:
    """pick_rows (the server's step: every row its own picker) draws exactly the tokens that
    each picker's pick1 draws from its row, step after step (each generator advanced the same
    way): temperature sampling at several temperatures, greedy, top-k and top-p rows mixed."""
    V, B = 67, 12
    cfgs = [
        SampleConfig(temperature=t, seed=i)
        for i, t in enumerate([1.0, 0.8, 0.5, 1.3, 0.05, 2.0, 1.0, 0.7])
    ]
    cfgs += [
        SampleConfig(temperature=0.0, seed=8),
        SampleConfig(temperature=0.9, top_k=5, seed=9),
        SampleConfig(temperature=0.9, top_p=0.8, seed=10),
        SampleConfig(temperature=1e-6, seed=11),  # raw logits: the max-subtracted form
    ]
    together, alone = _pickers(cfgs, V, 64), _pickers(cfgs, V)
    rng = np.random.default_rng(123)
    drawn: set[int] = set()
    for _ in range(300):
        logits = (rng.standard_normal((B, V)) * scale).astype(np.float32)
        got = pick_rows(together, logits)
        want = [p.pick1(p.fold(logits[i : i + 1])[0]) for i, p in enumerate(alone)]
        assert got == want
        drawn.update(got)
    assert len(drawn) > V // 2  # real draws over the vocabulary, not one token
    assert UNK_ID not in drawn


def test_rows_drawn_together_take_the_stable_form_where_one_row_needs_it() -> None:
    """One row's totals overflow (logits near float32's top, at T=1): that row alone takes the
    max-subtracted form, as pick1 does; the others are unchanged."""
    V = 9
    cfgs = [SampleConfig(temperature=1.0, seed=s) for s in range(3)]
    together, alone = _pickers(cfgs, V), _pickers(cfgs, V)
    logits = np.zeros((3, V), np.float32)
    logits[1] = np.linspace(50, 200, V, dtype=np.float32)  # exp(min(z, 80)) sums past e^79
    for _ in range(50):
        got = pick_rows(together, logits)
        assert got == [p.pick1(p.fold(logits[i : i + 1])[0]) for i, p in enumerate(alone)]
        assert got[1] == V - 1  # the stable form: the top logit by e^18 over the next
