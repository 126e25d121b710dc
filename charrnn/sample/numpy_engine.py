"""Fast CPU stepping of a trained CharRNN, one character at a time, for sampling.

``CharRNN.forward`` costs tens of microseconds of framework overhead per call, far more than the
arithmetic of one step. :class:`FastRNN` copies the weights once into NumPy arrays laid out for
the step and then runs every step as a fixed sequence of BLAS and ufunc calls that write into
preallocated buffers: no allocation, no autograd, no dispatch per step. It gives the same logits
as ``CharRNN.forward`` (to float32 rounding). It needs NumPy only: it is built from an
:class:`~charrnn.model.arrays.ArrayModel` (a checkpoint read without torch), or from a torch
``CharRNN``, whose weights are copied into one first.

Dimension names: B streams, H hidden size, G gates (LSTM 4, GRU 3, RNN 1), V vocabulary size.

How the weights are laid out (PyTorch's own formulas, rearranged, never approximated)::

    state   S = [h_0, 1, h_1, 1, ...]  (B, N*(H+1)): every layer's state followed by a constant 1,
            so that a bias is one more row of its matrix and rides along in the product
    layer 0 input:  table[v] = embedding[v] @ W_ih0^T + b_ih0   (V, G*H): a row lookup
    products, time-pipelined: layer k's new state [h_k, 1] is needed by layer k+1 now and by
            layer k itself at the next step, so one product right after layer k's cell gives both
                out[k]   = [h_k, 1] @ [W_ih(k+1)^T | W_hh(k)^T; b_ih(k+1) | b_hh(k)]
                out[N-1] = [h_last, 1] @ [W_head^T * s | W_hh(N-1)^T; b_head * s | b_hh(N-1)]
            i.e. [gi(k+1) | gh(k) for the next step] and [logits | gh(N-1) for the next step]:
            N products per step instead of 2N+1 (refresh, run after a change of state,
            computes the first gh's); one stream, matrix above ONE_PRODUCT_MAX: two products
            into out[k]'s halves
    sigmoid gates:  rows scaled by 1/2 (exact in binary), so one tanh serves every gate:
                    sigmoid(x) = 0.5 + 0.5 * tanh(x / 2)
    LSTM rows:      PyTorch's i, f, g, o reordered to i, f, o, g (the sigmoids side by side)
    GRU:            r, z, n with n = tanh(gi_n + r * gh_n), h' = n + z * (h - n)
    output layer:   scale s and optionally one column (<UNK>) forced to -inf: the sampler
                    folds 1 / temperature and the mask in

``FastRNN.__init__`` builds these once: :func:`_state_buffers` (S and its views),
:func:`_arranged_weights` (the table and every layer's matrices; gate rows by :func:`_gate_rows`,
the output layer by :func:`_head_weights`), :func:`_merged_matrices` (the matrices of the
products, read-only) and :func:`_product_plan` (the buffers ``out`` and the products that fill
them). :meth:`FastRNN.sharing` builds another FastRNN over the same weights (the server's blocks
of streams).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..model.arrays import ArrayModel, supports
from ..model.config import ModelConfig

if TYPE_CHECKING:
    from ..model.rnn import CharRNN

__all__ = ["ONE_PRODUCT_MAX", "FastRNN", "supports"]

F32 = np.float32

# One stream: a merged product larger than this (elements of its matrix) is run as two products
# into the two halves of its output. Products up to a 257 x 1536 matrix (the 2x256 GRU) were
# measured ~10% faster merged; larger ones (e.g. 257 x 2048 for a 2x256 LSTM) no faster, and
# OpenBLAS may spread big matrix-vector products over threads, slow on busy cores.
ONE_PRODUCT_MAX = 400_000


def _vector_views(batch: int) -> Callable[[np.ndarray], np.ndarray]:
    """For one stream, buffers are used as 1-D views (ufuncs on vectors cost less per call)."""
    if batch == 1:
        return lambda a: a[0]
    return lambda a: a


def _as_arrays(model: ArrayModel | CharRNN) -> ArrayModel:
    if isinstance(model, ArrayModel):
        return model
    if not supports(model):
        raise ValueError("FastRNN needs a float32 model on the CPU")
    return ArrayModel.from_torch(model)


def _state_buffers(
    batch: int, layers: int, hidden: int, cell: str
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The state S = [h_0, 1, h_1, 1, ...] (B, N*(H+1)) at zero, its views h_k (B, H) and
    [h_k, 1] (B, H+1) per layer, and the LSTM cell states (B, H) per layer (none for others):
    (S, h, c, hx)."""
    B, N, H = batch, layers, hidden
    H1 = H + 1
    S = np.zeros((B, N * H1), F32)
    S[:, H::H1] = 1.0
    h = [S[:, k * H1 : k * H1 + H] for k in range(N)]  # views (B, H)
    c = [np.zeros((B, H), F32) for _ in range(N)] if cell == "lstm" else []
    hx = [S[:, k * H1 : (k + 1) * H1] for k in range(N)]  # [h_k, 1]
    return S, h, c, hx


