"""``POST /v1/score``: a text's per-token surprise and its totals.

The totals are :func:`charrnn.evaluation.score_text`'s with ``charrnn eval-perplexity``'s
defaults, so they are the figures that command prints for the same text. The per-token figures
come from one exact pass (the state carried through the text, in windows): the nats of each
token given everything before it (none for the first, which nothing predicts) and the model's
likeliest alternatives there. Torch is imported when a text is first scored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocols import DEFAULT_BURN_IN, DEFAULT_STREAMS

if TYPE_CHECKING:
    from ..model.rnn import CharRNN
    from ..text.tokenizers import Tokenizer

WINDOW = 1024  # tokens per forward pass of the per-token figures
TOP = 5  # alternatives reported per token


def score(model: CharRNN, vocab: Tokenizer, text: str, top: int = TOP) -> dict[str, Any]:
    """Per-token nats and alternatives of ``text``, with the totals of ``eval-perplexity``."""
    from ..evaluation import score_text

    ids = vocab.encode(text)
    scored = score_text(model, vocab, [text], DEFAULT_STREAMS, DEFAULT_BURN_IN)
    pieces = list(text) if len(ids) == len(text) else [vocab.itos[i] for i in ids]
    nats, alternatives = _per_token(model, ids, vocab.itos, top)
    s = scored.score
    return {
        "object": "score",
        "tokens": [
            {"text": p, "nats": n, "top": a}
            for p, n, a in zip(pieces, [None, *nats], [{}, *alternatives], strict=True)
        ],
        "chars": scored.chars,
        "unknown": scored.unknown,
        "tokens_scored": s.tokens,
        "nats": s.nats,
        "nats_per_char": s.nats_per_char,
        "bits_per_char": s.bits_per_char,
        "perplexity": s.perplexity,
        "nats_per_token": s.nats_per_token,
        "bits_per_token": s.bits_per_token,
        "protocol": f"{DEFAULT_STREAMS} streams, burn-in {DEFAULT_BURN_IN}",  # eval-perplexity's
    }


def _per_token(
    model: CharRNN, ids: list[int], itos: list[str], top: int
) -> tuple[list[float], list[dict[str, float]]]:
    """For each token after the first: its nats given the tokens before, and the ``top``
    likeliest tokens there with their log-probabilities."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    x = torch.tensor(ids, dtype=torch.long, device=device)
    nats: list[float] = []
    alternatives: list[dict[str, float]] = []
    hidden = None
    with torch.inference_mode():
        for a in range(0, len(ids) - 1, WINDOW):
            inputs = x[a : min(a + WINDOW, len(ids) - 1)]
            targets = x[a + 1 : a + 1 + inputs.numel()]
            logits, hidden = model(inputs[None], hidden)
            lp = F.log_softmax(logits[0].float(), dim=-1)  # (T, V)
            nats += (-lp.gather(1, targets[:, None])[:, 0]).tolist()
            values, where = lp.topk(min(top, lp.size(-1)), dim=-1)
            for vs, ws in zip(values.tolist(), where.tolist(), strict=True):
                alternatives.append({itos[w]: v for v, w in zip(vs, ws, strict=True)})
    return nats, alternatives
