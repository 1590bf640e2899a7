"""Optional vesin backend (one system per call, host-synchronising): a second oracle."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .pairs import Pairs


def vesin_pairs(positions, cell, pbc, system_idx, cutoff: float) -> Pairs:
    try:
        from vesin import NeighborList as VesinNeighborList
    except ImportError:
        raise InputError("neighbor backend 'vesin' needs the vesin package "
                         "(pip install vesin)") from None
    device = positions.device
    pos = positions.detach().double().cpu().numpy()
    cells = cell.detach().double().cpu().numpy()
    pbcs = pbc.cpu().numpy()
    sys = system_idx.cpu().numpy()
    finder = VesinNeighborList(cutoff=cutoff, full_list=True)
    i_all, j_all, s_all = [], [], []
    for s in range(cells.shape[0]):
        atoms = np.nonzero(sys == s)[0]
        i, j, shift = finder.compute(points=pos[atoms], box=cells[s], periodic=pbcs[s],
                                     quantities="ijS")
        i_all.append(atoms[i.astype(np.int64)])
        j_all.append(atoms[j.astype(np.int64)])
        s_all.append(np.asarray(shift, dtype=np.int64).reshape(-1, 3))
    i, j, shift = (torch.from_numpy(np.concatenate(x)).to(device) for x in (i_all, j_all, s_all))
    order = torch.argsort(i, stable=True)
    return Pairs(i[order], j[order], shift[order])
