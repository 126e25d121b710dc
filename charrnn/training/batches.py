"""Batching a token stream into contiguous streams, and walking them in windows (truncated
backpropagation through time, BPTT)::

    ids   a b c d e f g h i j k l m n o p q r s t u v w x y    N = 25, batch_size B = 3
                                                               L = N // B = 8 per stream
    data  row 0: a b c d e f g h      (B, L): each row is a contiguous stretch of the text
          row 1: i j k l m n o p
          row 2: q r s t u v w x      (y is dropped: it does not fill a row)

    seq_len T = 3, window k starts at column i = k*T:
          x = data[:, i : i+T]        y = data[:, i+1 : i+T+1]   (the next character)
          k=0  x: a b c   y: b c d     k=1  x: d e f   y: e f g     k=2  x: g   y: h
               i j k      j k l             l m n      m n o             o       p
               ...                          ...                          w       x

The hidden state that row b ends window k with is the state row b starts window k+1 with
(detached from the graph), so every stream reads its stretch of text as one long sequence.
The last window of an epoch is shorter when T does not divide L - 1.
"""

from __future__ import annotations

import torch


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D id stream into ``batch_size`` contiguous rows, (B, L); the remainder is dropped."""
    n = ids.numel() // batch_size
    if n < 2:
        raise ValueError(f"{ids.numel()} tokens cannot fill {batch_size} streams of 2 or more")
    return ids[: n * batch_size].view(batch_size, n)


def num_windows(length: int, seq_len: int) -> int:
    """Windows per epoch over streams of ``length`` columns (the last column is only a target)."""
    return -(-(length - 1) // seq_len)


def window(data: torch.Tensor, k: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window ``k`` of ``data`` (B, L): inputs x and targets y = x shifted by one, both (B, T)."""
    i = k * seq_len
    t = min(seq_len, data.size(1) - 1 - i)
    return data[:, i : i + t], data[:, i + 1 : i + 1 + t]
