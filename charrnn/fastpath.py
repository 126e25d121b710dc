"""Fast CPU stepping of a trained CharRNN, one character at a time, for sampling.

``CharRNN.forward`` costs tens of microseconds of framework overhead per call, far more than the
arithmetic of one step. :class:`FastRNN` copies the weights once into NumPy arrays laid out for
the step and then runs every step as a fixed sequence of BLAS and ufunc calls that write into
preallocated buffers: no allocation, no autograd, no dispatch per step. It gives the same logits
as ``CharRNN.forward`` (to float32 rounding).

Dimension names: B streams, H hidden size, G gates (LSTM 4, GRU 3, RNN 1), V vocabulary size.

How the weights are laid out (PyTorch's own formulas, rearranged, never approximated)::

    state   S = [h_0, 1, h_1, 1, ...]  (B, N*(H+1)): every layer's state followed by a constant 1,
            so that a bias is one more row of its matrix and rides along in the product
    layer 0 input:  table[v] = embedding[v] @ W_ih0^T + b_ih0   (V, G*H): a row lookup
    layer 0:        gh = [h_0, 1] @ [W_hh0^T; b_hh0]
    layer l >= 1:   gi = [h_{l-1}, 1] @ [W_ih^T; b_ih]     gh = [h_l, 1] @ [W_hh^T; b_hh]
    sigmoid gates:  rows scaled by 1/2 (exact in binary), so one tanh serves every gate:
                    sigmoid(x) = 0.5 + 0.5 * tanh(x / 2)
    LSTM rows:      PyTorch's i, f, g, o reordered to i, f, o, g (the sigmoids side by side)
    GRU:            r, z, n with n = tanh(gi_n + r * gh_n), h' = n + z * (h - n)
    output layer:   logits = [h_last, 1] @ [W^T; b] * scale, optionally with one column
                    (<UNK>) forced to -inf: the sampler folds 1 / temperature and the mask in
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .model import CharRNN, Hidden, hidden_from_tensors

F32 = np.float32


def supports(model: CharRNN) -> bool:
    """Whether :class:`FastRNN` can run ``model``: float32 weights on the CPU."""
    w = model.head.weight
    return w.device.type == "cpu" and w.dtype == torch.float32


def _vector_views(batch: int) -> Callable[[np.ndarray], np.ndarray]:
    """For one stream, buffers are used as 1-D views (ufuncs on vectors cost less per call)."""
    if batch == 1:
        return lambda a: a[0]
    return lambda a: a


def _torch_product(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    torch.mm(torch.from_numpy(x), torch.from_numpy(w), out=torch.from_numpy(out))


def _product(batch: int) -> Callable[..., object]:
    """``f(x, w, out=...)``: x @ w into out. One stream: NumPy's matrix-vector product (least
    overhead). Several: torch's GEMM, which follows ``torch.set_num_threads`` (NumPy's BLAS
    picks its own thread count, and extra threads are very slow on busy cores)."""
    return np.dot if batch == 1 else _torch_product


def _np(t: torch.Tensor) -> np.ndarray:
    return np.array(t.detach().to(torch.float32).cpu().numpy(), dtype=F32, copy=True)


class FastRNN:
    """A CharRNN's weights as NumPy arrays, with the state of ``batch`` streams.

    ``step(tokens)`` feeds one token per stream ((B,) ints, or an int when B is 1) and returns
    the logits (B, V) in a buffer that the next step overwrites. ``head_scale`` multiplies the
    logits and ``mask`` (a token id) gets a logit of -inf; the defaults give the model's logits.
    """

    def __init__(
        self, model: CharRNN, batch: int = 1, head_scale: float = 1.0, mask: int | None = None
    ) -> None:
        if not supports(model):
            raise ValueError("FastRNN needs a float32 model on the CPU")
        c = model.config
        self.cell = c.cell
        self.layers = N = c.layers
        self.hidden_size = H = c.hidden
        self.batch = B = batch
        self.vocab_size = V = c.vocab_size
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

        def with_bias(w: torch.Tensor, b: torch.Tensor) -> np.ndarray:
            """(in+1, G*H): W^T with the bias as last row."""
            return np.vstack([arrange(w).T, arrange(b)[None, :]])

        H1 = H + 1
        self.S = np.zeros((B, N * H1), F32)
        self.S[:, H::H1] = 1.0
        self.h = [self.S[:, k * H1 : k * H1 + H] for k in range(N)]  # views (B, H)
        self.c = [np.zeros((B, H), F32) for _ in range(N)] if c.cell == "lstm" else []
        hx = [self.S[:, k * H1 : (k + 1) * H1] for k in range(N)]  # [h_k, 1]
        pair = [self.S[:, (k - 1) * H1 : (k + 1) * H1] for k in range(1, N)]  # [h_k-1, 1, h_k, 1]

        emb = _np(model.embedding.weight).astype(np.float64)  # (V, E)
        w_ih0 = arrange(rnn.weight_ih_l0).astype(np.float64)  # (G*H, E)
        self.table = np.ascontiguousarray((emb @ w_ih0.T + arrange(rnn.bias_ih_l0)).astype(F32))
        self.wh = [
            np.ascontiguousarray(
                with_bias(getattr(rnn, f"weight_hh_l{k}"), getattr(rnn, f"bias_hh_l{k}"))
            )
            for k in range(N)
        ]
        self.wi = [self.table] + [  # layer 0 reads the table instead
            np.ascontiguousarray(
                with_bias(getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"bias_ih_l{k}"))
            )
            for k in range(1, N)
        ]
        head = np.vstack([_np(model.head.weight).T, _np(model.head.bias)[None, :]]) * F32(
            head_scale
        )
        if mask is not None:
            head[:, mask] = 0.0
            head[-1, mask] = -np.inf
        self.head = np.ascontiguousarray(head.astype(F32))  # (H+1, V)
        self.logits = np.empty((B, V), F32)
        self.step: Callable[[np.ndarray | int], np.ndarray] = {
            "lstm": self._lstm_step,
            "gru": self._gru_step,
            "rnn": self._rnn_step,
        }[c.cell](hx, pair)

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

    # -- the steps: closures over local names, one per cell type ------------------------------

    def _gru_step(
        self, hx: list[np.ndarray], pair: list[np.ndarray]
    ) -> Callable[[np.ndarray | int], np.ndarray]:
        H, B = self.hidden_size, self.batch
        v = _vector_views(B)
        table, wi, wh, head, logits = self.table, self.wi, self.wh, self.head, v(self.logits)
        gi, gh, pre = (v(np.empty((B, 3 * H), F32)) for _ in range(3))
        tmp, d = v(np.empty((B, H), F32)), v(np.empty((B, H), F32))
        half = v(np.full((B, 2 * H), 0.5, F32))  # arrays are cheaper operands than Python floats
        rz, r, z, n = pre[..., : 2 * H], pre[..., :H], pre[..., H : 2 * H], pre[..., 2 * H :]
        gi_rz, gi_n = gi[..., : 2 * H], gi[..., 2 * H :]
        gh_rz, gh_n = gh[..., : 2 * H], gh[..., 2 * H :]
        t_rz, t_n = table[:, : 2 * H], table[:, 2 * H :]
        hs = [v(h) for h in self.h]
        hx = [v(x) for x in hx]
        last = hx[-1]
        upper = [(hx[k - 1], wi[k], hx[k], wh[k], hs[k]) for k in range(1, self.layers)]
        hx0, wh0, h0 = hx[0], wh[0], hs[0]
        self_logits = self.logits
        dot, add, sub, mul, tanh = _product(B), np.add, np.subtract, np.multiply, np.tanh

        def cell(a_rz: np.ndarray, a_n: np.ndarray, h: np.ndarray) -> None:
            add(a_rz, gh_rz, out=rz)
            tanh(rz, out=rz)
            mul(rz, half, out=rz)
            add(rz, half, out=rz)  # r, z = sigmoid(...)
            mul(r, gh_n, out=tmp)
            add(tmp, a_n, out=tmp)
            tanh(tmp, out=n)
            sub(h, n, out=d)
            mul(d, z, out=d)
            add(n, d, out=h)  # h' = n + z * (h - n) = (1 - z) * n + z * h

        def step(tokens: np.ndarray | int) -> np.ndarray:
            # Table rows: (B, 2H) and (B, H), or views (2H,) and (H,) when ``tokens`` is an int.
            dot(hx0, wh0, out=gh)
            cell(t_rz[tokens], t_n[tokens], h0)
            for x_in, w_in, x_h, w_h, h in upper:
                dot(x_in, w_in, out=gi)
                dot(x_h, w_h, out=gh)
                cell(gi_rz, gi_n, h)
            dot(last, head, out=logits)
            return self_logits

        return step

    def _lstm_step(
        self, hx: list[np.ndarray], pair: list[np.ndarray]
    ) -> Callable[[np.ndarray | int], np.ndarray]:
        H, B = self.hidden_size, self.batch
        v = _vector_views(B)
        table, head, logits, self_logits = self.table, self.head, v(self.logits), self.logits
        pre, gi, gh = (v(np.empty((B, 4 * H), F32)) for _ in range(3))
        tmp = v(np.empty((B, H), F32))
        half = v(np.full((B, 3 * H), 0.5, F32))
        sig, i, f = pre[..., : 3 * H], pre[..., :H], pre[..., H : 2 * H]
        o, g = pre[..., 2 * H : 3 * H], pre[..., 3 * H :]
        hx = [v(x) for x in hx]
        hs, cs = [v(h) for h in self.h], [v(c) for c in self.c]
        # Layers >= 1 as two products, not one over [h_k-1, 1, h_k, 1]: OpenBLAS runs matrices
        # this large on several threads, which is much slower when the cores are busy.
        upper = [
            (hx[k - 1], self.wi[k], hx[k], self.wh[k], hs[k], cs[k]) for k in range(1, self.layers)
        ]
        hx0, wh0, h0, c0, last = hx[0], self.wh[0], hs[0], cs[0], hx[-1]
        dot, add, mul, tanh = _product(B), np.add, np.multiply, np.tanh

        def cell(h: np.ndarray, c: np.ndarray) -> None:
            tanh(pre, out=pre)
            mul(sig, half, out=sig)
            add(sig, half, out=sig)  # i, f, o = sigmoid(...); g = tanh(...)
            mul(c, f, out=c)
            mul(i, g, out=tmp)
            add(c, tmp, out=c)
            tanh(c, out=tmp)
            mul(o, tmp, out=h)

        def step(tokens: np.ndarray | int) -> np.ndarray:
            dot(hx0, wh0, out=gh)
            add(table[tokens], gh, out=pre)
            cell(h0, c0)
            for x_in, w_in, x_h, w_h, h, c in upper:
                dot(x_in, w_in, out=gi)
                dot(x_h, w_h, out=gh)
                add(gi, gh, out=pre)
                cell(h, c)
            dot(last, head, out=logits)
            return self_logits

        return step

    def _rnn_step(
        self, hx: list[np.ndarray], pair: list[np.ndarray]
    ) -> Callable[[np.ndarray | int], np.ndarray]:
        table, head, logits = self.table, self.head, self.logits
        gh = np.empty((self.batch, self.hidden_size), F32)
        upper = [
            (pair[k - 1], np.ascontiguousarray(np.vstack([self.wi[k], self.wh[k]])), self.h[k])
            for k in range(1, self.layers)
        ]
        hx0, wh0, h0, last = hx[0], self.wh[0], self.h[0], hx[-1]
        dot, add, tanh = _product(self.batch), np.add, np.tanh

        def step(tokens: np.ndarray | int) -> np.ndarray:
            dot(hx0, wh0, out=gh)
            add(table[tokens], gh, out=h0)
            tanh(h0, out=h0)
            for x, w, h in upper:
                dot(x, w, out=gh)  # not into h: it is part of x
                tanh(gh, out=h)
            dot(last, head, out=logits)
            return logits

        return step
