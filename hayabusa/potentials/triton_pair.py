"""Fused Triton kernel for Lennard-Jones forces on a MinImageNeighborList (GPU hot path).

Hand-written because the plain PyTorch path materialises [N, K, 3] temporaries at every step.
Each call first packs the positions and types in the list's cell order (``pack``: [3, N]
float64 and [N] int32), so the neighbours a program gathers are a few runs of contiguous
rows. A program takes BLOCK lanes, one per thread as in LAMMPS' and HOOMD's GPU pair styles
(the threads of a warp read consecutive slots of the matrix, gather from neighbouring atoms
and sum their own rows: no shuffles), walking the slots TILE at a time (unrolled, so their
loads are in flight together; shapes autotuned per size). It forms minimum-image pair
vectors from the float64 positions, evaluates u(r) and u'(r) in the compute dtype (float32
or float64) with the potential's truncation (no square root unless the force is shifted),
and writes each atom's force and energy in float64. Pair constants are scalars for one type,
a select between two rows per atom for two types (Kob–Andersen), a table gather otherwise.
No atomics: each atom sums its own full row. The PyTorch path stays the reference
(tests/test_gpu.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..neighbors.triton_build import CONFIGS, autotune


@triton.jit
def _pair_row(table_ptr, row, mask, ct: tl.constexpr):
    """Table row (4ε, σ², r_c², r_c, u(r_c), u'(r_c)) of a type pair, in the compute dtype."""
    p = 6 * row
    return (tl.load(table_ptr + p, mask=mask, other=0.0).to(ct),
            tl.load(table_ptr + p + 1, mask=mask, other=1.0).to(ct),
            tl.load(table_ptr + p + 2, mask=mask, other=0.0).to(ct),
            tl.load(table_ptr + p + 3, mask=mask, other=0.0).to(ct),
            tl.load(table_ptr + p + 4, mask=mask, other=0.0).to(ct),
            tl.load(table_ptr + p + 5, mask=mask, other=0.0).to(ct))


@triton.jit
def _lj_kernel(packed_ptr, packed_type_ptr, order_ptr, sys_ptr, box_ptr, index_ptr, count_ptr,
               table_ptr, force_ptr, energy_ptr, n_atoms, BLOCK: tl.constexpr,
               TILE: tl.constexpr, ct: tl.constexpr, N_TYPES: tl.constexpr,
               FORCE_SHIFT: tl.constexpr):
    """FORCE_SHIFT: the force is shifted too (u'(r_c) ≠ 0), otherwise no square root."""
    lane = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = lane < n_atoms
    i = tl.load(order_ptr + lane, mask=live, other=0)  # lane ``lane`` is atom i
    xi = tl.load(packed_ptr + lane, mask=live, other=0.0)
    yi = tl.load(packed_ptr + n_atoms + lane, mask=live, other=0.0)
    zi = tl.load(packed_ptr + 2 * n_atoms + lane, mask=live, other=0.0)
    s = tl.load(sys_ptr + i, mask=live, other=0)
    lx = tl.load(box_ptr + 3 * s, mask=live, other=1.0)
    ly = tl.load(box_ptr + 3 * s + 1, mask=live, other=1.0)
    lz = tl.load(box_ptr + 3 * s + 2, mask=live, other=1.0)
    ilx, ily, ilz = 1.0 / lx, 1.0 / ly, 1.0 / lz
    ti = tl.load(packed_type_ptr + lane, mask=live, other=0)
    if N_TYPES == 1:
        eps4, sig2, rc2, rc, uc, duc = _pair_row(table_ptr, 0, True, ct)
    elif N_TYPES == 2:  # the rows (t_i, 0) and (t_i, 1) of each atom
        a4, as2, arc2, arc, auc, aduc = _pair_row(table_ptr, 2 * ti, live, ct)
        b4, bs2, brc2, brc, buc, bduc = _pair_row(table_ptr, 2 * ti + 1, live, ct)
    count = tl.load(count_ptr + lane, mask=live, other=0)
    fx = tl.zeros([BLOCK], dtype=ct)
    fy = tl.zeros([BLOCK], dtype=ct)
    fz = tl.zeros([BLOCK], dtype=ct)
    e = tl.zeros([BLOCK], dtype=ct)
    for k0 in range(0, tl.max(count, axis=0), TILE):
        for t in tl.static_range(TILE):  # unrolled: TILE slots' loads in flight
            ok = live & (k0 + t < count)
            j = tl.load(index_ptr + (k0 + t) * n_atoms + lane, mask=ok, other=0)
            dx = tl.load(packed_ptr + j, mask=ok, other=0.0) - xi
            dy = tl.load(packed_ptr + n_atoms + j, mask=ok, other=0.0) - yi
            dz = tl.load(packed_ptr + 2 * n_atoms + j, mask=ok, other=0.0) - zi
            dx = (dx - lx * tl.floor(dx * ilx + 0.5)).to(ct)
            dy = (dy - ly * tl.floor(dy * ily + 0.5)).to(ct)
            dz = (dz - lz * tl.floor(dz * ilz + 0.5)).to(ct)
            r2 = dx * dx + dy * dy + dz * dz
            if N_TYPES == 2:
                b = tl.load(packed_type_ptr + j, mask=ok, other=0) != 0
                eps4, sig2 = tl.where(b, b4, a4), tl.where(b, bs2, as2)
                rc2, rc = tl.where(b, brc2, arc2), tl.where(b, brc, arc)
                uc, duc = tl.where(b, buc, auc), tl.where(b, bduc, aduc)
            elif N_TYPES > 2:
                eps4, sig2, rc2, rc, uc, duc = _pair_row(
                    table_ptr, ti * N_TYPES + tl.load(packed_type_ptr + j, mask=ok, other=0),
                    ok, ct)
            within = ok & (r2 < rc2)
            inv_r2 = 1.0 / tl.where(within, r2, 1.0)
            s6 = sig2 * inv_r2
            s6 = s6 * s6 * s6
            u = eps4 * (s6 * s6 - s6) - uc
            f_over_r = -6.0 * eps4 * (2.0 * s6 * s6 - s6) * inv_r2  # u'(r)/r
            if FORCE_SHIFT:
                r = tl.sqrt(tl.where(within, r2, 1.0))
                u -= (r - rc) * duc
                f_over_r -= duc / r
            f_over_r = tl.where(within, f_over_r, 0.0)
            fx += f_over_r * dx
            fy += f_over_r * dy
            fz += f_over_r * dz
            e += tl.where(within, u, 0.0)
    tl.store(force_ptr + 3 * i, fx.to(tl.float64), mask=live)
    tl.store(force_ptr + 3 * i + 1, fy.to(tl.float64), mask=live)
    tl.store(force_ptr + 3 * i + 2, fz.to(tl.float64), mask=live)
    tl.store(energy_ptr + i, 0.5 * e.to(tl.float64), mask=live)


_lj_tuned = triton.autotune(configs=CONFIGS, key=["n_atoms"])(_lj_kernel)


def lj_forces(state, neighbors, table: torch.Tensor, n_types: int, float32: bool,
              force_shift: bool):
    """Forces [N, 3] and atom energies [N] (float64) from the fused kernel.

    ``table`` [T·T, 6] float64 rows (4ε, σ², r_c², r_c, u(r_c), u'(r_c)) per type pair;
    ``force_shift``: u'(r_c) is subtracted (truncation "shift_force")."""
    n = state.n_atoms
    forces = torch.empty(n, 3, dtype=torch.float64, device=state.device)
    energy = torch.empty(n, dtype=torch.float64, device=state.device)
    box = torch.diagonal(state.cell, dim1=1, dim2=2).contiguous()
    neighbors.pack(state)
    args = (neighbors.packed, neighbors.packed_type, neighbors.order, state.system_idx, box,
            neighbors.index, neighbors.count, table, forces, energy, n)
    meta = {"ct": tl.float32 if float32 else tl.float64, "N_TYPES": n_types,
            "FORCE_SHIFT": force_shift}
    if not autotune():
        _lj_kernel[(triton.cdiv(n, 128),)](*args, BLOCK=128, TILE=4, **meta)
    else:
        _lj_tuned[lambda m: (triton.cdiv(n, m["BLOCK"]),)](*args, **meta)
    return forces, energy
