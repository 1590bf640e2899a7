"""Counter-based normal random numbers for stochastic integrators (Philox4x32-10).

A counter-based generator draws number k of stream c as a pure function of (key, counter):
the key is a system's seed, the counter holds the draw number and the atom within its system
(or a reserved index for the system itself). So a draw needs no generator object and no host
work (it is a CUDA graph node like any other kernel); a restart reproduces it from the draw
counters in the checkpoint; undoing a block rewinds it by restoring them; and a system draws
the same numbers batched or alone, whatever its place in the batch, given its seed.

Philox4x32-10 is Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3"
(SC11); the 32-bit words are held in int64 tensors and a 32×32→64-bit product is formed from
16-bit halves, so every operation stays exact in int64 on every device. The two multiplies
of a round run as one operation on stacked words. One Philox block gives four normals by the
Box–Muller transform of 32-bit uniforms in (0, 1] (tails beyond 6.66σ are cut off, a
probability of 3·10⁻¹¹ per number), computed in float64.
"""

from __future__ import annotations

import math

import torch

_M32 = 0xFFFFFFFF
_M16 = 0xFFFF
SYSTEM_INDEX = 1 << 31  # the counter index of a system's own numbers (above any atom's)


def philox4x32(counter: tuple[torch.Tensor, ...], key: tuple[torch.Tensor, torch.Tensor],
               rounds: int = 10) -> tuple[torch.Tensor, ...]:
    """Four 32-bit words (int64 tensors) from four counter words and two key words (all
    int64 tensors holding 32-bit values, broadcast together)."""
    c0, c1, c2, c3 = torch.broadcast_tensors(*counter, *key)[:4]
    k0, k1 = torch.broadcast_tensors(*key, c0)[:2]
    # the two rows' constants, made on the device (no host copy: CUDA-graph capture allows none)
    row = torch.arange(2, dtype=torch.int64, device=c0.device).reshape((2,) + (1,) * c0.ndim)
    mul = 0xD2511F53 + (0xCD9E8D57 - 0xD2511F53) * row
    weyl = 0x9E3779B9 + (0xBB67AE85 - 0x9E3779B9) * row
    a = torch.stack([c0, c2])  # the words that are multiplied
    b = torch.stack([c1, c3])
    k = torch.stack([k0, k1])
    for _ in range(rounds):
        low = (a & _M16) * mul  # < 2^48
        high = (a >> 16) * mul  # < 2^48
        mid = low + ((high & _M16) << 16)  # < 2^49
        hi, lo = (high >> 16) + (mid >> 32), mid & _M32
        a, b = hi.flip(0) ^ b ^ k, lo.flip(0)
        k = (k + weyl) & _M32
    return a[0], b[0], a[1], b[1]


def normals(seed: torch.Tensor, draw: torch.Tensor, index: torch.Tensor,
            stream: int) -> torch.Tensor:
    """[..., 4] standard normals (float64), one Philox block per element: ``index`` (int64
    ≥ 0), keyed by ``seed`` and counted by ``draw`` (int64, broadcast against ``index``)."""
    words = philox4x32((index & _M32, draw & _M32, (draw >> 32) & _M32,
                        torch.full_like(index, stream)), (seed & _M32, (seed >> 32) & _M32))
    u = (torch.stack(words, -1) + 1).to(torch.float64) / 4294967296.0  # (0, 1]
    radius = torch.sqrt(-2.0 * torch.log(u[..., 0::2]))
    angle = 2.0 * math.pi * u[..., 1::2]
    return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], -1)


def draw_normals(seed: torch.Tensor, draw: torch.Tensor, system_idx: torch.Tensor,
                 local_index: torch.Tensor, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([N, 3] normals per atom, [S] one normal per system), float64, from one Philox pass:
    system s's atom i (``local_index``: its place within the system) gets the numbers of
    (seed[s], draw[s], i, stream) alone, so they do not depend on the batch around it."""
    index = torch.cat([local_index, torch.full_like(seed, SYSTEM_INDEX)])
    owner = torch.cat([system_idx, torch.arange(seed.numel(), device=seed.device)])
    z = normals(seed[owner], draw[owner], index, stream)
    n = local_index.numel()
    return z[:n, :3], z[n:, 0]
