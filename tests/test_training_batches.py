"""Streams and truncated-BPTT windows (charrnn/training/batches.py)."""

from __future__ import annotations

import torch

from charrnn.training.batches import batchify, num_windows, window


def test_batchify_rows_are_contiguous_stretches() -> None:
    ids = torch.arange(25)
    data = batchify(ids, 3)
    assert data.shape == (3, 8)
    assert data[1].tolist() == list(range(8, 16))


def test_windows_cover_each_stream_and_targets_are_shifted() -> None:
    data = batchify(torch.arange(100), 4)  # (4, 25)
    xs, ys = [], []
    for k in range(num_windows(data.size(1), 7)):
        x, y = window(data, k, 7)
        assert x.shape == y.shape
        assert torch.equal(y[:, :-1], x[:, 1:])
        xs.append(x)
        ys.append(y)
    assert len(xs) == num_windows(25, 7) == 4
    # Consecutive windows continue each row: together they are the row without its last item.
    assert torch.equal(torch.cat(xs, dim=1), data[:, :-1])
    assert torch.equal(torch.cat(ys, dim=1), data[:, 1:])


def test_window_last_is_shorter() -> None:
    data = batchify(torch.arange(30), 3)  # (3, 10)
    x, y = window(data, 2, 4)
    assert x.shape == (3, 1) and y[:, 0].tolist() == [9, 19, 29]
