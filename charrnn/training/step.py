"""One training step on one window of the stream (truncated BPTT): forward from the carried
state under autocast, cross-entropy, backward, gradient-norm clipping, the AdamW update.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..model.rnn import CharRNN, Hidden, detach_hidden
from .config import TrainConfig, precision_problem
from .distributed import SINGLE, Dist, mean


class WindowStep:
    """One optimizer step on one window (truncated BPTT): forward from the carried state under
    autocast, loss, backward, gradient-norm clipping, AdamW update. Wraps the model in DDP when
    several processes train, and owns the fp16 gradient scaler."""

    def __init__(
        self,
        model: CharRNN,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        dist: Dist = SINGLE,
        grad_scale: dict[str, Any] | None = None,
    ) -> None:
        self.config, self.optimizer, self.dist = config, optimizer, dist
        self.device = next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.net: torch.nn.Module = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(model, device_ids=ids)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.scaler: torch.amp.GradScaler | None = None
        if config.precision == "fp16":
            problem = precision_problem(config.precision, self.device.type)
            if problem:
                raise TrainingError(problem)
            self.scaler = torch.amp.GradScaler("cuda")
            if grad_scale:
                self.scaler.load_state_dict(grad_scale)

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.device.type == "cuda":
            # Page-locked copies let the transfer to the GPU run asynchronously.
            x, y = x.contiguous().pin_memory(), y.contiguous().pin_memory()
        x = x.to(self.device, torch.long, non_blocking=True)
        y = y.to(self.device, torch.long, non_blocking=True)
        return x, y

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, hidden: Hidden | None
    ) -> tuple[float, bool, Hidden]:
        """Inputs and targets (B, T) of this process's rows, the state carried into them: the
        loss averaged over ranks (nats/token), whether the update was applied (not on a
        non-finite loss or gradient), and the state after the window (detached)."""
        opt, clip = self.optimizer, self.config.clip
        x, y = self._to_device(x, y)
        with torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        ):
            logits, new_hidden = self.net(x, hidden)  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip > 0 else math.inf)
        loss_value = mean(self.dist, loss.item(), self.device)
        if self.scaler is not None and math.isfinite(loss_value):
            # The scaler skips steps with overflowing fp16 gradients and adapts its scale.
            self.scaler.step(opt)
            self.scaler.update()
            gnorm = torch.zeros(())
        if not (math.isfinite(loss_value) and bool(torch.isfinite(gnorm))):
            return loss_value, False, new_hidden
        if self.scaler is None:
            opt.step()
        return loss_value, True, detach_hidden(new_hidden)