def _gate_rows(cell: str, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Row permutation (G*H,) and per-row scale (G*H,) of the gate blocks, applied to W_ih, W_hh
    and both biases: LSTM rows as i, f, o, g; the sigmoid gates' rows times 1/2.

    Sigmoids are computed as 0.5 + 0.5 * tanh(x / 2) on halved rows: the fewest NumPy calls, and
    NumPy's SIMD tanh costs about half what ``torch.sigmoid`` does per element (measured on
    (64, 768) float32: 34 us against 66 us).
    """
    H = hidden
    if cell == "lstm":
        order, halve = [0, 1, 3, 2], [True, True, True, False]  # i f o g, sigmoids halved
    elif cell == "gru":
        order, halve = [0, 1, 2], [True, True, False]  # r z n
    else:
        order, halve = [0], [False]
    scale = np.concatenate([np.full(H, 0.5 if s else 1.0, dtype=F32) for s in halve])
    rows = np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])
    return rows, scale


class _Weights(NamedTuple):
    """A model's weights as the step uses them (see the module docstring)."""

    table: np.ndarray  # (V, G*H): layer 0's input projection of every token, bias included
    wh: list[np.ndarray]  # per layer k: (H+1, G*H), W_hh(k)^T with b_hh(k) as last row
    wi: list[np.ndarray]  # per layer k >= 1: (H+1, G*H), W_ih(k)^T with b_ih(k) as last row
    head: np.ndarray  # (H+1, V): the output layer, scaled and masked (_head_weights)


def _arranged_weights(model: ArrayModel, head_scale: float, mask: int | None) -> _Weights:
    """The weights of ``model`` with the gate rows arranged by :func:`_gate_rows`."""
    c, w = model.config, model.weight
    rows, scale = _gate_rows(c.cell, c.hidden)

    def arrange(name: str) -> np.ndarray:
        a = np.asarray(w(name), dtype=F32)[rows]
        return a * (scale[:, None] if a.ndim == 2 else scale)

    def with_bias(k: int, kind: str) -> np.ndarray:
        """(in+1, G*H): W^T with the bias as last row."""
        return np.vstack([arrange(f"rnn.weight_{kind}_l{k}").T, arrange(f"rnn.bias_{kind}_l{k}")])

    emb = np.asarray(w("embedding.weight"), dtype=np.float64)  # (V, E)
    w_ih0 = arrange("rnn.weight_ih_l0").astype(np.float64)  # (G*H, E)
    table = np.ascontiguousarray((emb @ w_ih0.T + arrange("rnn.bias_ih_l0")).astype(F32))
    wh = [with_bias(k, "hh") for k in range(c.layers)]
    wi = [with_bias(k, "ih") for k in range(1, c.layers)]
    return _Weights(table, wh, wi, _head_weights(model, head_scale, mask))


def _head_weights(model: ArrayModel, head_scale: float, mask: int | None) -> np.ndarray:
    """(H+1, V): [W_head^T; b_head] * head_scale, with column ``mask`` (if any) all 0 and a
    bias of -inf."""
    w, b = model.weight("head.weight"), model.weight("head.bias")
    head = np.vstack([np.asarray(w, F32).T, np.asarray(b, F32)[None, :]]) * F32(head_scale)
    if mask is not None:
        head[:, mask] = 0.0
        head[-1, mask] = -np.inf
    return head.astype(F32)


Products = list[tuple[np.ndarray, np.ndarray]]  # (w, out) pairs: x @ w into out
Matrices = list[list[np.ndarray]]  # per layer: the matrices of its products (_merged_matrices)


def _merged_matrices(batch: int, weights: _Weights) -> Matrices:
    """Per layer k, the matrices of its time-pipelined products (read-only, shareable).

    Layer k's new state serves twice, as the input of layer k+1 now and as the recurrent input
    of layer k at the next step, so one product [h_k, 1] @ [W_in(k+1) | W_hh(k)] gives both (the
    output layer plays W_in(N)). One stream with a matrix above :data:`ONE_PRODUCT_MAX`: the two
    halves as two matrices."""
    wh = weights.wh
    n = len(wh)
    out: Matrices = []
    for k in range(n):
        nxt = weights.wi[k] if k + 1 < n else weights.head
        whole = np.hstack([nxt, wh[k]])
        if batch == 1 and whole.size > ONE_PRODUCT_MAX:
            mats = [np.ascontiguousarray(nxt), np.ascontiguousarray(wh[k])]
        else:
            mats = [np.ascontiguousarray(whole)]
        for m in mats:
            m.flags.writeable = False  # shared by every FastRNN built with FastRNN.sharing
        out.append(mats)
    return out


