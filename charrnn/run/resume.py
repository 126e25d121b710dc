"""The trainer's, the optimizer's and the random generators' state as plain data, and back.

A checkpoint stores them for ``--resume`` without pickle: tensors go to safetensors files, the
rest to JSON; :mod:`charrnn.store.checkpoint` reads and writes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..model.rnn import CharRNN, hidden_from_tensors, hidden_tensors
from ..store import checkpoint as ck
from ..training.config import TrainConfig, TrainerState
from ..training.loop import make_optimizer


def optimizer_to_plain(
    opt: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as (tensors for safetensors, JSON-able rest). No pickle."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_plain(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def trainer_state_to_plain(
    state: TrainerState,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Trainer state and RNG states as (tensors, JSON-able dict)."""
    tensors: dict[str, torch.Tensor] = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = st
    if state.hidden is not None:
        for i, t in enumerate(hidden_tensors(state.hidden)):
            tensors[f"hidden.{i}"] = t
    for i, t in enumerate(state.average or []):
        tensors[f"average.{i}"] = t
    return tensors, state.to_dict()


def trainer_state_from_plain(
    cell: str, tensors: dict[str, torch.Tensor], d: dict[str, Any], device: torch.device
) -> TrainerState:
    """Inverse of :func:`trainer_state_to_plain`; also restores the RNG states."""
    fields = {k: v for k, v in d.items() if k in TrainerState.__dataclass_fields__}
    state = TrainerState(**fields)
    hid = [tensors[f"hidden.{i}"].to(device) for i in range(2) if f"hidden.{i}" in tensors]
    state.hidden = hidden_from_tensors(cell, hid) if hid else None
    n_average = sum(1 for k in tensors if k.startswith("average."))
    if n_average:
        state.average = [tensors[f"average.{i}"].to(device) for i in range(n_average)]
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return state


def training_files(
    opt: torch.optim.Optimizer, state: TrainerState
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """What a checkpoint stores for resuming: trainer_state.json's content, and the tensors of
    optimizer.safetensors and trainer_state.safetensors by file name."""
    opt_tensors, opt_meta = optimizer_to_plain(opt)
    st_tensors, st_json = trainer_state_to_plain(state)
    st_json["optimizer"] = opt_meta
    return st_json, {ck.OPTIMIZER: opt_tensors, ck.TRAINER_TENSORS: st_tensors}


def restore_training(
    ckpt: Path, model: CharRNN, tc: TrainConfig, device: torch.device
) -> tuple[torch.optim.Optimizer, TrainerState]:
    """The optimizer (for ``model``) and trainer state a checkpoint saved for resuming; also
    restores the random-number states. Raises CheckpointError when they are unusable."""
    optimizer = make_optimizer(model, tc)
    st_json = ck.read_json(ckpt / ck.TRAINER_STATE)
    try:
        opt_tensors = ck.read_tensors(ckpt / ck.OPTIMIZER)
        optimizer_from_plain(optimizer, opt_tensors, st_json["optimizer"])
        st_tensors = ck.read_tensors(ckpt / ck.TRAINER_TENSORS)
        state = trainer_state_from_plain(model.config.cell, st_tensors, st_json, device)
        _check_average(state, model)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt}: cannot restore the training state ({e})") from None
    return optimizer, state


def _check_average(state: TrainerState, model: CharRNN) -> None:
    """Raise ValueError unless the stored weights' average (if any) has the model's shapes."""
    if state.average is None:
        return
    want = [tuple(p.shape) for p in model.parameters()]
    if [tuple(t.shape) for t in state.average] != want:
        raise ValueError("the weights' average stored does not match the model's parameters")
