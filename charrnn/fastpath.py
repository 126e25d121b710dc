"""Fast CPU stepping of a trained CharRNN, one character at a time, for sampling.

``CharRNN.forward`` costs tens of microseconds of framework overhead per call, far more than the
arithmetic of one step. :class:`FastRNN` copies the weights once into NumPy arrays laid out for
the step and then runs every step as a fixed sequence of BLAS and ufunc calls that write into
preallocated buffers: no allocation, no autograd, no dispatch per step. It gives the same logits
as ``CharRNN.forward`` (to float32 rounding).

Dimension names: B streams, H hidden size, G gates (LSTM 4, GRU 3, RNN 1), V vocabulary size.

How the weights are laid out (PyTorch's own formulas, rearranged, never approximated)::

    layer 0 input:  table[v] = embedding[v] @ W_ih0^T + b_ih0 (+ b_hh0 where it is additive)
                    (V, G*H): the first layer's input projection becomes a row lookup
    layer l >= 1:   gi = h_{l-1} @ W_ih^T + b   (B, G*H)      gh = h_l @ W_hh^T   (B, G*H)
    sigmoid gates:  rows scaled by 1/2 (exact in binary), so one tanh serves every gate:
                    sigmoid(x) = 0.5 + 0.5 * tanh(x / 2)
    LSTM rows:      PyTorch's i, f, g, o reordered to i, f, o, g (the sigmoids side by side)
    GRU:            r, z, n with n = tanh(gi_n + r * (gh_n + b_hn))
    biases:         a last row of the matrices, multiplied by a constant 1 kept after each state
"""

from __future__ import annotations

import numpy as np
import torch

from .model import CharRNN, Hidden, hidden_from_tensors

F32 = np.float32


def supports(model: CharRNN) -> bool:
    """Whether :class:`FastRNN` can run ``model``: float32 weights on the CPU."""
    w = model.head.weight
    return w.device.type == "cpu" and w.dtype == torch.float32


def _np(t: torch.Tensor) -> np.ndarray:
    return np.array(t.detach().to(torch.float32).cpu().numpy(), dtype=F32, copy=True)


