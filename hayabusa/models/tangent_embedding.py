"""DeepPot-SE embedding nets with their derivative dG/ds in Triton (GPU).

The input of an embedding net is the scalar s(r), so the derivative of its output G by s can
be carried forward with G through the layers (forward mode: t' = (1 − t²)·(x' W) for a layer
t = tanh(x W + b)). ``ops.tangent_contraction`` (whose CUDA kernel this is) then needs no
reverse pass through the net.
Hand-written because PyTorch runs each layer as several [slots, M] kernels (matmul, bias,
tanh, residual, the tangent's products), each a full pass over memory; here a layer is one
kernel (see DESIGN.md, performance).

The kernel takes DeePMD's embedding shape: widths w, 2w, 4w, …, each layer after the first
doubling its input, y = tanh(x W + b) + [x, x]. One launch per layer from the second, as a
tiled matmul of the layer's input (x and x' together) and weights, with the tanh, the
residual and the tangent's product in its epilogue; the first layer is computed from s inside
the second's launch. Only the tile's two accumulators stay in registers: a single kernel for
all layers kept every activation of a tile live and spilled (sm_90, Triton 3.6). Other shapes
take the PyTorch path (``ops.tangent_reference``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def kernel_supports(widths: list[int]) -> bool:
    """Whether the kernel takes embedding widths ``widths``: w, 2w, 4w, … (two layers or
    more), w > 2 (a first layer of width 1 or 2 has a residual from s, not handled here)."""
    return len(widths) >= 2 and widths[0] > 2 and \
        all(b == 2 * a for a, b in zip(widths, widths[1:], strict=False))


@triton.jit
def _tanh(x):
    """tanh from exp (libdevice's tanh does not run under the CPU interpreter the tests use);
    absolute error ~1 ulp of 1."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _input(x_ptr, dx_ptr, w1_ptr, b1_ptr, rows, cols, ok, K: tl.constexpr,
           FROM_S: tl.constexpr):
    """Input columns ``cols`` of ``rows``: (x, x') loaded, or for FROM_S the first layer
    tanh(s·w1 + b1) and its derivative, made from s [R] (``x_ptr``) on the fly."""
    if FROM_S:
        s = tl.load(x_ptr + rows, mask=rows >= 0, other=0.0)
        w1 = tl.load(w1_ptr + cols, mask=cols < K, other=0.0)
        x = _tanh(s[:, None] * w1[None, :] + tl.load(b1_ptr + cols, mask=cols < K,
                                                     other=0.0)[None, :])
        x = tl.where(ok, x, 0.0)
        dx = (1.0 - x * x) * w1[None, :]
    else:
        where = rows[:, None] * K + cols[None, :]
        x = tl.load(x_ptr + where, mask=ok, other=0.0)
        dx = tl.load(dx_ptr + where, mask=ok, other=0.0)
    return x, dx


@triton.jit
def _accumulate(acc, dacc, k0, x_ptr, dx_ptr, w1_ptr, b1_ptr, w_ptr, rows_in, live_row, cols,
                live_col, K: tl.constexpr, FROM_S: tl.constexpr, BK: tl.constexpr):
    """acc += x[:, k0:k0+BK] W[k0:k0+BK], dacc += x'[:, k0:k0+BK] W[k0:k0+BK]."""
    N: tl.constexpr = 2 * K
    ks = k0 + tl.arange(0, BK)
    x, dx = _input(x_ptr, dx_ptr, w1_ptr, b1_ptr, rows_in, ks,
                   live_row[:, None] & (ks < K)[None, :], K, FROM_S)
    w = tl.load(w_ptr + ks[:, None] * N + cols[None, :],
                mask=(ks < K)[:, None] & live_col[None, :], other=0.0)
    acc += tl.dot(x, w, input_precision="ieee")
    dacc += tl.dot(dx, w, input_precision="ieee")
    return acc, dacc


