"""Checks every built structure passes: composition, net formal charge, interatomic distances.

A failed check raises ``InputError`` naming the check (``composition``, ``charge`` or
``distance``) and where it failed (element counts, or the species pair and atom indices).
"""

from __future__ import annotations

from collections.abc import Mapping

import ase
import numpy as np
from ase.formula import Formula
from ase.neighborlist import neighbor_list

from ..errors import InputError

#: formal (ionic) charges in units of e used for the neutrality check of LLZO structures
FORMAL_CHARGES = {"Li": 1, "La": 3, "Zr": 4, "O": -2}


def element_counts(atoms: ase.Atoms) -> dict[str, int]:
    """{symbol: count} of ``atoms``."""
    symbols, counts = np.unique(atoms.get_chemical_symbols(), return_counts=True)
    return {str(s): int(c) for s, c in zip(symbols, counts, strict=True)}


def net_charge(atoms: ase.Atoms, charges: Mapping[str, int] = FORMAL_CHARGES) -> int:
    """Sum of formal charges (e); InputError for an element without a formal charge."""
    total = 0
    for symbol, count in element_counts(atoms).items():
        if symbol not in charges:
            raise InputError(f"charge check: element {symbol} has no formal charge; "
                             f"expected one of {sorted(charges)}")
        total += charges[symbol] * count
    return total


def _formula(counts: Mapping[str, int]) -> str:
    return " ".join(f"{s}{counts[s]}" for s in sorted(counts))


def _pair_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def pair_minima(min_distance: float | Mapping, symbols) -> dict[tuple[str, str], float]:
    """Minimum distance (Å) for every unordered species pair of ``symbols``.

    ``min_distance`` is one number for all pairs or a mapping {(A, B): Å}; pairs missing
    from the mapping are not checked.
    """
    species = sorted(set(symbols))
    pairs = [_pair_key(a, b) for i, a in enumerate(species) for b in species[i:]]
    if np.isscalar(min_distance):
        return {p: float(min_distance) for p in pairs}
    table = {_pair_key(*k): float(v) for k, v in dict(min_distance).items()}
    return {p: table[p] for p in pairs if p in table}


def close_pairs(atoms: ase.Atoms, min_distance: float | Mapping):
    """Pairs closer than their minimum: (i, j, d, d_min) arrays with i <= j, each pair once.

    Periodic images count (an atom closer than the minimum to its own image gives i == j).
    """
    symbols = np.array(atoms.get_chemical_symbols())
    minima = pair_minima(min_distance, symbols)
    empty = (np.zeros(0, int), np.zeros(0, int), np.zeros(0), np.zeros(0))
    if not minima or len(atoms) == 0:
        return empty
    species, kind = np.unique(symbols, return_inverse=True)
    table = np.array([[minima.get(_pair_key(a, b), 0.0) for b in species] for a in species])
    i, j, d = neighbor_list("ijd", atoms, max(minima.values()))
    keep = i <= j
    i, j, d = i[keep], j[keep], d[keep]
    dmin = table[kind[i], kind[j]]
    bad = d < dmin
    order = np.argsort(d[bad] / dmin[bad])
    return i[bad][order], j[bad][order], d[bad][order], dmin[bad][order]


def check_structure(
    atoms: ase.Atoms,
    expected_composition: Mapping[str, int] | str | None = None,
    min_distance: float | Mapping | None = None,
    charges: Mapping[str, int] = FORMAL_CHARGES,
    label: str = "structure",
) -> None:
    """Raise InputError unless ``atoms`` passes all three checks.

    composition: element counts equal ``expected_composition`` ({symbol: count} or a formula
    such as "Li56La24Zr16O96"), skipped when None. charge: the sum of formal ``charges`` (e)
    is zero. distance: no pair closer than ``min_distance`` (Å; one number, or {(A, B): Å}
    per species pair), skipped when None. The message starts with ``label``.
    """
    counts = element_counts(atoms)
    if expected_composition is not None:
        expected = (Formula(expected_composition).count()
                    if isinstance(expected_composition, str) else dict(expected_composition))
        expected = {s: int(n) for s, n in expected.items() if n}
        if counts != expected:
            diff = ", ".join(f"{s}: {counts.get(s, 0)} instead of {expected.get(s, 0)}"
                             for s in sorted(set(counts) | set(expected))
                             if counts.get(s, 0) != expected.get(s, 0))
            raise InputError(f"{label}: composition check failed: expected "
                             f"{_formula(expected)}, got {_formula(counts)} ({diff})")
    q = net_charge(atoms, charges)
    if q != 0:
        raise InputError(f"{label}: charge check failed: net formal charge {q:+d} e for "
                         f"{_formula(counts)} (formal charges "
                         f"{', '.join(f'{s} {charges[s]:+d}' for s in sorted(counts))}), "
                         f"expected 0")
    if min_distance is not None:
        i, j, d, dmin = close_pairs(atoms, min_distance)
        if len(d):
            symbols = atoms.get_chemical_symbols()
            raise InputError(f"{label}: distance check failed: {symbols[i[0]]}-{symbols[j[0]]} "
                             f"pair, atoms {i[0]} and {j[0]}, at {d[0]:.3f} Å < minimum "
                             f"{dmin[0]:.3f} Å ({len(d)} pair(s) below their minimum)")
