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

    ``tensors``: w1 [T, 1, P1], b1 [T, P1], w2 [T, P1, P2], b2, w3 [T, P2, P3], b3, f3
    [T, P1, P3] (absent layers: 16-wide zeros); ``residual`` per layer: 0 none, 1 x + y,
    2 [x, x] + y; ``columns`` [M] the padded column of each real output column."""

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
        self.widths += [16] * (MAX_LAYERS - self.n_layers)  # absent layers: unused zeros
        self.residual += [0] * (MAX_LAYERS - self.n_layers)
        device = layers[0][0].weight.device
        n_types = len(nets)
        self.tensors = []
        for li in range(MAX_LAYERS):
            p_in = 1 if li == 0 else self.widths[li - 1]
            w = torch.zeros(n_types, p_in, self.widths[li], dtype=dtype, device=device)
            b = torch.zeros(n_types, self.widths[li], dtype=dtype, device=device)
            if li < self.n_layers:
                rows = (torch.zeros(1, dtype=torch.long) if li == 0 else maps[li - 1]).to(device)
                cols = maps[li].to(device)
                for t, per_type in enumerate(layers):
                    w[t][rows[:, None], cols[None, :]] = per_type[li].weight.detach().to(dtype).T
                    b[t][cols] = per_type[li].bias.detach().to(dtype)
            self.tensors += [w, b]
        # F3: W3's two row halves summed, for a doubling layer 2 (see _net)
        p1 = self.widths[0]
        w3 = self.tensors[4]
        folded = self.n_layers == 3 and self.residual[1] == 2
        self.tensors.append(w3[:, :p1] + w3[:, p1:] if folded else
                            torch.zeros(n_types, p1, self.widths[2], dtype=dtype, device=device))
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
    """[x, x] along the columns: [KT, P] → [KT, 2P]. Only ever reduced, never fed to tl.dot:
    Triton 3.6 cannot lower a float64 dot whose operand went through this reshape."""
    return tl.reshape(tl.permute(tl.join(x, x), (0, 2, 1)), (KT, 2 * P))


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
def _residual(t, x, KT: tl.constexpr, P_IN: tl.constexpr, RES: tl.constexpr):
    """A layer's output from its tanh part t and its input x."""
    if RES == 1:
        y = t + x
    elif RES == 2:
        y = t + _cat2(x, KT, P_IN)
    else:
        y = t
    return y


@triton.jit
def _outer4(e0, e1, e2, e3, ptr, P: tl.constexpr):
    """Σ_c e_c ⊗ v_c [KT, P] for the four [P] vectors v_c stored interleaved at ``ptr``."""
    col = ptr + 4 * tl.arange(0, P)
    return e0[:, None] * tl.load(col)[None, :] + e1[:, None] * tl.load(col + 1)[None, :] + \
        e2[:, None] * tl.load(col + 2)[None, :] + e3[:, None] * tl.load(col + 3)[None, :]


@triton.jit
def _net(s, w1, b1, w2, b2, w3, f3, b3, KT: tl.constexpr, LAYERS: tl.constexpr,
         P1: tl.constexpr, P2: tl.constexpr, RES2: tl.constexpr, RES3: tl.constexpr):
    """The embedding net on a tile of s [KT]: (G, t1, t2, t3) with t_l the tanh parts.
    When layer 2 doubles its input, layer 3 takes x2 = t2 + [x1, x1] as
    t2·W3 + x1·F3 (F3 = the two row halves of W3 summed), so no reshaped tensor reaches
    tl.dot."""
    t1 = _tanh(s[:, None] * w1[None, :] + b1[None, :])
    g = t1
    t2 = t1
    t3 = t1
    if LAYERS >= 2:
        t2 = _tanh(tl.dot(t1, w2, input_precision="ieee") + b2[None, :])
        g = _residual(t2, t1, KT, P1, RES2)
    if LAYERS >= 3:
        if RES2 == 2:
            a3 = tl.dot(t2, w3, input_precision="ieee") + tl.dot(t1, f3, input_precision="ieee")
        else:
            a3 = tl.dot(g, w3, input_precision="ieee")
        t3 = _tanh(a3 + b3[None, :])
        g = _residual(t3, g, KT, P2, RES3)
    return g, t1, t2, t3


