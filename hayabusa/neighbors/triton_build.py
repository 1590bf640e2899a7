"""Triton kernels of the MinImageNeighborList on the GPU: the packing of positions in cell
order, the cell-list build, and the stale check.

Hand-written because no maintained library builds a batched, fixed-capacity, column-major
neighbor matrix on the device without host synchronisation (see reference/gpu-kernels.md).
Atoms are binned into cells at least one list cutoff wide (≥ 3 per direction, so the 27
stencil cells are distinct) and sorted by cell: lane ``l`` is atom ``order[l]``. ``pack``
copies positions and types into that order ([3, N] float64 rows x, y, z and [N] int32), so the
atoms of a cell are contiguous and the neighbours a kernel gathers lie in a few nearby rows
(coalesced loads, cache hits) instead of anywhere in memory; ``State`` keeps the user's atom
order. Cells are numbered z fastest, so the three cells of a stencil column along z are one
contiguous run of lanes (two runs where the column wraps around the box). A build program
takes BLOCK lanes (atoms that share cells), one per thread, and walks the candidates of each
column TILE at a time (unrolled, so their loads are in flight together; the threads of a warp
mostly read the same rows: broadcasts); each thread counts its own neighbours, so no prefix
sum is needed. The list stores neighbour *lanes*.
Every size is fixed beforehand, so a build can be captured in a CUDA graph: overflows of the
neighbour capacity are reported in ``most``, never dropped silently.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

# Tile shapes (atoms per program, a thread each × candidates or slots unrolled) tried on first
# use for each size by this build kernel (idempotent: the trial runs leave the same list) and
# the LJ kernel (``potentials.triton_pair``); one-warp programs spread a small system over more
# multiprocessors.
CONFIGS = [triton.Config({"BLOCK": 32 * w, "TILE": t}, num_warps=w)
           for w, t in ((1, 4), (1, 8), (2, 4), (4, 2), (4, 4), (4, 8), (8, 4))]

PACK_BLOCK = 512


@triton.jit
def pack_kernel(pos_ptr, type_ptr, order_ptr, packed_ptr, packed_type_ptr, n_atoms,
                BLOCK: tl.constexpr):
    """packed[c, l] = position c of atom order[l]; packed_type[l] = its type."""
    lane = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = lane < n_atoms
    i = tl.load(order_ptr + lane, mask=live, other=0)
    for c in tl.static_range(3):
        tl.store(packed_ptr + c * n_atoms + lane,
                 tl.load(pos_ptr + 3 * i + c, mask=live, other=0.0), mask=live)
    tl.store(packed_type_ptr + lane, tl.load(type_ptr + i, mask=live, other=0).to(tl.int32),
             mask=live)


def pack(state, order, packed, packed_type) -> None:
    """Fill ``packed`` [3, N] float64 and ``packed_type`` [N] int32 in the lane order
    ``order`` [N] int32."""
    n = state.n_atoms
    pack_kernel[(triton.cdiv(n, PACK_BLOCK),)](state.positions, state.type_ids, order, packed,
                                               packed_type, n, BLOCK=PACK_BLOCK)


@triton.jit
def build_kernel(packed_ptr, sys_ptr, box_ptr, nbins_ptr, bin_offset_ptr, bin3_ptr, order_ptr,
                 bin_start_ptr, bin_count_ptr, index_ptr, count_ptr, most_ptr,
                 n_atoms, capacity, cutoff2, BLOCK: tl.constexpr, TILE: tl.constexpr):
    lane = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = lane < n_atoms
    i = tl.load(order_ptr + lane, mask=live, other=0)
    xi = tl.load(packed_ptr + lane, mask=live, other=0.0)
    yi = tl.load(packed_ptr + n_atoms + lane, mask=live, other=0.0)
    zi = tl.load(packed_ptr + 2 * n_atoms + lane, mask=live, other=0.0)
    s = tl.load(sys_ptr + i, mask=live, other=0)
    lx = tl.load(box_ptr + 3 * s, mask=live, other=1.0)
    ly = tl.load(box_ptr + 3 * s + 1, mask=live, other=1.0)
    lz = tl.load(box_ptr + 3 * s + 2, mask=live, other=1.0)
    ilx, ily, ilz = 1.0 / lx, 1.0 / ly, 1.0 / lz
    nx = tl.load(nbins_ptr + 3 * s, mask=live, other=3)
    ny = tl.load(nbins_ptr + 3 * s + 1, mask=live, other=3)
    nz = tl.load(nbins_ptr + 3 * s + 2, mask=live, other=3)
    offset = tl.load(bin_offset_ptr + s, mask=live, other=0)
    bx = tl.load(bin3_ptr + 3 * i, mask=live, other=0)
    by = tl.load(bin3_ptr + 3 * i + 1, mask=live, other=0)
    bz = tl.load(bin3_ptr + 3 * i + 2, mask=live, other=0)
    # Along z a column holds cells max(bz-1, 0) … min(bz+1, nz-1) as one run of lanes, and the
    # cell on the other side of the box where the stencil wraps (none inside the box).
    z_lo = tl.maximum(bz - 1, 0)
    z_hi = tl.minimum(bz + 1, nz - 1)
    wraps = (bz == 0) | (bz == nz - 1)
    z_wrap = tl.where(bz == 0, nz - 1, 0)
    count = tl.zeros([BLOCK], dtype=tl.int32)
    for column in tl.static_range(9):
        cx = (bx + (column // 3 - 1) + nx) % nx
        cy = (by + (column % 3 - 1) + ny) % ny
        base = offset + (cx * ny + cy) * nz
        start = tl.load(bin_start_ptr + base + z_lo, mask=live, other=0)
        run = tl.load(bin_start_ptr + base + z_hi, mask=live, other=0) - start + \
            tl.load(bin_count_ptr + base + z_hi, mask=live, other=0)
        wrap_start = tl.load(bin_start_ptr + base + z_wrap, mask=live & wraps, other=0)
        total = run + tl.load(bin_count_ptr + base + z_wrap, mask=live & wraps, other=0)
        for q0 in range(0, tl.max(total, axis=0), TILE):
            for q in tl.static_range(TILE):  # unrolled: TILE candidates' loads in flight
                c = q0 + q
                ok = live & (c < total)
                j = tl.where(c < run, start + c, wrap_start + c - run)
                dx = tl.load(packed_ptr + j, mask=ok, other=0.0) - xi
                dy = tl.load(packed_ptr + n_atoms + j, mask=ok, other=0.0) - yi
                dz = tl.load(packed_ptr + 2 * n_atoms + j, mask=ok, other=0.0) - zi
                dx -= lx * tl.floor(dx * ilx + 0.5)
                dy -= ly * tl.floor(dy * ily + 0.5)
                dz -= lz * tl.floor(dz * ilz + 0.5)
                ok = ok & (dx * dx + dy * dy + dz * dz < cutoff2) & (j != lane)
                tl.store(index_ptr + count * n_atoms + lane, j, mask=ok & (count < capacity))
                count += ok.to(tl.int32)
    tl.store(count_ptr + lane, tl.minimum(count, capacity), mask=live)
    tl.atomic_max(most_ptr, tl.max(tl.where(live, count, 0), axis=0))


_build_tuned = triton.autotune(configs=CONFIGS, key=["n_atoms"])(build_kernel)


def autotune() -> bool:
    """Whether the kernels autotune their tile shapes on first use at each size. Not under the
    CPU interpreter (it cannot), nor with HAYABUSA_AUTOTUNE=0 (one fixed shape: a fraction of
    the first-use compile time, e.g. for the GPU tests)."""
    return os.environ.get("TRITON_INTERPRET") != "1" and \
        os.environ.get("HAYABUSA_AUTOTUNE", "1") != "0"


def launch_build(args: tuple, n_atoms: int) -> None:
    if not autotune():
        build_kernel[(triton.cdiv(n_atoms, 128),)](*args, BLOCK=128, TILE=4)
    else:
        _build_tuned[lambda meta: (triton.cdiv(n_atoms, meta["BLOCK"]),)](*args)


STALE_BLOCK = 1024


@triton.jit
def mark_stale_kernel(pos_ptr, ref_ptr, sys_ptr, cell_ptr, ref_cell_ptr, flag_ptr, n_atoms,
                      half_skin, half_cutoff, BLOCK: tl.constexpr):
    """flag = 1 if some atom is stale (one atomic per program): its position scaled by its
    orthorhombic box's change since the build (L_ref/L per axis, from the [S, 3, 3] cells) is
    farther than skin/2 − (cutoff/2)·|L_ref/L − 1| from where it was at the build."""
    a = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = a < n_atoms
    s = tl.load(sys_ptr + a, mask=live, other=0)
    d2 = tl.zeros([BLOCK], dtype=tl.float64)
    strain2 = tl.zeros([BLOCK], dtype=tl.float64)
    for c in tl.static_range(3):
        scale = tl.load(ref_cell_ptr + 9 * s + 4 * c, mask=live, other=1.0) / \
            tl.load(cell_ptr + 9 * s + 4 * c, mask=live, other=1.0)
        d = tl.load(pos_ptr + 3 * a + c, mask=live, other=0.0) * scale - \
            tl.load(ref_ptr + 3 * a + c, mask=live, other=0.0)
        d2 += d * d
        strain2 += (scale - 1.0) * (scale - 1.0)
    limit = half_skin - half_cutoff * tl.sqrt(strain2)
    stale = live & ((d2 > limit * limit) | (limit <= 0.0))
    tl.atomic_max(flag_ptr, tl.max(stale.to(tl.int32), axis=0))


def launch_mark_stale(positions, reference, system_idx, cell, reference_cell, flag,
                      n_atoms: int, skin: float, cutoff: float) -> None:
    """OR "stale" into ``flag`` ([] int32, on the device) for ``positions`` [N, 3] against
    ``reference`` [N, 3] (see ``mark_stale_kernel``)."""
    mark_stale_kernel[(triton.cdiv(n_atoms, STALE_BLOCK),)](
        positions, reference, system_idx, cell, reference_cell, flag, n_atoms, 0.5 * skin,
        0.5 * cutoff, BLOCK=STALE_BLOCK)