@triton.jit
def doubling_layer_kernel(x_ptr, dx_ptr, w1_ptr, b1_ptr, w_ptr, b_ptr, y_ptr, dy_ptr, n_rows,
                          K: tl.constexpr, KP: tl.constexpr, FROM_S: tl.constexpr,
                          BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                          STAGES: tl.constexpr):
    """A layer that doubles its input's width, with its tangent, as a tiled matmul:
    y = tanh(x W + b) + [x, x], y' = (1 − tanh²)·(x' W) + [x', x'] for x, x' [R, K] →
    y, y' [R, 2K]. ``w_ptr``: W [K, 2K] (row-major), ``b_ptr``: b [2K]. The inputs stream
    through in K-steps of BK, so only the two accumulators stay live: an unrolled loop for
    STAGES = 0, else a loop software-pipelined over STAGES stages. FROM_S: the input is the
    first layer (w1, b1 [K]) of s [R], computed here instead of loaded."""
    N: tl.constexpr = 2 * K
    # The column tiles of a row tile are neighbouring programs, so its inputs are read from
    # memory once and then from L2 (a 2D grid with rows on axis 0 read them once per column
    # tile: the inputs of all rows do not fit in L2).
    COL_TILES: tl.constexpr = (N + BN - 1) // BN
    pid = tl.program_id(0)
    first_row = (pid // COL_TILES).to(tl.int64) * BM
    # Pointers start at the tile's first row (64-bit), offsets within the tile are 32-bit.
    x_ptr += first_row if FROM_S else first_row * K
    dx_ptr += first_row * K
    y_ptr += first_row * N
    dy_ptr += first_row * N
    rows = tl.arange(0, BM)
    cols = (pid % COL_TILES) * BN + tl.arange(0, BN)
    live_row = rows < n_rows - first_row
    live_col = cols < N
    acc = tl.zeros([BM, BN], dtype=y_ptr.dtype.element_ty)
    dacc = tl.zeros([BM, BN], dtype=y_ptr.dtype.element_ty)
    rows_in = tl.where(live_row, rows, -1)
    if STAGES == 0:
        for k0 in tl.static_range(0, KP, BK):
            acc, dacc = _accumulate(acc, dacc, k0, x_ptr, dx_ptr, w1_ptr, b1_ptr, w_ptr,
                                    rows_in, live_row, cols, live_col, K, FROM_S, BK)
    else:
        for k0 in tl.range(0, KP, BK, num_stages=STAGES):
            acc, dacc = _accumulate(acc, dacc, k0, x_ptr, dx_ptr, w1_ptr, b1_ptr, w_ptr,
                                    rows_in, live_row, cols, live_col, K, FROM_S, BK)
    y = _tanh(acc + tl.load(b_ptr + cols, mask=live_col, other=0.0)[None, :])
    dy = (1.0 - y * y) * dacc
    ok = live_row[:, None] & live_col[None, :]
    x, dx = _input(x_ptr, dx_ptr, w1_ptr, b1_ptr, rows_in, cols % K, ok, K, FROM_S)
    out = rows[:, None] * N + cols[None, :]
    tl.store(y_ptr + out, y + x, mask=ok)
    tl.store(dy_ptr + out, dy + dx, mask=ok)


# Tile shape per dtype, the fastest on an H200 of those `bench/profile_model.py --tile-shapes`
# tries (878,080 slots; layer 2 from s, K = 25 / layer 3, K = 50; commit b0aa1fb): float64
# BM 16, BN 64, 2 warps, pipelined over 2 stages 1.053 / 1.479 ms (the unrolled 32 × 32 shape
# before: 1.343 / 1.858 ms); float32 BM 32, BN 64, 4 warps, unrolled 0.302 / 0.920 ms (64 × 64,
# 8 warps: 0.336 / 1.016 ms). Not autotuned: with four shapes autotuned, `hayabusa bench model`
# on a fresh machine (nothing compiled yet) passed 240 s (66444ec).
SHAPES = {torch.float64: {"BM": 16, "BN": 64, "BK": 16, "STAGES": 2, "num_warps": 2},
          torch.float32: {"BM": 32, "BN": 64, "BK": 16, "STAGES": 0, "num_warps": 4}}


def embedding_with_tangent(s: torch.Tensor, weights: list[torch.Tensor],
                           biases: list[torch.Tensor]):
    """(G, dG/ds) [*s.shape, M] of an embedding net with ``nn.Linear`` weights [out, in] and
    biases per layer (widths w, 2w, 4w, …; see ``kernel_supports``), in the weights' dtype."""
    dtype = weights[0].dtype
    x = s.reshape(-1).to(dtype).contiguous()
    dx = x  # not read while FROM_S
    n = x.numel()
    shape = SHAPES[dtype]
    w1, b1 = weights[0][:, 0].contiguous(), biases[0].contiguous()
    for layer, (w, b) in enumerate(zip(weights[1:], biases[1:], strict=True)):
        k = w.shape[1]
        y = torch.empty(n, 2 * k, dtype=dtype, device=x.device)
        dy = torch.empty_like(y)
        if n:
            grid = (triton.cdiv(n, shape["BM"]) * triton.cdiv(2 * k, shape["BN"]),)
            doubling_layer_kernel[grid](x, dx, w1, b1, w.T.contiguous(), b.contiguous(), y, dy,
                                        n, K=k, KP=max(16, triton.next_power_of_2(k)),
                                        FROM_S=layer == 0, **shape)
        x, dx = y, dy
    return x.view(*s.shape, -1), dx.view(*s.shape, -1)