@triton.jit
def _type_weights(w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, f3_ptr, t,
                  P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr):
    """Type t's padded net: (w1, b1, w2, b2, w3, f3, b3)."""
    return (tl.load(w1_ptr + t * P1 + tl.arange(0, P1)),
            tl.load(b1_ptr + t * P1 + tl.arange(0, P1)),
            _load_matrix(w2_ptr, t, P1, P2), tl.load(b2_ptr + t * P2 + tl.arange(0, P2)),
            _load_matrix(w3_ptr, t, P2, P3), _load_matrix(f3_ptr, t, P1, P3),
            tl.load(b3_ptr + t * P3 + tl.arange(0, P3)))


@triton.jit
def _tile(order_ptr, s_ptr, i, n_slots, start, count, k0, KT: tl.constexpr):
    """The tile of a type's slots from k0: (live mask [KT], flat row of each slot, s [KT])."""
    k = tl.arange(0, KT)
    ok = k0 + k < count
    slot = tl.load(order_ptr + i * n_slots + start + k0 + k, mask=ok, other=0)
    row = i * n_slots + slot
    return ok, row, tl.load(s_ptr + row, mask=ok, other=0.0)


@triton.jit
def _embed_forward_kernel(s_ptr, env_ptr, order_ptr, start_ptr, count_ptr,
                          w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, f3_ptr, out_ptr,
                          n_slots, n_types, KT: tl.constexpr, LAYERS: tl.constexpr,
                          P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr,
                          RES2: tl.constexpr, RES3: tl.constexpr, PO: tl.constexpr):
    """One program per atom: out[i] [PO, 4] = Σ over slots within r_cut of G_jᵀ R̂_j."""
    i = tl.program_id(0).to(tl.int64)
    acc0 = tl.zeros([PO], dtype=s_ptr.dtype.element_ty)
    acc1 = tl.zeros([PO], dtype=s_ptr.dtype.element_ty)
    acc2 = tl.zeros([PO], dtype=s_ptr.dtype.element_ty)
    acc3 = tl.zeros([PO], dtype=s_ptr.dtype.element_ty)
    for t in range(n_types):
        start = tl.load(start_ptr + i * n_types + t)
        count = tl.load(count_ptr + i * n_types + t)
        w1, b1, w2, b2, w3, f3, b3 = _type_weights(w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr,
                                                   b3_ptr, f3_ptr, t, P1, P2, P3)
        for k0 in range(0, count, KT):
            ok, row, s = _tile(order_ptr, s_ptr, i, n_slots, start, count, k0, KT)
            g, _, _, _ = _net(s, w1, b1, w2, b2, w3, f3, b3, KT, LAYERS, P1, P2, RES2, RES3)
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
                           w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, f3_ptr,
                           grad_ptr, res_ptr, res_fold_ptr, grad_s_ptr, grad_env_ptr,
                           n_slots, n_types, KT: tl.constexpr, LAYERS: tl.constexpr,
                           P1: tl.constexpr, P2: tl.constexpr, P3: tl.constexpr,
                           RES2: tl.constexpr, RES3: tl.constexpr, PO: tl.constexpr):
    """One program per atom: from d = ∂E/∂T[i] [PO, 4], ∂E/∂s and ∂E/∂R̂ of its slots within
    r_cut (the other slots are left as they are: zero). ``res`` [P_{L−1}, 4] is the part of
    d that the last layer's residual passes to its input (d, or its two halves summed) and
    ``res_fold`` [P1, 4] that part's halves summed (layer 2 doubling, three layers): the host
    folds these vectors, so no reshaped tensor reaches tl.dot."""
    i = tl.program_id(0).to(tl.int64)
    col = grad_ptr + i * PO * 4 + 4 * tl.arange(0, PO)
    d0 = tl.load(col)
    d1 = tl.load(col + 1)
    d2 = tl.load(col + 2)
    d3 = tl.load(col + 3)
    for t in range(n_types):
        start = tl.load(start_ptr + i * n_types + t)
        count = tl.load(count_ptr + i * n_types + t)
        w1, b1, w2, b2, w3, f3, b3 = _type_weights(w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr,
                                                   b3_ptr, f3_ptr, t, P1, P2, P3)
        w2_t = _load_matrix_t(w2_ptr, t, P1, P2)
        w3_t = _load_matrix_t(w3_ptr, t, P2, P3)
        f3_t = _load_matrix_t(f3_ptr, t, P1, P3)
        for k0 in range(0, count, KT):
            ok, row, s = _tile(order_ptr, s_ptr, i, n_slots, start, count, k0, KT)
            g, t1, t2, t3 = _net(s, w1, b1, w2, b2, w3, f3, b3, KT, LAYERS, P1, P2, RES2, RES3)
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
            dx1 = dg
            if LAYERS == 2:
                dx1 = tl.dot(dg * (1.0 - t2 * t2), w2_t, input_precision="ieee")
                if RES2 != 0:
                    dx1 += _outer4(e0, e1, e2, e3, res_ptr + i * P1 * 4, P1)
            if LAYERS == 3:
                da3 = dg * (1.0 - t3 * t3)
                dx2 = tl.dot(da3, w3_t, input_precision="ieee")
                if RES3 != 0:
                    dx2 += _outer4(e0, e1, e2, e3, res_ptr + i * P2 * 4, P2)
                dx1 = tl.dot(dx2 * (1.0 - t2 * t2), w2_t, input_precision="ieee")
                if RES2 == 1:
                    dx1 += dx2
                elif RES2 == 2:
                    dx1 += tl.dot(da3, f3_t, input_precision="ieee")
                    if RES3 != 0:
                        dx1 += _outer4(e0, e1, e2, e3, res_fold_ptr + i * P1 * 4, P1)
            ds = tl.sum(dx1 * (1.0 - t1 * t1) * w1[None, :], 1)
            tl.store(grad_s_ptr + row, ds, mask=ok)


