"""DeepPot-SE's custom operators (``torch.ops.hayabusa.*``): each has a PyTorch reference (the
CPU kernel and the definition), a Triton kernel on CUDA devices, a fake (meta) kernel for
``torch.compile`` and export, and a registered backward. A model calls them in inference; its
training path (weight gradients, double backward for force losses) and exported files use
the references, which are plain differentiable PyTorch.

- ``environment(vec, mask, inv_std, r_smth, r_cut) -> (s, env)``: per slot (pair vector v,
  r = |v|, a real neighbour within r_cut) s = sw(u)/r with u = (r − r_smth)/(r_cut − r_smth)
  clamped to [0, 1], sw = u³(−6u² + 15u − 10) + 1 (C² in r), and the environment row
  R̂ = [s, s·v/r]·inv_std; zero elsewhere. Shapes: vec [N, K, 3], mask [N, K] bool, inv_std
  [N, 4] (the centre atoms' 1/σ) → s [N, K], env [N, K, 4]. Backward:
  ∂E/∂v_b = (v_b/r)(g₀ s′ + q′ Σ_a g_a v_a) + q g_b with g₀ = ∂E/∂R̂₀·inv_std₀ + ∂E/∂s,
  g_a = ∂E/∂R̂_a·inv_std_a, q = s/r, q′ = s′/r − s/r².
- ``tangent_contraction(s, env, weights, biases) -> (T, G, G')``: one neighbour type's
  embedding net (``nn.Linear`` weights [out, in] and biases per layer, tanh, residual when a
  layer keeps or doubles its width) on s [N, k] gives G [N, k, M] and its derivative G' = dG/ds
  carried forward with it (forward mode); T = Gᵀ·R̂ [N, M, 4] for env [N, k, 4]. Backward:
  ∂E/∂R̂ = G·∂E/∂T and ∂E/∂s = Σ_c R̂_c (G′·∂E/∂T)_c: two batched matmuls, no reverse pass
  through the net, no weight gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor


def smooth_inverse(r: Tensor, r_smth: float, r_cut: float) -> Tensor:
    """s(r): 1/r switched smoothly (C²) to zero between r_smth and r_cut."""
    u = ((r - r_smth) / (r_cut - r_smth)).clamp(0.0, 1.0)
    switch = u**3 * (-6 * u**2 + 15 * u - 10) + 1
    return torch.where(r < r_cut, switch / r, torch.zeros_like(r))


def _inside(vec: Tensor, mask: Tensor, r_cut: float) -> tuple[Tensor, Tensor]:
    """(the slots that are neighbours within r_cut [N, K], r [N, K] with 1 elsewhere)."""
    r2 = (vec * vec).sum(-1)
    inside = mask & (r2 < r_cut * r_cut)
    return inside, torch.sqrt(torch.where(inside, r2, torch.ones_like(r2)))


def environment_reference(vec: Tensor, mask: Tensor, inv_std: Tensor, r_smth: float,
                          r_cut: float) -> tuple[Tensor, Tensor]:
    """(s [N, K], env [N, K, 4]) in PyTorch (see the module docstring); differentiable."""
    inside, r = _inside(vec, mask, r_cut)
    s = torch.where(inside, smooth_inverse(r, r_smth, r_cut), torch.zeros_like(r))
    env = torch.cat([s[..., None], (s / r)[..., None] * vec], dim=-1)
    return s, env * inv_std[:, None, :].to(vec.dtype)


def environment_backward_reference(vec: Tensor, mask: Tensor, inv_std: Tensor, grad_s: Tensor,
                                   grad_env: Tensor, r_smth: float, r_cut: float) -> Tensor:
    """∂E/∂vec [N, K, 3] from ∂E/∂s and ∂E/∂env, by the closed form of the module docstring."""
    inside, r = _inside(vec, mask, r_cut)
    width = r_cut - r_smth
    u = ((r - r_smth) / width).clamp(0.0, 1.0)
    s = (u**3 * (-6 * u**2 + 15 * u - 10) + 1) / r
    ds = (-30 * u**4 + 60 * u**3 - 30 * u**2) / width / r - s / r  # s'(r)
    q, dq = s / r, ds / r - s / (r * r)
    g = grad_env * inv_std[:, None, :].to(vec.dtype)
    g0 = g[..., 0] + grad_s
    radial = torch.where(inside, (g0 * ds + dq * (g[..., 1:] * vec).sum(-1)) / r,
                         torch.zeros_like(r))
    return radial[..., None] * vec + torch.where(inside, q, torch.zeros_like(q))[..., None] \
        * g[..., 1:]


def tangent_reference(s: Tensor, weights: list[Tensor], biases: list[Tensor]
                      ) -> tuple[Tensor, Tensor]:
    """(G, dG/ds) [*s.shape, M] of an embedding net (see the module docstring) on s."""
    x, dx = s[..., None], torch.ones_like(s)[..., None]
    for w, b in zip(weights, biases, strict=True):
        y = torch.tanh(torch.nn.functional.linear(x, w, b))
        dy = (1 - y * y) * (dx @ w.T)
        if y.shape[-1] == x.shape[-1]:
            x, dx = x + y, dx + dy
        elif y.shape[-1] == 2 * x.shape[-1]:
            x, dx = torch.cat([x, x], dim=-1) + y, torch.cat([dx, dx], dim=-1) + dy
        else:
            x, dx = y, dy
    return x, dx


# ------------------------------------------------------------------------- environment
@torch.library.custom_op("hayabusa::environment", mutates_args=())
def environment(vec: Tensor, mask: Tensor, inv_std: Tensor, r_smth: float,
                r_cut: float) -> tuple[Tensor, Tensor]:
    return environment_reference(vec, mask, inv_std, r_smth, r_cut)


@environment.register_kernel("cuda")
def _environment_cuda(vec, mask, inv_std, r_smth, r_cut):
    from .environment_kernel import environment_forward

    return environment_forward(vec, mask, inv_std, r_smth, r_cut)


@environment.register_fake
def _environment_fake(vec, mask, inv_std, r_smth, r_cut):
    n, k = mask.shape
    return vec.new_empty(n, k), vec.new_empty(n, k, 4)


@torch.library.custom_op("hayabusa::environment_backward", mutates_args=())
def environment_backward(vec: Tensor, mask: Tensor, inv_std: Tensor, grad_s: Tensor,
                         grad_env: Tensor, r_smth: float, r_cut: float) -> Tensor:
    return environment_backward_reference(vec, mask, inv_std, grad_s, grad_env, r_smth, r_cut)


@environment_backward.register_kernel("cuda")
def _environment_backward_cuda(vec, mask, inv_std, grad_s, grad_env, r_smth, r_cut):
    from .environment_kernel import environment_backward as launch

    return launch(vec, mask, inv_std, grad_s, grad_env, r_smth, r_cut)


@environment_backward.register_fake
def _environment_backward_fake(vec, mask, inv_std, grad_s, grad_env, r_smth, r_cut):
    return torch.empty_like(vec)


def _environment_setup(ctx, inputs, output) -> None:
    vec, mask, inv_std, r_smth, r_cut = inputs
    ctx.save_for_backward(vec, mask, inv_std)
    ctx.cutoffs = (r_smth, r_cut)


def _environment_grad(ctx, grad_s, grad_env):
    vec, mask, inv_std = ctx.saved_tensors
    n, k = mask.shape
    if grad_s is None:
        grad_s = vec.new_zeros(n, k)
    if grad_env is None:
        grad_env = vec.new_zeros(n, k, 4)
    grad = environment_backward(vec, mask, inv_std, grad_s.contiguous(), grad_env.contiguous(),
                                *ctx.cutoffs)
    return grad, None, None, None, None


environment.register_autograd(_environment_grad, setup_context=_environment_setup)


# --------------------------------------------------------------------------- embedding
@torch.library.custom_op("hayabusa::tangent_contraction", mutates_args=())
def tangent_contraction(s: Tensor, env: Tensor, weights: list[Tensor],
                        biases: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    g, dg = tangent_reference(s, weights, biases)
    return torch.bmm(g.transpose(1, 2), env), g, dg


@tangent_contraction.register_kernel("cuda")
def _tangent_contraction_cuda(s, env, weights, biases):
    from .tangent_embedding import embedding_with_tangent, kernel_supports

    if not kernel_supports([w.shape[0] for w in weights]):
        g, dg = tangent_reference(s, weights, biases)
    else:
        g, dg = embedding_with_tangent(s, weights, biases)
    return torch.bmm(g.transpose(1, 2), env), g, dg


@tangent_contraction.register_fake
def _tangent_contraction_fake(s, env, weights, biases):
    n, k = s.shape
    m = weights[-1].shape[0]  # residual layers keep their own output width
    return s.new_empty(n, m, 4), s.new_empty(n, k, m), s.new_empty(n, k, m)


def _tangent_setup(ctx, inputs, output) -> None:
    _, env, weights, biases = inputs
    _, g, dg = output
    ctx.save_for_backward(env, g, dg)
    ctx.n_layers = len(weights)


def _tangent_grad(ctx, grad_t, _g, _dg):
    env, g, dg = ctx.saved_tensors
    grad_s = (torch.bmm(dg, grad_t) * env).sum(-1)
    none = [None] * ctx.n_layers
    return grad_s, torch.bmm(g, grad_t), none, list(none)


tangent_contraction.register_autograd(_tangent_grad, setup_context=_tangent_setup)
