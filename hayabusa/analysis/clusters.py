"""Li clusters (incipient metal) with a bond AND an under-coordination criterion.

A distance-only criterion fails in Li garnets: Li–Li distances of 2.5–2.8 Å are normal in the
LLZO Li sublattice (shorter than 3.04 Å in bcc Li), so a 2.6 Å cutoff links most of it into one
cluster (/work/shared/reference/llzo-analysis-viz.md §2; an ordinary Li has ~4.6 O within 2.5 Å).
Here a Li is a cluster candidate only when it has fewer than ``max_coordination`` anions (O)
within ``anion_cutoff_A``; candidates closer than ``bond_A`` are linked, and clusters are the
connected components, frame by frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .pairs import pair_distances


@dataclass
class ClusterStats:
    labels: np.ndarray  # [F, N] cluster of each candidate (its lowest atom index), else -1
    sizes: list[np.ndarray]  # per frame: sizes of the clusters of ≥ 2 atoms
    max_size: int  # largest cluster in any frame (1: lone candidates only; 0: no candidate)
    mean_size: float  # mean size of the clusters of ≥ 2 atoms over all frames (0: none)
    criterion: str


def _components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[n] component label (smallest member) of every node of the graph with edges (u, v)."""
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[u], labels[v])
        new = labels.copy()
        np.minimum.at(new, u, low)
        np.minimum.at(new, v, low)
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


def find_clusters(positions, cell, symbols, species: str = "Li", anion: str = "O",
                  bond_A: float = 2.6, anion_cutoff_A: float = 2.5,
                  max_coordination: int | None = 4) -> ClusterStats:
    """Clusters of ``species`` in the frames ``positions`` [F, N, 3] (or one frame [N, 3]);
    ``cell`` [3, 3] or [F, 3, 3]; ``max_coordination=None`` drops the coordination criterion
    (distance only)."""
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    symbols = np.asarray(symbols)
    if x.ndim != 3 or symbols.shape != (x.shape[1],):
        raise InputError(f"positions: expected [frames, {symbols.size}, 3], got {x.shape}")
    if not (symbols == species).any():
        raise InputError(f"clusters: species {species!r} is not in the structure")
    f, n, _ = x.shape
    is_sp, is_anion = symbols == species, symbols == anion
    coordination = np.zeros(f * n, dtype=np.int64)
    edges = []
    for frame, i, j, r in pair_distances(x, cell, max(bond_A, anion_cutoff_A)):
        node_i = frame * n + i
        near = is_sp[i] & is_anion[j] & (r < anion_cutoff_A)
        coordination += np.bincount(node_i[near], minlength=f * n)
        bond = is_sp[i] & is_sp[j] & (r < bond_A) & (i < j)
        edges.append((node_i[bond], frame[bond] * n + j[bond]))
    candidate = np.tile(is_sp, f)
    if max_coordination is not None:
        candidate &= coordination < max_coordination
    u = np.concatenate([e[0] for e in edges]) if edges else np.zeros(0, np.int64)
    v = np.concatenate([e[1] for e in edges]) if edges else np.zeros(0, np.int64)
    keep = candidate[u] & candidate[v]
    labels = _components(f * n, u[keep], v[keep]).reshape(f, n) - (np.arange(f) * n)[:, None]
    labels[~candidate.reshape(f, n)] = -1
    sizes, largest = [], 0
    for lab in labels:
        counts = np.bincount(lab[lab >= 0], minlength=0)
        counts = counts[counts > 0]
        largest = max(largest, int(counts.max()) if counts.size else 0)
        sizes.append(counts[counts >= 2])
    multi = np.concatenate(sizes) if sizes else np.zeros(0)
    if max_coordination is None:
        criterion = f"{species}–{species} < {bond_A:g} Å"
    else:
        criterion = (f"{species}–{species} < {bond_A:g} Å and {anion}-coordination < "
                     f"{max_coordination} within {anion_cutoff_A:g} Å")
    mean = float(multi.mean()) if multi.size else 0.0
    return ClusterStats(labels, sizes, largest, mean, criterion)
