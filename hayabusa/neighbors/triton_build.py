"""Triton cell-list kernel that fills a MinImageNeighborList on the GPU.

Hand-written because no maintained library builds a batched, fixed-capacity, column-major
neighbor matrix on the device without host synchronisation (see reference/gpu-kernels.md).
Atoms are binned into cells at least one list cutoff wide (≥ 3 per direction, so the 27
stencil cells are distinct). A program takes BLOCK atoms in cell order (``order``), so its
atoms share cells, and examines TILE candidates of a cell per atom at once (many independent
loads in flight); a prefix sum gives each neighbour found its slot. Rows are stored in the same
cell order: row ``lane`` of the matrix belongs to atom ``order[lane]``.
Every size is fixed beforehand, so a build can be captured in a CUDA graph: overflows of the
neighbour capacity or of the per-cell bound are reported in ``most`` instead of dropped
silently.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

# Tile shapes (atoms per program × candidates at once) tried on first use for each size; the
# kernel is idempotent, so the trial runs leave the same list.
CONFIGS = [triton.Config({"BLOCK": b, "TILE": t}, num_warps=w)
           for b, t, w in ((32, 32, 4), (64, 16, 4), (128, 8, 4), (128, 16, 8), (256, 4, 8))]


@triton.jit
def build_kernel(pos_ptr, sys_ptr, box_ptr, nbins_ptr, bin_offset_ptr, bin3_ptr, order_ptr,
                 bin_start_ptr, bin_count_ptr, index_ptr, count_ptr, most_ptr,
                 n_atoms, capacity, cutoff2, BLOCK: tl.constexpr, TILE: tl.constexpr):
    lane = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = lane < n_atoms
    i = tl.load(order_ptr + lane, mask=live, other=0)
    xi = tl.load(pos_ptr + 3 * i, mask=live, other=0.0)
    yi = tl.load(pos_ptr + 3 * i + 1, mask=live, other=0.0)
    zi = tl.load(pos_ptr + 3 * i + 2, mask=live, other=0.0)
    s = tl.load(sys_ptr + i, mask=live, other=0)
    lx = tl.load(box_ptr + 3 * s, mask=live, other=1.0)
    ly = tl.load(box_ptr + 3 * s + 1, mask=live, other=1.0)
    lz = tl.load(box_ptr + 3 * s + 2, mask=live, other=1.0)
    ilx, ily, ilz = 1.0 / lx, 1.0 / ly, 1.0 / lz
    nx = tl.load(nbins_ptr + 3 * s, mask=live, other=1)
    ny = tl.load(nbins_ptr + 3 * s + 1, mask=live, other=1)
    nz = tl.load(nbins_ptr + 3 * s + 2, mask=live, other=1)
    offset = tl.load(bin_offset_ptr + s, mask=live, other=0)
    bx = tl.load(bin3_ptr + 3 * i, mask=live, other=0)
    by = tl.load(bin3_ptr + 3 * i + 1, mask=live, other=0)
    bz = tl.load(bin3_ptr + 3 * i + 2, mask=live, other=0)
    count = tl.zeros([BLOCK], dtype=tl.int32)
    q = tl.arange(0, TILE)
    for cell in tl.static_range(27):
        cx = (bx + (cell // 9 - 1) + nx) % nx
        cy = (by + ((cell // 3) % 3 - 1) + ny) % ny
        cz = (bz + (cell % 3 - 1) + nz) % nz
        b = offset + (cx * ny + cy) * nz + cz
        start = tl.load(bin_start_ptr + b, mask=live, other=0)
        in_bin = tl.load(bin_count_ptr + b, mask=live, other=0)
        for q0 in range(0, tl.max(in_bin, axis=0), TILE):
            ok = live[:, None] & (q0 + q[None, :] < in_bin[:, None])
            j = tl.load(order_ptr + start[:, None] + q0 + q[None, :], mask=ok, other=0)
            dx = tl.load(pos_ptr + 3 * j, mask=ok, other=0.0) - xi[:, None]
            dy = tl.load(pos_ptr + 3 * j + 1, mask=ok, other=0.0) - yi[:, None]
            dz = tl.load(pos_ptr + 3 * j + 2, mask=ok, other=0.0) - zi[:, None]
            dx -= lx[:, None] * tl.floor(dx * ilx[:, None] + 0.5)
            dy -= ly[:, None] * tl.floor(dy * ily[:, None] + 0.5)
            dz -= lz[:, None] * tl.floor(dz * ilz[:, None] + 0.5)
            ok = ok & (dx * dx + dy * dy + dz * dz < cutoff2) & (j != i[:, None])
            hit = ok.to(tl.int32)
            slot = count[:, None] + tl.cumsum(hit, axis=1) - 1
            tl.store(index_ptr + slot * n_atoms + lane[:, None], j.to(tl.int32),
                     mask=ok & (slot < capacity))
            count += tl.sum(hit, axis=1)
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
        build_kernel[(triton.cdiv(n_atoms, 32),)](*args, BLOCK=32, TILE=32)
    else:
        _build_tuned[lambda meta: (triton.cdiv(n_atoms, meta["BLOCK"]),)](*args)


STALE_BLOCK = 1024


@triton.jit
def mark_stale_kernel(pos_ptr, ref_ptr, flag_ptr, n_atoms, limit2, BLOCK: tl.constexpr):
    """flag = 1 if some atom moved more than sqrt(limit2) since the build (one atomic per
    program)."""
    a = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = a < n_atoms
    d2 = tl.zeros([BLOCK], dtype=tl.float64)
    for c in tl.static_range(3):
        d = tl.load(pos_ptr + 3 * a + c, mask=live, other=0.0) - \
            tl.load(ref_ptr + 3 * a + c, mask=live, other=0.0)
        d2 += d * d
    tl.atomic_max(flag_ptr, tl.max((d2 > limit2).to(tl.int32), axis=0))


def launch_mark_stale(positions, reference, flag, n_atoms: int, limit2: float) -> None:
    mark_stale_kernel[(triton.cdiv(n_atoms, STALE_BLOCK),)](positions, reference, flag,
                                                            n_atoms, limit2, BLOCK=STALE_BLOCK)