SLOT_TILE = 32  # neighbour slots per tile (tl.dot's M)
NUM_WARPS = 4  # H200, 10,976 Cu atoms: 4 warps 45 ms, 8 warps 50 ms (float64, fwd+bwd)


def _launch(kernel, weights: EmbeddingWeights, n_atoms: int, *args) -> None:
    p1, p2, p3 = weights.widths
    kernel[(n_atoms,)](*args, KT=SLOT_TILE, LAYERS=weights.n_layers, P1=p1, P2=p2, P3=p3,
                       RES2=weights.residual[1], RES3=weights.residual[2],
                       PO=weights.out_width, num_warps=NUM_WARPS)


def _fold(v: torch.Tensor) -> torch.Tensor:
    """[N, 2P, 4] → [N, P, 4]: the two halves summed (the gradient of [x, x])."""
    half = v.shape[1] // 2
    return v[:, :half] + v[:, half:]


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
        last = weights.n_layers - 1
        res = res_fold = grad_padded  # placeholders where the kernel does not read them
        if last >= 1 and weights.residual[last]:
            res = _fold(grad_padded) if weights.residual[last] == 2 else grad_padded
            if last == 2 and weights.residual[1] == 2:
                res_fold = _fold(res)
        grad_s = torch.zeros_like(s)
        grad_env = torch.zeros_like(env)
        _launch(_embed_backward_kernel, weights, n, s, env, order, start, count,
                *weights.tensors, grad_padded, res.contiguous(), res_fold.contiguous(),
                grad_s, grad_env, k, start.shape[1])
        return grad_s, grad_env, None, None, None, None
