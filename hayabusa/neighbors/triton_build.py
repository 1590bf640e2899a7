"""Triton cell-list kernel that fills a MinImageNeighborList on the GPU.

Hand-written because no maintained library builds a batched, fixed-capacity, column-major
neighbor matrix on the device (see reference/gpu-kernels.md). Atoms are binned into cells at
least one list cutoff wide (≥ 3 per direction, so the 27 stencil cells are distinct); each
thread takes one atom and walks the 27 cells, appending neighbours within the cutoff.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 128


@triton.jit
def _build_kernel(pos_ptr, sys_ptr, box_ptr, nbins_ptr, bin_offset_ptr, bin3_ptr, order_ptr,
                  bin_start_ptr, bin_count_ptr, index_ptr, count_ptr, most_ptr,
                  n_atoms, capacity, cutoff2, max_in_bin, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = i < n_atoms
    xi = tl.load(pos_ptr + 3 * i, mask=live, other=0.0)
    yi = tl.load(pos_ptr + 3 * i + 1, mask=live, other=0.0)
    zi = tl.load(pos_ptr + 3 * i + 2, mask=live, other=0.0)
    s = tl.load(sys_ptr + i, mask=live, other=0)
    lx = tl.load(box_ptr + 3 * s, mask=live, other=1.0)
    ly = tl.load(box_ptr + 3 * s + 1, mask=live, other=1.0)
    lz = tl.load(box_ptr + 3 * s + 2, mask=live, other=1.0)
    nx = tl.load(nbins_ptr + 3 * s, mask=live, other=1)
    ny = tl.load(nbins_ptr + 3 * s + 1, mask=live, other=1)
    nz = tl.load(nbins_ptr + 3 * s + 2, mask=live, other=1)
    offset = tl.load(bin_offset_ptr + s, mask=live, other=0)
    bx = tl.load(bin3_ptr + 3 * i, mask=live, other=0)
    by = tl.load(bin3_ptr + 3 * i + 1, mask=live, other=0)
    bz = tl.load(bin3_ptr + 3 * i + 2, mask=live, other=0)
    count = tl.zeros([BLOCK], dtype=tl.int32)
    for cell in tl.static_range(27):
        cx = (bx + (cell // 9 - 1) + nx) % nx
        cy = (by + ((cell // 3) % 3 - 1) + ny) % ny
        cz = (bz + (cell % 3 - 1) + nz) % nz
        b = offset + (cx * ny + cy) * nz + cz
        start = tl.load(bin_start_ptr + b, mask=live, other=0)
        in_bin = tl.load(bin_count_ptr + b, mask=live, other=0)
        for q in range(0, max_in_bin):
            ok = live & (q < in_bin)
            j = tl.load(order_ptr + start + q, mask=ok, other=0)
            dx = tl.load(pos_ptr + 3 * j, mask=ok, other=0.0) - xi
            dy = tl.load(pos_ptr + 3 * j + 1, mask=ok, other=0.0) - yi
            dz = tl.load(pos_ptr + 3 * j + 2, mask=ok, other=0.0) - zi
            dx -= lx * tl.floor(dx / lx + 0.5)
            dy -= ly * tl.floor(dy / ly + 0.5)
            dz -= lz * tl.floor(dz / lz + 0.5)
            ok = ok & (dx * dx + dy * dy + dz * dz < cutoff2) & (j != i)
            tl.store(index_ptr + count * n_atoms + i, j.to(tl.int32),
                     mask=ok & (count < capacity))
            count += ok.to(tl.int32)
    tl.store(count_ptr + i, tl.minimum(count, capacity), mask=live)
    tl.atomic_max(most_ptr, tl.max(tl.where(live, count, 0), axis=0))


def build_min_image(state, cutoff: float, index: torch.Tensor, count: torch.Tensor) -> int:
    """Fill ``index`` [K, N] and ``count`` [N]; returns the largest neighbour count (which may
    exceed K: then the caller grows K and builds again)."""
    device = state.device
    box = torch.diagonal(state.cell, dim1=1, dim2=2).contiguous()  # [S, 3]
    nbins = torch.floor(box / cutoff).to(torch.int64)  # ≥ 3 by min_image_supported
    bins_per_system = nbins.prod(dim=1)
    bin_offset = torch.cumsum(bins_per_system, 0) - bins_per_system
    total_bins = int(bins_per_system.sum())  # host sync (once per build)
    sys = state.system_idx
    frac = state.positions / box[sys]
    frac = frac - torch.floor(frac)
    bin3 = torch.minimum((frac * nbins[sys]).to(torch.int64), nbins[sys] - 1)
    gbin = bin_offset[sys] + (bin3[:, 0] * nbins[sys, 1] + bin3[:, 1]) * nbins[sys, 2] \
        + bin3[:, 2]
    order = torch.argsort(gbin).to(torch.int32)
    bin_count = torch.bincount(gbin, minlength=total_bins)
    bin_start = (torch.cumsum(bin_count, 0) - bin_count).to(torch.int32)
    max_in_bin = int(bin_count.max())  # host sync
    most = torch.zeros(1, dtype=torch.int32, device=device)
    n = state.n_atoms
    grid = (triton.cdiv(n, BLOCK),)
    _build_kernel[grid](
        state.positions.contiguous(), sys.to(torch.int32), box, nbins.to(torch.int32),
        bin_offset.to(torch.int32), bin3.to(torch.int32).contiguous(), order, bin_start,
        bin_count.to(torch.int32), index, count, most, n, index.shape[0], cutoff * cutoff,
        max_in_bin, BLOCK=BLOCK)
    return int(most)
