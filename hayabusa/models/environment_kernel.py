"""The DeepPot-SE environment matrix from pair vectors in one Triton kernel, and its backward
in another: the CUDA kernels of ``ops.environment`` and ``ops.environment_backward``.

Per slot (pair vector v, r = |v|, within r_cut and a real neighbour):
    s = sw(u)/r, u = (r − r_smth)/(r_cut − r_smth) clamped to [0, 1], sw = u³(−6u² + 15u − 10) + 1
    R̂ = [s, s·v/r] / σ   (σ [4]: the centre type's scales)
and zero elsewhere. Backward, from g₀ = ∂E/∂R̂₀/σ₀ + ∂E/∂s and g_a = ∂E/∂R̂_a/σ_a:
    ∂E/∂v_b = (v_b/r)(g₀ s′ + q′ Σ_a g_a v_a) + q g_b,   q = s/r, q′ = s′/r − s/r².
Hand-written because the PyTorch form is ~40 kernels forward and as many backward on
[N, K] tensors, which at 10⁴ atoms cost more in launches than in arithmetic (see DESIGN.md,
performance); ``ops.environment_reference`` keeps that form for the CPU and the tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 256


@triton.jit
def _switch(r, r_smth, r_cut):
    """(s, ds/dr) for r > 0 inside the cutoff."""
    width = r_cut - r_smth
    u = tl.minimum(tl.maximum((r - r_smth) / width, 0.0), 1.0)
    sw = u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0
    dsw = (-30.0 * u * u * u * u + 60.0 * u * u * u - 30.0 * u * u) / width
    s = sw / r
    return s, dsw / r - s / r


@triton.jit
def _slot(vec_ptr, mask_ptr, slots, live, r_cut2):
    """Pair vector (x, y, z), r and whether the slot is a neighbour within r_cut."""
    x = tl.load(vec_ptr + 3 * slots, mask=live, other=1.0)
    y = tl.load(vec_ptr + 3 * slots + 1, mask=live, other=0.0)
    z = tl.load(vec_ptr + 3 * slots + 2, mask=live, other=0.0)
    r2 = x * x + y * y + z * z
    inside = live & (tl.load(mask_ptr + slots, mask=live, other=0) != 0) & (r2 < r_cut2)
    r = tl.sqrt(tl.where(inside, r2, 1.0))
    return x, y, z, r, inside


@triton.jit
def environment_kernel(vec_ptr, mask_ptr, inv_std_ptr, s_ptr, env_ptr, n_slots, k_slots, r_smth,
                       r_cut, BLOCK: tl.constexpr):
    slots = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = slots < n_slots
    x, y, z, r, inside = _slot(vec_ptr, mask_ptr, slots, live, r_cut * r_cut)
    s, _ = _switch(r, r_smth, r_cut)
    s = tl.where(inside, s, 0.0)
    q = s / r
    atom = slots // k_slots
    tl.store(s_ptr + slots, s, mask=live)
    tl.store(env_ptr + 4 * slots, s * tl.load(inv_std_ptr + 4 * atom, mask=live), mask=live)
    tl.store(env_ptr + 4 * slots + 1, q * x * tl.load(inv_std_ptr + 4 * atom + 1, mask=live),
             mask=live)
    tl.store(env_ptr + 4 * slots + 2, q * y * tl.load(inv_std_ptr + 4 * atom + 2, mask=live),
             mask=live)
    tl.store(env_ptr + 4 * slots + 3, q * z * tl.load(inv_std_ptr + 4 * atom + 3, mask=live),
             mask=live)


@triton.jit
def environment_backward_kernel(vec_ptr, mask_ptr, inv_std_ptr, grad_s_ptr, grad_env_ptr,
                                grad_vec_ptr, n_slots, k_slots, r_smth, r_cut,
                                BLOCK: tl.constexpr):
    slots = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = slots < n_slots
    x, y, z, r, inside = _slot(vec_ptr, mask_ptr, slots, live, r_cut * r_cut)
    s, ds = _switch(r, r_smth, r_cut)
    q = s / r
    dq = ds / r - s / (r * r)
    atom = slots // k_slots
    g0 = tl.load(grad_env_ptr + 4 * slots, mask=live, other=0.0) * \
        tl.load(inv_std_ptr + 4 * atom, mask=live, other=0.0) + \
        tl.load(grad_s_ptr + slots, mask=live, other=0.0)
    gx = tl.load(grad_env_ptr + 4 * slots + 1, mask=live, other=0.0) * \
        tl.load(inv_std_ptr + 4 * atom + 1, mask=live, other=0.0)
    gy = tl.load(grad_env_ptr + 4 * slots + 2, mask=live, other=0.0) * \
        tl.load(inv_std_ptr + 4 * atom + 2, mask=live, other=0.0)
    gz = tl.load(grad_env_ptr + 4 * slots + 3, mask=live, other=0.0) * \
        tl.load(inv_std_ptr + 4 * atom + 3, mask=live, other=0.0)
    radial = tl.where(inside, (g0 * ds + dq * (gx * x + gy * y + gz * z)) / r, 0.0)
    q = tl.where(inside, q, 0.0)
    tl.store(grad_vec_ptr + 3 * slots, radial * x + q * gx, mask=live)
    tl.store(grad_vec_ptr + 3 * slots + 1, radial * y + q * gy, mask=live)
    tl.store(grad_vec_ptr + 3 * slots + 2, radial * z + q * gz, mask=live)


def environment_forward(vec, mask, inv_std, r_smth: float, r_cut: float):
    """(s [N, K], R̂ [N, K, 4]) from pair vectors ``vec`` [N, K, 3], the neighbour ``mask``
    [N, K] and the centre atoms' 1/σ ``inv_std`` [N, 4]."""
    vec, mask = vec.contiguous(), mask.contiguous()
    inv_std = inv_std.to(vec.dtype).contiguous()
    n, k = mask.shape
    s = torch.empty(n, k, dtype=vec.dtype, device=vec.device)
    env = torch.empty(n, k, 4, dtype=vec.dtype, device=vec.device)
    if s.numel():
        environment_kernel[(triton.cdiv(n * k, BLOCK),)](
            vec, mask, inv_std, s, env, n * k, k, r_smth, r_cut, BLOCK=BLOCK)
    return s, env


def environment_backward(vec, mask, inv_std, grad_s, grad_env, r_smth: float, r_cut: float):
    """∂E/∂vec [N, K, 3] from ∂E/∂s [N, K] and ∂E/∂R̂ [N, K, 4]."""
    vec, mask = vec.contiguous(), mask.contiguous()
    inv_std = inv_std.to(vec.dtype).contiguous()
    n, k = mask.shape
    grad_vec = torch.empty_like(vec)
    if grad_vec.numel():
        environment_backward_kernel[(triton.cdiv(n * k, BLOCK),)](
            vec, mask, inv_std, grad_s.contiguous(), grad_env.contiguous(), grad_vec, n * k, k,
            r_smth, r_cut, BLOCK=BLOCK)
    return grad_vec
