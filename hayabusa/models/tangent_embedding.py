"""DeepPot-SE embedding nets with their derivative dG/ds in one Triton kernel (GPU).

The input of an embedding net is the scalar s(r), so the derivative of its output G by s can
be carried forward with G through the layers (forward mode: t' = (1 − t²)·(x' W) for a layer
t = tanh(x W + b)). The kernel maps a tile of slots' s to G and G' = dG/ds and writes both;
``deeppot.TangentContraction`` then needs no reverse pass through the net. Hand-written
because PyTorch runs each layer as several [slots, M] kernels (matmul, bias, tanh, residual,
the tangent's products), each a full pass over memory, where this kernel keeps a tile's
activations in registers (see DESIGN.md, performance).

The kernel takes DeePMD's embedding shape: widths w, 2w, 4w (one to three layers), each layer
after the first doubling its input, y = tanh(x W + b) + [x, x]. Activations are kept as
column chunks of w (padded to P, a power of two ≥ 16, for tl.dot): the residual [x, x] then
adds the same input chunk to two output chunks, and no tensor is reshaped or sliced in the
kernel. Other shapes take the PyTorch path (``ResidualMLP.forward_with_tangent``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def kernel_supports(widths: list[int]) -> bool:
    """Whether the kernel takes embedding widths ``widths``: w, 2w, 4w (1–3 layers), w > 2 (a
    first layer of width 1 or 2 has a residual from s, which the kernel does not add)."""
    return 1 <= len(widths) <= 3 and widths[0] > 2 and \
        all(b == 2 * a for a, b in zip(widths, widths[1:], strict=False))


class EmbeddingWeights:
    """The embedding nets of all neighbour types as padded chunk blocks for the kernel.

    ``tensors``: w1, b1 [T, P]; w2 [T, 2, P, P] (input → output chunk j); b2 [T, 2, P];
    w3 [T, 4, 2, P, P] (input chunk i → output chunk c at [t, c, i]); b3 [T, 4, P]. Absent
    layers are zeros the kernel does not read."""

    def __init__(self, nets, dtype: torch.dtype):
        widths = [layer.out_features for layer in nets[0].layers]
        if not kernel_supports(widths):
            raise ValueError(f"tangent embedding kernel: widths {widths} are not w, 2w, 4w")
        w = widths[0]
        p = max(16, triton.next_power_of_2(w))
        self.width, self.padded, self.n_layers = w, p, len(widths)
        self.n_columns = widths[-1]
        n_types = len(nets)
        device = nets[0].layers[0].weight.device
        shapes = [(n_types, p), (n_types, p), (n_types, 2, p, p), (n_types, 2, p),
                  (n_types, 4, 2, p, p), (n_types, 4, p)]
        w1, b1, w2, b2, w3, b3 = (torch.zeros(s, dtype=dtype, device=device) for s in shapes)
        for t, net in enumerate(nets):
            layers = [(layer.weight.detach().to(dtype).T, layer.bias.detach().to(dtype))
                      for layer in net.layers]  # [in, out], [out]
            w1[t, :w], b1[t, :w] = layers[0][0][0], layers[0][1]
            if len(layers) >= 2:
                for j in range(2):
                    w2[t, j, :w, :w] = layers[1][0][:, j * w:(j + 1) * w]
                    b2[t, j, :w] = layers[1][1][j * w:(j + 1) * w]
            if len(layers) == 3:
                for c in range(4):
                    b3[t, c, :w] = layers[2][1][c * w:(c + 1) * w]
                    for i in range(2):
                        w3[t, c, i, :w, :w] = layers[2][0][i * w:(i + 1) * w, c * w:(c + 1) * w]
        self.tensors = [w1, b1, w2, b2, w3, b3]


@triton.jit
def _tanh(x):
    """tanh from exp (libdevice's tanh does not run under the CPU interpreter the tests use);
    absolute error ~1 ulp of 1."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _block(ptr, index, P: tl.constexpr):
    """The [P, P] weight block number ``index``."""
    return tl.load(ptr + index * P * P + tl.arange(0, P)[:, None] * P + tl.arange(0, P)[None, :])


@triton.jit
def _vector(ptr, index, P: tl.constexpr):
    return tl.load(ptr + index * P + tl.arange(0, P))


@triton.jit
def _store_chunk(g_ptr, dg_ptr, g, dg, rows, live, chunk, M: tl.constexpr, W: tl.constexpr,
                 P: tl.constexpr):
    """Columns [chunk·W, (chunk+1)·W) of G and G' [R, M]."""
    pos = tl.arange(0, P)
    where = rows[:, None] * M + chunk * W + pos[None, :]
    ok = live[:, None] & (pos < W)[None, :]
    tl.store(g_ptr + where, g, mask=ok)
    tl.store(dg_ptr + where, dg, mask=ok)


@triton.jit
def tangent_kernel(s_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, g_ptr, dg_ptr,
                   n_rows, t, LAYERS: tl.constexpr, W: tl.constexpr, P: tl.constexpr,
                   KT: tl.constexpr):
    """Rows [KT·p, KT·(p+1)) of s [R] → G and dG/ds [R, W·2^(LAYERS−1)] by type t's net."""
    M: tl.constexpr = W * (1 << (LAYERS - 1))
    rows = tl.program_id(0).to(tl.int64) * KT + tl.arange(0, KT)
    live = rows < n_rows
    s = tl.load(s_ptr + rows, mask=live, other=0.0)
    w1 = _vector(w1_ptr, t, P)
    x1 = _tanh(s[:, None] * w1[None, :] + _vector(b1_ptr, t, P)[None, :])
    dx1 = (1.0 - x1 * x1) * w1[None, :]
    if LAYERS == 1:
        _store_chunk(g_ptr, dg_ptr, x1, dx1, rows, live, 0, M, W, P)
    else:
        # layer 2: output chunk j = tanh(x1 W2_j + b2_j) + x1
        w2 = _block(w2_ptr, 2 * t, P)
        x20 = _tanh(tl.dot(x1, w2, input_precision="ieee") + _vector(b2_ptr, 2 * t, P)[None, :])
        dx20 = (1.0 - x20 * x20) * tl.dot(dx1, w2, input_precision="ieee") + dx1
        x20 += x1
        w2 = _block(w2_ptr, 2 * t + 1, P)
        x21 = _tanh(tl.dot(x1, w2, input_precision="ieee") +
                    _vector(b2_ptr, 2 * t + 1, P)[None, :])
        dx21 = (1.0 - x21 * x21) * tl.dot(dx1, w2, input_precision="ieee") + dx1
        x21 += x1
        if LAYERS == 2:
            _store_chunk(g_ptr, dg_ptr, x20, dx20, rows, live, 0, M, W, P)
            _store_chunk(g_ptr, dg_ptr, x21, dx21, rows, live, 1, M, W, P)
        else:
            # layer 3: output chunk c = tanh(x20 W3_c0 + x21 W3_c1 + b3_c) + x2_(c mod 2)
            for c in tl.static_range(4):
                wa = _block(w3_ptr, (4 * t + c) * 2, P)
                wb = _block(w3_ptr, (4 * t + c) * 2 + 1, P)
                x3 = _tanh(tl.dot(x20, wa, input_precision="ieee") +
                           tl.dot(x21, wb, input_precision="ieee") +
                           _vector(b3_ptr, 4 * t + c, P)[None, :])
                dx3 = (1.0 - x3 * x3) * (tl.dot(dx20, wa, input_precision="ieee") +
                                         tl.dot(dx21, wb, input_precision="ieee"))
                if c % 2 == 0:
                    _store_chunk(g_ptr, dg_ptr, x3 + x20, dx3 + dx20, rows, live, c, M, W, P)
                else:
                    _store_chunk(g_ptr, dg_ptr, x3 + x21, dx3 + dx21, rows, live, c, M, W, P)


FIXED = {"KT": 32, "num_warps": 4}  # with HAYABUSA_AUTOTUNE=0
CONFIGS = [triton.Config({"KT": kt}, num_warps=w)
           for kt, w in ((32, 2), (32, 4), (64, 4), (64, 8), (128, 8))]
_tangent_tuned = triton.autotune(configs=CONFIGS, key=["LAYERS", "W", "P"])(tangent_kernel)


def embedding_with_tangent(s: torch.Tensor, t: int, weights: EmbeddingWeights):
    """(G, dG/ds) [*s.shape, M] of type t's embedding net (``weights``' dtype)."""
    from ..neighbors.triton_build import autotune

    flat = s.reshape(-1).to(weights.tensors[0].dtype).contiguous()
    g = torch.empty(*s.shape, weights.n_columns, dtype=flat.dtype, device=s.device)
    dg = torch.empty_like(g)
    n = flat.numel()
    if n == 0:
        return g, dg
    args = (flat, *weights.tensors, g, dg, n, t)
    shape = {"LAYERS": weights.n_layers, "W": weights.width, "P": weights.padded}
    if autotune():
        _tangent_tuned[lambda meta: (triton.cdiv(n, meta["KT"]),)](*args, **shape)
    else:
        tangent_kernel[(triton.cdiv(n, FIXED["KT"]),)](*args, **shape, **FIXED)
    return g, dg