def _product_plan(batch: int, matrices: Matrices) -> tuple[list[np.ndarray], list[Products]]:
    """Per layer, its output buffer and its (w, out) products over ``matrices``:
      out[k] = [gi(k+1) | gh(k)] (B, 2*G*H);   out[N-1] = [logits | gh(N-1)] (B, V + G*H)
    A step reads gh(k) left in out[k] by the step before (:meth:`FastRNN.refresh` computes it).
    """
    outs: list[np.ndarray] = []
    products: list[Products] = []
    for mats in matrices:
        o = np.zeros((batch, sum(m.shape[1] for m in mats)), F32)
        if len(mats) == 2:  # one stream: two products into the two halves of the buffer
            split = mats[0].shape[1]
            prods = [(mats[0], o[0, :split]), (mats[1], o[0, split:])]
        else:
            prods = [(mats[0], o[0] if batch == 1 else o)]
        outs.append(o)
        products.append(prods)
    return outs, products


class FastRNN:
    """A model's weights as NumPy arrays, with the state of ``batch`` streams.

    ``model`` is an :class:`ArrayModel`, or a float32 ``CharRNN`` on the CPU (its weights are
    copied). ``step(tokens)`` feeds one token per stream ((B,) ints, or an int when B is 1) and
    returns the logits (B, V) in a buffer that the next step overwrites. ``head_scale``
    multiplies the logits and ``mask`` (a token id) gets a logit of -inf; the defaults give the
    model's logits. Products are NumPy's (its BLAS picks the threads: ``OPENBLAS_NUM_THREADS``).

    The state starts at zero and lives in ``h`` (per layer, a (B, H) view) and, for an LSTM,
    ``c`` (per layer, (B, H)); the steps update them in place. After writing them directly, call
    :meth:`refresh`.
    """

    def __init__(
        self,
        model: ArrayModel | CharRNN,
        batch: int = 1,
        head_scale: float = 1.0,
        mask: int | None = None,
    ) -> None:
        arrays = _as_arrays(model)
        weights = _arranged_weights(arrays, head_scale, mask)
        self._build(arrays.config, batch, weights.table, _merged_matrices(batch, weights))

    @classmethod
    def sharing(cls, other: FastRNN) -> FastRNN:
        """A new FastRNN of ``other``'s batch size, with its own state (at zero) and buffers but
        ``other``'s weights (the same read-only arrays, not copies): many blocks of streams
        cost the memory of one set of weights, and the products read one copy from cache. The
        logits are exactly those of a FastRNN built from the model."""
        new = cls.__new__(cls)
        new._build(other.config, other.batch, other.table, other.matrices)
        return new

    def _build(self, c: ModelConfig, batch: int, table: np.ndarray, matrices: Matrices) -> None:
        self.config = c
        self.cell = c.cell
        self.layers = c.layers
        self.hidden_size = c.hidden
        self.batch = batch
        self.vocab_size = c.vocab_size
        self.S, self.h, self.c, self.hx = _state_buffers(batch, c.layers, c.hidden, c.cell)
        self.table = table
        self.matrices = matrices
        self.out, self.products = _product_plan(batch, matrices)
        N, GH = self.layers, self.table.shape[1]
        self.logits = self.out[-1][:, : self.vocab_size]  # (B, V), a view of the last buffer
        self.gh = [self.out[k][:, -GH:] for k in range(N)]  # (B, G*H) views
        self.gi = [self.out[k - 1][:, :GH] for k in range(1, N)]  # input of layer k >= 1
        self._dot = np.dot
        self.refresh()
        self.step: Callable[[np.ndarray | int], np.ndarray] = {
            "lstm": self._lstm_step,
            "gru": self._gru_step,
            "rnn": self._rnn_step,
        }[c.cell]()

    # -- state ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute every layer's products from the current state (after a change of state)."""
        dot = self._dot
        for x, prods in zip(self.hx, self.products, strict=True):
            for w, o in prods:
                dot(x[0] if self.batch == 1 else x, w, out=o)

    def _layers(self, v: Callable[[np.ndarray], np.ndarray]) -> list[tuple]:  # type: ignore[type-arg]
        """Per layer, as the step closures use them: (gi or None for layer 0, gh, h, c or None,
        [h, 1], products)."""
        out = []
        for k in range(self.layers):
            gi = v(self.gi[k - 1]) if k else None
            c = v(self.c[k]) if self.c else None
            x = v(self.hx[k])
            out.append((gi, v(self.gh[k]), v(self.h[k]), c, x, self.products[k]))
        return out

    # -- the steps: closures over local names, one per cell type ------------------------------
    # Each layer: its cell from gi (table row for layer 0) and gh (left by the previous step),
    # then the products of its new state (next layer's gi and its own next gh, or the logits).

    def _gru_step(self) -> Callable[[np.ndarray | int], np.ndarray]:
        H, B = self.hidden_size, self.batch
        v = _vector_views(B)
        pre, tmp, d = (
            v(np.empty((B, 2 * H), F32)),
            v(np.empty((B, H), F32)),
            v(np.empty((B, H), F32)),
        )
        half = v(np.full((B, 2 * H), 0.5, F32))  # arrays are cheaper operands than Python floats
        r, z = pre[..., :H], pre[..., H:]
        t_rz, t_n = self.table[:, : 2 * H], self.table[:, 2 * H :]
        (_, gh0, h0, _, x0, prods0), *rest = self._layers(v)
        gh0_rz, gh0_n = gh0[..., : 2 * H], gh0[..., 2 * H :]
        upper = [
            (gi[..., : 2 * H], gi[..., 2 * H :], gh[..., : 2 * H], gh[..., 2 * H :], h, x, prods)
            for gi, gh, h, _, x, prods in rest
        ]
        logits = self.logits
        dot, add, sub, mul, tanh = self._dot, np.add, np.subtract, np.multiply, np.tanh

        def cell(
            a_rz: np.ndarray, a_n: np.ndarray, g_rz: np.ndarray, g_n: np.ndarray, h: np.ndarray
        ) -> None:
            add(a_rz, g_rz, out=pre)
            tanh(pre, out=pre)
            mul(pre, half, out=pre)
            add(pre, half, out=pre)  # r, z = sigmoid(...)
            mul(r, g_n, out=tmp)
            add(tmp, a_n, out=tmp)
            tanh(tmp, out=tmp)  # n
            sub(h, tmp, out=d)
            mul(d, z, out=d)
            add(tmp, d, out=h)  # h' = n + z * (h - n) = (1 - z) * n + z * h

        def step(tokens: np.ndarray | int) -> np.ndarray:
            # Table rows: (B, 2H) and (B, H), or views (2H,) and (H,) when ``tokens`` is an int.
            cell(t_rz[tokens], t_n[tokens], gh0_rz, gh0_n, h0)
            for w, o in prods0:
                dot(x0, w, out=o)
            for a_rz, a_n, g_rz, g_n, h, x, prods in upper:
                cell(a_rz, a_n, g_rz, g_n, h)
                for w, o in prods:
                    dot(x, w, out=o)
            return logits

        return step

    def _lstm_step(self) -> Callable[[np.ndarray | int], np.ndarray]:
        H, B = self.hidden_size, self.batch
        v = _vector_views(B)
        pre, tmp = v(np.empty((B, 4 * H), F32)), v(np.empty((B, H), F32))
        half = v(np.full((B, 3 * H), 0.5, F32))
        sig, i, f = pre[..., : 3 * H], pre[..., :H], pre[..., H : 2 * H]
        o, g = pre[..., 2 * H : 3 * H], pre[..., 3 * H :]
        table, logits = self.table, self.logits
        (_, gh0, h0, c0, x0, prods0), *upper = self._layers(v)
        dot, add, mul, tanh = self._dot, np.add, np.multiply, np.tanh

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
            add(table[tokens], gh0, out=pre)
            cell(h0, c0)
            for w, out in prods0:
                dot(x0, w, out=out)
            for gi, gh, h, c, x, prods in upper:
                add(gi, gh, out=pre)
                cell(h, c)
                for w, out in prods:
                    dot(x, w, out=out)
            return logits

        return step

    def _rnn_step(self) -> Callable[[np.ndarray | int], np.ndarray]:
        v = _vector_views(self.batch)
        table, logits = self.table, self.logits
        (_, gh0, h0, _, x0, prods0), *upper = self._layers(v)
        dot, add, tanh = self._dot, np.add, np.tanh

        def step(tokens: np.ndarray | int) -> np.ndarray:
            add(table[tokens], gh0, out=h0)
            tanh(h0, out=h0)
            for w, o in prods0:
                dot(x0, w, out=o)
            for gi, gh, h, _, x, prods in upper:
                add(gi, gh, out=h)
                tanh(h, out=h)
                for w, o in prods:
                    dot(x, w, out=o)
            return logits

        return step
