"""The Nosé–Hoover chain update of a half step as one Triton kernel (GPU hot path).

Hand-written because the PyTorch form launches ~70 kernels on [S] tensors per half step
(each chain element's force, damping and update): in a CUDA-graph profile of 256
Kob–Andersen replicas on an H100 (``bench/profile_lj.py --kalj 256 --kernels``, f97eaa0) a
step ran ~140 kernels of 1–3 µs, most of them the chain's. One
program takes BLOCK systems and runs the same operations in the same order as
``NoseHooverChainThermostat.chain_step``: M chain elements updated from the last to the first, the
velocity scale, the positions ξ, and the elements again from the first to the last. The
chain variables are read and written in place; the scale per system is returned.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 128


@triton.jit
def _force(k: tl.constexpr, ke2, q_ptr, v_ptr, dof, kt, s, live, M: tl.constexpr):
    """G_k: the force on chain element k of systems s."""
    qk = tl.load(q_ptr + s * M + k, mask=live, other=1.0)
    if k == 0:
        return (ke2 - dof * kt) / qk
    q_prev = tl.load(q_ptr + s * M + k - 1, mask=live, other=1.0)
    v_prev = tl.load(v_ptr + s * M + k - 1, mask=live, other=0.0)
    return (q_prev * v_prev * v_prev - kt) / qk


@triton.jit
def _update(k: tl.constexpr, ke2, q_ptr, v_ptr, dof, kt, dt4, dt8, s, live, M: tl.constexpr):
    """v_k ← (v_k e^{−v_{k+1} dt/8} + G_k dt/4) e^{−v_{k+1} dt/8} (no damping for the last)."""
    vk = tl.load(v_ptr + s * M + k, mask=live, other=0.0)
    g = _force(k, ke2, q_ptr, v_ptr, dof, kt, s, live, M)
    if k < M - 1:
        damp = tl.exp(-dt8 * tl.load(v_ptr + s * M + k + 1, mask=live, other=0.0))
        vk = (vk * damp + dt4 * g) * damp
    else:
        vk = vk + dt4 * g
    tl.store(v_ptr + s * M + k, vk, mask=live)


@triton.jit
def chain_kernel(ke2_ptr, q_ptr, v_ptr, xi_ptr, dof_ptr, kt_ptr, dt_ptr, scale_ptr, n_systems,
                 M: tl.constexpr, BLOCK: tl.constexpr):
    s = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = s < n_systems
    ke2 = tl.load(ke2_ptr + s, mask=live, other=0.0)
    dof = tl.load(dof_ptr + s, mask=live, other=0.0)
    kt = tl.load(kt_ptr + s, mask=live, other=0.0)
    dt = tl.load(dt_ptr + s, mask=live, other=0.0)
    dt2, dt4, dt8 = 0.5 * dt, 0.25 * dt, 0.125 * dt
    for r in tl.static_range(M):
        _update(M - 1 - r, ke2, q_ptr, v_ptr, dof, kt, dt4, dt8, s, live, M)
    scale = tl.exp(-dt2 * tl.load(v_ptr + s * M, mask=live, other=0.0))
    ke2 = ke2 * scale * scale
    for k in tl.static_range(M):
        xi = tl.load(xi_ptr + s * M + k, mask=live, other=0.0)
        tl.store(xi_ptr + s * M + k, xi + dt2 * tl.load(v_ptr + s * M + k, mask=live, other=0.0),
                 mask=live)
    for k in tl.static_range(M):
        _update(k, ke2, q_ptr, v_ptr, dof, kt, dt4, dt8, s, live, M)
    tl.store(scale_ptr + s, scale, mask=live)


def chain_half_step(ke2, thermostat) -> torch.Tensor:
    """Advance ``thermostat``'s chain (v_xi, xi [S, M] float64, in place) by half its
    ``span`` [S] from ke2 = 2·KE [S]; returns the velocity scale [S]."""
    n, m = thermostat.v_xi.shape
    scale = torch.empty(n, dtype=torch.float64, device=ke2.device)
    chain_kernel[(triton.cdiv(n, BLOCK),)](
        ke2.contiguous(), thermostat.Q.contiguous(), thermostat.v_xi, thermostat.xi,
        thermostat.dof, thermostat.kT, thermostat.span, scale, n, M=m, BLOCK=BLOCK)
    return scale