class FastRNN:
    """A CharRNN's weights as NumPy arrays, with the state of ``batch`` streams.

    ``step(tokens)`` feeds one token per stream and returns the logits (B, V) in a buffer that
    the next step overwrites.
    """

    def __init__(self, model: CharRNN, batch: int = 1) -> None:
        if not supports(model):
            raise ValueError("FastRNN needs a float32 model on the CPU")
        c = model.config
        self.cell = c.cell
        self.layers = c.layers
        self.hidden_size = H = c.hidden
        self.batch = B = batch
        self.vocab_size = V = c.vocab_size
        G = {"lstm": 4, "gru": 3, "rnn": 1}[c.cell]
        self.gates = G
        rnn = model.rnn

        # Row permutation and scale per gate block: applied to W_ih, W_hh and both biases.
        if c.cell == "lstm":
            order, halve = [0, 1, 3, 2], [True, True, True, False]  # i f o g, sigmoids halved
        elif c.cell == "gru":
            order, halve = [0, 1, 2], [True, True, False]  # r z n
        else:
            order, halve = [0], [False]
        scale = np.concatenate([np.full(H, 0.5 if s else 1.0, dtype=F32) for s in halve])
        rows = np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])

        def arrange(t: torch.Tensor) -> np.ndarray:
            a = _np(t)[rows]
            return a * (scale[:, None] if a.ndim == 2 else scale)

        emb = _np(model.embedding.weight)  # (V, E)
        H1 = H + 1
        # The states of all layers side by side, each followed by a constant 1 so that the
        # biases ride along in the matrix products: S = [h_0, 1, h_1, 1, ...]  (B, N*(H+1)).
        self.S = np.zeros((B, c.layers * H1), F32)
        self.S[:, H::H1] = 1.0
        self.h = [self.S[:, k * H1 : k * H1 + H] for k in range(c.layers)]  # views (B, H)
        self.hx = [self.S[:, k * H1 : (k + 1) * H1] for k in range(c.layers)]  # [h_k, 1]
        self.c = [np.zeros((B, H), F32) for _ in range(c.layers)] if c.cell == "lstm" else []
        # Per layer: W_i (in+1, G*H) with the input bias as last row (layer 0 has the table
        # instead), W_h (H+1, G*H) with the recurrent bias as last row.
        self.wi: list[np.ndarray] = []
        self.wh: list[np.ndarray] = []
        for layer in range(c.layers):
            w_ih = arrange(getattr(rnn, f"weight_ih_l{layer}"))  # (G*H, in)
            w_hh = arrange(getattr(rnn, f"weight_hh_l{layer}"))  # (G*H, H)
            b_ih = arrange(getattr(rnn, f"bias_ih_l{layer}"))
            b_hh = arrange(getattr(rnn, f"bias_hh_l{layer}"))
            if layer == 0:
                # (V, G*H): float64 accumulation, rounded once.
                table = emb.astype(np.float64) @ w_ih.T.astype(np.float64) + b_ih
                self.table = np.ascontiguousarray(table.astype(F32))
                self.wi.append(self.table)  # not used by step()
            else:
                self.wi.append(np.ascontiguousarray(np.vstack([w_ih.T, b_ih[None, :]])))
            self.wh.append(np.ascontiguousarray(np.vstack([w_hh.T, b_hh[None, :]])))
        w_head = _np(model.head.weight).T  # (H, V)
        self.head = np.ascontiguousarray(np.vstack([w_head, _np(model.head.bias)[None, :]]))

        GH = G * H
        self.gi = np.empty((B, GH), F32)
        self.gh = np.empty((B, GH), F32)
        self.pre = np.empty((B, GH), F32)
        self.tmp = np.empty((B, H), F32)
        self.tmp2 = np.empty((B, H), F32)
        self.logits = np.empty((B, V), F32)
        self.half = np.full((B, GH), 0.5, F32)  # arrays are cheaper operands than scalars
        self._views()

    def _views(self) -> None:
        """Slices of the buffers, made once: slicing costs time on every step."""
        H, pre, gi, gh, half = self.hidden_size, self.pre, self.gi, self.gh, self.half
        if self.cell == "lstm":
            self._lstm = (pre[:, : 3 * H], half[:, : 3 * H], pre[:, :H], pre[:, H : 2 * H])
            self._lstm2 = (pre[:, 2 * H : 3 * H], pre[:, 3 * H :])
        elif self.cell == "gru":
            self._gru = (
                pre[:, : 2 * H],  # r, z (as one block)
                half[:, : 2 * H],
                pre[:, :H],  # r
                pre[:, H : 2 * H],  # z
                pre[:, 2 * H :],  # n
                gi[:, : 2 * H],
                gi[:, 2 * H :],
                gh[:, : 2 * H],
                gh[:, 2 * H :],
            )

    # -- state ------------------------------------------------------------------------------

    def set_state(self, hidden: Hidden | None) -> None:
        """Load a CharRNN state ((N, B, H), or (h, c) for LSTM); None is the zero state."""
        if hidden is None:
            for a in self.h + self.c:
                a.fill(0.0)
            return
        hs = list(hidden) if isinstance(hidden, tuple) else [hidden]
        h = hs[0].detach().to(torch.float32).cpu().numpy()  # (N, B, H)
        for layer in range(self.layers):
            self.h[layer][...] = h[layer]
        if self.cell == "lstm":
            cs = hs[1].detach().to(torch.float32).cpu().numpy()
            for layer in range(self.layers):
                self.c[layer][...] = cs[layer]

    def get_state(self) -> Hidden:
        """The state in CharRNN's format (a copy)."""
        h = torch.from_numpy(np.stack(self.h))  # (N, B, H)
        if self.cell == "lstm":
            return hidden_from_tensors("lstm", [h, torch.from_numpy(np.stack(self.c))])
        return h

    # -- one step ---------------------------------------------------------------------------

    def step(self, tokens: np.ndarray | int) -> np.ndarray:
        """Feed one token per stream ((B,) ints, or an int when B is 1); return the logits
        (B, V), in a buffer that the next step overwrites."""
        gi = self.table[tokens]  # (B, G*H) or (G*H,): a row view when ``tokens`` is an int
        cell = self._cell
        cell(0, gi)
        for layer in range(1, self.layers):
            np.dot(self.hx[layer - 1], self.wi[layer], out=self.gi)
            cell(layer, self.gi)
        np.dot(self.hx[-1], self.head, out=self.logits)
        return self.logits

    def _cell(self, layer: int, gi: np.ndarray) -> None:
        h, gh, pre = self.h[layer], self.gh, self.pre
        np.dot(self.hx[layer], self.wh[layer], out=gh)
        if self.cell == "lstm":
            c, tmp = self.c[layer], self.tmp
            sig, half, i, f = self._lstm
            o, g = self._lstm2
            np.add(gi, gh, out=pre)
            np.tanh(pre, out=pre)
            np.multiply(sig, half, out=sig)
            np.add(sig, half, out=sig)  # i, f, o = sigmoid(...); g = tanh(...)
            np.multiply(c, f, out=c)
            np.multiply(i, g, out=tmp)
            np.add(c, tmp, out=c)
            np.tanh(c, out=tmp)
            np.multiply(o, tmp, out=h)
        elif self.cell == "gru":
            tmp, d = self.tmp, self.tmp2
            rz, half, r, z, n, gi_rz, gi_n, gh_rz, gh_n = self._gru
            if gi is not self.gi:  # layer 0: a table row
                H = self.hidden_size
                gi_rz, gi_n = gi[..., : 2 * H], gi[..., 2 * H :]
            np.add(gi_rz, gh_rz, out=rz)
            np.tanh(rz, out=rz)
            np.multiply(rz, half, out=rz)
            np.add(rz, half, out=rz)  # r, z
            np.multiply(r, gh_n, out=tmp)
            np.add(tmp, gi_n, out=tmp)
            np.tanh(tmp, out=n)  # n
            np.subtract(h, n, out=d)
            np.multiply(d, z, out=d)
            np.add(n, d, out=h)  # h' = n + z * (h - n) = (1 - z) * n + z * h
        else:
            np.add(gi, gh, out=h)
            np.tanh(h, out=h)
