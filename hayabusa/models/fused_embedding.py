"""DeepPot-SE embedding nets fused with the Gᵀ R̂ contraction in Triton (GPU hot path).

For each atom the kernel runs the embedding net of each neighbour type on that type's slots
within r_cut, tile by tile, and sums G_jᵀ R̂_j into T [M, 4] without writing G: the [N, K, M]
tensors of the PyTorch path (G, the tanh outputs autograd keeps, their gradients — about
0.7 GB each in float64 for 10⁴ atoms) never reach memory. The backward kernel recomputes the
net for each tile and returns ∂E/∂s and ∂E/∂R̂ per slot, from which PyTorch's autograd carries
on to the positions. No gradient flows to the weights: this path is for inference (MD, ASE);
training uses the PyTorch path. Hand-written because neither torch.compile nor a library
fuses a per-slot MLP with a neighbour reduction (see DESIGN.md, performance).

Layout: each layer's width is padded to a power of two ≥ 16 (tl.dot's smallest tile). A
layer that doubles its input's width (ResidualMLP adds [x, x]) keeps its input's padded
layout twice, so the residual is a join of two copies of the padded input; the host places
the weights to match (``EmbeddingWeights``) and picks the real columns of T at the end.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_LAYERS = 3


def _padded(width: int) -> int:
    return max(16, triton.next_power_of_2(width))


class EmbeddingWeights:
    """The embedding nets of all neighbour types as padded, stacked tensors for the kernels.

    ``w1``, ``b1``: [T, P1]; ``w{l}`` [T, P_{l-1}, P_l] and ``b{l}`` [T, P_l] for l = 2, 3
    (absent layers are 16-wide zeros); ``residual`` per layer: 0 none, 1 x + y, 2 [x, x] + y;
    ``columns`` [M] the padded column of each real output column."""

    def __init__(self, nets, dtype: torch.dtype):
        layers = [net.layers for net in nets]
        widths = [layer.out_features for layer in layers[0]]
        if not 1 <= len(widths) <= MAX_LAYERS or widths[0] <= 2:
            raise ValueError("fused embedding: needs 1 to 3 layers, the first wider than 2")
        self.n_layers = len(widths)
        maps = [torch.arange(widths[0])]
        self.widths = [_padded(widths[0])]
        self.residual = [0]
        for w_in, w_out in zip(widths, widths[1:], strict=False):
            kind = 1 if w_out == w_in else 2 if w_out == 2 * w_in else 0
            if kind == 1:
                maps.append(maps[-1])
                self.widths.append(self.widths[-1])
            elif kind == 2:
                maps.append(torch.cat([maps[-1], maps[-1] + self.widths[-1]]))
                self.widths.append(2 * self.widths[-1])
            else:
                maps.append(torch.arange(w_out))
                self.widths.append(_padded(w_out))
            self.residual.append(kind)
        device = layers[0][0].weight.device
        n_types = len(nets)
        self.tensors = []
        for li in range(MAX_LAYERS):
            if li >= self.n_layers:
                p_in = 1 if li == 0 else 16
                self.tensors += [torch.zeros(n_types, p_in, 16, dtype=dtype, device=device),
                                 torch.zeros(n_types, 16, dtype=dtype, device=device)]
                continue
            p_in = 1 if li == 0 else self.widths[li - 1]
            rows = torch.zeros(1, dtype=torch.long) if li == 0 else maps[li - 1]
            w = torch.zeros(n_types, p_in, self.widths[li], dtype=dtype, device=device)
            b = torch.zeros(n_types, self.widths[li], dtype=dtype, device=device)
            for t, per_type in enumerate(layers):
                layer = per_type[li]
                w[t][rows.to(device)[:, None], maps[li].to(device)[None, :]] = \
                    layer.weight.detach().to(dtype).T
                b[t][maps[li].to(device)] = layer.bias.detach().to(dtype)
            self.tensors += [w.contiguous(), b.contiguous()]
        self.widths += [16] * (MAX_LAYERS - self.n_layers)
        self.residual += [0] * (MAX_LAYERS - self.n_layers)
        self.columns = maps[-1].to(device)
        self.out_width = self.widths[self.n_layers - 1]


@triton.jit
def _tanh(x):
    """tanh from exp (libdevice's tanh does not run under the CPU interpreter the tests use);
    absolute error ~1 ulp of 1."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _cat2(x, KT: tl.constexpr, P: tl.constexpr):
    """[x, x] along the columns: [KT, P] → [KT, 2P]."""
    return tl.reshape(tl.permute(tl.join(x, x), (0, 2, 1)), (KT, 2 * P))


@triton.jit
def _fold2(dy, KT: tl.constexpr, P: tl.constexpr):
    """The gradient of ``_cat2``: [KT, 2P] → [KT, P]."""
    return tl.sum(tl.reshape(dy, (KT, 2, P)), axis=1)


@triton.jit
def _load_matrix(ptr, t, P_IN: tl.constexpr, P_OUT: tl.constexpr):
    """Type t's [P_IN, P_OUT] weight matrix."""
    base = ptr + t * P_IN * P_OUT
    return tl.load(base + tl.arange(0, P_IN)[:, None] * P_OUT + tl.arange(0, P_OUT)[None, :])


@triton.jit
def _load_matrix_t(ptr, t, P_IN: tl.constexpr, P_OUT: tl.constexpr):
    """Type t's weight matrix transposed: [P_OUT, P_IN]."""
    base = ptr + t * P_IN * P_OUT
    return tl.load(base + tl.arange(0, P_OUT)[:, None] + tl.arange(0, P_IN)[None, :] * P_OUT)


@triton.jit
def _layer(x, w, b, KT: tl.constexpr, P_IN: tl.constexpr, RES: tl.constexpr):
    """tanh(x W + b) plus the residual; returns (output, tanh part)."""
    t = _tanh(tl.dot(x, w, input_precision="ieee") + b[None, :])
    if RES == 1:
        y = t + x
    elif RES == 2:
        y = t + _cat2(x, KT, P_IN)
    else:
        y = t
    return y, t


@triton.jit
def _layer_back(dy, t, w_t, KT: tl.constexpr, P_IN: tl.constexpr, RES: tl.constexpr):
    """The gradient of ``_layer``'s output with respect to its input x."""
    dx = tl.dot(dy * (1.0 - t * t), w_t, input_precision="ieee")
    if RES == 1:
        dx += dy
    elif RES == 2:
        dx += _fold2(dy, KT, P_IN)
    return dx


@triton.jit
def _embed_forward_kernel(s_ptr, env_ptr, order_ptr, start_ptr, count_ptr,
                          w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, out_ptr,
                          n_slots, n_types, KT: tl.constexpr, LAYERS: tl.constexpr,
                          P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr,
                          RES2: tl.constexpr, RES3: tl.constexpr, PO: tl.constexpr):
    """One program per atom: out[i] [PO, 4] = Σ over slots within r_cut of G_jᵀ R̂_j."""
    i = tl.program_id(0).to(tl.int64)
    k = tl.arange(0, KT)
    acc0 = tl.zeros([PO], dtype=s_ptr.dtype.element_ty)
    acc1 = tl.zeros([PO], dtype=s_ptr.dtype.element_ty)
    acc2 = tl.zeros([PO], dtype=s_ptr.dtype.element_ty)
    acc3 = tl.zeros([PO], dtype=s_ptr.dtype.element_ty)
    for t in range(n_types):
        start = tl.load(start_ptr + i * n_types + t)
        count = tl.load(count_ptr + i * n_types + t)
        w1 = tl.load(w1_ptr + t * P1 + tl.arange(0, P1))
        b1 = tl.load(b1_ptr + t * P1 + tl.arange(0, P1))
        if LAYERS >= 2:
            w2 = _load_matrix(w2_ptr, t, P1, P2)
            b2 = tl.load(b2_ptr + t * P2 + tl.arange(0, P2))
        if LAYERS >= 3:
            w3 = _load_matrix(w3_ptr, t, P2, P3)
            b3 = tl.load(b3_ptr + t * P3 + tl.arange(0, P3))
        for k0 in range(0, count, KT):
            ok = k0 + k < count
            slot = tl.load(order_ptr + i * n_slots + start + k0 + k, mask=ok, other=0)
            row = i * n_slots + slot
            s = tl.load(s_ptr + row, mask=ok, other=0.0)
            g = _tanh(s[:, None] * w1[None, :] + b1[None, :])
            if LAYERS >= 2:
                g, _ = _layer(g, w2, b2, KT, P1, RES2)
            if LAYERS >= 3:
                g, _ = _layer(g, w3, b3, KT, P2, RES3)
            g = tl.where(ok[:, None], g, 0.0)
            acc0 += tl.sum(g * tl.load(env_ptr + 4 * row, mask=ok, other=0.0)[:, None], 0)
            acc1 += tl.sum(g * tl.load(env_ptr + 4 * row + 1, mask=ok, other=0.0)[:, None], 0)
            acc2 += tl.sum(g * tl.load(env_ptr + 4 * row + 2, mask=ok, other=0.0)[:, None], 0)
            acc3 += tl.sum(g * tl.load(env_ptr + 4 * row + 3, mask=ok, other=0.0)[:, None], 0)
    col = out_ptr + i * PO * 4 + 4 * tl.arange(0, PO)
    tl.store(col, acc0)
    tl.store(col + 1, acc1)
    tl.store(col + 2, acc2)
    tl.store(col + 3, acc3)


@triton.jit
def _embed_backward_kernel(s_ptr, env_ptr, order_ptr, start_ptr, count_ptr,
                           w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, grad_ptr,
                           grad_s_ptr, grad_env_ptr, n_slots, n_types, KT: tl.constexpr,
                           LAYERS: tl.constexpr, P1: tl.constexpr, P2: tl.constexpr,
                           P3: tl.constexpr, RES2: tl.constexpr, RES3: tl.constexpr,
                           PO: tl.constexpr):
    """One program per atom: from ∂E/∂T[i] [PO, 4], ∂E/∂s and ∂E/∂R̂ of its slots within
    r_cut (the other slots are left as they are: zero)."""
    i = tl.program_id(0).to(tl.int64)
    k = tl.arange(0, KT)
    col = grad_ptr + i * PO * 4 + 4 * tl.arange(0, PO)
    d0 = tl.load(col)
    d1 = tl.load(col + 1)
    d2 = tl.load(col + 2)
    d3 = tl.load(col + 3)
    for t in range(n_types):
        start = tl.load(start_ptr + i * n_types + t)
        count = tl.load(count_ptr + i * n_types + t)
        w1 = tl.load(w1_ptr + t * P1 + tl.arange(0, P1))
        b1 = tl.load(b1_ptr + t * P1 + tl.arange(0, P1))
        if LAYERS >= 2:
            w2 = _load_matrix(w2_ptr, t, P1, P2)
            w2_t = _load_matrix_t(w2_ptr, t, P1, P2)
            b2 = tl.load(b2_ptr + t * P2 + tl.arange(0, P2))
        if LAYERS >= 3:
            w3 = _load_matrix(w3_ptr, t, P2, P3)
            w3_t = _load_matrix_t(w3_ptr, t, P2, P3)
            b3 = tl.load(b3_ptr + t * P3 + tl.arange(0, P3))
        for k0 in range(0, count, KT):
            ok = k0 + k < count
            slot = tl.load(order_ptr + i * n_slots + start + k0 + k, mask=ok, other=0)
            row = i * n_slots + slot
            s = tl.load(s_ptr + row, mask=ok, other=0.0)
            t1 = _tanh(s[:, None] * w1[None, :] + b1[None, :])
            g = t1
            if LAYERS >= 2:
                x1 = g
                g, t2 = _layer(x1, w2, b2, KT, P1, RES2)
            if LAYERS >= 3:
                x2 = g
                g, t3 = _layer(x2, w3, b3, KT, P2, RES3)
            e0 = tl.load(env_ptr + 4 * row, mask=ok, other=0.0)
            e1 = tl.load(env_ptr + 4 * row + 1, mask=ok, other=0.0)
            e2 = tl.load(env_ptr + 4 * row + 2, mask=ok, other=0.0)
            e3 = tl.load(env_ptr + 4 * row + 3, mask=ok, other=0.0)
            tl.store(grad_env_ptr + 4 * row, tl.sum(g * d0[None, :], 1), mask=ok)
            tl.store(grad_env_ptr + 4 * row + 1, tl.sum(g * d1[None, :], 1), mask=ok)
            tl.store(grad_env_ptr + 4 * row + 2, tl.sum(g * d2[None, :], 1), mask=ok)
            tl.store(grad_env_ptr + 4 * row + 3, tl.sum(g * d3[None, :], 1), mask=ok)
            dg = e0[:, None] * d0[None, :] + e1[:, None] * d1[None, :] + \
                e2[:, None] * d2[None, :] + e3[:, None] * d3[None, :]
            if LAYERS >= 3:
                dg = _layer_back(dg, t3, w3_t, KT, P2, RES3)
            if LAYERS >= 2:
                dg = _layer_back(dg, t2, w2_t, KT, P1, RES2)
            ds = tl.sum(dg * (1.0 - t1 * t1) * w1[None, :], 1)
            tl.store(grad_s_ptr + row, ds, mask=ok)


SLOT_TILE = 32


def _launch(kernel, weights: EmbeddingWeights, n_atoms: int, *args) -> None:
    p1, p2, p3 = weights.widths
    kernel[(n_atoms,)](*args, KT=SLOT_TILE, LAYERS=weights.n_layers, P1=p1, P2=p2, P3=p3,
                       RES2=weights.residual[1], RES3=weights.residual[2],
                       PO=weights.out_width, num_warps=4)


class FusedEmbeddingContraction(torch.autograd.Function):
    """T [N, M, 4] = Σ_j G(s_j)ᵀ R̂_j over the slots within r_cut, by type, in one kernel.

    ``s`` [N, K] and ``env`` [N, K, 4] (the networks' dtype, zero outside r_cut); ``order``
    [N, K] the slots of each row grouped by neighbour type, ``start``/``count`` [N, T] int32
    where each type's slots begin in ``order`` and how many lie within r_cut."""

    @staticmethod
    def forward(ctx, s, env, order, start, count, weights: EmbeddingWeights):
        s, env = s.contiguous(), env.contiguous()
        n, k = s.shape
        out = torch.empty(n, weights.out_width, 4, dtype=s.dtype, device=s.device)
        _launch(_embed_forward_kernel, weights, n, s, env, order, start, count,
                *weights.tensors, out, k, start.shape[1])
        ctx.save_for_backward(s, env, order, start, count)
        ctx.weights = weights
        return out[:, weights.columns]

    @staticmethod
    def backward(ctx, grad):
        s, env, order, start, count = ctx.saved_tensors
        weights = ctx.weights
        n, k = s.shape
        grad_padded = torch.zeros(n, weights.out_width, 4, dtype=s.dtype, device=s.device)
        grad_padded[:, weights.columns] = grad
        grad_s = torch.zeros_like(s)
        grad_env = torch.zeros_like(env)
        _launch(_embed_backward_kernel, weights, n, s, env, order, start, count,
                *weights.tensors, grad_padded, grad_s, grad_env, k, start.shape[1])
        return grad_s, grad_env, None, None, None, None


def slots_by_type(inside: torch.Tensor, tj: torch.Tensor, n_types: int):
    """Each row's slots within r_cut grouped by neighbour type, with no host sync:
    ``order`` [N, K] (int32), ``start`` and ``count`` [N, T] (int32)."""
    key = torch.where(inside, tj, n_types).to(torch.int32)
    order = torch.argsort(key, dim=1, stable=True).to(torch.int32)
    count = torch.stack([(key == t).sum(1) for t in range(n_types)], 1).to(torch.int32)
    start = (torch.cumsum(count, 1, dtype=torch.int32) - count).contiguous()
    return order.contiguous(), start, count.contiguous()
