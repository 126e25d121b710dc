"""One training step: the update it applies, clipping, a non-finite step skipped, precisions."""

from __future__ import annotations

import pytest
import torch

from charrnn.errors import TrainingError
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.training.config import TrainConfig
from charrnn.training.loop import make_optimizer
from charrnn.training.step import WindowStep


def _setup(clip: float = 1.0, precision: str = "fp32"):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=12, hidden=16, layers=1, embed_dim=8, dropout=0.0))
    cfg = TrainConfig(batch_size=4, seq_len=8, clip=clip, lr=1e-2, precision=precision)
    opt = make_optimizer(model, cfg)
    return model, opt, cfg


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 12, (4, 9), generator=g)
    return x[:, :-1], x[:, 1:]


def test_a_step_lowers_the_loss_on_its_window_and_detaches_the_state() -> None:
    model, opt, cfg = _setup()
    step = WindowStep(model, opt, cfg)
    x, y = _batch()
    first, applied, hidden = step(x, y, None)
    assert applied and first > 0
    assert all(not h.requires_grad for h in (hidden if isinstance(hidden, tuple) else (hidden,)))
    losses = [step(x, y, None)[0] for _ in range(20)]
    assert losses[-1] < first * 0.9


def test_gradients_are_clipped_to_the_norm_asked() -> None:
    model, opt, cfg = _setup(clip=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    seen: list[float] = []
    real_step = opt.step

    def step_and_record(*a, **kw):  # type: ignore[no-untyped-def]
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return real_step(*a, **kw)

    opt.step = step_and_record  # type: ignore[method-assign]
    WindowStep(model, opt, cfg)(*_batch(), None)
    assert seen and seen[0] <= 1e-3 * 1.0001
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_non_finite_loss_is_not_applied() -> None:
    model, opt, cfg = _setup()
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    before = [p.detach().clone() for p in model.parameters()]
    loss, applied, _ = WindowStep(model, opt, cfg)(*_batch(), None)
    assert not applied and loss != loss  # NaN
    after = list(model.parameters())
    assert all(
        torch.equal(a, b) or torch.isnan(a).any() for a, b in zip(before, after, strict=True)
    )


def test_fp16_needs_cuda_and_bf16_runs_on_a_cpu() -> None:
    model, opt, cfg = _setup(precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="--precision fp16 needs a CUDA device"):
            WindowStep(model, opt, cfg)
    model, opt, cfg = _setup(precision="bf16")
    loss, applied, _ = WindowStep(model, opt, cfg)(*_batch(), None)
    assert applied and loss == loss
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, fp32 weights
