"""How a new run starts: its model and training configuration, from the defaults or from a
trained model (``charrnn train NEW.txt --init-from RUN``: fine-tuning).

A fine-tuned run is a new run folder. Its model begins as a copy of the parent checkpoint's
(cell, layers, hidden, embedding size and weight tying are the parent's; options that would
change them are refused), and its vocabulary is the parent's with the characters of the new
training text that the parent lacks appended (:meth:`charrnn.text.vocab.Vocab.extended`)::

    ids   0 <UNK>  1 '\\n'  2 ' '  ...  65 'z' | 66 'é'  67 '€'
          the parent's rows, copied unchanged  | new rows (see :func:`grow_rows`)

A subword parent keeps its tokenizer (no pieces are added). The optimizer starts afresh (the
parent's AdamW moments belong to another text), at
:func:`charrnn.run.defaults.finetune_learning_rate`
unless ``--lr`` is given, with the usual warm-up. ``config.json`` records where the run started
under ``init_from``: ``{"run": ..., "checkpoint": ..., "step": ..., "given": ...}`` (``given``:
the path as the user typed it, shown by ``info`` and the start line).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CheckpointError, OptionError
from ..model.rnn import CharRNN, ModelConfig
from ..store import catalog
from ..store import checkpoint as ck
from ..text.tokenizers import Tokenizer
from ..text.vocab import Vocab
from . import defaults
from .request import ARCHITECTURE, TrainRequest

if TYPE_CHECKING:
    pass

ROWS = ("embedding.weight", "head.weight", "head.bias")  # one row per vocabulary id


@dataclass(frozen=True)
class Parent:
    """The model a fine-tuned run starts from, loaded on the CPU."""

    model: CharRNN
    vocab: Tokenizer
    origin: dict[str, Any]  # config.json's init_from: {"run", "checkpoint", "step"}


def prepare(req: TrainRequest) -> tuple[TrainRequest, Parent | None]:
    """For ``req.init_from``: load the parent, refuse options that conflict with it, and fill
    the request in with its architecture and the fine-tuning learning rate (the parent is
    loaded on the CPU; the run moves the model to its device). A request without
    ``init_from`` comes back as it is, with None. Raises CharRNNError (CheckpointError for a
    parent that cannot be loaded)."""
    if req.init_from is None:
        return req, None
    try:
        loaded = ck.load_model(Path(req.init_from), "cpu")
    except CheckpointError as e:
        raise CheckpointError(f"--init-from: {e}") from None
    mc = loaded.model.config
    check_request(req, mc, loaded.vocab)
    step = (loaded.config.get("metrics") or {}).get("step")
    origin = {
        "run": str(loaded.path.parent.resolve()),
        "checkpoint": loaded.path.name,
        "step": step if isinstance(step, int) else None,
        "given": req.init_from,  # as the user typed it (relative stays relative), for display
    }
    filled = replace(
        req,
        **{name: getattr(mc, name) for name in ARCHITECTURE},
        lr=req.lr or defaults.finetune_learning_rate(mc.cell),
    )
    return filled, Parent(loaded.model, loaded.vocab, origin)


def recorded_origin(config: dict[str, Any]) -> dict[str, Any] | None:
    """Where the run of a checkpoint's ``config.json`` started (None: from scratch, or a
    checkpoint written before charrnn recorded it)."""
    return catalog.origin_of(config)


def check_request(req: TrainRequest, mc: ModelConfig, vocab: Tokenizer) -> None:
    """Refuse, in one line, an option of ``req`` that would change the parent's architecture
    (``mc``) or tokenizer (the same value as the parent's is no conflict)."""
    conflicts = [
        name for name in ARCHITECTURE if getattr(req, name) not in (None, getattr(mc, name))
    ]
    if conflicts:
        name = conflicts[0]
        option = "--" + name.replace("_", "-")
        value = getattr(req, name)
        given = f"{option} {value}"
        if isinstance(value, bool):
            given = option if value else f"--no-{option[2:]}"
        raise OptionError(
            f"--init-from: {given} conflicts with the model it starts from ({mc.cell.upper()} "
            f"{mc.layers}x{mc.hidden}, embedding {mc.embed_dim}{', tied' if mc.tie_weights else ''}"
            "); a fine-tuned run keeps its cell, layers, hidden, embed-dim and tie-weights"
        )


def initial_model(mc: ModelConfig, parent: Parent | None, vocab: Tokenizer) -> CharRNN:
    """The model a new run starts with: freshly initialised (from torch's seeded generator),
    or the parent's weights with a row for each id the parent lacks (``vocab``: the run's,
    whose counts give the new rows' bias)."""
    model = CharRNN(mc)
    if parent is not None:
        copy_weights(parent.model, model, vocab.counts if isinstance(vocab, Vocab) else [])
    return model


@torch.no_grad()
def copy_weights(parent: CharRNN, child: CharRNN, counts: Sequence[int]) -> None:
    """Copy every weight of ``parent`` into ``child``, which has the same architecture and at
    least as many vocabulary ids; the rows of the ids the parent lacks come from
    :func:`grow_rows` (``counts``: training counts per id of the child's vocabulary)."""
    old, new = parent.config.vocab_size, child.config.vocab_size
    if new < old or replace(parent.config, vocab_size=new, dropout=0.0) != replace(
        child.config, dropout=0.0
    ):
        raise ValueError("the child model must have the parent's architecture")
    dst = child.state_dict()  # tensors sharing the child's storage
    for name, t in parent.state_dict().items():
        (dst[name][:old] if name in ROWS else dst[name]).copy_(t)
    if new > old:
        grow_rows(child, old, counts)


@torch.no_grad()
def grow_rows(model: CharRNN, old: int, counts: Sequence[int]) -> None:
    """Initialise the rows of ids ``old..V-1`` (characters new to the parent) in ``model``,
    whose rows ``0..old-1`` are trained.

    Embedding and output weights: the mean of the trained characters' rows (ids 1..old-1;
    ``<UNK>``'s row is left out, for it may never have been trained). A new character then
    reads like an average one, and its logit is the mean of the old characters' logits, so by
    Jensen's inequality exp(logit) <= (sum of their exp) / (old - 1): it starts at most as
    likely as an average old character. Its bias is raised by log((old - 1) * f), f its share
    of the new training text (``counts``), so it starts at most about as likely as its
    frequency: rare characters unlikely, none impossible. Rows of an embedding table get
    gradients only where their own id occurs (and output rows differ by their targets), so
    equal starting rows do not stay equal: no noise is needed, and the copy is deterministic.
    """
    V = model.config.vocab_size
    emb = model.embedding.weight  # (V, E)
    emb[old:] = emb[1:old].mean(dim=0)
    if not model.config.tie_weights:
        model.head.weight[old:] = model.head.weight[1:old].mean(dim=0)  # (V, H)
    total = sum(counts)
    share = [max(counts[i], 1) / total if total else 1.0 / V for i in range(old, V)]
    bias = model.head.bias[1:old].mean()
    lift = torch.tensor([math.log((old - 1) * f) for f in share], dtype=bias.dtype)
    model.head.bias[old:] = bias + lift
